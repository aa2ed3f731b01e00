//! What the Python interfaces share: a response as an application gave it (status, headers,
//! body), the checks on what it may contain, and the request target split for PATH_INFO and
//! friends.

use crate::h1::encode::{self, Clock, Framing};
pub use crate::h1::encode::Streamed;
use crate::io::out::{OutQueue, Seg};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyString;
use std::borrow::Cow;
use std::os::fd::OwnedFd;
use std::rc::Rc;

/// A response as the application gave it, before it is framed.
pub struct Reply {
    pub status: u16,
    pub status_line: Cow<'static, [u8]>,
    pub headers: Vec<(Cow<'static, [u8]>, Cow<'static, [u8]>)>,
    pub body: Vec<u8>,
    /// A file to send after `body` (wsgi.file_wrapper): descriptor, offset, length.
    pub file: Option<(OwnedFd, u64, u64)>,
}

/// Why an application's response cannot go on the wire.
pub fn bad(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

pub fn is_token(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(|&c| crate::h1::body::is_tchar(c))
}

/// A field value may hold visible characters, spaces, tabs and obs-text: never CR, LF, NUL or
/// other control bytes, so nothing an application sets can split or add a header.
pub fn is_field_value(b: &[u8]) -> bool {
    b.iter().all(|&c| c == b'\t' || (c >= 0x20 && c != 0x7f))
}

impl Reply {
    pub fn new(status: u16) -> Self {
        Reply { status, status_line: status_text(status), headers: Vec::new(), body: Vec::new(), file: None }
    }

    /// Frame the whole response into `out`: status line, the application's headers (checked),
    /// Server and Date unless given, Content-Length from the real body, the Connection line.
    /// Returns the file to send after the bytes, if any.
    pub fn encode(self, date: &[u8], conn: Option<&[u8]>, head_only: bool, out: &mut Vec<u8>) -> Option<(OwnedFd, u64, u64)> {
        let body_len = self.body.len() as u64 + self.file.as_ref().map_or(0, |f| f.2);
        let given = given_length(encode::app_head_start(out, &self.status_line, &self.headers, date));
        let framing = match given {
            _ if encode::bodiless(self.status) => Framing::None,
            // HEAD: the application may say how long the GET body would be.
            Some(n) if head_only && body_len == 0 => Framing::Length(n),
            _ => Framing::Length(body_len),
        };
        encode::framed_end(out, framing, conn, head_only);
        if head_only || framing == Framing::None {
            return None;
        }
        out.extend_from_slice(&self.body);
        self.file.filter(|f| f.2 > 0)
    }

    /// The head of a response whose body follows in pieces (`Streamed::piece`), framed by the
    /// Content-Length the application gave, else chunked (HTTP/1.1), else by the close.
    pub fn encode_streamed(&self, date: &[u8], conn: Option<&'static [u8]>, minor: u8, out: &mut Vec<u8>) -> Streamed {
        let given = given_length(encode::app_head_start(out, &self.status_line, &self.headers, date));
        let framing = match given {
            _ if encode::bodiless(self.status) => Framing::None,
            Some(n) => Framing::Length(n),
            None if minor >= 1 => Framing::Chunked,
            None => Framing::Close,
        };
        encode::framed_end(out, framing, conn, false)
    }

    /// `encode` into the output queue.
    pub fn write(self, clock: &Clock, conn: Option<&[u8]>, head_only: bool, out: &mut OutQueue) {
        let file = self.encode(&clock.date, conn, head_only, out.owned_tail());
        if let Some((fd, off, len)) = file {
            out.push(Seg::File { fd: Rc::new(fd), off, len });
        }
    }
}

/// The Content-Length an application gave, as a number (0 when it is not one: the real body
/// then decides).
fn given_length(v: Option<&[u8]>) -> Option<u64> {
    v.map(|v| std::str::from_utf8(v).ok().and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0))
}

pub use crate::h1::encode::status_line as status_text;

pub const CONTENT_TYPE: Cow<'static, [u8]> = Cow::Borrowed(b"Content-Type");
pub const TEXT_PLAIN: Cow<'static, [u8]> = Cow::Borrowed(b"text/plain; charset=utf-8");

/// A 500, after logging the exception with its traceback.
pub fn internal_error(py: Python<'_>, err: PyErr, what: &str) -> Reply {
    eprintln!("vw: {what} raised an exception; answering 500");
    err.print(py);
    let mut r = Reply::new(500);
    r.headers.push((CONTENT_TYPE, TEXT_PLAIN));
    r.body = b"Internal Server Error\n".to_vec();
    r
}

/// PATH_INFO and friends: the path percent-decoded (bytes as latin-1, per PEP 3333).
pub fn split_target(target: &[u8]) -> (&[u8], &[u8]) {
    let path = crate::statics::request_path(target);
    let query = match target.iter().position(|&b| b == b'?') {
        Some(i) => {
            let q = &target[i + 1..];
            &q[..q.iter().position(|&b| b == b'#').unwrap_or(q.len())]
        }
        None => b"",
    };
    (path, query)
}

pub fn latin1<'py>(py: Python<'py>, b: &[u8]) -> Bound<'py, PyString> {
    if b.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        PyString::new(py, unsafe { std::str::from_utf8_unchecked(b) })
    } else {
        let s: String = b.iter().map(|&c| c as char).collect();
        PyString::new(py, &s)
    }
}

