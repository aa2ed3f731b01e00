"""An unmodified FastAPI application."""

from fastapi import BackgroundTasks, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel

app = FastAPI()
done = []


class Item(BaseModel):
    name: str
    price: float


@app.get("/")
async def index():
    return {"hello": "fastapi"}


@app.get("/whoami")
async def whoami(request: Request):
    return {"client": request.client.host, "scheme": request.url.scheme, "url": str(request.url_for("index"))}


@app.get("/items/{item_id}")
def read_item(item_id: int, q: str | None = None):  # a sync endpoint: FastAPI runs it in a thread
    return {"item_id": item_id, "q": q}


@app.post("/items")
async def create_item(item: Item):
    return {"name": item.name, "price_with_tax": round(item.price * 1.2, 2)}


@app.post("/form")
async def form(name: str = Form(...), upload: UploadFile = File(...)):
    data = await upload.read()
    return {"name": name, "filename": upload.filename, "size": len(data)}


@app.get("/stream")
async def stream():
    async def gen():
        for i in range(3):
            yield f"chunk {i}\n"
    return StreamingResponse(gen(), media_type="text/plain")


def remember(value: str):
    done.append(value)


@app.post("/background")
async def background(tasks: BackgroundTasks):
    tasks.add_task(remember, "ran")
    return {"scheduled": True}


@app.get("/background")
async def background_result():
    return {"done": done}


@app.post("/count")
async def count(request: Request):
    """Starlette's request.stream(): the pieces as they arrive, and when each came."""
    import time
    pieces = []
    async for piece in request.stream():
        if piece:
            pieces.append((len(piece), time.monotonic()))
    return {"sizes": [n for n, _ in pieces], "spread": pieces[-1][1] - pieces[0][1] if pieces else 0}


@app.get("/file")
async def file():
    import os
    return FileResponse(os.path.join(os.path.dirname(__file__), "test_asgi.py"))
