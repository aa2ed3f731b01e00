//! One HTTP/2 stream's two crossings, shared by static answers (`conn`) and applications'
//! (`app`): its request as an HTTP/1.1-form head, and the body it sends: queued segments framed
//! as DATA within the stream's window, then END_STREAM, trailers, or a reset.

use crate::io::out::Seg;
use bytes::Bytes;
use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::task::{Context, Poll};

/// The most one DATA piece asks for at a time.
pub const PIECE: usize = 64 * 1024;

/// A response body on its way: what is left, and how the stream ends once it is out.
pub struct Outgoing {
    pub stream: h2::SendStream<Bytes>,
    pub body: VecDeque<Seg>,
    /// No more body will be queued: once `body` is out, the stream ends.
    pub complete: bool,
    /// Sent as a trailing HEADERS at the end.
    pub trailers: Option<http::HeaderMap>,
    /// The body is cut short (it fell short of its length, or the application failed): the
    /// stream is reset once what was queued is out, so the client cannot take it as whole.
    pub short: bool,
    /// Set once a short body is all framed: the reset waits for one more turn, since h2 drops
    /// a stream's unwritten frames when it is reset, and the connection writes them when polled.
    resetting: bool,
    /// The stream has ended (or the client reset it).
    pub ended: bool,
    /// Sending failed: the client reset the stream.
    pub gone: bool,
}

impl Outgoing {
    pub fn new(stream: h2::SendStream<Bytes>, complete: bool) -> Outgoing {
        Outgoing { stream, body: VecDeque::new(), complete, trailers: None, short: false, resetting: false, ended: false, gone: false }
    }

    /// Body bytes queued in memory (files are not counted: they are not held).
    pub fn queued_memory(&self) -> usize {
        self.body.iter().filter_map(Seg::memory).map(<[u8]>::len).sum()
    }

    /// Frame body as the stream's window allows, and end the stream once all is out; true if
    /// anything was framed.
    pub fn pump(&mut self, cx: &mut Context<'_>) -> bool {
        let mut framed = false;
        while !self.ended {
            let left: usize = self.body.iter().map(Seg::remaining).sum();
            if left == 0 {
                if !self.complete {
                    return framed; // more body comes from the application
                }
                if self.short && !self.resetting {
                    self.resetting = true; // what was framed goes out first
                    return true;
                }
                self.ended = true;
                if self.short {
                    self.stream.send_reset(h2::Reason::INTERNAL_ERROR);
                } else if let Some(t) = self.trailers.take() {
                    let _ = self.stream.send_trailers(t);
                } else {
                    let _ = self.stream.send_data(Bytes::new(), true);
                }
                return true;
            }
            self.stream.reserve_capacity(left.min(PIECE));
            let mut room = self.stream.capacity();
            if room == 0 {
                match self.stream.poll_capacity(cx) {
                    Poll::Ready(Some(Ok(n))) if n > 0 => room = n,
                    Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                        (self.ended, self.gone) = (true, true); // reset by the client
                        return framed;
                    }
                    _ => return framed, // wait for a WINDOW_UPDATE
                }
            }
            let Some(piece) = take(&mut self.body, room.min(PIECE)) else {
                self.stream.send_reset(h2::Reason::INTERNAL_ERROR); // a file could not be read
                self.ended = true;
                return true;
            };
            let last = self.complete && !self.short && self.trailers.is_none() && self.body.iter().all(|s| s.remaining() == 0);
            framed = true;
            if self.stream.send_data(piece, last).is_err() {
                (self.ended, self.gone) = (true, true);
                return framed;
            }
            self.ended = last;
        }
        framed
    }
}

/// Fields of an HTTP/1.1 message that HTTP/2 has no place for (RFC 9113 §8.2.2).
pub fn hop_by_hop(name: &[u8]) -> bool {
    [&b"connection"[..], b"keep-alive", b"transfer-encoding", b"upgrade", b"proxy-connection"].iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Up to `n` bytes from the front of a body (None: a file could not be read).
fn take(body: &mut VecDeque<Seg>, n: usize) -> Option<Bytes> {
    while body.front().is_some_and(|s| s.remaining() == 0) {
        body.pop_front();
    }
    let front = body.front_mut()?;
    let n = n.min(front.remaining());
    if let Seg::Owned { buf, start: 0 } = front {
        if buf.len() == n {
            // an application's piece, whole: handed over, not copied
            let v = std::mem::take(buf);
            body.pop_front();
            return Some(Bytes::from(v));
        }
    }
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

/// The HTTP/1.1 head that asks what an HTTP/2 request asks: `:authority` (or `host`) as Host,
/// the cookie fields joined into one (RFC 9113 §8.2.3), and for an application the
/// Content-Length the client gave (a static answer takes no body).
pub fn h1_head(req: &http::request::Parts, with_length: bool) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(req.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(req.uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    match req.uri.authority() {
        Some(a) => head.extend_from_slice(a.as_str().as_bytes()),
        None => head.extend_from_slice(req.headers.get(http::header::HOST).map_or(&b""[..], |h| h.as_bytes())),
    }
    head.extend_from_slice(b"\r\n");
    let mut cookies = req.headers.get_all(http::header::COOKIE).iter().peekable();
    if cookies.peek().is_some() {
        head.extend_from_slice(b"Cookie: ");
        for (i, c) in cookies.enumerate() {
            if i > 0 {
                head.extend_from_slice(b"; ");
            }
            head.extend_from_slice(c.as_bytes());
        }
        head.extend_from_slice(b"\r\n");
    }
    for (name, value) in &req.headers {
        let skip = name == http::header::HOST
            || name == http::header::COOKIE
            || (name == http::header::CONTENT_LENGTH && !with_length)
            || name == http::header::TRANSFER_ENCODING
            || hop_by_hop(name.as_str().as_bytes());
        if skip {
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
