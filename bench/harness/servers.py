"""RepoServers: the servers of vw.benchmark (floor, vw, nginx, nginx-nosendfile, h2o) and the app
servers (apps.py), with the sized files (files.py) in the docroot and the floor built in bench/build/."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from vw.benchmark import servers
from vw.benchmark.servers import make_docroot

from . import apps
from .apps import APP_SERVERS, APPS_DIR, BENCH, PEERS, VW_APP_SERVERS, VW_SERVERS
from .files import floor_body_bytes, sized_files

BUILD_DIR = BENCH / "build"


@dataclass
class Context(servers.Context):
    """vw.benchmark's Context, and the interpreter each peer runs in."""
    peer_python: dict[str, str] = dataclasses.field(default_factory=dict)
    # modules: (interpreter, version) or None, looked up once for the peers that share them
    found: dict[tuple[str, ...], tuple[str, str] | None] = dataclasses.field(default_factory=dict)


class RepoServers(servers.Servers):
    names = servers.Servers.names + APP_SERVERS
    groups = {**servers.Servers.groups, "apps": ("floor", *VW_APP_SERVERS, *PEERS),
              "apps-uring": ("floor", *(m for n in VW_APP_SERVERS for m in (n, f"{n}-uring")))}
    context = Context

    def __init__(self, build_dir: Path = BUILD_DIR):
        super().__init__(build_dir)

    def docroot(self, parent: Path) -> Path:
        return make_docroot(parent, sized_files())

    def floor_body_bytes(self, path: str) -> int:
        return floor_body_bytes(path)

    def find(self, name: str, ctx: Context) -> str | None:
        if name in VW_SERVERS:
            return super().find("vw", ctx)
        if name not in PEERS:
            return super().find(name, ctx)
        modules = PEERS[name].modules
        if modules not in ctx.found:
            ctx.found[modules] = apps.find_python(modules)
        if ctx.found[modules] is None:
            return (f"no Python here imports {', '.join(modules)} "
                    f"(tried {', '.join(apps.peer_pythons())}): bash bench/install-peers.sh")
        ctx.peer_python[name], ctx.versions[modules[0]] = ctx.found[modules]
        return None

    def command(self, name: str, port: int, ctx: Context, path: str = "/1b") -> list[str]:
        if name in VW_SERVERS:
            return apps.vw_app_command(name, port, ctx.vw_cmd)
        if name in PEERS:
            return apps.peer_command(name, port, ctx.peer_python[name])
        return super().command(name, port, ctx, path)

    def cwd(self, name: str, ctx: Context) -> Path:
        return APPS_DIR if name in APP_SERVERS else super().cwd(name, ctx)
