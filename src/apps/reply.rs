//! What the Python interfaces share: a response as an application gave it (status, headers,
//! body), the checks on what it may contain, and the request target split for PATH_INFO and
//! friends.

use super::exchange::{Exchange, Part, ResponseHead};
use super::AppCall;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyString;
use std::borrow::Cow;
use std::os::fd::OwnedFd;

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

    /// The Content-Length the application gave, if any (0 when it is not a number: the real
    /// body then decides).
    fn given_length(&self) -> Option<u64> {
        let v = self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(b"content-length"))?;
        Some(std::str::from_utf8(&v.1).ok().and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0))
    }

    /// The whole response as parts, its length the real body's (to HEAD with no body: the
    /// length the application gave, the GET's).
    pub fn into_parts(self, head_only: bool, parts: &mut Vec<Part>) {
        let given = self.given_length();
        let file = self.file.filter(|f| f.2 > 0);
        let body_len = self.body.len() as u64 + file.as_ref().map_or(0, |f| f.2);
        let length = match given {
            Some(n) if head_only && body_len == 0 => n,
            _ => body_len,
        };
        parts.push(Part::Head(ResponseHead { status: self.status, status_line: self.status_line, fields: self.headers, length: Some(length) }));
        if !self.body.is_empty() {
            parts.push(Part::Body(self.body));
        }
        if let Some((fd, off, len)) = file {
            parts.push(Part::File { fd, off, len });
        }
        parts.push(Part::End { trailers: Vec::new() });
    }

    /// The head of a response whose body follows in pieces: framed by the Content-Length the
    /// application gave, else chunked (HTTP/1.1), else by the close.
    pub fn stream_head(self) -> ResponseHead {
        let length = self.given_length();
        ResponseHead { status: self.status, status_line: self.status_line, fields: self.headers, length }
    }

    /// The whole response as parts, for a GET.
    pub fn parts(self) -> Vec<Part> {
        let mut parts = Vec::with_capacity(3);
        self.into_parts(false, &mut parts);
        parts
    }

    /// The whole response, into an exchange.
    pub fn into_exchange(self, head_only: bool, ex: &mut Exchange) {
        self.into_parts(head_only, &mut ex.parts);
    }

    /// The whole response, now.
    pub fn answer(self, head_only: bool) -> AppCall {
        let mut parts = Vec::with_capacity(3);
        self.into_parts(head_only, &mut parts);
        AppCall::Answer(parts)
    }
}

pub use crate::h1::encode::status_line as status_text;

pub const CONTENT_TYPE: Cow<'static, [u8]> = Cow::Borrowed(b"Content-Type");
pub const TEXT_PLAIN: Cow<'static, [u8]> = Cow::Borrowed(b"text/plain; charset=utf-8");

/// A 500, after logging the exception with its traceback.
pub fn internal_error(py: Python<'_>, err: PyErr, what: &str) -> Reply {
    log_exception(py, &format!("vw: {what} raised an exception; answering 500"), err);
    server_error()
}

/// An application's exception and its traceback, through Python's `logging` (the logger
/// `vw.error`: `vw.console.app_exception`), so a JSON log pipeline gets it whole; printed raw
/// only if that fails.
pub fn log_exception(py: Python<'_>, message: &str, err: PyErr) {
    let value = err.clone_ref(py).into_value(py);
    let logged = py.import("vw.console").and_then(|m| m.call_method1("app_exception", (message, value)));
    if logged.is_err() {
        eprintln!("{message}");
        err.print(py);
    }
}

/// The 500 vw answers for an application that failed.
pub fn server_error() -> Reply {
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

