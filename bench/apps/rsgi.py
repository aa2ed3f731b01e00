"""The app benchmark in granian's RSGI protocol: `granian --interface rsgi rsgi:app`."""
import json

HELLO = b"Hello, world!"


async def app(scope, proto):
    path = scope.path
    if path == "/":
        proto.response_bytes(200, [("content-type", "text/plain; charset=utf-8")], HELLO)
    elif path == "/json":
        body = json.dumps({"message": "Hello, world!"}).encode()
        proto.response_bytes(200, [("content-type", "application/json")], body)
    else:
        proto.response_bytes(404, [], b"Not Found")
