"""A WSGI application that raises on every request (tests/python/test_logging.py)."""


def lookup(environ):
    raise RuntimeError("the database is down")


def app(environ, start_response):
    lookup(environ)
