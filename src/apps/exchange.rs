//! The one exchange between a connection and an application: the application hands over a
//! response as parts (status and fields, pieces of body, a file, the end with trailer fields),
//! never as wire bytes; the connection frames them (`h1::encode`: Content-Length or chunked or
//! close, the Connection line, HEAD, 1xx/204/304). An HTTP/2 stream would frame the same parts
//! its own way.

use super::request::{AppRequest, ReqBody};
use pyo3::prelude::*;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex};

/// A field name or value as an application gave it (checked by its interface).
pub type Bytes = Cow<'static, [u8]>;

/// The status and fields of a response.
pub struct ResponseHead {
    pub status: u16,
    /// "200 OK": the status and its reason phrase (WSGI gives its own).
    pub status_line: Bytes,
    /// The application's fields; those that frame the message (Content-Length,
    /// Transfer-Encoding, Connection, Keep-Alive) are left out when framed.
    pub fields: Vec<(Bytes, Bytes)>,
    /// The body's exact length when it is known now (a whole body, a file, a length the
    /// application gave); None: it is sent in pieces until the end (chunked in HTTP/1.1,
    /// close-delimited in HTTP/1.0).
    pub length: Option<u64>,
}

impl ResponseHead {
    /// The 101 that accepts a WebSocket: the application's fields (a Sec-WebSocket-Protocol of
    /// its own dropped) and the subprotocol it chose, which must be one the client offered
    /// (RFC 6455 §4.2.2: a browser fails the connection otherwise).
    pub fn websocket_accept(offered: &[String], subprotocol: Option<String>, headers: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Part, String> {
        let mut fields: Vec<(Bytes, Bytes)> =
            headers.into_iter().filter(|(n, _)| !n.eq_ignore_ascii_case(b"sec-websocket-protocol")).map(|(n, v)| (Cow::Owned(n), Cow::Owned(v))).collect();
        if let Some(p) = subprotocol {
            if !offered.contains(&p) {
                return Err(format!("subprotocol {p:?} was not offered by the client (offered: {offered:?})"));
            }
            fields.push((Cow::Borrowed(b"Sec-WebSocket-Protocol"), Cow::Owned(p.into_bytes())));
        }
        Ok(Part::Head(ResponseHead { status: 101, status_line: Cow::Borrowed(b"101 Switching Protocols"), fields, length: None }))
    }
}

/// One part of a response, in order.
pub enum Part {
    Head(ResponseHead),
    Body(Vec<u8>),
    /// `len` bytes of a file from `off`, sent with sendfile.
    File { fd: OwnedFd, off: u64, len: u64 },
    /// The body is complete. Trailer fields (complete `name: value\r\n` lines) go out only in
    /// a chunked body.
    End { trailers: Vec<u8> },
    /// A WebSocket message (after a `Head` of status 101 accepted the WebSocket).
    Message(super::ws::Message),
    /// End the WebSocket with this code and reason; before the accept: deny it (403).
    Close(u16, String),
}

/// A response an application produces later (a handler on another thread, an ASGI task): its
/// parts arrive in `parts` as the application sends them; the worker moves them to the
/// connection when it is told to.
#[derive(Default)]
pub struct Exchange {
    /// Parts not yet handed to the connection.
    pub parts: Vec<Part>,
    /// The whole response is in (or has passed through) `parts`.
    pub finished: bool,
    /// The connection must close after this response (the application could not complete it).
    pub close: bool,
    /// The connection went away: set by the worker.
    pub gone: bool,
    /// The client ended its input (it may still read): for ASGI, a disconnect.
    pub peer_eof: bool,
    /// Bytes of this connection's output the socket has not taken yet: set by the worker.
    pub unflushed: usize,
    /// Called by the worker after it moved output or saw the connection go (wakes waiters).
    pub on_progress: Option<Box<dyn Fn()>>,
    /// The response will be run inline in this turn of the loop: leave the connection's output
    /// unwritten until it is there too, so a pipelined batch goes out in one write.
    pub defer_write: bool,
}

impl Exchange {
    pub fn push(&mut self, part: Part) {
        self.parts.push(part);
    }

    /// Append parts that came together (a handler's output).
    pub fn extend(&mut self, parts: Vec<Part>) {
        if self.parts.is_empty() {
            self.parts = parts;
        } else {
            self.parts.extend(parts);
        }
    }

    /// The parts so far, for the connection.
    pub fn take(&mut self) -> Vec<Part> {
        std::mem::take(&mut self.parts)
    }

