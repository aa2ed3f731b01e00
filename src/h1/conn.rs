//! The connection state machine: the one place that owns what a connection is doing.
//!
//! It is fed the bytes read from the socket and queues the responses to write; it never touches
//! the socket itself, so it is tested (and fuzzed) by feeding it byte streams split anywhere.
//! Every complete request in the bytes it is given is answered, in order, into one output queue
//! that the event loop writes with one `writev`.

use crate::apps::exchange::{Part, SharedExchange};
use crate::apps::reply::Reply;
use crate::apps::{App, AppCall, AppRequest, BodySink, Inbox, ReqBody};
use crate::h1::body::Chunked;
use crate::service::observe::{now_ns, referer_and_agent, AccessLog, Counters, Entry, OwnedRequest};
use crate::h1::parse::{parse_head, Body, Field, FieldIndex, Head, Limits, Method};
use crate::h1::encode::{self, simple, Clock, Framing, Streamed, CLOSE, KEEP_ALIVE};
use crate::io::out::{OutQueue, BY_REFERENCE};
use crate::statics::{request_path, Outcome, StaticFiles, StaticRequest};
use crate::ws::deflate::{Agreed, Codec};
use crate::ws::handshake::{self, Refusal};
use crate::ws::session::{Expired, Keepalive, Session};
use std::net::SocketAddr;

/// A docroot served under a path prefix (`""` for the whole site).
pub struct Mount {
    /// No trailing slash: `/static` serves `/static/...`.
    pub prefix: Vec<u8>,
    pub files: StaticFiles,
}

/// Everything a connection needs from its worker while it handles input.
pub struct Ctx {
    pub clock: Clock,
    /// Static mounts, longest prefix first.
    pub mounts: Vec<Mount>,
    /// The application, for every request no mount takes.
    pub app: Option<Box<dyn App>>,
    /// The fields of the head parsed last (see `parse::Field`), kept to be reused.
    pub fields: Vec<Field>,
    pub limits: Limits,
    pub max_body: u64,
    /// Request bodies for the application above this size are spooled to a temporary file.
    pub spool_over: usize,
    /// An application that can take its body as it arrives (`App::streams_body`) gets it so;
    /// false: the body is read whole before the application is called (`--request-body spool`).
    pub stream_bodies: bool,
    pub local_port: u16,
    /// The worker is draining: every response from now on closes its connection.
    pub stopping: bool,
    /// (Content-Type, body) of the page sent with a static 404, instead of "Not Found".
    pub not_found_page: Option<(Vec<u8>, std::rc::Rc<[u8]>)>,
    /// This worker's counters (its slot of the region the supervisor reads for /metrics).
    pub stats: Counters,
    pub log: Option<AccessLog>,
    /// WebSocket messages longer than this end their connection with 1009.
    pub ws_max_message: u64,
    /// The peers whose forwarding fields say who the client is (None: proxy headers off).
    pub trust: Option<crate::service::proxy::Trust>,
    /// The worker's permessage-deflate compressor and decompressor (see `ws::deflate`).
    pub codec: Codec,
    /// What a WebSocket's input gave, kept to be reused (empty between uses).
    pub ws_events: Vec<crate::ws::conn::Event>,
    /// The last generation given out: a connection's (with its descriptor, how an application
    /// answering later names it), or an HTTP/2 stream's.
    generation: u64,
}

impl Ctx {
    pub fn new(clock: Clock, mounts: Vec<Mount>, app: Option<Box<dyn App>>) -> Self {
        let mut mounts = mounts;
        mounts.sort_by(|a, b| b.prefix.len().cmp(&a.prefix.len()));
        Ctx { clock, mounts, app, fields: Vec::with_capacity(32), limits: Limits::default(), max_body: 1 << 30, spool_over: 1 << 20, stream_bodies: true, local_port: 0, stopping: false, not_found_page: None, stats: Counters::local(), log: None, ws_max_message: 16 << 20, trust: None, codec: Codec::default(), ws_events: Vec::new(), generation: 0 }
    }

    /// A generation no connection or stream of this worker had before.
    pub fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }
}

/// Where a request goes.
enum Route<'a> {
    /// A static mount, with the path below its prefix.
    Static(usize, &'a [u8]),
    /// `/prefix` exactly: redirect to `/prefix/`.
    MountRoot(usize),
    App,
    Nowhere,
}

/// Who the client is, as a trusted proxy's fields say (nothing with proxy headers off).
pub fn forwarded(ctx: &Ctx, peer: Option<SocketAddr>, head: FieldIndex<'_>) -> crate::service::proxy::Forwarded {
    match &ctx.trust {
        Some(t) => crate::service::proxy::resolve(t, peer, head.iter()),
        None => Default::default(),
    }
}

/// The request target goes to the application (not to a static mount, and not refused).
pub fn routes_to_app(ctx: &Ctx, target: &[u8]) -> bool {
    let path = request_path(target);
    (path.first() == Some(&b'/') || path == b"*") && matches!(route(ctx, path), Route::App)
}

fn route<'a>(ctx: &Ctx, path: &'a [u8]) -> Route<'a> {
    for (i, m) in ctx.mounts.iter().enumerate() {
        // The whole-site mount has an empty prefix: skip the comparison (a libc memcmp call,
        // even of zero bytes, showed up as the largest user-space cost of a static hit).
        if m.prefix.is_empty() {
            return Route::Static(i, path);
        }
        if path.starts_with(&m.prefix) {
            let rest = &path[m.prefix.len()..];
            if rest.first() == Some(&b'/') {
                return Route::Static(i, rest);
            }
            if rest.is_empty() && !m.prefix.is_empty() {
                return Route::MountRoot(i);
            }
        }
    }
    if ctx.app.is_some() {
        Route::App
    } else {
        Route::Nowhere
    }
}

/// Where the reading side of a connection stands.
pub enum ReadState {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Skipping a Content-Length body of which this many bytes remain.
    BodyLength(u64),
    /// Skipping a chunked body.
    BodyChunked(Box<Chunked>),
    /// Reading a body for the application; it is called when the body is complete.
    AppBody(Box<Pending>),
    /// The application answers later; nothing is parsed until it has (pipelined requests wait
    /// in the connection's input, so responses stay in order).
    Waiting(SharedExchange, bool),
    /// The application runs while its request body arrives: the body goes to its inbox as it
    /// is decoded, as long as the inbox has room.
    AppStream(Box<Streaming>),
    /// A WebSocket handshake waits for the application to accept or deny it.
    WsOpening(Box<Opening>),
    /// The connection is a WebSocket (after its 101).
    Ws(Box<Session>),
    /// Nothing more will be parsed: the last response closes the connection.
    Done,
    /// The client broke its streamed body (framing, size, time) before the application began
    /// its response: the client has its 4xx and the connection closes once it is written.
    /// What the application still produces is dropped; the exchange is kept until then so the
    /// application is told the client is gone.
    Refused(SharedExchange),
}

/// What is left of a request body the application gets: a length, or a chunked decoder.
pub struct BodyLeft {
    remaining: u64,
    chunked: Option<Chunked>,
}

impl BodyLeft {
    fn new(body: Body, max_body: u64) -> Self {
        match body {
            Body::Length(n) => BodyLeft { remaining: n, chunked: None },
            _ => BodyLeft { remaining: 0, chunked: Some(Chunked::new(max_body)) },
        }
    }

    /// Decode from `data` into `sink`: (bytes used, whether the body is complete).
    fn decode(&mut self, data: &[u8], sink: &mut impl FnMut(&[u8])) -> Result<(usize, bool), crate::h1::body::BodyError> {
        match &mut self.chunked {
            Some(dec) => dec.feed(data, sink).map(|n| (n, dec.is_done())),
            None => {
                let n = self.remaining.min(data.len() as u64) as usize;
                sink(&data[..n]);
                self.remaining -= n as u64;
                Ok((n, self.remaining == 0))
            }
        }
    }
}

/// An application request waiting for its body.
pub struct Pending {
    head: Vec<u8>,
    fields: Vec<Field>,
    parsed: Head,
    close: bool,
    body: BodyLeft,
    sink: BodySink,
}

/// A request body streamed to a running application.
pub struct Streaming {
    ex: SharedExchange,
    close: bool,
    body: BodyLeft,
    inbox: std::sync::Arc<Inbox>,
    /// The client waits for 100 Continue, not sent yet: sent when the application first asks.
    expect_continue: bool,
}

/// A WebSocket handshake the application has not answered yet.
pub struct Opening {
    ex: SharedExchange,
    mailbox: std::sync::Arc<crate::apps::ws::Mailbox>,
    /// Sec-WebSocket-Accept of the 101.
    accept: [u8; 28],
    /// permessage-deflate as agreed, and the Sec-WebSocket-Extensions value that says so.
    deflate: Option<(Agreed, Vec<u8>)>,
}

/// After an application answered without reading all of its body: the rest is read and
/// dropped when it is at most this long (or chunked: up to this much), else the connection
/// closes after the response.
const DRAIN_MAX: u64 = 64 * 1024;

/// A response that an application finishes later: what to count and log when it does.
pub struct Watch {
    /// Where the response starts in the connection's output stream.
    mark: u64,
    // (`req` is boxed: only the access log needs it, and a Watch lives as long as a WebSocket.)
    start_ns: u64,
    status: u16,
    req: Option<Box<OwnedRequest>>,
    /// The client the access log names (behind a trusted proxy, the one it named).
    client: Option<SocketAddr>,
}

/// Seconds a connection may spend in each phase before it is closed (slow or absent clients).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// From the first byte of a request head (or from accept) to its end: not reset by each byte,
    /// so a client trickling a header (slowloris) is cut off. Answered with 408.
    pub header: i64,
    /// Without progress while a request body is read. Answered with 408.
    pub body: i64,
    /// Idle between requests on a keep-alive connection.
    pub keepalive: i64,
    /// Without progress while a response waits for the client to read it.
    pub write: i64,
    /// WebSocket pings.
    pub ws: Keepalive,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { header: 10, body: 30, keepalive: 30, write: 30, ws: Keepalive::default() }
    }
}

/// Input kept while an application answers (pipelined requests); past it, reading pauses.
pub const WAITING_INPUT_MAX: usize = 64 * 1024;

