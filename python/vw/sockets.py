"""The listening sockets: the port checked and held, one SO_REUSEPORT listener per worker slot,
and those handed over by systemd (socket activation) or by a reloading supervisor."""

from __future__ import annotations

import errno
import os
import socket
import stat

from vw.config import ConfigError

# Handed from a supervisor to the one it execs on reload: its listeners.
ENV_FDS = "VW_REEXEC_LISTENERS"


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


def listen_socket(host: str, port: int, backlog: int = 4096) -> socket.socket:
    family, sockaddr = _addr(host, port)
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(sockaddr)
    s.listen(backlog)
    return s


def parse_bind(text: str) -> tuple:
    """`--bind` as gunicorn and hypercorn write it: `HOST:PORT`, `[::1]:PORT`, `unix:PATH` or
    `fd://N`: ("tcp", host, port), ("unix", path) or ("fd", n)."""
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise ConfigError(f"--bind {text!r}: unix: needs a path", "bind")
        return ("unix", path)
    if text.startswith("fd://"):
        if not text[5:].isdigit():
            raise ConfigError(f"--bind {text!r}: fd:// needs a descriptor number", "bind")
        return ("fd", int(text[5:]))
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535 or ("]" in host or "[" in host):
        raise ConfigError(f"--bind {text!r} is not HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N", "bind")
    return ("tcp", host, int(port))


def unix_listener(path: str, mode: int, backlog: int) -> socket.socket:
    """A listening Unix socket at `path`, mode `mode`. A socket file left by a server that is gone
    is replaced; one a live server listens on is a one-line error (nothing is taken from it)."""
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ConfigError(f"cannot listen on unix:{path}: it exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            raise ConfigError(f"cannot listen on unix:{path}: a server is listening there")
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)  # stale: nobody answers on it
        finally:
            probe.close()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(path)
    except OSError as e:
        s.close()
        raise ConfigError(f"cannot listen on unix:{path}: {e.strerror}") from None
    os.chmod(path, mode)
    s.listen(backlog)
    return s


def inherited_fd(fd: int) -> socket.socket:
    """`--bind fd://N`: a listening stream socket this process was given."""
    try:
        s = socket.socket(fileno=fd)
    except OSError as e:
        raise ConfigError(f"--bind fd://{fd}: {e.strerror}") from None
    if s.type != socket.SOCK_STREAM or s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) != 1:
        raise ConfigError(f"--bind fd://{fd} is not a listening stream socket")
    os.set_inheritable(fd, False)
    s.setblocking(True)
    return s


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
