"""The `vw` command (also `python -m vw`)."""

from __future__ import annotations

import argparse
import os
import sys

from vw import __version__
from vw.config import ConfigError, ServeConfig, default_docroot, parse_cache_control, parse_mount


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


def _octal(text: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--uds-mode takes an octal mode like 660, not {text!r}") from None


SUPPRESS = argparse.SUPPRESS  # an option not given is absent, so the config file can supply it


def _common(p: argparse.ArgumentParser) -> None:
    """Options shared by `serve` and `run`: where to listen and how to run the workers."""
    p.add_argument("--config", metavar="FILE", default=SUPPRESS,
                   help="read options from a TOML file (vw.toml); flags given here win")
    p.add_argument("--host", default=SUPPRESS, metavar="H", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_int("--port"), default=SUPPRESS, metavar="P", help="port (default 8085; 0 picks a free one)")
    p.add_argument("--bind", action="append", default=SUPPRESS, metavar="ADDR",
                   help="where to listen, instead of --host/--port: HOST:PORT, [::1]:PORT, unix:PATH (a Unix "
                        "socket every worker serves) or fd://N (a listening socket vw was given)")
    p.add_argument("--uds", default=SUPPRESS, metavar="PATH", help="listen on the Unix socket PATH (as --bind unix:PATH)")
    p.add_argument("--uds-mode", type=_octal, default=SUPPRESS, metavar="MODE",
                   help="the Unix socket's permissions (default 660: its owner and group, so a proxy "
                        "such as nginx may share it through the group)")
    p.add_argument("--header", action="append", default=SUPPRESS, metavar="NAME:VALUE",
                   help="add this field to every response, static or application (repeatable; a field the "
                        "application sets itself wins), e.g. --header 'X-Frame-Options: DENY'")
    p.add_argument("--no-server-header", dest="server_header", action="store_false", default=SUPPRESS,
                   help="send no Server field (vw sends `Server: vw` unless the application sets one)")
    p.add_argument("--proxy-headers", dest="proxy_headers", action="store_true", default=SUPPRESS,
                   help="believe X-Forwarded-For, X-Forwarded-Proto and Forwarded from --forwarded-allow-ips "
                        "peers: the client's address and scheme for the application and the access log (default)")
    p.add_argument("--no-proxy-headers", dest="proxy_headers", action="store_false", default=SUPPRESS,
                   help="never: every request's client is its connection's peer")
    p.add_argument("--forwarded-allow-ips", default=SUPPRESS, metavar="LIST",
                   help="comma-separated IPs and CIDRs of the proxies to believe, * for any, unix for a Unix "
                        "socket's peers (default: $FORWARDED_ALLOW_IPS, else 127.0.0.1,::1,unix)")
    p.add_argument("--backlog", type=_int("--backlog"), default=SUPPRESS, metavar="N",
                   help="connections the kernel queues on each worker's listener before vw accepts them "
                        "(default 4096; the kernel caps it at net.core.somaxconn)")
    p.add_argument("--workers", type=_int("--workers"), default=SUPPRESS, metavar="N",
                   help="worker processes (default: WEB_CONCURRENCY if set, else one per CPU vw may use: "
                        "the affinity mask, capped by the cgroup's CPU quota, rounded up)")
    p.add_argument("--pin", dest="pin", action="store_true", default=SUPPRESS,
                   help="pin each worker to its CPU even under a CPU quota (the default pins only when "
                        "the workers get the whole affinity mask)")
    p.add_argument("--no-pin", dest="pin", action="store_false", default=SUPPRESS,
                   help="do not pin each worker to its CPU")
    p.add_argument("--realtime", action="store_true", default=SUPPRESS,
                   help="run workers with SCHED_RR at top priority (needs root or CAP_SYS_NICE)")
    p.add_argument("--io", default=SUPPRESS, choices=("epoll", "uring", "auto"),
                   help="the workers' kernel interface: epoll (default), uring (io_uring: multishot accept "
                        "and recv, batched sends; refused where the kernel or a sandbox forbids it), or auto "
                        "(io_uring where it can be used, else epoll, saying why)")
    st = p.add_argument_group("static files")
    st.add_argument("--cache-control", action="append", default=SUPPRESS, metavar="/PREFIX=VALUE",
                    help="send Cache-Control: VALUE with files under /PREFIX (repeatable; the longest "
                         "prefix wins), e.g. /assets/=max-age=31536000,immutable")
    st.add_argument("--compress", action="store_true", default=SUPPRESS,
                    help="gzip compressible files held in memory, once when loaded, for clients that "
                         "accept it (precompressed x.css.br / x.css.gz beside a file are always used)")
    st.add_argument("--not-found-page", metavar="FILE", default=SUPPRESS,
                    help="send FILE (read at start) as the body of a 404 for a missing file")
    st.add_argument("--inline-max", type=_int("--inline-max"), default=SUPPRESS, metavar="BYTES",
                    help="files up to this size are held in memory; larger ones are written from a "
                         "mapping of the file, or sent with sendfile past 64 MiB (default 262144)")
    st.add_argument("--cache-max-bytes", type=_int("--cache-max-bytes"), default=SUPPRESS, metavar="BYTES",
                    help="memory each worker may hold for files (default 64 MiB)")
    ops = p.add_argument_group("operations")
    ops.add_argument("--access-log", nargs="?", const="-", default=SUPPRESS, metavar="FILE",
                     help="log every response to FILE (or standard output: '-' or no FILE); off by default. "
                          "Each worker appends in batches; SIGUSR1 reopens the file (logrotate). A folder "
                          "or a MODULE:APP after it is not taken as FILE (vw serve --access-log ./public)")
    ops.add_argument("--access-log-format", choices=("common", "combined", "json"), default=SUPPRESS,
                     help="common or combined (Apache's, then the response time in seconds), or json "
                          "(one object per line); default combined")
    ops.add_argument("--log-level", default=SUPPRESS, choices=("critical", "error", "warning", "info", "debug"),
                     help="the level of vw's own messages (the logger vw.error; default info)")
    ops.add_argument("--log-config", default=SUPPRESS, metavar="FILE",
                     help="configure Python's logging with this dictConfig (JSON, TOML, or YAML with PyYAML): "
                          "vw's messages and the applications' tracebacks go to the logger vw.error")
    ops.add_argument("--admin-port", type=_int("--admin-port"), default=SUPPRESS, metavar="P",
                     help="serve /metrics (Prometheus), /healthz and /readyz on this port; off by default")
    ops.add_argument("--admin-host", default=SUPPRESS, metavar="H",
                     help="address of the admin listener (default 127.0.0.1)")
    ops.add_argument("--user", default=SUPPRESS, metavar="NAME",
                     help="after binding (e.g. port 80 as root), run vw as this user and its group: the "
                          "supervisor, the application's import and the workers")
    ops.add_argument("--pid-file", default=SUPPRESS, metavar="FILE",
                     help="write the supervisor's PID to FILE (removed on exit)")
    ops.add_argument("--shutdown-timeout", type=_int("--shutdown-timeout"), default=SUPPRESS, metavar="S",
                     help="on SIGTERM, seconds the workers have to finish what is in flight (default 4)")
    ops.add_argument("--worker-timeout", type=_int("--worker-timeout"), default=SUPPRESS, metavar="S",
                     help="kill and replace a worker whose event loop has not turned for S seconds (a C "
                          "extension holding the GIL, a deadlock; handlers that wait on their threads do not "
                          "count); default 30, 0: never. /readyz is 503 while a worker's loop stalls past 2 s")
    ops.add_argument("--max-requests", type=_int("--max-requests"), default=SUPPRESS, metavar="N",
                     help="replace a worker after N requests: a new one starts on its CPU and socket, "
                          "then the old one drains (default 0: never)")
    ops.add_argument("--max-requests-jitter", type=_int("--max-requests-jitter"), default=SUPPRESS, metavar="J",
                     help="add a random 0..J to each worker's --max-requests, so they are not all "
                          "replaced at once")
    ops.add_argument("--max-rss", type=_int("--max-rss"), default=SUPPRESS, metavar="MIB",
                     help="replace a worker whose resident memory passes MIB (checked every 2 s; "
                          "default 0: never), as --max-requests does")
    lim = p.add_argument_group("limits (a request past one is answered and its connection closed)")
    lim.add_argument("--max-request-line", type=_int("--max-request-line"), default=SUPPRESS, metavar="BYTES",
                     help="longest request line (default 8192; longer: 414)")
    lim.add_argument("--max-head", type=_int("--max-head"), default=SUPPRESS, metavar="BYTES",
                     help="largest request head, request line and fields (default 16384; larger: 431)")
    lim.add_argument("--max-headers", type=_int("--max-headers"), default=SUPPRESS, metavar="N",
                     help="most fields in a request head (default 100, at most 256; more: 431)")
    lim.add_argument("--max-body", type=_int("--max-body"), default=SUPPRESS, metavar="BYTES",
                     help="largest request body (default 1 GiB; larger: 413)")
    lim.add_argument("--max-connections", type=_int("--max-connections"), default=SUPPRESS, metavar="N",
                     help="open connections per worker (default 16384); past it a new connection "
                          "gets 503 and is closed, the open ones keep working")
    t = p.add_argument_group("timeouts (seconds)")
    t.add_argument("--header-timeout", type=_int("--header-timeout"), metavar="S", default=SUPPRESS,
                   help="to receive a whole request head, from its first byte (default 10); then 408")
    t.add_argument("--body-timeout", type=_int("--body-timeout"), metavar="S", default=SUPPRESS,
                   help="without progress while reading a request body (default 30); then 408")
    t.add_argument("--keepalive-timeout", type=_int("--keepalive-timeout"), metavar="S", default=SUPPRESS,
                   help="idle between requests on a connection (default 30)")
    t.add_argument("--write-timeout", type=_int("--write-timeout"), metavar="S", default=SUPPRESS,
                   help="without progress while the client does not read its response (default 30)")
    tls = p.add_argument_group("TLS (HTTPS on the port)")
    tls.add_argument("--tls-cert", action="append", default=SUPPRESS, metavar="FILE",
                     help="certificate chain (PEM, leaf first); repeat for several names (SNI: each client "
                          "gets the one valid for the name it asks, else the first), or give a folder of "
                          "NAME.pem/.crt with NAME.key beside each")
    tls.add_argument("--tls-key", action="append", default=SUPPRESS, metavar="FILE",
                     help="private key (PEM) of each --tls-cert, in the same order; none: each key is in "
                          "its certificate's file")
    tls.add_argument("--tls-client-ca", default=SUPPRESS, metavar="FILE",
                     help="require client certificates signed by these CAs (PEM)")
    tls.add_argument("--http2-cleartext", action="store_true", default=SUPPRESS,
                     help="also speak HTTP/2 without TLS to clients that start with its preface "
                          "(h2c, prior knowledge); over TLS, HTTP/2 is agreed by ALPN")
    w = p.add_argument_group("WebSocket (ASGI and vw.App)")
    w.add_argument("--ws-max-message", type=_int("--ws-max-message"), metavar="BYTES", default=SUPPRESS,
                   help="largest message, compressed or not (default 16 MiB); a longer one closes "
                        "the WebSocket with 1009, checked before its payload is buffered")
    w.add_argument("--ws-ping-interval", type=_int("--ws-ping-interval"), metavar="S", default=SUPPRESS,
                   help="ping a WebSocket that sent nothing for S seconds (default 20; 0: never)")
    w.add_argument("--ws-ping-timeout", type=_int("--ws-ping-timeout"), metavar="S", default=SUPPRESS,
                   help="drop a WebSocket whose ping got no answer in S seconds (default 20), "
                        "with 1011 and 1006 to the application")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="vw", description="vw: the fastest HTTP server for Python.")
    p.add_argument("--version", action="version", version=f"vw {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    s = sub.add_parser("serve", help="serve a folder of static files",
                       description="Serve DOCROOT (default: the demo docroot shipped with vw) with "
                                   "one pinned worker per CPU.")
    s.add_argument("docroot", nargs="?", default=SUPPRESS, metavar="DOCROOT",
                   help="folder to serve (default: the embedded demo docroot)")
    _common(s)
    r = sub.add_parser("run", help="serve a Python application (vw.App, WSGI, ASGI)",
                       description="Serve the application MODULE:APP (a vw.App, a WSGI or an ASGI "
                                   "callable; Flask, Django and FastAPI work unmodified) with one "
                                   "pinned worker per CPU.")
    r.add_argument("app", nargs="?", default=SUPPRESS, metavar="MODULE:APP",
                   help="where the application is, e.g. app:app or mysite.wsgi:application "
                        "(or `app` in the config file)")
    r.add_argument("--interface", default=SUPPRESS, choices=("auto", "native", "wsgi", "asgi"),
                   help="how to call the application (default: detect)")
    r.add_argument("--factory", action="store_true", default=SUPPRESS,
                   help="MODULE:APP is a function that makes the application: each worker calls it with "
                        "no arguments (MODULE:make_app() says the same, with literal arguments if any)")
    r.add_argument("--app-dir", default=SUPPRESS, metavar="DIR",
                   help="import the application from DIR (put first on sys.path; default: the current directory)")
    r.add_argument("--env-file", default=SUPPRESS, metavar="FILE",
                   help="set the environment variables of this dotenv file (python-dotenv) before the "
                        "application is imported; variables already set win")
    r.add_argument("--lifespan", default=SUPPRESS, choices=("auto", "on", "off"),
                   help="ASGI lifespan: auto (default: run it; an application that fails it as unsupported "
                        "is served without), on (a failure stops the worker), off (never run)")
    r.add_argument("--static", action="append", default=SUPPRESS, metavar="/PREFIX=DIR",
                   help="also serve DIR's files under /PREFIX, straight from the Rust core (repeatable)")
    r.add_argument("--threads", type=_int("--threads"), default=SUPPRESS, metavar="N",
                   help="threads per worker for WSGI and sync vw.App handlers (default 64): a handler "
                        "that waits (a database, an upstream) runs on one while the others serve; "
                        "quick handlers run on the loop's own thread with no handoff")
    r.add_argument("--request-body", default=SUPPRESS, choices=("stream", "spool"),
                   help="WSGI and ASGI: stream (default) calls the application when the request head "
                        "is in and gives it the body as it arrives (a slow upload holds a handler "
                        "thread); spool reads the whole body first (in memory up to 1 MiB, past it "
                        "in an unnamed temporary file), so the application runs only once it is "
                        "complete and slow uploads cost no thread. vw.App always gets the body read "
                        "whole (stream changes nothing there yet)")
    r.add_argument("--reload", action="store_true", default=SUPPRESS,
                   help="restart the workers gracefully when the application's code changes (development)")
    r.add_argument("--reload-dir", action="append", default=SUPPRESS, metavar="DIR",
                   help="with --reload, also watch the files in DIR (repeatable; templates, data files)")
    r.add_argument("--reload-include", action="append", default=SUPPRESS, metavar="GLOB",
                   help="in the --reload-dir folders, watch files matching GLOB (repeatable; default *.py)")
    r.add_argument("--reload-exclude", action="append", default=SUPPRESS, metavar="GLOB",
                   help="never watch files matching GLOB (repeatable; default .* and *~)")
    _common(r)
    b = sub.add_parser("bench", help="run the seed benchmark on this machine and chart it",
                       description="The 2012 seed's experiment, measured honestly: wrk keeps 300 "
                                   "connections busy with GET /1b (keep-alive; plain, then pipelined "
                                   "16 deep) against one vw worker pinned to CPU 0, wrk pinned to CPU 1; "
                                   "the server's CPU per request is what it costs. Prints the table, "
                                   "writes results.json, results.md and results.png to --out.")
    b.add_argument("--out", default="vw-bench", metavar="DIR", help="where to write the results (default ./vw-bench)")
    b.add_argument("--against", type=lambda t: [x for x in t.split(",") if x], default=[], metavar="SERVERS",
                   help="also measure these, comma-separated: floor (a C server that only answers: the "
                        "kernel's cost), nginx, h2o, nginx-nosendfile (each must be installed: a missing "
                        "one stops the run, naming the package to install)")
    b.add_argument("--duration", type=_int("--duration"), default=10, metavar="S", help="seconds per run (default 10)")
    b.add_argument("--rounds", type=_int("--rounds"), default=1, metavar="N",
                   help="rounds, interleaving the servers; medians are reported (default 1)")
    b.add_argument("--connections", type=_int("--connections"), default=300, metavar="N",
                   help="wrk connections (default 300, as the seed's weighttp -c 300)")
    c = sub.add_parser("check-config", help="check a config file and say what it would run",
                       description="Check FILE (vw.toml) without starting anything: every key known, "
                                   "every value valid. Exit 0 when it is.")
    c.add_argument("file", metavar="FILE")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(_access_log_takes_no_folder(raw))
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


