//! A WebSocket connection's reading side as a state machine, sans-io: bytes in, messages and the
//! frames to answer with out. Every rule of a message lives here (RFC 6455 §5.4-5.5): a
//! continuation only inside a fragmented message and no new message inside one, control frames
//! between fragments, Ping answered with a Pong of the same payload, the close handshake (the
//! first Close is answered, and nothing after it is read), a message no longer than the limit
//! (1009), text that is UTF-8 (1007, as soon as a bad byte comes).

use super::deflate::Codec;
use super::frame::{check_close, parse_header, unmask_into, write_close, write_header, Header, OpCode, Utf8Stream, Violation};

/// What the bytes so far gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Text(String),
    Binary(Vec<u8>),
    /// The peer closed: its code (None when it gave none: 1005 to an application) and reason.
    /// The answering Close is already in the output (unless this side closed first).
    Closed(Option<u16>, String),
    /// The connection must end now with this close code (its Close frame is in the output).
    Failed(u16),
}

/// A data message being assembled from its frames.
struct Message {
    text: bool,
    /// Its frames are compressed (RSV1 on the first): checked and inflated when it ends.
    compressed: bool,
    buf: Vec<u8>,
}

/// The reading side of one connection.
pub struct Reader {
    /// Messages (and payloads of one frame) longer than this end the connection with 1009;
    /// a compressed message is held to it both before and after inflating.
    pub max_message: u64,
    /// permessage-deflate was negotiated: RSV1 may mark a message compressed.
    pub deflate: bool,
    /// The header of the frame whose payload is arriving, and how much of it came.
    frame: Option<(Header, u64)>,
    message: Option<Message>,
    utf8: Utf8Stream,
    /// A control frame's payload being assembled.
    control: Vec<u8>,
    /// This side sent its Close: the peer's is the answer, not to be answered.
    closing: bool,
    /// A Close was received or a violation found: nothing more is read.
    done: bool,
}

impl Reader {
    pub fn new(max_message: u64) -> Self {
        Reader { max_message, deflate: false, frame: None, message: None, utf8: Utf8Stream::default(), control: Vec::new(), closing: false, done: false }
    }

    /// Nothing more will be read (closed or failed).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// This side has sent a Close: the peer's Close completes the handshake unanswered.
    pub fn closing(&mut self) {
        self.closing = true;
    }

    /// Read what `data` holds, up to the end of the first data message in it; return how many
    /// bytes were used. `events` gets each message or end; `out` the frames to send (Pong,
    /// Close). The caller keeps the rest of `data` and calls again (after making room for
    /// messages, if it holds too many).
    pub fn feed(&mut self, data: &[u8], events: &mut Vec<Event>, out: &mut Vec<u8>, codec: &mut Codec) -> usize {
        let mut pos = 0;
        while !self.done && pos < data.len() {
            let (h, got) = match self.frame {
                Some(f) => f,
                None => match parse_header(&data[pos..], self.deflate, self.max_message) {
                    Ok(None) => break,
                    Ok(Some((h, n))) => {
                        pos += n;
                        if let Err(v) = self.start(&h) {
                            self.fail(v, events, out);
                            break;
                        }
                        (h, 0)
                    }
                    Err(v) => {
                        self.fail(v, events, out);
                        break;
                    }
                },
            };
            let take = ((h.len - got) as usize).min(data.len() - pos);
            let piece = &data[pos..pos + take];
            pos += take;
            if let Err(v) = self.payload(&h, piece, got) {
                self.fail(v, events, out);
                break;
            }
            if got + take as u64 != h.len {
                self.frame = Some((h, got + take as u64));
                continue;
            }
            self.frame = None;
            let before = events.len();
            if let Err(v) = self.end_frame(&h, events, out, codec) {
                self.fail(v, events, out);
            }
            if events.len() > before {
                break; // a message or the end: the caller looks before reading on
            }
        }
        pos
    }

    /// A frame begins: is it allowed where the message stands?
    fn start(&mut self, h: &Header) -> Result<(), Violation> {
        match h.opcode {
            OpCode::Continuation if self.message.is_none() => Err(Violation::Protocol("a continuation outside a fragmented message")),
            OpCode::Text | OpCode::Binary if self.message.is_some() => Err(Violation::Protocol("a new message inside a fragmented one")),
            OpCode::Text | OpCode::Binary => {
                self.message = Some(Message { text: h.opcode == OpCode::Text, compressed: h.rsv1, buf: Vec::new() });
                Ok(())
            }
            _ => {
                self.control.clear();
                Ok(())
            }
        }
    }

    /// Payload bytes of the frame `h`, from `offset` in it: unmasked where they are kept.
    fn payload(&mut self, h: &Header, piece: &[u8], offset: u64) -> Result<(), Violation> {
        let buf = if h.opcode.is_control() {
            &mut self.control
        } else {
            let m = self.message.as_mut().expect("a data frame belongs to a message");
            if m.buf.len() as u64 + piece.len() as u64 > self.max_message {
                return Err(Violation::TooBig);
            }
            &mut m.buf
        };
        let at = buf.len();
        // Once half of the frame is here, room for all of it (no copy as the rest comes); never
        // more than twice what came, whatever length the header claims.
        let rest = (h.len - offset) as usize;
        if piece.len() < rest && piece.len() * 2 >= rest {
            buf.reserve(rest);
        }
        unmask_into(buf, piece, h.mask, offset);
        if let Some(m) = self.message.as_ref().filter(|m| m.text && !m.compressed && !h.opcode.is_control()) {
            self.utf8.feed(&m.buf[at..])?;
        }
        Ok(())
    }

