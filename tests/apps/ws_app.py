"""A raw ASGI application with one WebSocket behaviour per path (tests/ws)."""

import asyncio
import json

events: list = []  # what the application saw at the end of each WebSocket: read through /events


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                scope["state"]["started"] = "yes"
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if scope["type"] == "http":
        body = json.dumps(events).encode() if path == "/events" else b"plain http"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})
        return
    assert (await receive())["type"] == "websocket.connect"
    if path == "/deny":
        await send({"type": "websocket.close"})
        return
    if path == "/reject":
        await send({"type": "websocket.http.response.start", "status": 401, "headers": [(b"x-why", b"token")]})
        await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"entry"})
        return
    if path == "/raise-before":
        raise RuntimeError("before the accept")
    if path == "/return-before":
        return
    offered = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": offered[-1] if offered else None,
                "headers": [(b"x-accepted", b"1")]})
    if path == "/scope":
        keep = {k: scope[k] for k in ("type", "asgi", "scheme", "path", "query_string", "subprotocols", "http_version")}
        keep["query_string"] = keep["query_string"].decode()
        keep["has_method"] = "method" in scope
        keep["state"] = scope["state"].get("started")
        keep["extensions"] = sorted(scope["extensions"])
        keep["headers"] = [k.decode() for k, _ in scope["headers"]]
        await send({"type": "websocket.send", "text": json.dumps(keep)})
    elif path == "/raise-after":
        raise RuntimeError("after the accept")
    elif path == "/return":
        return
    elif path == "/flood":
        # Sends 64 MiB to a client that may not read: send() must wait, not buffer it all.
        chunk = b"\x00" * 65536
        for _ in range(1024):
            await send({"type": "websocket.send", "bytes": chunk})
    elif path == "/sleepy":
        await asyncio.sleep(3600)  # never receives: the mailbox fills, the socket stops being read
    while True:
        m = await receive()
        if m["type"] == "websocket.disconnect":
            events.append([path, m["code"], m["reason"]])
            return
        text = m.get("text")
        if text is not None and text.startswith("close:"):
            _, code, reason = text.split(":", 2)
            await send({"type": "websocket.close", "code": int(code), "reason": reason})
            continue
        await send({"type": "websocket.send", "text": text, "bytes": m.get("bytes")})
