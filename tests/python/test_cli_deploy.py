"""The command line as users type it (issue 25): --access-log before a folder or an application,
--backlog, --reload-dir/--reload-include/--reload-exclude, "1 worker"."""

from __future__ import annotations

import os
import re
import subprocess
import time

from conftest import APPS, Server, get


def test_access_log_does_not_swallow_a_docroot_or_an_application(docroot):
    srv = Server(["--access-log", str(docroot)], stdout=subprocess.PIPE)
    try:
        assert str(docroot) in srv.wait_for(re.compile("vw serving")).string
        assert get(srv.port, "/1b").body == b"x"
        line = srv.proc.stdout.readline()  # the access log went to standard output
        assert '"GET /1b HTTP/1.1" 200 ' in line, line
    finally:
        assert srv.stop() == 0
    srv = Server(["--access-log", "wsgi_app:app"], command="run", cwd=APPS)
    try:
        assert "wsgi_app:app (wsgi)" in srv.wait_for(re.compile("vw serving")).string
    finally:
        assert srv.stop() == 0
    # A file name is still a file name.
    log = docroot.parent / "access.log"
    srv = Server([str(docroot), "--access-log", str(log)])
    try:
        get(srv.port, "/1b")
    finally:
        assert srv.stop() == 0
    assert '"GET /1b HTTP/1.1" 200 ' in log.read_text()


def test_backlog_is_the_listeners_queue(docroot):
    srv = Server([str(docroot), "--backlog", "123"])
    try:
        out = subprocess.run(["ss", "-Hltn", f"sport = :{srv.port}"], capture_output=True, text=True, check=True).stdout
        # A listening socket's Send-Q is its backlog.
        assert [line.split()[2] for line in out.splitlines()] == ["123"], out
    finally:
        assert srv.stop() == 0


def test_reload_dir_watches_templates_by_glob(tmp_path):
    (tmp_path / "mysite.py").write_text("import vw\napp = vw.App()\n@app.get('/')\ndef i(r):\n    return 'up'\n")
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "page.html").write_text("<p>one</p>")
    (templates / "notes.txt").write_text("one")
    srv = Server(["mysite:app", "--reload", "--reload-dir", str(templates), "--reload-include", "*.html",
                  "--reload-exclude", "notes.*"], command="run", cwd=str(tmp_path))
    try:
        assert get(srv.port, "/").body == b"up"
        mark = len(srv.lines)
        later = time.time() + 5
        os.utime(templates / "notes.txt", (later, later))  # excluded: no reload
        os.utime(templates / "page.html", (later + 1, later + 1))
        changed = srv.wait_for(re.compile(r"changed; checking the new code"), timeout=10, start=mark)
        assert "page.html" in changed.string, srv.lines[mark:]
        assert not any("notes.txt" in line for line in srv.lines[mark:])
    finally:
        assert srv.stop() == 0


def test_a_bad_trust_list_is_one_line():
    from conftest import vw_cmd

    r = vw_cmd("serve", "--forwarded-allow-ips", "127.0.0.1,banana", "--port", "0")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "'banana' is not an IP address" in r.stderr, r.stderr


def test_header_and_no_server_header_on_static_and_application_responses(docroot):
    from conftest import run_app, vw_cmd

    srv = Server([str(docroot), "--header", "X-Frame-Options: DENY", "--header", "Strict-Transport-Security:max-age=60",
                  "--no-server-header"])
    try:
        for path in ("/1b", "/missing"):  # a kept static head, an error page
            r = get(srv.port, path)
            assert r.header("X-Frame-Options") == "DENY" and r.header("Strict-Transport-Security") == "max-age=60", r
            assert r.header("Server") is None
    finally:
        assert srv.stop() == 0
    srv = run_app("wsgi_app:app", "--header", "X-Frame-Options: DENY", "--header", "Server: edge")
    try:
        r = get(srv.port, "/environ")
        assert (r.header("X-Frame-Options"), r.header("Server")) == ("DENY", "edge"), r
        assert [k.lower() for k, _ in r.headers].count("server") == 1, r.headers
    finally:
        assert srv.stop() == 0
    r = vw_cmd("serve", "--header", "Content-Length: 5", "--port", "0")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "vw writes that field itself" in r.stderr, r.stderr
    r = vw_cmd("serve", "--header", "no colon", "--port", "0")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "NAME:VALUE" in r.stderr, r.stderr
