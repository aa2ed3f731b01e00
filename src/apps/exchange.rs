//! The one exchange between a connection and an application: the application hands over a
//! response as parts (status and fields, pieces of body, a file, the end with trailer fields),
//! never as wire bytes; the connection frames them (`h1::encode`: Content-Length or chunked or
//! close, the Connection line, HEAD, 1xx/204/304). An HTTP/2 stream would frame the same parts
//! its own way.

use std::borrow::Cow;
use std::os::fd::OwnedFd;

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

/// One part of a response, in order.
pub enum Part {
    Head(ResponseHead),
    Body(Vec<u8>),
    /// `len` bytes of a file from `off`, sent with sendfile.
    File { fd: OwnedFd, off: u64, len: u64 },
    /// The body is complete. Trailer fields (complete `name: value\r\n` lines) go out only in
    /// a chunked body.
    End { trailers: Vec<u8> },
}

/// A response an application produces later (a handler on another thread, an ASGI task): its
/// parts arrive in `parts` as the application sends them; the worker moves them to the
/// connection when it is told to.
#[derive(Default)]
pub struct Exchange {
    /// Parts not yet handed to the connection.
    pub parts: Vec<Part>,
    /// Body bytes in `parts`.
    pub queued: usize,
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
        if let Part::Body(b) = &part {
            self.queued += b.len();
        }
        self.parts.push(part);
    }

    /// Append parts that came together (a handler's output).
    pub fn extend(&mut self, parts: Vec<Part>, body_bytes: usize) {
        if self.parts.is_empty() {
            self.parts = parts;
        } else {
            self.parts.extend(parts);
        }
        self.queued += body_bytes;
    }

    /// The parts so far, for the connection.
    pub fn take(&mut self) -> Vec<Part> {
        self.queued = 0;
        std::mem::take(&mut self.parts)
    }

    /// Output not yet on the wire: queued here and unwritten in the connection.
    pub fn backlog(&self) -> usize {
        self.queued + self.unflushed
    }
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
