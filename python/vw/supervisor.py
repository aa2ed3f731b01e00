"""The supervisor: one worker process per CPU, pinned, optionally real-time; replaced when it dies;
stopped gracefully on SIGTERM/SIGINT.

Each worker binds its own SO_REUSEPORT listener (nothing is shared between workers), pins itself,
reports where it runs (`worker <n> pid <pid> cpu <c>`, checked with getcpu) and hands the socket
to the Rust loop, which serves until it is told to stop.
"""

from __future__ import annotations

import errno
import gc
import os
import resource
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from vw import reload, static
from vw.config import ConfigError, ServeConfig

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
WAITED = (signal.SIGCHLD, signal.SIGHUP, signal.SIGUSR1, *STOP_SIGNALS)
# Handed from a supervisor to the one it execs on reload: its listeners, and its workers to retire.
ENV_FDS = "VW_REEXEC_LISTENERS"
ENV_OLD = "VW_REEXEC_RETIRE"
# A worker that dies this soon after starting, this many times in a row, is not restarted again.
FAST_DEATH_SECONDS = 1.0
FAST_DEATH_LIMIT = 5
EXIT_WORKER_START_FAILED = 3


def log(msg: str) -> None:
    """One line to stderr in one write(2), so lines from several workers never interleave."""
    sys.stderr.flush()
    data = (msg + "\n").encode("utf-8", "replace")
    while data:
        data = data[os.write(2, data):]


def _addr(host: str, port: int) -> tuple[int, tuple]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"cannot resolve host {host!r}: {e.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def _describe_bind_error(host: str, port: int, e: OSError) -> str:
    if e.errno == errno.EADDRINUSE:
        return f"cannot listen on {host}:{port}: address already in use"
    if e.errno == errno.EACCES:
        return f"cannot listen on {host}:{port}: permission denied (ports below 1024 need root)"
    if e.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}:{port}: no such local address"
    return f"cannot listen on {host}:{port}: {e.strerror}"


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """Check that host:port is free and hold it while the listeners are made.

    A plain bind (no SO_REUSEPORT) fails if anything, another vw included, already listens there.
    Then a bound, non-listening SO_REUSEPORT socket (it takes no connections) keeps the port ours
    until the per-slot listeners hold it; with port 0 it also fixes the port they all use.
    """
    family, sockaddr = _addr(host, port)
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(sockaddr)
        port = probe.getsockname()[1]
    except OSError as e:
        raise ConfigError(_describe_bind_error(host, port, e)) from None
    finally:
        probe.close()
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        holder.bind(_addr(host, port)[1])
    except OSError as e:
        holder.close()
        raise ConfigError(_describe_bind_error(host, port, e)) from None
    return holder, port


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


def listen_socket(host: str, port: int) -> socket.socket:
    family, sockaddr = _addr(host, port)
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(sockaddr)
    s.listen(4096)
    return s


@dataclass
class WorkerProc:
    index: int
    cpu: int
    pid: int
    started: float
    fast_deaths: int = 0


def worker_main(cfg: ServeConfig, index: int, mime: dict, mounts: list, listen_fd: int, app=None,
                interface: str | None = None, stats_addr: int = 0) -> int:
    """Runs in the forked child: pin, report, serve on this worker's own listener."""
    from vw import _core

    try:
        if cfg.pin:
            os.sched_setaffinity(0, {cfg.cpu_for(index)})
        if cfg.realtime and os.sched_getscheduler(0) != os.SCHED_RR:
            prio = os.sched_get_priority_max(os.SCHED_RR)
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(prio))
        if cfg.user is not None and os.geteuid() == 0:
            drop_privileges(cfg.user)  # (the supervisor has dropped already; this is a safeguard)
        sock = socket.socket(fileno=listen_fd)
        kwargs = {}
        options = dict(inline_max=cfg.inline_max, cache_max_bytes=cfg.cache_max_bytes,
                       max_body=cfg.max_body, shutdown_timeout=cfg.shutdown_timeout,
                       header_timeout=cfg.header_timeout, body_timeout=cfg.body_timeout,
                       keepalive_timeout=cfg.keepalive_timeout, write_timeout=cfg.write_timeout,
                       max_request_line=cfg.max_request_line, max_head=cfg.max_head,
                       max_headers=cfg.max_headers, max_connections=cfg.max_connections,
                       cache_control=cfg.cache_control, compress=cfg.compress,
                       not_found_page=static.page(cfg.not_found_page, mime), stats_addr=stats_addr)
        if cfg.access_log is not None:
            options["access_log"] = (cfg.access_log, cfg.access_log_format)
        if interface == "asgi":
            from vw import asgi

            log(f"worker {index} pid {os.getpid()} cpu {_core.current_cpu()}")
            asgi.serve(sock.detach(), mounts, mime, app, (cfg.host, cfg.port), **options)
            return 0
        if interface in ("wsgi", "native"):
            options["threads"] = cfg.threads
        if interface == "wsgi":
            kwargs["wsgi"] = (app, wsgi_environ(cfg), "")
        elif interface == "native":
            kwargs["native"] = (app.routes(), _event_loop())
        log(f"worker {index} pid {os.getpid()} cpu {_core.current_cpu()}")
        settle_gc()
        _core.run_worker(sock.detach(), mounts, mime, **kwargs, **options)
        return 0
    except Exception as e:  # one line in the log; the supervisor decides what happens next
        log(f"vw: worker {index}: {type(e).__name__}: {e}")
        return EXIT_WORKER_START_FAILED


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


