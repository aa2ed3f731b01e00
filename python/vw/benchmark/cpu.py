"""CPU accounting from /proc: the CPU time a server's whole process tree spent, and how busy a core
was over a run."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vw.benchmark.tools import BenchError


@dataclass
class ProcStat:
    pid: int
    ppid: int
    cpu_ticks: int        # utime + stime: all threads, live and exited
    children_ticks: int   # cutime + cstime: children already waited for


def parse_proc_stat(text: str) -> ProcStat:
    """Parse the one line of /proc/PID/stat (see proc(5))."""
    head, sep, tail = text.rpartition(")")  # the command name may hold ') '
    if not sep:
        raise ValueError("not a /proc/PID/stat line")
    pid = int(head.split("(", 1)[0])
    fields = tail.split()  # fields[0] is field 3 (state) in proc(5) numbering
    field = lambda n: int(fields[n - 3])  # noqa: E731
    return ProcStat(pid=pid, ppid=field(4),
                    cpu_ticks=field(14) + field(15),
                    children_ticks=field(16) + field(17))


def read_proc_stat(pid: int) -> ProcStat | None:
    """The stat of a live process, or None if it is gone."""
    try:
        return parse_proc_stat(Path(f"/proc/{pid}/stat").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return None


def all_proc_stats() -> dict[int, ProcStat]:
    stats = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = read_proc_stat(int(entry.name))
            if stat is not None:
                stats[stat.pid] = stat
    return stats


def tree_stats(root: int, stats: dict[int, ProcStat]) -> list[ProcStat]:
    """root and all its descendants, found through the ppid links."""
    children: dict[int, list[int]] = {}
    for st in stats.values():
        children.setdefault(st.ppid, []).append(st.pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            found.append(stats[pid])
            todo.extend(children.get(pid, ()))
    return found


def tree_cpu_seconds(root: int) -> float:
    """CPU time (user+system, all threads) of a process and its descendants.

    Children that already exited and were reaped within the tree are counted
    through their parent's cutime/cstime, so a snapshot difference stays right.
    """
    ticks = sum(st.cpu_ticks + st.children_ticks
                for st in tree_stats(root, all_proc_stats()))
    return ticks / os.sysconf("SC_CLK_TCK")


def parse_cpu_line(line: str) -> tuple[int, int]:
    """(busy, total) jiffies from one 'cpuN ...' line of /proc/stat."""
    fields = [int(x) for x in line.split()[1:9]]  # user .. steal; guest is in user
    idle = fields[3] + fields[4]                   # idle + iowait
    return sum(fields) - idle, sum(fields)


def read_core_times(cpu: int) -> tuple[int, int]:
    prefix = f"cpu{cpu} "
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(prefix):
            return parse_cpu_line(line)
    raise BenchError(f"CPU {cpu} not in /proc/stat")


def busy_percent(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return 100.0 * (after[0] - before[0]) / total if total else 0.0
