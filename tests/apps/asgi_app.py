"""A raw ASGI 3 application exercising the protocol (used by tests/apps/test_asgi.py)."""

import asyncio
import contextvars
import hashlib
import json
import time

events = []
progress = {"big": 0}  # body bytes of /big whose send() has returned
seen = contextvars.ContextVar("seen", default=None)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["greeting"] = "hello from lifespan"
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"Hello, world!"})
    elif path == "/scope":
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        out = {k: scope[k] for k in ("http_version", "method", "scheme", "path", "root_path")}
        out.update(raw_path=scope["raw_path"].decode(), query_string=scope["query_string"].decode(),
                   headers=[[k.decode(), v.decode()] for k, v in scope["headers"]],
                   client_host=scope["client"][0] if scope["client"] else None, server=list(scope["server"]), state=scope["state"].get("greeting"),
                   body=body.decode())
        data = json.dumps(out).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})
    elif path == "/spooled":  # when it was called, and the body as it got it (--request-body spool)
        called = time.monotonic()
        h, n, sizes = hashlib.sha256(), 0, []
        while True:
            m = await receive()
            h.update(m.get("body", b""))
            n += len(m.get("body", b""))
            sizes.append(len(m.get("body", b"")))
            if not m.get("more_body"):
                break
        data = json.dumps({"called": called, "n": n, "sha256": h.hexdigest(), "messages": sizes}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": data})
    elif path == "/upload":
        h = hashlib.sha256()
        n = 0
        while True:
            m = await receive()
            h.update(m.get("body", b""))
            n += len(m.get("body", b""))
            if not m.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": f"{n} {h.hexdigest()}".encode()})
    elif path == "/pathsend":  # the core sends the file
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream"), (b"content-length", b"1")]})
        await send({"type": "http.response.pathsend", "path": scope["query_string"].decode()})
    elif path == "/trailers":
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"content-type", b"text/plain"), (b"trailer", b"x-checksum")]})
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        await send({"type": "http.response.body", "body": b" world", "more_body": False})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"5eb63bbb")],
                    "more_trailers": False})
    elif path == "/extensions":
        data = json.dumps(sorted(scope.get("extensions", {}))).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": data})
    elif path == "/first":  # answers with the first body message, before the rest is sent
        m = await receive()
        out = f"{len(m['body'])} {m['more_body']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(5):
            await asyncio.sleep(0.01)
            await send({"type": "http.response.body", "body": f"part {i}\n".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif path == "/big":
        size = int(scope["query_string"] or 0)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(size).encode())]})
        block = b"x" * 65536
        left = size
        progress["big"] = 0
        while left > 0:
            piece = block[:min(left, len(block))]
            left -= len(piece)
            await send({"type": "http.response.body", "body": piece, "more_body": left > 0})
            progress["big"] += len(piece)
    elif path == "/loop":
        loop = type(asyncio.get_running_loop())
        data = f"{loop.__module__}.{loop.__qualname__}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": data})
    elif path == "/progress":
        data = json.dumps(progress).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": data})
    elif path == "/slow":
        await asyncio.sleep(0.2)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"slow"})
    elif path == "/wait-disconnect":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"waiting", "more_body": True})
        m = await receive()  # the body (empty)
        m = await receive()  # blocks until the client goes
        events.append(m["type"])
        await send({"type": "http.response.body", "body": b""})
    elif path == "/task":
        # Each request runs in a real asyncio task of its own, with its own context.
        before = asyncio.current_task()
        leaked = seen.get()
        seen.set(scope["query_string"].decode())
        await asyncio.sleep(0)
        after = asyncio.current_task()
        data = json.dumps({"task": isinstance(before, asyncio.Task), "same": before is after,
                           "leaked": leaked}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": data})
    elif path == "/events":
        data = json.dumps(events).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": data})
    elif path == "/firehose":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"z" * 65536, "more_body": True})
                await asyncio.sleep(0.05)
        except OSError:
            events.append("firehose cut")
            raise
    elif path == "/hop-by-hop":  # fields that have no place in HTTP/2 (h2 refuses a head with TE)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"te", b"gzip"), (b"connection", b"keep-alive"), (b"keep-alive", b"timeout=5"),
                                (b"upgrade", b"h2c"), (b"x-kept", b"1")]})
        await send({"type": "http.response.body", "body": b"fields"})
    elif path == "/early-hints":
        await send({"type": "http.response.start", "status": 103, "headers": []})
    elif path == "/boom":
        raise RuntimeError("kaboom")
    elif path == "/boom-late":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("late kaboom")
    elif path == "/inject":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-evil", b"a\r\nset-cookie: pwned=1")]})
        await send({"type": "http.response.body", "body": b"x"})
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"not found"})


class _Awaitable:
    def __init__(self, send):
        self.send = send

    def __await__(self):
        yield from self.send({"type": "http.response.start", "status": 200, "headers": []}).__await__()
        yield from self.send({"type": "http.response.body", "body": b"awaitable"}).__await__()


def awaitable_app(scope, receive, send):
    """An ASGI app that is not a coroutine function: it returns an awaitable object."""
    if scope["type"] != "http":
        raise ValueError("no lifespan here")
    return _Awaitable(send)
