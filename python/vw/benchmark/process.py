"""The server under test as a process: started pinned to its CPU in a session of its own, waited
for until it accepts, checked to answer 2xx, and stopped with everything it started."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from vw.benchmark.tools import BenchError

START_TIMEOUT_S = 10.0
STOP_GRACE_S = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: Path, lines: int = 3) -> str:
    try:
        tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except FileNotFoundError:
        return ""
    return " | ".join(tail)


def wait_until_accepting(proc: subprocess.Popen, port: int, log: Path, name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with status {proc.returncode} at start"
                             f" (log {log}): {log_tail(log)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{name} did not accept on port {port} within "
                     f"{START_TIMEOUT_S:.0f} s (log {log}): {log_tail(log)}")


def start_server(name: str, command: Callable[[int], list[str]], cpu: int, cwd: Path,
                 log: Path) -> tuple[subprocess.Popen, int]:
    """Start `command(port)` on a free port, pinned to cpu, its output in log; wait until it
    accepts. Returns the process and the port."""
    port = free_port()
    cmd = ["taskset", "-c", str(cpu), *command(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=cwd,
                                start_new_session=True)
    try:
        wait_until_accepting(proc, port, log, name)
    except BaseException:
        stop_server(proc)
        raise
    return proc, port


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM, then after STOP_GRACE_S SIGKILL to the whole session we made.

    The exited root is left unreaped (WNOWAIT) until the group is killed, so
    its pid, which is the group's id, cannot be reused meanwhile.
    """
    try:
        proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        if proc.returncode is not None or os.waitid(os.P_PID, proc.pid, flags):
            break
        time.sleep(0.02)
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers, or a stuck root
        except ProcessLookupError:
            pass
    proc.wait()


def probe_status(port: int, path: str) -> str:
    """The status line the server gives for one GET of path."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0].decode("latin-1")


def check_2xx(name: str, port: int, path: str) -> None:
    """A benchmarked path must answer 2xx. wrk counts only 4xx and 5xx answers as errors ("Non-2xx
    or 3xx responses"), so a redirect would pass for a success: it is an error here."""
    status = probe_status(port, path)
    if not re.match(r"HTTP/1\.[01] 2\d\d", status):
        raise BenchError(f"{name} answers {status!r} for {path}: a benchmarked path must answer "
                         "2xx (wrk would count a 3xx as a success)")
