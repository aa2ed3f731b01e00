//! Every byte of an HTTP/1.1 response that is not body is written here: status lines, the
//! fields vw adds (Server, Date, framing, Connection), an application's fields (framing left
//! to us), the framing of a body sent in pieces (chunks, the last chunk, trailers), the small
//! generated responses (errors, redirects) and `100 Continue`. Static heads are built with
//! these functions once per file and kept; the per-second Date cache lives here too.


/// An IMF-fixdate, e.g. `Thu, 26 Nov 2026 16:31:53 GMT` (RFC 9110 §5.6.7).
pub const DATE_LEN: usize = 29;

pub fn http_date(unix: i64) -> [u8; DATE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] =
        [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = [0u8; DATE_LEN];
    out[..3].copy_from_slice(DAYS[days.rem_euclid(7) as usize]);
    out[3] = b',';
    out[4] = b' ';
    two(&mut out[5..7], d as u32);
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[(m - 1) as usize]);
    out[11] = b' ';
    let y = y.clamp(0, 9999) as u32;
    two(&mut out[12..14], y / 100);
    two(&mut out[14..16], y % 100);
    out[16] = b' ';
    two(&mut out[17..19], (secs / 3600) as u32);
    out[19] = b':';
    two(&mut out[20..22], ((secs / 60) % 60) as u32);
    out[22] = b':';
    two(&mut out[23..25], (secs % 60) as u32);
    out[25..].copy_from_slice(b" GMT");
    out
}

fn two(dst: &mut [u8], v: u32) {
    dst[0] = b'0' + (v / 10) as u8;
    dst[1] = b'0' + (v % 10) as u8;
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

/// The clock of one worker: the current second and its formatted Date, refreshed once per loop.
pub struct Clock {
    pub sec: i64,
    pub date: [u8; DATE_LEN],
}

impl Clock {
    pub fn new() -> Self {
        let sec = now_coarse();
        Clock { sec, date: http_date(sec) }
    }

    /// Re-read the coarse clock (a vDSO call, no syscall); reformat only when the second changes.
    #[inline]
    pub fn tick(&mut self) {
        let sec = now_coarse();
        if sec != self.sec {
            self.sec = sec;
            self.date = http_date(sec);
        }
    }

    #[cfg(test)]
    pub fn fixed(sec: i64) -> Self {
        Clock { sec, date: http_date(sec) }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Milliseconds until the coarse clock turns to the next second (at least 1).
pub fn ms_to_next_second() -> i32 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    (1000 - (ts.tv_nsec / 1_000_000) as i32).clamp(1, 1000) + 1
}

fn now_coarse() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    ts.tv_sec as i64
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// The fields vw adds to every response head (`Server: vw` unless `--no-server-header`, then
/// each `--header`), as one block and one by one; set once per worker, before anything is
/// served or prepared (a kept static head holds them).
struct Defaults {
    block: Vec<u8>,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
}

static DEFAULTS: std::sync::OnceLock<Defaults> = std::sync::OnceLock::new();

fn defaults() -> &'static Defaults {
    DEFAULTS.get_or_init(|| Defaults { block: b"Server: vw\r\n".to_vec(), fields: vec![(b"Server".to_vec(), b"vw".to_vec())] })
}

/// Set the default fields of this process's responses (names and values checked by the caller);
/// at most 32 extra. False when they were set already (or a response was made first).
pub fn set_defaults(server: bool, extra: &[(Vec<u8>, Vec<u8>)]) -> bool {
    let mut fields: Vec<(Vec<u8>, Vec<u8>)> = if server { vec![(b"Server".to_vec(), b"vw".to_vec())] } else { Vec::new() };
    fields.extend(extra.iter().take(32).cloned());
    let mut block = Vec::new();
    for (n, v) in &fields {
        block.extend_from_slice(n);
        block.extend_from_slice(b": ");
        block.extend_from_slice(v);
        block.extend_from_slice(b"\r\n");
    }
    DEFAULTS.set(Defaults { block, fields }).is_ok()
}

/// Write an application's header fields, leaving out those whose job is framing (vw frames the
/// body itself), then `Server` and `Date` unless the application gave them. Returns the value of
/// the application's Content-Length, if it gave one (the caller decides what to make of it).
pub fn app_headers<'h, N: AsRef<[u8]>, V: AsRef<[u8]>>(out: &mut Vec<u8>, headers: &'h [(N, V)], date: &[u8]) -> Option<&'h [u8]> {
    app_fields(headers, date, |name, value| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    })
}