def _access_log_takes_no_folder(raw: list[str]) -> list[str]:
    """`--access-log` takes an optional FILE, so the word after it would be taken as one: not
    when it is a folder (`vw serve --access-log ./public`) or, for `vw run`, an application
    (`vw run --access-log main:app`). Then the log goes to standard output, and the word is what
    it looks like. A file name, `-`, or `--access-log=FILE` are taken as before."""
    import re

    out = list(raw)
    command = next((a for a in raw if not a.startswith("-")), None)
    for i, a in enumerate(raw[:-1]):
        nxt = raw[i + 1]
        if a != "--access-log" or nxt.startswith("-"):
            continue
        app_like = command == "run" and re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*(\(.*\))?", nxt)
        if os.path.isdir(nxt) or app_like:
            out[i] = "--access-log=-"
    return out


def settings(command: str, given: dict) -> ServeConfig:
    """The configuration: ServeConfig's defaults, then the config file, then the flags given.
    A bad value from the file is reported with the file's line."""
    from vw import configfile

    values: dict = {}
    source: dict[str, str] = {}
    if "config" in given:
        values, source = configfile.load(given.pop("config"))
    if "static" in given:
        given["mounts"] = values.get("mounts", []) + [parse_mount(m) for m in given.pop("static")]
    if "cache_control" in given:
        # flags first: for the same prefix, the first rule wins, and flags win over the file
        given["cache_control"] = [parse_cache_control(c) for c in given["cache_control"]] + values.get("cache_control", [])
    for key in given:
        source.pop(key, None)
    values.update(given)
    if values.get("env_file"):
        _load_env_file(values["env_file"], source.get("env_file"))
    if command == "serve":
        for key in ("app", "reload", "interface", "mounts", "factory", "app_dir", "env_file", "lifespan"):
            values.pop(key, None)
        values.setdefault("docroot", default_docroot())
    else:
        values["docroot"] = None
        if not values.get("app"):
            raise ConfigError("vw run needs MODULE:APP (on the command line or as `app` in the config file)")
    try:
        return ServeConfig(**values).validate()
    except ConfigError as e:
        if e.field in source:
            raise ConfigError(f"{source[e.field]}: {e}", e.field) from None
        raise


