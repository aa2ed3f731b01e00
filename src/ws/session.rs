//! A connection after its 101: the WebSocket between the client and an application, sans-io.
//! Input goes through the [`Reader`] into the application's [`Mailbox`] (reading pauses while
//! the mailbox is full); the application's messages and close are framed into the output queue
//! (compressed when permessage-deflate was agreed and it pays). It keeps the clocks of the
//! connection's phase: the ping interval and timeout, and the wait for the client's Close once
//! this side sent its own.

use super::conn::{Event, Reader};
use super::deflate::{Agreed, Codec, MIN_COMPRESS};
use super::frame::{write_close, write_header, OpCode};
use crate::apps::exchange::{notify, SharedExchange};
use crate::apps::ws::{Mailbox, Message};
use crate::io::out::OutQueue;
use std::sync::Arc;

/// Seconds to wait for the client's Close after this side sent one.
pub const CLOSE_WAIT: i64 = 5;

/// Payloads at least this long go to the output queue as they are, not copied.
const BY_REFERENCE: usize = 16 * 1024;

/// The clocks of a WebSocket (0 disables the ping).
#[derive(Clone, Copy, Debug)]
pub struct Keepalive {
    /// Seconds without input before the server pings.
    pub interval: i64,
    /// Seconds a ping may go unanswered (no input at all) before the connection is dropped.
    pub timeout: i64,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive { interval: 20, timeout: 20 }
    }
}

/// What a passed deadline of a WebSocket calls for.
#[derive(Debug, PartialEq, Eq)]
pub enum Expired {
    /// A ping went out: write it and wait again.
    Pinged,
    /// The client is dead or did not complete the close: end the connection.
    End,
}

pub struct Session {
    pub ex: SharedExchange,
    pub mailbox: Arc<Mailbox>,
    reader: Reader,
    deflate: Option<Agreed>,
    /// When this side sent its Close.
    closed_at: Option<i64>,
    /// The client's Close came, or its input broke a rule: nothing more is read or sent; the
    /// connection ends once its output is written.
    pub ended: bool,
    last_input: i64,
    ping_sent: Option<i64>,
}

impl Session {
    pub fn new(ex: SharedExchange, mailbox: Arc<Mailbox>, max_message: u64, deflate: Option<Agreed>, now: i64) -> Self {
        let mut reader = Reader::new(max_message);
        reader.deflate = deflate.is_some();
        Session { ex, mailbox, reader, deflate, closed_at: None, ended: false, last_input: now, ping_sent: None }
    }

    /// Read client bytes while the application has room for messages; returns how many were
    /// used (the rest waits). Pongs and the answer to a Close go to `out`. `events` is the
    /// worker's (empty; left empty), so that an idle session holds none.
    pub fn feed(&mut self, data: &[u8], out: &mut OutQueue, codec: &mut Codec, events: &mut Vec<Event>, now: i64) -> usize {
        if !data.is_empty() {
            // Any input shows the client alive (a Pong, or anything else).
            self.last_input = now;
            self.ping_sent = None;
        }
        let mut pos = 0;
        let mut told = false;
        while !self.reader.is_done() && pos < data.len() && self.mailbox.has_room() {
            let n = self.reader.feed(&data[pos..], events, out.owned_tail(), codec);
            pos += n;
            for ev in events.drain(..) {
                told = true;
                match ev {
                    // After this side's Close, messages are not the application's any more.
                    Event::Text(s) if self.closed_at.is_none() => self.mailbox.push(Message::Text(s)),
                    Event::Binary(b) if self.closed_at.is_none() => self.mailbox.push(Message::Binary(b)),
                    Event::Text(_) | Event::Binary(_) => {}
                    Event::Closed(code, reason) => {
                        self.mailbox.close(code.unwrap_or(1005), &reason);
                        self.ended = true;
                    }
                    Event::Failed(code) => {
                        self.mailbox.close(code, "");
                        self.ended = true;
                    }
                }
            }
            if n == 0 {
                break;
            }
        }
        if self.reader.is_done() {
            pos = data.len(); // nothing after the end is read
        }
        if told {
            notify(&self.ex);
        }
        pos
    }

    /// Frame a message of the application.
    pub fn send(&mut self, m: Message, out: &mut OutQueue, codec: &mut Codec) {
        if self.closed_at.is_some() || self.ended {
            return; // nothing is sent after a Close
        }
        let op = if m.is_text() { OpCode::Text } else { OpCode::Binary };
        let len = m.len();
        if let Some(a) = self.deflate {
            // A message compressed on its own refers back at most its own length: within a
            // window the client limited, if it is no longer than the window.
            if len >= MIN_COMPRESS && (a.server_window_bits == 15 || len <= 1 << a.server_window_bits) {
                let mut z = Vec::new();
                codec.deflate(m.bytes(), &mut z);
                if z.len() < len {
                    write_header(out.owned_tail(), true, true, op, z.len() as u64);
                    push(out, z);
                    return;
                }
            }
        }
        write_header(out.owned_tail(), true, false, op, len as u64);
        match m {
            Message::Text(s) => push(out, s.into_bytes()),
            Message::Binary(b) => push(out, b),
            Message::Held(h) => out.push_held(h),
        }
    }

    /// The application closes: send its Close, then wait (CLOSE_WAIT) for the client's.
    pub fn close(&mut self, code: u16, reason: &str, out: &mut OutQueue, now: i64) {
        if self.closed_at.is_some() || self.ended {
            return;
        }
        // Only codes an endpoint may send; anything else would be a protocol error at the client.
        let code = if matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) { code } else { 1000 };
        write_close(out.owned_tail(), code, reason);
        self.closed_at = Some(now);
        self.reader.closing();
    }

    /// The server is stopping: close with 1001 (going away), and tell the application so.
    pub fn going_away(&mut self, out: &mut OutQueue, now: i64) {
        self.mailbox.close(1001, "the server is going away");
        self.close(1001, "", out, now);
        notify(&self.ex);
    }

    /// This side sent its Close and waits for the client's.
    pub fn is_closing(&self) -> bool {
        self.closed_at.is_some()
    }

    /// The second by which something must happen.
    pub fn deadline(&self, k: &Keepalive) -> i64 {
        if let Some(t) = self.closed_at {
            t + CLOSE_WAIT
        } else if let Some(t) = self.ping_sent {
            t + k.timeout
        } else if k.interval > 0 {
            self.last_input + k.interval
        } else {
            i64::MAX
        }
    }

    /// The deadline passed: ping a quiet client, or give up on a dead one (1011, as the
    /// websockets library does) or one that never completed the close.
    pub fn expired(&mut self, out: &mut OutQueue, now: i64) -> Expired {
        if self.closed_at.is_none() && self.ping_sent.is_none() && !self.ended {
            write_header(out.owned_tail(), true, false, OpCode::Ping, 0);
            self.ping_sent = Some(now);
            return Expired::Pinged;
        }
        if self.closed_at.is_none() && !self.ended {
            write_close(out.owned_tail(), 1011, "keepalive ping timeout");
        }
        self.mailbox.close(1006, "");
        self.ended = true;
        notify(&self.ex);
        Expired::End
    }

    /// The connection is gone (the client left, or it was closed): the application is told.
    pub fn lost(&mut self) {
        self.mailbox.close(1006, "");
        self.ended = true;
    }
}

fn push(out: &mut OutQueue, data: Vec<u8>) {
    if data.len() >= BY_REFERENCE {
        out.push_owned(data);
    } else {
        out.owned_tail().extend_from_slice(&data);
    }
}

