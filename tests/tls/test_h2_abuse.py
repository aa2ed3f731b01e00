"""HTTP/2 abuse (issue 13 item 4), each with raw frames over h2c: rapid reset, CONTINUATION
flood, HPACK bomb, too many streams, a zero window, PING and SETTINGS floods, stream-ID reuse.
Each must end in bounded memory and the right GOAWAY or RST_STREAM, with the worker serving
another client all along."""

from __future__ import annotations

import socket
import time

import hpack
import pytest
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame,
                              RstStreamFrame, SettingsFrame)

from conftest import Server, rss_kib

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED = 0, 1, 3, 5
REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 7, 8, 9, 11


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    (root / "1b").write_bytes(b"x")
    (root / "big.bin").write_bytes(b"b" * (4 << 20))
    s = Server([str(root), "--http2-cleartext", "--keepalive-timeout", "2"], workers=1)
    yield s
    assert s.stop() == 0


class Raw:
    """An HTTP/2 client that writes whatever frames it is given and reads what comes back."""

    def __init__(self, port: int, settings: dict | None = None):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.enc = hpack.Encoder()
        self.buf = b""
        self.send(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())

    def send(self, data: bytes) -> None:
        self.s.sendall(data)

    def headers(self, sid: int, path: str = "/1b", end_stream: bool = True, end_headers: bool = True) -> bytes:
        block = self.enc.encode([(":method", "GET"), (":scheme", "http"), (":path", path), (":authority", "t")])
        f = HeadersFrame(sid, block)
        f.flags.add("END_HEADERS") if end_headers else None
        if end_stream:
            f.flags.add("END_STREAM")
        return f.serialize()

    def frames(self, timeout: float = 5, until=None) -> list[Frame]:
        """Frames read until `until(frame)` is true, the server closes, or `timeout` passes."""
        out = []
        self.s.settimeout(0.2)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            while len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + length:
                    break
                f, _ = Frame.parse_frame_header(memoryview(self.buf[:9]))
                f.parse_body(memoryview(self.buf[9:9 + length]))
                self.buf = self.buf[9 + length:]
                out.append(f)
                if until and until(f):
                    return out
            try:
                chunk = self.s.recv(1 << 16)
            except socket.timeout:
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            self.buf += chunk
        return out

    def close(self) -> None:
        self.s.close()


def goaway(frames: list[Frame]) -> GoAwayFrame | None:
    return next((f for f in frames if isinstance(f, GoAwayFrame)), None)


def still_serves(port: int) -> None:
    c = Raw(port)
    try:
        c.send(c.headers(1))
        got = c.frames(until=lambda f: isinstance(f, DataFrame) and "END_STREAM" in f.flags)
        assert any(isinstance(f, DataFrame) and f.data == b"x" for f in got), got
    finally:
        c.close()


def test_a_well_behaved_client_first(srv):
    still_serves(srv.port)


def test_rapid_reset_gets_enhance_your_calm(srv):
    """CVE-2023-44487: HEADERS then RST_STREAM at once, over and over."""
    c = Raw(srv.port)
    burst = b"".join(c.headers(sid) + RstStreamFrame(sid, error_code=CANCEL).serialize() for sid in range(1, 2001, 2))
    c.send(burst)
    g = goaway(c.frames(until=lambda f: isinstance(f, GoAwayFrame)))
    assert g is not None and g.error_code == ENHANCE_YOUR_CALM, g
    c.close()
    still_serves(srv.port)


def test_continuation_flood_is_cut_short(srv):
    """2024's CONTINUATION flood: a header block that never ends."""
    c = Raw(srv.port)
    c.send(c.headers(1, end_headers=False))
    junk = hpack.Encoder().encode([("x-junk", "j" * 1000)])
    before = rss_kib(srv.workers[0][0])
    try:
        for _ in range(5000):
            c.send(ContinuationFrame(1, junk).serialize())
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server hung up mid-flood
    g = goaway(c.frames(timeout=5, until=lambda f: isinstance(f, GoAwayFrame)))
    assert g is not None and g.error_code != NO_ERROR, g
    assert rss_kib(srv.workers[0][0]) - before < 16 * 1024, "the flood was held in memory"
    c.close()
    still_serves(srv.port)


