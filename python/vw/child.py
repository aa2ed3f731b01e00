"""A worker's side of the process tree, in the forked child: pin, report, hand the listener to
the Rust loop with the application and its interface."""

from __future__ import annotations

import os
import socket
import sys

from vw import static
from vw.config import ServeConfig
from vw.console import log
from vw.privileges import drop_privileges
from vw.runtime import settle_gc

EXIT_WORKER_START_FAILED = 3


def worker_main(cfg: ServeConfig, index: int, mime: dict, mounts: list, listen_fd: int, app=None,
                interface: str | None = None, stats_addr: int = 0, tls=None, factory=None) -> int:
    """Runs in the forked child: pin, report, serve on this worker's own listener. `factory`:
    (callable, (args, kwargs)) that makes this worker's application (--factory)."""
    from vw import _core

    try:
        if factory is not None:
            from vw import loader

            app = loader.make(factory[0], factory[1], cfg.app)
            interface = loader.detect(app, cfg.interface)
            loader.check_shape(app, interface, f"the application {cfg.app} made")
        if cfg.pin:
            os.sched_setaffinity(0, {cfg.cpu_for(index)})
        if cfg.realtime and os.sched_getscheduler(0) != os.SCHED_RR:
            prio = os.sched_get_priority_max(os.SCHED_RR)
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(prio))
        if cfg.user is not None and os.geteuid() == 0:
            drop_privileges(cfg.user)  # (the supervisor has dropped already; this is a safeguard)
        sock = socket.socket(fileno=listen_fd)
        kwargs = {}
        options = dict(inline_max=cfg.inline_max, cache_max_bytes=cfg.cache_max_bytes,
                       max_body=cfg.max_body, request_body=cfg.request_body,
                       shutdown_timeout=cfg.shutdown_timeout,
                       header_timeout=cfg.header_timeout, body_timeout=cfg.body_timeout,
                       keepalive_timeout=cfg.keepalive_timeout, write_timeout=cfg.write_timeout,
                       ws_max_message=cfg.ws_max_message, ws_ping_interval=cfg.ws_ping_interval,
                       ws_ping_timeout=cfg.ws_ping_timeout,
                       max_request_line=cfg.max_request_line, max_head=cfg.max_head,
                       max_headers=cfg.max_headers, max_connections=cfg.max_connections,
                       cache_control=cfg.cache_control, compress=cfg.compress,
                       not_found_page=static.page(cfg.not_found_page, mime), stats_addr=stats_addr)
        if tls is not None:
            options["tls"] = tls
        options["forwarded_allow_ips"] = cfg.forwarded_allow_ips if cfg.proxy_headers else None
        if cfg.default_headers or not cfg.server_header:
            # a --header Server: X replaces vw's own
            server = cfg.server_header and not any(n.lower() == b"server" for n, _ in cfg.default_headers)
            options["default_headers"] = (server, cfg.default_headers)
        if cfg.http2_cleartext:
            options["http2_cleartext"] = True
        if cfg.io == "uring":
            options["io"] = "uring"
        if cfg.access_log is not None:
            options["access_log"] = (cfg.access_log, cfg.access_log_format)
        if interface == "asgi":
            from vw import asgi

            log(f"worker {index} pid {os.getpid()} cpu {_core.current_cpu()}")
            server = (cfg.listen[1], None) if cfg.listen[0] == "unix" else (cfg.host, cfg.port)  # asgiref's spec
            asgi.serve(sock.detach(), mounts, mime, app, server, lifespan_mode=cfg.lifespan, **options)
            return 0
        if interface in ("wsgi", "native"):
            options["threads"] = cfg.threads
        if interface == "wsgi":
            kwargs["wsgi"] = (app, wsgi_environ(cfg), "")
        elif interface == "native":
            kwargs["native"] = (app.routes(), _event_loop())
        log(f"worker {index} pid {os.getpid()} cpu {_core.current_cpu()}")
        settle_gc()
        _core.run_worker(sock.detach(), mounts, mime, **kwargs, **options)
        return 0
    except Exception as e:  # one line in the log; the supervisor decides what happens next
        log(f"vw: worker {index}: {type(e).__name__}: {e}", 40)
        return EXIT_WORKER_START_FAILED


def wsgi_environ(cfg: ServeConfig) -> dict:
    """The part of every WSGI environ that does not change between requests."""
    tls = {"HTTPS": "on"} if cfg.tls else {}
    return {
        **tls,
        "SERVER_NAME": cfg.listen[1] if cfg.listen[0] == "unix" else cfg.host,
        "SERVER_PORT": "" if cfg.listen[0] == "unix" else str(cfg.port),
        "SCRIPT_NAME": "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https" if cfg.tls else "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,  # handlers run on a pool of threads (--threads)
        "wsgi.multiprocess": (cfg.workers or 1) > 1,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }


def _event_loop():
    """The worker's event loop (uvloop when installed), where `async def` handlers run as tasks
    (on a thread of their own, started with the first one)."""
    import asyncio

    try:
        import uvloop  # type: ignore

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()
