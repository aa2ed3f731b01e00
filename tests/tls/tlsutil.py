"""Certificates for the TLS tests (made with trustme: a CA, leaf certificates for names, client
certificates), and clients that speak TLS to a vw on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
import trustme


class Certs:
    """A CA, and PEM files in `folder`: `site` (localhost, 127.0.0.1), `other` (other.test),
    `wild` (*.wild.test); keys beside each (NAME.key); a client certificate of the CA."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.ca = trustme.CA()
        self.ca.cert_pem.write_to_path(str(folder / "ca.pem"))
        for name, names in (("site", ["localhost", "127.0.0.1"]), ("other", ["other.test"]),
                            ("wild", ["*.wild.test"])):
            leaf = self.ca.issue_cert(*names)
            leaf.cert_chain_pems[0].write_to_path(str(folder / f"{name}.pem"))
            for pem in leaf.cert_chain_pems[1:]:
                pem.write_to_path(str(folder / f"{name}.pem"), append=True)
            leaf.private_key_pem.write_to_path(str(folder / f"{name}.key"))
        self.client = self.ca.issue_cert("client@example.test")
        self.client_pem = folder / "client.pem"
        self.client.private_key_and_cert_chain_pem.write_to_path(str(self.client_pem))

    def args(self, *names: str) -> list[str]:
        out = []
        for n in names or ("site",):
            out += ["--tls-cert", str(self.folder / f"{n}.pem"), "--tls-key", str(self.folder / f"{n}.key")]
        return out

    def context(self, *, max_version=None, client_cert: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.folder / "ca.pem"))
        if max_version is not None:
            ctx.maximum_version = max_version
        if client_cert:
            ctx.load_cert_chain(str(self.client_pem))
        return ctx


def tls_connect(port: int, ctx: ssl.SSLContext, name: str = "localhost", session=None, timeout: float = 5) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(raw, server_hostname=name, session=session)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA and its certificates, per test module (imported by the modules that use it)."""
    return Certs(tmp_path_factory.mktemp("certs"))


def curl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """curl -s with these arguments (its output as bytes)."""
    exe = shutil.which("curl")
    assert exe, "curl is needed (make test installs it)"
    return subprocess.run([exe, "-s", *args], capture_output=True, timeout=timeout)
