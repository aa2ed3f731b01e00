"""Loading applications as users name them (issue 25): factories (--factory, and gunicorn's
`module:make_app()` call syntax) called in each worker, --app-dir, --env-file before the import,
a callable of the wrong shape refused at start in one line, and --lifespan."""

from __future__ import annotations

import re

from conftest import APPS, Server, get, run_app, vw_cmd


def test_a_factory_is_called_once_in_each_worker():
    srv = run_app("factory_app:create_app", "--factory", workers=2)
    try:
        assert "factory_app:create_app (factory, called in each worker)" in srv.wait_for(re.compile("vw serving")).string
        pids = {p for p, _ in srv.workers.values()}
        seen = {}
        for _ in range(40):
            r = get(srv.port, "/")
            assert r.status == 200, r.body
            m = re.fullmatch(rb"made pid=(\d+) calls=(\d+) env=none", r.body)
            seen[int(m.group(1))] = int(m.group(2))
        assert set(seen) <= pids and all(c == 1 for c in seen.values()), seen
    finally:
        assert srv.stop() == 0


def test_the_call_syntax_with_literal_arguments():
    srv = run_app("factory_app:create_app('hello')")
    try:
        assert get(srv.port, "/").body.startswith(b"hello pid=")
    finally:
        assert srv.stop() == 0
    r = vw_cmd("run", "factory_app:create_app(open('x'))", "--port", "0", cwd=APPS)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "literal arguments" in r.stderr, r.stderr


def test_a_factory_given_as_the_application_is_one_line_naming_the_fix():
    r = vw_cmd("run", "factory_app:create_app", "--port", "0", cwd=APPS)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "not a WSGI application" in r.stderr and "use --factory (or factory_app:create_app())" in r.stderr, r.stderr
    r = vw_cmd("run", "factory_app:wsgi", "--interface", "asgi", "--port", "0", cwd=APPS)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--interface wsgi" in r.stderr, r.stderr


def test_app_dir_and_env_file(tmp_path):
    env = tmp_path / "app.env"
    env.write_text("# the application's settings\nVW_TEST_GREETING=from-the-env-file\nexport OTHER='quoted value'\n")
    srv = Server(["factory_app:wsgi", "--app-dir", APPS, "--env-file", str(env)], command="run", cwd=str(tmp_path))
    try:
        assert get(srv.port, "/").body == b"wsgi env=from-the-env-file"
    finally:
        assert srv.stop() == 0
    r = vw_cmd("run", "factory_app:wsgi", "--app-dir", APPS, "--env-file", str(tmp_path / "missing.env"), "--port", "0")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--env-file" in r.stderr, r.stderr
    r = vw_cmd("run", "factory_app:wsgi", "--app-dir", str(tmp_path / "nowhere"), "--port", "0")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--app-dir" in r.stderr, r.stderr


def test_lifespan_auto_serves_an_application_that_raises_on_it_and_on_refuses():
    srv = run_app("factory_app:no_lifespan")
    try:
        srv.wait_for(re.compile("does not support lifespan .RuntimeError: this application knows nothing"))
        assert get(srv.port, "/").body == b"served"
    finally:
        assert srv.stop() == 0
    srv = run_app("factory_app:no_lifespan", "--lifespan", "off")
    try:
        assert get(srv.port, "/").body == b"served"
        assert not any("support lifespan" in line for line in srv.lines), srv.lines
    finally:
        assert srv.stop() == 0
    r = vw_cmd("run", "factory_app:no_lifespan", "--lifespan", "on", "--port", "0", "--workers", "1", cwd=APPS, timeout=30)
    assert r.returncode != 0 and "RuntimeError: this application knows nothing of lifespan" in r.stderr, r.stderr
