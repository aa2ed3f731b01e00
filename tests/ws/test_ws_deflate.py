"""permessage-deflate, byte-exact against an independent implementation (issue 26).

Every message goes both ways through vw's codec and through one nobody here wrote: the client
compresses with Python's zlib (at several levels and strategies, whole or fragment by fragment),
vw inflates and the application echoes, vw compresses and the client inflates with zlib. Random
(incompressible), compressible and mixed payloads of every size class from 0 to 1 MiB, split
into fragments at random; each connection carries a sequence, so a message after a different one
is covered (a 60,000-byte random message after a compressible one came back wrong before the
fix). The `websockets` client is the second independent peer."""

from __future__ import annotations

import asyncio
import os
import random
import zlib

import pytest
import websockets

from conftest import run_app
from wsclient import WS, frame

BINARY, TEXT, CONT = 0x2, 0x1, 0x0
OFFER = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
SIZES = [0, 1, 127, 128, 129, 1000, 4095, 4096, 4097, 16384, 32767, 32768, 32769, 60000, 65535,
         65536, 65537, 100_000, 131072, 262_144, 500_000, 1 << 20]
SEED = int(os.environ.get("VW_TEST_SEED") or random.SystemRandom().randrange(1 << 32))


@pytest.fixture(scope="module", params=["asgi", "native"])
def srv(request):
    s = run_app("ws_app:app" if request.param == "asgi" else "native_ws_app:app")
    s.echo = "/echo" if request.param == "asgi" else "/echo/d"
    yield s
    assert s.stop() == 0


def payload(rng: random.Random, kind: str, n: int) -> bytes:
    if kind == "random":
        return rng.randbytes(n)
    if kind == "text":
        words = [rng.choice(["alpha", "beta", "gamma", "delta", "vw", "deflate"]) for _ in range(64)]
        return (" ".join(words).encode() * (n // 64 + 1))[:n]
    if kind == "zeros":
        return bytes(n)
    # mixed: compressible runs and random runs of random lengths, so blocks change type
    out = bytearray()
    while len(out) < n:
        k = rng.randrange(1, 20000)
        out += rng.randbytes(k) if rng.random() < 0.5 else bytes([rng.randrange(256)]) * k
    return bytes(out[:n])


def compress(data: bytes, level: int, strategy: int) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, strategy)
    z = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert z.endswith(b"\x00\x00\xff\xff")
    return z[:-4]


def split(rng: random.Random, data: bytes) -> list[bytes]:
    """Fragments at random cuts (empty fragments too)."""
    if not data or rng.random() < 0.3:
        return [data]
    cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(1, 6)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]


def send_compressed(ws: WS, rng: random.Random, data: bytes) -> None:
    """One message, compressed by zlib: whole and then cut into frames, or one sync-flushed
    block per fragment (as `websockets` sends a fragmented message)."""
    level, strategy = rng.choice([(1, zlib.Z_DEFAULT_STRATEGY), (6, zlib.Z_DEFAULT_STRATEGY), (9, zlib.Z_DEFAULT_STRATEGY),
                                  (0, zlib.Z_DEFAULT_STRATEGY), (6, zlib.Z_FIXED), (6, zlib.Z_HUFFMAN_ONLY), (6, zlib.Z_RLE)])
    if rng.random() < 0.5:
        pieces = split(rng, compress(data, level, strategy))
    else:
        c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, strategy)
        pieces = [c.compress(p) + c.flush(zlib.Z_SYNC_FLUSH) for p in split(rng, data)]
        pieces[-1] = pieces[-1][:-4]  # the message's tail is dropped (RFC 7692 §7.2.1)
    out = b"".join(frame(BINARY if i == 0 else CONT, p, fin=i == len(pieces) - 1, rsv=4 if i == 0 else 0)
                   for i, p in enumerate(pieces))
    ws.send(out)


def receive(ws: WS) -> tuple[bytes, bool]:
    """The next message: (its payload inflated by zlib when it came compressed, compressed)."""
    parts, compressed = [], None
    while True:
        op, data, rsv = ws.recv()
        if op & 0x0F == 0x9:
            continue
        if compressed is None:
            assert op & 0x0F == BINARY, f"opcode {op:#x}"
            compressed = bool(rsv & 4)
        else:
            assert op & 0x0F == CONT and rsv == 0
        parts.append(data)
        if op & 0x80:
            break
    data = b"".join(parts)
    if compressed:
        d = zlib.decompressobj(wbits=-15)  # a fresh inflater: vw keeps no context
        data = d.decompress(data + b"\x00\x00\xff\xff") + d.flush()
    return data, compressed


@pytest.mark.parametrize("kind", ["random", "text", "mixed", "zeros"])
def test_every_size_class_round_trips_byte_exact_through_zlib(srv, kind):
    rng = random.Random(f"{SEED}-{kind}")
    sizes = SIZES[:]
    rng.shuffle(sizes)
    with WS(srv.port, path=srv.echo, extra=OFFER, timeout=20) as ws:
        assert ws.headers["sec-websocket-extensions"].startswith("permessage-deflate")
        for n in sizes:
            data = payload(rng, kind, n)
            send_compressed(ws, rng, data)
            got, compressed = receive(ws)
            assert len(got) == n and got == data, f"seed {SEED}: {kind} {n} bytes came back as {len(got)}"
            if kind in ("text", "zeros") and n >= 256:
                assert compressed, f"a compressible {n}-byte message is sent compressed"


def test_a_random_message_after_a_compressible_one(srv):
    """The report's case, and its mirror, each on a fresh connection."""
    rng = random.Random(SEED)
    for first, second in [("text", "random"), ("random", "text"), ("mixed", "random"), ("random", "random")]:
        with WS(srv.port, path=srv.echo, extra=OFFER, timeout=20) as ws:
            for kind, n in [(first, 70_000), (second, 60_000), (first, 65536), (second, 131072)]:
                data = payload(rng, kind, n)
                send_compressed(ws, rng, data)
                got, _ = receive(ws)
                assert got == data, f"seed {SEED}: {kind} {n} after {first} came back as {len(got)} bytes"


def test_the_websockets_client_round_trips_every_size_compressed(srv):
    rng = random.Random(f"{SEED}-websockets")

    async def main():
        async with websockets.connect(f"ws://127.0.0.1:{srv.port}{srv.echo}", compression="deflate",
                                      max_size=4 << 20) as ws:
            assert ws.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
            for n in SIZES:
                for kind in ("random", "text", "mixed"):
                    data = payload(rng, kind, n)
                    if rng.random() < 0.3 and n > 3:  # fragmented: one compressed block per fragment
                        cuts = sorted(rng.sample(range(1, n), 2))
                        await ws.send([data[:cuts[0]], data[cuts[0]:cuts[1]], data[cuts[1]:]])
                    else:
                        await ws.send(data)
                    got = await ws.recv()
                    assert got == data, f"seed {SEED}: {kind} {n} came back as {len(got)} bytes"

    asyncio.run(main())
