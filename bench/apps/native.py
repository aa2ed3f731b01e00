"""The app benchmark in vw's native interface: `vw run native:app`."""
import asyncio
import time

import vw

app = vw.App()


@app.get("/")
def hello(req):
    return "Hello, world!"  # text/plain


@app.get("/json")
def json_(req):
    return {"message": "Hello, world!"}  # application/json


@app.get("/wait")
def wait(req):
    time.sleep(0.01)  # a handler that waits 10 ms on a database
    return "Hello, world!"


@app.get("/await")
async def await_(req):
    await asyncio.sleep(0.01)
    return "Hello, world!"


@app.websocket("/ws")
async def ws_echo(ws):  # bench/ws.py: every message back
    async for message in ws:
        await ws.send(message)


ROOM: set = set()


@app.websocket("/room")
async def room(ws):  # bench/ws.py: every message to every member
    ROOM.add(ws)
    try:
        async for message in ws:
            for member in list(ROOM):
                await member.send(message)
    finally:
        ROOM.discard(ws)
