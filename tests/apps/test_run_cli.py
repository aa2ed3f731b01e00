"""`vw run`: bad applications give one clear line; --reload restarts on a code change."""

from __future__ import annotations

import time

from conftest import APPS, Server, get, vw_cmd


def _one_line(result, *words):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vw: error: "), result.stderr
    for w in words:
        assert w in lines[0], lines[0]


def run(*args):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "vw", "run", *args, "--port", "0"], capture_output=True,
                          text=True, cwd=APPS, timeout=30)


def test_import_errors_are_one_line():
    _one_line(run("no_such_module:app"), "no module named 'no_such_module'")
    _one_line(run("broken_app:app"), "nonexistent_dependency_for_vw_tests")
    _one_line(run("raising_app:app"), "ValueError: configuration missing", "raising_app.py:2")
    _one_line(run("native_app:nope"), "no attribute 'nope'")
    _one_line(run("native_app"), "MODULE:ATTRIBUTE")
    _one_line(run("wsgi_app:CLOSED"), "not callable")
    _one_line(run("wsgi_app:app", "--static", "assets"), "/PREFIX=DIR")
    _one_line(run("wsgi_app:app", "--static", "/a=/no/such/dir"), "does not exist")
    _one_line(run("wsgi_app:app", "--interface", "native"), "vw.App")
    assert vw_cmd("run", "--help").returncode == 0


def test_reload_restarts_on_change(tmp_path):
    src = tmp_path / "reloadable.py"
    src.write_text("import vw\napp = vw.App()\n@app.get('/')\ndef i(r):\n    return 'one'\n")
    srv = Server(["reloadable:app", "--reload"], command="run", cwd=str(tmp_path))
    try:
        assert get(srv.port, "/").body == b"one"
        time.sleep(1.1)  # a new mtime
        src.write_text("import vw\napp = vw.App()\n@app.get('/')\ndef i(r):\n    return 'two'\n")
        deadline = time.monotonic() + 15
        bodies = []
        while not bodies or bodies[-1] != b"two":
            # Every request is answered, by the old code or the new: none fails between them.
            r = get(srv.port, "/")
            assert r.status == 200, (r.status, r.body)
            bodies.append(r.body)
            assert time.monotonic() < deadline, f"not reloaded; log: {srv.lines}"
            time.sleep(0.05)
        assert set(bodies) <= {b"one", b"two"} and bodies == sorted(bodies, key=lambda b: b == b"two"), bodies
        # A change that does not import keeps the running version.
        time.sleep(1.1)
        src.write_text("import vw\nraise SystemExit('broken on purpose')\n")
        srv.wait_for(__import__("re").compile("not reloading"), timeout=10)
        assert get(srv.port, "/").body == b"two"
    finally:
        assert srv.stop() == 0
