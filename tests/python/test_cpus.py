"""The CPUs vw may use (issue 25): the affinity mask capped by the cgroup's CPU quota, read from
cgroup v2 and v1 trees laid out in a folder, and from a real cgroup v1 with a quota."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from conftest import Server
from vw import cpus
from vw.config import ConfigError


def v2_tree(tmp_path: Path, path: str, limits: dict[str, str]) -> tuple[Path, Path]:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cgroup").write_text(f"0::{path}\n")
    root = tmp_path / "cgroup2"
    for rel, value in {"": "max 100000", **limits}.items():
        (root / rel.strip("/")).mkdir(parents=True, exist_ok=True)
        (root / rel.strip("/") / "cpu.max").write_text(value + "\n")
    return proc, root


def test_cgroup_v2_quota_is_the_smallest_along_the_path(tmp_path):
    proc, root = v2_tree(tmp_path, "/kubepods/pod1/ctr", {"kubepods": "max 100000", "kubepods/pod1": "250000 100000",
                                                           "kubepods/pod1/ctr": "400000 100000"})
    q = cpus.quota(proc, root)
    assert (q.cpus, q.whole, q.version) == (2.5, 3, 2)


def test_cgroup_v2_without_a_quota(tmp_path):
    proc, root = v2_tree(tmp_path, "/a", {"a": "max 100000"})
    assert cpus.quota(proc, root) is None
    (root / "a" / "cpu.max").write_text("garbage\n")
    assert cpus.quota(proc, root) is None, "an unreadable value is no quota"


def test_cgroup_v1_quota_under_the_mount_s_root(tmp_path):
    proc = tmp_path / "proc"
    proc.mkdir()
    base = tmp_path / "fs" / "cpu,cpuacct"
    (base / "ctr").mkdir(parents=True)
    # In a container the mount's root is the container's cgroup, so /proc says its full path.
    (proc / "cgroup").write_text("12:memory:/docker/x\n4:cpu,cpuacct:/docker/x/ctr\n0::/\n")
    (proc / "mountinfo").write_text(
        f"30 25 0:27 /docker/x {base} rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n"
        f"31 25 0:28 /docker/x {tmp_path}/fs/memory rw - cgroup cgroup rw,memory\n")
    for folder, quota_us in ((base, "-1"), (base / "ctr", "150000")):
        (folder / "cpu.cfs_quota_us").write_text(quota_us + "\n")
        (folder / "cpu.cfs_period_us").write_text("100000\n")
    q = cpus.quota(proc, tmp_path / "no-v2")
    assert (q.cpus, q.whole, q.version) == (1.5, 2, 1)
    (base / "ctr" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpus.quota(proc, tmp_path / "no-v2") is None


def test_the_plan_caps_unpins_and_takes_web_concurrency():
    mask = list(range(64))
    assert cpus.plan(mask, None, None, None, env={}) == cpus.Plan(64, True, None)
    under = cpus.plan(mask, None, None, cpus.Quota(4, 2), env={})
    assert (under.workers, under.pin, under.why) == (4, False, "the cgroup's CPU quota is 4 of 64 CPUs")
    assert cpus.plan(mask, None, None, cpus.Quota(0.5, 1), env={}).workers == 1
    assert cpus.plan(mask, None, True, cpus.Quota(4, 2), env={}) == cpus.Plan(4, True, None), "--pin forces it"
    assert cpus.plan(mask, 8, None, cpus.Quota(4, 2), env={}).workers == 8, "--workers wins"
    assert cpus.plan([0, 1], None, None, cpus.Quota(3, 2), env={}) == cpus.Plan(2, True, None), "a quota past the mask"
    assert cpus.plan(mask, None, None, None, env={"WEB_CONCURRENCY": "3"}).workers == 3
    assert cpus.plan(mask, 5, None, None, env={"WEB_CONCURRENCY": "3"}).workers == 5
    with pytest.raises(ConfigError, match="WEB_CONCURRENCY"):
        cpus.plan(mask, None, None, None, env={"WEB_CONCURRENCY": "lots"})


V1_CPU = Path("/sys/fs/cgroup/cpu")


@pytest.fixture
def cpu_cgroup():
    """A real cgroup v1 `cpu` group with a quota of 1 CPU; vw is started inside it."""
    assert (V1_CPU / "cpu.cfs_quota_us").exists(), "this kind of machine has cgroup v1's cpu controller"
    group = V1_CPU / f"vw-test-{os.getpid()}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text("100000")
        yield group
    finally:
        for pid in (group / "cgroup.procs").read_text().split():
            (V1_CPU / "cgroup.procs").write_text(pid)
        group.rmdir()


def in_group(group: Path) -> list[str]:
    return ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh"]


def test_under_a_real_cgroup_quota_the_workers_are_fewer_and_unpinned(cpu_cgroup, docroot):
    n = len(os.sched_getaffinity(0))
    assert n >= 2, "a mask of at least 2 CPUs, for a quota of 1 to cap"
    (cpu_cgroup / "cpu.cfs_quota_us").write_text("100000")  # 1 CPU of n
    srv = Server([str(docroot)], workers=1, prefix=in_group(cpu_cgroup), default_workers=True)
    try:
        line = srv.wait_for(re.compile(r"vw serving"))
        assert f"(1 worker, unpinned: the cgroup's CPU quota is 1 of {n} CPUs, " in line.string, line.string
        pid = srv.workers[0][0]
        assert os.sched_getaffinity(pid) == os.sched_getaffinity(0), "not pinned to one CPU"
    finally:
        assert srv.stop() == 0
    # A quota of the whole mask pins as before; --pin pins under a quota too.
    srv = Server([str(docroot), "--pin"], workers=1, prefix=in_group(cpu_cgroup), default_workers=True)
    try:
        assert "(1 worker, pinned, " in srv.wait_for(re.compile(r"vw serving")).string
        assert len(os.sched_getaffinity(srv.workers[0][0])) == 1
    finally:
        assert srv.stop() == 0
    (cpu_cgroup / "cpu.cfs_quota_us").write_text(str(100000 * n))
    srv = Server([str(docroot)], workers=n, prefix=in_group(cpu_cgroup), default_workers=True)
    try:
        assert f"({n} workers, pinned, " in srv.wait_for(re.compile(r"vw serving")).string
    finally:
        assert srv.stop() == 0
    # WEB_CONCURRENCY sets the count.
    srv = Server([str(docroot)], workers=2, default_workers=True, env={"WEB_CONCURRENCY": "2"})
    try:
        assert "(2 workers, " in srv.wait_for(re.compile(r"vw serving")).string
    finally:
        assert srv.stop() == 0
