"""A vw.App exercising the handler API (used by tests/apps/test_native.py)."""

import asyncio
import os
import time

import vw

app = vw.App()


@app.get("/")
def index(req):
    return "Hello, world!"


@app.get("/whoami")
def whoami(request):
    return {"client": list(request.client) if request.client else None, "scheme": request.scheme}


@app.get("/bytes")
def raw(req):
    return b"\x00\x01binary"


@app.get("/json")
def js(req):
    return {"message": "Hello, world!", "list": [1, 2.5, None, True, False], "text": "é\"\n", "nested": {"a": []}}


@app.get("/items/{kind}/{id}")
def item(req):
    return {"params": req.params, "query": req.query, "path": req.path, "method": req.method}


@app.route("/echo", methods=["POST", "PUT"])
def echo(req):
    return vw.Response(req.body, status=201, headers={"X-Length": str(len(req.body))},
                       content_type="application/octet-stream")


@app.post("/json-in")
def json_in(req):
    data = req.json()
    return {"got": data, "type": req.headers.get("content-type")}


@app.get("/headers")
def headers(req):
    return req.headers


@app.get("/none")
def nothing(req):
    return None


@app.get("/boom")
def boom(req):
    raise RuntimeError("kaboom")


@app.get("/bad-type")
def bad_type(req):
    return 42


@app.get("/inject")
def inject(req):
    return vw.Response("x", headers={"X-Evil": "a\r\nSet-Cookie: pwned=1"})


@app.get("/async")
async def slow(req):
    await asyncio.sleep(0.01)
    return {"async": True, "pid": os.getpid()}


@app.get("/status/{code}")
def status(req):
    return vw.Response("", status=int(req.params["code"]))


@app.get("/sleep")
def sleeper(req):
    time.sleep(0.3)  # a sync handler that waits on a database
    return "slept"


@app.get("/async-wait")
async def async_wait(req):
    await asyncio.sleep(0.3)  # an async handler that awaits a database
    return {"waited": req.query}


@app.get("/gen")
def gen(req):
    def pieces():
        yield "first "
        time.sleep(0.4)
        yield b"second"
    return pieces()


@app.get("/events")
def events(req):
    def stream():
        for i in range(3):
            if i:
                time.sleep(0.2)
            yield f"data: {i}\n\n"
    return vw.Response(stream(), content_type="text/event-stream", headers={"Cache-Control": "no-cache"})


state = {"agen_closed": 0, "big_produced": 0}


@app.get("/agen")
async def agen(req):
    async def pieces():
        try:
            for i in range(3):
                if i:
                    await asyncio.sleep(0.2)  # an upstream that answers in parts
                yield f"part {i};"
        finally:
            state["agen_closed"] += 1
    return vw.Response(pieces(), content_type="text/plain")


@app.get("/agen-sync")
async def agen_sync(req):
    await asyncio.sleep(0)
    return iter([b"a", "b", b"c"])  # a plain iterator from an async handler streams too


@app.get("/agen-big")
async def agen_big(req):
    size = int(req.query or 0)
    state["big_produced"] = 0

    async def blocks():
        block = b"y" * 65536
        left = size
        while left > 0:
            piece = block[:min(left, len(block))]
            left -= len(piece)
            state["big_produced"] += len(piece)
            yield piece
    return blocks()


@app.get("/agen-raise")
async def agen_raise(req):
    async def pieces():
        yield b"before "
        raise RuntimeError("upstream failed mid-body")
    return pieces()


@app.get("/agen-forever")
async def agen_forever(req):
    async def ticks():
        try:
            while True:
                yield b"tick\n"
                await asyncio.sleep(0.05)
        finally:
            state["agen_closed"] += 1
    return ticks()


@app.get("/state")
def get_state(req):
    return dict(state)
