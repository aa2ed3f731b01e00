//! An HTTP/2 stream whose request goes to the application: the request handed over as an
//! HTTP/1.1-form head (so every interface reads it as it reads any other), its body moved from
//! DATA frames into the application's [`Inbox`] as the application takes it (the stream's
//! window is released only then: the client's flow control is the backpressure), and the
//! response's parts mapped to frames: `Head` to HEADERS, `Body` and `File` to DATA within the
//! windows, `End` to END_STREAM or trailing HEADERS. The stream is named to the application by
//! its own generation (`(descriptor, generation)`, as a connection is), so answers from other
//! threads and wake-ups reach it.

use super::stream::{h1_head, hop_by_hop, Outgoing};
use crate::apps::exchange::Part;
use crate::apps::{notify, AppCall, AppRequest, BodySink, Inbox, ReqBody, SharedExchange};
use crate::h1::conn::Ctx;
use crate::h1::encode;
use crate::h1::parse::{parse_head, Body, Field, FieldIndex, Head};
use crate::io::out::Seg;
use crate::service::observe::{now_ns, OwnedRequest};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

/// What every stream of a connection shares: where it comes from.
pub struct Origin {
    pub fd: i32,
    pub peer: Option<SocketAddr>,
    pub tls: Option<Arc<crate::tls::TlsInfo>>,
}

/// The request as the application gets it: an HTTP/1.1 head made of the HTTP/2 fields.
struct Request {
    head: Vec<u8>,
    fields: Vec<Field>,
    parsed: Head,
}

/// The request body, as it comes.
enum Incoming {
    /// None comes, or no more is wanted.
    Done,
    /// The application reads it as it comes. `held`: bytes received and not yet released to
    /// the client's window.
    Streamed { recv: h2::RecvStream, inbox: Arc<Inbox>, held: usize },
    /// Read whole first (spooled to a file past 1 MiB), then the application is called.
    Spooled { recv: h2::RecvStream, sink: BodySink, req: Box<Request> },
}

pub struct AppStream {
    /// How the application names this stream (with the connection's descriptor).
    pub gen: u64,
    /// The application's answer, when it comes later: kept until the application has finished
    /// (even once the client is gone), so that streams whose application still runs are counted
    /// against the connection's limit (a client resetting streams cannot pile up work).
    ex: Option<SharedExchange>,
    /// The client reset the stream (or the connection went): parts are dropped as they come.
    gone: bool,
    /// h2 refused the response's head: the stream is reset and the application told.
    refused_head: bool,
    /// The client broke its streamed body before the response began: it has its 413, or the
    /// stream is reset with PROTOCOL_ERROR (h2 found its framing wrong); counted as that 4xx,
    /// and what the application still produces is dropped.
    body_refused: bool,
    /// Until the head is sent.
    respond: Option<h2::server::SendResponse<Bytes>>,
    /// The body on its way, once the head is sent (None after a bodiless head too).
    pub out: Option<Outgoing>,
    incoming: Incoming,
    /// Body received so far (for `--max-body`).
    received: u64,
    head_only: bool,
    /// The body's length as the head said it.
    length: Option<u64>,
    /// Body queued so far.
    sent: u64,
    status: u16,
    start_ns: u64,
    log: Option<Box<OwnedRequest>>,
    /// The client (behind a trusted proxy, the one it named) and the scheme the proxy said it
    /// used: read once from the head, for the application and the access log.
    client: Option<std::net::SocketAddr>,
    https: Option<bool>,
    /// The application is finished with it (counted and logged).
    pub done: bool,
    /// Memory body queued when last told to the application (for its backpressure).
    told: usize,
}

