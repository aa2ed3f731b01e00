"""vw.toml: options from a file, flags winning over it, and errors that name the key and line."""

from __future__ import annotations

from conftest import APPS, Reader, Server, connect, get, vw_cmd


def _one_line(r, *words):
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_serve_from_a_config_file_and_flags_win(docroot, tmp_path):
    cfg = tmp_path / "vw.toml"
    cfg.write_text(f'# serve the test docroot\ndocroot = "{docroot}"\nmax_headers = 3\nheader_timeout = 5\n')
    srv = Server(["--config", str(cfg)])
    try:
        assert get(srv.port, "/1b").body == b"x"
        with connect(srv.port) as s:
            s.sendall(b"GET /1b HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n")
            assert Reader(s).response().status == 431  # 4 fields > max_headers from the file
    finally:
        srv.stop()
    srv = Server(["--config", str(cfg), "--max-headers", "10"])
    try:
        r = get(srv.port, "/1b", headers="Host: t\r\nA: 1\r\nB: 2\r\nC: 3\r\n")
        assert r.status == 200, "the flag overrides the file"
    finally:
        srv.stop()


def test_run_from_a_config_file(tmp_path, docroot):
    cfg = tmp_path / "vw.toml"
    cfg.write_text(f'app = "native_app:app"\ninterface = "native"\nthreads = 2\n[static]\n"/files" = "{docroot}"\n')
    srv = Server(["--config", str(cfg)], command="run", cwd=APPS)
    try:
        assert get(srv.port, "/").body == b"Hello, world!"
        assert get(srv.port, "/files/1b").body == b"x"
        # threads = 2: four handlers that sleep 0.3 s take two turns, not one
        import threading
        import time
        t0 = time.monotonic()
        ts = [threading.Thread(target=lambda: get(srv.port, "/sleep")) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
        assert time.monotonic() - t0 >= 0.55, "the file's threads = 2 limits the handlers that wait"
    finally:
        srv.stop()


def test_errors_name_the_key_and_the_line(tmp_path):
    cfg = tmp_path / "vw.toml"
    cfg.write_text('port = 0\n\nworkerz = 2\n')
    _one_line(vw_cmd("serve", "--config", str(cfg)), "line 3", "unknown key 'workerz'")
    cfg.write_text('port = 0\nheader_timeout = 0\n')
    _one_line(vw_cmd("serve", "--config", str(cfg)), "line 2", "--header-timeout")
    cfg.write_text('port = "eighty"\n')
    _one_line(vw_cmd("serve", "--config", str(cfg)), "line 1", "port takes a whole number")
    cfg.write_text('port = \n')
    _one_line(vw_cmd("serve", "--config", str(cfg)), "line 1")
    cfg.write_text(f'docroot = "{tmp_path / "missing"}"\n')
    _one_line(vw_cmd("serve", "--config", str(cfg)), "line 1", "does not exist")
    _one_line(vw_cmd("serve", "--config", str(tmp_path / "nope.toml")), "cannot read config")


def test_request_body_key(tmp_path, docroot):
    cfg = tmp_path / "vw.toml"
    cfg.write_text(f'docroot = "{docroot}"\nrequest_body = "spool"\n')
    r = vw_cmd("check-config", str(cfg))
    assert r.returncode == 0 and "OK" in r.stdout, r
    cfg.write_text('app = "wsgi_app:app"\nrequest_body = "foo"\n')
    _one_line(vw_cmd("run", "--config", str(cfg)), "line 2", "--request-body", "stream or spool", "'foo'")


def test_check_config(tmp_path, docroot):
    cfg = tmp_path / "vw.toml"
    cfg.write_text(f'docroot = "{docroot}"\nport = 9000\nworkers = 1\n')
    r = vw_cmd("check-config", str(cfg))
    assert r.returncode == 0 and "OK" in r.stdout and "9000" in r.stdout, r
    cfg.write_text('max_body = -1\n')
    _one_line(vw_cmd("check-config", str(cfg)), "line 1", "--max-body")
    cfg.write_text('app = "no_such_module_anywhere:app"\n')
    _one_line(vw_cmd("check-config", str(cfg)), "no_such_module_anywhere")


def test_cache_control_flags_win_over_the_file(tmp_path):
    from vw.cli import settings

    conf = tmp_path / "vw.toml"
    conf.write_text('[cache_control]\n"/a/" = "max-age=1"\n"/b/" = "max-age=2"\n')
    cfg = settings("serve", {"config": str(conf), "cache_control": ["/a/=no-store"]})
    rules = dict(reversed(cfg.cache_control))  # the first rule of a prefix wins
    assert rules == {"/a/": "no-store", "/b/": "max-age=2"}
    assert cfg.cache_control[0] == ("/a/", "no-store")


def test_recycling_keys(tmp_path, docroot):
    cfg = tmp_path / "vw.toml"
    cfg.write_text(f'docroot = "{docroot}"\nmax_requests = 5000\nmax_requests_jitter = 500\nmax_rss = 512\n')
    r = vw_cmd("check-config", str(cfg))
    assert r.returncode == 0 and "OK" in r.stdout, r
    cfg.write_text(f'docroot = "{docroot}"\n\nmax_requests_jitter = 500\n')
    _one_line(vw_cmd("check-config", str(cfg)), "line 3", "--max-requests-jitter needs --max-requests")
