"""WebSocket rules, frame by frame, over raw sockets (the case groups of the Autobahn
Testsuite, which needs Python 2 and cannot run here): the handshake, framing, pings, reserved
bits, opcodes, fragmentation, UTF-8, close codes, limits, deflate, keepalive."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import pytest

from conftest import rss_kib, Reader, connect, get, run_app
from wsclient import KEY, WS, accept_for, close_payload, deflate, frame, inflate

TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    static = tmp_path_factory.mktemp("static")
    (static / "f.txt").write_text("a file\n")
    s = run_app("ws_app:app", "--static", f"/files={static}", "--ws-max-message", "100000")
    yield s
    assert s.stop() == 0


def events(port: int) -> list:
    return json.loads(get(port, "/events").body)


def wait_event(port: int, path: str, timeout: float = 5) -> list:
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in events(port) if e[0] == path]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def fails_with(port: int, data: bytes, code: int) -> None:
    """Sending `data` makes the server close with `code` and then end the TCP connection."""
    with WS(port) as ws:
        assert ws.status == 101
        ws.send(data)
        assert ws.close_code()[0] == code
        assert ws.eof(), "the server ends the TCP connection after a protocol failure"


# -- handshake (RFC 6455 §4) -------------------------------------------------------------

def test_the_handshake_answers_101_with_the_accept_key_and_the_chosen_subprotocol(srv):
    with WS(srv.port, extra="Sec-WebSocket-Protocol: chat, superchat\r\n") as ws:
        assert ws.status == 101
        assert ws.headers["sec-websocket-accept"] == accept_for(KEY)
        assert ws.headers["upgrade"].lower() == "websocket" and ws.headers["connection"].lower() == "upgrade"
        assert ws.headers["sec-websocket-protocol"] == "superchat"
        assert ws.headers["x-accepted"] == "1" and "content-length" not in ws.headers
        assert "sec-websocket-extensions" not in ws.headers, "no extension offered: none answered"


def raw_handshake(port: int, head: str) -> bytes:
    with connect(port) as s:
        s.sendall(head.encode())
        r = Reader(s).response()
        return r


@pytest.mark.parametrize("fields,status", [
    ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n", 400),
    ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: not base64!!\r\nSec-WebSocket-Version: 13\r\n", 400),
    (f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n", 400),
    (f"Upgrade: websocket\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n", 400),
    (f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 8\r\n", 426),
])
def test_a_malformed_handshake_is_refused_and_closed(srv, fields, status):
    with connect(srv.port) as s:
        s.sendall(f"GET /echo HTTP/1.1\r\nHost: t\r\n{fields}\r\n".encode())
        rd = Reader(s)
        r = rd.response()
        assert r.status == status
        if status == 426:
            assert r.header("Sec-WebSocket-Version") == "13"
        assert r.header("Connection") == "close" and rd.closed()


def test_only_a_get_to_the_application_becomes_a_websocket(srv):
    up = f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
    # POST, an h2c upgrade, HTTP/1.0 and a static path get plain answers.
    for head in (f"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n{up}\r\n",
                 "GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
                 f"GET /echo HTTP/1.0\r\nHost: t\r\n{up}\r\n"):
        r = raw_handshake(srv.port, head)
        assert (r.status, r.body) == (200, b"plain http"), head
    r = raw_handshake(srv.port, f"GET /files/f.txt HTTP/1.1\r\nHost: t\r\n{up}\r\n")
    assert (r.status, r.body) == (200, b"a file\n")
    # A handshake with a body is malformed.
    r = raw_handshake(srv.port, f"GET /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n{up}\r\nhi")
    assert r.status == 400


def test_an_application_that_closes_before_accepting_denies_with_403_or_its_own_response(srv):
    up = f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
    for path, status, body in (("/deny", 403, b""), ("/return-before", 403, b""), ("/raise-before", 500, b""),
                               ("/reject", 401, b"no entry")):
        with connect(srv.port) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n{up}\r\n".encode())
            rd = Reader(s)
            r = rd.response()
            assert (r.status, r.body) == (status, body), path
            if path == "/reject":
                assert r.header("x-why") == "token"
            assert r.header("Connection") == "close" and rd.closed()


# -- framing (§5) ------------------------------------------------------------------------

def test_text_binary_and_empty_messages_echo(srv):
    with WS(srv.port) as ws:
        for op, payload in ((TEXT, "héllo".encode()), (BINARY, bytes(range(256)) * 300), (TEXT, b""), (BINARY, b"")):
            ws.send(frame(op, payload))
            assert ws.message() == (op, payload)


@pytest.mark.parametrize("data,code", [
    (frame(TEXT, b"x", mask=False), 1002),          # a client frame must be masked
    (frame(TEXT, b"x", rsv=2), 1002),               # RSV2
    (frame(TEXT, b"x", rsv=1), 1002),               # RSV3
    (frame(TEXT, b"x", rsv=4), 1002),               # RSV1 without permessage-deflate
    (frame(0x3, b"x"), 1002),                       # reserved data opcode
    (frame(0xB, b"x"), 1002),                       # reserved control opcode
    (frame(PING, b"x" * 126), 1002),                # control frame over 125 bytes
    (frame(PING, b"x", fin=False), 1002),           # fragmented control frame
    (frame(CONT, b"x"), 1002),                      # continuation with nothing to continue
    (frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), 1002),  # a new message inside one
    (frame(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"), 1007),  # a surrogate
    (frame(TEXT, b"\xff"), 1007),
    (frame(TEXT, b"\xe2\x82", fin=False) + frame(CONT, b""), 1007),  # a character cut at the end
    (frame(CLOSE, b"\x03"), 1002),                  # a close payload of one byte
    (frame(CLOSE, close_payload(1005)), 1002),      # codes that may not be sent
    (frame(CLOSE, close_payload(1006)), 1002),
    (frame(CLOSE, close_payload(999)), 1002),
    (frame(CLOSE, close_payload(1016)), 1002),
    (frame(CLOSE, close_payload(5000)), 1002),
    (frame(CLOSE, close_payload(1000, b"\xff")), 1007),  # a reason that is not UTF-8
])
def test_a_broken_rule_fails_the_connection_with_its_code(srv, data, code):
    fails_with(srv.port, data, code)


def test_a_text_message_is_checked_as_it_arrives_not_only_at_its_end(srv):
    with WS(srv.port) as ws:
        ws.send(frame(TEXT, b"ok \xff", fin=False))  # the bad byte comes; the message never ends
        assert ws.close_code()[0] == 1007 and ws.eof()


def test_fragments_with_pings_between_them_and_code_points_split_across_them(srv):
    with WS(srv.port) as ws:
        euro = "€".encode()  # three bytes, split over three frames
        ws.send(frame(TEXT, b"price: " + euro[:1], fin=False))
        ws.send(frame(PING, b"ping 1"))
        ws.send(frame(CONT, euro[1:2], fin=False))
        ws.send(frame(PING, b"ping 2"))
        ws.send(frame(CONT, euro[2:] + b"!"))
        assert ws.recv()[:2] == (0x80 | PONG, b"ping 1")
        assert ws.recv()[:2] == (0x80 | PONG, b"ping 2")
        assert ws.recv()[:2] == (0x80 | TEXT, "price: €!".encode())
        ws.send(frame(PONG, b"unsolicited"))  # ignored
        ws.send(frame(PING, b""))
        assert ws.recv()[:2] == (0x80 | PONG, b"")


def test_a_message_cut_into_single_bytes_arrives_whole(srv):
    with WS(srv.port) as ws:
        data = frame(BINARY, b"abcdefgh" * 20) + frame(TEXT, "zürich".encode())
        for i in range(len(data)):
            ws.send(data[i:i + 1])
        assert ws.message() == (BINARY, b"abcdefgh" * 20)
        assert ws.message() == (TEXT, "zürich".encode())


# -- close (§5.5.1, §7) -------------------------------------------------------------------

@pytest.mark.parametrize("payload,echo", [
    (close_payload(1000, b"bye"), 1000), (close_payload(3000), 3000), (close_payload(4999), 4999),
    (close_payload(1014), 1014), (b"", 1005),
])
def test_the_client_s_close_is_echoed_then_the_server_ends_the_connection(srv, payload, echo):
    with WS(srv.port, "/echo?c") as ws:
        ws.send(frame(CLOSE, payload))
        assert ws.close_code()[0] == echo
        assert ws.eof()
    code = 1005 if not payload else echo
    assert [["/echo", code, "bye" if payload.endswith(b"bye") else ""]] == [e for e in wait_event(srv.port, "/echo")[-1:]]


def test_the_application_closes_and_waits_for_the_client_s_answer(srv):
    with WS(srv.port) as ws:
        ws.send(frame(TEXT, b"close:4001:done here"))
        assert ws.close_code() == (4001, b"done here")
        ws.send(frame(TEXT, b"after the close: never delivered"))
        ws.send(frame(CLOSE, close_payload(4001)))
        assert ws.eof()


def test_the_end_of_the_application_closes_the_websocket(srv):
    for path, code in (("/return", 1000), ("/raise-after", 1011)):
        with WS(srv.port, path) as ws:
            assert ws.status == 101
            assert ws.close_code()[0] == code
            ws.send(frame(CLOSE, close_payload(code)))
            assert ws.eof()


def test_a_client_that_vanishes_is_a_1006_disconnect(srv):
    with WS(srv.port, "/echo?gone") as ws:
        ws.send(frame(TEXT, b"hi"))
        assert ws.message() == (TEXT, b"hi")
    assert ["/echo", 1006, ""] in wait_event(srv.port, "/echo")


# -- limits -------------------------------------------------------------------------------

def test_a_message_over_the_limit_is_1009_before_its_payload_is_sent(srv):
    with WS(srv.port) as ws:
        ws.send(frame(BINARY, b"", length=100001))  # the header only: no payload follows
        assert ws.close_code()[0] == 1009 and ws.eof()
    with WS(srv.port) as ws:  # fragments that add up past it
        for op in (BINARY, CONT, CONT):
            ws.send(frame(op, b"x" * 40000, fin=False))
        assert ws.close_code()[0] == 1009


def test_a_client_that_sends_faster_than_the_application_reads_is_not_buffered(srv):
    """/sleepy never receives: the server stops reading once 256 KiB wait, so the client's
    socket fills instead of the worker's memory."""
    with WS(srv.port, "/sleepy") as ws:
        ws.sock.setblocking(False)
        sent, chunk = 0, frame(BINARY, b"x" * 60000)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                sent += ws.sock.send(chunk)
            except BlockingIOError:
                time.sleep(0.2)
                try:
                    sent += ws.sock.send(chunk)
                except BlockingIOError:
                    break
        assert sent < 32 << 20, f"the server kept reading: {sent} bytes taken"


