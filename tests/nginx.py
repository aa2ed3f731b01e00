"""nginx as a real proxy in front of vw (Debian's nginx-light, installed by `make deps`): a config
made for the test, run in the foreground in its own prefix, stopped at the end."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


class Nginx:
    def __init__(self, tmp: Path, server_block: str, port: int):
        self.port = port
        self.prefix = tmp / "nginx"
        (self.prefix / "logs").mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "nginx.conf"
        # Its workers run as root here: the test's folders are root's alone (0700); a deployment
        # shares the socket through its group instead (--uds-mode 660, nginx's user in the group).
        conf.write_text(f"""user root;
worker_processes 1;
error_log {self.prefix}/logs/error.log warn;
pid {self.prefix}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {self.prefix}/body;
    proxy_temp_path {self.prefix}/proxy;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port};
        {server_block}
    }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(self.prefix), "-g", "daemon off;"],
                                     stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                assert self.proc.poll() is None, f"nginx exited: {self.proc.stderr.read()}"
                assert time.monotonic() < deadline, "nginx did not listen"
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


PROXY = """
        proxy_http_version 1.1;
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto {proto};
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
"""