impl AppStream {
    /// Take a request: call the application now (its body, if any, to follow as it arrives),
    /// or once its body is in (`--request-body spool`, or an application that takes it whole).
    pub fn start(req: http::Request<h2::RecvStream>, respond: h2::server::SendResponse<Bytes>, ctx: &mut Ctx, origin: &Origin) -> Box<AppStream> {
        let (parts, recv) = req.into_parts();
        let mut s = Box::new(AppStream {
            gen: ctx.next_generation(),
            ex: None,
            gone: false,
            refused_head: false,
            body_refused: false,
            respond: Some(respond),
            out: None,
            incoming: Incoming::Done,
            received: 0,
            head_only: parts.method == http::Method::HEAD,
            length: None,
            sent: 0,
            status: 0,
            start_ns: now_ns(),
            log: None,
            client: origin.peer,
            https: None,
            done: false,
            told: 0,
        });
        let head = h1_head(&parts, true);
        let mut fields = Vec::new();
        let parsed = match parse_head(&head, &ctx.limits, &mut fields) {
            Ok(Some(h)) => h,
            Ok(None) => return s.refused(400, ctx),
            Err(reject) => return s.refused(reject.status(), ctx),
        };
        let index = FieldIndex { head: &head, fields: &fields };
        let fwd = crate::h1::conn::forwarded(ctx, origin.peer, index);
        (s.client, s.https) = (fwd.client.or(origin.peer), fwd.https);
        if ctx.log.is_some() {
            s.log = Some(Box::new(OwnedRequest::from_head(index, &head[parsed.method_range.clone()], &head[parsed.target.clone()], 2)));
        }
        if matches!(parsed.body, Body::Length(n) if n > ctx.max_body) {
            return s.refused(413, ctx);
        }
        let req = Request { head, fields, parsed };
        if recv.is_end_stream() {
            s.call(&req, ReqBody::Empty, ctx, origin);
        } else if ctx.stream_bodies && ctx.app.as_ref().is_some_and(|a| a.streams_body()) {
            // (answered at once, the body is not wanted: `finish` drops it)
            let inbox = Arc::new(Inbox::default());
            s.incoming = Incoming::Streamed { recv, inbox: inbox.clone(), held: 0 };
            s.call(&req, ReqBody::Stream(inbox), ctx, origin);
        } else {
            s.incoming = Incoming::Spooled { recv, sink: BodySink::new(ctx.spool_over), req: Box::new(req) };
        }
        s
    }

    /// The exchange, while the application runs (told `gone` once the client is).
    pub fn exchange(&self) -> Option<&SharedExchange> {
        self.ex.as_ref()
    }

    /// The application has the request and does not wait for the client's body.
    pub fn waits_for_app(&self) -> bool {
        !self.done
            && match &self.incoming {
                Incoming::Done => true,
                Incoming::Streamed { inbox, .. } => !inbox.has_room(),
                Incoming::Spooled { .. } => false,
            }
    }

    /// The client broke the body the application reads (`status` 413: past `--max-body`; 400:
    /// its framing, for which h2 has reset the stream with PROTOCOL_ERROR). Before the response
    /// began, the client gets the 413 (or has the reset), it is counted as that status whatever
    /// the application answers, and the application's output is dropped (it is told the client
    /// is gone, so a producer stops). A response already begun goes on to be cut or ended by the
    /// application, as any other.
    fn body_failed(&mut self, status: u16, ctx: &mut Ctx) {
        if self.respond.is_none() {
            return;
        }
        if status == 413 {
            self.apply(crate::apps::reply::Reply::new(413).parts(), &ctx.clock.date);
        } else {
            self.respond = None; // h2 has sent the RST_STREAM
            self.status = status;
        }
        self.body_refused = true;
        if let Some(ex) = &self.ex {
            ex.borrow_mut().gone = true;
            notify(ex);
        }
    }

    /// Answer with a bare status (the request was refused before the application saw it).
    fn refused(mut self: Box<Self>, status: u16, ctx: &mut Ctx) -> Box<AppStream> {
        let reply = crate::apps::reply::Reply::new(status);
        self.apply(reply.parts(), &ctx.clock.date);
        self.finish(false, ctx);
        self
    }

