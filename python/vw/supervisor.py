"""The supervisor: one worker process per CPU, pinned, optionally real-time; replaced when it dies;
stopped gracefully on SIGTERM/SIGINT.

Each worker binds its own SO_REUSEPORT listener (nothing is shared between workers), pins itself,
reports where it runs (`worker <n> pid <pid> cpu <c>`, checked with getcpu) and hands the socket
to the Rust loop, which serves until it is told to stop.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from vw import reload, static, tls
from vw.child import worker_main
from vw.config import ConfigError, ServeConfig
from vw.console import log, warn
from vw.privileges import check_realtime, drop_privileges, lookup_user, raise_fd_limit
from vw.sockets import (ENV_FDS, _inherited_listeners, inherited_fd, listen_socket, reserve_port, systemd_listeners,
                        unix_listener)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
WAITED = (signal.SIGCHLD, signal.SIGHUP, signal.SIGUSR1, *STOP_SIGNALS)
# Handed from a supervisor to the one it execs on reload: its workers to retire (its listeners:
# sockets.ENV_FDS).
ENV_OLD = "VW_REEXEC_RETIRE"
# A worker that dies this soon after starting, this many times in a row, is not restarted again.
FAST_DEATH_SECONDS = 1.0
FAST_DEATH_LIMIT = 5


# Why a worker was replaced (the `reason` of vw_worker_restarts_total).
REASONS = ("crash", "max_requests", "max_rss", "hung")
# A worker whose loop has not turned for this long is not ready (/readyz 503); it turns at
# least once a second, idle or not.
STALL_SECONDS = 2.0
# How often a worker's resident memory is read for --max-rss.
RSS_EVERY = 2.0
# A replacement gets this long to reach its event loop before the worker it replaces drains.
HANDOVER_SECONDS = 0.2


@dataclass
class WorkerProc:
    index: int
    cpu: int
    pid: int
    started: float
    fast_deaths: int = 0
    # --max-requests: the slot's request count when this worker started, and its own limit
    served_from: int = 0
    limit: int = 0


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
        self.factory = None  # (callable, (args, kwargs)): --factory, called in each worker
        self.unix_path: str | None = None  # the Unix socket this supervisor made (removed at exit)
        self.interface: str | None = None
        self.watcher: reload.Watcher | None = None  # made once the application is imported
        from vw import admin

        self.stats = admin.Stats(cfg.workers)
        self.restarts = [dict.fromkeys(REASONS, 0) for _ in range(cfg.workers)]
        self.handing_over: list[tuple[int, float]] = []  # (pid, when): recycled, to drain then
        self.next_rss_check = 0.0
        self.admin: admin.AdminServer | None = None
        self.tls = None  # (identities, client CA, ticket secret) as PEM bytes, for the workers
        self.kernel_tls = False

    def load_app(self) -> None:
        """Import the application (after any --user drop: its code never runs as root)."""
        if self.cfg.app is not None:
            from vw import loader

            obj, call = loader.load_target(self.cfg.app, self.cfg.app_dir)
            if self.cfg.factory and call is None:
                call = ((), {})
            if call is not None:  # each worker calls it (its own application, connections and all)
                self.factory, self.interface = (obj, call), "factory, called in each worker"
            else:
                self.app = obj
                self.interface = loader.detect(obj, self.cfg.interface)
                loader.check_shape(obj, self.interface, self.cfg.app)
        if self.cfg.reload:
            # the modules imported so far, and the files of --reload-dir
            self.watcher = reload.Watcher(dirs=self.cfg.reload_dir, include=self.cfg.reload_include,
                                          exclude=self.cfg.reload_exclude)
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
                                   self.stats.address(index), self.tls, self.factory)
            finally:
                sys.stderr.flush()
                os._exit(code)
        limit = self.cfg.max_requests + random.randint(0, self.cfg.max_requests_jitter) if self.cfg.max_requests else 0
        self.workers[pid] = WorkerProc(index, cpu, pid, time.monotonic(), fast_deaths, self.stats.requests(index), limit)

    def check_recycling(self) -> None:
        """--max-requests and --max-rss: replace the workers past them."""
        now = time.monotonic()
        for pid, when in [h for h in self.handing_over if h[1] <= now]:
            self.handing_over.remove((pid, when))
            try:
                os.kill(pid, signal.SIGTERM)  # its replacement serves: drain
            except ProcessLookupError:
                self.retiring.discard(pid)
        if self.stopping:
            return
        read_rss = self.cfg.max_rss > 0 and now >= self.next_rss_check
        if read_rss:
            self.next_rss_check = now + RSS_EVERY
        for w in list(self.workers.values()):
            served = self.stats.requests(w.index) - w.served_from
            if w.limit and served >= w.limit:
                self.recycle(w, "max_requests", f"served {served} requests (--max-requests {w.limit})")
            elif read_rss and (rss := rss_mib(w.pid)) > self.cfg.max_rss:
                self.recycle(w, "max_rss", f"uses {rss} MiB (--max-rss {self.cfg.max_rss})")

    def recycle(self, w: WorkerProc, reason: str, why: str) -> None:
        """Start a worker in `w`'s place (its CPU, its socket), then let `w` drain: connections
        waiting in the socket go to the new one, those `w` has finish with it."""
        log(f"vw: worker {w.index} pid {w.pid} {why}; a new one takes its place, the old one drains")
        self.workers.pop(w.pid, None)
        self.retiring.add(w.pid)
        self.restarts[w.index][reason] += 1
        self.spawn(w.index)
        self.handing_over.append((w.pid, time.monotonic() + HANDOVER_SECONDS))

    def worker_infos(self) -> list:
        from vw.admin import WorkerInfo

        return sorted((WorkerInfo(w.index, w.pid, w.cpu, self.restarts[w.index]) for w in list(self.workers.values())),
                      key=lambda w: w.index)

    def ready(self) -> bool:
        return not self.stopping and len(self.workers) == self.cfg.workers and not self.stalled(STALL_SECONDS)

    def stalled(self, seconds: float) -> list:
        """The workers whose loop has not turned for `seconds` (since their first turn: a
        worker starting, its lifespan startup included, is not judged)."""
        now_ms = time.monotonic_ns() // 1_000_000
        out = []
        for w in list(self.workers.values()):
            beat = self.stats.heartbeat_ms(w.index)
            if beat and now_ms - beat > seconds * 1000:
                out.append((w, (now_ms - beat) / 1000))
        return out

    def check_hung(self) -> None:
        """--worker-timeout: a worker whose loop has not turned for that long (a C extension
        holding the GIL, a deadlock) is killed and replaced. Handler threads that wait are not
        the loop: they never make a worker hung."""
        if not self.cfg.worker_timeout or self.stopping:
            return
        for w, idle in self.stalled(self.cfg.worker_timeout):
            warn(f"vw: worker {w.index} pid {w.pid} hung: its loop has not turned for {idle:.0f} s "
                f"(--worker-timeout {self.cfg.worker_timeout}); killing it and starting a new one")
            self.workers.pop(w.pid, None)
            self.retiring.add(w.pid)  # reaped there, without counting it as a crash
            self.restarts[w.index]["hung"] += 1
            try:
                os.kill(w.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.stats.reset(w.index)
            self.spawn(w.index)

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
        elif cfg.listen[0] != "tcp":
            # A Unix socket, or one vw was given: one socket that every worker accepts on.
            if inherited:
                shared = inherited[0]
            elif cfg.listen[0] == "unix":
                shared = unix_listener(cfg.listen[1], cfg.uds_mode, cfg.backlog)
                self.unix_path = cfg.listen[1]
            else:
                shared = inherited_fd(cfg.listen[1])
            self.listeners = [shared] * cfg.workers
            if cfg.listen[0] == "unix" and inherited:
                self.unix_path = cfg.listen[1]  # ours still: removed when this supervisor exits
        else:
            if not inherited:
                holder, cfg.port = reserve_port(cfg.host, cfg.port)
            # Each worker slot has its own SO_REUSEPORT listener, made here and kept by the
            # supervisor, so a worker that is replaced (or a reload) loses no queued connection.
            for i in range(cfg.workers):
                if i < len(inherited):
                    self.listeners.append(inherited[i])
                else:
                    self.listeners.append(listen_socket(cfg.host, cfg.port, cfg.backlog))
            extra = inherited[cfg.workers:]
            if not inherited:
                holder.close()
        if cfg.admin_port is not None:
            self.bind_admin()  # before the workers: a port in use is a clean error
        if cfg.pid_file is not None and not inherited:  # a reload keeps the PID, and the file
            write_pid_file(cfg.pid_file)
        raise_fd_limit()
        if cfg.tls:  # read before any --user drop: a key only root may read still serves
            identities, ca = tls.load(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca)
            secret = tls.ticket_secret()
            self.kernel_tls = tls.check(identities, ca, secret)
            self.tls = (identities, ca, secret)
        if cfg.realtime and os.sched_getscheduler(0) != os.SCHED_RR:
            # the supervisor takes SCHED_RR itself, so workers inherit it even after --user
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(os.sched_get_priority_max(os.SCHED_RR)))
        if cfg.user is not None:
            drop_privileges(cfg.user)  # bound, pinned-to-be, scheduled: nothing else needs root
        self.load_app()
        # Signals are taken synchronously with sigtimedwait; workers inherit the mask and the
        # Rust loop reads the stop signals from a signalfd.
        signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)
        pin = "pinned" if cfg.pin else f"unpinned: {cfg.pin_note}" if cfg.pin_note else "not pinned"
        rt = ", SCHED_RR" if cfg.realtime else ""
        what = f"{cfg.app} ({self.interface})" if cfg.app else str(cfg.docroot)
        scheme = "https" if cfg.tls else "http"
        where = {"unix": lambda: f"unix:{cfg.listen[1]}", "fd": lambda: f"fd://{cfg.listen[1]}"}.get(
            cfg.listen[0], lambda: f"{scheme}://{_fmt_host(cfg.host)}:{cfg.port}")()
        log(f"vw serving {what} on {where} "
            f"({cfg.workers} worker{'s' if cfg.workers != 1 else ''}, {pin}{rt}, {'io_uring' if cfg.io == 'uring' else 'epoll'}; "
            f"{self.indexed} files indexed)")
        if cfg.io_note:
            log(f"vw {cfg.io_note}")
        if self.tls is not None:
            n = len(self.tls[0])
            # kTLS (the kernel's record layer) is detected, not used yet: say which it is
            kernel = "the kernel offers kTLS, not used yet" if self.kernel_tls else "this kernel has no kTLS"
            client = "; client certificates required" if self.tls[1] is not None else ""
            log(f"vw TLS 1.3 and 1.2, {n} certificate{'s' if n != 1 else ''}{client}; ALPN h2, http/1.1; "
                f"records encrypted in user space ({kernel})")
        if cfg.http2_cleartext:
            log("vw HTTP/2 without TLS too, for clients that start with its preface (h2c)")
        for i in range(cfg.workers):
            self.spawn(i)
        if self.admin is not None:
            # A worker forked later (a respawn) is forked while this thread runs: it takes no lock a
            # worker needs (it never logs or prints), so the child inherits none held.
            self.admin.start()
            log(f"vw admin on http://{_fmt_host(cfg.admin_host)}:{self.admin.port}/metrics")
        self.retire_previous()
        while self.workers or self.retiring:
            # --max-requests is looked at 20 times a second (a worker may serve a few more)
            turn = 0.05 if cfg.max_requests or self.handing_over else 0.5
            timeout = turn if self.deadline is None else max(0.05, min(turn, self.deadline - time.monotonic()))
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
            self.check_recycling()
            self.check_hung()
            if self.watcher is not None and not self.stopping and self.watcher.changed():
                self.reload_now(check=True)
            if self.deadline is not None and time.monotonic() > self.deadline:
                self.kill_all(signal.SIGKILL)
                self.deadline = time.monotonic() + 5
        for listener in self.listeners + extra:
            listener.close()
        if self.unix_path is not None:
            try:
                os.unlink(self.unix_path)  # at exit; a reload execs before this and keeps it
            except OSError:
                pass
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
        if check and not reload.app_imports(self.cfg.app, self.cfg.app_dir):
            return
        if self.cfg.tls:
            # the new supervisor reads the certificates again: they must load, or nothing changes
            try:
                identities, ca = tls.load(self.cfg.tls_cert, self.cfg.tls_key, self.cfg.tls_client_ca)
                tls.check(identities, ca, self.tls[2])
            except ConfigError as e:
                warn(f"vw: not reloading: {e}")
                return
        log("vw: reloading")
        for listener in self.listeners:
            os.set_inheritable(listener.fileno(), True)
        env = dict(os.environ)
        env[ENV_FDS] = ",".join(str(s.fileno()) for s in self.listeners)
        env[ENV_OLD] = ",".join(str(pid) for pid in [*self.workers, *self.retiring])
        if self.tls is not None:
            env[tls.ENV_TICKET_SECRET] = self.tls[2].hex()  # tickets issued so far stay valid
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
                log(f"vw: worker {w.index} pid {pid} {why}; it failed {deaths} times at start, giving up", 40)
                self.exit_code = 1
                self.stop()
                continue
            warn(f"vw: worker {w.index} pid {pid} {why}; starting a new one")
            self.restarts[w.index]["crash"] += 1
            self.stats.reset(w.index)
            self.spawn(w.index, deaths)


def rss_mib(pid: int) -> int:
    """A process's resident memory in MiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS:")), 0)
    except OSError:
        return 0


def write_pid_file(path: str) -> None:
    try:
        tmp = Path(f"{path}.tmp{os.getpid()}")
        tmp.write_text(f"{os.getpid()}\n")
        tmp.replace(path)
    except OSError as e:
        raise ConfigError(f"--pid-file {path!r}: {e.strerror}") from None


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
