//! The shape of a WebSocket as every application interface sees it: whole messages both ways,
//! never frames. Messages from the client wait in a bounded [`Mailbox`] (the connection stops
//! reading while the application has not taken `MAILBOX_HIGH` bytes of them); messages to the
//! client are [`Part::Message`](super::exchange::Part) in the exchange, framed by the connection
//! (`ws::session`), and the accept is a `Part::Head` with status 101.

use crate::io::out::BY_REFERENCE;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

/// A whole message.
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
    /// A binary message whose bytes the application owns (a large `bytes` object): framed and
    /// written from there, not copied.
    Held(Box<dyn AsRef<[u8]> + Send + Sync>),
}

impl Message {
    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            Message::Text(s) => s.as_bytes(),
            Message::Binary(b) => b,
            Message::Held(h) => (**h).as_ref(),
        }
    }

    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        self.is_text() == other.is_text() && self.bytes() == other.bytes()
    }
}

impl Eq for Message {}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.is_text() { "Text" } else { "Binary" };
        write!(f, "{kind}({:?})", String::from_utf8_lossy(self.bytes()))
    }
}

/// Unread message bytes past which the connection stops reading the client.
pub const MAILBOX_HIGH: usize = 256 * 1024;

/// Messages on their way from the connection (the loop's thread) to the application.
#[derive(Default)]
pub struct Mailbox {
    state: Mutex<MailState>,
    ready: Condvar,
}

#[derive(Default)]
struct MailState {
    queue: VecDeque<Message>,
    bytes: usize,
    /// The WebSocket ended: the code and reason the application is told (1005 when the
    /// client's Close had no code, 1006 when the connection was lost).
    closed: Option<(u16, String)>,
    /// Called (once, on the connection's thread) when mail comes for an application that
    /// waits on another thread ([`Mailbox::wait_then`]).
    waiter: Option<Box<dyn FnOnce() + Send>>,
}

/// What a take found.
#[derive(Debug, PartialEq, Eq)]
pub enum Mail {
    Message(Message),
    /// Nothing yet: wait.
    Empty,
    /// The WebSocket ended (every message before it was taken).
    Closed(u16, String),
}

impl Mailbox {
    /// Connection side: a message came.
    pub fn push(&self, m: Message) {
        let waiter = {
            let mut s = self.state.lock().unwrap();
            if s.closed.is_some() {
                return;
            }
            s.bytes += m.len();
            s.queue.push_back(m);
            self.ready.notify_all();
            s.waiter.take()
        };
        if let Some(w) = waiter {
            w(); // outside the lock
        }
    }

    /// Connection side: the WebSocket ended (the first end is the one told).
    pub fn close(&self, code: u16, reason: &str) {
        let waiter = {
            let mut s = self.state.lock().unwrap();
            if s.closed.is_none() {
                s.closed = Some((code, reason.to_string()));
            }
            self.ready.notify_all();
            s.waiter.take()
        };
        if let Some(w) = waiter {
            w();
        }
    }

    /// Application side, on an event loop of another thread: arrange for `wake` to be called
    /// when mail comes; false (and `wake` dropped) when there is mail already.
    pub fn wait_then(&self, wake: Box<dyn FnOnce() + Send>) -> bool {
        let mut s = self.state.lock().unwrap();
        if !s.queue.is_empty() || s.closed.is_some() {
            return false;
        }
        s.waiter = Some(wake);
        true
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock().unwrap().closed.is_some()
    }

    /// The application has room for more (the connection reads on).
    pub fn has_room(&self) -> bool {
        self.state.lock().unwrap().bytes < MAILBOX_HIGH
    }

    /// Application side: the next message, without waiting; and whether this take made room
    /// the connection must hear of (it had stopped reading).
    pub fn take(&self) -> (Mail, bool) {
        let mut s = self.state.lock().unwrap();
        match s.queue.pop_front() {
            Some(m) => {
                let was_full = s.bytes >= MAILBOX_HIGH;
                s.bytes -= m.len();
                if s.queue.is_empty() {
                    s.queue = VecDeque::new(); // an idle WebSocket holds no ring
                }
                let room = was_full && s.bytes < MAILBOX_HIGH;
                (Mail::Message(m), room)
            }
            None => match &s.closed {
                Some((code, reason)) => (Mail::Closed(*code, reason.clone()), false),
                None => (Mail::Empty, false),
            },
        }
    }

    /// Application side, on a thread of its own: wait until there is a message or the end
    /// (the caller has let go of the GIL).
    pub fn wait(&self) {
        let mut s = self.state.lock().unwrap();
        while s.queue.is_empty() && s.closed.is_none() {
            s = self.ready.wait(s).unwrap();
        }
    }
}

/// A Python `bytes` as the payload of a message it is sent in.
struct HeldBytes {
    _obj: Py<PyBytes>,
    ptr: *const u8,
    len: usize,
}

// SAFETY: a bytes object never changes, and `_obj` keeps it (and so `ptr`) alive; dropping a
// Py without the GIL defers the decref to pyo3's pool.
unsafe impl Send for HeldBytes {}
unsafe impl Sync for HeldBytes {}

impl AsRef<[u8]> for HeldBytes {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: see above.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Message {
    /// A binary message of `b`: a large one is held (written from the object), a small one
    /// copied.
    pub fn from_bytes(b: &Bound<'_, PyBytes>) -> Message {
        let data = b.as_bytes();
        if data.len() < BY_REFERENCE {
            return Message::Binary(data.to_vec());
        }
        Message::Held(Box::new(HeldBytes { _obj: b.clone().unbind(), ptr: data.as_ptr(), len: data.len() }))
    }
}

/// What a WebSocket handshake offers the application, beside its request.
pub struct Offer {
    /// Sec-WebSocket-Protocol: the subprotocols the client offered, in order.
    pub protocols: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_mailbox_says_when_a_take_makes_room_and_the_end_comes_last() {
        let m = Mailbox::default();
        m.push(Message::Binary(vec![0; MAILBOX_HIGH]));
        m.push(Message::Text("after".into()));
        assert!(!m.has_room());
        m.close(1000, "bye");
        m.push(Message::Text("after the end: dropped".into()));
        assert_eq!(m.take(), (Mail::Message(Message::Binary(vec![0; MAILBOX_HIGH])), true));
        assert!(m.has_room());
        assert_eq!(m.take(), (Mail::Message(Message::Text("after".into())), false));
        assert_eq!(m.take(), (Mail::Closed(1000, "bye".into()), false));
        assert_eq!(m.take(), (Mail::Closed(1000, "bye".into()), false), "the end stays");
    }
}