    fn call(&mut self, req: &Request, body: ReqBody, ctx: &mut Ctx, origin: &Origin) {
        let areq = AppRequest {
            head: &req.head,
            fields: &req.fields,
            method: &req.head[req.parsed.method_range.clone()],
            target: &req.head[req.parsed.target.clone()],
            minor: 1,
            peer: self.client,
            https: self.https,
            local_port: ctx.local_port,
            tls: origin.tls.clone(),
            http2: true,
            conn_id: (origin.fd, self.gen),
        };
        let app = ctx.app.as_mut().expect("routed to the application");
        match app.call(&areq, body, self.head_only) {
            AppCall::Answer(parts) => {
                self.apply(parts, &ctx.clock.date);
                self.finish(false, ctx);
            }
            AppCall::Pending(ex) => {
                self.ex = Some(ex);
                self.take(ctx);
            }
        }
    }

    /// Move what the application produced to the stream (or drop it, when the client is gone);
    /// true if there was any.
    fn take(&mut self, ctx: &mut Ctx) -> bool {
        let Some(ex) = self.ex.as_ref() else { return false };
        let (parts, finished, close) = {
            let mut e = ex.borrow_mut();
            (e.take(), e.finished, e.close)
        };
        let any = !parts.is_empty() || finished;
        if !parts.is_empty() && !self.gone && !self.body_refused {
            self.apply(parts, &ctx.clock.date);
            self.told = usize::MAX; // its backpressure learns what moved (see `tell_backlog`)
        }
        if finished {
            self.finish(close, ctx);
            self.ex = None;
        }
        any
    }

    /// Frame an application's parts: every field of the head passes `encode::app_fields`.
    fn apply(&mut self, parts: Vec<Part>, date: &[u8]) {
        for part in parts {
            match part {
                Part::Head(h) => {
                    if h.status < 200 {
                        continue; // interim responses are not sent over HTTP/2 (nor is a 101)
                    }
                    let Some(mut respond) = self.respond.take() else { continue };
                    let bodiless = self.head_only || encode::bodiless(h.status);
                    let mut resp = http::Response::new(());
                    *resp.status_mut() = http::StatusCode::from_u16(h.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
                    let headers = resp.headers_mut();
                    encode::app_fields(&h.fields, date, |name, value| {
                        if hop_by_hop(name) || name.eq_ignore_ascii_case(b"te") {
                            return; // (TE is a request's field; h2 refuses it in a response)
                        }
                        if let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(name), http::HeaderValue::from_bytes(value)) {
                            headers.append(n, v);
                        }
                    });
                    if !encode::bodiless(h.status) {
                        if let Some(n) = h.length {
                            headers.insert(http::header::CONTENT_LENGTH, n.into());
                        }
                    }
                    self.status = h.status;
                    self.length = h.length;
                    match respond.send_response(resp, bodiless) {
                        Ok(stream) if !bodiless => self.out = Some(Outgoing::new(stream, false)),
                        Ok(_) => {}
                        Err(_) => {
                            // a field h2 will not send: the stream is reset, the application told
                            respond.send_reset(h2::Reason::INTERNAL_ERROR);
                            self.refused_head = true;
                        }
                    }
                }
                Part::Body(mut v) => {
                    let n = self.room(v.len() as u64) as usize;
                    let Some(o) = self.out.as_mut().filter(|_| n > 0) else { continue };
                    v.truncate(n);
                    self.sent += n as u64;
                    o.body.push_back(Seg::Owned { buf: v, start: 0 });
                }
                Part::File { fd, off, len } => {
                    let n = self.room(len);
                    let Some(o) = self.out.as_mut().filter(|_| n > 0) else { continue };
                    self.sent += n;
                    o.body.push_back(Seg::File { fd: std::rc::Rc::new(fd), off, len: n });
                }
                Part::End { trailers } => {
                    let short = self.length.is_some_and(|n| self.sent < n);
                    if let Some(o) = self.out.as_mut() {
                        o.complete = true;
                        o.short |= short; // a body that fell short of its length is reset
                        if !trailers.is_empty() {
                            o.trailers = Some(trailer_map(&trailers));
                        }
                    }
                }
                Part::Message(_) | Part::Close(..) => {} // WebSocket parts: not over HTTP/2
            }
        }
    }

