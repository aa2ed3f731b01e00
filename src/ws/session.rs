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
                if codec.deflate(m.bytes(), &mut z) {
                    write_header(out.owned_tail(), true, true, op, z.len() as u64);
                    out.push_bytes(z);
                    return;
                }
            }
        }
        write_header(out.owned_tail(), true, false, op, len as u64);
        match m {
            Message::Text(s) => out.push_bytes(s.into_bytes()),
            Message::Binary(b) => out.push_bytes(b),
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

    /// The second by which something must happen. While the application's mailbox is full the
    /// client is not read, so its silence means nothing: no ping clock runs.
    pub fn deadline(&self, k: &Keepalive) -> i64 {
        if let Some(t) = self.closed_at {
            t + CLOSE_WAIT
        } else if !self.mailbox.has_room() {
            i64::MAX
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



#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::exchange::Exchange;
    use crate::apps::ws::Mail;

    fn session(deflate: Option<Agreed>) -> Session {
        let ex: SharedExchange = std::rc::Rc::new(std::cell::RefCell::new(Exchange::default()));
        Session::new(ex, Arc::new(Mailbox::default()), 1 << 20, deflate, 100)
    }

    fn client(op: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x80 | op, 0x80 | payload.len() as u8, 0, 0, 0, 0];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn pings_follow_the_clock_and_a_silent_client_is_let_go() {
        let k = Keepalive { interval: 20, timeout: 5 };
        let (mut s, mut out, mut codec, mut ev) = (session(None), OutQueue::default(), Codec::default(), Vec::new());
        assert_eq!(s.deadline(&k), 120, "20 s after the last input");
        s.feed(&client(0x1, b"hi"), &mut out, &mut codec, &mut ev, 110);
        assert_eq!(s.deadline(&k), 130, "any input moves it");
        out = OutQueue::default();
        assert_eq!(s.expired(&mut out, 130), Expired::Pinged);
        assert_eq!(out.to_bytes(), [0x89, 0], "an empty Ping");
        assert_eq!(s.deadline(&k), 135, "the ping's timeout");
        s.feed(&client(0xA, b""), &mut out, &mut codec, &mut ev, 133); // the Pong
        assert_eq!(s.deadline(&k), 153, "answered: back to the interval");
        out = OutQueue::default();
        s.expired(&mut out, 153);
        assert_eq!(s.expired(&mut out, 158), Expired::End, "no answer within the timeout");
        assert!(out.to_bytes().ends_with(b"keepalive ping timeout") && s.ended);
        assert_eq!(s.mailbox.take().0, Mail::Message(Message::Text("hi".into())));
        assert_eq!(s.mailbox.take().0, Mail::Closed(1006, String::new()), "the application hears 1006");
        assert_eq!(s.deadline(&Keepalive { interval: 0, timeout: 5 }), 153 + 5);
        assert_eq!(session(None).deadline(&Keepalive { interval: 0, timeout: 5 }), i64::MAX, "interval 0: never pinged");
    }

    #[test]
    fn after_the_application_s_close_only_the_client_s_close_counts() {
        let (mut s, mut out, mut codec, mut ev) = (session(None), OutQueue::default(), Codec::default(), Vec::new());
        s.close(4000, "bye", &mut out, 10);
        s.close(1000, "twice", &mut out, 11); // one Close only
        s.send(Message::Text("after the close".into()), &mut out, &mut codec);
        assert_eq!(out.to_bytes(), [&[0x88, 5, 0x0F, 0xA0][..], b"bye"].concat());
        assert_eq!(s.deadline(&Keepalive::default()), 10 + CLOSE_WAIT);
        let mut data = client(0x1, b"late message");
        data.extend(client(0x8, b"\x0f\xa0"));
        out = OutQueue::default();
        assert_eq!(s.feed(&data, &mut out, &mut codec, &mut ev, 12), data.len());
        assert!(out.to_bytes().is_empty(), "the client's Close answers ours: not echoed");
        assert!(s.ended);
        assert_eq!(s.mailbox.take().0, Mail::Closed(4000, String::new()), "the late message is dropped");
        // A code an endpoint may not send becomes 1000.
        let (mut s, mut out) = (session(None), OutQueue::default());
        s.close(1005, "", &mut out, 0);
        assert_eq!(out.to_bytes(), [0x88, 2, 0x03, 0xE8]);
    }

    #[test]
    fn messages_are_compressed_when_it_pays_and_the_window_allows() {
        let mut codec = Codec::default();
        let frames = |deflate: Option<Agreed>, m: Message| {
            let (mut s, mut out) = (session(deflate), OutQueue::default());
            s.send(m, &mut out, &mut Codec::default());
            out.to_bytes()
        };
        let big = "abc ".repeat(1000);
        let plain = frames(None, Message::Text(big.clone()));
        assert_eq!(plain[0], 0x81, "no extension: plain");
        let z = frames(Some(Agreed { server_window_bits: 15 }), Message::Text(big.clone()));
        assert_eq!(z[0], 0xC1, "RSV1: compressed");
        assert_eq!(codec.inflate(&z[2 + if z[1] == 126 { 2 } else { 0 }..], 1 << 20).unwrap(), big.as_bytes());
        assert_eq!(frames(Some(Agreed { server_window_bits: 15 }), Message::Text("short".into()))[0], 0x81, "under 128 bytes: plain");
        assert_eq!(frames(Some(Agreed { server_window_bits: 9 }), Message::Text(big))[0], 0x81, "longer than the client's window: plain");
        assert_eq!(frames(Some(Agreed { server_window_bits: 15 }), Message::Binary((0..=255u8).collect()))[0], 0x82, "incompressible: plain");
    }

    #[test]
    fn a_full_mailbox_stops_the_reading_until_the_application_takes() {
        let (mut s, mut out, mut codec, mut ev) = (session(None), OutQueue::default(), Codec::default(), Vec::new());
        let mut big = vec![0x82, 0xFF];
        big.extend_from_slice(&(200_000u64).to_be_bytes());
        big.extend_from_slice(&[0; 4]);
        big.extend(std::iter::repeat_n(7u8, 200_000));
        let mut data = big.clone();
        data.extend_from_slice(&big);
        data.extend(client(0x1, b"third"));
        let used = s.feed(&data, &mut out, &mut codec, &mut ev, 0);
        assert_eq!(used, 2 * big.len(), "two messages of 200 kB fill the mailbox: the third waits");
        assert!(!s.mailbox.has_room());
        let k = Keepalive { interval: 20, timeout: 5 };
        assert_eq!(s.deadline(&k), i64::MAX, "not read while the application is behind: no ping clock");
        assert!(matches!(s.mailbox.take(), (Mail::Message(_), true)), "a take makes room and says so");
        assert_eq!(s.deadline(&k), 20, "reading again: the clock runs");
        assert_eq!(s.feed(&data[used..], &mut out, &mut codec, &mut ev, 0), data.len() - used);
    }
}
