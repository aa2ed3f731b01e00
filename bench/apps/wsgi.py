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
    elif path == "/events":  # server-sent events, one every 0.2 s
        def events():
            for i in range(5):
                if i:
                    time.sleep(0.2)
                yield f"data: {i}\n\n".encode()
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return events()
    elif path == "/big":  # 200 MiB generated in 64 KiB pieces
        piece = b"x" * 65536
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (piece for _ in range(3200))
    elif path == "/json":
        body = json.dumps({"message": "Hello, world!"}).encode()
        ctype = "application/json"
    else:
        start_response("404 Not Found", [("Content-Length", "9")])
        return [b"Not Found"]
    start_response("200 OK", [("Content-Type", ctype),
                              ("Content-Length", str(len(body)))])
    return [body]