    /// How much of `len` more bytes of body the head's length leaves room for.
    fn room(&self, len: u64) -> u64 {
        match self.length {
            Some(n) => len.min(n.saturating_sub(self.sent)),
            None => len,
        }
    }

    /// The application is finished: complete what it left open, count and log the response.
    /// `cut`: it could not complete its response (the stream is reset after what went out).
    fn finish(&mut self, cut: bool, ctx: &mut Ctx) {
        if self.done {
            return;
        }
        if self.respond.is_some() {
            // It finished without a head: 500.
            self.apply(crate::apps::reply::Reply::new(500).parts(), &ctx.clock.date);
        }
        if let Some(o) = self.out.as_mut() {
            o.short |= cut || (!o.complete && self.length.is_some_and(|n| self.sent < n));
            o.complete = true;
        }
        self.done = true;
        self.drop_body(); // answered before the whole body came: nobody reads the rest
        self.count(self.status, ctx);
    }

    fn count(&mut self, status: u16, ctx: &mut Ctx) {
        let micros = now_ns().saturating_sub(self.start_ns) / 1000;
        ctx.stats.response(status, self.sent, micros);
        ctx.stats.h2_response();
        if let (Some(log), Some(req)) = (&mut ctx.log, &self.log) {
            log.record(&req.entry(self.client, status, self.sent, micros), ctx.clock.sec);
        }
    }

    /// No more request body is wanted: the application's inbox ends (cut, unless it was
    /// complete), and what was received but not yet given back to the client's window is given
    /// back (h2 would keep it from the connection's window until the stream is gone).
    fn drop_body(&mut self) {
        if let Incoming::Streamed { recv, inbox, held } = &mut self.incoming {
            inbox.end(true);
            let _ = recv.flow_control().release_capacity(*held);
        }
        self.incoming = Incoming::Done; // h2 resets the rest with NO_ERROR once the answer is out
    }

    /// The client reset the stream or the connection went: the application is told, and the
    /// response counted as far as it got (499 when nothing was answered yet, as nginx does).
    /// The stream stays (its parts dropped) until the application has finished.
    pub fn gone(&mut self, ctx: &mut Ctx) {
        if self.gone {
            return;
        }
        self.gone = true;
        self.drop_body();
        if let Some(o) = self.out.as_mut() {
            o.ended = true;
        }
        self.respond = None;
        if !self.done {
            self.done = true;
            let status = if self.status == 0 { 499 } else { self.status };
            self.count(status, ctx);
        }
        if let Some(ex) = &self.ex {
            ex.borrow_mut().gone = true;
            notify(ex);
        }
    }

    /// One look at the stream: was it reset, did body come, did the application answer.
    /// True if anything moved.
    pub fn poll(&mut self, cx: &mut Context<'_>, ctx: &mut Ctx, origin: &Origin) -> bool {
        let reset = match (&mut self.respond, &mut self.out) {
            _ if self.gone => false,
            _ if self.refused_head => true,
            _ if self.done => false,
            (Some(r), _) => r.poll_reset(cx).is_ready(),
            (None, Some(o)) => o.gone || (!o.ended && o.stream.poll_reset(cx).is_ready()),
            (None, None) => false,
        };
        if reset {
            if !matches!(self.incoming, Incoming::Done) {
                // Was it h2's own, for the body's framing? Then the body says so (a 400).
                self.poll_body(cx, ctx, origin);
            }
            self.gone(ctx);
            return true;
        }
        let moved = self.poll_body(cx, ctx, origin);
        self.take(ctx) || moved
    }

