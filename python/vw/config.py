"""Validated settings for ``vw serve``. Every check raises ConfigError with one clear sentence."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(Exception):
    """A bad option or value: reported as one line, never a traceback. `field` names the setting
    at fault, so a value that came from a config file can be reported with its line."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def default_docroot() -> Path:
    """The demo docroot shipped inside the package."""
    return Path(__file__).resolve().parent / "demo"


def available_cpus() -> list[int]:
    """The CPUs in this process's affinity mask (what `taskset` allows), sorted."""
    return sorted(os.sched_getaffinity(0))


@dataclass
class ServeConfig:
    # `vw serve`: a docroot. `vw run`: an application (MODULE:ATTR) and static mounts.
    docroot: Path | None = field(default_factory=default_docroot)
    app: str | None = None
    interface: str = "auto"
    # vw run: call the application as a factory in each worker; where to import it from; a
    # dotenv file read before the import; the ASGI lifespan protocol: auto, on or off
    factory: bool = False
    app_dir: str | None = None
    env_file: str | None = None
    lifespan: str = "auto"
    mounts: list[tuple[str, Path]] = field(default_factory=list)
    reload: bool = False
    # --reload: also watch these folders' files matching reload_include, never reload_exclude
    reload_dir: list[str] = field(default_factory=list)
    reload_include: list[str] = field(default_factory=list)
    reload_exclude: list[str] = field(default_factory=list)
    max_body: int = 1 << 30
    max_request_line: int = 8192
    max_head: int = 16384
    max_headers: int = 100
    max_connections: int = 16384
    threads: int = 64
    # WSGI and ASGI request bodies: "stream" (the application is called at the end of the head
    # and reads the body as it arrives) or "spool" (read whole first, to a file past 1 MiB)
    request_body: str = "stream"
    header_timeout: int = 10
    body_timeout: int = 30
    keepalive_timeout: int = 30
    write_timeout: int = 30
    # WebSocket: the longest message (1009 past it), the ping interval (0: none) and timeout
    ws_max_message: int = 16 << 20
    ws_ping_interval: int = 20
    ws_ping_timeout: int = 20
    # TLS: certificate chains (files or folders) and their keys (none: each key is in its
    # certificate's file); client certificates are required when a CA is given
    tls_cert: list[Path] = field(default_factory=list)
    tls_key: list[Path] = field(default_factory=list)
    tls_client_ca: Path | None = None
    # HTTP/2 without TLS, for clients that know (h2c with prior knowledge)
    http2_cleartext: bool = False
    # the workers' kernel interface: "epoll", "uring" or "auto"; validate() settles it to one of
    # the first two, and io_note says why auto did not pick io_uring
    io: str = "epoll"
    io_note: str | None = None
    host: str = "127.0.0.1"
    port: int = 8085
    # behind a proxy: the peers whose X-Forwarded-For/-Proto and Forwarded fields say who the
    # client is (IPs, CIDRs, * or unix; None: FORWARDED_ALLOW_IPS, else 127.0.0.1,::1,unix)
    proxy_headers: bool = True
    forwarded_allow_ips: str | list[str] | None = None
    backlog: int = 4096
    # response fields: `Server: vw` (--no-server-header drops it) and each --header NAME:VALUE
    server_header: bool = True
    header: list[str] = field(default_factory=list)
    default_headers: list = field(default_factory=list)  # what validate() made of `header`
    # --bind (gunicorn's form) and --uds (uvicorn's): a Unix socket (all workers serve it) or a
    # descriptor given to vw, instead of --host/--port
    bind: list[str] = field(default_factory=list)
    uds: str | None = None
    uds_mode: int = 0o660
    listen: tuple = ()  # what validate() made of them: ("tcp", host, port), ("unix", path) or ("fd", n)
    # None: one per CPU vw may use (the affinity mask, capped by the cgroup's CPU quota), or
    # WEB_CONCURRENCY; pin None: pinned when the workers get the whole mask (see vw.cpus)
    workers: int | None = None
    pin: bool | None = None
    pin_note: str | None = None
    realtime: bool = False
    shutdown_timeout: int = 4
    # a worker whose loop has not turned for this many seconds is killed and replaced (0: never)
    worker_timeout: int = 30
    # worker recycling (0: off): after this many requests (plus a random 0..jitter), or past
    # this resident memory in MiB, a worker is replaced (the new one starts, then the old drains)
    max_requests: int = 0
    max_requests_jitter: int = 0
    max_rss: int = 0
    inline_max: int = 256 * 1024
    cache_max_bytes: int = 64 << 20
    # static files: Cache-Control by URL prefix, gzip at load, the page of a 404
    cache_control: list[tuple[str, str]] = field(default_factory=list)
    compress: bool = False
    not_found_page: Path | None = None
    # operations: access log (path or "-"), admin listener for /metrics, /healthz, /readyz
    access_log: str | None = None
    access_log_format: str = "combined"
    # vw's own messages (logger vw.error): a level, or a whole logging.config.dictConfig file
    log_level: str | None = None
    log_config: str | None = None
    admin_host: str = "127.0.0.1"
    admin_port: int | None = None
    user: str | None = None  # workers run as this user (after pinning); the supervisor keeps its rights
    pid_file: str | None = None
    cpus: list[int] = field(default_factory=available_cpus)

    def _settle_io(self) -> None:
        """--io: io_uring when asked and usable; one clear line when asked for and not usable."""
        if self.io not in ("epoll", "uring", "auto"):
            raise ConfigError(f"--io must be epoll, uring or auto, not {self.io!r}", "io")
        if self.io == "epoll":
            return
        from vw import _core

        why = _core.uring_unavailable()
        if why is not None:
            try:
                disabled = Path("/proc/sys/kernel/io_uring_disabled").read_text().strip()
            except OSError:
                disabled = "0"
            if disabled != "0":
                why += f"; kernel.io_uring_disabled = {disabled}"
        if why is None:
            self.io = "uring"
        elif self.io == "uring":
            raise ConfigError(f"--io uring: io_uring cannot be used here ({why}); use --io epoll or auto", "io")
        else:
            self.io, self.io_note = "epoll", f"io_uring not used ({why}): serving on epoll"

    def validate(self) -> "ServeConfig":
        if self.docroot is not None:
            try:
                self.docroot = _folder(self.docroot, "docroot")
            except ConfigError as e:
                raise ConfigError(str(e), "docroot") from None
        mounts = []
        for prefix, folder in self.mounts:
            if not prefix.startswith("/") or "//" in prefix or any(seg in (".", "..") for seg in prefix.split("/")):
                raise ConfigError(f"--static prefix {prefix!r} must be a path like /static", "mounts")
            mounts.append((prefix.rstrip("/"), _folder(folder, f"--static {prefix}")))
        self.mounts = mounts
        for prefix, value in self.cache_control:
            if not prefix.startswith("/"):
                raise ConfigError(f"--cache-control prefix {prefix!r} must be a URL path like /assets", "cache_control")
            if not value or any(ord(c) < 0x20 or ord(c) == 0x7f for c in value):
                raise ConfigError(f"--cache-control value {value!r} must be one line of text", "cache_control")
        if self.not_found_page is not None:
            page = Path(self.not_found_page)
            if not page.is_file() or not os.access(page, os.R_OK):
                raise ConfigError(f"--not-found-page {str(page)!r} is not a readable file", "not_found_page")
            if page.stat().st_size > 1 << 20:
                raise ConfigError(f"--not-found-page {str(page)!r} is larger than 1 MiB", "not_found_page")
            self.not_found_page = page.resolve()
        if self.access_log_format not in ("common", "combined", "json"):
            raise ConfigError(f"--access-log-format must be common, combined or json, not {self.access_log_format!r}",
                              "access_log_format")
        if self.access_log not in (None, "-"):
            log_path = Path(self.access_log).resolve()
            if not log_path.parent.is_dir() or not os.access(log_path.parent, os.W_OK):
                raise ConfigError(f"--access-log {self.access_log!r}: cannot write in {str(log_path.parent)!r}", "access_log")
            self.access_log = str(log_path)
        if self.pid_file is not None:
            pid_path = Path(self.pid_file).resolve()
            if not pid_path.parent.is_dir():
                raise ConfigError(f"--pid-file {self.pid_file!r}: no folder {str(pid_path.parent)!r}", "pid_file")
            self.pid_file = str(pid_path)
        if not 0 <= self.worker_timeout <= 86400:
            raise ConfigError(f"--worker-timeout must be between 0 (off) and 86400 seconds, not {self.worker_timeout}",
                              "worker_timeout")
        if not 0 <= self.shutdown_timeout <= 3600:
            raise ConfigError(f"--shutdown-timeout must be between 0 and 3600 seconds, not {self.shutdown_timeout}",
                              "shutdown_timeout")
        for name in ("max_requests", "max_requests_jitter", "max_rss"):
            if not 0 <= getattr(self, name) <= 1 << 40:
                raise ConfigError(f"--{name.replace('_', '-')} must be 0 (off) or more, not {getattr(self, name)}", name)
        if self.max_requests_jitter and not self.max_requests:
            raise ConfigError("--max-requests-jitter needs --max-requests", "max_requests_jitter")
        if self.admin_port is not None and not 0 <= self.admin_port <= 65535:
            raise ConfigError(f"--admin-port must be between 0 and 65535, not {self.admin_port}", "admin_port")
        if not 0 <= self.inline_max <= 1 << 30:
            raise ConfigError(f"--inline-max must be between 0 and 1 GiB, not {self.inline_max}", "inline_max")
        if self.cache_max_bytes < 0:
            raise ConfigError(f"--cache-max-bytes must be 0 or more, not {self.cache_max_bytes}", "cache_max_bytes")
        if self.log_level is not None and self.log_level.lower() not in ("critical", "error", "warning", "info", "debug"):
            raise ConfigError(f"--log-level must be critical, error, warning, info or debug, not {self.log_level!r}", "log_level")
        if self.log_config is not None and not Path(self.log_config).is_file():
            raise ConfigError(f"--log-config {self.log_config!r} is not a file", "log_config")
        if self.lifespan not in ("auto", "on", "off"):
            raise ConfigError(f"--lifespan must be auto, on or off, not {self.lifespan!r}", "lifespan")
        if self.app_dir is not None and not Path(self.app_dir).is_dir():
            raise ConfigError(f"--app-dir {self.app_dir!r} is not a directory", "app_dir")
        if self.request_body not in ("stream", "spool"):
            raise ConfigError(f"--request-body must be stream or spool, not {self.request_body!r}", "request_body")
        if self.max_body < 0:
            raise ConfigError(f"--max-body must be 0 or more, not {self.max_body}", "max_body")
        for name, low, high in (("max_request_line", 64, 1 << 20), ("max_head", 256, 1 << 24),
                                ("max_headers", 1, 256), ("max_connections", 1, 1 << 24),
                                ("threads", 1, 4096)):
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConfigError(f"--{name.replace('_', '-')} must be between {low} and {high}, not {value}", name)
        if self.max_request_line > self.max_head:
            raise ConfigError("--max-request-line cannot be larger than --max-head", "max_request_line")
        if not 1 <= self.ws_max_message <= 1 << 31:
            raise ConfigError(f"--ws-max-message must be between 1 and {1 << 31} bytes, not {self.ws_max_message}", "ws_max_message")
        if not 0 <= self.ws_ping_interval <= 86400:
            raise ConfigError(f"--ws-ping-interval must be between 0 (no pings) and 86400 seconds, not {self.ws_ping_interval}", "ws_ping_interval")
        for name in ("header_timeout", "body_timeout", "keepalive_timeout", "write_timeout", "ws_ping_timeout"):
            value = getattr(self, name)
            if not 1 <= value <= 86400:
                raise ConfigError(f"--{name.replace('_', '-')} must be between 1 and 86400 seconds, not {value}", name)
        if self.http2_cleartext and self.tls_cert:
            raise ConfigError("--http2-cleartext is for a port without TLS (over TLS, HTTP/2 is agreed by ALPN)",
                              "http2_cleartext")
        self._settle_io()
        if self.tls_key and not self.tls_cert:
            raise ConfigError("--tls-key needs --tls-cert", "tls_key")
        if self.tls_client_ca is not None and not self.tls_cert:
            raise ConfigError("--tls-client-ca needs --tls-cert", "tls_client_ca")
        self.tls_cert = [Path(p) for p in self.tls_cert]
        self.tls_key = [Path(p) for p in self.tls_key]
        for key in self.tls_key:
            if not key.is_file():
                raise ConfigError(f"--tls-key {str(key)!r} is not a file", "tls_key")
        if self.tls_client_ca is not None and not Path(self.tls_client_ca).is_file():
            raise ConfigError(f"--tls-client-ca {str(self.tls_client_ca)!r} is not a file", "tls_client_ca")
        self.forwarded_allow_ips = _trusted(self.forwarded_allow_ips)
        self.default_headers = [_header(h) for h in self.header]
        if len(self.default_headers) > 32:
            raise ConfigError("at most 32 --header", "header")
        from vw.sockets import parse_bind

        binds = [parse_bind(b) for b in self.bind] + ([("unix", self.uds)] if self.uds else [])
        if len(binds) > 1:
            raise ConfigError("vw listens on one address for now: give one --bind or --uds (several are not supported yet)", "bind")
        if binds and binds[0][0] == "tcp":
            self.host, self.port = binds[0][1], binds[0][2]
        self.listen = binds[0] if binds and binds[0][0] != "tcp" else ("tcp", self.host, self.port)
        if not 0 <= self.uds_mode <= 0o777:
            raise ConfigError(f"--uds-mode must be an octal mode like 660, not {oct(self.uds_mode)}", "uds_mode")
        if not 1 <= self.backlog <= 1 << 20:
            raise ConfigError(f"--backlog must be between 1 and {1 << 20}, not {self.backlog}", "backlog")
        for d in self.reload_dir:
            if not Path(d).is_dir():
                raise ConfigError(f"--reload-dir {d!r} is not a directory", "reload_dir")
        if (self.reload_dir or self.reload_include or self.reload_exclude) and not self.reload:
            raise ConfigError("--reload-dir, --reload-include and --reload-exclude need --reload", "reload_dir")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be between 0 and 65535, not {self.port}", "port")
        if not self.cpus:
            raise ConfigError("no CPU in this process's affinity mask")
        from vw import cpus

        plan = cpus.plan(self.cpus, self.workers, self.pin, cpus.quota())
        self.workers, self.pin, self.pin_note = plan.workers, plan.pin, plan.why
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, not {self.workers}", "workers")
        if self.workers > 1024:
            raise ConfigError(f"--workers {self.workers} is more than 1024", "workers")
        return self

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    def static_mounts(self) -> list[tuple[str, Path]]:
        """Every docroot served, with its URL prefix ("" for the whole site)."""
        return ([("", self.docroot)] if self.docroot is not None else []) + self.mounts

    def cpu_for(self, worker: int) -> int:
        """Worker n runs on the n-th CPU of the mask (wrapping when there are more workers)."""
        return self.cpus[worker % len(self.cpus)]


