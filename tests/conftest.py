"""Shared fixtures: a real `vw serve` process on a free port, and a tiny HTTP/1.1 client over raw
sockets (so tests see exactly the bytes on the wire)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

LISTEN_RE = re.compile(r"on https?://[^ ]*:(\d+) ")
WORKER_RE = re.compile(r"^worker (\d+) pid (\d+) cpu (\d+)$")


# The kernel interface every server started here uses (`--io`): None is vw's default. The core
# suite runs on each backend (tests/core/conftest.py); VW_TEST_IO sets it for any other run.
BACKEND: dict[str, str | None] = {"io": os.environ.get("VW_TEST_IO") or None}


class Server:
    """`python -m vw serve ...` in a child process; its stderr is collected line by line."""

    def __init__(self, args: list[str], workers: int = 1, prefix: list[str] | None = None, timeout: float = 20,
                 command: str = "serve", cwd: str | None = None, stdout=subprocess.DEVNULL, env: dict | None = None,
                 default_workers: bool = False):
        """`default_workers`: pass no --workers (vw picks; `workers` is how many it should)."""
        count = [] if default_workers else ["--workers", str(workers)]
        cmd = [*(prefix or []), sys.executable, "-m", "vw", command, *args, "--port", "0", *count]
        if BACKEND["io"] and command in ("serve", "run") and "--io" not in args:
            cmd += ["--io", BACKEND["io"]]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=stdout, text=True, cwd=cwd,
                                     env=None if env is None else {**os.environ, **env})
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        threading.Thread(target=self._pump, daemon=True).start()
        if any(a == "--uds" or a.startswith("unix:") for a in args):
            self.wait_for(re.compile(r" on unix:"), timeout)  # no port: a Unix socket
            self.port = None
        else:
            self.port = int(self.wait_for(LISTEN_RE, timeout).group(1))
        self.workers: dict[int, tuple[int, int]] = {}  # index -> (pid, cpu)
        for _ in range(workers):
            self.wait_worker_lines(workers, timeout)

    def _pump(self) -> None:
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def wait_for(self, pattern: re.Pattern, timeout: float = 10, start: int = 0) -> re.Match:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    m = pattern.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    raise AssertionError(f"no line matching {pattern.pattern!r}; log: {self.lines}")
                self._cond.wait(min(left, 0.2))

    def wait_worker_lines(self, count: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                for line in self.lines:
                    m = WORKER_RE.match(line)
                    if m:
                        self.workers[int(m.group(1))] = (int(m.group(2)), int(m.group(3)))
                if len(self.workers) >= count:
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"workers did not start; log: {self.lines}")
                self._cond.wait(0.2)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def connect(port: int, timeout: float = 5) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes, raw_head: bytes):
        self.status, self.headers, self.body, self.raw_head = status, headers, body, raw_head

    def header(self, name: str) -> str | None:
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        return vals[0] if vals else None

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


class Reader:
    """Reads HTTP/1.1 responses, one after the other, from a socket."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buf = sock, bytearray()

    def _fill(self) -> bool:
        data = self.sock.recv(1 << 20)
        if not data:
            return False
        self.buf += data
        return True

    def response(self, head_request: bool = False) -> Response:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise EOFError(f"connection closed; have {self.buf[:200]!r}")
        end = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:end])
        del self.buf[:end + 4]
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        assert lines[0].startswith("HTTP/1.1 "), lines[0]
        headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
        fields = dict((k.lower(), v) for k, v in headers)
        if not head_request and fields.get("transfer-encoding", "").lower() == "chunked" and status >= 200 \
                and status not in (204, 304):
            return Response(status, headers, self._chunked(), head)
        n = 0 if head_request else int(fields.get("content-length", "0"))
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError("connection closed inside a body")
        body = bytes(self.buf[:n])
        del self.buf[:n]
        return Response(status, headers, body, head)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise EOFError("connection closed inside a chunked body")
        end = self.buf.index(b"\r\n")
        line = bytes(self.buf[:end])
        del self.buf[:end + 2]
        return line

    def _chunked(self) -> bytes:
        """A chunked body, decoded (strictly: the size line, the data, CRLF; trailers skipped)."""
        body = bytearray()
        while True:
            size = int(self._line().split(b";")[0], 16)
            if size == 0:
                while self._line():
                    pass
                return bytes(body)
            while len(self.buf) < size + 2:
                if not self._fill():
                    raise EOFError("connection closed inside a chunk")
            assert self.buf[size:size + 2] == b"\r\n", "chunk data not followed by CRLF"
            body += self.buf[:size]
            del self.buf[:size + 2]

    def closed(self, timeout: float = 3) -> bool:
        """True when the server closes the connection (EOF) without sending anything more."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return not self.buf
                self.buf += data
        except ConnectionResetError:
            return not self.buf
        except socket.timeout:
            return False


def first_then_whole(port: int, path: str, marker: bytes) -> tuple[float, Response]:
    """GET path: seconds until `marker` arrived (a streamed response's first piece), and the
    whole response once it is complete."""
    with connect(port) as s:
        t0 = time.monotonic()
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        rd = Reader(s)
        while marker not in rd.buf:
            if not rd._fill():
                raise EOFError(f"closed before {marker!r}: {bytes(rd.buf[:200])!r}")
        first = time.monotonic() - t0
        return first, rd.response()


def get(port: int, path: str, method: str = "GET", headers: str = "Host: t\r\n", body: bytes = b"") -> Response:
    with connect(port) as s:
        if body:
            headers += f"Content-Length: {len(body)}\r\n"
        s.sendall(f"{method} {path} HTTP/1.1\r\n{headers}\r\n".encode() + body)
        return Reader(s).response(head_request=(method == "HEAD"))


APPS = str(Path(__file__).resolve().parent / "apps")


def run_app(spec: str, *args: str, workers: int = 1) -> Server:
    """`vw run SPEC` with tests/apps as the working directory."""
    return Server([spec, *args], workers=workers, command="run", cwd=APPS)


@pytest.fixture
def docroot(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "1b").write_bytes(b"x")
    (root / "100.html").write_bytes(b"<p>" + b"a" * 92 + b"</p>\n")
    (root / "index.html").write_text("<h1>home</h1>\n")
    (root / "style.css").write_text("body{}\n")
    (root / "sub").mkdir()
    (root / "sub" / "index.html").write_text("sub index\n")
    (root / "sub" / "a b.txt").write_text("space\n")
    (root / ".secret").write_text("hidden\n")
    (tmp_path / "outside.txt").write_text("TOP SECRET\n")
    return root


@pytest.fixture
def server(docroot: Path):
    srv = Server([str(docroot)])
    yield srv
    srv.stop()


def vw_cmd(*args: str, env: dict | None = None, prefix: list[str] | None = None, timeout: float = 20,
           cwd: str | None = None):
    return subprocess.run([*(prefix or []), sys.executable, "-m", "vw", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=cwd)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def rss_kib(pid: int) -> int:
    """The resident memory of a process now."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def load_through_reload(srv: Server, url: str, connections: int) -> int:
    """wrk on `url` for 4 s with a SIGHUP reload 1.5 s in: every request answered 2xx, no socket
    error. Returns how many requests were made."""
    import shutil

    wrk = shutil.which("wrk")
    assert wrk, "wrk is needed (make test installs it)"
    load = subprocess.Popen([wrk, "-t1", f"-c{connections}", "-d4s", url], stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)
    seen = len(srv.lines)
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_for(WORKER_RE, timeout=10, start=seen)
    out, _ = load.communicate(timeout=30)
    assert "Socket errors" not in out, (out, srv.lines)
    assert "Non-2xx" not in out, (out, srv.lines)
    return int(re.search(r"(\d+) requests in", out).group(1))


def check_100_mib_upload(srv: Server, open_conn=None) -> None:
    """POST 100 MiB to /upload (the app answers "<length> <sha256>"); the worker's peak memory
    must not grow by anything like the body. `open_conn`: how to connect (default: plain TCP)."""
    import hashlib
    import os

    pid = srv.workers[0][0]
    before = peak_rss_kib(pid)
    block = os.urandom(1 << 20)
    h = hashlib.sha256()
    with (open_conn() if open_conn else connect(srv.port, timeout=60)) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (100 << 20))
        for i in range(100):
            piece = bytes([i]) + block[1:]
            h.update(piece)
            s.sendall(piece)
        r = Reader(s).response()
    assert r.body.decode() == f"{100 << 20} {h.hexdigest()}"
    grew = peak_rss_kib(pid) - before
    assert grew < 24 * 1024, f"the worker's peak memory grew by {grew} KiB for a 100 MiB upload"


def post_form(port: int, path: str, name: str, filename: str, content: bytes) -> Response:
    """POST a multipart/form-data body: a field `name` and a file `upload`."""
    import uuid

    b = uuid.uuid4().hex
    form = (f"--{b}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{name}\r\n"
            f"--{b}\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{b}--\r\n".encode()
    return get(port, path, method="POST", body=form,
               headers=f"Host: t\r\nContent-Type: multipart/form-data; boundary={b}\r\n")


def read_to_end(s, timeout: float = 5) -> bytes:
    """Everything the server sends until it closes the connection."""
    s.settimeout(timeout)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


BACKENDS = ("epoll", "uring")


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", BACKENDS, indirect=True, scope="module")


@pytest.fixture(scope="module")
def backend(request):
    """The `--io` of every server started while it is in force (parametrized over BACKENDS)."""
    before, BACKEND["io"] = BACKEND["io"], request.param
    yield request.param
    BACKEND["io"] = before
