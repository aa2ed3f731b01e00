//! What the worker tells about its responses: counters for /metrics, kept in this worker's slot
//! of a memory region shared with the supervisor (which sums the slots on a scrape), and the
//! access log, formatted here and written in batches (never one write per request).

use crate::h1::encode::civil_from_days;
use crate::io::sys::errno;
use std::ffi::CString;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds (µs) of the latency histogram buckets; one more bucket counts the rest.
pub const BUCKETS_US: [u64; 10] = [100, 500, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000, 5_000_000];

/// The words of one worker's slot (u64 each).
pub mod slot {
    /// Responses by status class: 1xx at 0 ... 5xx at 4.
    pub const CLASSES: usize = 0;
    pub const BYTES: usize = 5;
    pub const OPEN: usize = 6;
    pub const ACCEPTED: usize = 7;
    pub const LATENCY_SUM_US: usize = 8;
    /// Non-cumulative counts, one per bucket of BUCKETS_US, then the +Inf bucket.
    pub const LATENCY_BUCKETS: usize = 9;
    /// Responses sent over HTTP/2 (the rest of CLASSES went over HTTP/1.x).
    pub const H2: usize = 20;
    /// TLS handshakes completed.
    pub const TLS: usize = 21;
    /// The worker's heartbeat: CLOCK_MONOTONIC in ms at its loop's last turn over a second
    /// (the supervisor replaces a worker whose loop stopped turning: `--worker-timeout`).
    pub const HEARTBEAT_MS: usize = 22;
    pub const WORDS: usize = 32;
}

/// One worker's counters. Single writer (this worker), so an update is a relaxed load and
/// store, no locked instruction; the supervisor reads them whenever it likes.
pub struct Counters {
    words: *const AtomicU64,
    _own: Option<Box<[AtomicU64]>>,
}

// SAFETY: the words are atomics; the shared region outlives the worker (inherited mapping).
unsafe impl Send for Counters {}

impl Counters {
    /// Counters private to this process (no supervisor reads them: tests, or no region given).
    pub fn local() -> Self {
        let own: Box<[AtomicU64]> = (0..slot::WORDS).map(|_| AtomicU64::new(0)).collect();
        Counters { words: own.as_ptr(), _own: Some(own) }
    }

    /// Counters in a shared region at `addr` (u64-aligned, `slot::WORDS` words).
    ///
    /// # Safety
    /// `addr` must point to a writable mapping of at least `slot::WORDS` u64 that stays mapped
    /// for the life of the process.
    pub unsafe fn at(addr: usize) -> Self {
        assert!(addr != 0 && addr % 8 == 0, "stats slot must be 8-byte aligned");
        Counters { words: addr as *const AtomicU64, _own: None }
    }

    fn add(&self, i: usize, n: u64) {
        debug_assert!(i < slot::WORDS);
        let w = unsafe { &*self.words.add(i) };
        w.store(w.load(Relaxed).wrapping_add(n), Relaxed);
    }

    pub fn get(&self, i: usize) -> u64 {
        unsafe { &*self.words.add(i) }.load(Relaxed)
    }

    pub fn response(&self, status: u16, bytes: u64, micros: u64) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.add(slot::CLASSES + class, 1);
        self.add(slot::BYTES, bytes);
        if micros == 0 {
            self.add(slot::LATENCY_BUCKETS, 1); // a static answer: the common case, one add
            return;
        }
        self.add(slot::LATENCY_SUM_US, micros);
        let b = BUCKETS_US.iter().position(|&ub| micros <= ub).unwrap_or(BUCKETS_US.len());
        self.add(slot::LATENCY_BUCKETS + b, 1);
    }

    /// The loop turned (at least once a second, even idle).
    pub fn heartbeat(&self) {
        let w = unsafe { &*self.words.add(slot::HEARTBEAT_MS) };
        w.store(now_ns() / 1_000_000, Relaxed);
    }

    pub fn h2_response(&self) {
        self.add(slot::H2, 1);
    }

    pub fn tls_handshake(&self) {
        self.add(slot::TLS, 1);
    }

    pub fn opened(&self) {
        self.add(slot::OPEN, 1);
        self.add(slot::ACCEPTED, 1);
    }

    pub fn closed(&self) {
        let w = unsafe { &*self.words.add(slot::OPEN) };
        w.store(w.load(Relaxed).saturating_sub(1), Relaxed);
    }
}