/// The fields of an application's response head, in order, as [`app_headers`] writes them:
/// each given to `emit` (an HTTP/2 stream puts them in its HEADERS, less the other fields
/// HTTP/2 has no place for).
pub fn app_fields<'h, N: AsRef<[u8]>, V: AsRef<[u8]>>(headers: &'h [(N, V)], date: &[u8], mut emit: impl FnMut(&[u8], &[u8])) -> Option<&'h [u8]> {
    let d = defaults();
    // Which default fields the application gave itself (its own wins): a bit each.
    let (mut given, mut has_date, mut length) = (0u64, false, None);
    for (name, value) in headers {
        let (name, value) = (name.as_ref(), value.as_ref());
        if name.eq_ignore_ascii_case(b"content-length") {
            length = Some(value);
            continue;
        }
        if name.eq_ignore_ascii_case(b"connection") || name.eq_ignore_ascii_case(b"transfer-encoding") || name.eq_ignore_ascii_case(b"keep-alive") {
            continue;
        }
        for (i, (n, _)) in d.fields.iter().enumerate() {
            if name.eq_ignore_ascii_case(n) {
                given |= 1 << i;
            }
        }
        has_date |= name.eq_ignore_ascii_case(b"date");
        emit(name, value);
    }
    for (i, (n, v)) in d.fields.iter().enumerate() {
        if given & (1 << i) == 0 {
            emit(n, v);
        }
    }
    if !has_date {
        emit(b"Date", date);
    }
    length
}

/// The start of a head vw writes itself: the status line ("200 OK"), Server and Date. Returns
/// where the Date value starts in `out` (a kept head rewrites it each second).
pub fn head_start(out: &mut Vec<u8>, status_line: &[u8], date: &[u8]) -> usize {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status_line);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&defaults().block);
    out.extend_from_slice(b"Date: ");
    let at = out.len();
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n");
    at
}

/// The end of a head: Content-Length when given, the Connection line when given, the blank line.
pub fn head_end(out: &mut Vec<u8>, length: Option<u64>, conn: Option<&[u8]>) {
    if let Some(n) = length {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(line) = conn {
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b"\r\n");
}

/// The interim response a client that sent `Expect: 100-continue` waits for.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// "404 Not Found": the status line of a status.
pub fn status_line(status: u16) -> std::borrow::Cow<'static, [u8]> {
    match status {
        200 => std::borrow::Cow::Borrowed(b"200 OK"),
        _ => std::borrow::Cow::Owned(format!("{} {}", status, reason(status)).into_bytes()),
    }
}

/// Append a short plain-text response (errors, redirects). These are rare, so they are formatted.
/// `extra` is a block of complete header lines (each ending in CRLF).
/// `conn` is the Connection line to add, if any.
pub fn simple(out: &mut Vec<u8>, date: &[u8], status: u16, extra: &[u8], conn: Option<&[u8]>, head_only: bool) {
    simple_text(out, date, status, reason(status), extra, conn, head_only)
}

/// [`simple`] with a body of its own (a line of text).
pub fn simple_text(out: &mut Vec<u8>, date: &[u8], status: u16, reason: &str, extra: &[u8], conn: Option<&[u8]>, head_only: bool) {
    head_start(out, &status_line(status), date);
    out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(reason.len() + 1).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(extra);
    head_end(out, None, conn);
    if !head_only {
        out.extend_from_slice(reason.as_bytes());
        out.push(b'\n');
    }
}

/// A response whose fields come from an application: the status line and its fields, with
/// Server and Date unless it gave them. Returns the value of the Content-Length it gave, if any:
/// the caller chooses the framing and ends the head with [`framed_end`].
pub fn app_head_start<'h, N: AsRef<[u8]>, V: AsRef<[u8]>>(out: &mut Vec<u8>, status_line: &[u8], fields: &'h [(N, V)], date: &[u8]) -> Option<&'h [u8]> {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status_line);
    out.extend_from_slice(b"\r\n");
    app_headers(out, fields, date)
}

