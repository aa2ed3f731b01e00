"""A WSGI application whose /hang holds the GIL in C (libc's sleep through ctypes.PyDLL, which
keeps the GIL): the worker's loop stops turning. /wait sleeps in Python (the GIL released): a
handler thread that waits, which must never make the worker hung."""

import ctypes
import os
import time


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/hang":
        ctypes.PyDLL(None).sleep(60)
    elif path == "/wait":
        time.sleep(float(environ["QUERY_STRING"] or 5))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"pid={os.getpid()}".encode()]
