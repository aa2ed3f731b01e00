"""The admin listener: Prometheus metrics, /healthz and /readyz, on a port of its own (loopback by
default), served by a thread of the supervisor, never by the workers.

Each worker counts its responses in its own slot of a memory region the supervisor maps before
forking (`Stats`); a scrape sums the slots. Nothing is sent between processes per request.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import socket
import threading
import time
from typing import Callable

from vw import _core

WORDS = _core.STATS_SLOT_WORDS
CLK_TCK = os.sysconf("SC_CLK_TCK")
BUCKETS_US: list[int] = list(_core.STATS_BUCKETS_US)


class Stats:
    """One slot of counters per worker, in shared anonymous memory inherited by the workers."""

    def __init__(self, workers: int):
        self.workers = workers
        self.map = mmap.mmap(-1, max(1, workers) * WORDS * 8)
        self._base = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        self.words = memoryview(self.map).cast("Q")

    def address(self, index: int) -> int:
        """Where worker `index`'s slot is (the same address in the forked worker)."""
        return self._base + index * WORDS * 8

    def reset(self, index: int) -> None:
        """A fresh slot for a new worker in `index`, except the totals, which go on counting."""
        self.words[index * WORDS + _core.STATS_OPEN] = 0
        self.words[index * WORDS + _core.STATS_HEARTBEAT_MS] = 0  # judged from its first turn

    def heartbeat_ms(self, index: int) -> int:
        """When worker `index`'s loop last turned (CLOCK_MONOTONIC ms; 0: not yet)."""
        return self.words[index * WORDS + _core.STATS_HEARTBEAT_MS]

    def requests(self, index: int) -> int:
        """Responses counted in worker `index`'s slot so far (every status class)."""
        base = index * WORDS + _core.STATS_CLASSES
        return sum(self.words[base:base + 5])

    def total(self, word: int) -> int:
        return sum(self.words[i * WORDS + word] for i in range(self.workers))


class WorkerInfo:
    """What the supervisor tells the admin listener about each worker slot."""

    def __init__(self, index: int, pid: int, cpu: int, restarts: dict[str, int]):
        self.index, self.pid, self.cpu, self.restarts = index, pid, cpu, restarts


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def render(stats: Stats, workers: list[WorkerInfo]) -> str:
    """The Prometheus text exposition format (version 0.0.4)."""
    out: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float | int]]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            out.append(f"{name}{labels} {value}")

    classes = [(f'{{class="{c + 1}xx"}}', stats.total(_core.STATS_CLASSES + c)) for c in range(5)]
    metric("vw_requests_total", "counter", "Responses sent, by status class.", classes)
    h2 = stats.total(_core.STATS_H2)
    metric("vw_requests_by_protocol_total", "counter", "Responses sent, by protocol.",
           [('{protocol="http/1.1"}', sum(v for _, v in classes) - h2), ('{protocol="h2"}', h2)])
    metric("vw_tls_handshakes_total", "counter", "TLS handshakes completed.", [("", stats.total(_core.STATS_TLS))])
    metric("vw_response_bytes_total", "counter", "Bytes of responses queued (head and body).",
           [("", stats.total(_core.STATS_BYTES))])
    cumulative = 0
    buckets = []
    for i, upper in enumerate(BUCKETS_US):
        cumulative += stats.total(_core.STATS_LATENCY_BUCKETS + i)
        buckets.append((f'_bucket{{le="{upper / 1e6:g}"}}', cumulative))
    cumulative += stats.total(_core.STATS_LATENCY_BUCKETS + len(BUCKETS_US))
    buckets.append(('_bucket{le="+Inf"}', cumulative))
    out.append("# HELP vw_request_duration_seconds Time from a request to its response "
               "(applications; static files are answered within the read that brought them).")
    out.append("# TYPE vw_request_duration_seconds histogram")
    for suffix, value in buckets:
        out.append(f"vw_request_duration_seconds{suffix} {value}")
    out.append(f"vw_request_duration_seconds_sum {stats.total(_core.STATS_LATENCY_SUM_US) / 1e6:.6f}")
    out.append(f"vw_request_duration_seconds_count {cumulative}")
    metric("vw_open_connections", "gauge", "Client connections open now.", [("", stats.total(_core.STATS_OPEN))])
    metric("vw_connections_accepted_total", "counter", "Client connections accepted.",
           [("", stats.total(_core.STATS_ACCEPTED))])
    metric("vw_worker_cpu_seconds_total", "counter", "CPU time (user and system) of each worker process.",
           [(f'{{worker="{w.index}",cpu="{w.cpu}"}}', round(cpu_seconds(w.pid), 3)) for w in workers])
    metric("vw_worker_restarts_total", "counter",
           "Workers started in the place of another: after one died (crash), or recycled (max_requests, max_rss).",
           [(f'{{worker="{w.index}",cpu="{w.cpu}",reason="{r}"}}', n) for w in workers for r, n in w.restarts.items()])
    metric("vw_workers", "gauge", "Worker processes running.", [("", len(workers))])
    return "\n".join(out) + "\n"


class AdminServer:
    """A small blocking HTTP/1.1 server in a daemon thread: GET /metrics, /healthz, /readyz."""

    def __init__(self, host: str, port: int, stats: Stats, workers: Callable[[], list[WorkerInfo]],
                 ready: Callable[[], bool]):
        self.stats, self.workers, self.ready = stats, workers, ready
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, name="vw-admin", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            try:
                conn.settimeout(5)
                self._handle(conn)
            except OSError:
                pass
            finally:
                conn.close()

    def _handle(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 8192:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        parts = data.split(b"\r\n", 1)[0].split(b" ")
        method, path = (parts[0], parts[1].split(b"?")[0]) if len(parts) == 3 else (b"", b"")
        ctype = b"text/plain; charset=utf-8"
        if method not in (b"GET", b"HEAD"):
            status, body = b"405 Method Not Allowed", b"GET or HEAD\n"
        elif path == b"/metrics":
            started = time.perf_counter()
            text = render(self.stats, self.workers())
            text += ("# HELP vw_scrape_duration_seconds Time this scrape took to render.\n"
                     "# TYPE vw_scrape_duration_seconds gauge\n"
                     f"vw_scrape_duration_seconds {time.perf_counter() - started:.6f}\n")
            status, body, ctype = b"200 OK", text.encode(), b"text/plain; version=0.0.4; charset=utf-8"
        elif path == b"/healthz":
            status, body = b"200 OK", b"ok\n"
        elif path == b"/readyz":
            ok = self.ready()
            status, body = (b"200 OK", b"ready\n") if ok else (b"503 Service Unavailable", b"not ready\n")
        else:
            status, body = b"404 Not Found", b"/metrics, /healthz or /readyz\n"
        head = (b"HTTP/1.1 " + status + b"\r\nServer: vw-admin\r\nContent-Type: " + ctype
                + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n")
        conn.sendall(head if method == b"HEAD" else head + body)
