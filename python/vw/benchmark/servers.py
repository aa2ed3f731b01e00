"""The servers `vw bench` can measure, all serving one generated docroot: the floor (floor.py), vw,
nginx with sendfile on and off, and h2o (their config templates, nginx.conf.tmpl and h2o.conf.tmpl,
sit beside this file). `Servers` says how to find each one and the command that starts it; the
repository's bench/harness extends it with the app servers and the sized files."""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vw.benchmark.floor import build_floor
from vw.benchmark.tools import find_sbin

HERE = Path(__file__).resolve().parent
NGINX_TEMPLATE = HERE / "nginx.conf.tmpl"
H2O_TEMPLATE = HERE / "h2o.conf.tmpl"

STATIC_SERVERS = ("floor", "vw", "nginx")
FILE_SERVERS = (*STATIC_SERVERS, "nginx-nosendfile", "h2o")
# the io_uring pair (issue 14): the C floor over a ring, and vw --io uring
URING_SERVERS = ("floor-uring", "vw-uring")
NGINX_SERVERS = {"nginx": True, "nginx-nosendfile": False}  # name: sendfile on?


def vw_command() -> list[str] | None:
    """How to start vw, or None if it is not installed."""
    exe = shutil.which("vw")
    if exe:
        return [exe]
    if importlib.util.find_spec("vw") is not None:
        return [sys.executable, "-m", "vw"]
    return None


def render_template(template: Path, values: dict[str, object]) -> str:
    """The template's text with each @KEY@ replaced; an error if one is left."""
    text = template.read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    left = re.search(r"@[A-Z_]+@", text)
    if left:
        raise ValueError(f"{template.name}: {left.group()} not filled in")
    return text


def write_nginx_conf(prefix: Path, port: int, docroot: Path,
                     sendfile: bool = True) -> Path:
    conf = prefix / "nginx.conf"
    conf.write_text(render_template(NGINX_TEMPLATE, {
        "PREFIX": prefix, "PORT": port, "DOCROOT": docroot,
        "SENDFILE": "on" if sendfile else "off"}))
    return conf


def write_h2o_conf(prefix: Path, port: int, docroot: Path) -> Path:
    conf = prefix / "h2o.conf"
    conf.write_text(render_template(H2O_TEMPLATE, {
        "PREFIX": prefix, "PORT": port, "DOCROOT": docroot,
        "USER": "user: root" if os.getuid() == 0 else ""}))
    return conf


def make_docroot(parent: Path, files: dict[str, bytes] | None = None) -> Path:
    """/1b (the byte x), /100.html, and files (name: bytes)."""
    docroot = parent / "docroot"
    docroot.mkdir()
    (docroot / "1b").write_bytes(b"x")
    page = b"<!doctype html><title>vw</title><p>"
    (docroot / "100.html").write_bytes(page + b"x" * (99 - len(page)) + b"\n")
    for name, data in (files or {}).items():
        (docroot / name).write_bytes(data)
    docroot.chmod(0o755)
    return docroot


@dataclass
class Context:
    """One run's folder and docroot, and what was found to start the servers with."""
    workdir: Path
    docroot: Path
    floor_bin: Path | None = None
    floor_uring_bin: Path | None = None
    vw_cmd: list[str] | None = None
    nginx_bin: str | None = None
    h2o_bin: str | None = None
    versions: dict[str, str] = dataclasses.field(default_factory=dict)


class Servers:
    """The servers a run may name, its groups, and for each how to find and start it."""
    names: tuple[str, ...] = (*FILE_SERVERS, *URING_SERVERS)
    groups: dict[str, tuple[str, ...]] = {"static": STATIC_SERVERS, "files": FILE_SERVERS,
                                          "uring": ("floor", *URING_SERVERS, "vw")}
    context = Context

    def __init__(self, build_dir: Path | None = None):
        self.build_dir = build_dir  # where the floor is built (None: the user's cache)

    def docroot(self, parent: Path) -> Path:
        return make_docroot(parent)

    def floor_body_bytes(self, path: str) -> int:
        """How long the floor's one reply is when it runs against path."""
        return 1

    def find(self, name: str, ctx: Context) -> str | None:
        """Make name ready to start (what is found goes into ctx): None, or why it cannot run."""
        if name == "floor":
            ctx.floor_bin = build_floor(self.build_dir)
        elif name == "floor-uring":
            ctx.floor_uring_bin = build_floor(self.build_dir, uring=True)
        elif name in ("vw", "vw-uring"):
            ctx.vw_cmd = ctx.vw_cmd or vw_command()
            if ctx.vw_cmd is None:
                return "vw is not installed (no `vw` on PATH, `import vw` fails)"
        elif name in NGINX_SERVERS:
            ctx.nginx_bin = find_sbin("nginx")
            if ctx.nginx_bin is None:
                return "nginx not found: apt-get install nginx-light"
        elif name == "h2o":
            ctx.h2o_bin = find_sbin("h2o")
            if ctx.h2o_bin is None:
                return "h2o not found: apt-get install h2o"
        else:
            raise ValueError(name)
        return None

    def command(self, name: str, port: int, ctx: Context, path: str = "/1b") -> list[str]:
        if name == "floor":
            return [str(ctx.floor_bin), str(port), str(self.floor_body_bytes(path))]
        if name == "floor-uring":
            return [str(ctx.floor_uring_bin), str(port), str(self.floor_body_bytes(path))]
        if name in ("vw", "vw-uring"):
            io = ["--io", "uring"] if name == "vw-uring" else []
            return [*ctx.vw_cmd, "serve", str(ctx.docroot), "--port", str(port),
                    "--workers", "1", *io]
        if name in NGINX_SERVERS:
            prefix = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=ctx.workdir))
            conf = write_nginx_conf(prefix, port, ctx.docroot, NGINX_SERVERS[name])
            return [ctx.nginx_bin, "-c", str(conf), "-p", str(prefix),
                    "-e", str(prefix / "error.log")]
        if name == "h2o":
            prefix = Path(tempfile.mkdtemp(prefix="h2o-", dir=ctx.workdir))
            return [ctx.h2o_bin, "-c", str(write_h2o_conf(prefix, port, ctx.docroot))]
        raise ValueError(name)

    def cwd(self, name: str, ctx: Context) -> Path:
        """The folder the server runs in."""
        return ctx.workdir
