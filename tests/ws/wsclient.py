"""A raw WebSocket client for tests: the handshake and frames as bytes, so every rule of
RFC 6455 can be broken on purpose."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import zlib

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0, mask: bool = True,
          length: int | None = None) -> bytes:
    """A client frame; `rsv` is the three reserved bits (4 = RSV1); `length` overrides the length
    field (a lie, or a header sent before its payload)."""
    n = len(payload) if length is None else length
    out = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    m = 0x80 if mask else 0
    if n < 126:
        out += bytes([m | n])
    elif n < 65536:
        out += bytes([m | 126]) + struct.pack("!H", n)
    else:
        out += bytes([m | 127]) + struct.pack("!Q", n)
    if not mask:
        return out + payload
    key = os.urandom(4)
    return out + key + mask_bytes(payload, key)


def mask_bytes(payload: bytes, key: bytes) -> bytes:
    """XOR with the repeated 4-byte key, as one big-integer operation (fast for megabytes)."""
    if not payload:
        return b""
    n = len(payload)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate(data: bytes) -> bytes:
    return zlib.decompressobj(wbits=-15).decompress(data + b"\x00\x00\xff\xff")


class WS:
    """One raw WebSocket connection."""

    def __init__(self, port: int, path: str = "/echo", extra: str = "", timeout: float = 5):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode())
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}

    def _fill(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError(f"closed; have {self.buf[:100]!r}")
        self.buf += data

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> tuple[int, bytes, int]:
        """The next server frame: (opcode | 0x80 if final, payload, rsv bits)."""
        while len(self.buf) < 2:
            self._fill()
        b0, b1 = self.buf[0], self.buf[1]
        assert b1 & 0x80 == 0, "a server frame must not be masked"
        n, at = b1 & 0x7F, 2
        if n == 126:
            while len(self.buf) < 4:
                self._fill()
            n, at = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            while len(self.buf) < 10:
                self._fill()
            n, at = struct.unpack("!Q", self.buf[2:10])[0], 10
        while len(self.buf) < at + n:
            self._fill()
        payload, self.buf = self.buf[at:at + n], self.buf[at + n:]
        return (b0 & 0x8F), payload, (b0 >> 4) & 7

    def message(self) -> tuple[int, bytes]:
        """The next data frame, skipping pings: (opcode, payload)."""
        while True:
            op, payload, _ = self.recv()
            if op & 0x0F != 0x9:
                return op & 0x0F, payload

    def close_code(self) -> tuple[int, bytes]:
        """Read up to the server's Close: (code or 1005, reason)."""
        while True:
            op, payload, _ = self.recv()
            if op & 0x0F == 0x8:
                if not payload:
                    return 1005, b""
                return struct.unpack("!H", payload[:2])[0], payload[2:]

    def eof(self, timeout: float = 5) -> bool:
        """The server closed the TCP connection with nothing more sent."""
        self.sock.settimeout(timeout)
        try:
            rest = self.buf + self.sock.recv(65536)
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return rest == b""
                rest += data
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(5)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
