"""Finding the application named on the command line (`module:attribute`) and its interface."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import sys
import traceback

from vw.config import ConfigError

INTERFACES = ("auto", "native", "wsgi", "asgi")


def parse_spec(spec: str) -> tuple[str, str, tuple[tuple, dict] | None]:
    """`module:attr`, or gunicorn's call syntax `module:make_app()` / `module:make_app('x', debug=True)`
    (literal arguments only): (module, dotted attribute, the call's (args, kwargs) or None)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"application {spec!r} is not MODULE:ATTRIBUTE (for example app:app)")
    if "(" not in attr:
        return module_name, attr, None
    try:
        tree = ast.parse(attr, mode="eval").body
        if not isinstance(tree, ast.Call):
            raise ValueError
        name = ast.unparse(tree.func)
        if not all(p.isidentifier() for p in name.split(".")):
            raise ValueError
        args = tuple(ast.literal_eval(a) for a in tree.args)
        kwargs = {k.arg: ast.literal_eval(k.value) for k in tree.keywords if k.arg is not None}
        if len(kwargs) != len(tree.keywords):
            raise ValueError
    except (SyntaxError, ValueError):
        raise ConfigError(f"application {spec!r}: a call must be NAME(...) with literal arguments, "
                          f"for example {module_name}:create_app()") from None
    return module_name, name, (args, kwargs)


def load(spec: str, app_dir: str | None = None):
    """Import `module:attr` (attr may be dotted) with `app_dir` (default: the current directory)
    first on sys.path. A call in the spec is not made here (see `load_target`)."""
    return load_target(spec, app_dir)[0]


def load_target(spec: str, app_dir: str | None = None):
    """The object `spec` names and, for a factory (`module:make_app()`), the call to make in
    each worker: (object, (args, kwargs) or None)."""
    module_name, attr, call = parse_spec(spec)
    where = os.path.abspath(app_dir) if app_dir else os.getcwd()
    if app_dir:
        if not os.path.isdir(where):
            raise ConfigError(f"--app-dir {app_dir!r} is not a directory")
        sys.path.insert(0, where)
    elif where not in sys.path and "" not in sys.path:
        sys.path.insert(0, where)
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
    if call is not None and not callable(obj):
        raise ConfigError(f"{module_name}:{attr} is not callable, so it cannot make the application")
    return obj, call


def make(factory, call: tuple[tuple, dict], spec: str):
    """Call an application factory (in a worker); its failure is one line."""
    args, kwargs = call
    try:
        return factory(*args, **kwargs)
    except Exception as e:
        raise ConfigError(f"the application factory {spec} failed: {_where(e)}") from None


def _positional(obj) -> tuple[int, int] | None:
    """How many positional arguments `obj` takes: (required, most; most -1: any), or None when
    Python cannot tell (a builtin)."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    required = most = 0
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            most += 1
            if p.default is p.empty:
                required += 1
        elif p.kind == p.VAR_POSITIONAL:
            most = -1
        elif p.kind == p.KEYWORD_ONLY and p.default is p.empty:
            return (99, 99)  # a required keyword: no interface calls it so
    return required, most


def check_shape(obj, interface: str, spec: str) -> None:
    """At start, one line for a callable that cannot be what its interface calls: WSGI calls
    app(environ, start_response), ASGI await app(scope, receive, send)."""
    if interface == "native":
        return
    want = 2 if interface == "wsgi" else 3
    n = _positional(obj)
    if n is None:
        return
    required, most = n
    if required <= want and (most == -1 or most >= want):
        return
    if required == 0 and most < want:
        raise ConfigError(f"{spec} is called with no arguments, not {want}, so it is not a {interface.upper()} "
                          f"application: if it makes the application, use --factory (or {spec}())")
    other = "asgi" if want == 2 else "wsgi"
    if (other == "asgi" and required <= 3 and (most == -1 or most >= 3)) or (other == "wsgi" and required <= 2 and most in (-1, 2)):
        raise ConfigError(f"{spec} takes {required} arguments: it looks like a{'n' if other == 'asgi' else ''} "
                          f"{other.upper()} application, not {interface.upper()} (--interface {other})")
    raise ConfigError(f"{spec} takes {required} arguments; a {interface.upper()} application takes {want}")


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
