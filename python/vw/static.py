"""Static indexing: what the Rust core needs to serve a docroot, prepared once at start.

The core resolves every request itself (a file added later is found on its first request); this
module gives it the Content-Type table and the list of files to prepare ahead of the first request.
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path
from urllib.parse import quote

# Types that are text without being text/*: they get a charset as well.
_TEXTUAL = {"application/javascript", "application/json", "application/xml", "image/svg+xml",
            "application/manifest+json", "application/xhtml+xml"}


def content_types() -> dict[str, str]:
    """Extension (lower case, no dot) → Content-Type, from Python's maintained table
    (which also reads the system's /etc/mime.types), with `charset=utf-8` for text."""
    db = mimetypes.MimeTypes()
    table: dict[str, str] = {}
    for mapping in (db.types_map[True], db.types_map[False]):
        for ext, ctype in mapping.items():
            key = ext.lstrip(".").lower()
            if key and key not in table:
                table[key] = ctype
    for key in ("js", "mjs"):
        table[key] = "text/javascript"
    table["wasm"] = "application/wasm"
    for key, ctype in table.items():
        if ctype.startswith("text/") or ctype in _TEXTUAL:
            table[key] = f"{ctype}; charset=utf-8"
    return table


def index(docroot: Path, limit: int = 10_000) -> tuple[list[str], int]:
    """URL paths of the servable files under `docroot` (at most `limit`), and their total size.

    Hidden files and directories (a name starting with a dot) are never listed or served; a symlink
    counts only if it resolves inside the docroot (the core enforces the same rule on each request).
    """
    root = Path(docroot).resolve()
    paths: list[str] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(root)
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            full = Path(dirpath) / name
            try:
                real = full.resolve(strict=True)
                if root not in real.parents or not real.is_file():
                    continue
                size = real.stat().st_size
            except OSError:
                continue
            url = "/" + quote((rel_dir / name).as_posix() if rel_dir.parts else name)
            paths.append(url)
            total += size
            if name == "index.html":
                paths.append(url[: -len("index.html")])
            if len(paths) >= limit:
                return paths, total
    return paths, total