    /// Output not yet on the wire: body queued here and unwritten in the connection.
    pub fn backlog(&self) -> usize {
        body_bytes(&self.parts) + self.unflushed
    }
}

/// The bytes of body or messages among `parts` (files are not counted: they are not held in
/// memory).
pub fn body_bytes(parts: &[Part]) -> usize {
    parts
        .iter()
        .map(|p| match p {
            Part::Body(b) => b.len(),
            Part::Message(m) => m.len(),
            _ => 0,
        })
        .sum()
}

pub type SharedExchange = std::rc::Rc<std::cell::RefCell<Exchange>>;

/// Run the exchange's progress hook (no borrow is held while it runs: it reads the exchange).
pub fn notify(ex: &SharedExchange) {
    let hook = ex.borrow_mut().on_progress.take();
    if let Some(hook) = hook {
        hook();
        ex.borrow_mut().on_progress = Some(hook);
    }
}

/// What an application made of a request.
pub enum AppCall {
    /// The whole response, now.
    Answer(Vec<Part>),
    /// The response comes later through the exchange; nothing more is read from the
    /// connection until it is finished.
    Pending(SharedExchange),
}

/// An application: answers one complete request with a response given as parts (see
/// `exchange`), now or later. The connection frames it.
pub trait App {
    /// `head_only`: the request is HEAD (the connection sends no body whatever the parts say).
    fn call(&mut self, req: &AppRequest, body: ReqBody, head_only: bool) -> AppCall;

    /// For applications that answer later: where to report "connection `id` has new output".
    fn bind(&mut self, _wakeups: Wakeups) {}

    /// The application takes request bodies as they arrive ([`ReqBody::Stream`]), called at
    /// the end of the head; otherwise a body is read whole (spooled past 1 MiB) first.
    fn streams_body(&self) -> bool {
        false
    }

    /// A job queued by `call` to run on this turn of the loop, by the thread that leads it.
    fn next_job(&mut self) -> Option<Box<Job>> {
        None
    }

    fn has_job(&self) -> bool {
        false
    }

    /// A descriptor the worker polls: readable when `take_done` has output of other threads.
    fn wake_fd(&self) -> Option<i32> {
        None
    }

    fn take_done(&mut self) -> Vec<Done> {
        Vec::new()
    }

    /// Whether the application takes a WebSocket at this request (its opening handshake); if
    /// not, the request is served as plain HTTP, its `Upgrade` ignored.
    fn takes_websocket(&self, _req: &AppRequest) -> bool {
        false
    }

    /// Open a WebSocket (the handshake was checked): the application answers through the
    /// exchange: a `Head` of status 101 accepts (then `Message`s and a `Close`), a `Close`
    /// first denies with 403, any other response denies with that response. Messages from the
    /// client arrive in `mailbox`.
    fn websocket(&mut self, _req: &AppRequest, _offer: super::ws::Offer, _mailbox: Arc<super::ws::Mailbox>) -> SharedExchange {
        unreachable!("takes_websocket is false")
    }
}

/// Connections (fd, generation) whose exchange has new output, and the hook that makes the
/// worker look at them soon.
#[derive(Clone)]
pub struct Wakeups {
    pub list: std::rc::Rc<std::cell::RefCell<Vec<(i32, u64)>>>,
}


// What crosses threads between the worker's loop and the handler threads (`threads`): a
// request as a job, what a job produced, and the backpressure of a streamed response.

/// A streamed body waits while this much of it is unwritten, until it is down to LOW_WATER.
const HIGH_WATER: usize = 256 * 1024;
const LOW_WATER: usize = 64 * 1024;

/// Which handler serves a request.
pub struct Route {
    /// Jobs of one key share a slow mark.
    pub key: usize,
    pub handler: usize,
    pub params: Vec<(usize, Vec<u8>)>,
    /// The handler is a coroutine function: it runs on the worker's event loop.
    pub is_async: bool,
}

/// A request handed to the application, owned (it may run on another thread).
pub struct Job {
    pub head: Vec<u8>,
    pub fields: Vec<crate::h1::parse::Field>,
    pub method: Range<usize>,
    pub target: Range<usize>,
    pub minor: u8,
    pub peer: Option<SocketAddr>,
    pub https: Option<bool>,
    pub tls: Option<std::sync::Arc<crate::tls::TlsInfo>>,
    pub http2: bool,
    pub local_port: u16,
    pub body: ReqBody,
    pub route: Route,
    pub head_only: bool,
    pub id: (i32, u64),
    /// A WebSocket handshake for the route's handler (what the client offered, and where its
    /// messages arrive); None for an HTTP request.
    pub ws: Option<Box<(super::ws::Offer, Arc<super::ws::Mailbox>)>>,
}

impl Job {
    /// The job of a request (its head copied, with where method and target are in it).
    pub fn new(req: &AppRequest, body: ReqBody, head_only: bool, route: Route, ws: Option<Box<(super::ws::Offer, Arc<super::ws::Mailbox>)>>) -> Box<Job> {
        let base = req.head.as_ptr() as usize;
        let at = |s: &[u8]| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        Box::new(Job {
            method: at(req.method),
            target: at(req.target),
            head: req.head.to_vec(),
            fields: req.fields.to_vec(),
            minor: req.minor,
            peer: req.peer,
            https: req.https,
            tls: req.tls.clone(),
            http2: req.http2,
            local_port: req.local_port,
            body,
            head_only,
            id: req.conn_id,
            route,
            ws,
        })
    }