def systemd_listeners() -> list[socket.socket]:
    """The sockets systemd passed (socket activation: LISTEN_PID is us, LISTEN_FDS of them from
    fd 3), or none. The variables are removed so that nothing started later takes them too."""
    pid, count = os.environ.pop("LISTEN_PID", ""), os.environ.pop("LISTEN_FDS", "")
    os.environ.pop("LISTEN_FDNAMES", None)
    if pid != str(os.getpid()) or not count.isdigit():
        return []
    out = []
    for fd in range(3, 3 + int(count)):
        os.set_inheritable(fd, False)
        s = socket.socket(fileno=fd)
        if s.type != socket.SOCK_STREAM or s.family not in (socket.AF_INET, socket.AF_INET6):
            raise ConfigError(f"socket activation: fd {fd} is not a TCP socket (vw serves TCP only)")
        s.setblocking(True)
        out.append(s)
    return out


def settle_gc() -> None:
    """Set up the cyclic garbage collector of an application worker, once the application is
    loaded: what exists now lives as long as the worker, so it is frozen out of every collection;
    and a request allocates a dozen tracked objects (scope or environ, headers, task, ...), which
    at Python's default threshold (700) runs a young collection every few dozen requests over all
    that is in flight. 10,000 makes that ~14 times rarer; cyclic garbage still goes, a little later.
    """
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def wsgi_environ(cfg: ServeConfig) -> dict:
    """The part of every WSGI environ that does not change between requests."""
    return {
        "SERVER_NAME": cfg.host,
        "SERVER_PORT": str(cfg.port),
        "SCRIPT_NAME": "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,  # handlers run on a pool of threads (--threads)
        "wsgi.multiprocess": (cfg.workers or 1) > 1,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }


def _event_loop():
    """The worker's event loop (uvloop when installed), where `async def` handlers run as tasks
    (on a thread of their own, started with the first one)."""
    import asyncio

    try:
        import uvloop  # type: ignore

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


