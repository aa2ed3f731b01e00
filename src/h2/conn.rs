//! One HTTP/2 connection. The h2 crate reads from and writes to a [`Pipe`] of memory: the loop
//! puts what it read (plaintext, after TLS) in, [`H2::drive`] polls the connection and moves the
//! frames it wrote into the connection's `OutQueue`.
//!
//! Each request is answered the way the same request over HTTP/1.1 would be: a head is made of
//! it and given to an HTTP/1.1 connection of its own (`h1::conn::Proto`), so static files keep
//! every rule they have (paths, ranges, conditionals, codings, errors, redirects); the answer's
//! head becomes the HEADERS of the stream (hop-by-hop fields dropped), its body segments go out
//! as DATA as the flow-control windows allow (files read with `pread`, a piece at a time).
//! A request for the application is its own `h2::app::AppStream`.

use super::app::{AppStream, Origin};
use super::stream::{h1_head, hop_by_hop, Outgoing, PIECE};
use crate::h1::conn::{routes_to_app, Ctx, Proto};
use crate::io::out::{OutQueue, Seg};
use bytes::Bytes;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// The client's first bytes on an HTTP/2 connection (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Streams open at once (nginx's default; h2 sends it in SETTINGS and refuses more).
pub const MAX_STREAMS: u32 = 128;
/// How much request body a client may send on a stream before the application took it: what
/// the application's inbox holds (`apps::INBOX_HIGH`), so one round trip fills it.
const STREAM_WINDOW: u32 = 256 * 1024;
/// ... and on all streams of a connection: a stream whose application does not read holds at
/// most its own window of it, so 16 such streams would be needed to stall the others.
const CONNECTION_WINDOW: u32 = 4 << 20;
/// Output queued on the connection past which no more DATA is framed until it is written.
const OUT_HIGH: usize = 256 * 1024;

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

/// A stream being answered: a static answer (all of it queued at once) or an application's.
enum Stream {
    Static(Outgoing),
    App(Box<AppStream>),
}

impl Stream {
    fn outgoing(&mut self) -> Option<&mut Outgoing> {
        match self {
            Stream::Static(o) => Some(o),
            Stream::App(a) => a.out.as_mut(),
        }
    }

    /// Nothing is left to do for it.
    fn over(&self) -> bool {
        match self {
            Stream::Static(o) => o.ended,
            Stream::App(a) => a.done && a.exchange().is_none() && a.out.as_ref().is_none_or(|o| o.ended),
        }
    }
}

/// What the connection waits for, for its deadline.
#[derive(Debug, PartialEq, Eq)]
pub enum Wait {
    /// Nothing in progress, or output the client must make room for: the idle clock runs.
    Client,
    /// A request body the application waits for.
    Body,
    /// Applications answering: they take the time they take.
    App,
}

pub struct H2 {
    origin: Origin,
    pipe: Pipe,
    state: State,
    streams: Vec<Stream>,
}

impl H2 {
    /// A connection whose client preface (or its first bytes) arrives with the next `feed`.
    pub fn new(max_head: usize, origin: Origin) -> Box<H2> {
        let pipe = Pipe::default();
        let hs = h2::server::Builder::new()
            .max_concurrent_streams(MAX_STREAMS)
            .max_header_list_size(max_head as u32)
            .max_send_buffer_size(PIECE * 2)
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake::<_, Bytes>(pipe.clone());
        Box::new(H2 { origin, pipe, state: State::Handshaking(hs), streams: Vec::new() })
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.pipe.input.borrow_mut().extend(data);
    }

    /// No stream is in progress.
    pub fn idle(&self) -> bool {
        self.streams.is_empty()
    }

