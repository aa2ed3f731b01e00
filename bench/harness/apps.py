"""The app servers: vw's native, WSGI and ASGI interfaces, and its peers from PyPI (granian,
uvicorn, bjoern, socketify), each with one worker, on the hello and JSON apps of bench/apps/. The
peers run in the first interpreter that imports them, the peers' venv (install-peers.sh) first."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
APPS_DIR = BENCH / "apps"            # the app servers run here (module:app specs)
PEERS_VENV = BENCH / ".peers-venv"   # made by install-peers.sh
APP_PATHS = ("/", "/json")

VW_APP_SERVERS = ("vw-native", "vw-wsgi", "vw-asgi")
GRANIAN_FLAGS = ("--workers", "1", "--runtime-mode", "st", "--runtime-threads", "1",
                 "--runtime-blocking-threads", "1", "--blocking-threads", "1",
                 "--http", "1", "--no-ws", "--no-access-log", "--log-level", "warning")


@dataclass(frozen=True)
class Peer:
    """An app server from PyPI: the modules it needs, and its arguments after
    `python`. PORT in args is replaced by the port."""
    modules: tuple[str, ...]
    args: tuple[str, ...]


PEERS = {
    **{f"granian-{i}": Peer(("granian",), (
        "-m", "granian", "--interface", i, f"{i}:app", "--host", "127.0.0.1",
        "--port", "PORT", *GRANIAN_FLAGS)) for i in ("rsgi", "asgi", "wsgi")},
    "uvicorn": Peer(("uvicorn", "httptools", "uvloop"), (
        "-m", "uvicorn", "asgi:app", "--host", "127.0.0.1", "--port", "PORT",
        "--workers", "1", "--http", "httptools", "--loop", "uvloop",
        "--no-access-log", "--log-level", "warning")),
    "bjoern": Peer(("bjoern",), ("bjoern_run.py", "PORT")),
    **{name: Peer(("socketify",), (
        "-m", "socketify", f"{i}:app", "--host", "127.0.0.1", "--port", "PORT",
        "--workers", "1", "--interface", i, "--disable-listen-log", "true"))
       for name, i in (("socketify", "wsgi"), ("socketify-asgi", "asgi"))},
}
# each vw interface again with `--io uring` (issue 14), named vw-native-uring and so on
VW_APP_URING = tuple(f"{n}-uring" for n in VW_APP_SERVERS)
VW_SERVERS = VW_APP_SERVERS + VW_APP_URING  # every name `vw run` answers to
APP_SERVERS = VW_APP_SERVERS + tuple(PEERS) + VW_APP_URING


def vw_app_command(name: str, port: int, vw_cmd: list[str]) -> list[str]:
    interface = name.removeprefix("vw-").removesuffix("-uring")
    io = ["--io", "uring"] if name.endswith("-uring") else []
    return [*vw_cmd, "run", f"{interface}:app", "--interface", interface,
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1", *io]


def peer_command(name: str, port: int, python: str) -> list[str]:
    return [python, *(str(port) if a == "PORT" else a for a in PEERS[name].args)]


def peer_pythons() -> list[str]:
    """Interpreters that may hold the peers: the peers' venv first, then PATH."""
    found = [str(PEERS_VENV / "bin" / "python"), shutil.which("python3"),
             shutil.which("python"), sys.executable]
    return [p for p in dict.fromkeys(found) if p and os.access(p, os.X_OK)]


_IMPORT_CHECK = """\
import importlib, importlib.metadata as md, sys
for m in sys.argv[1:]:
    importlib.import_module(m)
try:
    print(md.version(sys.argv[1]))
except md.PackageNotFoundError:
    print("?")
"""


def find_python(modules: tuple[str, ...],
                candidates: list[str] | None = None) -> tuple[str, str] | None:
    """(interpreter, version of modules[0]) for the first candidate that imports
    all of modules, or None. Importing (not just finding) catches a package
    whose native library does not load (socketify without libuv1)."""
    for python in peer_pythons() if candidates is None else candidates:
        try:
            res = subprocess.run([python, "-c", _IMPORT_CHECK, *modules],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if res.returncode == 0:
            return python, res.stdout.strip()
    return None