    pub fn request(&self) -> AppRequest<'_> {
        AppRequest {
            head: &self.head,
            fields: &self.fields,
            method: &self.head[self.method.clone()],
            target: &self.head[self.target.clone()],
            minor: self.minor,
            peer: self.peer,
            https: self.https,
            local_port: self.local_port,
            tls: self.tls.clone(),
            http2: self.http2,
            conn_id: self.id,
        }
    }
}

/// Output of a job for the connection, applied by the leader ([`Worker::deliver`]).
pub struct Done {
    pub id: (i32, u64),
    /// The response's parts (see `exchange`).
    pub parts: Vec<Part>,
    pub finished: bool,
    pub close: bool,
    /// The first piece of a streamed response brings its flow control.
    pub flow: Option<Arc<Flow>>,
}

/// Backpressure for a streamed response: how much of it waits to be written.
#[derive(Default)]
pub struct Flow {
    state: Mutex<FlowState>,
    room: Condvar,
}

#[derive(Default)]
struct FlowState {
    /// Bytes in the connection's output queue not yet taken by the socket.
    unflushed: usize,
    /// Bytes posted to the leader and not yet moved to the connection.
    posted: usize,
    gone: bool,
    /// An event loop waits for room (see `Flow::room_or_call`).
    on_room: Option<Box<dyn FnOnce() + Send>>,
}

impl Flow {
    /// The leader moved `n` posted bytes to the connection.
    pub fn moved(&self, n: usize) {
        let mut s = self.state.lock().unwrap();
        s.posted = s.posted.saturating_sub(n);
        s.unflushed += n;
    }

    /// The connection went away before the response could start.
    pub fn cut(&self) {
        self.progress(0, true);
    }

    /// The leader wrote: `unflushed` bytes are left; `gone`: the connection is closed.
    pub fn progress(&self, unflushed: usize, gone: bool) {
        let call = {
            let mut s = self.state.lock().unwrap();
            s.unflushed = unflushed;
            s.gone |= gone;
            if s.gone || s.unflushed + s.posted <= LOW_WATER {
                self.room.notify_all();
                s.on_room.take()
            } else {
                None
            }
        };
        if let Some(call) = call {
            call(); // outside the lock: it takes the GIL
        }
    }

    /// Wait (without the GIL) while the client is behind: from more than HIGH_WATER unwritten
    /// until it is down to LOW_WATER, or gone.
    pub(crate) fn wait_room(&self, py: Python<'_>) {
        if self.behind() {
            py.detach(|| {
                let mut s = self.state.lock().unwrap();
                while !s.gone && s.unflushed + s.posted > LOW_WATER {
                    s = self.room.wait(s).unwrap();
                }
            });
        }
    }

    /// More than HIGH_WATER is unwritten (and the client is still there).
    pub(crate) fn behind(&self) -> bool {
        let s = self.state.lock().unwrap();
        !s.gone && s.unflushed + s.posted > HIGH_WATER
    }

    /// `more` bytes are posted; false when the client is gone.
    pub(crate) fn posted(&self, more: usize) -> bool {
        let mut s = self.state.lock().unwrap();
        s.posted += more;
        !s.gone
    }

    /// Without blocking (an event loop's thread): true when there is room now; else `on_room`
    /// is kept and called (once, from the thread that writes) when the client has caught up
    /// or gone.
    pub(crate) fn room_or_call(&self, on_room: Box<dyn FnOnce() + Send>) -> bool {
        let mut s = self.state.lock().unwrap();
        if s.gone || s.unflushed + s.posted <= HIGH_WATER {
            return true;
        }
        s.on_room = Some(on_room);
        false
    }

}

