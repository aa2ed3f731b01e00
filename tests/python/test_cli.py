"""The `vw` command: version, help, and one clear line for every kind of bad input."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys

import pytest

from conftest import Server, free_port, get, vw_cmd


def test_version_and_help():
    import vw

    for cmd in (["vw"], [sys.executable, "-m", "vw"]):
        if cmd == ["vw"] and shutil.which("vw") is None:
            pytest.fail("the `vw` console script is not installed")
        out = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=20)
        assert out.returncode == 0 and out.stdout.strip() == f"vw {vw.__version__}"
        out = subprocess.run([*cmd, "serve", "--help"], capture_output=True, text=True, timeout=20)
        assert out.returncode == 0
        for opt in ("--host", "--port", "--workers", "--no-pin", "--realtime", "DOCROOT"):
            assert opt in out.stdout


def _one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("vw: error: ")
    for w in words:
        assert w in lines[0], lines[0]


def test_missing_docroot(tmp_path):
    _one_line_error(vw_cmd("serve", str(tmp_path / "nope")), "does not exist")
    f = tmp_path / "file"
    f.write_text("x")
    _one_line_error(vw_cmd("serve", str(f)), "not a directory")


def test_bad_options():
    _one_line_error(vw_cmd("serve", "--bogus"), "--bogus")
    _one_line_error(vw_cmd("serve", "--workers", "0"), "--workers")
    _one_line_error(vw_cmd("serve", "--workers", "two"), "--workers")
    _one_line_error(vw_cmd("serve", "--port", "70000"), "--port")
    _one_line_error(vw_cmd("frobnicate"), "frobnicate")
    _one_line_error(vw_cmd("run", "app:app", "--threads", "0"), "--threads")
    _one_line_error(vw_cmd("run", "app:app", "--threads", "many"), "--threads")


def test_websocket_options(tmp_path):
    out = vw_cmd("run", "--help")
    for opt in ("--ws-max-message", "--ws-ping-interval", "--ws-ping-timeout"):
        assert opt in out.stdout
    _one_line_error(vw_cmd("run", "app:app", "--ws-max-message", "0"), "--ws-max-message")
    _one_line_error(vw_cmd("run", "app:app", "--ws-ping-interval", "-1"), "--ws-ping-interval")
    _one_line_error(vw_cmd("run", "app:app", "--ws-ping-timeout", "0"), "--ws-ping-timeout")
    _one_line_error(vw_cmd("run", "app:app", "--ws-ping-timeout", "soon"), "--ws-ping-timeout")
    cfg = tmp_path / "vw.toml"
    cfg.write_text(f'docroot = "{tmp_path}"\nws_ping_interval = 0\nws_max_message = 1048576\n')
    r = vw_cmd("check-config", str(cfg))
    assert r.returncode == 0, r.stderr
    cfg.write_text(f'docroot = "{tmp_path}"\nws_ping_timeout = "20"\n')
    r = vw_cmd("check-config", str(cfg))
    assert r.returncode != 0 and "ws_ping_timeout" in r.stderr and "Traceback" not in r.stderr


def test_request_body_option():
    out = vw_cmd("run", "--help")
    assert out.returncode == 0 and "--request-body" in out.stdout and "spool" in out.stdout
    r = vw_cmd("run", "app:app", "--request-body", "foo")
    assert r.returncode == 2
    _one_line_error(r, "--request-body", "'foo'", "stream", "spool")


def test_port_in_use():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        _one_line_error(vw_cmd("serve", "--port", str(port)), "already in use")


def test_port_in_use_by_another_vw(docroot):
    srv = Server([str(docroot)])
    try:
        _one_line_error(vw_cmd("serve", str(docroot), "--port", str(srv.port)), "already in use")
    finally:
        srv.stop()


def test_realtime_refused_without_permission():
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed for this test"
    # Drop CAP_SYS_NICE from the bounding set: even root then cannot use SCHED_RR.
    prefix = [setpriv, "--bounding-set=-sys_nice", "--inh-caps=-sys_nice"]
    r = subprocess.run([*prefix, sys.executable, "-c",
                        "import resource; resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0)); "
                        "import sys; from vw.cli import main; sys.exit(main(['serve', '--realtime', '--port', '0']))"],
                       capture_output=True, text=True, timeout=20)
    _one_line_error(r, "--realtime")


def test_realtime_granted_when_permitted(docroot):
    import os
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except PermissionError:
        pytest.fail("this test runs as root (CI does); SCHED_RR was refused")
    srv = Server([str(docroot), "--realtime"])
    try:
        pid = srv.workers[0][0]
        assert os.sched_getscheduler(pid) == os.SCHED_RR
        assert os.sched_getparam(pid).sched_priority == os.sched_get_priority_max(os.SCHED_RR)
        assert get(srv.port, "/1b").body == b"x"
    finally:
        srv.stop()


def test_default_docroot_is_the_demo():
    srv = Server([])
    try:
        r = get(srv.port, "/")
        assert r.status == 200 and b"vw" in r.body
        assert len(get(srv.port, "/1b").body) == 1
        assert len(get(srv.port, "/100.html").body) == 100
    finally:
        srv.stop()


def test_uring_serves_tls_and_an_unknown_io_is_one_line(tmp_path):
    docroot = tmp_path / "www"
    docroot.mkdir()
    (docroot / "1b").write_bytes(b"x")
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    pem = tmp_path / "cert.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    _one_line_error(vw_cmd("serve", str(docroot), "--io", "kqueue"), "--io", "kqueue")
    for io in ("uring", "auto"):
        srv = Server([str(docroot), "--io", io, "--tls-cert", str(pem)])
        try:
            assert "io_uring;" in srv.lines[0], srv.lines[0]
            out = subprocess.run(["curl", "-s", "--cacert", str(tmp_path / "ca.pem"), "-o", "-", "-w", " %{http_code}",
                                  f"https://localhost:{srv.port}/1b"], capture_output=True, text=True, timeout=20)
            assert out.stdout == "x 200", out.stdout + out.stderr
        finally:
            assert srv.stop() == 0


def test_where_the_kernel_forbids_io_uring_uring_is_refused_and_auto_falls_back(tmp_path):
    """kernel.io_uring_disabled = 2 (as a hardened host or a container's profile would have it)."""
    knob = "/proc/sys/kernel/io_uring_disabled"
    try:
        before = open(knob).read().strip()
        with open(knob, "w") as f:
            f.write("2")
    except OSError as e:
        pytest.skip(f"cannot set {knob} here ({e}): needs root")
    try:
        r = vw_cmd("serve", str(tmp_path), "--port", "0", "--io", "uring")
        _one_line_error(r, "--io uring: io_uring cannot be used here (io_uring_setup: Operation not permitted",
                        "kernel.io_uring_disabled = 2", "use --io epoll or auto")
        srv = Server([str(tmp_path), "--io", "auto"])
        try:
            assert "epoll;" in srv.lines[0]
            assert any(line.startswith("vw io_uring not used (io_uring_setup: Operation not permitted")
                       and line.endswith("kernel.io_uring_disabled = 2): serving on epoll") for line in srv.lines), srv.lines
            assert get(srv.port, "/").status in (200, 404)
        finally:
            assert srv.stop() == 0
    finally:
        with open(knob, "w") as f:
            f.write(before)
