"""Reloading: `--reload` watches the application's source files, SIGHUP asks directly. Either way
the new code is checked to import, then vw starts again in the same process (exec), handing its
listeners and running workers to the new supervisor, which drains the old workers once its own run."""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
import time


def _watched() -> dict[str, float]:
    """Source files of loaded modules outside the standard library and site-packages."""
    skip = tuple(p for p in {sys.prefix, sys.base_prefix, os.path.dirname(os.__file__)} if p)
    here = os.path.dirname(os.path.abspath(__file__))
    files: dict[str, float] = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not path.endswith(".py"):
            continue
        path = os.path.abspath(path)
        if path.startswith(skip) or path.startswith(here) or "site-packages" in path:
            continue
        try:
            files[path] = os.stat(path).st_mtime
        except OSError:
            pass
    return files


def _in_dirs(dirs: list[str], include: list[str], exclude: list[str]) -> dict[str, float]:
    """Files under `dirs` matching an `include` glob (default *.py) and no `exclude` glob (default
    hidden files and editors' backups), by name or by path relative to their folder."""
    include, exclude = include or ["*.py"], exclude or [".*", "*~"]
    files: dict[str, float] = {}
    for top in dirs:
        for folder, subdirs, names in os.walk(top):
            subdirs[:] = [d for d in subdirs if not any(fnmatch.fnmatch(d, g) for g in exclude)]
            for name in names:
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, top)
                if any(fnmatch.fnmatch(name, g) or fnmatch.fnmatch(rel, g) for g in exclude):
                    continue
                if any(fnmatch.fnmatch(name, g) or fnmatch.fnmatch(rel, g) for g in include):
                    try:
                        files[os.path.abspath(path)] = os.stat(path).st_mtime
                    except OSError:
                        pass
    return files


class Watcher:
    def __init__(self, interval: float = 0.5, dirs: list[str] | None = None, include: list[str] | None = None,
                 exclude: list[str] | None = None):
        self.interval = interval
        self.dirs, self.include, self.exclude = dirs or [], include or [], exclude or []
        self.files = {**_watched(), **_in_dirs(self.dirs, self.include, self.exclude)}
        if self.exclude:
            self.files = {p: m for p, m in self.files.items()
                          if not any(fnmatch.fnmatch(os.path.basename(p), g) or fnmatch.fnmatch(p, g) for g in self.exclude)}
        self.next_check = time.monotonic() + interval

    def changed(self) -> bool:
        if time.monotonic() < self.next_check:
            return False
        self.next_check = time.monotonic() + self.interval
        if self.dirs:  # a file added to a watched folder is a change too
            for path in _in_dirs(self.dirs, self.include, self.exclude).keys() - self.files.keys():
                self.files[path] = -2
        for path, mtime in self.files.items():
            try:
                now = os.stat(path).st_mtime
            except OSError:
                now = -1
            if now != mtime:
                self.files[path] = now
                from vw.console import log

                log(f"vw: {os.path.relpath(path)} changed; checking the new code")
                return True
        return False


def app_imports(spec: str | None, app_dir: str | None = None) -> bool:
    """Import the application in a fresh interpreter; keep the running version if it fails."""
    if spec is None:
        return True
    r = subprocess.run([sys.executable, "-c", "import sys; from vw.loader import load; load(sys.argv[1], sys.argv[2] or None)",
                        spec, app_dir or ""],
                       capture_output=True, text=True, cwd=os.getcwd())
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["it does not import"])[-1]
        from vw.console import warn

        warn(f"vw: not reloading: {last}")
        return False
    return True


def reexec(argv: list[str], env: dict) -> None:
    """Start vw again with these arguments, in this process (so the PID stays the same). The
    signal mask is kept: a signal that arrives meanwhile (a logrotate SIGUSR1, a SIGTERM) waits
    for the new supervisor, which blocks the same signals, instead of killing the process."""
    os.execve(sys.executable, [sys.executable, "-m", "vw", *argv], env)
