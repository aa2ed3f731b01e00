"""A WSGI app that leaks on purpose (as real ones do): each request to /leak keeps 1 MiB for
ever. /pid says which worker process answered."""

import os

KEPT = []


def app(environ, start_response):
    if environ["PATH_INFO"] == "/leak":
        KEPT.append(bytearray(1 << 20))  # written, so resident
        for i in range(0, 1 << 20, 4096):
            KEPT[-1][i] = 1
    body = f"{os.getpid()} {len(KEPT)}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
