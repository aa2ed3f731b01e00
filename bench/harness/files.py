"""The file-size runs: the generated docroot also holds /100b, /4k, /64k and /4m (bytes of a seeded
PRNG: the same every run, not compressible; no extension, so every server sends them as
application/octet-stream), and the floor answers each with a body that long."""
from __future__ import annotations

import random

# The docroot's files by size (name: bytes), for --paths /100b,/4k,/64k,/4m.
SIZED_FILES = {"100b": 100, "4k": 4096, "64k": 65536, "4m": 4 << 20}
DOCROOT_SEED = 5  # the sized files are bytes of random.Random(DOCROOT_SEED)


def sized_file_bytes(size: int) -> bytes:
    """size bytes of a seeded PRNG: the same every run, and not compressible."""
    return random.Random(DOCROOT_SEED).randbytes(size)


def sized_files() -> dict[str, bytes]:
    return {name: sized_file_bytes(size) for name, size in SIZED_FILES.items()}


def floor_body_bytes(path: str) -> int:
    """The floor answers every request with the same reply: as long as the file the path names
    (so /64k against the floor is the kernel's cost of those bytes), else 1 byte."""
    return SIZED_FILES.get(path.strip("/"), 1)