pub fn now_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `host - - [time] "request" status bytes seconds`
    Common,
    /// common, then `"referer" "user-agent"`, then seconds
    Combined,
    /// one JSON object per line
    Json,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "common" => Some(Format::Common),
            "combined" => Some(Format::Combined),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// One response, as the access log sees it. Request fields are the bytes the client sent.
pub struct Entry<'a> {
    pub peer: Option<SocketAddr>,
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub minor: u8,
    pub status: u16,
    pub bytes: u64,
    pub micros: u64,
    pub referer: &'a [u8],
    pub user_agent: &'a [u8],
}

/// The request fields a log entry needs, copied for a response that is finished later.
#[derive(Default, Clone)]
pub struct OwnedRequest {
    pub method: Vec<u8>,
    pub target: Vec<u8>,
    pub minor: u8,
    pub referer: Vec<u8>,
    pub user_agent: Vec<u8>,
}

impl OwnedRequest {
    /// From a request head: the method and target ranges, and the two fields the formats use.
    pub fn from_head(head: crate::h1::parse::FieldIndex<'_>, method: &[u8], target: &[u8], minor: u8) -> Self {
        let (referer, user_agent) = referer_and_agent(head.iter());
        OwnedRequest { method: method.to_vec(), target: target.to_vec(), minor, referer: referer.to_vec(), user_agent: user_agent.to_vec() }
    }

    pub fn entry(&self, peer: Option<SocketAddr>, status: u16, bytes: u64, micros: u64) -> Entry<'_> {
        Entry {
            peer,
            method: &self.method,
            target: &self.target,
            minor: self.minor,
            status,
            bytes,
            micros,
            referer: &self.referer,
            user_agent: &self.user_agent,
        }
    }
}

/// The Referer and User-Agent among a request's fields (empty when absent).
pub fn referer_and_agent<'a>(fields: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> (&'a [u8], &'a [u8]) {
    let (mut referer, mut agent): (&[u8], &[u8]) = (b"", b"");
    for (name, value) in fields {
        if name.eq_ignore_ascii_case(b"referer") {
            referer = value;
        } else if name.eq_ignore_ascii_case(b"user-agent") {
            agent = value;
        }
    }
    (referer, agent)
}

/// The access log of one worker: lines gathered in a buffer, written when it passes 64 KiB, once
/// a second, and at exit; reopened (for logrotate) on SIGUSR1.
pub struct AccessLog {
    /// None: standard output.
    path: Option<CString>,
    fd: i32,
    pub format: Format,
    buf: Vec<u8>,
    /// The second `stamp` was made for, and the time as each format writes it.
    sec: i64,
    stamp_clf: Vec<u8>,
    stamp_iso: Vec<u8>,
}

const FLUSH_AT: usize = 64 * 1024;

impl AccessLog {
    pub fn open(path: Option<&str>, format: Format) -> std::io::Result<Self> {
        let path = match path {
            None | Some("-") => None,
            Some(p) => Some(CString::new(p).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?),
        };
        let mut log = AccessLog { path, fd: 1, format, buf: Vec::with_capacity(FLUSH_AT * 2), sec: i64::MIN, stamp_clf: Vec::new(), stamp_iso: Vec::new() };
        log.fd = log.open_fd()?;
        Ok(log)
    }

