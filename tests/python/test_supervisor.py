"""Workers: one per CPU, pinned, replaced when killed, stopped gracefully."""

from __future__ import annotations

import os
import signal
import time

import pytest

from conftest import WORKER_RE, Reader, Server, connect, cpu_count, get


def test_workers_on_distinct_cpus(docroot):
    n = cpu_count()
    srv = Server([str(docroot)], workers=n)
    try:
        cpus = sorted(cpu for _, cpu in srv.workers.values())
        assert cpus == sorted(os.sched_getaffinity(0))
        for pid, cpu in srv.workers.values():
            assert os.sched_getaffinity(pid) == {cpu}
    finally:
        assert srv.stop() == 0


def test_taskset_puts_the_worker_on_that_cpu(docroot):
    last = max(os.sched_getaffinity(0))
    srv = Server([str(docroot)], workers=1, prefix=["taskset", "-c", str(last)])
    try:
        pid, cpu = srv.workers[0]
        assert cpu == last
        assert os.sched_getaffinity(pid) == {last}
    finally:
        srv.stop()


def test_no_pin_leaves_the_mask_alone(docroot):
    srv = Server([str(docroot), "--no-pin"], workers=1)
    try:
        assert os.sched_getaffinity(srv.workers[0][0]) == os.sched_getaffinity(0)
    finally:
        srv.stop()


def test_killed_worker_is_replaced(docroot):
    srv = Server([str(docroot)], workers=2)
    try:
        old_pid, cpu = srv.workers[0]
        seen = len(srv.lines)
        t0 = time.monotonic()
        os.kill(old_pid, signal.SIGKILL)
        m = srv.wait_for(WORKER_RE, timeout=5, start=seen)
        took = time.monotonic() - t0
        assert int(m.group(2)) != old_pid and int(m.group(1)) == 0 and int(m.group(3)) == cpu
        assert took < 1.0, f"replacement took {took:.2f}s"
        assert any("was killed by SIGKILL" in line for line in srv.lines)
        for _ in range(20):  # both workers serve again
            assert get(srv.port, "/1b").body == b"x"
    finally:
        assert srv.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGQUIT], ids=["SIGTERM", "SIGQUIT"])
def test_stop_signal_finishes_responses_in_flight_and_exits_0(docroot, sig):
    data = os.urandom(64 * 1024 * 1024)
    (docroot / "large.bin").write_bytes(data)
    srv = Server([str(docroot)], workers=1)
    with connect(srv.port, timeout=10) as s:
        s.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 65536)
        s.sendall(b"GET /large.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        first = s.recv(65536)  # the response has started and cannot fit in the socket buffers
        assert first.startswith(b"HTTP/1.1 200")
        idle = connect(srv.port)
        t0 = time.monotonic()
        srv.proc.send_signal(sig)
        time.sleep(0.3)
        rd = Reader(s)
        rd.buf = bytearray(first)
        r = rd.response()
        assert len(r.body) == len(data) and r.body == data
        assert Reader(idle).closed(), "idle keep-alive connections are closed on stop"
    assert srv.proc.wait(6) == 0
    assert time.monotonic() - t0 < 5.5
    # The listener is gone: nobody accepts on the port any more (refused, not a timeout).
    with pytest.raises(ConnectionRefusedError):
        connect(srv.port, timeout=1).close()


def test_a_second_signal_kills_the_workers_at_once(docroot):
    """A drain that would last 30 s (a response in flight to a client that reads nothing) ends at
    once on a second signal: the workers are killed, vw exits 0."""
    (docroot / "large.bin").write_bytes(os.urandom(32 << 20))
    srv = Server([str(docroot), "--shutdown-timeout", "30"], workers=1)
    worker = srv.workers[0][0]
    with connect(srv.port, timeout=10) as s:
        s.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 65536)
        s.sendall(b"GET /large.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(1.5)
        assert srv.proc.poll() is None and os.path.exists(f"/proc/{worker}"), "still draining"
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(5) == 0
        took = time.monotonic() - t0
    assert took < 1.0, f"vw took {took:.2f} s to exit after the second signal"
    assert not os.path.exists(f"/proc/{worker}"), "the worker is gone (and reaped)"


def test_sigint_stops_too(docroot):
    srv = Server([str(docroot)], workers=2)
    assert get(srv.port, "/1b").status == 200
    assert srv.stop(signal.SIGINT) == 0


def test_gives_up_on_a_worker_that_cannot_start(docroot):
    import shutil

    srv = Server([str(docroot)], workers=1)
    shutil.rmtree(docroot)  # a new worker can no longer open its docroot
    os.kill(srv.workers[0][0], signal.SIGKILL)
    assert srv.proc.wait(15) == 1
    assert any("giving up" in line for line in srv.lines)
    assert any("No such file or directory" in line for line in srv.lines)
