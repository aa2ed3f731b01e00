"""How many CPUs vw may really use: the affinity mask, capped by the CPU quota of its cgroup.

A container with `resources.limits.cpu: 2` on a 64-CPU node sees all 64 CPUs in its affinity
mask; only the cgroup says that it gets 2 CPUs' worth of time. cgroup v2 says so in `cpu.max`
("QUOTA PERIOD", or "max"), v1 in `cpu.cfs_quota_us` (-1: none) and `cpu.cfs_period_us`. The
limit that holds is the smallest along the path from the process's cgroup up to the root.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Quota:
    cpus: float  # CPUs' worth of time per period (quota / period)
    version: int  # 1 or 2

    @property
    def whole(self) -> int:
        """The quota rounded up: the workers it can keep busy."""
        return max(1, math.ceil(self.cpus - 1e-9))


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _ancestors(base: Path, cgroup: str) -> list[Path]:
    """The cgroup's folder and each parent's, up to the mount's root."""
    parts = [p for p in cgroup.strip("/").split("/") if p]
    return [base.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _v2_limit(folder: Path) -> float | None:
    text = _read(folder / "cpu.max")
    if not text:
        return None
    fields = text.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_limit(folder: Path) -> float | None:
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    try:
        q, p = int(quota or ""), int(period or "")
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def _v1_mount(mountinfo: str) -> tuple[Path, str] | None:
    """Where cgroup v1's cpu controller is mounted, and the cgroup path of that mount's root."""
    for line in mountinfo.splitlines():
        pre, sep, post = line.partition(" - ")
        fields, after = pre.split(), post.split()
        if not sep or len(fields) < 5 or len(after) < 3 or after[0] != "cgroup":
            continue
        if "cpu" in after[2].split(","):
            return Path(fields[4]), fields[3]
    return None


def quota(proc: Path = Path("/proc/self"), v2_root: Path = Path("/sys/fs/cgroup")) -> Quota | None:
    """The CPU quota of this process's cgroup (v2, else v1), or None when there is none."""
    cgroups = _read(proc / "cgroup") or ""
    best: Quota | None = None
    for line in cgroups.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            for folder in _ancestors(v2_root, path):
                if (limit := _v2_limit(folder)) is not None and (best is None or limit < best.cpus):
                    best = Quota(limit, 2)
        elif "cpu" in controllers.split(","):
            mount = _v1_mount(_read(proc / "mountinfo") or "")
            if mount is None:
                continue
            base, root = mount
            # The mount shows the hierarchy from `root`: the process's path is below it.
            rel = path[len(root):] if root != "/" and path.startswith(root) else path
            for folder in _ancestors(base, rel):
                if (limit := _v1_limit(folder)) is not None and (best is None or limit < best.cpus):
                    best = Quota(limit, 1)
    return best


@dataclass(frozen=True)
class Plan:
    """The default worker count and pinning, and why (for the start line)."""
    workers: int
    pin: bool
    why: str | None  # None: the whole affinity mask, pinned


def plan(cpus: list[int], workers: int | None, pin: bool | None, found: Quota | None,
         env: dict[str, str] | None = None) -> Plan:
    """`workers`/`pin`: what the user gave (None: not given). WEB_CONCURRENCY (uvicorn's and
    gunicorn's convention) sets the count when --workers is not given. Workers are pinned by
    default only when they get the whole affinity mask, one each: under a quota smaller than the
    mask, pinning would put every container of a node on the same first CPUs."""
    from vw.config import ConfigError

    env = os.environ if env is None else env
    why = None
    capped = found is not None and found.whole < len(cpus)
    if workers is None and env.get("WEB_CONCURRENCY"):
        text = env["WEB_CONCURRENCY"]
        if not text.strip().isdigit():
            raise ConfigError(f"WEB_CONCURRENCY must be a whole number of workers, not {text!r}", "workers")
        workers = int(text)
    if workers is None:
        workers = found.whole if capped else len(cpus)
    if pin is None:
        pin = not capped
        if capped:
            why = f"the cgroup's CPU quota is {_fmt(found.cpus)} of {len(cpus)} CPUs"
    return Plan(workers, pin, why)


def _fmt(n: float) -> str:
    return str(int(n)) if n == int(n) else f"{n:.2f}".rstrip("0")