def _load_env_file(path: str, where: str | None) -> None:
    """--env-file: its variables into the environment (before the application is imported, and
    before the settings that read the environment: WEB_CONCURRENCY)."""
    import dotenv

    if not os.path.isfile(path):
        raise ConfigError(f"{where + ': ' if where else ''}--env-file {path!r} is not a file", "env_file")
    dotenv.load_dotenv(path, override=False)


def _start(args: argparse.Namespace, raw: list[str]) -> int:
    if args.command == "bench":
        from vw.benchmark.command import main as bench

        return bench(args)
    given = {k: v for k, v in vars(args).items() if k != "command"}
    if args.command == "check-config":
        command = "run" if "app" in __import__("vw.configfile").configfile.load(args.file)[0] else "serve"
        cfg = settings(command, {"config": args.file})
        what = f"serve {cfg.docroot}"
        if cfg.app:
            from vw import loader

            obj, call = loader.load_target(cfg.app, cfg.app_dir)
            kind = "factory" if call is not None or cfg.factory else loader.detect(obj, cfg.interface)
            what = f"run {cfg.app} ({kind})"
        if cfg.tls:
            from vw import tls

            identities, ca = tls.load(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca)
            tls.check(identities, ca, b"\0" * 32)
            what += f", TLS with {len(identities)} certificate{'s' if len(identities) != 1 else ''}"
        print(f"{args.file}: OK ({what} on {cfg.host}:{cfg.port}, {cfg.workers} worker{'s' if cfg.workers != 1 else ''})")
        return 0
    from vw import console
    from vw.supervisor import Supervisor

    cfg = settings(args.command, given)
    console.setup(cfg.log_level, cfg.log_config)
    return Supervisor(cfg, argv=raw).run()


if __name__ == "__main__":
    sys.exit(main())
