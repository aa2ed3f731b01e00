"""vw's own messages through Python's logging (issue 25): a dictConfig sends them, and the
tracebacks of applications that raise, to a JSON file; --log-level hides the info lines; the
default stays one readable line per event on stderr."""

from __future__ import annotations

import json
import re
import time

from conftest import APPS, Server, get, vw_cmd


def test_a_dict_config_sends_start_lines_and_tracebacks_to_a_json_file(tmp_path):
    out = tmp_path / "vw.jsonl"
    conf = tmp_path / "logging.json"
    conf.write_text(json.dumps({
        "version": 1,
        "formatters": {"json": {"()": "json_log.JsonFormatter"}, "plain": {"format": "%(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(out), "formatter": "json"},
                     "err": {"class": "logging.StreamHandler", "formatter": "plain"}},
        "loggers": {"vw.error": {"handlers": ["file", "err"], "level": "INFO", "propagate": False}},
    }))
    srv = Server(["boom_app:app", "--log-config", str(conf)], command="run", cwd=APPS)
    try:
        assert get(srv.port, "/").status == 500
        deadline = time.monotonic() + 10
        while True:
            records = [json.loads(l) for l in out.read_text().splitlines()] if out.exists() else []
            errors = [r for r in records if r["level"] == "ERROR"]
            if errors or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert any(r["message"].startswith("vw serving boom_app:app") and r["level"] == "INFO" for r in records), records
        assert any(re.match(r"worker 0 pid \d+ cpu \d+", r["message"]) for r in records), records
        assert errors and "answering 500" in errors[0]["message"], records
        assert "Traceback (most recent call last)" in errors[0]["traceback"] and "RuntimeError: the database is down" in errors[0]["traceback"], errors
    finally:
        assert srv.stop() == 0


def test_log_level_and_the_default_output(tmp_path):
    srv = Server(["boom_app:app"], command="run", cwd=APPS)
    try:
        assert srv.lines[0].startswith("vw serving boom_app:app"), "the default: one plain line per event"
        assert get(srv.port, "/").status == 500
        srv.wait_for(re.compile(r"^Traceback \(most recent call last\):"))
    finally:
        assert srv.stop() == 0
    r = vw_cmd("run", "boom_app:app", "--log-level", "warning", "--log-config", str(tmp_path / "none.json"), "--port", "0",
               cwd=APPS)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--log-config" in r.stderr, r.stderr