def _oversized(port: int, copies: int) -> tuple[Raw, list]:
    """Stream 1 puts one 4 KiB header in the dynamic table; stream 3 references it `copies`
    times (a header list of copies × 4 KiB from a block of a few hundred bytes)."""
    c = Raw(port)
    enc = hpack.Encoder()
    base = [(":method", "GET"), (":scheme", "http"), (":path", "/1b"), (":authority", "t")]
    first = enc.encode(base + [("x-bomb", "b" * 4000)])  # enters the table
    block = enc.encode(base + [("x-bomb", "b" * 4000)] * copies)  # each now one byte
    assert len(block) < 4000
    c.enc = enc
    c.send(HeadersFrame(1, first, flags=["END_HEADERS", "END_STREAM"]).serialize())
    c.send(HeadersFrame(3, block, flags=["END_HEADERS", "END_STREAM"]).serialize())
    got = c.frames(timeout=3, until=lambda f: (isinstance(f, RstStreamFrame) and f.stream_id == 3) or isinstance(f, GoAwayFrame)
                   or (isinstance(f, HeadersFrame) and f.stream_id == 3))
    dec = hpack.Decoder()
    for f in got:  # the answers' header blocks, in order (the decoder's table follows them)
        if isinstance(f, HeadersFrame):
            status = dict(dec.decode(f.data)).get(":status")
            assert f.stream_id != 3 or status == "431", f"the oversized header list was answered {status}"
    assert not any(isinstance(f, DataFrame) and f.stream_id == 3 and f.data for f in got), "never the body"
    return c, got


def test_hpack_bomb_is_refused_and_the_server_serves_on(srv):
    """100 references: 400 KiB of header list, 25 times the 16 KiB the server accepts. h2 ends
    the connection with ENHANCE_YOUR_CALM before decoding it all (a bomb's cost is bounded);
    nothing of stream 3 is answered, and a new connection is served."""
    c, got = _oversized(srv.port, 100)
    assert [f.error_code for f in got if isinstance(f, GoAwayFrame)] == [ENHANCE_YOUR_CALM], got
    assert not any(f.stream_id == 3 and not isinstance(f, RstStreamFrame) for f in got), got
    c.close()
    still_serves(srv.port)


def test_a_header_list_just_over_the_limit_is_431_and_the_connection_serves_on(srv):
    """5 references: 20 KiB, just over the 16 KiB limit: a 431 (or a reset) for that stream
    alone, and the next stream on the same connection is served."""
    c, got = _oversized(srv.port, 5)
    on_3 = [f for f in got if f.stream_id == 3]
    assert on_3 and isinstance(on_3[0], (RstStreamFrame, HeadersFrame)), got
    assert not any(isinstance(f, GoAwayFrame) for f in got), got
    c.send(c.headers(5))
    got = c.frames(timeout=5, until=lambda f: isinstance(f, DataFrame) and f.stream_id == 5)
    assert any(isinstance(f, DataFrame) and f.stream_id == 5 and f.data == b"x" for f in got), got
    c.close()


def test_too_many_streams_are_refused(srv):
    """With no window (initial window 0) every stream stays open; past 128 they are refused."""
    c = Raw(srv.port, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0})
    got = c.frames(timeout=1, until=lambda f: isinstance(f, SettingsFrame) and "ACK" not in f.flags)
    server_settings = next(f for f in got if isinstance(f, SettingsFrame) and "ACK" not in f.flags)
    assert server_settings.settings.get(SettingsFrame.MAX_CONCURRENT_STREAMS) == 128, server_settings.settings
    c.send(b"".join(c.headers(sid, "/big.bin") for sid in range(1, 2 * 150, 2)))
    got = c.frames(timeout=3, until=lambda f: False)
    refused = {f.stream_id for f in got if isinstance(f, RstStreamFrame) and f.error_code == REFUSED_STREAM}
    assert len(refused) >= 150 - 128, (len(refused), got[:5])
    assert goaway(got) is None or goaway(got).error_code in (NO_ERROR, ENHANCE_YOUR_CALM)
    c.close()
    still_serves(srv.port)