def test_send_waits_for_a_client_that_does_not_read(srv):
    """/flood sends 64 MiB; a client that reads nothing must not make the worker hold it."""
    pid = srv.workers[0][0]

    before = rss_kib(pid)
    with WS(srv.port, "/flood") as ws:
        time.sleep(1.5)
        grown = rss_kib(pid) - before
        assert grown < 16 * 1024, f"RSS grew {grown} KiB"
        got = 0
        while got < 64 << 20:  # then it all arrives
            op, payload, _ = ws.recv()
            got += len(payload)
        assert got == 64 << 20


# -- permessage-deflate (RFC 7692) ---------------------------------------------------------

def test_deflate_is_negotiated_and_messages_go_both_ways_compressed(srv):
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    with WS(srv.port, extra=offer) as ws:
        assert ws.headers["sec-websocket-extensions"] == "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        text = ("the same words again and again " * 100).encode()
        ws.send(frame(TEXT, deflate(text), rsv=4))
        op, payload, rsv = ws.recv()
        assert (op, rsv) == (0x80 | TEXT, 4) and len(payload) < len(text) // 5
        assert inflate(payload) == text
        ws.send(frame(TEXT, b"short"))  # an uncompressed message is allowed too; short ones come back so
        assert ws.recv() == (0x80 | TEXT, b"short", 0)
        # A compressed message in fragments: RSV1 on the first only.
        z = deflate(b"fragmented " * 50)
        ws.send(frame(BINARY, z[:10], fin=False, rsv=4) + frame(CONT, z[10:]))
        op, payload, rsv = ws.recv()
        assert inflate(payload) == b"fragmented " * 50


