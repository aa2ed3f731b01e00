"""A raw WSGI application exercising PEP 3333 (used by tests/apps/test_wsgi.py)."""

import hashlib
import json
import os
import sys
import time

CLOSED = os.environ.get("VW_TEST_CLOSE_MARKER", "/tmp/vw-close-marker")


class Tracked:
    """An iterable whose close() leaves a mark, to prove the server calls it."""

    def __init__(self, chunks, fail=False):
        self.chunks, self.fail = chunks, fail

    def __iter__(self):
        for c in self.chunks:
            yield c
        if self.fail:
            raise RuntimeError("failed while iterating")

    def close(self):
        with open(CLOSED, "a") as f:
            f.write("closed\n")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/environ"):
        keys = ["REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL",
                "SERVER_NAME", "SERVER_PORT", "REMOTE_ADDR", "CONTENT_TYPE", "CONTENT_LENGTH",
                "HTTP_HOST", "HTTP_X_MULTI", "HTTP_COOKIE", "HTTP_X_UNDER_SCORE", "wsgi.url_scheme",
                "wsgi.multithread", "wsgi.run_once", "REQUEST_URI"]
        out = {k: environ.get(k) for k in keys}
        out["wsgi.version"] = list(environ["wsgi.version"])
        out["errors_has_write"] = hasattr(environ["wsgi.errors"], "write")
        out["body"] = environ["wsgi.input"].read().decode("latin-1")
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(out).encode()]
    if path == "/spooled":  # when it was called, and the body as it got it (--request-body spool)
        called = time.monotonic()
        inp = environ["wsgi.input"]
        try:
            in_file = inp.fileno() >= 0
        except (AttributeError, OSError):
            in_file = False
        body = inp.read()
        out = {"called": called, "content_length": environ.get("CONTENT_LENGTH"), "n": len(body),
               "sha256": hashlib.sha256(body).hexdigest(), "in_file": in_file}
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(out).encode()]
    if path == "/upload":
        h = hashlib.sha256()
        n = 0
        inp = environ["wsgi.input"]
        while True:
            block = inp.read(1 << 16)
            if not block:
                break
            h.update(block)
            n += len(block)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{n} {h.hexdigest()}".encode()]
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"then ", b"returned"]
    if path == "/write-stream":  # write() sends at once; the iterable follows
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"first ")
        time.sleep(0.4)
        return [b"second"]
    if path == "/generator":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Tracked([b"a", b"b", b"c"])
    if path == "/fail-midway":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Tracked([b"a"], fail=True)
    if path == "/exc-info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("late error")
        except ValueError:
            start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"recovered"]
    if path == "/write-then-error":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"partial ")
        try:
            raise ValueError("failed after writing")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"error page"]
    if path == "/twice":
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b"never"]
    if path == "/file":
        f = open(environ["VW_FILE"] if "VW_FILE" in environ else os.environ["VW_TEST_FILE"], "rb")
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f)
    if path == "/inject":
        start_response("200 OK", [("X-Evil", "a\r\nSet-Cookie: pwned=1")])
        return [b"x"]
    if path == "/head-length":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"hello"]
    if path == "/boom":
        raise RuntimeError("kaboom")
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such path\n"]
