"""What a process may do: the real-time scheduler, the descriptor limit, and the user it runs
as."""

from __future__ import annotations

import os
import resource

from vw.config import ConfigError


def check_realtime() -> None:
    """Refuse --realtime up front, with the reason, when the scheduler will not grant it."""
    if os.sched_getscheduler(0) == os.SCHED_RR:
        return  # already granted (a reload of a supervisor that has dropped its rights)
    try:
        prio = os.sched_get_priority_max(os.SCHED_RR)
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(prio))
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except PermissionError:
        raise ConfigError("--realtime needs permission to use SCHED_RR "
                          "(run as root, or grant CAP_SYS_NICE or an RLIMIT_RTPRIO)") from None


def raise_fd_limit() -> None:
    """Each connection is a descriptor: lift the soft limit to the hard one (workers inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def lookup_user(name: str) -> tuple[int, int]:
    """(uid, gid) of a user name or number; ConfigError when there is none."""
    import pwd

    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, ValueError):
        raise ConfigError(f"--user {name!r}: no such user") from None
    return entry.pw_uid, entry.pw_gid


def drop_privileges(name: str) -> None:
    """Become `name` for good: its group, no supplementary groups, its uid (real, effective, saved).
    Nothing to do when already unprivileged (after a reload)."""
    if os.geteuid() != 0:
        return
    uid, gid = lookup_user(name)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