/// The 101 that makes a connection a WebSocket (RFC 6455 §4.2.2): the application's fields
/// (a subprotocol, cookies) except those the handshake owns, then Upgrade, Connection, the
/// accept key and the agreed extensions.
pub fn switching<N: AsRef<[u8]>, V: AsRef<[u8]>>(out: &mut Vec<u8>, fields: &[(N, V)], accept: &[u8], extensions: Option<&[u8]>, date: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    let owned = [&b"upgrade"[..], b"sec-websocket-accept", b"sec-websocket-extensions", b"content-length"];
    let theirs: Vec<(&[u8], &[u8])> = fields.iter().map(|(n, v)| (n.as_ref(), v.as_ref())).filter(|(n, _)| !owned.iter().any(|o| n.eq_ignore_ascii_case(o))).collect();
    app_headers(out, &theirs, date);
    out.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    out.extend_from_slice(accept);
    out.extend_from_slice(b"\r\n");
    if let Some(e) = extensions {
        out.extend_from_slice(b"Sec-WebSocket-Extensions: ");
        out.extend_from_slice(e);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// How a response's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body (1xx, 204, 304, or the answer to HEAD).
    None,
    Length(u64),
    Chunked,
    /// HTTP/1.0 without a length: the body ends with the connection.
    Close,
}

/// No body may follow a response with this status (RFC 9110 §6.4.1).
pub fn bodiless(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

/// End a head started with [`app_head_start`]: the framing field, the Connection line (close
/// for a close-delimited body), the blank line. `head_only`: the answer to HEAD, whose head
/// says how the GET body would be framed but which sends none. Returns the body's framing state.
pub fn framed_end(out: &mut Vec<u8>, framing: Framing, conn: Option<&[u8]>, head_only: bool) -> Streamed {
    let conn = if framing == Framing::Close { Some(CLOSE) } else { conn };
    match framing {
        Framing::Length(n) => head_end(out, Some(n), conn),
        Framing::Chunked => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            head_end(out, None, conn)
        }
        Framing::None | Framing::Close => head_end(out, None, conn),
    }
    let close = conn == Some(CLOSE);
    Streamed { framing: if head_only { Framing::None } else { framing }, sent: 0, close }
}

/// The line that starts a chunk of `len` bytes.
pub fn chunk_size(out: &mut Vec<u8>, len: u64) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = len;
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(n & 15) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// The framing state of a body sent in pieces.
pub struct Streamed {
    pub framing: Framing,
    pub sent: u64,
    /// The connection closes after this response (close-delimited, asked for, or the body
    /// broke its framing).
    pub close: bool,
}

impl Streamed {
    /// Frame one piece of the body into `out`. Bytes past a given Content-Length are dropped
    /// (and the connection then closes: the application broke its own framing).
    pub fn piece(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if data.is_empty() {
            return;
        }
        match self.framing {
            Framing::None => {}
            Framing::Length(n) => {
                let room = n.saturating_sub(self.sent) as usize;
                if data.len() > room {
                    self.close = true;
                }
                out.extend_from_slice(&data[..data.len().min(room)]);
            }
            Framing::Chunked => {
                chunk_size(out, data.len() as u64);
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
            Framing::Close => out.extend_from_slice(data),
        }
        self.sent += data.len() as u64;
    }

    /// The end of the body: the last chunk (with `trailers`, complete field lines, if any), or
    /// a close when the body fell short of its length.
    pub fn end(&mut self, trailers: &[u8], out: &mut Vec<u8>) {
        match self.framing {
            Framing::Chunked => {
                out.extend_from_slice(b"0\r\n");
                out.extend_from_slice(trailers);
                out.extend_from_slice(b"\r\n");
            }
            Framing::Length(n) if self.sent < n => self.close = true,
            Framing::Close => self.close = true,
            _ => {}
        }
    }

    /// True when a given length has been reached: the response is complete.
    pub fn complete(&self) -> bool {
        matches!(self.framing, Framing::Length(n) if self.sent >= n) || self.framing == Framing::None
    }
}

pub const CLOSE: &[u8] = b"Connection: close\r\n";
pub const KEEP_ALIVE: &[u8] = b"Connection: keep-alive\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_are_hex() {
        for (n, want) in [(0u64, "0\r\n"), (1, "1\r\n"), (15, "f\r\n"), (16, "10\r\n"), (65_535, "ffff\r\n"), (u64::MAX, "ffffffffffffffff\r\n")] {
            let mut v = Vec::new();
            chunk_size(&mut v, n);
            assert_eq!(String::from_utf8(v).unwrap(), want);
        }
    }

    #[test]
    fn dates() {
        assert_eq!(&http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&http_date(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&http_date(1_795_710_713), b"Thu, 26 Nov 2026 16:31:53 GMT");
        assert_eq!(&http_date(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn simple_response_is_well_formed() {
        let mut v = Vec::new();
        simple(&mut v, &Clock::fixed(0).date, 404, b"", None, false);
        let s = String::from_utf8(v).unwrap();
        assert!(s.starts_with("HTTP/1.1 404 Not Found\r\nServer: vw\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n"));
        assert!(s.ends_with("Content-Length: 10\r\n\r\nNot Found\n"));
        let mut v = Vec::new();
        simple(&mut v, &Clock::fixed(0).date, 405, b"Allow: GET, HEAD\r\n", Some(CLOSE), true);
        let s = String::from_utf8(v).unwrap();
        assert!(s.ends_with("Allow: GET, HEAD\r\nConnection: close\r\n\r\n"));
    }
}
