"""The app benchmark in vw's native interface: `vw run native:app`."""
import vw

app = vw.App()


@app.get("/")
def hello(req):
    return "Hello, world!"  # text/plain


@app.get("/json")
def json_(req):
    return {"message": "Hello, world!"}  # application/json
