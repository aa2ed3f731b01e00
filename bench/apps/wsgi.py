"""The app benchmark as a WSGI callable (vw, granian, bjoern, socketify)."""
import json
import time

HELLO = b"Hello, world!"


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/":
        body, ctype = HELLO, "text/plain; charset=utf-8"
    elif path == "/wait":  # a view that waits 10 ms on a database
        time.sleep(0.01)
        body, ctype = HELLO, "text/plain; charset=utf-8"
    elif path == "/json":
        body = json.dumps({"message": "Hello, world!"}).encode()
        ctype = "application/json"
    else:
        start_response("404 Not Found", [("Content-Length", "9")])
        return [b"Not Found"]
    start_response("200 OK", [("Content-Type", ctype),
                              ("Content-Length", str(len(body)))])
    return [body]
