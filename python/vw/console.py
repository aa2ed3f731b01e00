"""vw's own messages, through Python's `logging`: the start lines, workers started, replaced,
recycled or hung, reloads, errors, and the tracebacks of applications that raise (the Rust core
hands them here, `app_exception`). They go to the logger `vw.error` (uvicorn's and gunicorn's
name for it); by default one readable line per event on standard error, written in one write(2)
so the lines of several workers never interleave. `--log-level` sets its level, `--log-config
FILE` replaces all of it with a `logging.config.dictConfig` (JSON, TOML, or YAML when PyYAML is
installed). The access log stays in the Rust core (batched, never through `logging`)."""

from __future__ import annotations

import json
import logging
import logging.config
import os
import sys

ERROR = logging.getLogger("vw.error")


class LineHandler(logging.Handler):
    """One line (a record and its traceback) to stderr in one write(2)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "replace")
            sys.stderr.flush()
            while data:
                data = data[os.write(2, data):]
        except Exception:
            self.handleError(record)


_configured = False


def _default() -> None:
    """The default output, unless a --log-config said otherwise."""
    global _configured
    if _configured:
        return
    _configured = True
    h = LineHandler()
    h.setFormatter(logging.Formatter("%(message)s"))
    ERROR.addHandler(h)
    ERROR.setLevel(logging.INFO)
    ERROR.propagate = False


def setup(level: str | None = None, config_file: str | None = None) -> None:
    """At start, in the supervisor (the workers inherit it): the default handler, or the
    user's dictConfig; then --log-level."""
    from vw.config import ConfigError

    global _configured
    if config_file:
        _configured = True
        try:
            text = open(config_file, "rb").read()
        except OSError as e:
            raise ConfigError(f"--log-config {config_file!r}: {e.strerror}", "log_config") from None
        try:
            if config_file.endswith(".toml"):
                import tomllib

                conf = tomllib.loads(text.decode())
            elif config_file.endswith((".yaml", ".yml")):
                import yaml  # PyYAML, when installed

                conf = yaml.safe_load(text)
            else:
                conf = json.loads(text)
            conf.setdefault("version", 1)
            conf.setdefault("disable_existing_loggers", False)
            logging.config.dictConfig(conf)
        except ImportError:
            raise ConfigError(f"--log-config {config_file!r}: YAML needs PyYAML (pip install pyyaml)", "log_config") from None
        except Exception as e:
            raise ConfigError(f"--log-config {config_file!r}: {type(e).__name__}: {e}", "log_config") from None
    else:
        _default()
    if level:
        ERROR.setLevel(level.upper())


def log(msg: str, level: int = logging.INFO) -> None:
    """One of vw's messages."""
    _default()
    ERROR.log(level, msg)


def warn(msg: str) -> None:
    log(msg, logging.WARNING)


def app_exception(message: str, exc: BaseException) -> None:
    """The Rust core: an application raised (`message` says what vw answered instead)."""
    _default()
    ERROR.error(message, exc_info=(type(exc), exc, exc.__traceback__))