    fn end_frame(&mut self, h: &Header, events: &mut Vec<Event>, out: &mut Vec<u8>, codec: &mut Codec) -> Result<(), Violation> {
        match h.opcode {
            OpCode::Ping => {
                if !self.closing {
                    write_header(out, true, false, OpCode::Pong, self.control.len() as u64);
                    out.extend_from_slice(&self.control);
                }
            }
            OpCode::Pong => {}
            OpCode::Close => {
                let (code, reason) = match check_close(&self.control)? {
                    Some((code, reason)) => (Some(code), reason.to_string()),
                    None => (None, String::new()),
                };
                // Answer with the same code and reason (none for none), then read no more
                // (§5.5.1).
                if !self.closing {
                    match code {
                        Some(c) => write_close(out, c, &reason),
                        None => write_header(out, true, false, OpCode::Close, 0),
                    }
                }
                events.push(Event::Closed(code, reason));
                self.done = true;
            }
            _ if h.fin => {
                let m = self.message.take().expect("a data frame belongs to a message");
                let buf = if m.compressed { codec.inflate(&m.buf, self.max_message)? } else { m.buf };
                if m.text {
                    if m.compressed {
                        std::str::from_utf8(&buf).map_err(|_| Violation::InvalidData)?;
                    } else {
                        self.utf8.finish()?;
                    }
                    // Checked: valid UTF-8.
                    events.push(Event::Text(String::from_utf8(buf).map_err(|_| Violation::InvalidData)?));
                } else {
                    events.push(Event::Binary(buf));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn fail(&mut self, v: Violation, events: &mut Vec<Event>, out: &mut Vec<u8>) {
        let code = v.close_code();
        if !self.closing {
            write_close(out, code, "");
        }
        events.push(Event::Failed(code));
        self.done = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: masked with a fixed key.
    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0xA1, 0xB2, 0xC3, 0xD4];
        let mut v = vec![b0];
        match payload.len() {
            n @ 0..=125 => v.push(0x80 | n as u8),
            n => {
                v.push(0x80 | 126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        v.extend_from_slice(&mask);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        v
    }

    /// Feed until the reader uses no more (it stops after each message).
    fn feed_all(r: &mut Reader, data: &[u8], ev: &mut Vec<Event>, out: &mut Vec<u8>) -> usize {
        let mut used = 0;
        loop {
            let n = r.feed(&data[used..], ev, out, &mut Codec::default());
            used += n;
            if n == 0 {
                return used;
            }
        }
    }

    /// Feed `stream` cut at every point into two pieces: the events and output must not depend
    /// on the cut.
    fn run(stream: &[u8], max: u64) -> (Vec<Event>, Vec<u8>) {
        let whole = {
            let (mut ev, mut out) = (Vec::new(), Vec::new());
            let mut r = Reader::new(max);
            feed_all(&mut r, stream, &mut ev, &mut out);
            (ev, out)
        };
        for cut in 0..stream.len() {
            let (mut ev, mut out) = (Vec::new(), Vec::new());
            let mut r = Reader::new(max);
            let used = feed_all(&mut r, &stream[..cut], &mut ev, &mut out);
            feed_all(&mut r, &stream[used..], &mut ev, &mut out);
            assert_eq!((&ev, &out), (&whole.0, &whole.1), "cut at {cut}");
        }
        whole
    }

    #[test]
    fn fragmented_messages_with_a_ping_between_them_arrive_whole() {
        let mut s = frame(0x01, "héllo ".as_bytes()); // text, not final
        s.extend(frame(0x89, b"are you there")); // a ping between fragments
        s.extend(frame(0x80, "wörld".as_bytes())); // the last continuation
        s.extend(frame(0x82, &[0, 1, 2, 255]));
        s.extend(frame(0x88, b"\x03\xe8bye"));
        s.extend(frame(0x81, b"after the close: never read"));
        let (ev, out) = run(&s, 1 << 20);
        assert_eq!(ev, vec![Event::Text("héllo wörld".into()), Event::Binary(vec![0, 1, 2, 255]), Event::Closed(Some(1000), "bye".into())]);
        let mut want = vec![0x8A, 13];
        want.extend_from_slice(b"are you there");
        want.extend_from_slice(&[0x88, 5, 0x03, 0xE8, b'b', b'y', b'e']);
        assert_eq!(out, want, "a Pong with the Ping's payload, then the Close echoed, reason and all");
    }

    #[test]
    fn broken_message_rules_end_the_connection_with_their_code() {
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (frame(0x80, b"x"), 1002),                                          // continuation with nothing open
            ([frame(0x01, b"a"), frame(0x81, b"b")].concat(), 1002),            // new message inside one
            (frame(0x81, b"\xce\xba\xff more"), 1007),                          // not UTF-8, found early
            ([frame(0x01, b"\xe2\x82"), frame(0x80, b"")].concat(), 1007),      // a character cut at the end
            (frame(0x88, b"\x03"), 1002),                                       // a one-byte close payload
            (frame(0x88, b"\x03\xed"), 1002),                                   // 1005 may not be sent
            ([frame(0x02, &[0; 100]), frame(0x80, &[0; 100])].concat(), 1009),  // message over the limit
        ];
        for (s, code) in cases {
            let (ev, out) = run(&s, 150);
            assert_eq!(ev.last(), Some(&Event::Failed(code)), "{s:02x?}");
            assert!(out.ends_with(&[0x88, 2, (code >> 8) as u8, code as u8]));
        }
        // A close with no code is answered with none, and the application sees None (1005).
        let (ev, out) = run(&frame(0x88, b""), 150);
        assert_eq!((ev, out), (vec![Event::Closed(None, String::new())], vec![0x88, 0]));
    }
}
