"""Applications made by factories, and callables of the wrong shape (tests/apps/test_loading.py)."""

import os

made = []  # (pid, greeting) of each call, in this process
GREETING = os.environ.get("VW_TEST_GREETING", "none")  # read at import: --env-file comes first


def create_app(greeting="made"):
    made.append((os.getpid(), greeting))

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{greeting} pid={os.getpid()} calls={len(made)} env={GREETING}".encode()]

    return app


def wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"wsgi env={GREETING}".encode()]


async def no_lifespan(scope, receive, send):
    if scope["type"] == "lifespan":
        raise RuntimeError("this application knows nothing of lifespan")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"served"})