    fn open_fd(&self) -> std::io::Result<i32> {
        match &self.path {
            None => Ok(1),
            Some(p) => {
                let fd = unsafe { libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC, 0o644) };
                if fd < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(fd)
                }
            }
        }
    }

    /// After logrotate renamed the file: write what is buffered to the old one, open the path anew.
    pub fn reopen(&mut self) {
        self.flush();
        if self.path.is_none() {
            return;
        }
        match self.open_fd() {
            Ok(fd) => {
                unsafe { libc::close(self.fd) };
                self.fd = fd;
            }
            Err(e) => eprintln!("vw: cannot reopen the access log: {e}; still writing to the old file"),
        }
    }

    pub fn flush(&mut self) {
        let mut done = 0;
        // Standard output may be a pipe shared by every worker: there a write is atomic only up
        // to PIPE_BUF (4096 bytes), so batches are cut at line ends below it (a file opened with
        // O_APPEND takes each write whole).
        let piece = if self.path.is_none() { 4096 } else { usize::MAX };
        while done < self.buf.len() {
            let rest = &self.buf[done..];
            let len = if rest.len() <= piece {
                rest.len()
            } else {
                rest[..piece].iter().rposition(|&b| b == b'\n').map_or(piece, |i| i + 1)
            };
            let n = unsafe { libc::write(self.fd, rest.as_ptr() as *const _, len) };
            if n < 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                break; // a full disk or a closed pipe: the lines are dropped, serving goes on
            }
            done += n as usize;
        }
        self.buf.clear();
    }

    pub fn record(&mut self, e: &Entry<'_>, unix_sec: i64) {
        if unix_sec != self.sec {
            self.stamp(unix_sec);
        }
        let b = &mut self.buf;
        match self.format {
            Format::Common | Format::Combined => {
                match e.peer {
                    Some(p) => push_display(b, p.ip()),
                    None => b.push(b'-'),
                }
                b.extend_from_slice(b" - - [");
                b.extend_from_slice(&self.stamp_clf);
                b.extend_from_slice(b"] \"");
                if e.method.is_empty() {
                    b.push(b'-');
                } else {
                    escape_clf(b, e.method);
                    b.push(b' ');
                    escape_clf(b, e.target);
                    b.extend_from_slice(match e.minor {
                        0 => b" HTTP/1.0",
                        2 => b" HTTP/2.0", // (an HTTP/2 request, answered through its HTTP/1.1 twin)
                        _ => b" HTTP/1.1",
                    });
                }
                b.extend_from_slice(b"\" ");
                push_u64(b, e.status as u64);
                b.push(b' ');
                push_u64(b, e.bytes);
                if self.format == Format::Combined {
                    b.extend_from_slice(b" \"");
                    escape_clf(b, if e.referer.is_empty() { b"-" } else { e.referer });
                    b.extend_from_slice(b"\" \"");
                    escape_clf(b, if e.user_agent.is_empty() { b"-" } else { e.user_agent });
                    b.push(b'"');
                }
                b.push(b' ');
                push_seconds(b, e.micros);
                b.push(b'\n');
            }
            Format::Json => {
                b.extend_from_slice(b"{\"time\":\"");
                b.extend_from_slice(&self.stamp_iso);
                b.extend_from_slice(b"\",\"remote\":\"");
                if let Some(p) = e.peer {
                    push_display(b, p.ip());
                }
                b.extend_from_slice(b"\",\"method\":\"");
                escape_json(b, e.method);
                b.extend_from_slice(b"\",\"target\":\"");
                escape_json(b, e.target);
                b.extend_from_slice(match e.minor {
                    0 => b"\",\"protocol\":\"HTTP/1.0\",\"status\":",
                    2 => b"\",\"protocol\":\"HTTP/2.0\",\"status\":",
                    _ => b"\",\"protocol\":\"HTTP/1.1\",\"status\":",
                });
                push_u64(b, e.status as u64);
                b.extend_from_slice(b",\"bytes\":");
                push_u64(b, e.bytes);
                b.extend_from_slice(b",\"duration_us\":");
                push_u64(b, e.micros);
                b.extend_from_slice(b",\"referer\":\"");
                escape_json(b, e.referer);
                b.extend_from_slice(b"\",\"user_agent\":\"");
                escape_json(b, e.user_agent);
                b.extend_from_slice(b"\"}\n");
            }
        }
        if self.buf.len() >= FLUSH_AT {
            self.flush();
        }
    }

    fn stamp(&mut self, unix_sec: i64) {
        const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        let (y, mo, d) = civil_from_days(unix_sec.div_euclid(86400));
        let s = unix_sec.rem_euclid(86400);
        let (h, mi, se) = (s / 3600, s % 3600 / 60, s % 60);
        self.stamp_clf = format!("{d:02}/{}/{y:04}:{h:02}:{mi:02}:{se:02} +0000", MONTHS[mo as usize - 1]).into_bytes();
        self.stamp_iso = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}Z").into_bytes();
        self.sec = unix_sec;
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
        if self.fd > 2 {
            unsafe { libc::close(self.fd) };
        }
    }
}

fn push_display(b: &mut Vec<u8>, v: impl std::fmt::Display) {
    use std::io::Write;
    let _ = write!(b, "{v}");
}

fn push_u64(b: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    b.extend_from_slice(&tmp[i..]);
}

