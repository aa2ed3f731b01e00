"""Workers that hang (issue 25): --worker-timeout kills and replaces a worker whose loop has not
turned (here: an application holding the GIL in C), logged with reason `hung` and counted in
vw_worker_restarts_total{reason="hung"}; /readyz is 503 while it hangs. Handler threads that
wait never count."""

from __future__ import annotations

import re
import socket
import time
import urllib.request

from conftest import APPS, Server, free_port, get


def admin(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_a_worker_holding_the_gil_is_replaced_and_a_waiting_handler_is_not():
    port = free_port()
    srv = Server(["hang_app:app", "--worker-timeout", "5", "--admin-port", str(port), "--threads", "4"],
                 command="run", cwd=APPS)
    try:
        srv.wait_for(re.compile(r"vw admin on"))
        first = srv.workers[0][0]
        # A handler that waits 6 s (longer than the timeout) on its thread: the loop turns.
        t0 = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/wait?6", timeout=20) as r:
            assert r.status == 200 and r.read() == f"pid={first}".encode() and time.monotonic() - t0 >= 6
        assert not any("hung" in line for line in srv.lines), srv.lines
        assert admin(port, "/readyz")[0] == 200
        # Now one that holds the GIL in C: the loop stops.
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall(b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n")
        deadline = time.monotonic() + 10
        while admin(port, "/readyz")[0] != 503:
            assert time.monotonic() < deadline, f"readyz never said the worker hangs: {srv.lines}"
            time.sleep(0.2)
        line = srv.wait_for(re.compile(rf"worker 0 pid {first} hung: its loop has not turned for \d+ s"), timeout=15).string
        assert "--worker-timeout 5" in line
        srv.wait_for(re.compile(r"^worker 0 pid (?!%d)\d+ cpu" % first), timeout=15)
        s.close()
        r = get(srv.port, "/")
        assert r.status == 200 and r.body != f"pid={first}".encode(), "a new worker serves"
        metrics = admin(port, "/metrics")[1]
        assert re.search(r'vw_worker_restarts_total\{worker="0",cpu="\d+",reason="hung"\} 1\b', metrics), metrics
        assert re.search(r'vw_worker_restarts_total\{worker="0",cpu="\d+",reason="crash"\} 0\b', metrics)
        deadline = time.monotonic() + 10
        while admin(port, "/readyz")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        assert srv.stop() == 0
