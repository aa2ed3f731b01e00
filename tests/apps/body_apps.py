"""Applications that read a request body the client breaks (tests/apps/test_broken_bodies.py):
each interface, reading until the end; on /catch, catching what it is told and answering 200
(the client must get its 4xx all the same), elsewhere failing (a 500 of the application's)."""

import vw


def wsgi(environ, start_response):
    try:
        body = environ["wsgi.input"].read()
    except OSError:
        if environ["PATH_INFO"].startswith("/catch"):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"caught"]
        raise
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(len(body)).encode()]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    n = 0
    while True:
        m = await receive()
        if m["type"] == "http.disconnect":
            if scope["path"].startswith("/catch"):
                await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"caught"})
                return
            raise RuntimeError("the body broke")
        n += len(m.get("body", b""))
        if not m.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(n).encode()})


native = vw.App()


@native.post("/{any}")
def upload(request):
    return str(len(request.body))
