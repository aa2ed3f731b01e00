"""vw.App with WebSocket routes (tests/ws/test_ws_native.py)."""

import asyncio

import vw

app = vw.App()
ended: list = []


@app.get("/")
def index(request):
    return "plain"


@app.websocket("/echo/{name}")
async def echo(ws):
    assert ws.headers["sec-websocket-version"] == "13"
    await ws.accept(subprotocol=ws.subprotocols[0] if ws.subprotocols else None, headers={"x-room": ws.params["name"]})
    try:
        async for message in ws:
            if message == "close":
                await ws.close(4002, "as asked")
                return
            if message == "boom":
                raise ValueError("a bug in the handler")
            await ws.send(message if isinstance(message, bytes) else f"{ws.params['name']}: {message}?{ws.query}")
    finally:
        ended.append(ws.params["name"])


@app.websocket("/implicit")
async def implicit(ws):
    await ws.send("accepted by the first send")
    try:
        await ws.receive()
    except vw.WebSocketClosed as e:
        ended.append(f"closed {e.code}")


@app.websocket("/deny")
async def deny(ws):
    return  # never accepted: 403


@app.websocket("/flood")
async def flood(ws):
    for _ in range(512):  # 32 MiB to a client that may not read
        await ws.send(b"\x00" * 65536)
    await asyncio.sleep(3600)


@app.get("/ended")
def get_ended(request):
    return ended


@app.websocket("/raw-echo")
async def raw_echo(ws):
    """Every message back as it came (Autobahn|Testsuite's fuzzingclient drives it)."""
    await ws.accept()
    async for message in ws:
        await ws.send(message)
