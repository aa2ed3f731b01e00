//! What the Python interfaces share: a response as an application gave it (status, headers,
//! body), the checks on what it may contain, and the request target split for PATH_INFO and
//! friends.

use crate::response::{reason, Clock, OutQueue, Seg};
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
    !b.is_empty() && b.iter().all(|&c| crate::body::is_tchar(c))
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

    /// Frame the response: status line, the application's headers (checked), Server and Date
    /// unless given, Content-Length from the real body, the Connection line.
    pub fn write(self, clock: &Clock, conn: Option<&[u8]>, head_only: bool, out: &mut OutQueue) {
        let no_body = self.status < 200 || self.status == 204 || self.status == 304;
        let body_len = self.body.len() as u64 + self.file.as_ref().map_or(0, |f| f.2);
        let t = out.owned_tail();
        t.extend_from_slice(b"HTTP/1.1 ");
        t.extend_from_slice(&self.status_line);
        t.extend_from_slice(b"\r\n");
        let given_length = crate::response::app_headers(t, &self.headers, &clock.date);
        if !no_body {
            t.extend_from_slice(b"Content-Length: ");
            match given_length {
                // HEAD: the application may say how long the GET body would be.
                Some(v) if head_only && body_len == 0 => match std::str::from_utf8(v).ok().and_then(|v| v.trim().parse::<u64>().ok()) {
                    Some(n) => t.extend_from_slice(n.to_string().as_bytes()),
                    None => t.push(b'0'),
                },
                _ => t.extend_from_slice(body_len.to_string().as_bytes()),
            }
            t.extend_from_slice(b"\r\n");
        }
        if let Some(line) = conn {
            t.extend_from_slice(line);
        }
        t.extend_from_slice(b"\r\n");
        if head_only || no_body {
            return;
        }
        t.extend_from_slice(&self.body);
        if let Some((fd, off, len)) = self.file {
            if len > 0 {
                out.push(Seg::File { fd: Rc::new(fd), off, len });
            }
        }
    }
}

pub fn status_text(status: u16) -> Cow<'static, [u8]> {
    match status {
        200 => Cow::Borrowed(b"200 OK"),
        _ => Cow::Owned(format!("{} {}", status, reason(status)).into_bytes()),
    }
}

pub const CONTENT_TYPE: Cow<'static, [u8]> = Cow::Borrowed(b"Content-Type");
pub const TEXT_PLAIN: Cow<'static, [u8]> = Cow::Borrowed(b"text/plain; charset=utf-8");

/// Append a 500 after logging the exception with its traceback.
pub fn internal_error(py: Python<'_>, err: PyErr, what: &str, clock: &Clock, conn: Option<&[u8]>, head_only: bool, out: &mut OutQueue) {
    eprintln!("vw: {what} raised an exception; answering 500");
    err.print(py);
    let mut r = Reply::new(500);
    r.headers.push((CONTENT_TYPE, TEXT_PLAIN));
    r.body = b"Internal Server Error\n".to_vec();
    r.write(clock, conn, head_only, out);
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

