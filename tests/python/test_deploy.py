"""Process life for deployment: systemd socket activation (LISTEN_FDS), --pid-file, --user after
binding a privileged port, the example units, and the drain timeout."""

from __future__ import annotations

import configparser
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import LISTEN_RE, get, vw_cmd

ROOT = Path(__file__).resolve().parents[2]


def wait_line(proc: subprocess.Popen, pattern: str, timeout: float = 20) -> re.Match:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(pattern, line)
        if m:
            return m
    raise AssertionError(f"no {pattern!r} in {seen}")


def test_socket_activation(docroot):
    """systemd's protocol: the socket on fd 3, LISTEN_FDS=1, LISTEN_PID = vw's own PID."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    launcher = (
        "import os, sys\n"
        f"os.dup2({sock.fileno()}, 3)\n"
        "os.environ['LISTEN_FDS'] = '1'\n"
        "os.environ['LISTEN_PID'] = str(os.getpid())\n"
        f"os.execv(sys.executable, [sys.executable, '-m', 'vw', 'serve', {str(docroot)!r}, '--workers', '2'])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", launcher], pass_fds=(sock.fileno(),),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    sock.close()  # only vw holds it now
    try:
        m = wait_line(proc, LISTEN_RE.pattern)
        assert int(m.group(1)) == port, "the port of the socket systemd passed"
        wait_line(proc, r"^worker 1 pid")
        for _ in range(20):
            assert get(port, "/1b").body == b"x"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def activated(sockets: list[socket.socket], *args: str) -> subprocess.CompletedProcess:
    """vw started the way systemd starts it, with these sockets from fd 3 on."""
    launcher = (
        "import os, sys\n"
        + "".join(f"os.dup2({s.fileno()}, {3 + i})\n" for i, s in enumerate(sockets))
        + f"os.environ['LISTEN_FDS'] = '{len(sockets)}'\n"
        "os.environ['LISTEN_PID'] = str(os.getpid())\n"
        f"os.execv(sys.executable, [sys.executable, '-m', 'vw', *{list(args)!r}])\n"
    )
    return subprocess.run([sys.executable, "-c", launcher], pass_fds=[s.fileno() for s in sockets],
                          capture_output=True, text=True, timeout=30)


def test_socket_activation_refuses_what_it_cannot_serve(docroot, tmp_path):
    two = [socket.socket(), socket.socket()]
    for s in two:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
    r = activated(two, "serve", str(docroot), "--workers", "1")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--workers 2" in r.stderr, r.stderr
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(tmp_path / "sock"))
    unix.listen(1)
    r = activated([unix], "serve", str(docroot), "--workers", "1")
    assert r.returncode == 2 and "not a TCP socket" in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_pid_file_and_drain_timeout(docroot, tmp_path):
    """--shutdown-timeout 2 cuts a response still in flight after 1-2 s (the worker's clock counts
    whole seconds): later than the idle connections' close (the next second), sooner than the
    default 4 s drain would."""
    (docroot / "large.bin").write_bytes(os.urandom(32 << 20))
    pid_file = tmp_path / "vw.pid"
    proc = subprocess.Popen([sys.executable, "-m", "vw", "serve", str(docroot), "--port", "0", "--workers", "1",
                             "--pid-file", str(pid_file), "--shutdown-timeout", "2"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        port = int(wait_line(proc, LISTEN_RE.pattern).group(1))
        wait_line(proc, r"^worker 0 pid")
        assert pid_file.read_text().strip() == str(proc.pid)
        busy = socket.create_connection(("127.0.0.1", port), timeout=10)
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        busy.sendall(b"GET /large.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        got = busy.recv(65536)
        assert got.startswith(b"HTTP/1.1 200 "), got[:100]
        # the client reads nothing more: 32 MiB cannot go out, the response stays in flight
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        took = time.monotonic() - started
        assert 1.0 < took < 2.9, f"vw stopped {took:.2f} s after SIGTERM (--shutdown-timeout 2)"
        try:
            while True:
                chunk = busy.recv(1 << 20)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
        busy.close()
        assert len(got) < 32 << 20, "the response was cut, not finished"
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not pid_file.exists(), "removed on exit"


def test_user_drops_privileges_after_binding_a_low_port(docroot):
    assert os.geteuid() == 0, "the suite runs as root (CI does)"
    nobody = pwd.getpwnam("nobody")
    os.chmod(docroot, 0o755)
    for parent in docroot.parents:  # nobody must be able to reach the docroot
        if parent == Path("/"):
            break
        os.chmod(parent, os.stat(parent).st_mode | 0o005)
    for port in range(811, 1000):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                break
            except OSError:
                continue
    proc = subprocess.Popen([sys.executable, "-m", "vw", "serve", str(docroot), "--port", str(port), "--workers", "1",
                             "--user", "nobody"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        wait_line(proc, LISTEN_RE.pattern)
        worker = int(wait_line(proc, r"^worker 0 pid (\d+)").group(1))
        assert get(port, "/1b").body == b"x"
        def ids(pid: int, key: str) -> list[str]:
            line = [x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith(key)][0]
            return line.split()[1:]

        # the supervisor drops right after binding (before it imports any application code),
        # and its workers are forked from it
        for pid in (proc.pid, worker):
            assert ids(pid, "Uid:") == [str(nobody.pw_uid)] * 4 and ids(pid, "Gid:") == [str(nobody.pw_gid)] * 4, pid
            assert ids(pid, "Groups:") in ([], [str(nobody.pw_gid)]), pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


def test_unknown_user_is_one_line(docroot):
    r = vw_cmd("serve", str(docroot), "--port", "0", "--user", "no-such-user-here")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no-such-user-here" in r.stderr, r.stderr


def test_example_units_are_complete():
    for name in ("vw.service", "vw.socket"):
        p = configparser.ConfigParser(strict=False, interpolation=None)
        p.optionxform = str
        p.read(ROOT / "deploy" / name)
        assert p.sections(), name
    service = configparser.ConfigParser(strict=False, interpolation=None)
    service.optionxform = str
    service.read(ROOT / "deploy" / "vw.service")
    s = service["Service"]
    for key in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateDevices", "SystemCallFilter",
                "RestrictAddressFamilies", "DynamicUser", "ExecReload"):
        assert key in s, key
    assert "vw " in s["ExecStart"] and s["KillSignal"] == "SIGTERM"
