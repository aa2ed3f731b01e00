"""SIGHUP: new workers (new code, new config) take over the same listeners; the old ones drain.
Under load, a reload loses no request."""

from __future__ import annotations

import os
import re
import signal
import time

from conftest import WORKER_RE, Server, get, load_through_reload


def test_reload_under_load_loses_nothing(docroot):
    srv = Server([str(docroot)], workers=2)
    try:
        old = {pid for pid, _ in srv.workers.values()}
        seen = len(srv.lines)
        assert load_through_reload(srv, f"http://127.0.0.1:{srv.port}/1b", 300) > 10_000, srv.lines
        assert srv.proc.poll() is None, "the supervisor keeps its pid across the reload"
        deadline = time.monotonic() + 8
        while any(os.path.exists(f"/proc/{pid}") and "zombie" not in open(f"/proc/{pid}/status").read()
                  for pid in old):
            assert time.monotonic() < deadline, ("old workers did not drain", srv.lines)
            time.sleep(0.1)
        new = {int(m.group(2)) for m in map(WORKER_RE.match, srv.lines[seen:]) if m}
        assert len(new) == 2 and not new & old, (new, old, srv.lines)
        assert get(srv.port, "/1b").body == b"x"
    finally:
        assert srv.stop() == 0


def test_sighup_with_broken_code_keeps_serving(tmp_path):
    src = tmp_path / "hupapp.py"
    src.write_text("import vw\napp = vw.App()\n@app.get('/')\ndef i(r):\n    return 'v1'\n")
    srv = Server(["hupapp:app"], command="run", cwd=str(tmp_path))
    try:
        assert get(srv.port, "/").body == b"v1"
        src.write_text("raise SystemExit('broken on purpose')\n")
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_for(re.compile("not reloading"), timeout=10)
        assert get(srv.port, "/").body == b"v1"
        src.write_text("import vw\napp = vw.App()\n@app.get('/')\ndef i(r):\n    return 'v2'\n")
        seen = len(srv.lines)
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_for(WORKER_RE, timeout=10, start=seen)
        deadline = time.monotonic() + 5
        while get(srv.port, "/").body != b"v2":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        assert srv.stop() == 0
