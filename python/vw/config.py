"""Validated settings for ``vw serve``. Every check raises ConfigError with one clear sentence."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(Exception):
    """A bad option or value: reported as one line, never a traceback."""


def default_docroot() -> Path:
    """The demo docroot shipped inside the package."""
    return Path(__file__).resolve().parent / "demo"


def available_cpus() -> list[int]:
    """The CPUs in this process's affinity mask (what `taskset` allows), sorted."""
    return sorted(os.sched_getaffinity(0))


@dataclass
class ServeConfig:
    docroot: Path = field(default_factory=default_docroot)
    host: str = "127.0.0.1"
    port: int = 8085
    workers: int | None = None  # None: one per CPU in the affinity mask
    pin: bool = True
    realtime: bool = False
    shutdown_timeout: int = 4
    inline_max: int = 256 * 1024
    cache_max_bytes: int = 64 << 20
    cpus: list[int] = field(default_factory=available_cpus)

    def validate(self) -> "ServeConfig":
        root = Path(self.docroot)
        if not root.exists():
            raise ConfigError(f"docroot {str(root)!r} does not exist")
        if not root.is_dir():
            raise ConfigError(f"docroot {str(root)!r} is not a directory")
        if not os.access(root, os.R_OK | os.X_OK):
            raise ConfigError(f"docroot {str(root)!r} is not readable")
        self.docroot = root.resolve()
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be between 0 and 65535, not {self.port}")
        if self.workers is None:
            self.workers = len(self.cpus)
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, not {self.workers}")
        if self.workers > 1024:
            raise ConfigError(f"--workers {self.workers} is more than 1024")
        if not self.cpus:
            raise ConfigError("no CPU in this process's affinity mask")
        return self

    def cpu_for(self, worker: int) -> int:
        """Worker n runs on the n-th CPU of the mask (wrapping when there are more workers)."""
        return self.cpus[worker % len(self.cpus)]
