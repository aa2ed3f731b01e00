"""vw.toml: the options of `vw serve` and `vw run` in a file, read with the standard library.

    app = "main:app"            # vw run; or docroot = "./public" for vw serve
    host = "0.0.0.0"
    port = 8080
    workers = 2
    header_timeout = 10
    max_connections = 20000

    compress = true
    not_found_page = "./404.html"
    access_log = "./access.log"     # or "-" for standard output
    access_log_format = "json"
    admin_port = 9100

    [static]                    # extra static mounts: prefix = folder
    "/assets" = "./assets"

    [cache_control]             # Cache-Control by URL prefix
    "/assets/" = "max-age=31536000, immutable"

Keys are the long options with `_` for `-` (`no_pin` is `pin = false`). Flags given on the
command line win over the file. An unknown key or a bad value is reported with its line.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from vw.config import ConfigError

# key: the type TOML must give it
KEYS: dict[str, type] = {
    "docroot": str, "app": str, "interface": str, "factory": bool, "app_dir": str, "env_file": str, "lifespan": str,
    "host": str, "port": int, "backlog": int, "workers": int, "proxy_headers": bool, "forwarded_allow_ips": list,
    "bind": list, "uds": str, "uds_mode": int, "header": list, "server_header": bool, "worker_timeout": int,
    "log_level": str, "log_config": str,
    "reload_dir": list, "reload_include": list, "reload_exclude": list,
    "pin": bool, "realtime": bool, "reload": bool, "static": dict,
    "max_request_line": int, "max_head": int, "max_headers": int, "max_body": int, "max_connections": int,
    "threads": int, "request_body": str,
    "header_timeout": int, "body_timeout": int, "keepalive_timeout": int, "write_timeout": int,
    "ws_max_message": int, "ws_ping_interval": int, "ws_ping_timeout": int,
    "cache_control": dict, "compress": bool, "not_found_page": str, "inline_max": int, "cache_max_bytes": int,
    "access_log": str, "access_log_format": str, "admin_host": str, "admin_port": int,
    "user": str, "pid_file": str, "shutdown_timeout": int,
    "max_requests": int, "max_requests_jitter": int, "max_rss": int,
    "tls_cert": list, "tls_key": list, "tls_client_ca": str, "http2_cleartext": bool, "io": str,
}


def load(path: str) -> tuple[dict, dict[str, str]]:
    """The settings in the file (ServeConfig field names) and, per field, "FILE line N"."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config {path!r}: {e.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    lines = text.splitlines()

    def where(key: str) -> str:
        pattern = re.compile(rf'^\s*(\[\s*)?"?{re.escape(key)}"?\s*[=\]]')
        for n, line in enumerate(lines, 1):
            if pattern.match(line):
                return f"{path} line {n}"
        return path

    values: dict = {}
    source: dict[str, str] = {}
    for key, value in data.items():
        if key not in KEYS:
            raise ConfigError(f"{where(key)}: unknown key {key!r}")
        want = KEYS[key]
        if key in ("tls_cert", "tls_key", "forwarded_allow_ips", "bind", "header", "reload_dir", "reload_include", "reload_exclude") \
                and isinstance(value, str):
            value = [value]  # one, or a list of them
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            kind = {int: "a whole number", str: "a string", bool: "true or false", dict: "a table",
                    list: "a string or a list of them"}[want]
            raise ConfigError(f"{where(key)}: {key} takes {kind}, not {value!r}")
        if key == "static":
            mounts = []
            for prefix, folder in value.items():
                if not isinstance(folder, str):
                    raise ConfigError(f"{where(prefix)}: a static mount is \"/prefix\" = \"folder\"")
                mounts.append((prefix, (p.parent / folder) if not Path(folder).is_absolute() else Path(folder)))
            values["mounts"] = mounts
            source["mounts"] = where(key)
            continue
        if key == "cache_control":
            rules = []
            for prefix, header in value.items():
                if not isinstance(header, str):
                    raise ConfigError(f"{where(prefix)}: a cache_control rule is \"/prefix\" = \"value\"")
                rules.append((prefix, header))
            values["cache_control"] = rules
            source["cache_control"] = where(key)
            continue
        if key in ("tls_cert", "tls_key"):
            if not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where(key)}: {key} takes a file name or a list of them")
            value = [Path(v) if Path(v).is_absolute() else p.parent / v for v in value]
        if key in ("docroot", "not_found_page", "pid_file", "tls_client_ca", "log_config") or (key == "access_log" and value != "-"):
            folder = Path(value)
            value = folder if folder.is_absolute() else p.parent / folder
        values[key] = value
        source[key] = where(key)
    return values, source