def test_deflate_rules_and_a_decompression_bomb(srv):
    offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    for data, code in ((frame(CONT, b"", rsv=4), 1002),
                       (frame(TEXT, deflate(b"a"), fin=False, rsv=4) + frame(CONT, b"x", rsv=4), 1002),  # RSV1 on a continuation
                       (frame(PING, b"", rsv=4), 1002),
                       (frame(TEXT, deflate(b"\xff\xfe"), rsv=4), 1007),  # inflated text checked too
                       (frame(BINARY, b"\xff\xff\xff\xff garbage", rsv=4), 1007)):
        with WS(srv.port, extra=offer) as ws:
            ws.send(data)
            assert ws.close_code()[0] == code, data
    bomb = deflate(b"\x00" * (20 << 20))  # 20 MiB of zeros in about 20 KiB
    assert len(bomb) < 100000
    with WS(srv.port, extra=offer) as ws:
        ws.send(frame(BINARY, bomb, rsv=4))
        assert ws.close_code()[0] == 1009 and ws.eof()


def test_an_offer_with_a_bad_parameter_is_declined_and_a_window_limit_is_honoured(srv):
    with WS(srv.port, extra="Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=7\r\n") as ws:
        assert "sec-websocket-extensions" not in ws.headers
        ws.send(frame(TEXT, b"x", rsv=4))
        assert ws.close_code()[0] == 1002
    with WS(srv.port, extra="Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9\r\n") as ws:
        assert ws.headers["sec-websocket-extensions"].endswith("server_max_window_bits=9")
        small, large = b"ab" * 200, b"ab" * 5000  # 400 B fits a 512 B window; 10 kB does not
        ws.send(frame(BINARY, small))
        op, payload, rsv = ws.recv()
        assert rsv == 4 and zlib_inflate_window(payload, 9) == small
        ws.send(frame(BINARY, large))
        assert ws.recv() == (0x80 | BINARY, large, 0), "longer than the window: sent uncompressed"


def zlib_inflate_window(data: bytes, bits: int) -> bytes:
    import zlib
    return zlib.decompressobj(wbits=-bits).decompress(data + b"\x00\x00\xff\xff")
