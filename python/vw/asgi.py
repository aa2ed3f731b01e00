"""ASGI 3 in a worker: an asyncio event loop (uvloop when installed) that drives the Rust core.

The core's epoll descriptor is a reader on the loop; each time it is readable, one call into Rust
handles every ready event (static hits never come back to Python) and starts a task per
application request (a `_core.Run`). Lifespan startup runs before the first request, shutdown
after the last.
"""

from __future__ import annotations

import asyncio
import collections.abc

from vw import _core

# What each request's task runs (the application's coroutine, with the end of the exchange
# reported to the core) is a coroutine written in Rust: asyncio accepts it as one.
collections.abc.Coroutine.register(_core.Run)


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # type: ignore

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop


class LifespanError(Exception):
    """The application reported lifespan.startup.failed (or failed during startup)."""


class Lifespan:
    """Runs the lifespan protocol; an application that does not support it is served anyway."""

    def __init__(self, app, state: dict, mode: str = "auto"):
        self.app = app
        self.mode = mode  # --lifespan: auto, on or off (uvicorn's meanings)
        self.state = state
        self.incoming: asyncio.Queue = asyncio.Queue()
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.failure: str | None = None
        self.supported = True
        self.task: asyncio.Task | None = None

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.4"}, "state": self.state}
        try:
            await self.app(scope, self.incoming.get, self._send)
        except BaseException as e:  # an app without lifespan support raises on the unknown scope
            if not self.started.is_set() and self.failure is None:
                self.supported = False
                if self.mode == "on":
                    self.failure = f"{type(e).__name__}: {e}"
                else:  # auto: whatever it raised, it is served without lifespan (as uvicorn does)
                    from vw.console import log

                    log(f"vw: the ASGI application does not support lifespan ({type(e).__name__}: {e}); "
                        f"serving it without (--lifespan on makes this an error)")
        finally:
            self.started.set()
            self.stopped.set()

    async def _send(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            self.started.set()
        elif kind == "lifespan.startup.failed":
            self.failure = message.get("message", "") or "lifespan.startup.failed"
            self.started.set()
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            self.stopped.set()

    async def startup(self) -> None:
        if self.mode == "off":
            self.supported = False
            return
        self.task = asyncio.get_running_loop().create_task(self._run())
        await self.incoming.put({"type": "lifespan.startup"})
        await self.started.wait()
        if self.failure:
            raise LifespanError(self.failure)

    async def shutdown(self, timeout: float = 5.0) -> None:
        if not self.supported or self.task is None or self.task.done():
            return
        await self.incoming.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(self.stopped.wait(), timeout)
        except asyncio.TimeoutError:
            from vw.console import warn

            warn("vw: lifespan shutdown did not finish in time")


def serve(listen_fd: int, mounts: list, mime: dict, app, server: tuple, lifespan_mode: str = "auto", **options) -> None:
    """Serve until the core stops (it reads the stop signals itself), then run lifespan shutdown."""
    loop = new_event_loop()
    state: dict = {}
    lifespan = Lifespan(app, state, lifespan_mode)
    loop.run_until_complete(lifespan.startup())
    from vw.runtime import settle_gc

    settle_gc()  # after startup: what it made lives as long as the worker
    holder: dict = {}

    def wake() -> None:
        holder["core"].wake()

    core = _core.asgi_worker(listen_fd, mounts, mime, app=app, event_loop=loop, wake=wake, state=state,
                             server=server, **options)
    holder["core"] = core
    done = loop.create_future()

    def ready() -> None:
        if not done.done() and not core.poll():
            loop.remove_reader(core.fileno())
            done.set_result(None)

    def tick() -> None:  # deadlines and the stop drain are checked even when nothing is readable
        ready()
        if not done.done():
            loop.call_later(0.25, tick)

    loop.add_reader(core.fileno(), ready)
    loop.call_later(0.25, tick)
    try:
        loop.run_until_complete(done)
        loop.run_until_complete(lifespan.shutdown())
    finally:
        core.close()  # the access log's last lines: the worker exits without dropping `core`
        loop.close()
