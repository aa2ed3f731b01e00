"""Finding the application named on the command line (`module:attribute`) and its interface."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback

from vw.config import ConfigError

INTERFACES = ("auto", "native", "wsgi", "asgi")


def load(spec: str):
    """Import `module:attr` (attr may be dotted) with the current directory on sys.path."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"application {spec!r} is not MODULE:ATTRIBUTE (for example app:app)")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise ConfigError(f"cannot import {module_name!r}: no module named {e.name!r}") from None
        raise ConfigError(f"importing {module_name!r} failed: {_where(e)}") from None
    except Exception as e:  # the user's module raised while importing: say what and where
        raise ConfigError(f"importing {module_name!r} failed: {_where(e)}") from None
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _where(e: BaseException) -> str:
    frames = traceback.extract_tb(e.__traceback__)
    if frames:
        f = frames[-1]
        return f"{type(e).__name__}: {e} ({os.path.relpath(f.filename)}:{f.lineno})"
    return f"{type(e).__name__}: {e}"


def detect(obj, interface: str = "auto") -> str:
    """`native` for a vw.App, `asgi` for a coroutine callable, `wsgi` for any other callable."""
    from vw.app import App

    if interface not in INTERFACES:
        raise ConfigError(f"--interface must be one of {', '.join(INTERFACES)}, not {interface!r}")
    if interface != "auto":
        if interface == "native" and not isinstance(obj, App):
            raise ConfigError("--interface native needs a vw.App")
        if interface != "native" and not callable(obj):
            raise ConfigError(f"the application is not callable ({type(obj).__name__})")
        return interface
    if isinstance(obj, App):
        return "native"
    if not callable(obj):
        raise ConfigError(f"the application is not callable ({type(obj).__name__})")
    call = obj if inspect.isfunction(obj) or inspect.ismethod(obj) else getattr(obj, "__call__", None)
    if inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(call):
        return "asgi"
    return "wsgi"
