//! One HTTP/2 connection. The h2 crate reads from and writes to a [`Pipe`] of memory: the loop
//! puts what it read (plaintext, after TLS) in, [`H2::drive`] polls the connection and moves the
//! frames it wrote into the connection's `OutQueue`.
//!
//! Each request is answered the way the same request over HTTP/1.1 would be: a head is made of
//! it and given to an HTTP/1.1 connection of its own (`h1::conn::Proto`), so static files keep
//! every rule they have (paths, ranges, conditionals, codings, errors, redirects); the answer's
//! head becomes the HEADERS of the stream (hop-by-hop fields dropped), its body segments go out
//! as DATA as the flow-control windows allow (files read with `pread`, a piece at a time).
//! Only static files are served this way: applications are not offered HTTP/2 yet.

use crate::h1::conn::{Ctx, Proto};
use crate::io::out::{OutQueue, Seg};
use bytes::Bytes;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// The client's first bytes on an HTTP/2 connection (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Streams open at once (nginx's default; h2 sends it in SETTINGS and refuses more).
pub const MAX_STREAMS: u32 = 128;
/// Output queued on the connection past which no more DATA is framed until it is written.
const OUT_HIGH: usize = 256 * 1024;
/// The most one DATA piece asks for at a time.
const PIECE: usize = 64 * 1024;

/// Output is kept in pieces of this size, each then queued as it is: a buffer grown by
/// reallocation cost a copy of all before it and page faults for each new page (perf: a sixth
/// of the worker's CPU at 64 KiB responses).
const CHUNK: usize = 64 * 1024;

/// Memory the h2 crate reads from and writes to.
#[derive(Clone, Default)]
struct Pipe {
    input: Rc<RefCell<VecDeque<u8>>>,
    output: Rc<RefCell<Vec<Vec<u8>>>>,
}

impl Pipe {
    fn output_len(&self) -> usize {
        self.output.borrow().iter().map(Vec::len).sum()
    }
}

