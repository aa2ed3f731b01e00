"""WSGI endpoints that behave like real views: they wait (a database), stream (server-sent
events, large generated bodies), and notice when the client leaves. Progress is kept in this
module so that another request can ask for it."""

import threading
import time

STATE = {"produced": 0, "closed": 0, "running": 0, "most_running": 0, "cut": 0}
LOCK = threading.Lock()


class Counted:
    """An iterable whose progress and close() can be observed from another request."""

    def __init__(self, pieces, piece_size, delay=0.0):
        self.pieces, self.piece, self.delay = pieces, b"x" * piece_size, delay

    def __iter__(self):
        for i in range(self.pieces):
            if self.delay and i:
                time.sleep(self.delay)
            STATE["produced"] += 1
            yield self.piece

    def close(self):
        with LOCK:
            STATE["closed"] += 1


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = dict(p.split("=", 1) for p in environ["QUERY_STRING"].split("&") if "=" in p)
    if path == "/wait":  # a handler that waits on a database for `s` seconds
        with LOCK:
            STATE["running"] += 1
            STATE["most_running"] = max(STATE["most_running"], STATE["running"])
        time.sleep(float(query.get("s", "0.01")))
        with LOCK:
            STATE["running"] -= 1
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
        return [b"done"]
    if path == "/quick":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"quick"]
    if path == "/events":  # server-sent events, one every `every` seconds
        every, count = float(query.get("every", "0.2")), int(query.get("n", "3"))

        def events():
            for i in range(count):
                if i:
                    time.sleep(every)
                yield f"data: {i} {time.monotonic()}\n\n".encode()

        start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
        return events()
    if path == "/big":  # a generated body of `n` pieces of `size` bytes
        n, size = int(query.get("n", "100")), int(query.get("size", "65536"))
        STATE["produced"] = 0
        headers = [("Content-Type", "application/octet-stream")]
        if query.get("length"):
            headers.append(("Content-Length", str(n * size)))
        start_response("200 OK", headers)
        return Counted(n, size, float(query.get("delay", "0")))
    if path == "/first":  # answers with the first line of the body, before the rest is sent
        line = environ["wsgi.input"].readline()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(line)))])
        return [line]
    if path == "/deny":  # answers 401 without reading the body
        start_response("401 Unauthorized", [("Content-Length", "6")])
        return [b"denied"]
    if path == "/read-later":  # waits, then reads the whole body
        time.sleep(float(query.get("s", "0.3")))
        body = environ["wsgi.input"].read()
        out = f"{len(body)}".encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(out)))])
        return [out]
    if path == "/read-or-count":  # reads the whole body; a body the client cut is counted
        try:
            environ["wsgi.input"].read()
        except OSError:
            with LOCK:
                STATE["cut"] += 1
            raise
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]
    if path == "/state":
        body = " ".join(f"{k}={v}" for k, v in STATE.items()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    start_response("404 Not Found", [("Content-Length", "0")])
    return []
