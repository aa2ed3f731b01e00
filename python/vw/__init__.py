"""vw: the fastest HTTP server for Python.

One pinned worker process per CPU, each running a small Rust event loop (``vw._core``) that parses
strict HTTP/1.1 and serves static files without entering Python. Python is the side you touch:
the ``vw`` command, configuration, process supervision and static indexing.
"""

__version__ = "0.1.0"

from vw.app import App, Request, Response  # noqa: E402
from vw.websocket import WebSocket, WebSocketClosed  # noqa: E402

__all__ = ["App", "Request", "Response", "WebSocket", "WebSocketClosed", "__version__"]