    /// Move request body that arrived to the application (or to its spool); true if any moved.
    fn poll_body(&mut self, cx: &mut Context<'_>, ctx: &mut Ctx, origin: &Origin) -> bool {
        let max_body = ctx.max_body;
        match &mut self.incoming {
            Incoming::Done => false,
            Incoming::Streamed { recv, inbox, held } => {
                let (mut moved, mut ended, mut client_error) = (false, false, None);
                while inbox.has_room() {
                    match recv.poll_data(cx) {
                        Poll::Ready(Some(Ok(data))) => {
                            *held += data.len();
                            self.received += data.len() as u64;
                            moved = true;
                            if self.received > max_body {
                                // too large: the application sees it cut, the client a 413
                                inbox.end(true);
                                let _ = recv.flow_control().release_capacity(*held);
                                (ended, client_error) = (true, Some(413));
                                break;
                            }
                            inbox.push(&data);
                        }
                        Poll::Ready(Some(Err(e))) => {
                            // h2 reset the stream itself (PROTOCOL_ERROR: DATA past or short of
                            // its content-length) is the client's error; a reset of the client's
                            // or a connection lost is its going (`gone`).
                            inbox.end(true);
                            (moved, ended) = (true, true);
                            if e.is_library() && e.is_reset() {
                                client_error = Some(400);
                            }
                            break;
                        }
                        Poll::Ready(None) => {
                            inbox.end(false);
                            (moved, ended) = (true, true);
                            break;
                        }
                        Poll::Pending => break,
                    }
                }
                if *held > 0 && inbox.has_room() {
                    let _ = recv.flow_control().release_capacity(*held);
                    *held = 0;
                }
                if ended {
                    self.incoming = Incoming::Done;
                }
                if moved {
                    if let Some(ex) = self.exchange() {
                        notify(ex);
                    }
                }
                if let Some(status) = client_error {
                    self.body_failed(status, ctx);
                }
                moved
            }
            Incoming::Spooled { recv, sink, .. } => {
                let mut moved = false;
                loop {
                    match recv.poll_data(cx) {
                        Poll::Ready(Some(Ok(data))) => {
                            moved = true;
                            self.received += data.len() as u64;
                            let _ = recv.flow_control().release_capacity(data.len());
                            if self.received > max_body {
                                self.incoming = Incoming::Done;
                                self.apply(crate::apps::reply::Reply::new(413).parts(), &ctx.clock.date);
                                self.finish(false, ctx);
                                return true;
                            }
                            sink.push(&data);
                        }
                        Poll::Ready(Some(Err(e))) => {
                            // the client reset the stream (it is answered no more), or h2 did for
                            // the body's framing: the client's error, counted as a 400
                            if e.is_library() && e.is_reset() {
                                self.status = 400;
                            }
                            self.incoming = Incoming::Done;
                            self.gone(ctx);
                            return true;
                        }
                        Poll::Ready(None) => {
                            let Incoming::Spooled { sink, req, .. } = std::mem::replace(&mut self.incoming, Incoming::Done) else { unreachable!() };
                            if sink.failed {
                                self.apply(crate::apps::reply::Reply::new(500).parts(), &ctx.clock.date);
                                self.finish(false, ctx);
                            } else {
                                self.call(&req, sink.finish(), ctx, origin);
                            }
                            return true;
                        }
                        Poll::Pending => return moved,
                    }
                }
            }
        }
    }

    /// Tell the application how much of its body waits to be framed (its backpressure), when
    /// that changed.
    pub fn tell_backlog(&mut self) {
        let queued = self.out.as_ref().map_or(0, Outgoing::queued_memory);
        if queued == self.told {
            return;
        }
        self.told = queued;
        if let Some(ex) = self.exchange() {
            ex.borrow_mut().unflushed = queued;
            notify(ex);
        }
    }
}

/// Trailer lines (`name: value\r\n`, as the interfaces give them) as fields.
fn trailer_map(lines: &[u8]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for line in lines.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if hop_by_hop(name) || name.eq_ignore_ascii_case(b"te") {
            continue; // h2 would refuse the whole block
        }
        if let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(name), http::HeaderValue::from_bytes(value)) {
            map.append(n, v);
        }
    }
    map
}