/// A connection: its protocol state (`Proto`: what it parses and answers), its input not yet
/// used, its phase for the event loop (writing, lingering) and its clock (the deadline of the
/// phase it is in). The loop (`io::worker`) makes the syscalls and asks this what to wait for
/// ([`Conn::want`]), when ([`Conn::arm`]) and what a passed deadline means ([`Conn::expiry`]).
pub struct Conn {
    pub inbuf: Vec<u8>,
    pub proto: Proto,
    /// Waiting to write (the socket was full) instead of to read.
    pub writing: bool,
    /// Our side is shut down; input is discarded until EOF or the deadline.
    pub lingering: bool,
    /// No request has been answered yet: waiting for the first is the header phase, not idle.
    pub fresh: bool,
    /// When the request head now being read began (its first byte, or the accept).
    pub head_started: Option<i64>,
    /// The second at which this connection has waited too long in its current phase.
    pub deadline: i64,
    /// The client ended its input while an application was answering.
    pub eof_pending: bool,
    /// The last second the socket took output (for the write timeout).
    pub progress_at: i64,
}

/// What a connection waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    Read,
    Write,
    /// Nothing: an application has the request, and more input waits in the socket.
    Nothing,
}

/// What a passed deadline ends in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// The client stopped reading: drop what the kernel still holds for it (a reset).
    Abort,
    Close,
    /// Idle keep-alive, or a client that never sent a byte: shut our side, then close.
    Linger,
    /// A body stalled while the application reads it: the application sees it cut, and the
    /// connection ends (its response can't be told from one to a complete body).
    CutBody,
    /// A request in progress: 408.
    TimedOut,
    /// A WebSocket's clock: ping it, or end it ([`Proto::ws_expired`]).
    Ws,
}

impl Conn {
    pub fn new(proto: Proto, now: i64, t: &Timeouts) -> Self {
        Conn {
            inbuf: Vec::new(),
            proto,
            writing: false,
            lingering: false,
            fresh: true,
            head_started: Some(now),
            deadline: now + t.header,
            eof_pending: false,
            progress_at: now,
        }
    }

    /// Go on with the input kept in `inbuf`.
    pub fn feed_inbuf(&mut self, ctx: &mut Ctx) {
        let used = self.proto.feed(&self.inbuf, ctx);
        if used > 0 {
            self.fresh = false;
            self.head_started = None;
        }
        self.inbuf.drain(..used);
        if self.inbuf.is_empty() && self.proto.is_websocket() {
            self.inbuf = Vec::new(); // read through the worker's buffer again: hold none
        }
    }

    /// What to wait for now: the one place that decides it.
    pub fn want(&self) -> Want {
        if self.lingering {
            Want::Read
        } else if self.writing {
            Want::Write
        } else if self.proto.exchange().is_some() && (self.eof_pending || self.inbuf.len() >= WAITING_INPUT_MAX) {
            Want::Nothing
        } else {
            Want::Read
        }
    }

    /// Set the deadline for the phase the connection is in now.
    pub fn arm(&mut self, now: i64, t: &Timeouts) {
        if self.lingering {
            return;
        }
        self.deadline = if self.writing {
            self.progress_at + t.write
        } else {
            match self.proto.read {
                ReadState::Head if self.inbuf.is_empty() && !self.fresh => {
                    self.head_started = None;
                    now + t.keepalive
                }
                ReadState::Head => self.head_started.get_or_insert(now).saturating_add(t.header),
                ReadState::Done | ReadState::Refused(_) => now + t.write,
                ReadState::Waiting(..) => i64::MAX, // the application takes the time it takes
                ReadState::AppStream(_) if self.proto.reading_body() => now + t.body,
                ReadState::AppStream(_) => i64::MAX, // the application has body it has not read
                ReadState::WsOpening(_) => i64::MAX,
                ReadState::Ws(ref s) => s.deadline(&t.ws),
                _ => now + t.body,
            }
        };
    }

    /// What the passed deadline means for the phase the connection is in.
    pub fn expiry(&self) -> Expiry {
        let idle = matches!(self.proto.read, ReadState::Head) && self.inbuf.is_empty();
        if self.writing {
            Expiry::Abort
        } else if self.lingering || matches!(self.proto.read, ReadState::Done | ReadState::Refused(_)) {
            Expiry::Close
        } else if idle {
            Expiry::Linger
        } else if matches!(self.proto.read, ReadState::AppStream(_)) {
            Expiry::CutBody
        } else if let ReadState::Ws(s) = &self.proto.read {
            if s.ended {
                Expiry::Close
            } else {
                Expiry::Ws
            }
        } else {
            Expiry::TimedOut
        }
    }

    /// No request in progress (a stopping worker ends such connections).
    pub fn idle(&self) -> bool {
        !self.lingering && self.inbuf.is_empty() && self.proto.is_idle()
    }
}

/// The response an application is giving, as the connection frames it.
#[derive(Default)]
pub struct Answer {
    /// The Connection line the request calls for, if any.
    conn: Option<&'static [u8]>,
    head_only: bool,
    minor: u8,
    status: u16,
    /// The body's framing, once the head is out.
    body: Option<Streamed>,
}

impl Answer {
    /// The connection cannot stay open after this response (close-delimited, asked for, or
    /// its body broke or fell short of its length).
    fn closes(&self) -> bool {
        self.body.as_ref().is_some_and(|b| b.close)
    }
}


pub struct Proto {
    pub watch: Option<Box<Watch>>,
    pub answer: Answer,
    pub read: ReadState,
    pub out: OutQueue,
    /// Close once `out` is written.
    pub close_after_flush: bool,
    pub peer: Option<SocketAddr>,
    /// (descriptor, generation): how an application answering later names this connection.
    pub id: (i32, u64),
    /// The connection's TLS, once its handshake is done (None: plain TCP).
    pub tls: Option<std::sync::Arc<crate::tls::TlsInfo>>,
    /// This is the HTTP/1.1 twin of an HTTP/2 stream (see `h2::conn`): counted and logged as
    /// HTTP/2.
    pub http2: bool,
}

const ALLOW: &[u8] = b"Allow: GET, HEAD\r\n";

impl Default for Proto {
    fn default() -> Self {
        Proto { watch: None, answer: Answer::default(), read: ReadState::Head, out: OutQueue::default(), close_after_flush: false, peer: None, id: (0, 0), tls: None, http2: false }
    }
}

impl Proto {
    /// True when no request is partly read and nothing waits to be written.
    pub fn is_idle(&self) -> bool {
        matches!(self.read, ReadState::Head) && self.out.is_empty()
    }

    /// Handle `data` (all unconsumed input). Returns how many bytes were consumed; the caller
    /// keeps the rest (an incomplete head) and calls again with it and what follows.
    pub fn feed(&mut self, data: &[u8], ctx: &mut Ctx) -> usize {
        let mut pos = 0;
        loop {
            match &mut self.read {
                ReadState::Done | ReadState::Refused(_) => return data.len(),
                ReadState::Waiting(..) | ReadState::WsOpening(_) => return pos,
                ReadState::Ws(s) => {
                    let used = s.feed(&data[pos..], &mut self.out, &mut ctx.codec, &mut ctx.ws_events, ctx.clock.sec);
                    if s.ended {
                        self.close_after_flush = true;
                    }
                    return pos + used;
                }
                ReadState::AppStream(st) => {
                    if !st.inbox.has_room() || pos == data.len() {
                        return pos; // the rest waits in the connection's input
                    }
                    let inbox = &st.inbox;
                    let done = match st.body.decode(&data[pos..], &mut |d| inbox.push(d)) {
                        Ok((n, done)) => {
                            pos += n;
                            done
                        }
                        Err(e) => {
                            // The framing is broken: the application sees an incomplete
                            // body, the client its 4xx, and nothing after it is read.
                            let status = if e == crate::h1::body::BodyError::TooLarge { 413 } else { 400 };
                            self.body_failed(status, ctx);
                            return data.len();
                        }
                    };
                    if done {
                        st.inbox.end(false);
                    }
                    crate::apps::notify(&st.ex);
                    if done {
                        let ReadState::AppStream(st) = std::mem::replace(&mut self.read, ReadState::Head) else { unreachable!() };
                        self.read = ReadState::Waiting(st.ex, st.close);
                        if self.take_app_output(ctx) {
                            continue; // the response was already complete: parse what follows
                        }
                    }
                    return pos;
                }
                ReadState::Head => {
                    if pos == data.len() {
                        return pos;
                    }
                    match parse_head(&data[pos..], &ctx.limits, &mut ctx.fields) {
                        Ok(None) => return pos,
                        Ok(Some(head)) => {
                            let req = &data[pos..pos + head.len];
                            pos += head.len;
                            // The index is lent out while the request is handled (no copy).
                            let fields = std::mem::take(&mut ctx.fields);
                            self.request(req, head, &fields, ctx);
                            ctx.fields = fields;
                        }
                        Err(reject) => {
                            let mark = self.out.position();
                            simple(self.out.owned_tail(), &ctx.clock.date, reject.status(), b"", Some(CLOSE), false);
                            self.observed(ctx, mark, 0, None);
                            self.finish();
                            return data.len();
                        }
                    }
                }
                ReadState::BodyLength(rem) => {
                    let n = (*rem).min((data.len() - pos) as u64);
                    pos += n as usize;
                    *rem -= n;
                    if *rem > 0 {
                        return pos;
                    }
                    self.read = ReadState::Head;
                }
                ReadState::BodyChunked(dec) => match dec.feed(&data[pos..], &mut |_| {}) {
                    Ok(n) => {
                        pos += n;
                        if !dec.is_done() {
                            return pos;
                        }
                        self.read = ReadState::Head;
                    }
                    Err(_) => {
                        // The response for this request is already queued; the framing is
                        // broken, so nothing more is read from this connection.
                        self.finish();
                        return data.len();
                    }
                },
                ReadState::AppBody(p) => {
                    let sink = &mut p.sink;
                    let done = match p.body.decode(&data[pos..], &mut |d| sink.push(d)) {
                        Ok((n, done)) => {
                            pos += n;
                            done
                        }
                        Err(e) => {
                            let status = if e == crate::h1::body::BodyError::TooLarge { 413 } else { 400 };
                            let ReadState::AppBody(p) = std::mem::replace(&mut self.read, ReadState::Head) else { unreachable!() };
                            let mark = self.out.position();
                            simple(self.out.owned_tail(), &ctx.clock.date, status, b"", Some(CLOSE), false);
                            self.counted(ctx, mark, 0, Some((&p.head, &p.parsed, &p.fields)), status); // logged with its request line
                            self.finish();
                            return data.len();
                        }
                    };
                    if !done {
                        return pos;
                    }
                    let ReadState::AppBody(p) = std::mem::replace(&mut self.read, ReadState::Head) else { unreachable!() };
                    let p = *p;
                    if p.sink.failed {
                        let mark = self.out.position();
                        simple(self.out.owned_tail(), &ctx.clock.date, 500, b"", Some(CLOSE), false);
                        self.observed(ctx, mark, 0, None);
                        self.finish();
                        return data.len();
                    }
                    self.call_app(&p.head, &p.parsed, &p.fields, p.sink.finish(), p.close, ctx);
                    if p.close && !matches!(self.read, ReadState::Waiting(..)) {
                        self.finish();
                        return data.len();
                    }
                }
            }
        }
    }

