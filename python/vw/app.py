"""vw's own handler API.

    import vw
    app = vw.App()

    @app.get("/")
    def hello(request):
        return "Hello, world!"

    @app.get("/users/{id}")
    def user(request):
        return {"id": request.params["id"]}

A handler takes the request (``method``, ``path``, ``query``, ``headers``, ``body``, ``params``,
``json()``) and returns bytes, str (text/plain), a dict or list (JSON), None (204), or a
``vw.Response(body, status=200, headers=None, content_type=None)``. Routing, header parsing and
response assembly happen in the Rust core; Python does only the handler call. ``async def``
handlers run on the worker's asyncio event loop (uvloop when installed).
"""

from __future__ import annotations

import inspect
from typing import Callable, Iterable

from vw._core import Request, Response

__all__ = ["App", "Request", "Response"]


class App:
    def __init__(self) -> None:
        self._routes: list[tuple[str, str, Callable, bool]] = []

    def route(self, path: str, methods: Iterable[str] = ("GET",)) -> Callable[[Callable], Callable]:
        """Register a handler for `path` (segments `{name}` capture into `request.params`)."""
        if not path.startswith("/"):
            raise ValueError(f"route {path!r} must start with '/'")

        def register(func: Callable) -> Callable:
            for method in methods:
                self._routes.append((method.upper(), path, func, inspect.iscoroutinefunction(func)))
            return func

        return register

    def get(self, path: str) -> Callable[[Callable], Callable]:
        return self.route(path, ("GET",))

    def post(self, path: str) -> Callable[[Callable], Callable]:
        return self.route(path, ("POST",))

    def put(self, path: str) -> Callable[[Callable], Callable]:
        return self.route(path, ("PUT",))

    def patch(self, path: str) -> Callable[[Callable], Callable]:
        return self.route(path, ("PATCH",))

    def delete(self, path: str) -> Callable[[Callable], Callable]:
        return self.route(path, ("DELETE",))

    def routes(self) -> list[tuple[str, str, Callable, bool]]:
        return list(self._routes)
