"""The `vw` command (also `python -m vw`)."""

from __future__ import annotations

import argparse
import sys

from vw import __version__
from vw.config import ConfigError, ServeConfig, default_docroot


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


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="vw", description="vw: the fastest HTTP server for Python.")
    p.add_argument("--version", action="version", version=f"vw {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    s = sub.add_parser("serve", help="serve a folder of static files",
                       description="Serve DOCROOT (default: the demo docroot shipped with vw) with "
                                   "one pinned worker per CPU.")
    s.add_argument("docroot", nargs="?", default=None, metavar="DOCROOT",
                   help="folder to serve (default: the embedded demo docroot)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=_int("--port"), default=8085, help="port (default 8085; 0 picks a free one)")
    s.add_argument("--workers", type=_int("--workers"), default=None,
                   help="worker processes (default: one per CPU in the affinity mask)")
    s.add_argument("--no-pin", action="store_true", help="do not pin each worker to its CPU")
    s.add_argument("--realtime", action="store_true",
                   help="run workers with SCHED_RR at top priority (needs root or CAP_SYS_NICE)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "serve":
            return _serve(args)
    except ConfigError as e:
        print(f"vw: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def _serve(args: argparse.Namespace) -> int:
    from vw.supervisor import Supervisor

    cfg = ServeConfig(
        docroot=args.docroot if args.docroot is not None else default_docroot(),
        host=args.host,
        port=args.port,
        workers=args.workers,
        pin=not args.no_pin,
        realtime=args.realtime,
    ).validate()
    return Supervisor(cfg).run()


if __name__ == "__main__":
    sys.exit(main())