def test_zero_window_stall_is_dropped_by_the_keepalive_timeout(srv):
    c = Raw(srv.port, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0})
    c.send(c.headers(1, "/big.bin"))
    before = rss_kib(srv.workers[0][0])
    start = time.monotonic()
    got = c.frames(timeout=8)  # until the server closes
    assert time.monotonic() - start < 7, "a stalled stream held the connection open"
    assert any(isinstance(f, HeadersFrame) and f.stream_id == 1 for f in got)
    assert not any(isinstance(f, DataFrame) and f.data for f in got), "DATA sent past a zero window"
    assert rss_kib(srv.workers[0][0]) - before < 8 * 1024
    c.close()
    still_serves(srv.port)


@pytest.mark.parametrize("flood", ["ping", "settings"])
def test_ping_and_settings_floods_from_a_client_that_does_not_read(srv, flood):
    """Each PING and SETTINGS asks for an answer; a client that never reads them must not make
    the server hold them: once its socket is full, the server stops reading."""
    c = Raw(srv.port)
    frame = PingFrame(0, b"12345678").serialize() if flood == "ping" else SettingsFrame(0, settings={SettingsFrame.ENABLE_PUSH: 0}).serialize()
    c.s.settimeout(0.5)
    pid = srv.workers[0][0]
    before = rss_kib(pid)
    sent = 0
    end = time.monotonic() + 3
    try:
        while time.monotonic() < end:
            c.s.sendall(frame * 1000)
            sent += 1000
    except (socket.timeout, BrokenPipeError, ConnectionResetError):
        pass  # the server stopped reading (or hung up): the flood is bounded by the sockets
    grew = rss_kib(pid) - before
    assert grew < 16 * 1024, f"{flood} flood: the worker grew {grew} KiB after {sent} frames"
    still_serves(srv.port)  # the worker is not stuck
    c.close()


def test_stream_id_reuse_is_a_protocol_error(srv):
    c = Raw(srv.port)
    c.send(c.headers(5))
    c.frames(timeout=2, until=lambda f: isinstance(f, DataFrame) and "END_STREAM" in f.flags)
    c.send(c.headers(3))  # lower than one already used: never valid (RFC 9113 §5.1.1)
    g = goaway(c.frames(timeout=3, until=lambda f: isinstance(f, GoAwayFrame)))
    assert g is not None and g.error_code == PROTOCOL_ERROR, g
    c.close()
    still_serves(srv.port)


def test_data_flood_after_the_answer_is_dropped(srv):
    """A static answer ends its stream at once (RST_STREAM NO_ERROR if the client still sends):
    DATA the client keeps sending on it is thrown away, not held."""
    c = Raw(srv.port)
    c.send(c.headers(1, end_stream=False))
    got = c.frames(timeout=2, until=lambda f: isinstance(f, RstStreamFrame) and f.stream_id == 1)
    assert any(isinstance(f, RstStreamFrame) and f.stream_id == 1 for f in got), got
    pid = srv.workers[0][0]
    before = rss_kib(pid)
    try:
        for _ in range(300):
            c.send(DataFrame(1, b"d" * 16384).serialize())
    except (BrokenPipeError, ConnectionResetError):
        pass
    got = c.frames(timeout=1)
    g = goaway(got)
    assert g is None or g.error_code in (STREAM_CLOSED, FLOW_CONTROL_ERROR, PROTOCOL_ERROR), g
    assert rss_kib(pid) - before < 8 * 1024
    c.close()
    still_serves(srv.port)


def test_a_stopping_worker_says_goaway(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "1b").write_bytes(b"x")
    s = Server([str(root), "--http2-cleartext"])
    c = Raw(s.port)
    c.send(c.headers(1))
    c.frames(until=lambda f: isinstance(f, DataFrame) and "END_STREAM" in f.flags)
    s.proc.send_signal(__import__("signal").SIGTERM)
    frames = c.frames(timeout=5, until=lambda f: isinstance(f, GoAwayFrame) and f.last_stream_id == 1)
    # first "open no new stream" (the largest id), then the last stream taken; NO_ERROR both
    assert [(f.last_stream_id, f.error_code) for f in frames if isinstance(f, GoAwayFrame)] == [(2 ** 31 - 1, NO_ERROR), (1, NO_ERROR)], frames
    c.close()
    assert s.proc.wait(10) == 0