_TCHAR = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _header(text: str) -> tuple[bytes, bytes]:
    """--header NAME:VALUE: a field vw adds to every response (the application's own wins)."""
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not name or not set(name) <= _TCHAR:
        raise ConfigError(f"--header takes NAME:VALUE with a field name of letters, digits and -, not {text!r}", "header")
    if any(ord(c) < 0x20 and c != "\t" or ord(c) == 0x7F for c in value) or not value.isascii():
        raise ConfigError(f"--header {name}: the value must be one line of ASCII text", "header")
    if name.lower() in ("content-length", "transfer-encoding", "connection", "keep-alive", "date", "upgrade", "trailer"):
        raise ConfigError(f"--header {name}: vw writes that field itself", "header")
    return name.encode(), value.encode()


def _trusted(value) -> list[str]:
    """--forwarded-allow-ips: a comma-separated list (or a config file's list) of IPs, CIDRs, `*`
    and `unix`, checked here so that a typo is one line at start."""
    import ipaddress

    if value is None:
        value = os.environ.get("FORWARDED_ALLOW_IPS") or "127.0.0.1,::1,unix"
    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        if item not in ("*", "unix"):
            try:
                ipaddress.ip_network(item.strip("[]"), strict=False)
            except ValueError:
                raise ConfigError(f"--forwarded-allow-ips: {item!r} is not an IP address, a CIDR, * or unix",
                                  "forwarded_allow_ips") from None
        out.append(item.strip("[]") if "/" not in item else item)
    return out


def _folder(path, what: str) -> Path:
    root = Path(path)
    if not root.exists():
        raise ConfigError(f"{what} {str(root)!r} does not exist")
    if not root.is_dir():
        raise ConfigError(f"{what} {str(root)!r} is not a directory")
    if not os.access(root, os.R_OK | os.X_OK):
        raise ConfigError(f"{what} {str(root)!r} is not readable")
    return root.resolve()


def parse_cache_control(text: str) -> tuple[str, str]:
    """`/prefix=VALUE` from --cache-control (the value may hold `=` itself: max-age=60)."""
    prefix, sep, value = text.partition("=")
    if not sep or not prefix or not value:
        raise ConfigError(f"--cache-control takes /PREFIX=VALUE, not {text!r}")
    return prefix, value


def parse_mount(text: str) -> tuple[str, Path]:
    """`/prefix=DIR` from --static."""
    prefix, sep, folder = text.partition("=")
    if not sep or not prefix or not folder:
        raise ConfigError(f"--static takes /PREFIX=DIR, not {text!r}")
    return prefix, Path(folder)
