//! A request as the connection hands it to an application: the head as parsed (with its
//! field index), and its body: in memory, spooled to an unnamed file when large, or streamed
//! through an [`Inbox`] as it arrives.

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::FromRawFd;

/// A request for the application. `head` holds the whole request head as received.
pub struct AppRequest<'a> {
    pub head: &'a [u8],
    /// Where the head's fields are (parsed once, with the head).
    pub fields: &'a [crate::h1::parse::Field],
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub minor: u8,
    /// The client: the connection's peer, or the one a trusted proxy named (`service::proxy`).
    pub peer: Option<SocketAddr>,
    /// The scheme a trusted proxy said the client used (true: https or wss); None: the
    /// connection's own (https with TLS).
    pub https: Option<bool>,
    pub local_port: u16,
    /// The connection's TLS (None: plain TCP).
    pub tls: Option<std::sync::Arc<crate::tls::TlsInfo>>,
    /// The request came over HTTP/2 (`head` is then made of its fields in HTTP/1.1 form, and
    /// `minor` is 1).
    pub http2: bool,
    /// The connection (or HTTP/2 stream): (descriptor, generation), to report output for it
    /// later.
    pub conn_id: (i32, u64),
}

impl AppRequest<'_> {
    /// The fields of the head, in order. The head was validated when it was parsed.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        crate::h1::parse::FieldIndex { head: self.head, fields: self.fields }.iter()
    }
}

/// A request body: complete, or arriving.
pub enum ReqBody {
    Empty,
    Mem(Vec<u8>),
    /// Spooled to an unlinked temporary file, rewound; the length is known.
    File(std::fs::File, u64),
    /// Streamed: the connection puts the body here as it arrives, the application takes it.
    Stream(std::sync::Arc<Inbox>),
}

/// Unread body the application may hold before the connection stops reading the socket.
pub const INBOX_HIGH: usize = 256 * 1024;

/// A request body on its way from the connection (the loop's thread) to the application (a
/// handler thread, or the ASGI task): bounded, so the socket is not read further while the
/// application has `INBOX_HIGH` bytes it has not taken.
#[derive(Default)]
pub struct Inbox {
    state: std::sync::Mutex<InboxState>,
    ready: std::sync::Condvar,
    /// Tells the connection's loop that the application asked for body (the first time: send
    /// 100 Continue) or made room: set by the application side.
    waker: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

#[derive(Default)]
struct InboxState {
    chunks: std::collections::VecDeque<Vec<u8>>,
    len: usize,
    /// The whole body is in.
    done: bool,
    /// It never will be: the client left or broke the framing.
    broken: bool,
    /// The application asked for body while there was none (not yet told to the loop).
    asked: bool,
    /// The application asked at least once.
    ever_asked: bool,
}

/// What a take found.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// Bytes (maybe more to come).
    Data(Vec<u8>),
    /// Nothing yet: wait.
    Empty,
    /// The end of the body.
    End,
    /// The body is incomplete and will stay so.
    Broken,
}

impl Inbox {
    pub fn set_waker(&self, f: Box<dyn Fn() + Send + Sync>) {
        let _ = self.waker.set(f);
    }

    /// Connection side: body bytes arrived.
    pub fn push(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let mut s = self.state.lock().unwrap();
        s.len += data.len();
        s.chunks.push_back(data.to_vec());
        self.ready.notify_all();
    }

    /// Connection side: the body ended (`broken`: it will never be complete).
    pub fn end(&self, broken: bool) {
        let mut s = self.state.lock().unwrap();
        if !s.done {
            s.done = true;
            s.broken = broken;
        }
        self.ready.notify_all();
    }

    pub fn has_room(&self) -> bool {
        self.state.lock().unwrap().len < INBOX_HIGH
    }

    /// Connection side: whether the application asked for body since the last look (and
    /// whether it ever did).
    pub fn asked(&self) -> (bool, bool) {
        let mut s = self.state.lock().unwrap();
        (std::mem::take(&mut s.asked), s.ever_asked)
    }

    /// Application side: up to `max` bytes, without waiting; the waker is called when the
    /// loop must hear of it.
    pub fn take(&self, max: usize) -> Taken {
        let (taken, wake) = self.take_flag(max);
        if wake {
            if let Some(w) = self.waker.get() {
                w();
            }
        }
        taken
    }

    /// `take`, returning whether the loop must hear of it instead of calling the waker.
    pub fn take_flag(&self, max: usize) -> (Taken, bool) {
        {
            let mut s = self.state.lock().unwrap();
            let was_full = s.len >= INBOX_HIGH;
            let first = !s.ever_asked;
            s.ever_asked = true;
            if s.chunks.is_empty() {
                let t = if s.broken { Taken::Broken } else if s.done { Taken::End } else { Taken::Empty };
                let ask = t == Taken::Empty && !s.asked;
                s.asked |= ask;
                (t, ask || first)
            } else {
                let mut out = Vec::new();
                while let Some(front) = s.chunks.front_mut() {
                    let want = max - out.len();
                    if front.len() <= want {
                        let c = s.chunks.pop_front().unwrap();
                        if out.is_empty() {
                            out = c;
                        } else {
                            out.extend_from_slice(&c);
                        }
                    } else {
                        out.extend_from_slice(&front[..want]);
                        front.drain(..want);
                    }
                    if out.len() >= max {
                        break;
                    }
                }
                s.len -= out.len();
                (Taken::Data(out), first || (was_full && s.len < INBOX_HIGH))
            }
        }
    }