class Supervisor:
    def __init__(self, cfg: ServeConfig, argv: list[str] | None = None):
        self.cfg = cfg
        self.argv = argv
        self.workers: dict[int, WorkerProc] = {}
        self.listeners: list[socket.socket] = []  # one per worker slot, kept across reloads
        self.retiring: set[int] = set()  # workers of the previous generation, draining
        self.stopping = False
        self.deadline: float | None = None  # when stopping: SIGKILL what is left after this
        self.exit_code = 0
        self.mime = static.content_types()
        self.mounts = []
        self.indexed = 0
        for prefix, root in cfg.static_mounts():
            paths, _ = static.index(root)
            self.mounts.append((prefix, str(root), paths))
            self.indexed += len(paths)
        self.app = None
        self.interface: str | None = None
        self.watcher: reload.Watcher | None = None  # made once the application is imported
        from vw import admin

        self.stats = admin.Stats(cfg.workers)
        self.restarts = [0] * cfg.workers
        self.admin: admin.AdminServer | None = None

    def load_app(self) -> None:
        """Import the application (after any --user drop: its code never runs as root)."""
        if self.cfg.app is not None:
            from vw import loader

            self.app = loader.load(self.cfg.app)
            self.interface = loader.detect(self.app, self.cfg.interface)
        if self.cfg.reload:
            self.watcher = reload.Watcher()  # watches the modules imported so far
    def spawn(self, index: int, fast_deaths: int = 0) -> None:
        cpu = self.cfg.cpu_for(index)
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                fd = os.dup(self.listeners[index].fileno())
                for listener in self.listeners:  # the other slots' sockets are not this worker's
                    listener.close()
                if self.admin is not None:  # nor the admin listener (a reload must be able to bind it)
                    self.admin.close()
                code = worker_main(self.cfg, index, self.mime, self.mounts, fd, self.app, self.interface,
                                   self.stats.address(index))
            finally:
                sys.stderr.flush()
                os._exit(code)
        self.workers[pid] = WorkerProc(index, cpu, pid, time.monotonic(), fast_deaths)

    def worker_infos(self) -> list:
        from vw.admin import WorkerInfo

        return sorted((WorkerInfo(w.index, w.pid, w.cpu, self.restarts[w.index]) for w in list(self.workers.values())),
                      key=lambda w: w.index)

    def ready(self) -> bool:
        return not self.stopping and len(self.workers) == self.cfg.workers

    def bind_admin(self) -> None:
        from vw.admin import AdminServer

        try:
            self.admin = AdminServer(self.cfg.admin_host, self.cfg.admin_port, self.stats, self.worker_infos, self.ready)
        except OSError as e:
            raise ConfigError(f"cannot listen on admin {self.cfg.admin_host}:{self.cfg.admin_port}: {e.strerror}") from None

    def run(self) -> int:
        cfg = self.cfg
        if cfg.realtime:
            check_realtime()
        if cfg.user is not None:
            lookup_user(cfg.user)  # an unknown user is an error before anything starts
        inherited = _inherited_listeners()
        activated = [] if inherited else systemd_listeners()
        extra: list[socket.socket] = []
        if activated:
            # systemd made the sockets: the workers share them (worker n takes socket n mod count).
            if len(activated) > cfg.workers:
                raise ConfigError(f"systemd passed {len(activated)} sockets: give vw at least as many workers "
                                  f"(--workers {len(activated)}), each serves one")
            self.listeners = [activated[i % len(activated)] for i in range(cfg.workers)]
            cfg.host, cfg.port = activated[0].getsockname()[:2]
        else:
            if not inherited:
                holder, cfg.port = reserve_port(cfg.host, cfg.port)
            # Each worker slot has its own SO_REUSEPORT listener, made here and kept by the
            # supervisor, so a worker that is replaced (or a reload) loses no queued connection.
            for i in range(cfg.workers):
                if i < len(inherited):
                    self.listeners.append(inherited[i])
                else:
                    self.listeners.append(listen_socket(cfg.host, cfg.port))
            extra = inherited[cfg.workers:]
            if not inherited:
                holder.close()
        if cfg.admin_port is not None:
            self.bind_admin()  # before the workers: a port in use is a clean error
        if cfg.pid_file is not None and not inherited:  # a reload keeps the PID, and the file
            write_pid_file(cfg.pid_file)
        raise_fd_limit()
        if cfg.realtime and os.sched_getscheduler(0) != os.SCHED_RR:
            # the supervisor takes SCHED_RR itself, so workers inherit it even after --user
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(os.sched_get_priority_max(os.SCHED_RR)))
        if cfg.user is not None:
            drop_privileges(cfg.user)  # bound, pinned-to-be, scheduled: nothing else needs root
        self.load_app()
        # Signals are taken synchronously with sigtimedwait; workers inherit the mask and the
        # Rust loop reads the stop signals from a signalfd.
        signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)
        pin = "pinned" if cfg.pin else "not pinned"
        rt = ", SCHED_RR" if cfg.realtime else ""
        what = f"{cfg.app} ({self.interface})" if cfg.app else str(cfg.docroot)
        log(f"vw serving {what} on http://{_fmt_host(cfg.host)}:{cfg.port} "
            f"({cfg.workers} workers, {pin}{rt}; {self.indexed} files indexed)")
        for i in range(cfg.workers):
            self.spawn(i)
        if self.admin is not None:
            # A worker forked later (a respawn) is forked while this thread runs: it takes no lock a
            # worker needs (it never logs or prints), so the child inherits none held.
            self.admin.start()
            log(f"vw admin on http://{_fmt_host(cfg.admin_host)}:{self.admin.port}/metrics")
        self.retire_previous()
        while self.workers or self.retiring:
            timeout = 0.5 if self.deadline is None else max(0.05, min(0.5, self.deadline - time.monotonic()))
            info = signal.sigtimedwait(WAITED, timeout)
            if info is not None and info.si_signo == signal.SIGHUP and not self.stopping:
                self.reload_now(check=True)
            if info is not None and info.si_signo == signal.SIGUSR1:
                self.kill_all(signal.SIGUSR1)  # each worker reopens its access log
            if info is not None and info.si_signo in STOP_SIGNALS:
                if self.stopping:
                    self.kill_all(signal.SIGKILL)  # asked twice: stop now
                else:
                    self.stop()
            self.reap()
            if self.watcher is not None and not self.stopping and self.watcher.changed():
                self.reload_now(check=True)
            if self.deadline is not None and time.monotonic() > self.deadline:
                self.kill_all(signal.SIGKILL)
                self.deadline = time.monotonic() + 5
        for listener in self.listeners + extra:
            listener.close()
        if cfg.pid_file is not None:
            try:
                if Path(cfg.pid_file).read_text().strip() == str(os.getpid()):
                    Path(cfg.pid_file).unlink()
            except OSError:
                pass
        return self.exit_code

    def reload_now(self, check: bool) -> None:
        """Start vw again in this process (exec) with new code and config. The listeners and the
        running workers are handed over: the new supervisor starts its workers on the same
        sockets, then tells these to drain. If the new code does not import, nothing changes."""
        if check and not reload.app_imports(self.cfg.app):
            return
        log("vw: reloading")
        for listener in self.listeners:
            os.set_inheritable(listener.fileno(), True)
        env = dict(os.environ)
        env[ENV_FDS] = ",".join(str(s.fileno()) for s in self.listeners)
        env[ENV_OLD] = ",".join(str(pid) for pid in [*self.workers, *self.retiring])
        # The same arguments, but the port actually used (it may have been 0: pick one).
        reload.reexec([*(self.argv or []), "--port", str(self.cfg.port)], env)

    def retire_previous(self) -> None:
        """After a reload: the previous generation's workers (still our children) drain."""
        old = os.environ.pop(ENV_OLD, "")
        pids = {int(p) for p in old.split(",") if p}
        if not pids:
            return
        time.sleep(0.2)  # let the new workers reach their event loops first
        self.retiring = pids
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                self.retiring.discard(pid)

    def stop(self) -> None:
        """Ask every worker to drain; whatever is left after the drain time is killed."""
        self.stopping = True
        self.deadline = time.monotonic() + self.cfg.shutdown_timeout + 0.8
        self.kill_all(signal.SIGTERM)

    def kill_all(self, sig: int) -> None:
        for pid in [*self.workers, *self.retiring]:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def reap(self) -> None:
        while self.workers or self.retiring:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.workers.clear()
                self.retiring.clear()
                return
            if pid == 0:
                return
            self.retiring.discard(pid)
            w = self.workers.pop(pid, None)
            if w is None or self.stopping:
                continue
            why = _describe_status(status)
            fast = time.monotonic() - w.started < FAST_DEATH_SECONDS
            deaths = w.fast_deaths + 1 if fast else 0
            if deaths >= FAST_DEATH_LIMIT:
                log(f"vw: worker {w.index} pid {pid} {why}; it failed {deaths} times at start, giving up")
                self.exit_code = 1
                self.stop()
                continue
            log(f"vw: worker {w.index} pid {pid} {why}; starting a new one")
            self.restarts[w.index] += 1
            self.stats.reset(w.index)
            self.spawn(w.index, deaths)


def write_pid_file(path: str) -> None:
    try:
        tmp = Path(f"{path}.tmp{os.getpid()}")
        tmp.write_text(f"{os.getpid()}\n")
        tmp.replace(path)
    except OSError as e:
        raise ConfigError(f"--pid-file {path!r}: {e.strerror}") from None


def _inherited_listeners() -> list[socket.socket]:
    """The listeners a reloading supervisor handed to this one, if any (one socket object per
    descriptor: slots that shared a socket share it again)."""
    fds = os.environ.pop(ENV_FDS, "")
    by_fd: dict[int, socket.socket] = {}
    out = []
    for fd in (int(f) for f in fds.split(",") if f):
        if fd not in by_fd:
            os.set_inheritable(fd, False)
            by_fd[fd] = socket.socket(fileno=fd)
        out.append(by_fd[fd])
    return out


def _fmt_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"was killed by {name}"
    return f"exited with status {os.WEXITSTATUS(status)}"
