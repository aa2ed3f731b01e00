"""An unmodified FastAPI application with WebSocket routes: an echo with a path parameter, and a
chat room that broadcasts every message to every member."""

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()
room: set[WebSocket] = set()
left: list[int] = []


@app.websocket("/echo/{name}")
async def echo(ws: WebSocket, name: str):
    await ws.accept()
    try:
        while True:
            msg = await ws.receive_text()
            await ws.send_text(f"{name}: {msg}")
    except WebSocketDisconnect as e:
        left.append(e.code)


@app.websocket("/chat")
async def chat(ws: WebSocket):
    await ws.accept()
    room.add(ws)
    try:
        while True:
            msg = await ws.receive_text()
            for member in list(room):
                await member.send_text(msg)
    except WebSocketDisconnect:
        pass
    finally:
        room.discard(ws)


@app.get("/left")
async def gone():
    return left


@app.get("/members")
async def members():
    return len(room)