/// Seconds with microseconds: 0.000123
fn push_seconds(b: &mut Vec<u8>, micros: u64) {
    push_u64(b, micros / 1_000_000);
    b.push(b'.');
    let frac = micros % 1_000_000;
    let mut tmp = [b'0'; 6];
    let mut f = frac;
    for i in (0..6).rev() {
        tmp[i] = b'0' + (f % 10) as u8;
        f /= 10;
    }
    b.extend_from_slice(&tmp);
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Inside a quoted field of a common/combined line: control bytes, DEL, bytes above 0x7e, `"`
/// and `\` become `\xHH`, so no client can end the field, the line, or fake an entry.
fn escape_clf(b: &mut Vec<u8>, v: &[u8]) {
    for &c in v {
        if c < 0x20 || c >= 0x7f || c == b'"' || c == b'\\' {
            b.extend_from_slice(&[b'\\', b'x', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]);
        } else {
            b.push(c);
        }
    }
}

/// Inside a JSON string: `"` and `\` escaped, every other byte outside printable ASCII written as
/// `\u00HH` (so the line is valid JSON, and valid UTF-8, whatever the client sent).
fn escape_json(b: &mut Vec<u8>, v: &[u8]) {
    for &c in v {
        match c {
            b'"' => b.extend_from_slice(b"\\\""),
            b'\\' => b.extend_from_slice(b"\\\\"),
            0x20..=0x7e => b.push(c),
            _ => b.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(format: Format, e: &Entry<'_>) -> String {
        let mut log = AccessLog { path: None, fd: -1, format, buf: Vec::new(), sec: i64::MIN, stamp_clf: Vec::new(), stamp_iso: Vec::new() };
        log.record(e, 784111777);
        let s = String::from_utf8(log.buf.clone()).unwrap();
        log.buf.clear();
        s
    }

    fn entry<'a>(target: &'a [u8], ua: &'a [u8]) -> Entry<'a> {
        Entry {
            peer: Some("127.0.0.1:5000".parse().unwrap()),
            method: b"GET",
            target,
            minor: 1,
            status: 200,
            bytes: 1234,
            micros: 1500,
            referer: b"",
            user_agent: ua,
        }
    }

    #[test]
    fn formats() {
        let e = entry(b"/a?b=1", b"curl/8");
        assert_eq!(line(Format::Common, &e), "127.0.0.1 - - [06/Nov/1994:08:49:37 +0000] \"GET /a?b=1 HTTP/1.1\" 200 1234 0.001500\n");
        assert_eq!(line(Format::Combined, &e), "127.0.0.1 - - [06/Nov/1994:08:49:37 +0000] \"GET /a?b=1 HTTP/1.1\" 200 1234 \"-\" \"curl/8\" 0.001500\n");
        assert_eq!(
            line(Format::Json, &e),
            "{\"time\":\"1994-11-06T08:49:37Z\",\"remote\":\"127.0.0.1\",\"method\":\"GET\",\"target\":\"/a?b=1\",\"protocol\":\"HTTP/1.1\",\"status\":200,\"bytes\":1234,\"duration_us\":1500,\"referer\":\"\",\"user_agent\":\"curl/8\"}\n"
        );
    }

    #[test]
    fn injection_is_escaped() {
        let e = entry(b"/x\" 200 0\n1.2.3.4 - - [fake]", b"ua\x1b[31m\\\xff");
        let clf = line(Format::Combined, &e);
        assert_eq!(clf.matches('\n').count(), 1, "{clf}");
        assert!(clf.contains("/x\\x22 200 0\\x0a1.2.3.4") && clf.contains("ua\\x1b[31m\\x5c\\xff"), "{clf}");
        let json = line(Format::Json, &e);
        assert_eq!(json.matches('\n').count(), 1);
        assert!(json.contains(r#"/x\" 200 0\u000a1.2.3.4"#) && json.contains(r#"ua\u001b[31m\\\u00ff"#), "{json}");
    }

    #[test]
    fn counters() {
        let c = Counters::local();
        c.response(200, 10, 50);
        c.response(404, 5, 700);
        c.response(503, 1, 10_000_000);
        c.opened();
        c.opened();
        c.closed();
        assert_eq!((c.get(slot::CLASSES + 1), c.get(slot::CLASSES + 3), c.get(slot::CLASSES + 4)), (1, 1, 1));
        assert_eq!(c.get(slot::BYTES), 16);
        assert_eq!((c.get(slot::OPEN), c.get(slot::ACCEPTED)), (1, 2));
        assert_eq!(c.get(slot::LATENCY_BUCKETS), 1);
        assert_eq!(c.get(slot::LATENCY_BUCKETS + 2), 1);
        assert_eq!(c.get(slot::LATENCY_BUCKETS + BUCKETS_US.len()), 1);
        assert!(slot::LATENCY_BUCKETS + BUCKETS_US.len() < slot::WORDS);
    }
}
