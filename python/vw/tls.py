"""TLS settings: which certificate and key files are served, read (as PEM bytes) by the
supervisor before it drops privileges, and checked as a worker will load them, so that a bad
file is one line at start (or a reload that is refused) rather than workers that fail.

Session-ticket keys are derived in every worker from one secret the supervisor makes, so a
client resumes on whichever worker SO_REUSEPORT gives it; the secret is handed across a reload."""

from __future__ import annotations

import os
from pathlib import Path

from vw.config import ConfigError

ENV_TICKET_SECRET = "VW_TLS_TICKET_SECRET"
CERT_SUFFIXES = (".pem", ".crt", ".cer")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{what} {str(path)!r}: cannot read it ({e.strerror})", "tls_cert") from None


def _has_cert(data: bytes) -> bool:
    return b"-----BEGIN CERTIFICATE-----" in data


def pairs(certs: list[Path], keys: list[Path]) -> list[tuple[Path, Path | None]]:
    """(certificate file, key file or None: the key is in the certificate's file). A folder
    stands for its certificate files (.pem, .crt, .cer), each with NAME.key beside it or the key
    in the same file."""
    if keys and len(keys) != len(certs):
        raise ConfigError(f"give one --tls-key per --tls-cert ({len(certs)} certificates, {len(keys)} keys), "
                          "or none when each key is in its certificate's file", "tls_key")
    out: list[tuple[Path, Path | None]] = []
    for i, cert in enumerate(certs):
        cert = Path(cert)
        if cert.is_dir():
            if keys:
                raise ConfigError(f"--tls-cert {str(cert)!r} is a folder: its keys are NAME.key beside each "
                                  "certificate (or in the certificate's file), so give no --tls-key", "tls_key")
            found = sorted(p for p in cert.iterdir() if p.suffix in CERT_SUFFIXES and p.is_file()
                           and _has_cert(_read(p, "--tls-cert")))
            if not found:
                raise ConfigError(f"--tls-cert {str(cert)!r}: no certificate file (.pem, .crt, .cer) in the folder",
                                  "tls_cert")
            for p in found:
                key = p.with_suffix(".key")
                out.append((p, key if key.is_file() else None))
        elif not cert.exists():
            raise ConfigError(f"--tls-cert {str(cert)!r} does not exist", "tls_cert")
        else:
            out.append((cert, Path(keys[i]) if keys else None))
    return out


def load(certs: list[Path], keys: list[Path], client_ca: Path | None) -> tuple[list, bytes | None]:
    """The PEM bytes: ([(certificate chain, key, label)], client CA or None)."""
    identities = []
    for cert, key in pairs(certs, keys):
        cert_pem = _read(cert, "--tls-cert")
        key_pem = _read(key, "--tls-key") if key is not None else cert_pem
        label = str(cert) if key is None else f"{cert} with {key}"
        identities.append((cert_pem, key_pem, label))
    ca = _read(Path(client_ca), "--tls-client-ca") if client_ca is not None else None
    return identities, ca


def ticket_secret() -> bytes:
    """The secret of this server's session tickets: inherited across a reload, else new."""
    inherited = os.environ.pop(ENV_TICKET_SECRET, "")
    try:
        secret = bytes.fromhex(inherited)
    except ValueError:
        secret = b""
    return secret if len(secret) >= 32 else os.urandom(32)


def check(identities: list, ca: bytes | None, secret: bytes) -> bool:
    """Load as a worker will; one line (ConfigError) if anything is wrong. Returns whether the
    kernel could take the TLS record layer over (kTLS)."""
    from vw import _core

    try:
        return _core.tls_check((identities, ca, secret))
    except ValueError as e:
        raise ConfigError(str(e), "tls_cert") from None
