"""A small blocking HTTP/2 client over the `h2` package, for tests that need what httpx hides:
many streams at once on one connection, when each piece of a body arrived, trailers, resets,
and uploads that follow the server's flow control."""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings


@dataclass
class Stream:
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = field(default=b"", repr=False)
    # (monotonic time, bytes) of each DATA frame
    pieces: list[tuple[float, int]] = field(default_factory=list, repr=False)
    trailers: dict[str, str] = field(default_factory=dict)
    ended: bool = False
    reset: int | None = None  # the RST_STREAM code, if the server reset the stream
    done_at: float = 0.0

    def __repr__(self) -> str:
        return (f"Stream(headers={self.headers}, body={self.body[:60]!r}... ({len(self.body)} bytes in {len(self.pieces)} "
                f"frames), trailers={self.trailers}, ended={self.ended}, reset={self.reset})")

    @property
    def status(self) -> int:
        return int(self.headers.get(":status", 0))

    @property
    def over(self) -> bool:
        return self.ended or self.reset is not None


class H2Client:
    """One connection: plain (h2c, prior knowledge) when `tls` is None, else TLS with ALPN h2."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None, timeout: float = 10, window: int = 65_535):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            tls.set_alpn_protocols(["h2"])
            raw = tls.wrap_socket(raw, server_hostname="localhost")
            assert raw.selected_alpn_protocol() == "h2", raw.selected_alpn_protocol()
        self.sock = raw
        self.scheme = "https" if tls is not None else "http"
        self.port = port
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        if window > 65_535:  # a client that lets the server send far ahead (as browsers and curl do)
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
            self.conn.increment_flow_control_window(window - 65_535)
        self.streams: dict[int, Stream] = {}
        self.goaway: int | None = None
        self.closed = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path: str, method: str = "GET", headers: list[tuple[str, str]] | None = None,
                body: bytes | None = None, end: bool = True) -> int:
        """Open a stream; with `body`, send it whole (following flow control); `end=False` leaves
        the body open (send more with `send`)."""
        sid = self.conn.get_next_available_stream_id()
        hs = [(":method", method), (":scheme", self.scheme), (":path", path), (":authority", f"localhost:{self.port}"),
              *(headers or [])]
        self.streams[sid] = Stream()
        self.conn.send_headers(sid, hs, end_stream=end and not body)
        self.flush()
        if body:
            self.send(sid, body, end=end)
        return sid

    def send(self, sid: int, data: bytes, end: bool = False, timeout: float = 60) -> int:
        """Send body on a stream as the windows allow, reading (and answering) meanwhile; stops
        early if the stream is over. Returns how much was sent."""
        view, deadline, sent = memoryview(data), time.monotonic() + timeout, 0
        while view:
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size, len(view))
            if room <= 0:
                assert time.monotonic() < deadline, "the server never opened its window"
                self.pump(0.5)
                if self.streams[sid].over:
                    return sent
                continue
            self.conn.send_data(sid, bytes(view[:room]))
            view, sent = view[room:], sent + room
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()
        return sent

    def reset(self, sid: int, code: int = 8) -> None:
        self.conn.reset_stream(sid, error_code=code)
        self.flush()

    def pump(self, timeout: float) -> bool:
        """Read what comes within `timeout`; False once the server closed."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
            return True
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return False
        now = time.monotonic()
        for ev in self.conn.receive_data(data):
            s = self.streams.get(getattr(ev, "stream_id", 0) or 0)
            if isinstance(ev, h2.events.ResponseReceived):
                s.headers = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                s.body += ev.data
                s.pieces.append((now, len(ev.data)))
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                s.trailers = dict(ev.headers)
            elif isinstance(ev, h2.events.StreamEnded):
                s.ended, s.done_at = True, now
            elif isinstance(ev, h2.events.StreamReset):
                if s is not None:
                    s.reset, s.done_at = ev.error_code, now
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = ev.error_code
        self.flush()
        return True

    def wait(self, *sids: int, timeout: float = 20) -> list[Stream]:
        """Read until each of these streams is over (ended or reset)."""
        deadline = time.monotonic() + timeout
        while not all(self.streams[s].over for s in sids):
            assert time.monotonic() < deadline, {s: self.streams[s] for s in sids}
            if not self.pump(0.2):
                break
        return [self.streams[s] for s in sids]

    def read_until(self, sid: int, n: int, timeout: float = 5) -> None:
        """Read until the stream has at least `n` bytes of body."""
        deadline = time.monotonic() + timeout
        while len(self.streams[sid].body) < n:
            assert time.monotonic() < deadline and not self.streams[sid].over, self.streams[sid]
            self.pump(0.2)

    def get(self, path: str, timeout: float = 20, **kw) -> Stream:
        return self.wait(self.request(path, **kw), timeout=timeout)[0]

    def close(self) -> None:
        try:
            self.conn.close_connection()
            self.flush()
        except (OSError, h2.exceptions.ProtocolError):
            pass
        self.sock.close()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
