"""The app benchmark as a raw ASGI 3 app (granian, uvicorn, socketify)."""
import asyncio
import json

HELLO = b"Hello, world!"
ROOM: set = set()  # the send() of every WebSocket in the broadcast room


async def app(scope, receive, send):
    if scope["type"] == "lifespan":  # nothing to set up, but say so
        while True:
            event = (await receive())["type"]
            await send({"type": event + ".complete"})
            if event == "lifespan.shutdown":
                return
    if scope["type"] == "websocket" and scope["path"] == "/room":  # broadcast (bench/ws.py)
        await receive()
        await send({"type": "websocket.accept"})
        ROOM.add(send)
        try:
            while True:
                m = await receive()
                if m["type"] == "websocket.disconnect":
                    return
                out = {"type": "websocket.send", "bytes": m.get("bytes"), "text": m.get("text")}
                for member in list(ROOM):
                    await member(out)
        finally:
            ROOM.discard(send)
    if scope["type"] == "websocket":  # echo every message (bench/ws.py)
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            m = await receive()
            if m["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "bytes": m.get("bytes"), "text": m.get("text")})
    path = scope["path"]
    if path == "/wait":  # a view that awaits 10 ms (a database query)
        await asyncio.sleep(0.01)
        path = "/"
    if path == "/":
        status, body, ctype = 200, HELLO, b"text/plain; charset=utf-8"
    elif path == "/json":
        body = json.dumps({"message": "Hello, world!"}).encode()
        status, ctype = 200, b"application/json"
    else:
        status, body, ctype = 404, b"Not Found", b"text/plain"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
