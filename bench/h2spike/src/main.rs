//! HTTP/2 server cost per request, driven the way vw's loop would drive it: no runtime, a no-op
//! waker, bytes handed over in memory. A client (the h2 crate's) sends ROUNDS batches of
//! IN_FLIGHT GETs; the server answers each `200` with `content-length: 1` and one byte.
//!
//! - `h2`: the h2 crate's server (`server::Builder`, `poll_accept`, `send_response`,
//!   `send_data`), over an AsyncRead/AsyncWrite pair of in-memory buffers.
//! - `floor-<hpack crate>`: the least own code could do with the same bytes: frame headers read,
//!   each HEADERS block decoded by an HPACK crate (fluke-hpack, hpack), response HEADERS and DATA
//!   frames written. No flow control, no stream states: a lower bound, not a server.
//! - `frames only`: the same without decoding the header blocks.
//!
//! Only the server's calls are timed. `cargo run --release -- [rounds] [in_flight]`

use bytes::Bytes;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Clone, Default)]
struct Pipe {
    input: Rc<RefCell<VecDeque<u8>>>,
    output: Rc<RefCell<Vec<u8>>>,
}

impl AsyncRead for Pipe {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let mut input = self.input.borrow_mut();
        if input.is_empty() {
            return Poll::Pending; // the loop polls again when the socket brings more
        }
        let n = input.len().min(buf.remaining());
        let (a, b) = input.as_slices();
        let from_a = a.len().min(n);
        buf.put_slice(&a[..from_a]);
        buf.put_slice(&b[..n - from_a]);
        input.drain(..n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.output.borrow_mut().extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn poll<F: std::future::Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

/// Move what `from` wrote into `to`'s input.
fn carry(from: &Pipe, to: &Pipe) -> Vec<u8> {
    let bytes = std::mem::take(&mut *from.output.borrow_mut());
    to.input.borrow_mut().extend(bytes.iter());
    bytes
}

struct Run {
    server_time: Duration,
    requests: u64,
    /// Every client→server chunk, for the floor to replay.
    wire: Vec<Vec<u8>>,
    out_bytes: usize,
}

fn run_h2(rounds: usize, in_flight: usize) -> Run {
    let (c_io, s_io) = (Pipe::default(), Pipe::default());
    let cx = &mut Context::from_waker(Waker::noop());
    let mut client_hs = Box::pin(h2::client::handshake(c_io.clone()));
    let mut server_hs = h2::server::Builder::new()
        .max_concurrent_streams(128)
        .max_header_list_size(32 << 10)
        .handshake::<_, Bytes>(s_io.clone());
    let mut wire = Vec::new();
    let mut server_time = Duration::ZERO;
    let (mut send, mut client_conn) = loop {
        if let Poll::Ready(r) = client_hs.as_mut().poll(cx) {
            break r.unwrap();
        }
    };
    wire.push(carry(&c_io, &s_io));
    let t = Instant::now();
    let mut server = loop {
        if let Poll::Ready(r) = poll(&mut server_hs) {
            break r.unwrap();
        }
        break match poll(&mut server_hs) {
            Poll::Ready(r) => r.unwrap(),
            Poll::Pending => panic!("server handshake pending"),
        };
    };
    server_time += t.elapsed();
    let mut requests = 0u64;
    let mut out_bytes = 0;
    for _ in 0..rounds {
        let mut pending = Vec::new();
        for _ in 0..in_flight {
            let req = http::Request::get("https://localhost/1b").body(()).unwrap();
            let (resp, _) = send.send_request(req, true).unwrap();
            pending.push(resp);
        }
        let _ = Pin::new(&mut client_conn).poll(cx);
        wire.push(carry(&c_io, &s_io));
        // the server: accept every request, answer each
        let t = Instant::now();
        loop {
            match server.poll_accept(cx) {
                Poll::Ready(Some(Ok((_req, mut respond)))) => {
                    let resp = http::Response::builder().status(200).header("content-length", "1").body(()).unwrap();
                    let mut stream = respond.send_response(resp, false).unwrap();
                    stream.send_data(Bytes::from_static(b"x"), true).unwrap();
                    requests += 1;
                }
                Poll::Ready(Some(Err(e))) => panic!("{e}"),
                Poll::Ready(None) => panic!("closed"),
                Poll::Pending => break,
            }
        }
        let _ = server.poll_closed(cx); // writes what is queued
        server_time += t.elapsed();
        out_bytes += carry(&s_io, &c_io).len();
        let _ = Pin::new(&mut client_conn).poll(cx);
        for mut r in pending {
            match Pin::new(&mut r).poll(cx) {
                Poll::Ready(Ok(resp)) => assert_eq!(resp.status(), 200),
                other => panic!("no response: {:?}", other.is_ready()),
            }
        }
        let _ = Pin::new(&mut client_conn).poll(cx);
        wire.push(carry(&c_io, &s_io)); // window updates, settings acks
        let t = Instant::now();
        let _ = server.poll_accept(cx);
        server_time += t.elapsed();
        let _ = carry(&s_io, &c_io);
    }
    Run { server_time, requests, wire, out_bytes }
}

trait Hpack {
    fn decode_count(&mut self, block: &[u8]) -> usize;
}

struct Fluke(fluke_hpack::Decoder<'static>);
impl Hpack for Fluke {
    fn decode_count(&mut self, block: &[u8]) -> usize {
        self.0.decode(block).expect("fluke decodes").len()
    }
}

/// No decoding at all: the cost of the framing alone.
struct Skip;
impl Hpack for Skip {
    fn decode_count(&mut self, block: &[u8]) -> usize {
        4 + block.len() % 2
    }
}

struct Classic(hpack::Decoder<'static>);
impl Hpack for Classic {
    fn decode_count(&mut self, block: &[u8]) -> usize {
        self.0.decode(block).expect("hpack decodes").len()
    }
}

/// Frames read from the captured stream, HEADERS decoded, the response written: (time, requests).
fn run_floor(wire: &[Vec<u8>], dec: &mut dyn Hpack) -> (Duration, u64, usize) {
    let mut out = Vec::with_capacity(1 << 16);
    let mut requests = 0;
    let mut fields = 0;
    let t = Instant::now();
    let mut buf: Vec<u8> = Vec::new();
    for chunk in wire {
        buf.extend_from_slice(chunk);
        let mut at = 0;
        if buf.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") {
            at = 24;
            out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // our SETTINGS
        }
        while buf.len() - at >= 9 {
            let h = &buf[at..at + 9];
            let len = (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize;
            if buf.len() - at < 9 + len {
                break;
            }
            let (kind, flags) = (h[3], h[4]);
            let sid = u32::from_be_bytes([h[5] & 0x7f, h[6], h[7], h[8]]);
            let payload = &buf[at + 9..at + 9 + len];
            match kind {
                1 => {
                    // HEADERS (END_HEADERS set by this client; no padding or priority)
                    assert!(flags & 0x4 != 0);
                    fields += dec.decode_count(payload);
                    let s = sid.to_be_bytes();
                    // :status 200 (static index 8), content-length: 1 (indexed name 28)
                    out.extend_from_slice(&[0, 0, 4, 1, 4, s[0], s[1], s[2], s[3], 0x88, 0x0f, 0x0d, 0x01]);
                    out.extend_from_slice(b"1");
                    out.truncate(out.len() - 5);
                    out.extend_from_slice(&[0x01, b'1']);
                    out.extend_from_slice(&[0, 0, 1, 0, 1, s[0], s[1], s[2], s[3], b'x']);
                    requests += 1;
                }
                4 if flags & 1 == 0 => out.extend_from_slice(&[0, 0, 0, 4, 1, 0, 0, 0, 0]), // SETTINGS ack
                _ => {}
            }
            at += 9 + len;
        }
        buf.drain(..at);
    }
    assert!(fields >= 4 * requests as usize);
    (t.elapsed(), requests, out.len())
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let rounds = args.first().copied().unwrap_or(2000);
    let in_flight = args.get(1).copied().unwrap_or(10);
    for _ in 0..3 {
        let run = run_h2(rounds, in_flight);
        println!("h2 crate        {:7.3} µs per request ({} requests, {} B out)", run.server_time.as_secs_f64() * 1e6 / run.requests as f64, run.requests, run.out_bytes);
        let (t, n, b) = run_floor(&run.wire, &mut Fluke(fluke_hpack::Decoder::new()));
        println!("floor-fluke     {:7.3} µs per request ({n} requests, {b} B out)", t.as_secs_f64() * 1e6 / n as f64);
        let (t, n, b) = run_floor(&run.wire, &mut Classic(hpack::Decoder::new()));
        println!("floor-hpack     {:7.3} µs per request ({n} requests, {b} B out)", t.as_secs_f64() * 1e6 / n as f64);
        let (t, n, _) = run_floor(&run.wire, &mut Skip);
        println!("frames only     {:7.3} µs per request ({n} requests; no header decoded)", t.as_secs_f64() * 1e6 / n as f64);
    }
}