    /// The whole body is in and taken.
    pub fn at_end(&self) -> bool {
        let s = self.state.lock().unwrap();
        s.done && s.chunks.is_empty()
    }

    /// Application side, for an application that needs the whole body (vw.App's
    /// `request.body`): wait for it all, without the GIL.
    pub fn read_all(&self, py: pyo3::Python<'_>) -> Result<Vec<u8>, &'static str> {
        let mut all = Vec::new();
        loop {
            match self.take(usize::MAX) {
                Taken::Data(d) => all.extend_from_slice(&d),
                Taken::End => return Ok(all),
                Taken::Broken => return Err("the request body is incomplete: the client ended it or broke its framing"),
                Taken::Empty => py.detach(|| self.wait()),
            }
        }
    }

    /// Application side: wait until there is body, or its end (the caller has let go of the
    /// GIL).
    pub fn wait(&self) {
        let mut s = self.state.lock().unwrap();
        while s.chunks.is_empty() && !s.done {
            s = self.ready.wait(s).unwrap();
        }
    }

}

/// Collects a body as it arrives: in memory up to `spool_over` bytes, then in a temporary file,
/// so a large upload never sits in the worker's memory.
pub struct BodySink {
    mem: Vec<u8>,
    file: Option<std::fs::File>,
    len: u64,
    spool_over: usize,
    pub failed: bool,
}

impl BodySink {
    pub fn new(spool_over: usize) -> Self {
        BodySink { mem: Vec::new(), file: None, len: 0, spool_over, failed: false }
    }

    pub fn push(&mut self, data: &[u8]) {
        if data.is_empty() || self.failed {
            return;
        }
        self.len += data.len() as u64;
        if self.file.is_none() && self.mem.len() + data.len() <= self.spool_over {
            self.mem.extend_from_slice(data);
            return;
        }
        if self.file.is_none() {
            match temp_file() {
                Ok(mut f) => {
                    if f.write_all(&self.mem).is_err() {
                        self.failed = true;
                        return;
                    }
                    self.mem = Vec::new();
                    self.file = Some(f);
                }
                Err(_) => {
                    self.failed = true;
                    return;
                }
            }
        }
        if let Some(f) = &mut self.file {
            if f.write_all(data).is_err() {
                self.failed = true;
            }
        }
    }

    pub fn finish(self) -> ReqBody {
        use std::io::Seek;
        match self.file {
            Some(mut f) => {
                let _ = f.rewind();
                ReqBody::File(f, self.len)
            }
            None if self.mem.is_empty() => ReqBody::Empty,
            None => ReqBody::Mem(self.mem),
        }
    }
}

/// An unnamed file in the temporary directory (O_TMPFILE): it disappears with its descriptor.
pub(crate) fn temp_file() -> std::io::Result<std::fs::File> {
    let dir = std::env::var_os("TMPDIR").unwrap_or_else(|| "/tmp".into());
    let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str()))?;
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC, 0o600) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn sink_spools_past_the_threshold() {
        let mut s = BodySink::new(10);
        s.push(b"hello");
        s.push(b"world");
        assert!(matches!(s.finish(), ReqBody::Mem(ref v) if v == b"helloworld"));
        let mut s = BodySink::new(10);
        s.push(b"hello");
        s.push(b"world!");
        s.push(b"more");
        match s.finish() {
            ReqBody::File(mut f, n) => {
                let mut v = Vec::new();
                f.read_to_end(&mut v).unwrap();
                assert_eq!(v, b"helloworld!more");
                assert_eq!(n, 15);
            }
            _ => panic!("expected a file"),
        }
        assert!(matches!(BodySink::new(10).finish(), ReqBody::Empty));
    }

    #[test]
    fn headers_are_listed() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nX-A: 2\r\n\r\n";
        let mut fields = Vec::new();
        crate::h1::parse::parse_head(head, &crate::h1::parse::Limits::default(), &mut fields).unwrap().unwrap();
        let r = AppRequest { head, fields: &fields, method: b"GET", target: b"/", minor: 1, peer: None, https: None, local_port: 80, tls: None, http2: false, conn_id: (0, 0) };
        let h: Vec<_> = r.headers().collect();
        assert_eq!(h, vec![(&b"Host"[..], &b"a"[..]), (b"X-A", b"1"), (b"X-A", b"2")]);
    }
}