    /// The peer closed its side: answer what was complete, then close.
    pub fn eof(&mut self) {
        self.finish();
    }

    /// The worker has no room for this connection: 503, then close.
    pub fn refuse(&mut self, ctx: &mut Ctx) {
        let mark = self.out.position();
        simple(self.out.owned_tail(), &ctx.clock.date, 503, b"Retry-After: 1\r\n", Some(CLOSE), false);
        self.observed(ctx, mark, 0, None);
        self.finish();
    }

    /// The client sent plain HTTP to the TLS port: a 400 that says so, in plain text, then close.
    pub fn plain_http_on_tls(&mut self, ctx: &mut Ctx) {
        let mark = self.out.position();
        encode::simple_text(self.out.owned_tail(), &ctx.clock.date, 400, "This port speaks HTTPS: use an https:// address.", b"", Some(CLOSE), false);
        self.observed(ctx, mark, 0, None);
        self.finish();
    }

    /// The client took too long with a request: 408, then close.
    pub fn timed_out(&mut self, ctx: &mut Ctx) {
        let mark = self.out.position();
        simple(self.out.owned_tail(), &ctx.clock.date, 408, b"", Some(CLOSE), false);
        match std::mem::replace(&mut self.read, ReadState::Done) {
            // A body the application was to get whole: logged with its request line.
            ReadState::AppBody(p) => self.counted(ctx, mark, 0, Some((&p.head, &p.parsed, &p.fields)), 408),
            _ => self.observed(ctx, mark, 0, None),
        }
        self.finish();
    }

    /// Count (and log) the response queued from `mark` to now. `start_ns`: when its request
    /// came (0: not timed); `req`: the request head and its parse, when there was one.
    fn observed(&mut self, ctx: &mut Ctx, mark: u64, start_ns: u64, req: Option<(&[u8], &Head, &[Field])>) {
        let status = self.out.status_at(mark);
        self.counted(ctx, mark, start_ns, req, status);
    }

    /// `observed`, with the status known.
    fn counted(&mut self, ctx: &mut Ctx, mark: u64, start_ns: u64, req: Option<(&[u8], &Head, &[Field])>, status: u16) {
        let client = match req {
            Some((head, _, fields)) if ctx.log.is_some() => forwarded(ctx, self.peer, FieldIndex { head, fields }).client.or(self.peer),
            _ => self.peer,
        };
        self.counted_for(ctx, mark, start_ns, req, status, client);
    }

    /// `counted`, with the client the access log names already known (an application's
    /// request has it: `app_req`).
    fn counted_for(&mut self, ctx: &mut Ctx, mark: u64, start_ns: u64, req: Option<(&[u8], &Head, &[Field])>, status: u16, client: Option<SocketAddr>) {
        let bytes = self.out.position() - mark;
        let micros = if start_ns == 0 { 0 } else { now_ns().saturating_sub(start_ns) / 1000 };
        ctx.stats.response(status, bytes, micros);
        if self.http2 {
            ctx.stats.h2_response();
        }
        if let Some(log) = &mut ctx.log {
            let entry = match req {
                Some((head, parsed, fields)) => {
                    let (referer, user_agent) = referer_and_agent(FieldIndex { head, fields }.iter());
                    Entry {
                        peer: client,
                        method: &head[parsed.method_range.clone()],
                        target: &head[parsed.target.clone()],
                        minor: if self.http2 { 2 } else { parsed.minor },
                        status,
                        bytes,
                        micros,
                        referer,
                        user_agent,
                    }
                }
                None => Entry { peer: client, method: b"", target: b"", minor: 1, status, bytes, micros, referer: b"", user_agent: b"" },
            };
            log.record(&entry, ctx.clock.sec);
        }
    }

    fn finish(&mut self) {
        self.read = ReadState::Done;
        self.close_after_flush = true;
    }

    fn request(&mut self, req: &[u8], head: Head, fields: &[Field], ctx: &mut Ctx) {
        let mark = self.out.position();
        // Static answers are queued at once; they are timed only for the access log.
        let start = if ctx.log.is_some() { now_ns() } else { 0 };
        if let Body::Length(n) = head.body {
            if n > ctx.max_body {
                simple(self.out.owned_tail(), &ctx.clock.date, 413, b"", Some(CLOSE), false);
                self.observed(ctx, mark, start, Some((req, &head, fields)));
                self.finish();
                return;
            }
        }
        let path = request_path(&req[head.target.clone()]);
        if path.first() != Some(&b'/') && !(path == b"*" && ctx.app.is_some()) {
            simple(self.out.owned_tail(), &ctx.clock.date, 400, b"", Some(CLOSE), false);
            self.observed(ctx, mark, start, Some((req, &head, fields)));
            self.finish();
            return;
        }
        let status = match route(ctx, path) {
            Route::App => return self.app_request(req, head, fields, ctx), // counted when the application answers
            Route::Static(i, sub) => self.static_request(Some((i, sub)), req, fields, &head, ctx),
            Route::MountRoot(i) => {
                let mut loc = ctx.mounts[i].prefix.clone();
                loc.push(b'/');
                self.static_request_outcome(Outcome::Redirect(loc), &head, ctx)
            }
            Route::Nowhere => self.static_request(None, req, fields, &head, ctx),
        };
        self.counted(ctx, mark, start, Some((req, &head, fields)), status);
    }

    /// How this response ends: whether the connection closes after it, and the Connection line.
    fn connection(head: &Head, ctx: &Ctx, reads_body: bool) -> (bool, Option<&'static [u8]>) {
        // A client that waits for 100-continue may never send a body we do not ask for: then
        // the connection cannot be kept, or its next request could be read from body bytes.
        let close = !head.keep_alive || ctx.stopping || (head.expect_continue && head.body != Body::None && !reads_body);
        let line = if close {
            Some(CLOSE)
        } else if head.minor == 0 {
            Some(KEEP_ALIVE)
        } else {
            None
        };
        (close, line)
    }

    /// Answer from a static mount; returns the status queued.
    fn static_request(&mut self, mount: Option<(usize, &[u8])>, req: &[u8], fields: &[Field], head: &Head, ctx: &mut Ctx) -> u16 {
        let outcome = match (head.method, mount) {
            (Method::Other, _) => {
                let (_, conn) = Self::connection(head, ctx, false);
                simple(self.out.owned_tail(), &ctx.clock.date, 405, ALLOW, conn, false);
                Outcome::Served(405)
            }
            (_, None) => Outcome::NotFound,
            (_, Some((i, sub))) => {
                let (_, conn) = Self::connection(head, ctx, false);
                let sreq = StaticRequest { path: sub, head_only: head.method == Method::Head, conn, head: FieldIndex { head: &req[..head.len], fields }, cond: head.cond };
                match ctx.mounts[i].files.serve(&sreq, &ctx.clock, &mut self.out) {
                    Outcome::Redirect(loc) => Outcome::Redirect([&ctx.mounts[i].prefix[..], &loc].concat()),
                    other => other,
                }
            }
        };
        self.static_request_outcome(outcome, head, ctx)
    }

    /// Queue the error or redirect for `outcome` (nothing for `Served`), then skip the body.
    /// Returns the status queued.
    fn static_request_outcome(&mut self, outcome: Outcome, head: &Head, ctx: &mut Ctx) -> u16 {
        let (close, conn) = Self::connection(head, ctx, false);
        let queued = matches!(outcome, Outcome::Served(_));
        let (status, extra): (u16, Vec<u8>) = match outcome {
            Outcome::Served(status) => (status, Vec::new()),
            Outcome::NotFound => (404, Vec::new()),
            Outcome::Forbidden => (403, Vec::new()),
            Outcome::BadPath => (400, Vec::new()),
            Outcome::Unavailable => (503, b"Retry-After: 1\r\n".to_vec()),
            Outcome::Redirect(loc) => (301, [&b"Location: "[..], &loc[..], b"\r\n"].concat()),
            Outcome::PreconditionFailed => (412, Vec::new()),
            Outcome::NotAcceptable => (406, b"Vary: Accept-Encoding\r\n".to_vec()),
            Outcome::RangeNotSatisfiable(len) => (416, format!("Content-Range: bytes */{len}\r\n").into_bytes()),
        };
        let head_only = head.method == Method::Head;
        match (&ctx.not_found_page, status) {
            _ if queued => {}
            (Some((ctype, body)), 404) => {
                let t = self.out.owned_tail();
                crate::h1::encode::head_start(t, b"404 Not Found", &ctx.clock.date);
                t.extend_from_slice(b"Content-Type: ");
                t.extend_from_slice(ctype);
                t.extend_from_slice(b"\r\n");
                crate::h1::encode::head_end(t, Some(body.len() as u64), conn);
                if !head_only {
                    self.out.push_shared(body, 0, body.len());
                }
            }
            _ => simple(self.out.owned_tail(), &ctx.clock.date, status, &extra, conn, head_only),
        }
        self.skip_body(head, close, ctx);
        status
    }

    fn app_request(&mut self, req: &[u8], head: Head, fields: &[Field], ctx: &mut Ctx) {
        // A WebSocket handshake: only a GET in HTTP/1.1 to an application that takes one there;
        // any other request with Upgrade is plain HTTP.
        if head.upgrade && head.method == Method::Get && head.minor == 1 && handshake::wants_upgrade(FieldIndex { head: req, fields }) {
            let areq = self.app_req(req, &head, fields, ctx);
            if ctx.app.as_ref().is_some_and(|a| a.takes_websocket(&areq)) {
                return self.open_websocket(req, head, fields, ctx);
            }
        }
        let (close, _) = Self::connection(&head, ctx, true);
        if head.body == Body::None {
            self.call_app(req, &head, fields, ReqBody::Empty, close, ctx);
            if close && !matches!(self.read, ReadState::Waiting(..)) {
                self.finish();
            }
            return;
        }
        let body = BodyLeft::new(head.body, ctx.max_body);
        if ctx.stream_bodies && ctx.app.as_ref().is_some_and(|a| a.streams_body()) {
            // The application is called now and takes the body as it comes.
            let inbox = std::sync::Arc::new(Inbox::default());
            self.call_app(req, &head, fields, ReqBody::Stream(inbox.clone()), close, ctx);
            match std::mem::replace(&mut self.read, ReadState::Head) {
                ReadState::Waiting(ex, close) => {
                    let expect_continue = head.expect_continue;
                    self.read = ReadState::AppStream(Box::new(Streaming { ex, close, body, inbox, expect_continue }));
                }
                // Answered at once (a router's 404): the body is skipped like a static one's.
                ReadState::Done => self.read = ReadState::Done,
                _ => self.skip_body(&head, close, ctx),
            }
            return;
        }
        if head.expect_continue {
            self.out.owned_tail().extend_from_slice(crate::h1::encode::CONTINUE);
        }
        self.read = ReadState::AppBody(Box::new(Pending {
            head: req.to_vec(),
            fields: fields.to_vec(),
            parsed: head,
            close,
            body,
            sink: BodySink::new(ctx.spool_over),
        }));
    }

