"""Headless Chromium driven over the DevTools protocol (--remote-debugging-pipe: commands on fd 3,
replies and events on fd 4, NUL-terminated JSON), standard library only. Used by test_clients."""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

WATCHED = ("if-none-match", "if-modified-since")


class Browser:
    def __init__(self, extra: tuple[str, ...] = ()):
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if exe is None:
            raise RuntimeError("chromium is not installed (make deps installs it)")
        self.profile = tempfile.mkdtemp(prefix="vw-chromium-")
        cmd_r, self._w = os.pipe()
        self._r, evt_w = os.pipe()

        def fds() -> None:  # the pipe ends may themselves be 3 or 4: move them out of the way first
            a = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(evt_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--no-default-browser-check", "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
             *extra, "about:blank"],
            preexec_fn=fds, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(evt_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def _recv(self, timeout: float = 20) -> dict:
        while b"\0" not in self._buf:
            if not select.select([self._r], [], [], timeout)[0]:
                raise TimeoutError("no message from chromium")
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            m = self._recv()
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, timeout: float = 15) -> dict:
        end = time.time() + timeout
        while True:
            for i, m in enumerate(self.events):
                if m.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._recv(max(0.01, end - time.time())))

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def load_and_reload(url: str, settle: float = 0.5, extra: tuple[str, ...] = ()) -> list[list[dict]]:
    """Load `url`, then reload it. For each, every response: url, wire_status (the status on the
    network, None when served from the browser's cache), the conditional fields it sent and the
    protocol it came by ("http/1.1", "h2"). `extra`: more Chromium flags."""
    b = Browser(extra)
    try:
        target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sess = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        b.send("Network.enable", session=sess)
        b.send("Page.enable", session=sess)
        rounds = []
        for action in ("navigate", "reload"):
            b.events.clear()
            if action == "navigate":
                b.send("Page.navigate", {"url": url}, session=sess)
            else:
                b.send("Page.reload", {"ignoreCache": False}, session=sess)
            b.wait_event("Page.loadEventFired")
            time.sleep(settle)
            b.send("Runtime.evaluate", {"expression": "1"}, session=sess)
            sent: dict[str, dict] = {}
            wire: dict[str, int] = {}
            seen = []
            for m in b.events:
                p, method = m.get("params", {}), m.get("method")
                if method == "Network.requestWillBeSentExtraInfo":
                    sent[p["requestId"]] = p.get("headers", {})
                elif method == "Network.responseReceivedExtraInfo":
                    wire[p["requestId"]] = p.get("statusCode")
                elif method == "Network.responseReceived":
                    seen.append((p["requestId"], p["response"]["url"], p["response"].get("protocol")))
            rounds.append([{"url": u, "wire_status": wire.get(rid), "protocol": proto,
                            "conditional": sorted(k.lower() for k in sent.get(rid, {}) if k.lower() in WATCHED)}
                           for rid, u, proto in seen])
        return rounds
    finally:
        b.close()
