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


# The web's own types, the same on every machine whatever its mime.types says or lacks.
_WEB = {"js": "text/javascript", "mjs": "text/javascript", "wasm": "application/wasm",
        "json": "application/json", "map": "application/json", "webmanifest": "application/manifest+json",
        "woff": "font/woff", "woff2": "font/woff2", "ttf": "font/ttf", "otf": "font/otf",
        "webp": "image/webp", "avif": "image/avif", "svg": "image/svg+xml", "ico": "image/vnd.microsoft.icon",
        "md": "text/markdown", "mp4": "video/mp4", "webm": "video/webm", "opus": "audio/ogg"}


def content_types() -> dict[str, str]:
    """Extension (lower case, no dot) → Content-Type: Python's table, then the system's maintained
    one (/etc/mime.types, from Debian's media-types or the distribution's equivalent) over it,
    then the web's own types; `charset=utf-8` for text."""
    files = [f for f in mimetypes.knownfiles if os.path.isfile(f)]
    db = mimetypes.MimeTypes(filenames=files)
    table: dict[str, str] = {}
    for mapping in (db.types_map[False], db.types_map[True]):  # strict types win
        for ext, ctype in mapping.items():
            key = ext.lstrip(".").lower()
            if key:
                table[key] = ctype
    table.update(_WEB)
    for key, ctype in table.items():
        if ctype.startswith("text/") or ctype in _TEXTUAL:
            table[key] = f"{ctype}; charset=utf-8"
    return table


def page(path: Path | None, mime: dict[str, str]) -> tuple[bytes, str] | None:
    """The body and Content-Type of a page file (--not-found-page), read once."""
    if path is None:
        return None
    ext = Path(path).suffix.lstrip(".").lower()
    return Path(path).read_bytes(), mime.get(ext, "application/octet-stream")


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