    fn app_req<'a>(&self, req: &'a [u8], head: &Head, fields: &'a [Field], ctx: &Ctx) -> AppRequest<'a> {
        let fwd = forwarded(ctx, self.peer, FieldIndex { head: req, fields });
        AppRequest {
            head: req,
            method: &req[head.method_range.clone()],
            target: &req[head.target.clone()],
            fields,
            minor: head.minor,
            peer: fwd.client.or(self.peer),
            https: fwd.https,
            local_port: ctx.local_port,
            tls: self.tls.clone(),
            http2: false,
            conn_id: self.id,
        }
    }

    /// A WebSocket opening handshake for an application that takes it: a malformed one is
    /// refused (400, or 426 for another version), a valid one goes to the application, which
    /// accepts or denies it.
    fn open_websocket(&mut self, req: &[u8], head: Head, fields: &[Field], ctx: &mut Ctx) {
        let (mark, start) = (self.out.position(), now_ns());
        let hs = match handshake::check(FieldIndex { head: req, fields }) {
            Ok(hs) if head.body == Body::None => hs,
            refused => {
                let (status, extra): (u16, &[u8]) = match refused {
                    Err(Refusal::Version) => (426, b"Sec-WebSocket-Version: 13\r\n"),
                    _ => (400, b""),
                };
                simple(self.out.owned_tail(), &ctx.clock.date, status, extra, Some(CLOSE), false);
                self.counted(ctx, mark, start, Some((req, &head, fields)), status);
                self.finish();
                return;
            }
        };
        let deflate = crate::ws::deflate::negotiate(&hs.extensions);
        let offer = crate::apps::ws::Offer { protocols: hs.protocols.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect() };
        let accept = handshake::accept_key(hs.key);
        let mailbox = std::sync::Arc::new(crate::apps::ws::Mailbox::default());
        let areq = self.app_req(req, &head, fields, ctx);
        let ex = ctx.app.as_mut().expect("routed to the app").websocket(&areq, offer, mailbox.clone());
        // A denial is an HTTP response that ends the connection.
        self.answer = Answer { conn: Some(CLOSE), head_only: false, minor: 1, status: 0, body: None };
        let owned = ctx.log.as_ref().map(|_| Box::new(OwnedRequest::from_head(FieldIndex { head: req, fields }, &req[head.method_range.clone()], &req[head.target.clone()], head.minor)));
        self.watch = Some(Box::new(Watch { mark, start_ns: start, status: 0, req: owned, client: areq.peer }));
        self.read = ReadState::WsOpening(Box::new(Opening { ex, mailbox, accept, deflate }));
        self.take_app_output(ctx);
    }

    /// What a WebSocket's application sent: before its 101, an accept (the connection becomes a
    /// WebSocket) or a denial (a Close first is a 403; any other response is sent as it is and
    /// closes); after it, messages and the close. Returns true when the connection just became
    /// a WebSocket (input kept meanwhile is read now).
    fn take_ws_output(&mut self, ctx: &mut Ctx) -> bool {
        let ex = match &self.read {
            ReadState::WsOpening(o) => o.ex.clone(),
            ReadState::Ws(s) => s.ex.clone(),
            _ => return false,
        };
        let (parts, finished) = {
            let mut e = ex.borrow_mut();
            (e.take(), e.finished)
        };
        let mut parts = parts.into_iter();
        let mut switched = false;
        if matches!(self.read, ReadState::WsOpening(_)) {
            loop {
                let denial = match parts.next() {
                    None if finished => Reply::new(500).parts(), // it ended without answering
                    None => return false,
                    Some(Part::Head(h)) if h.status == 101 => {
                        let ReadState::WsOpening(o) = std::mem::replace(&mut self.read, ReadState::Head) else { unreachable!() };
                        encode::switching(self.out.owned_tail(), &h.fields, &o.accept, o.deflate.as_ref().map(|d| &d.1[..]), &ctx.clock.date);
                        self.answer.status = 101;
                        if let Some(w) = self.watch.as_mut() {
                            w.status = 101; // counted and logged when the connection ends
                        }
                        self.read = ReadState::Ws(Box::new(Session::new(o.ex, o.mailbox, ctx.ws_max_message, o.deflate.map(|d| d.0), ctx.clock.sec)));
                        switched = true;
                        break;
                    }
                    Some(Part::Close(..)) => Reply::new(403).parts(),
                    Some(Part::Head(h)) => std::iter::once(Part::Head(h)).chain(parts).collect(),
                    Some(_) => continue, // nothing but an answer comes before the answer
                };
                // Denied: an HTTP response, after which the connection closes.
                if let ReadState::WsOpening(o) = &self.read {
                    o.mailbox.close(1006, "");
                }
                ex.borrow_mut().parts = denial;
                self.read = ReadState::Waiting(ex, true);
                return self.take_app_output(ctx);
            }
        }
        let ReadState::Ws(s) = &mut self.read else { return switched };
        for p in parts {
            match p {
                Part::Message(m) => s.send(m, &mut self.out, &mut ctx.codec),
                Part::Close(code, reason) => s.close(code, &reason, &mut self.out, ctx.clock.sec),
                _ => {}
            }
        }
        if finished {
            s.close(1000, "", &mut self.out, ctx.clock.sec); // the application ended without closing
        }
        if s.ended {
            self.close_after_flush = true;
        }
        switched
    }

    /// A WebSocket's deadline passed: a quiet client is pinged, a dead one or one that never
    /// answered the close is let go.
    pub fn ws_expired(&mut self, ctx: &mut Ctx) {
        if let ReadState::Ws(s) = &mut self.read {
            if s.expired(&mut self.out, ctx.clock.sec) == Expired::End {
                self.close_after_flush = true;
            }
        }
    }

    /// The worker stops: a WebSocket is closed with 1001.
    pub fn going_away(&mut self, ctx: &mut Ctx) {
        if let ReadState::Ws(s) = &mut self.read {
            s.going_away(&mut self.out, ctx.clock.sec);
        }
    }

    fn call_app(&mut self, req: &[u8], head: &Head, fields: &[Field], body: ReqBody, close: bool, ctx: &mut Ctx) {
        let conn = if close { Some(CLOSE) } else if head.minor == 0 { Some(KEEP_ALIVE) } else { None };
        let head_only = head.method == Method::Head;
        self.answer = Answer { conn, head_only, minor: head.minor, status: 0, body: None };
        let areq = self.app_req(req, head, fields, ctx);
        let client = areq.peer; // the client as the proxy named it: for the access log
        let app = ctx.app.as_mut().expect("routed to the app");
        let (mark, start) = (self.out.position(), now_ns());
        match app.call(&areq, body, head_only) {
            AppCall::Answer(parts) => {
                self.frame(parts, &ctx.clock.date);
                let status = self.answer.status;
                self.counted_for(ctx, mark, start, Some((req, head, fields)), status, client);
                if self.answer.closes() {
                    self.finish();
                }
            }
            AppCall::Pending(ex) => {
                let owned = ctx.log.as_ref().map(|_| {
                    Box::new(OwnedRequest::from_head(FieldIndex { head: req, fields }, &req[head.method_range.clone()], &req[head.target.clone()], head.minor))
                });
                self.watch = Some(Box::new(Watch { mark, start_ns: start, status: 0, req: owned, client }));
                self.read = ReadState::Waiting(ex, close);
                self.take_app_output(ctx);
            }
        }
    }

    /// Frame an application's parts into the output queue: every byte around the body is
    /// written by `h1::encode`.
    fn frame(&mut self, parts: Vec<Part>, date: &[u8]) {
        let a = &mut self.answer;
        for part in parts {
            match part {
                Part::Head(h) => {
                    let t = self.out.owned_tail();
                    encode::app_head_start(t, &h.status_line, &h.fields, date);
                    let framing = match h.length {
                        _ if encode::bodiless(h.status) => Framing::None,
                        Some(n) => Framing::Length(n),
                        None if a.minor >= 1 => Framing::Chunked,
                        None => Framing::Close,
                    };
                    a.body = Some(encode::framed_end(t, framing, a.conn, a.head_only));
                    a.status = h.status;
                }
                Part::Body(v) => {
                    let Some(s) = a.body.as_mut() else { continue };
                    match s.framing {
                        Framing::Length(n) if v.len() >= BY_REFERENCE && s.sent + v.len() as u64 <= n => {
                            s.sent += v.len() as u64;
                            self.out.push_owned(v);
                        }
                        _ => s.piece(&v, self.out.owned_tail()),
                    }
                }
                Part::File { fd, off, len } => {
                    let Some(s) = a.body.as_mut() else { continue };
                    let len = match s.framing {
                        Framing::None => continue,
                        Framing::Length(n) => {
                            let room = n.saturating_sub(s.sent);
                            if len > room {
                                s.close = true; // more than the length said: never past the framing
                            }
                            len.min(room)
                        }
                        _ => len,
                    };
                    if len == 0 {
                        continue;
                    }
                    if s.framing == Framing::Chunked {
                        encode::chunk_size(self.out.owned_tail(), len);
                    }
                    self.out.push(crate::io::out::Seg::File { fd: std::rc::Rc::new(fd), off, len });
                    if s.framing == Framing::Chunked {
                        self.out.owned_tail().extend_from_slice(b"\r\n");
                    }
                    s.sent += len;
                }
                Part::Message(_) | Part::Close(..) => {} // WebSocket parts: not in an HTTP response
                Part::End { trailers } => {
                    if let Some(s) = a.body.as_mut() {
                        if s.framing == Framing::Chunked {
                            s.end(&trailers, self.out.owned_tail());
                        } else {
                            s.end(b"", &mut Vec::new()); // writes nothing: only checks the length
                        }
                    }
                }
            }
        }
    }