    /// The connection is over (a protocol error, or the client's GOAWAY): once `out` is
    /// written, close it.
    pub fn ended(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The exchange of the stream an application names by `gen`, while it answers.
    pub fn exchange(&self, gen: u64) -> Option<&crate::apps::SharedExchange> {
        self.streams.iter().find_map(|s| match s {
            Stream::App(a) if a.gen == gen => a.exchange(),
            _ => None,
        })
    }

    /// What the connection waits for now.
    pub fn wait(&self) -> Wait {
        let mut wait = Wait::Client;
        for s in &self.streams {
            if let Stream::App(a) = s {
                if a.waits_for_app() {
                    return Wait::App;
                }
                if !a.done {
                    wait = Wait::Body;
                }
            }
        }
        wait
    }

    /// The connection is closed: every application still answering is told.
    pub fn abandon(&mut self, ctx: &mut Ctx) {
        for s in self.streams.iter_mut() {
            if let Stream::App(a) = s {
                a.gone(ctx);
            }
        }
        self.streams.clear();
    }

    /// The worker begins to stop: GOAWAY (NO_ERROR, with the largest stream id), so the client
    /// opens no new stream here while those in flight finish (h2 then sends the final GOAWAY
    /// with the last stream it took).
    pub fn stopping(&mut self, ctx: &mut Ctx, out: &mut OutQueue) {
        if let State::Open(conn) = &mut self.state {
            conn.graceful_shutdown();
        }
        self.drive(ctx, out);
    }

    /// The worker stops and nothing is in flight: GOAWAY (NO_ERROR, the last stream taken), so
    /// the client opens no new stream here and knows none was lost.
    pub fn go_away(&mut self, ctx: &mut Ctx, out: &mut OutQueue) {
        if let State::Open(conn) = &mut self.state {
            conn.abrupt_shutdown(h2::Reason::NO_ERROR);
        }
        self.drive(ctx, out);
    }

    /// Poll the connection: take new requests and answer them (or hand them to the
    /// application), move request bodies and the applications' answers, frame body as the
    /// windows and `out` allow, and queue what h2 wrote on `out`.
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
                            let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
                            if ctx.app.is_some() && routes_to_app(ctx, target.as_bytes()) {
                                // Streams whose application still runs, the client gone or not:
                                // a client that resets streams cannot pile up work past the limit.
                                let running = self.streams.iter().filter(|s| matches!(s, Stream::App(_))).count();
                                if running >= MAX_STREAMS as usize {
                                    let mut respond = respond;
                                    respond.send_reset(h2::Reason::REFUSED_STREAM);
                                    continue;
                                }
                                self.streams.push(Stream::App(AppStream::start(req, respond, ctx, &self.origin)));
                            } else if let Some(o) = answer(req, respond, ctx, self.origin.peer) {
                                self.streams.push(Stream::Static(o));
                            }
                        }
                        Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                            // h2 queued the GOAWAY that says why (or the client ended)
                            self.state = State::Closed;
                            self.abandon(ctx);
                            break;
                        }
                        Poll::Pending => break,
                    }
                },
                State::Closed => {}
            }
            for s in self.streams.iter_mut() {
                if let Stream::App(a) = s {
                    progress |= a.poll(cx, ctx, &self.origin);
                }
            }
            if out.pending_bytes() + self.pipe.output_len() < OUT_HIGH {
                for s in self.streams.iter_mut() {
                    if let Some(o) = s.outgoing() {
                        progress |= o.pump(cx);
                    }
                }
            }
            self.streams.retain(|s| !s.over());
            if !progress {
                break;
            }
        }
        for s in self.streams.iter_mut() {
            if let Stream::App(a) = s {
                a.tell_backlog();
            }
        }
        for frames in self.pipe.output.borrow_mut().drain(..) {
            out.push_owned(frames);
        }
    }
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
    let (req, _body) = req.into_parts(); // a static answer takes no body: h2 resets the rest
    let head = h1_head(&req, false);
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
    let empty = req.method == http::Method::HEAD || segs.iter().all(|s| s.remaining() == 0);
    let stream = respond.send_response(resp, empty).ok()?;
    (!empty).then(|| {
        let mut o = Outgoing::new(stream, true);
        o.body = segs;
        o
    })
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
        let mut h2 = H2::new(16384, Origin { fd: -1, peer: None, tls: None });
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

    /// The frames queued on `out` (taken): (type, flags, stream, payload), in order.
    fn frames(out: &mut OutQueue) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let bytes = out.to_bytes();
        let _ = out.take_segs();
        let mut at = 0;
        let mut frames = Vec::new();
        while at + 9 <= bytes.len() {
            let len = (bytes[at] as usize) << 16 | (bytes[at + 1] as usize) << 8 | bytes[at + 2] as usize;
            let sid = u32::from_be_bytes([bytes[at + 5] & 0x7f, bytes[at + 6], bytes[at + 7], bytes[at + 8]]);
            frames.push((bytes[at + 3], bytes[at + 4], sid, bytes[at + 9..at + 9 + len].to_vec()));
            at += 9 + len;
        }
        assert_eq!(at, bytes.len(), "whole frames only");
        frames
    }

    fn frame(kind: u8, flags: u8, sid: u32, payload: &[u8]) -> Vec<u8> {
        let n = payload.len();
        let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
        f.extend_from_slice(&sid.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// HEADERS on stream 1: POST http://a/ (HPACK static-table indices), END_HEADERS only: a
    /// body follows.
    fn post_1() -> Vec<u8> {
        frame(1, 4, 1, &[0x83, 0x86, 0x84, 0x41, 1, b'a'])
    }

    /// An application that answers later, through exchanges the test holds.
    #[derive(Clone, Default)]
    struct Later {
        calls: Rc<RefCell<Vec<(crate::apps::SharedExchange, Option<std::sync::Arc<crate::apps::Inbox>>, (i32, u64), bool)>>>,
    }

    impl crate::apps::App for Later {
        fn call(&mut self, req: &crate::apps::AppRequest, body: crate::apps::ReqBody, _: bool) -> crate::apps::AppCall {
            let ex = crate::apps::SharedExchange::default();
            let inbox = match body {
                crate::apps::ReqBody::Stream(i) => Some(i),
                _ => None,
            };
            self.calls.borrow_mut().push((ex.clone(), inbox, req.conn_id, req.http2));
            crate::apps::AppCall::Pending(ex)
        }
        fn streams_body(&self) -> bool {
            true
        }
    }

    fn app_ctx() -> (Ctx, Later) {
        let later = Later::default();
        (Ctx::new(Clock::new(), Vec::new(), Some(Box::new(later.clone()))), later)
    }

    /// An h2 client over memory, wired to a server `H2`: `turn` moves bytes both ways and
    /// polls both sides.
    struct Client {
        pipe: Pipe,
        conn: h2::client::Connection<Pipe, Bytes>,
        send: h2::client::SendRequest<Bytes>,
    }

    impl Client {
        fn new() -> Client {
            let pipe = Pipe::default();
            let cx = &mut Context::from_waker(Waker::noop());
            let mut hs = Box::pin(h2::client::handshake(pipe.clone()));
            let Poll::Ready(Ok((send, conn))) = hs.as_mut().poll(cx) else { panic!("the client handshake is written at once") };
            Client { pipe, conn, send }
        }

        fn turn(&mut self, h2: &mut H2, ctx: &mut Ctx, out: &mut OutQueue) {
            let cx = &mut Context::from_waker(Waker::noop());
            for _ in 0..4 {
                let _ = Pin::new(&mut self.conn).poll(cx);
                for piece in self.pipe.output.borrow_mut().drain(..) {
                    h2.feed(&piece);
                }
                h2.drive(ctx, out);
                self.pipe.input.borrow_mut().extend(out.to_bytes());
                let _ = out.take_segs();
            }
        }

        fn get(&mut self, path: &str) -> h2::client::ResponseFuture {
            let req = http::Request::get(format!("http://a{path}")).body(()).unwrap();
            self.send.send_request(req, true).unwrap().0
        }
    }

    fn ready<T>(f: &mut (impl Future<Output = T> + Unpin)) -> Option<T> {
        match Pin::new(f).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }

    /// All the DATA a stream has received so far, and whether it ended.
    fn drain(body: &mut h2::RecvStream) -> (Vec<u8>, bool) {
        let cx = &mut Context::from_waker(Waker::noop());
        let mut got = Vec::new();
        loop {
            match body.poll_data(cx) {
                Poll::Ready(Some(Ok(d))) => {
                    let _ = body.flow_control().release_capacity(d.len());
                    got.extend_from_slice(&d);
                }
                Poll::Ready(None) => return (got, true),
                _ => return (got, false),
            }
        }
    }

    #[test]
    fn an_application_answers_later_as_headers_data_and_the_end() {
        use crate::apps::exchange::{Part, ResponseHead};
        let (mut ctx, later) = app_ctx();
        let mut h2 = H2::new(16384, Origin { fd: 7, peer: None, tls: None });
        let mut out = OutQueue::default();
        let mut client = Client::new();
        let mut resp = client.get("/");
        client.turn(&mut h2, &mut ctx, &mut out);
        assert!(ready(&mut resp).is_none(), "no answer before the application gives one");
        let (ex, _, id, http2) = later.calls.borrow()[0].clone();
        assert_eq!((id.0, http2), (7, true), "named by the connection's descriptor and the stream's generation");
        assert!(h2.exchange(id.1).is_some() && h2.wait() == Wait::App && !h2.idle());
        let fields = vec![(b"X-A"[..].into(), b"1"[..].into()), (b"Connection"[..].into(), b"close"[..].into()), (b"Content-Length"[..].into(), b"99"[..].into())];
        let head = ResponseHead { status: 201, status_line: b"201 Created"[..].into(), fields, length: None };
        ex.borrow_mut().extend(vec![Part::Head(head), Part::Body(b"hello".to_vec())]);
        client.turn(&mut h2, &mut ctx, &mut out);
        let resp = ready(&mut resp).expect("answered").unwrap();
        assert_eq!(resp.status(), 201);
        let h = resp.headers();
        assert!(h.get("x-a").unwrap() == "1" && h.get("server").unwrap() == "vw", "{h:?}");
        assert!(h.get("connection").is_none() && h.get("content-length").is_none() && h.get("date").is_some(), "{h:?}");
        let mut body = resp.into_body();
        assert_eq!(drain(&mut body), (b"hello".to_vec(), false), "the body as it comes, the stream open");
        {
            let mut e = ex.borrow_mut();
            e.push(Part::Body(b" world".to_vec()));
            e.push(Part::End { trailers: b"X-Sum: 42\r\n".to_vec() });
            e.finished = true;
        }
        client.turn(&mut h2, &mut ctx, &mut out);
        assert_eq!(drain(&mut body), (b" world".to_vec(), true));
        let trailers = ready(&mut std::future::poll_fn(|cx| body.poll_trailers(cx))).unwrap().unwrap().unwrap();
        assert_eq!(trailers.get("x-sum").unwrap(), "42");
        assert!(h2.idle() && h2.exchange(id.1).is_none() && h2.wait() == Wait::Client);
    }

    #[test]
    fn streams_answer_in_any_order_and_a_cut_body_is_reset() {
        use crate::apps::exchange::{Part, ResponseHead};
        let (mut ctx, later) = app_ctx();
        let mut h2 = H2::new(16384, Origin { fd: 7, peer: None, tls: None });
        let mut out = OutQueue::default();
        let mut client = Client::new();
        let mut first = client.get("/1");
        let mut second = client.get("/2");
        client.turn(&mut h2, &mut ctx, &mut out);
        let calls = later.calls.borrow().clone();
        assert_eq!(calls.len(), 2, "both streams reach the application at once");
        assert_ne!(calls[0].2, calls[1].2, "each stream has its own id");
        let head = || Part::Head(ResponseHead { status: 200, status_line: b"200 OK"[..].into(), fields: Vec::new(), length: Some(10) });
        {
            let mut e = calls[1].0.borrow_mut();
            e.extend(vec![head(), Part::Body(b"0123456789".to_vec()), Part::End { trailers: Vec::new() }]);
            e.finished = true;
        }
        client.turn(&mut h2, &mut ctx, &mut out);
        assert!(ready(&mut first).is_none());
        let mut b2 = ready(&mut second).unwrap().unwrap().into_body();
        assert_eq!(drain(&mut b2), (b"0123456789".to_vec(), true), "the second answered first");
        {
            // 4 bytes of 10, then the application fails: the stream is reset after them
            let mut e = calls[0].0.borrow_mut();
            e.extend(vec![head(), Part::Body(b"0123".to_vec())]);
            (e.finished, e.close) = (true, true);
        }
        client.turn(&mut h2, &mut ctx, &mut out);
        let mut b1 = ready(&mut first).unwrap().unwrap().into_body();
        let cx = &mut Context::from_waker(Waker::noop());
        assert!(matches!(b1.poll_data(cx), Poll::Ready(Some(Ok(d))) if &d[..] == b"0123"));
        assert!(matches!(b1.poll_data(cx), Poll::Ready(Some(Err(e))) if e.reason() == Some(h2::Reason::INTERNAL_ERROR)), "reset, not ended");
        assert!(h2.idle());
    }

    #[test]
    fn frames_on_a_stream_vw_reset_are_dropped_and_the_connection_serves_on() {
        use crate::apps::exchange::{Part, ResponseHead};
        let (mut ctx, later) = app_ctx();
        let mut h2 = H2::new(16384, Origin { fd: 7, peer: None, tls: None });
        let mut out = OutQueue::default();
        h2.feed(&[PREFACE, SETTINGS, GET_1B].concat());
        h2.drive(&mut ctx, &mut out);
        let ex = later.calls.borrow()[0].0.clone();
        {
            // 4 bytes of the 10 the head promised: cut, so vw resets the stream
            let mut e = ex.borrow_mut();
            let head = ResponseHead { status: 200, status_line: b"200 OK"[..].into(), fields: Vec::new(), length: Some(10) };
            e.extend(vec![Part::Head(head), Part::Body(b"0123".to_vec()), Part::End { trailers: Vec::new() }]);
            e.finished = true;
        }
        for _ in 0..3 {
            h2.drive(&mut ctx, &mut out);
        }
        let f = frames(&mut out);
        assert!(f.iter().any(|f| f.0 == 3 && f.2 == 1 && f.3 == [0, 0, 0, 2]), "RST_STREAM INTERNAL_ERROR: {f:?}");
        // The client, not yet aware, sends on the stream: a WINDOW_UPDATE and DATA are dropped,
        // and the connection serves the next stream.
        h2.feed(&[frame(8, 0, 1, &[0, 0, 1, 0]), frame(0, 1, 1, b"late")].concat());
        h2.drive(&mut ctx, &mut out);
        let _ = frames(&mut out);
        let mut get_3 = GET_1B.to_vec();
        get_3[8] = 3;
        h2.feed(&get_3);
        h2.drive(&mut ctx, &mut out);
        assert!(!h2.ended(), "the connection goes on");
        assert_eq!(later.calls.borrow().len(), 2, "the next stream reaches the application");
        // A PUSH_PROMISE on it (which no client may send) is an error h2 0.4.20 reports as the
        // stream's reset, initiated by vw: its debug build asserts there that only h2 itself
        // resets (the fuzzer found it; `cfg(debug_assertions)` builds skip this part). A release
        // build, as vw is, answers it and does not panic.
        if !cfg!(debug_assertions) {
            h2.feed(&frame(5, 4, 1, &[0, 0, 0, 2, 0x82]));
            h2.drive(&mut ctx, &mut out);
            let _ = frames(&mut out);
        }
    }

    #[test]
    fn a_request_body_is_released_to_the_window_only_as_the_application_takes_it() {
        let (mut ctx, later) = app_ctx();
        let mut h2 = H2::new(16384, Origin { fd: 7, peer: None, tls: None });
        let mut out = OutQueue::default();
        h2.feed(&[PREFACE, SETTINGS, &post_1()].concat());
        h2.drive(&mut ctx, &mut out);
        // the stream's window as the server's SETTINGS give it (INITIAL_WINDOW_SIZE, id 4)
        let settings = frames(&mut out).into_iter().find(|f| f.0 == 4 && f.1 & 1 == 0).expect("the server's SETTINGS");
        let initial = settings.3.chunks(6).find(|c| c[..2] == [0, 4]).map_or(65_535, |c| u32::from_be_bytes(c[2..6].try_into().unwrap()) as usize);
        assert_eq!(initial, STREAM_WINDOW as usize);
        h2.feed(&frame(4, 1, 0, b"")); // the client acknowledges them: from now on they hold
        let inbox = later.calls.borrow()[0].1.clone().expect("a streamed body");
        // The client sends all its windows allow, again and again; the server grants more only
        // while the application's inbox has room.
        let (mut window, mut sent, mut granted) = (initial, 0usize, 0usize);
        for _ in 0..64 {
            while window > 0 {
                let n = window.min(16_384);
                h2.feed(&frame(0, 0, 1, &vec![b'x'; n]));
                (window, sent) = (window - n, sent + n);
            }
            for _ in 0..4 {
                h2.drive(&mut ctx, &mut out); // h2 reads a bounded number of frames per poll
            }
            let more: usize = frames(&mut out).iter().filter(|f| f.0 == 8 && f.2 == 1).map(|f| u32::from_be_bytes(f.3[..4].try_into().unwrap()) as usize).sum();
            if more == 0 {
                break;
            }
            (window, granted) = (window + more, granted + more);
        }
        assert!(!inbox.has_room(), "the inbox filled: sent {sent}, granted {granted}");
        assert!(sent <= crate::apps::INBOX_HIGH + initial && sent >= crate::apps::INBOX_HIGH, "sent {sent}");
        // The application takes it: the rest comes in, and the window opens again.
        let mut took = 0;
        let mut more = 0;
        for _ in 0..4 {
            if let crate::apps::Taken::Data(d) = inbox.take(usize::MAX) {
                took += d.len();
            }
            h2.drive(&mut ctx, &mut out);
            more += frames(&mut out).iter().filter(|f| f.0 == 8 && f.2 == 1).map(|f| u32::from_be_bytes(f.3[..4].try_into().unwrap()) as usize).sum::<usize>();
        }
        assert_eq!(took, sent, "every byte reaches the application, in order");
        assert!(more > 0 && granted + more >= sent, "granted {granted} + {more} for {sent}");
        // END_STREAM: the body is complete.
        h2.feed(&frame(0, 1, 1, b"end"));
        h2.drive(&mut ctx, &mut out);
        assert!(matches!(inbox.take(usize::MAX), crate::apps::Taken::Data(d) if d == b"end"));
        assert_eq!(inbox.take(usize::MAX), crate::apps::Taken::End);
        assert_eq!(h2.wait(), Wait::App);
    }
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
        let mut h2 = H2::new(16384, Origin { fd: -1, peer: None, tls: None });
        let mut out = OutQueue::default();
        h2.feed(&[PREFACE, SETTINGS, GET_1B].concat());
        h2.drive(&mut ctx, &mut out);
        let frames = frames(&mut out);
        let on_1: Vec<_> = frames.iter().filter(|f| f.2 == 1).collect();
        assert_eq!(on_1[0].0, 1, "HEADERS first: {frames:?}");
        assert_eq!(on_1[0].3[0], 0x88, ":status 200 from the static table");
        let data: Vec<_> = on_1.iter().filter(|f| f.0 == 0).collect();
        assert_eq!(data.len(), 1);
        assert_eq!((data[0].1 & 1, &data[0].3[..]), (1, &b"x"[..]), "one DATA frame, END_STREAM, the body");
        assert!(!h2.ended() && h2.idle());
    }
}
