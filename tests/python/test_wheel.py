"""The wheel (`make wheel-native`, part of `make test`) installs into a clean venv on a machine
path with no Rust toolchain, and serves the demo and a Flask application from there."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from conftest import LISTEN_RE, get

ROOT = Path(__file__).resolve().parents[2]
CLEAN_PATH = "/usr/bin:/bin"

FLASK_APP = '''
from flask import Flask, request

app = Flask(__name__)


@app.get("/hello")
def hello():
    return {"hello": request.args.get("name", "world")}
'''


def the_wheel() -> Path:
    wheels = sorted((ROOT / "dist").glob("vw-*-manylinux*_x86_64.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:  # run outside `make test`: build it as make does
        subprocess.run(["make", "-C", str(ROOT), "wheel-native", f"PY={sys.executable}"], check=True,
                       stdout=subprocess.DEVNULL)
        return the_wheel()
    return wheels[-1]


def serve(venv: Path, args: list[str], cwd: Path, env: dict) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([str(venv / "bin" / "vw"), *args, "--port", "0", "--workers", "1"], cwd=cwd, env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 20
    for line in proc.stderr:
        m = LISTEN_RE.search(line)
        if m:
            return proc, int(m.group(1))
        assert time.monotonic() < deadline, "vw did not start"
    raise AssertionError(f"vw exited before listening: {proc.wait()}")


def test_the_wheel_installs_and_serves_on_a_path_without_rust(tmp_path):
    wheel = the_wheel()
    # an abi3 wheel for CPython 3.11 and later, manylinux (maturin checked the glibc symbols it
    # links), with the extension inside
    assert re.search(r"-cp311-abi3-manylinux_2_\d+_x86_64(\.manylinux\w+)?\.whl$", wheel.name), wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert "vw/_core.abi3.so" in names and "vw/demo/index.html" in names
    assert not any(n.endswith((".rs", "Cargo.toml")) for n in names), "no sources in the wheel"

    env = {"PATH": CLEAN_PATH, "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    assert shutil.which("cargo", path=CLEAN_PATH) is None and shutil.which("rustc", path=CLEAN_PATH) is None
    venv = tmp_path / "venv"
    python = os.path.realpath(sys.executable)  # the interpreter itself, not a shim that needs PATH
    subprocess.run([python, "-m", "venv", str(venv)], env=env, check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, str(wheel), "flask"], env=env, check=True, timeout=300)
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import vw, vw._core; print(vw._core.__file__)"],
                           env=env, cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(venv)), f"vw came from {where}, not the clean venv"

    proc, port = serve(venv, ["serve"], tmp_path, env)  # the embedded demo
    try:
        r = get(port, "/")
        assert r.status == 200 and b"vw" in r.body and r.header("Server") == "vw"
    finally:
        proc.terminate()
        assert proc.wait(10) == 0

    (tmp_path / "shop.py").write_text(FLASK_APP)
    proc, port = serve(venv, ["run", "shop:app"], tmp_path, env)
    try:
        r = get(port, "/hello?name=wheel")
        assert r.status == 200 and r.body == b'{"hello":"wheel"}\n', r.body
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
