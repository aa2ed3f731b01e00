"""Headless Chromium opens a WebSocket from a page served by vw (a static mount beside a vw.App
echo route), negotiates permessage-deflate, echoes text, binary and a 200 kB message, and
closes cleanly."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_app

PAGE = Path(__file__).resolve().parent.parent / "apps" / "ws_page"


def test_chromium_echoes_over_a_websocket():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "core"))
    from browser import Browser

    srv = run_app("native_ws_app:app", "--static", f"/page={PAGE}")
    b = Browser()
    try:
        target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sess = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        b.send("Page.enable", session=sess)
        b.send("Page.navigate", {"url": f"http://127.0.0.1:{srv.port}/page/"}, session=sess)
        b.wait_event("Page.loadEventFired")
        r = b.send("Runtime.evaluate", {"expression": "window.result", "awaitPromise": True, "returnByValue": True},
                   session=sess)
        result = json.loads(r["result"]["value"])
    finally:
        b.close()
        assert srv.stop() == 0
    assert result == {"protocol": "chat", "extensions": "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
                      "code": 1000, "reason": "done", "clean": True, "texts": [True, True, True],
                      "binary": [0, 1, 2, 255]}, result