    /// The body streamed to the application failed through the client: `status` 400 (its
    /// framing), 413 (past `--max-body`) or 408 (`--body-timeout`). The application is told
    /// (its body is cut). When it has not begun its response, the client gets `status`, it is
    /// counted and logged so, and the connection closes once it is written, whatever the
    /// application makes of the cut body (a 500 of its own is dropped). A response already
    /// begun is cut: the connection closes when the application ends it. Returns whether the
    /// 4xx was queued.
    fn body_failed(&mut self, status: u16, ctx: &mut Ctx) -> bool {
        if !matches!(self.read, ReadState::AppStream(_)) {
            return false;
        }
        let ReadState::AppStream(st) = std::mem::replace(&mut self.read, ReadState::Head) else { unreachable!() };
        st.inbox.end(true);
        crate::apps::notify(&st.ex);
        self.read = ReadState::Waiting(st.ex, true);
        if self.take_app_output(ctx) || self.answer.status != 0 {
            return false; // answered, or its response has begun
        }
        let ReadState::Waiting(ex, _) = std::mem::replace(&mut self.read, ReadState::Head) else { unreachable!() };
        self.answer.status = status;
        simple(self.out.owned_tail(), &ctx.clock.date, status, b"", Some(CLOSE), false);
        if let Some(w) = self.watch.take() {
            self.record_watch(ctx, w, status);
        }
        self.read = ReadState::Refused(ex);
        self.close_after_flush = true;
        true
    }

    /// `--body-timeout` passed while the application reads its streamed body: 408 if it has
    /// not begun its response (true: write it); else the body is cut and the caller ends the
    /// connection (its response cannot be told from one to a complete body).
    pub fn body_timed_out(&mut self, ctx: &mut Ctx) -> bool {
        self.body_failed(408, ctx)
    }

    /// Move what a later-answering application has produced into the output queue. When its
    /// response is finished, parsing resumes (the caller feeds the buffered input again).
    /// Returns true when the response finished.
    pub fn take_app_output(&mut self, ctx: &mut Ctx) -> bool {
        if matches!(self.read, ReadState::WsOpening(_) | ReadState::Ws(_)) {
            return self.take_ws_output(ctx);
        }
        if let ReadState::Refused(ex) = &self.read {
            ex.borrow_mut().parts.clear(); // the client has its 4xx: nothing more is its
            crate::apps::notify(ex); // a producer waiting for room has it
            return false;
        }
        let (ex, close) = match &self.read {
            ReadState::Waiting(ex, close) => (ex, close),
            ReadState::AppStream(st) => (&st.ex, &st.close),
            _ => return false,
        };
        let (parts, finished, app_close) = {
            let mut e = ex.borrow_mut();
            (e.take(), e.finished, e.close || *close)
        };
        if !parts.is_empty() {
            self.frame(parts, &ctx.clock.date);
            if let Some(w) = self.watch.as_mut() {
                w.status = self.answer.status;
            }
        }
        let must_close = app_close || self.answer.closes();
        if finished {
            if let Some(w) = self.watch.take() {
                let status = w.status;
                self.record_watch(ctx, w, status);
            }
            if let ReadState::AppStream(st) = std::mem::replace(&mut self.read, ReadState::Head) {
                // Answered before the whole body came: nobody will read the rest. Drop a short
                // rest; a long one (or one the client waits to be asked for) ends the connection.
                st.inbox.end(true);
                let drain = !must_close && !st.expect_continue && match &st.body.chunked {
                    None => st.body.remaining <= DRAIN_MAX,
                    Some(_) => true,
                };
                self.read = match st.body.chunked {
                    _ if !drain => ReadState::Done,
                    None => ReadState::BodyLength(st.body.remaining),
                    Some(mut dec) => {
                        dec.limit(DRAIN_MAX);
                        ReadState::BodyChunked(Box::new(dec))
                    }
                };
                if !drain {
                    self.close_after_flush = true;
                }
                return finished;
            }
            if must_close {
                self.finish();
            } else {
                self.read = ReadState::Head;
            }
        }
        finished
    }

    /// The application asked for its streamed body, or made room in its inbox: send the 100
    /// Continue the client waits for (the first time), and go on decoding what is buffered
    /// (the caller feeds the connection's input again).
    pub fn resume_body(&mut self) -> bool {
        if matches!(self.read, ReadState::Ws(_)) {
            return true; // the application took messages: read on
        }
        let ReadState::AppStream(st) = &mut self.read else { return false };
        let (asked, ever) = st.inbox.asked();
        if st.expect_continue && (asked || ever) {
            st.expect_continue = false;
            if self.watch.as_ref().is_some_and(|w| w.status == 0) {
                self.out.owned_tail().extend_from_slice(crate::h1::encode::CONTINUE);
            }
        }
        true
    }

    /// The body being streamed will not be complete (the client ended its input, or stalled).
    pub fn body_cut(&mut self) {
        match &mut self.read {
            ReadState::AppStream(st) => {
                st.inbox.end(true);
                crate::apps::notify(&st.ex);
            }
            ReadState::Ws(s) => {
                s.lost();
                crate::apps::notify(&s.ex);
            }
            ReadState::WsOpening(o) => {
                o.mailbox.close(1006, "");
                crate::apps::notify(&o.ex);
            }
            _ => {}
        }
    }

    /// The connection is a WebSocket (or about to be).
    pub fn is_websocket(&self) -> bool {
        matches!(self.read, ReadState::Ws(_) | ReadState::WsOpening(_))
    }

    /// Skip the body of a request already answered (keep-alive), or end the connection.
    fn skip_body(&mut self, head: &Head, close: bool, ctx: &Ctx) {
        if close {
            self.finish();
            return;
        }
        self.read = match head.body {
            Body::None => ReadState::Head,
            Body::Length(n) => ReadState::BodyLength(n),
            Body::Chunked => ReadState::BodyChunked(Box::new(Chunked::new(ctx.max_body))),
        };
    }

    /// Waiting for the client's body (not for the application): the body timeout applies.
    pub fn reading_body(&self) -> bool {
        matches!(&self.read, ReadState::AppStream(st) if st.inbox.has_room())
    }

    /// The connection is closing with an application's response unfinished: count and log it
    /// (with 499, as nginx does, when the client left before any of it was produced).
    pub fn abandon(&mut self, ctx: &mut Ctx) {
        if let Some(w) = self.watch.take() {
            let status = if w.status == 0 { 499 } else { w.status };
            self.record_watch(ctx, w, status);
        }
    }

    /// Count and log the response of a later-answering application.
    fn record_watch(&mut self, ctx: &mut Ctx, w: Box<Watch>, status: u16) {
        let bytes = self.out.position().saturating_sub(w.mark);
        let micros = now_ns().saturating_sub(w.start_ns) / 1000;
        ctx.stats.response(status, bytes, micros);
        if let (Some(log), Some(req)) = (&mut ctx.log, &w.req) {
            log.record(&req.entry(w.client, status, bytes, micros), ctx.clock.sec);
        }
    }

