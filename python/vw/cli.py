"""The `vw` command (also `python -m vw`)."""

from __future__ import annotations

import argparse
import sys

from vw import __version__
from vw.config import ConfigError, ServeConfig, default_docroot, parse_mount


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), not a usage dump."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"vw: error: {message} (see 'vw --help')\n")


def _int(name: str):
    def parse(text: str) -> int:
        try:
            return int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} takes a whole number, not {text!r}") from None
    return parse


def _common(p: argparse.ArgumentParser) -> None:
    """Options shared by `serve` and `run`: where to listen and how to run the workers."""
    p.add_argument("--host", default="127.0.0.1", metavar="H", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_int("--port"), default=8085, metavar="P", help="port (default 8085; 0 picks a free one)")
    p.add_argument("--workers", type=_int("--workers"), default=None, metavar="N",
                   help="worker processes (default: one per CPU in the affinity mask)")
    p.add_argument("--no-pin", action="store_true", help="do not pin each worker to its CPU")
    p.add_argument("--realtime", action="store_true",
                   help="run workers with SCHED_RR at top priority (needs root or CAP_SYS_NICE)")
    lim = p.add_argument_group("limits (a request past one is answered and its connection closed)")
    lim.add_argument("--max-request-line", type=_int("--max-request-line"), default=8192, metavar="BYTES",
                     help="longest request line (default 8192; longer: 414)")
    lim.add_argument("--max-head", type=_int("--max-head"), default=16384, metavar="BYTES",
                     help="largest request head, request line and fields (default 16384; larger: 431)")
    lim.add_argument("--max-headers", type=_int("--max-headers"), default=100, metavar="N",
                     help="most fields in a request head (default 100, at most 256; more: 431)")
    lim.add_argument("--max-body", type=_int("--max-body"), default=1 << 30, metavar="BYTES",
                     help="largest request body (default 1 GiB; larger: 413)")
    lim.add_argument("--max-connections", type=_int("--max-connections"), default=16384, metavar="N",
                     help="open connections per worker (default 16384); past it a new connection "
                          "gets 503 and is closed, the open ones keep working")
    t = p.add_argument_group("timeouts (seconds)")
    t.add_argument("--header-timeout", type=_int("--header-timeout"), metavar="S", default=10,
                   help="to receive a whole request head, from its first byte (default 10); then 408")
    t.add_argument("--body-timeout", type=_int("--body-timeout"), metavar="S", default=30,
                   help="without progress while reading a request body (default 30); then 408")
    t.add_argument("--keepalive-timeout", type=_int("--keepalive-timeout"), metavar="S", default=30,
                   help="idle between requests on a connection (default 30)")
    t.add_argument("--write-timeout", type=_int("--write-timeout"), metavar="S", default=30,
                   help="without progress while the client does not read its response (default 30)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="vw", description="vw: the fastest HTTP server for Python.")
    p.add_argument("--version", action="version", version=f"vw {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    s = sub.add_parser("serve", help="serve a folder of static files",
                       description="Serve DOCROOT (default: the demo docroot shipped with vw) with "
                                   "one pinned worker per CPU.")
    s.add_argument("docroot", nargs="?", default=None, metavar="DOCROOT",
                   help="folder to serve (default: the embedded demo docroot)")
    _common(s)
    r = sub.add_parser("run", help="serve a Python application (vw.App, WSGI, ASGI)",
                       description="Serve the application MODULE:APP (a vw.App, a WSGI or an ASGI "
                                   "callable; Flask, Django and FastAPI work unmodified) with one "
                                   "pinned worker per CPU.")
    r.add_argument("app", metavar="MODULE:APP", help="where the application is, e.g. app:app or mysite.wsgi:application")
    r.add_argument("--interface", default="auto", choices=("auto", "native", "wsgi", "asgi"),
                   help="how to call the application (default: detect)")
    r.add_argument("--static", action="append", default=[], metavar="/PREFIX=DIR",
                   help="also serve DIR's files under /PREFIX, straight from the Rust core (repeatable)")
    r.add_argument("--reload", action="store_true",
                   help="restart the workers gracefully when the application's code changes (development)")
    _common(r)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return _start(args, raw)
    except ConfigError as e:
        print(f"vw: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _start(args: argparse.Namespace, raw: list[str]) -> int:
    from vw.supervisor import Supervisor

    common = dict(host=args.host, port=args.port, workers=args.workers, pin=not args.no_pin, realtime=args.realtime,
                  header_timeout=args.header_timeout, body_timeout=args.body_timeout,
                  keepalive_timeout=args.keepalive_timeout, write_timeout=args.write_timeout,
                  max_request_line=args.max_request_line, max_head=args.max_head,
                  max_headers=args.max_headers, max_body=args.max_body, max_connections=args.max_connections)
    if args.command == "serve":
        cfg = ServeConfig(docroot=args.docroot if args.docroot is not None else default_docroot(), **common)
    else:
        cfg = ServeConfig(docroot=None, app=args.app, interface=args.interface,
                          mounts=[parse_mount(m) for m in args.static], reload=args.reload, **common)
    return Supervisor(cfg.validate(), argv=raw).run()


if __name__ == "__main__":
    sys.exit(main())