impl tokio::io::AsyncRead for Pipe {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let mut input = self.input.borrow_mut();
        if input.is_empty() {
            return Poll::Pending; // the loop polls again when more is read
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

impl tokio::io::AsyncWrite for Pipe {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let mut out = self.output.borrow_mut();
        match out.last_mut() {
            Some(last) if last.capacity() - last.len() >= buf.len() => last.extend_from_slice(buf),
            _ => {
                let mut piece = Vec::with_capacity(CHUNK.max(buf.len()));
                piece.extend_from_slice(buf);
                out.push(piece);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

enum State {
    Handshaking(h2::server::Handshake<Pipe, Bytes>),
    Open(h2::server::Connection<Pipe, Bytes>),
    Closed,
}

/// A response body on its way: what is left, as the HTTP/1.1 answer queued it.
struct Outgoing {
    stream: h2::SendStream<Bytes>,
    body: VecDeque<Seg>,
}

pub struct H2 {
    /// The client, for the access log.
    peer: Option<std::net::SocketAddr>,
    pipe: Pipe,
    state: State,
    sending: Vec<Outgoing>,
}

/// Fields of an HTTP/1.1 response that HTTP/2 has no place for (RFC 9113 §8.2.2).
fn hop_by_hop(name: &[u8]) -> bool {
    [&b"connection"[..], b"keep-alive", b"transfer-encoding", b"upgrade", b"proxy-connection"].iter().any(|h| name.eq_ignore_ascii_case(h))
}

impl H2 {
    /// A connection whose client preface (or its first bytes) arrives with the next `feed`.
    pub fn new(max_head: usize, peer: Option<std::net::SocketAddr>) -> Box<H2> {
        let pipe = Pipe::default();
        let hs = h2::server::Builder::new()
            .max_concurrent_streams(MAX_STREAMS)
            .max_header_list_size(max_head as u32)
            .max_send_buffer_size(PIECE * 2)
            .handshake::<_, Bytes>(pipe.clone());
        Box::new(H2 { peer, pipe, state: State::Handshaking(hs), sending: Vec::new() })
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.pipe.input.borrow_mut().extend(data);
    }

    /// No stream has anything left to send.
    pub fn idle(&self) -> bool {
        self.sending.is_empty()
    }

    /// The connection is over (a protocol error, or the client's GOAWAY): once `out` is
    /// written, close it.
    pub fn ended(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The worker stops and nothing is in flight: GOAWAY (NO_ERROR, the last stream taken), so
    /// the client opens no new stream here and knows none was lost.
    pub fn go_away(&mut self, ctx: &mut Ctx, out: &mut OutQueue) {
        if let State::Open(conn) = &mut self.state {
            conn.abrupt_shutdown(h2::Reason::NO_ERROR);
        }
        self.drive(ctx, out);
    }

    /// Poll the connection: take new requests and answer them, frame body as the windows and
    /// `out` allow, and queue what h2 wrote on `out`.
    pub fn drive(&mut self, ctx: &mut Ctx, out: &mut OutQueue) {
        let cx = &mut Context::from_waker(Waker::noop());
        for _ in 0..64 {
            let mut progress = false;
            match &mut self.state {
                State::Handshaking(hs) => match Pin::new(hs).poll(cx) {
                    Poll::Ready(Ok(conn)) => {
                        self.state = State::Open(conn);
                        progress = true;
                    }
                    Poll::Ready(Err(_)) => self.state = State::Closed,
                    Poll::Pending => {}
                },
                State::Open(conn) => loop {
                    match conn.poll_accept(cx) {
                        Poll::Ready(Some(Ok((req, respond)))) => {
                            progress = true;
                            if let Some(o) = answer(req, respond, ctx, self.peer) {
                                self.sending.push(o);
                            }
                        }
                        Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                            // h2 queued the GOAWAY that says why (or the client ended)
                            self.state = State::Closed;
                            self.sending.clear();
                            break;
                        }
                        Poll::Pending => break,
                    }
                },
                State::Closed => {}
            }
            if out.pending_bytes() + self.pipe.output_len() < OUT_HIGH {
                progress |= self.pump(cx);
            }
            if !progress {
                break;
            }
        }
        for frames in self.pipe.output.borrow_mut().drain(..) {
            out.push_owned(frames);
        }
    }

    /// Frame body for every stream whose window has room; true if any was framed.
    fn pump(&mut self, cx: &mut Context<'_>) -> bool {
        let mut framed = false;
        self.sending.retain_mut(|o| {
            loop {
                let left: usize = o.body.iter().map(Seg::remaining).sum();
                if left == 0 {
                    let _ = o.stream.send_data(Bytes::new(), true);
                    return false;
                }
                o.stream.reserve_capacity(left.min(PIECE));
                let mut room = o.stream.capacity();
                if room == 0 {
                    match o.stream.poll_capacity(cx) {
                        Poll::Ready(Some(Ok(n))) if n > 0 => room = n,
                        Poll::Ready(None) | Poll::Ready(Some(Err(_))) => return false, // reset by the client
                        _ => return true, // wait for a WINDOW_UPDATE
                    }
                }
                let Some(piece) = take(&mut o.body, room.min(PIECE)) else { return false };
                let last = o.body.iter().all(|s| s.remaining() == 0);
                framed = true;
                if o.stream.send_data(piece, last).is_err() {
                    return false;
                }
                if last {
                    return false;
                }
            }
        });
        framed
    }
}

/// Up to `n` bytes from the front of a body (None: a file could not be read).
fn take(body: &mut VecDeque<Seg>, n: usize) -> Option<Bytes> {
    while body.front().is_some_and(|s| s.remaining() == 0) {
        body.pop_front();
    }
    let front = body.front_mut()?;
    let n = n.min(front.remaining());
    if let Some(mem) = front.memory() {
        let piece = Bytes::copy_from_slice(&mem[..n]);
        match front {
            Seg::Shared { start, .. } | Seg::Piped { start, .. } | Seg::Owned { start, .. } | Seg::Held { start, .. } => *start += n,
            Seg::File { .. } | Seg::Mapped { .. } => unreachable!("memory() is None for these"),
        }
        return Some(piece);
    }
    let piece = match front {
        Seg::File { fd, off, len } => {
            let mut v = vec![0u8; n];
            let got = unsafe { libc::pread(fd.as_raw_fd(), v.as_mut_ptr().cast(), n, *off as libc::off_t) };
            if got <= 0 {
                return None; // the file shrank: the stream is reset
            }
            v.truncate(got as usize);
            *off += got as u64;
            *len -= got as u64;
            Bytes::from(v)
        }
        // statics map no file when HTTP/2 may be spoken (reading a mapping here could SIGBUS)
        _ => return None,
    };
    Some(piece)
}

/// The HTTP/1.1 head that asks what `req` asks (no body: static files take none).
fn h1_head(req: &http::Request<h2::RecvStream>) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(req.method().as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(req.uri().path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    head.extend_from_slice(req.uri().authority().map_or("", |a| a.as_str()).as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in req.headers() {
        if name == http::header::HOST || name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING || hop_by_hop(name.as_str().as_bytes()) {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// The bytes at the front of `segs` up to the end of the response head, and the head's length.
fn head_bytes<'a>(segs: impl Iterator<Item = &'a Seg>) -> Option<(Vec<u8>, usize)> {
    let mut v = Vec::new();
    for bytes in segs.map_while(Seg::memory) {
        v.extend_from_slice(bytes);
        if let Some(i) = v.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some((v, i + 4));
        }
    }
    None
}

/// Answer one request through an HTTP/1.1 connection of its own; the body that is left to send.
fn answer(req: http::Request<h2::RecvStream>, mut respond: h2::server::SendResponse<Bytes>, ctx: &mut Ctx, peer: Option<std::net::SocketAddr>) -> Option<Outgoing> {
    let head = h1_head(&req);
    let mut twin = Proto { peer, http2: true, ..Proto::default() };
    twin.feed(&head, ctx);
    let Some((bytes, head_len)) = head_bytes(twin.out.segs()) else {
        respond.send_reset(h2::Reason::INTERNAL_ERROR);
        return None;
    };
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut fields);
    if !matches!(parsed.parse(&bytes[..head_len]), Ok(httparse::Status::Complete(_))) {
        respond.send_reset(h2::Reason::INTERNAL_ERROR);
        return None;
    }
    let mut resp = http::Response::builder().status(parsed.code.unwrap_or(500));
    for f in parsed.headers.iter() {
        if !hop_by_hop(f.name.as_bytes()) {
            resp = resp.header(f.name, f.value);
        }
    }
    let Ok(resp) = resp.body(()) else {
        respond.send_reset(h2::Reason::INTERNAL_ERROR);
        return None;
    };
    // what is left once the head is taken is the body
    twin.out.advance(head_len);
    let segs = twin.out.take_segs();
    let empty = req.method() == http::Method::HEAD || segs.iter().all(|s| s.remaining() == 0);
    let stream = respond.send_response(resp, empty).ok()?;
    (!empty).then_some(Outgoing { stream, body: segs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1::encode::Clock;

    /// Feed the preface and `chunks`, driving after each as a reading client would: is the
    /// connection ended?
    fn ended_after(chunks: &[&[u8]]) -> bool {
        let dir = std::env::temp_dir().join(format!("vw-h2-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("1b"), b"x").unwrap();
        std::fs::write(dir.join("big.bin"), vec![7u8; 300_000]).unwrap();
        let mut cfg = crate::statics::StaticConfig::new(dir);
        cfg.map_large = false;
        let files = crate::statics::StaticFiles::open(cfg).unwrap();
        let mut ctx = Ctx::new(Clock::new(), vec![crate::h1::conn::Mount { prefix: Vec::new(), files }], None);
        let mut h2 = H2::new(16384, None);
        let mut out = OutQueue::default();
        h2.feed(PREFACE);
        for c in chunks {
            h2.feed(c);
            for _ in 0..5 {
                h2.drive(&mut ctx, &mut out);
                let _ = out.take_segs();
            }
        }
        h2.ended()
    }

    const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
    /// HEADERS on stream 1, END_STREAM and END_HEADERS: GET https://0/1b (HPACK, Huffman).
    const GET_1B: &[u8] = &[0, 0, 10, 1, 5, 0, 0, 0, 1, 130, 135, 68, 131, 96, 49, 255, 65, 129, 79];

    #[test]
    fn a_request_is_answered_and_a_connection_error_ends_it() {
        assert!(!ended_after(&[SETTINGS, GET_1B]));
        // DATA on stream 0 is a connection error (RFC 9113 §6.1), however the bytes come
        let data_on_0: &[u8] = &[0, 0, 0, 0, 0, 0, 0, 0, 0];
        let s = [SETTINGS, GET_1B, data_on_0].concat();
        for cut in 0..=s.len() {
            assert!(ended_after(&[&s[..cut], &s[cut..]]), "not ended when cut at {cut}");
        }
    }

    #[test]
    fn the_answer_is_headers_then_data() {
        let dir = std::env::temp_dir().join(format!("vw-h2-answer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("1b"), b"x").unwrap();
        let files = crate::statics::StaticFiles::open(crate::statics::StaticConfig::new(dir)).unwrap();
        let mut ctx = Ctx::new(Clock::new(), vec![crate::h1::conn::Mount { prefix: Vec::new(), files }], None);
        let mut h2 = H2::new(16384, None);
        let mut out = OutQueue::default();
        h2.feed(&[PREFACE, SETTINGS, GET_1B].concat());
        h2.drive(&mut ctx, &mut out);
        let bytes = out.to_bytes();
        // frames: (type, flags, stream) in order, and the DATA payload
        let mut at = 0;
        let mut frames = Vec::new();
        while at + 9 <= bytes.len() {
            let len = (bytes[at] as usize) << 16 | (bytes[at + 1] as usize) << 8 | bytes[at + 2] as usize;
            let sid = u32::from_be_bytes([bytes[at + 5] & 0x7f, bytes[at + 6], bytes[at + 7], bytes[at + 8]]);
            frames.push((bytes[at + 3], bytes[at + 4], sid, bytes[at + 9..at + 9 + len].to_vec()));
            at += 9 + len;
        }
        assert_eq!(at, bytes.len(), "whole frames only");
        let on_1: Vec<_> = frames.iter().filter(|f| f.2 == 1).collect();
        assert_eq!(on_1[0].0, 1, "HEADERS first: {frames:?}");
        assert_eq!(on_1[0].3[0], 0x88, ":status 200 from the static table");
        let data: Vec<_> = on_1.iter().filter(|f| f.0 == 0).collect();
        assert_eq!(data.len(), 1);
        assert_eq!((data[0].1 & 1, &data[0].3[..]), (1, &b"x"[..]), "one DATA frame, END_STREAM, the body");
        assert!(!h2.ended() && h2.idle());
    }
}