    /// The exchange of a later-answering application, if one is running.
    /// (See `take_app_output` for when it is counted.)
    pub fn exchange(&self) -> Option<&SharedExchange> {
        match &self.read {
            ReadState::Waiting(ex, _) | ReadState::Refused(ex) => Some(ex),
            ReadState::AppStream(st) => Some(&st.ex),
            ReadState::WsOpening(o) => Some(&o.ex),
            ReadState::Ws(s) => Some(&s.ex),
            _ => None,
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::statics::StaticConfig;
    use std::path::PathBuf;

    pub fn docroot() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vw-test-{}-{:?}", std::process::id(), std::thread::current().id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("1b"), b"x").unwrap();
        std::fs::write(dir.join("index.html"), b"<h1>vw</h1>\n").unwrap();
        std::fs::write(dir.join("sub/index.html"), b"sub\n").unwrap();
        std::fs::write(dir.join("big.bin"), vec![7u8; 300_000]).unwrap();
        dir
    }

    pub fn ctx() -> Ctx {
        let mut cfg = StaticConfig::new(docroot());
        cfg.mime.insert("html".into(), "text/html; charset=utf-8".into());
        let mount = Mount { prefix: Vec::new(), files: StaticFiles::open(cfg).unwrap() };
        let mut c = Ctx::new(Clock::fixed(1_795_710_713), vec![mount], None);
        c.max_body = 1 << 20;
        c
    }

    /// Feed `chunks` one after the other, keeping unconsumed bytes as the event loop does.
    pub fn run(ctx: &mut Ctx, chunks: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut p = Proto::default();
        let mut pending: Vec<u8> = Vec::new();
        for c in chunks {
            pending.extend_from_slice(c);
            let n = p.feed(&pending, ctx);
            pending.drain(..n);
        }
        (p.out.to_bytes(), p.close_after_flush)
    }

    fn statuses(out: &[u8]) -> Vec<u16> {
        let s = String::from_utf8_lossy(out);
        s.match_indices("HTTP/1.1 ")
            .filter_map(|(i, _)| s.get(i + 9..i + 12).and_then(|c| c.parse().ok()))
            .collect()
    }

    #[test]
    fn serves_and_keeps_alive() {
        let mut c = ctx();
        let (out, close) = run(&mut c, &[b"GET /1b HTTP/1.1\r\nHost: a\r\n\r\n"]);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\nServer: vw\r\nDate: Thu, 26 Nov 2026 16:31:53 GMT\r\n"), "{s}");
        assert!(s.contains("Content-Length: 1\r\n"));
        assert!(s.contains("ETag: \""));
        assert!(s.contains("Last-Modified: "));
        assert!(s.ends_with("\r\n\r\nx"));
        assert!(!s.contains("Connection:"));
        assert!(!close);
    }

    #[test]
    fn pipelined_requests_answered_in_order() {
        let mut c = ctx();
        let mut req = Vec::new();
        for p in ["/1b", "/nope", "/", "/sub", "/sub/"] {
            req.extend_from_slice(format!("GET {p} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        }
        let (out, close) = run(&mut c, &[&req]);
        assert_eq!(statuses(&out), vec![200, 404, 200, 301, 200]);
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("Location: /sub/\r\n"));
        assert!(s.contains("<h1>vw</h1>"));
        assert!(s.ends_with("sub\n"));
        assert!(!close);
    }

    #[test]
    fn every_split_gives_the_same_output() {
        let stream: &[u8] = b"GET /1b HTTP/1.1\r\nHost: a\r\n\r\n\
POST /1b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\nT: v\r\n\r\n\
HEAD /sub/ HTTP/1.1\r\nHost: a\r\n\r\n\
GET /1b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
GET /1b?q=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n\
GET /1b HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut c = ctx();
        let (whole, close) = run(&mut c, &[stream]);
        assert_eq!(statuses(&whole), vec![200, 405, 405, 200, 200, 200], "the request after close is not answered");
        assert!(close);
        for cut in 0..stream.len() {
            let (out, cl) = run(&mut c, &[&stream[..cut], &stream[cut..]]);
            assert_eq!(out, whole, "split at {cut}");
            assert_eq!(cl, close);
        }
        // And byte by byte.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run(&mut c, &bytes).0, whole);
    }

    #[test]
    fn head_has_no_body_and_same_headers() {
        let mut c = ctx();
        let (get, _) = run(&mut c, &[b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n"]);
        let (head, _) = run(&mut c, &[b"HEAD /index.html HTTP/1.1\r\nHost: a\r\n\r\n"]);
        assert_eq!(&get[..head.len()], &head[..]);
        assert!(head.ends_with(b"\r\n\r\n"));
        assert!(String::from_utf8_lossy(&head).contains("Content-Type: text/html; charset=utf-8\r\n"));
    }

    #[test]
    fn http10_and_close_variants() {
        let mut c = ctx();
        let (out, close) = run(&mut c, &[b"GET /1b HTTP/1.0\r\n\r\n"]);
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("Connection: close\r\n\r\nx"), "{s}");
        assert!(close);
        let (out, close) = run(&mut c, &[b"GET /nope HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"]);
        assert!(String::from_utf8(out).unwrap().contains("Connection: keep-alive\r\n\r\nNot Found"));
        assert!(!close);
    }

    #[test]
    fn method_not_allowed_reads_past_body() {
        let mut c = ctx();
        // The body looks like a request; it must never be parsed as one.
        let smuggled = b"GET /1b HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut req = format!("POST /1b HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n", smuggled.len()).into_bytes();
        req.extend_from_slice(smuggled);
        req.extend_from_slice(b"DELETE / HTTP/1.1\r\nHost: a\r\n\r\n");
        let (out, _) = run(&mut c, &[&req]);
        assert_eq!(statuses(&out), vec![405, 405]);
        assert!(String::from_utf8(out).unwrap().contains("Allow: GET, HEAD\r\n"));
    }

    #[test]
    fn framing_errors_answer_400_and_stop() {
        let mut c = ctx();
        let cases: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /1b HTTP/1.1\r\nHost: a\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxGET /1b HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\nGET /1b HTTP/1.1\r\nHost: a\r\n\r\n",
        ];
        for case in cases {
            let (out, close) = run(&mut c, &[case]);
            assert_eq!(statuses(&out), vec![400], "{}", String::from_utf8_lossy(case));
            assert!(String::from_utf8(out).unwrap().contains("Connection: close\r\n"));
            assert!(close);
        }
        // A bad chunk after a queued response: no further request is parsed.
        let (out, close) = run(
            &mut c,
            &[b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /1b HTTP/1.1\r\nHost: a\r\n\r\n"],
        );
        assert_eq!(statuses(&out), vec![405]);
        assert!(close);
    }

    /// The strictness classes (RFC 9112 §3.2 Host, §2.2 line endings, an absolute-form
    /// authority): each is a 400 with `Connection: close`, and the request after it is not read.
    #[test]
    fn strict_head_rejections_answer_400_and_stop() {
        let mut c = ctx();
        let heads: &[&[u8]] = &[
            b"GET /1b HTTP/1.1\r\nHost: a:80:80\r\n\r\n",
            b"GET /1b HTTP/1.1\r\nHost: [::1\r\n\r\n",
            b"GET /1b HTTP/1.1\r\nHost: ::1\r\n\r\n",
            b"GET /1b HTTP/1.1\r\nHost: a, b\r\n\r\n",
            b"GET /1b HTTP/1.1\r\nHost: a@b\r\n\r\n",
            b"GET /1b HTTP/1.1\r\nHost: a:8x\r\n\r\n",
            b"GET /1b HTTP/1.0\r\nHost: a/b\r\n\r\n",
            b"GET http://u@a/1b HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET http://a:80:80/1b HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\nGET /1b HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /1b HTTP/1.1\nHost: a\n\n",
        ];
        for head in heads {
            let mut stream = head.to_vec();
            stream.extend_from_slice(b"GET /1b HTTP/1.1\r\nHost: a\r\n\r\n");
            let (out, close) = run(&mut c, &[&stream]);
            assert_eq!(statuses(&out), vec![400], "{}", String::from_utf8_lossy(head));
            assert!(String::from_utf8(out).unwrap().contains("Connection: close\r\n"));
            assert!(close);
        }
        // The valid neighbours are served.
        for head in [
            &b"GET /1b HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"[..],
            b"GET /1b HTTP/1.1\r\nHost: example.com:\r\n\r\n",
            b"GET /1b HTTP/1.1\r\nHost:\r\n\r\n",
            b"GET http://[::1]/1b HTTP/1.1\r\nHost: other\r\n\r\n",
        ] {
            let (out, close) = run(&mut c, &[head]);
            assert_eq!(statuses(&out), vec![200], "{}", String::from_utf8_lossy(head));
            assert!(!close);
        }
    }

    /// The phases of a connection as the loop sees them: what it waits for, its deadline, and
    /// what that deadline ends in.
    #[test]
    fn a_connection_s_phases_set_what_it_waits_for_and_its_deadline() {
        let t = Timeouts { header: 10, body: 30, keepalive: 60, write: 20, ws: Keepalive::default() };
        let mut c = Conn::new(Proto::default(), 1000, &t);
        // A new connection waits for its first head, under the header timeout.
        assert_eq!((c.want(), c.deadline, c.expiry()), (Want::Read, 1010, Expiry::Linger));
        // A head begun: its clock runs from its first byte, a request in progress gets 408.
        c.inbuf.extend_from_slice(b"GET / HT");
        c.arm(1005, &t);
        assert_eq!((c.deadline, c.expiry()), (1010, Expiry::TimedOut));
        // Answered once and idle: the keep-alive timeout, from now.
        c.inbuf.clear();
        c.fresh = false;
        c.arm(1007, &t);
        assert_eq!((c.deadline, c.head_started, c.expiry()), (1067, None, Expiry::Linger));
        // The socket is full: the write timeout counts from the last progress.
        c.writing = true;
        c.progress_at = 1003;
        c.arm(1008, &t);
        assert_eq!((c.want(), c.deadline, c.expiry()), (Want::Write, 1023, Expiry::Abort));
        // Lingering: read (and discard) until the peer closes; the deadline stays as set.
        c.writing = false;
        c.lingering = true;
        c.deadline = 1002;
        c.arm(1009, &t);
        assert_eq!((c.want(), c.deadline, c.expiry()), (Want::Read, 1002, Expiry::Close));
        assert!(!c.idle());
    }

    /// An application that answers 200 with the length of the body it was given.
    struct BodyLen;
    impl App for BodyLen {
        fn call(&mut self, _: &AppRequest, body: crate::apps::ReqBody, head_only: bool) -> AppCall {
            let n = match body {
                crate::apps::ReqBody::Empty => 0,
                crate::apps::ReqBody::Mem(v) => v.len() as u64,
                crate::apps::ReqBody::File(_, n) => n,
                crate::apps::ReqBody::Stream(_) => unreachable!("BodyLen reads bodies whole"),
            };
            let mut r = crate::apps::reply::Reply::new(200);
            r.headers.push((std::borrow::Cow::Borrowed(b"X-Body"), std::borrow::Cow::Owned(n.to_string().into_bytes())));
            r.body = b"OK\n".to_vec();
            r.answer(head_only)
        }
    }

    /// Chunked framing errors: for a request the application reads, a 400 with
    /// `Connection: close` instead of its answer; for a static one, whose answer is already
    /// queued, the connection closes after it. Either way nothing after the error is read.
    #[test]
    fn chunked_framing_errors_answer_400_and_stop() {
        let mut c = ctx();
        c.mounts.clear();
        c.app = Some(Box::new(BodyLen));
        let head: &[u8] = b"POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        let bodies: &[&[u8]] = &[
            b"5;a=\"x\r\ny\"\r\nhello\r\n0\r\n\r\n", // CRLF inside a quoted-string
            b"5;a=\"x\nhello\r\n0\r\n\r\n",          // LF inside a quoted-string
            b"5;a=\"x\r\nhello\r\n0\r\n\r\n",        // unterminated
            b"5;a=\"x\\\r\nhello\r\n0\r\n\r\n",      // quoted-pair of CR
            b"5;a=b c\r\nhello\r\n0\r\n\r\n",
            b"5;a \r\nhello\r\n0\r\n\r\n",
            b"5;=b\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\n0\n\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b"5\r\nhello\r\n0\r\nX: a\n\r\n",
            b"5\r\nhello\r\n0\r\nX: a\x00\r\n\r\n",
            b"5\r\nhello\r\n0\r\nX: a\r\n b\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
        ];
        for body in bodies {
            let mut stream = head.to_vec();
            stream.extend_from_slice(body);
            stream.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
            let (out, close) = run(&mut c, &[&stream]);
            assert_eq!(statuses(&out), vec![400], "{}", String::from_utf8_lossy(body));
            assert!(String::from_utf8(out).unwrap().contains("Connection: close\r\n"));
            assert!(close);
        }
        // Leading zeros at any length, and extensions by the grammar, are read.
        let good: &[&[u8]] = &[
            b"000000000000000000000005\r\nhello\r\n0000000000000000000\r\n\r\n",
            b"5 ; a = \"x;\\\"y\" ; b=c\r\nhello\r\n0;z\r\n\r\n",
        ];
        for body in good {
            let mut stream = head.to_vec();
            stream.extend_from_slice(body);
            stream.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
            let (out, close) = run(&mut c, &[&stream]);
            assert_eq!(statuses(&out), vec![200, 200], "{}", String::from_utf8_lossy(body));
            assert!(String::from_utf8(out).unwrap().contains("X-Body: 5\r\n"));
            assert!(!close);
        }
        // Static: the 405 is queued before the body is read; the bad chunk then ends it.
        let mut c = ctx();
        let (out, close) = run(&mut c, &[b"POST /1b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"\r\n\"\r\nhello\r\n0\r\n\r\nGET /1b HTTP/1.1\r\nHost: a\r\n\r\n"]);
        assert_eq!(statuses(&out), vec![405]);
        assert!(close);
    }

    #[test]
    fn body_over_the_limit_is_413_and_close() {
        let mut c = ctx();
        let (out, close) = run(&mut c, &[b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9999999999999999999\r\n\r\nGET /1b HTTP/1.1\r\nHost: a\r\n\r\n"]);
        assert_eq!(statuses(&out), vec![413]);
        assert!(close);
        let (out, close) = run(&mut c, &[b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n200000\r\n"]);
        assert_eq!(statuses(&out), vec![405]);
        assert!(close, "a chunked body over the limit ends the connection");
    }

    #[test]
    fn aliases_are_served_but_not_cached_and_redirects_stay_local() {
        let mut c = ctx();
        for alias in ["//1b", "/./1b", "/%31b", "/sub/../1b"] {
            let (out, _) = run(&mut c, &[format!("GET {alias} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes()]);
            assert!(out.ends_with(b"\r\n\r\nx"), "{alias}");
        }
        assert_eq!(c.mounts[0].files.cached_entries(), 0, "aliases are not cached");
        run(&mut c, &[b"GET /1b HTTP/1.1\r\nHost: a\r\n\r\n"]);
        assert_eq!(c.mounts[0].files.cached_entries(), 1, "the canonical path is");
        let (out, _) = run(&mut c, &[b"GET //evil.example/..%2fsub HTTP/1.1\r\nHost: a\r\n\r\n"]);
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("Location: /sub/\r\n"), "{s}");
        let (out, _) = run(&mut c, &[b"GET /1b/ HTTP/1.1\r\nHost: a\r\n\r\nGET /index.html/ HTTP/1.1\r\nHost: a\r\n\r\n"]);
        assert_eq!(statuses(&out), vec![404, 404]);
    }

    #[test]
    fn traversal_never_leaves_root() {
        let mut c = ctx();
        for t in ["/../etc/passwd", "/%2e%2e/etc/passwd", "/sub/../../etc/passwd", "/%2e%2e%2fetc%2fpasswd", "/.hidden", "/1b%00"] {
            let (out, _) = run(&mut c, &[format!("GET {t} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes()]);
            let st = statuses(&out)[0];
            assert!(st == 400 || st == 404, "{t} -> {st}");
        }
        // A symlink that points out of the root is not followed; one inside it is.
        let root = docroot();
        let mut c = ctx();
        std::os::unix::fs::symlink("/etc/passwd", root.join("out")).unwrap();
        std::os::unix::fs::symlink("1b", root.join("in")).unwrap();
        let (out, _) = run(&mut c, &[b"GET /out HTTP/1.1\r\nHost: a\r\n\r\nGET /in HTTP/1.1\r\nHost: a\r\n\r\n"]);
        assert_eq!(statuses(&out), vec![404, 200]);
    }

    #[test]
    fn large_files_go_out_as_file_segments() {
        let mut c = ctx();
        let (out, _) = run(&mut c, &[b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n"]);
        assert!(String::from_utf8_lossy(&out).contains("Content-Length: 300000\r\n"));
        assert!(out.ends_with(&[7u8; 1000]));
        let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(out.len() - head_end, 300_000);
    }

    /// A small deterministic generator (xorshift), so these property tests need no crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn random_request(r: &mut Rng) -> Vec<u8> {
        let paths = ["/1b", "/", "/sub/", "/nope", "/index.html?x=1", "/big.bin", "/%31b"];
        let method = ["GET", "HEAD", "POST", "DELETE"][r.below(4)];
        let mut req = format!("{method} {} HTTP/1.{}\r\n", paths[r.below(paths.len())], r.below(2)).into_bytes();
        if r.below(4) > 0 || req.ends_with(b"1\r\n") {
            req.extend_from_slice(b"Host: example\r\n");
        }
        for i in 0..r.below(4) {
            req.extend_from_slice(format!("X-Field-{i}: value {}\r\n", r.next() % 1000).as_bytes());
        }
        if r.below(3) == 0 {
            req.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        match (method, r.below(3)) {
            ("POST", 0) => {
                let body: Vec<u8> = (0..r.below(40)).map(|_| b'a' + r.below(26) as u8).collect();
                req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                req.extend_from_slice(&body);
            }
            ("POST", 1) if req.starts_with(b"POST /") && !req.windows(8).any(|w| w == b"HTTP/1.0") => {
                req.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for _ in 0..r.below(3) {
                    let n = 1 + r.below(20);
                    req.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                    req.extend(std::iter::repeat(b'z').take(n));
                    req.extend_from_slice(b"\r\n");
                }
                req.extend_from_slice(b"0\r\n\r\n");
            }
            _ => req.extend_from_slice(b"\r\n"),
        }
        req
    }

    #[test]
    fn property_random_pipelines_split_anywhere_answer_the_same() {
        let mut r = Rng(0x9e3779b97f4a7c15);
        let mut c = ctx();
        for _ in 0..300 {
            let mut stream = Vec::new();
            for _ in 0..1 + r.below(6) {
                stream.extend_from_slice(&random_request(&mut r));
            }
            let (whole, close) = run(&mut c, &[&stream]);
            assert!(!whole.is_empty());
            for _ in 0..5 {
                let mut cuts: Vec<usize> = (0..r.below(4)).map(|_| r.below(stream.len() + 1)).collect();
                cuts.sort();
                let mut parts: Vec<&[u8]> = Vec::new();
                let mut last = 0;
                for cut in cuts {
                    parts.push(&stream[last..cut]);
                    last = cut;
                }
                parts.push(&stream[last..]);
                let (out, cl) = run(&mut c, &parts);
                assert_eq!(out, whole, "stream {:?}", String::from_utf8_lossy(&stream));
                assert_eq!(cl, close);
            }
        }
    }

    #[test]
    fn property_garbage_never_panics_and_never_answers_from_body_bytes() {
        let mut r = Rng(12345);
        let mut c = ctx();
        let alphabet: &[u8] = b"GET /1b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n0\x00\x7f :;\t";
        for _ in 0..3000 {
            let n = r.below(200);
            let bytes: Vec<u8> = (0..n).map(|_| if r.below(10) == 0 { r.next() as u8 } else { alphabet[r.below(alphabet.len())] }).collect();
            let chunks: Vec<&[u8]> = bytes.chunks(1 + r.below(16)).collect();
            let (out, _) = run(&mut c, &chunks);
            // Whatever was sent, the output is a sequence of well-formed responses.
            let mut rest = &out[..];
            while !rest.is_empty() {
                assert!(rest.starts_with(b"HTTP/1.1 "), "{:?}", String::from_utf8_lossy(&out));
                let end = rest.windows(4).position(|w| w == b"\r\n\r\n").expect("head end") + 4;
                let head = String::from_utf8_lossy(&rest[..end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap_or(0);
                let body = if head.starts_with("HTTP/1.1 100") { 0 } else { len };
                rest = &rest[(end + body).min(rest.len())..];
            }
        }
    }

    /// Found by the `conn` fuzzer: the status for an unsupported version depended on where the
    /// stream was cut (505 whole, 400 cut inside the version).
    #[test]
    fn fuzz_regression_version_status_does_not_depend_on_the_cut() {
        let mut c = ctx();
        let stream: &[u8] = b"~ A##.#.## HTTP/0.2";
        let whole = run(&mut c, &[stream]);
        for cut in 0..=stream.len() {
            assert_eq!(run(&mut c, &[&stream[..cut], &stream[cut..]]), whole, "cut at {cut}");
        }
        assert_eq!(statuses(&whole.0), vec![505]);
    }

    /// Trailer fields are checked for syntax and then dropped: one that would frame a message
    /// (Content-Length, Transfer-Encoding) changes nothing for what follows.
    #[test]
    fn framing_fields_in_trailers_are_inert() {
        let mut c = ctx();
        let stream: &[u8] = b"POST /1b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
3\r\nabc\r\n0\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\nHost: evil\r\n\r\n\
GET /1b HTTP/1.1\r\nHost: a\r\n\r\n";
        let (out, close) = run(&mut c, &[stream]);
        assert_eq!(statuses(&out), vec![405, 200]);
        assert!(out.ends_with(b"\r\n\r\nx"));
        assert!(!close);
    }

    /// An application that takes its body as it arrives: the test drives each exchange.
    type Calls = std::rc::Rc<std::cell::RefCell<Vec<(SharedExchange, Option<std::sync::Arc<Inbox>>, Vec<u8>)>>>;
    struct Streamer(Calls);
    impl App for Streamer {
        fn streams_body(&self) -> bool {
            true
        }
        fn call(&mut self, req: &AppRequest, body: ReqBody, _: bool) -> AppCall {
            let ex: SharedExchange = Default::default();
            let inbox = match body {
                ReqBody::Stream(i) => Some(i),
                _ => None,
            };
            self.0.borrow_mut().push((ex.clone(), inbox, req.target.to_vec()));
            AppCall::Pending(ex)
        }
    }

    fn streaming_ctx() -> (Ctx, Calls) {
        let mut c = ctx();
        c.mounts.clear();
        let calls: Calls = Default::default();
        c.app = Some(Box::new(Streamer(calls.clone())));
        (c, calls)
    }

    fn answer(p: &mut Proto, c: &mut Ctx, ex: &SharedExchange, body: &str) {
        {
            let mut e = ex.borrow_mut();
            let mut r = crate::apps::reply::Reply::new(200);
            r.body = body.as_bytes().to_vec();
            r.into_exchange(false, &mut e);
            e.finished = true;
        }
        p.take_app_output(c);
    }

    fn take_all(inbox: &Inbox) -> Vec<u8> {
        let mut got = Vec::new();
        while let crate::apps::Taken::Data(d) = inbox.take(usize::MAX) {
            got.extend_from_slice(&d);
        }
        got
    }

    #[test]
    fn a_streamed_body_reaches_the_application_as_it_arrives() {
        for chunked in [false, true] {
            let (mut c, calls) = streaming_ctx();
            let mut p = Proto::default();
            let head = if chunked { "POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" } else { "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n" };
            let (first, second): (&[u8], &[u8]) = if chunked { (b"5\r\nhello", b"\r\n5\r\nworld\r\n0\r\n\r\n") } else { (b"hello", b"world") };
            let mut input = head.as_bytes().to_vec();
            input.extend_from_slice(first);
            assert_eq!(p.feed(&input, &mut c), input.len());
            let (ex, inbox, _) = calls.borrow()[0].clone();
            let inbox = inbox.expect("a streamed body");
            assert_eq!(take_all(&inbox), b"hello", "the first piece, before the rest is sent");
            assert!(!inbox.at_end());
            let mut rest = second.to_vec();
            rest.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
            let used = p.feed(&rest, &mut c);
            assert_eq!(used, second.len(), "the next request waits for this response");
            assert_eq!(take_all(&inbox), b"world");
            assert!(inbox.at_end());
            answer(&mut p, &mut c, &ex, "ok");
            assert_eq!(p.feed(&rest[used..], &mut c), rest.len() - used);
            assert_eq!(calls.borrow().len(), 2, "the pipelined request reached the application");
        }
    }

    #[test]
    fn an_early_answer_drains_a_short_rest_and_closes_on_a_long_one() {
        // A short rest is read and dropped: the request after it is parsed, never the body.
        let (mut c, calls) = streaming_ctx();
        let mut p = Proto::default();
        let smuggled = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
        let head = format!("POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n", smuggled.len() + 4);
        assert_eq!(p.feed(head.as_bytes(), &mut c), head.len());
        let (ex, inbox, _) = calls.borrow()[0].clone();
        answer(&mut p, &mut c, &ex, "denied");
        assert_eq!(inbox.unwrap().take(10), crate::apps::Taken::Broken, "nobody reads the rest");
        let mut rest = b"abcd".to_vec();
        rest.extend_from_slice(smuggled);
        rest.extend_from_slice(b"GET /real HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(p.feed(&rest, &mut c), rest.len());
        let targets: Vec<Vec<u8>> = calls.borrow().iter().map(|c| c.2.clone()).collect();
        assert_eq!(targets, vec![b"/u".to_vec(), b"/real".to_vec()], "the body is skipped, never parsed");
        assert!(!p.close_after_flush);
        // A long one ends the connection after the answer.
        let (mut c, calls) = streaming_ctx();
        let mut p = Proto::default();
        let head = b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 500000\r\n\r\n";
        p.feed(head, &mut c);
        let ex = calls.borrow()[0].0.clone();
        answer(&mut p, &mut c, &ex, "too big");
        assert!(p.close_after_flush);
        let after = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(p.feed(after, &mut c), after.len(), "input after it is dropped");
        assert_eq!(calls.borrow().len(), 1);
        assert!(String::from_utf8_lossy(&p.out.to_bytes()).ends_with("too big"));
    }

    #[test]
    fn continue_is_sent_when_the_application_first_asks() {
        let (mut c, calls) = streaming_ctx();
        let mut p = Proto::default();
        let head = b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
        p.feed(head, &mut c);
        assert!(p.resume_body());
        assert!(p.out.is_empty(), "no 100 Continue before the application reads");
        let inbox = calls.borrow()[0].1.clone().unwrap();
        assert_eq!(inbox.take(10), crate::apps::Taken::Empty);
        p.resume_body();
        assert_eq!(p.out.to_bytes(), b"HTTP/1.1 100 Continue\r\n\r\n");
        p.resume_body();
        assert_eq!(p.out.to_bytes(), b"HTTP/1.1 100 Continue\r\n\r\n", "once");
        // Answered without reading: no 100, and the connection closes (the client may never send).
        let (mut c, calls) = streaming_ctx();
        let mut p = Proto::default();
        p.feed(head, &mut c);
        let ex = calls.borrow()[0].0.clone();
        answer(&mut p, &mut c, &ex, "no");
        assert!(!String::from_utf8_lossy(&p.out.to_bytes()).contains("100 Continue"));
        assert!(p.close_after_flush);
    }

    #[test]
    fn a_full_inbox_stops_the_decoding_and_a_bad_chunk_cuts_the_body() {
        let (mut c, calls) = streaming_ctx();
        let mut p = Proto::default();
        let head = b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 900000\r\n\r\n";
        p.feed(head, &mut c);
        let inbox = calls.borrow()[0].1.clone().unwrap();
        let block = vec![b'x'; 64 * 1024];
        let mut fed = 0;
        for _ in 0..8 {
            fed += p.feed(&block, &mut c);
        }
        assert_eq!(fed, crate::apps::INBOX_HIGH, "decoding stops at the inbox's bound");
        assert!(!p.reading_body(), "not waiting for the client while the application is behind");
        assert_eq!(take_all(&inbox).len(), crate::apps::INBOX_HIGH);
        assert!(p.reading_body());
        // Chunked framing broken mid-body: the application sees a cut body; nothing more is read.
        let (mut c, calls) = streaming_ctx();
        let mut p = Proto::default();
        let bad = b"POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(p.feed(bad, &mut c), bad.len());
        let (ex, inbox, _) = calls.borrow()[0].clone();
        let inbox = inbox.unwrap();
        assert_eq!(take_all(&inbox), b"abc");
        assert_eq!(inbox.take(10), crate::apps::Taken::Broken);
        assert_eq!(statuses(&p.out.to_bytes()), vec![400], "the client's error, answered at once");
        assert!(p.close_after_flush);
        // What the application makes of its cut body (a 500, here) is dropped.
        fail(&mut p, &mut c, &ex);
        assert_eq!(statuses(&p.out.to_bytes()), vec![400]);
        let class = |k: usize| c.stats.get(crate::service::observe::slot::CLASSES + k - 1);
        assert_eq!((class(4), class(5)), (1, 0), "counted once, as a 4xx");
        assert_eq!(calls.borrow().len(), 1);
    }

    /// The application raises on its cut body: the 500 a handler's exception gives.
    fn fail(p: &mut Proto, c: &mut Ctx, ex: &SharedExchange) {
        {
            let mut e = ex.borrow_mut();
            crate::apps::reply::Reply::new(500).into_exchange(false, &mut e);
            e.finished = true;
        }
        p.take_app_output(c);
    }

    #[test]
    fn every_broken_streamed_body_is_the_client_s_4xx_unless_the_response_began() {
        let chunked = b"POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        // Each malformed form of a chunked body, after some good body the application read.
        let forms: [&[u8]; 9] = [b"zz\r\n", b"3;a=\"x\r\nabc\r\n", b"3\r\nabcX\r\n", b"3\rabc\r\n", b"3\nabc\r\n",
            b" 3\r\nabc\r\n", b"3\r\nabc\r\n0\r\nbad trailer\r\n\r\n", b"3\r\nabc\n", b"fffffffffffffffff\r\n"];
        for form in forms {
            let (mut c, calls) = streaming_ctx();
            let mut p = Proto::default();
            let mut req = chunked.to_vec();
            req.extend_from_slice(b"2\r\nok\r\n");
            req.extend_from_slice(form);
            p.feed(&req, &mut c);
            let (ex, inbox, _) = calls.borrow()[0].clone();
            assert!(take_all(&inbox.clone().unwrap()).starts_with(b"ok"), "{}", String::from_utf8_lossy(form));
            assert_eq!(inbox.unwrap().take(10), crate::apps::Taken::Broken);
            fail(&mut p, &mut c, &ex);
            assert_eq!(statuses(&p.out.to_bytes()), vec![400], "{}", String::from_utf8_lossy(form));
            assert!(p.close_after_flush);
        }
        // Past --max-body: 413.
        let (mut c, calls) = streaming_ctx();
        c.max_body = 4;
        let mut p = Proto::default();
        p.feed(&[&chunked[..], b"3\r\nabc\r\n3\r\ndef\r\n"].concat(), &mut c);
        let ex = calls.borrow()[0].0.clone();
        fail(&mut p, &mut c, &ex);
        assert_eq!(statuses(&p.out.to_bytes()), vec![413]);
        // --body-timeout: 408, and the connection closes once it is written.
        let (mut c, calls) = streaming_ctx();
        let mut p = Proto::default();
        p.feed(&[&chunked[..], b"3\r\nabc\r\n"].concat(), &mut c);
        assert!(p.body_timed_out(&mut c));
        let ex = calls.borrow()[0].0.clone();
        fail(&mut p, &mut c, &ex);
        assert_eq!(statuses(&p.out.to_bytes()), vec![408]);
        assert!(p.close_after_flush && p.exchange().is_some(), "the application is still told when the client goes");
        // A response begun is cut instead: nothing is added to it, and the connection closes
        // when the application ends it.
        let (mut c, calls) = streaming_ctx();
        let mut p = Proto::default();
        p.feed(&[&chunked[..], b"3\r\nabc\r\n"].concat(), &mut c);
        let ex = calls.borrow()[0].0.clone();
        {
            let mut e = ex.borrow_mut();
            e.push(Part::Head(crate::apps::exchange::ResponseHead { status: 200, status_line: std::borrow::Cow::Borrowed(b"200 OK"), fields: vec![], length: None }));
        }
        p.take_app_output(&mut c);
        assert_eq!(p.feed(b"zz\r\n", &mut c), 4);
        assert!(matches!(p.read, ReadState::Waiting(_, true)), "cut: it closes when it ends");
        assert!(!p.body_timed_out(&mut c));
        ex.borrow_mut().push(Part::End { trailers: vec![] });
        ex.borrow_mut().finished = true;
        assert!(p.take_app_output(&mut c));
        assert_eq!(statuses(&p.out.to_bytes()), vec![200]);
        assert!(p.close_after_flush);
    }

    /// A streaming application that records the bodies it is given whole.
    struct Whole(std::rc::Rc<std::cell::RefCell<Vec<Vec<u8>>>>);
    impl App for Whole {
        fn streams_body(&self) -> bool {
            true
        }
        fn call(&mut self, _: &AppRequest, body: ReqBody, _: bool) -> AppCall {
            self.0.borrow_mut().push(match body {
                ReqBody::Mem(v) => v,
                _ => b"not whole".to_vec(),
            });
            AppCall::Pending(Default::default())
        }
    }

    #[test]
    fn a_streaming_application_gets_its_body_whole_when_bodies_are_spooled() {
        for chunked in [false, true] {
            let mut c = ctx();
            c.mounts.clear();
            c.stream_bodies = false; // --request-body spool
            let bodies: std::rc::Rc<std::cell::RefCell<Vec<Vec<u8>>>> = Default::default();
            c.app = Some(Box::new(Whole(bodies.clone())));
            let mut p = Proto::default();
            let head = if chunked { "POST /u HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello" } else { "POST /u HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\nhello" };
            let rest: &[u8] = if chunked { b"\r\n5\r\nworld\r\n0\r\n\r\n" } else { b"world" };
            p.feed(head.as_bytes(), &mut c);
            assert_eq!(p.out.to_bytes(), b"HTTP/1.1 100 Continue\r\n\r\n", "asked for at once");
            assert!(bodies.borrow().is_empty(), "not called before the body is complete");
            p.feed(rest, &mut c);
            assert_eq!(*bodies.borrow(), vec![b"helloworld".to_vec()]);
        }
    }
}
