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
