//! Request head parsing: httparse for the grammar of the request line and fields, then our own
//! RFC 9112 rules for everything that decides framing (where this request ends and the next begins).
//!
//! The parser is stateless: it is given the bytes buffered so far and either finds one complete,
//! valid head, asks for more bytes, or rejects. Every rejection closes the connection, because once
//! the framing is in doubt nothing after it can be trusted to be a request.

use std::ops::Range;

/// The most fields `max_headers` may allow (the parser's field table has this many slots).
pub const MAX_HEADERS_LIMIT: usize = 256;

/// Limits on the request head. Exceeding them is answered with 414 or 431 and a close.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_request_line: usize,
    pub max_head: usize,
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_request_line: 8 * 1024, max_head: 16 * 1024, max_headers: 100 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Other,
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    None,
    Length(u64),
    Chunked,
}

/// A parsed, validated request head. Ranges index the buffer that was parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    pub method_range: Range<usize>,
    /// The request target as sent (origin-form, absolute-form, authority-form or `*`).
    pub target: Range<usize>,
    /// HTTP/1.x minor version: 0 or 1.
    pub minor: u8,
    pub keep_alive: bool,
    pub body: Body,
    pub expect_continue: bool,
    /// An `Upgrade` field is present (a WebSocket handshake looks further).
    pub upgrade: bool,
    /// Which of the fields static files answer to are present ([`COND_ENCODING`], [`COND_OTHER`]):
    /// none on the common request, which then never looks at its fields again.
    pub cond: u8,
    /// Length of the head in bytes, through the blank line.
    pub len: usize,
}

/// `Head::cond` bit: Accept-Encoding is present.
pub const COND_ENCODING: u8 = 1;
/// `Head::cond` bit: a precondition (If-Match, If-None-Match, If-Modified-Since,
/// If-Unmodified-Since), Range or If-Range is present.
pub const COND_OTHER: u8 = 2;

/// Why a head was rejected; each maps to a status code, and all of them close the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Malformed syntax or ambiguous framing: 400.
    BadRequest(&'static str),
    /// Request line longer than the limit: 414.
    UriTooLong,
    /// Head larger than the limit or too many fields: 431.
    HeadTooLarge,
    /// A transfer coding we do not implement (anything before the final `chunked`): 501.
    NotImplemented,
    /// Not HTTP/1.0 or HTTP/1.1: 505.
    Version,
}

impl Reject {
    pub fn status(self) -> u16 {
        match self {
            Reject::BadRequest(_) => 400,
            Reject::UriTooLong => 414,
            Reject::HeadTooLarge => 431,
            Reject::NotImplemented => 501,
            Reject::Version => 505,
        }
    }
}

pub type ParseResult = Result<Option<Head>, Reject>;

/// Where one field of a head is: offsets into the bytes the head was parsed from. The head is
/// parsed once; whoever needs its fields later (an application's headers, a static file's
/// conditions, the access log) reads them through this index, not by scanning the head again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Field {
    name: u32,
    name_len: u32,
    value: u32,
    value_len: u32,
}

/// A head and the index of its fields.
#[derive(Clone, Copy)]
pub struct FieldIndex<'a> {
    pub head: &'a [u8],
    pub fields: &'a [Field],
}

impl<'a> FieldIndex<'a> {
    /// (name, value) of each field, in order.
    pub fn iter(self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        let head = self.head;
        self.fields.iter().map(move |f| {
            (&head[f.name as usize..(f.name + f.name_len) as usize], &head[f.value as usize..(f.value + f.value_len) as usize])
        })
    }
}

/// Parse one request head from the start of `buf`, listing its fields in `fields`.
/// `Ok(None)`: incomplete, read more. `Ok(Some(head))`: complete, `head.len` bytes consumed.
pub fn parse_head(buf: &[u8], limits: &Limits, fields: &mut Vec<Field>) -> ParseResult {
    fields.clear();
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line.
    // We ignore exactly CRLF pairs; they are counted in `head.len`.
    let mut skip = 0;
    while buf.len() >= skip + 2 && buf[skip] == b'\r' && buf[skip + 1] == b'\n' && skip < 8 {
        skip += 2;
    }
    let rest = &buf[skip..];
    if rest.is_empty() || (rest.len() == 1 && rest[0] == b'\r') {
        return Ok(None);
    }
    let mut storage = [const { std::mem::MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS_LIMIT + 1];
    let max = limits.max_headers.min(storage.len() - 1);
    let mut req = httparse::Request::new(&mut []);
    let status = req.parse_with_uninit_headers(rest, &mut storage[..max + 1]);
    let n = match status {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if !rest[..rest.len().min(limits.max_request_line + 2)].contains(&b'\n')
                && rest.len() > limits.max_request_line
            {
                return Err(Reject::UriTooLong);
            }
            if rest.len() > limits.max_head {
                return Err(Reject::HeadTooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Reject::HeadTooLarge),
        Err(httparse::Error::Version) => {
            // httparse says Version both for "HTTP/2.0" and for garbage where a version should be.
            return Err(if looks_like_http_version(rest) { Reject::Version } else { Reject::BadRequest("bad request line") });
        }
        Err(httparse::Error::HeaderName) => return Err(Reject::BadRequest("invalid field name")),
        Err(httparse::Error::HeaderValue) => return Err(Reject::BadRequest("invalid field value")),
        Err(httparse::Error::NewLine) => return Err(Reject::BadRequest("bad line ending")),
        Err(httparse::Error::Token) => return Err(Reject::BadRequest("invalid method or target")),
        Err(httparse::Error::Status) => return Err(Reject::BadRequest("bad request line")),
    };
    if req.headers.len() > limits.max_headers {
        return Err(Reject::HeadTooLarge);
    }
    if n > limits.max_head {
        return Err(Reject::HeadTooLarge);
    }
    // httparse accepts a bare LF as a line ending; we do not (request smuggling through parsers
    // that disagree on line endings). Every line ends just before a field name or at the blank
    // line, so checking those places is enough: no scan over the bytes.
    if !rest[..n].ends_with(b"\r\n\r\n") {
        return Err(Reject::BadRequest("bare LF"));
    }
    for h in req.headers.iter() {
        let at = h.name.as_ptr() as usize - rest.as_ptr() as usize;
        if at < 2 || &rest[at - 2..at] != b"\r\n" {
            return Err(Reject::BadRequest("bare LF"));
        }
    }
    // httparse also skips empty lines before the request line that are a bare LF.
    if let Some(m) = req.method {
        let at = m.as_ptr() as usize - rest.as_ptr() as usize;
        if !rest[..at].chunks(2).all(|p| p == b"\r\n") {
            return Err(Reject::BadRequest("bare LF"));
        }
    }
    let line_end = match req.headers.first() {
        Some(h) => h.name.as_ptr() as usize - rest.as_ptr() as usize,
        None => n - 2,
    };
    if line_end > limits.max_request_line + 2 {
        return Err(Reject::UriTooLong);
    }
    let base = skip;
    let offset = |s: &[u8]| s.as_ptr() as usize - buf.as_ptr() as usize;

    let method_str = req.method.unwrap_or("");
    let method = match method_str {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    let method_range = offset(method_str.as_bytes())..offset(method_str.as_bytes()) + method_str.len();
    let path = req.path.unwrap_or("");
    if !path.bytes().all(|b| TARGET[b as usize]) {
        return Err(Reject::BadRequest("invalid byte in the target"));
    }
    if path == "*" && method_str != "OPTIONS" {
        return Err(Reject::BadRequest("* is the target of OPTIONS only"));
    }
    let target = offset(path.as_bytes())..offset(path.as_bytes()) + path.len();
    let minor = req.version.unwrap_or(1);

    let mut hosts = 0u32;
    let mut content_length: Option<u64> = None;
    let mut te_seen = false;
    let mut te_final_chunked = false;
    let mut te_chunked_not_last = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;
    let mut upgrade = false;
    let mut cond = 0u8;

    // httparse has already refused CTL bytes (other than HTAB) and DEL in names and values.
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let value = h.value;
        fields.push(Field { name: offset(name) as u32, name_len: name.len() as u32, value: offset(value) as u32, value_len: value.len() as u32 });
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                hosts += 1;
                if hosts > 1 {
                    return Err(Reject::BadRequest("repeated Host"));
                }
                if !valid_host(value) {
                    return Err(Reject::BadRequest("invalid Host"));
                }
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                if content_length.is_some() {
                    return Err(Reject::BadRequest("repeated Content-Length"));
                }
                content_length = Some(parse_content_length(value)?);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                for coding in split_list(value) {
                    if coding.is_empty() {
                        continue;
                    }
                    if te_final_chunked {
                        // `chunked` followed by another coding: chunked is not final.
                        te_chunked_not_last = true;
                    }
                    te_seen = true;
                    te_final_chunked = coding.eq_ignore_ascii_case(b"chunked");
                }
                if !te_seen && value.iter().all(|b| *b == b' ' || *b == b'\t' || *b == b',') {
                    return Err(Reject::BadRequest("empty Transfer-Encoding"));
                }
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for opt in split_list(value) {
                    if opt.eq_ignore_ascii_case(b"close") {
                        conn_close = true;
                    } else if opt.eq_ignore_ascii_case(b"keep-alive") {
                        conn_keep_alive = true;
                    }
                }
            }
            6 if name.eq_ignore_ascii_case(b"expect") => {
                if value.eq_ignore_ascii_case(b"100-continue") {
                    expect_continue = true;
                }
            }
            15 if name.eq_ignore_ascii_case(b"accept-encoding") => cond |= COND_ENCODING,
            7 if name.eq_ignore_ascii_case(b"upgrade") => upgrade = true,
            5 | 8 | 13 | 17 | 19
                if name.eq_ignore_ascii_case(b"range")
                    || name.eq_ignore_ascii_case(b"if-match")
                    || name.eq_ignore_ascii_case(b"if-range")
                    || name.eq_ignore_ascii_case(b"if-none-match")
                    || name.eq_ignore_ascii_case(b"if-modified-since")
                    || name.eq_ignore_ascii_case(b"if-unmodified-since") =>
            {
                cond |= COND_OTHER
            }
            _ => {}
        }
    }

    if minor == 1 && hosts == 0 {
        return Err(Reject::BadRequest("missing Host"));
    }
    // An absolute-form target's authority is what the request is for (the server ignores Host,
    // RFC 9112 §3.2.2, so the two are not compared): it must be a host as valid as Host, and not
    // empty (RFC 9110 §4.2.1), and it has no userinfo (§4.2.4).
    if let Some(authority) = absolute_authority(path.as_bytes()) {
        if authority.is_empty() || !valid_host(authority) {
            return Err(Reject::BadRequest("invalid authority in the target"));
        }
    }
    let body = if te_seen {
        if content_length.is_some() {
            return Err(Reject::BadRequest("Content-Length with Transfer-Encoding"));
        }
        if minor == 0 {
            return Err(Reject::BadRequest("Transfer-Encoding in HTTP/1.0"));
        }
        if !te_final_chunked || te_chunked_not_last {
            return Err(Reject::BadRequest("final transfer coding is not chunked"));
        }
        // The list ends in chunked; anything before it (gzip, chunked) we cannot decode.
        let mut codings = 0;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                codings += split_list(h.value).filter(|c| !c.is_empty()).count();
            }
        }
        if codings != 1 {
            return Err(Reject::NotImplemented);
        }
        Body::Chunked
    } else {
        match content_length {
            Some(0) | None => Body::None,
            Some(n) => Body::Length(n),
        }
    };
    let keep_alive = if minor == 1 { !conn_close } else { conn_keep_alive && !conn_close };

    Ok(Some(Head {
        method,
        method_range,
        target: target.start..target.end,
        minor,
        keep_alive,
        body,
        expect_continue: expect_continue && minor == 1,
        upgrade,
        cond,
        len: base + n,
    }))
}

/// `Content-Length = 1*DIGIT`, nothing else: no sign, no `0x`, no list, no overflow.
pub fn parse_content_length(v: &[u8]) -> Result<u64, Reject> {
    if v.is_empty() || v.len() > 19 {
        return Err(Reject::BadRequest("invalid Content-Length"));
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return Err(Reject::BadRequest("invalid Content-Length"));
        }
        n = n * 10 + (b - b'0') as u64; // 19 digits cannot overflow u64
    }
    Ok(n)
}

/// `Host = uri-host [ ":" port ]` (RFC 9112 §3.2, RFC 3986 §3.2.2-3.2.3), where
/// `uri-host = IP-literal / IPv4address / reg-name` and `port = *DIGIT`.
///
/// An empty value is valid: RFC 9112 §3.2 has a client send one when the target URI has no
/// authority, and the server cannot tell from an origin-form target. Stricter than RFC 3986, for
/// the same reason as everywhere here (two parsers must not read one message two ways):
/// no `,` in a reg-name (a Host that reads as a list), no empty host before a port (an `http`
/// URI with an empty host is invalid, RFC 9110 §4.2.1), and a port of at most 65535 by value.
fn valid_host(v: &[u8]) -> bool {
    if v.is_empty() {
        return true;
    }
    let port = if v[0] == b'[' {
        // IP-literal = "[" ( IPv6address / IPvFuture ) "]"
        let Some(close) = v.iter().position(|&b| b == b']') else { return false };
        if !valid_ip_literal(&v[1..close]) {
            return false;
        }
        match &v[close + 1..] {
            [] => return true,
            [b':', port @ ..] => port,
            _ => return false,
        }
    } else {
        // IPv4address is a reg-name too; neither has a ':', so the first one starts the port.
        let (host, port) = match v.iter().position(|&b| b == b':') {
            Some(i) => (&v[..i], &v[i + 1..]),
            None => (v, &b""[..]),
        };
        if host.is_empty() || !valid_reg_name(host) {
            return false;
        }
        port
    };
    let mut n: u32 = 0;
    for &b in port {
        if !b.is_ascii_digit() {
            return false;
        }
        n = n * 10 + (b - b'0') as u32;
        if n > 65535 {
            return false;
        }
    }
    true
}

/// The bytes a request target may hold as they are (RFC 9112 §3.2, RFC 3986 §3): unreserved,
/// sub-delims, `:` `@` `/` `?` and `%` (what follows a `%` is the application's to decode), and
/// the bytes the WHATWG URL Standard has browsers send unencoded in a path or a query:
/// `[` `]` `\` `^` `` ` `` `{` `|` `}` (its path and query percent-encode sets leave them out).
/// Refused (400), as nginx and h2o refuse them: controls, space, DEL, bytes past ASCII, `"`
/// `<` `>` (which every client percent-encodes), and `#`: a fragment is never sent.
const TARGET: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=')
            || matches!(c, b':' | b'@' | b'/' | b'?' | b'%')
            || matches!(c, b'[' | b']' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}');
        b += 1;
    }
    t
};

/// The bytes a `reg-name` may hold as they are: unreserved and sub-delims, less `,` (one
/// table lookup a byte: Host is checked on every request).
const REG_NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b';' | b'=');
        b += 1;
    }
    t
};

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`, less `,`.
fn valid_reg_name(v: &[u8]) -> bool {
    let mut i = 0;
    while i < v.len() {
        let b = v[i];
        if REG_NAME[b as usize] {
            i += 1;
        } else if b == b'%' && i + 2 < v.len() && v[i + 1].is_ascii_hexdigit() && v[i + 2].is_ascii_hexdigit() {
            i += 3;
        } else {
            return false;
        }
    }
    true
}

/// What is inside the brackets: `IPv6address` (RFC 3986 §3.2.2; no zone identifier) or
/// `IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )`.
fn valid_ip_literal(v: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = v {
        let Some(dot) = rest.iter().position(|&b| b == b'.') else { return false };
        let (ver, tail) = (&rest[..dot], &rest[dot + 1..]);
        return !ver.is_empty()
            && ver.iter().all(u8::is_ascii_hexdigit)
            && !tail.is_empty()
            && tail.iter().all(|&b| is_unreserved(b) || is_sub_delim(b) || b == b':');
    }
    // std's parser takes exactly the RFC 4291 text forms (h16 groups, one "::", a trailing
    // IPv4 part without leading zeros), which is RFC 3986's IPv6address.
    v.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        && std::str::from_utf8(v).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

#[inline]
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[inline]
fn is_sub_delim(b: u8) -> bool {
    matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=')
}

/// An absolute-form `http` or `https` target (RFC 9112 §3.2.2) without its scheme and `//`:
/// the authority and what follows it. `None` for any other form.
#[inline]
pub fn after_scheme(target: &[u8]) -> Option<&[u8]> {
    let ci = |p: &[u8]| target.len() >= p.len() && target[..p.len()].eq_ignore_ascii_case(p);
    let skip = if ci(b"http://") {
        7
    } else if ci(b"https://") {
        8
    } else {
        return None;
    };
    Some(&target[skip..])
}

/// The authority of an absolute-form `http` or `https` target, or `None` for any other form.
/// Everything between `//` and the path, query or fragment.
fn absolute_authority(target: &[u8]) -> Option<&[u8]> {
    let rest = after_scheme(target)?;
    let end = rest.iter().position(|&b| matches!(b, b'/' | b'?' | b'#')).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Split a comma-separated field value into trimmed elements.
fn split_list(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(|s| {
        let start = s.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(s.len());
        let end = s.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(start, |e| e + 1);
        &s[start..end]
    })
}

/// httparse refused the version: 505 for a well-formed HTTP version other than 1.x, else 400.
/// Decided only from the bytes up to the version's minor digit, so a request split across reads
/// gets the same answer as the whole (the fuzzer found that a whole-line look did not).
fn looks_like_http_version(rest: &[u8]) -> bool {
    let line_end = rest.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(rest.len());
    let line = &rest[..line_end];
    // method SP target SP version
    let mut spaces = line.iter().enumerate().filter(|(_, &b)| b == b' ').map(|(i, _)| i);
    let (Some(_), Some(second)) = (spaces.next(), spaces.next()) else { return false };
    let v = &line[second + 1..];
    v.len() >= 6 && v.starts_with(b"HTTP/") && v[5].is_ascii_digit() && !(v[5] == b'1' && v.get(6) == Some(&b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_index_lists_every_field_in_order() {
        let buf = b"\r\nPOST /u HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nContent-Length: 3\r\nX-A:  1 2 \r\n\r\nabc";
        let mut fields = vec![Field::default(); 3]; // stale entries from a previous head go
        let head = parse_head(buf, &Limits::default(), &mut fields).unwrap().unwrap();
        let got: Vec<_> = FieldIndex { head: &buf[..head.len], fields: &fields }.iter().collect();
        assert_eq!(got, vec![(&b"Host"[..], &b"a"[..]), (b"X-Empty", b""), (b"Content-Length", b"3"), (b"X-A", b"1 2")]);
    }

    fn parse(s: &[u8]) -> ParseResult {
        parse_head(s, &Limits::default(), &mut Vec::new())
    }

    fn ok(s: &[u8]) -> Head {
        match parse(s) {
            Ok(Some(h)) => h,
            other => panic!("expected a head for {:?}, got {:?}", String::from_utf8_lossy(s), other),
        }
    }

    fn rejects(s: &[u8]) -> Reject {
        match parse(s) {
            Err(r) => r,
            other => panic!("expected a rejection for {:?}, got {:?}", String::from_utf8_lossy(s), other),
        }
    }

    const VALID: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /1b HTTP/1.1\r\nHost: localhost:8085\r\nUser-Agent: x\r\nAccept: */*\r\n\r\n",
        b"HEAD /x?y=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
        b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET http://example.com/a HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Tab:\tv\t\r\nX-Empty:\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
        b"GET http://[::1]:80/a HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
        b"\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    ];

    #[test]
    fn valid_requests_parse() {
        for v in VALID {
            let h = ok(v);
            assert_eq!(h.len, v.len());
        }
    }

    #[test]
    fn every_valid_request_is_incomplete_at_every_split() {
        for v in VALID {
            for cut in 0..v.len() {
                assert_eq!(parse(&v[..cut]), Ok(None), "prefix {cut} of {:?}", String::from_utf8_lossy(v));
            }
            // And complete heads followed by more bytes parse identically.
            let mut more = v.to_vec();
            more.extend_from_slice(b"GET / HTTP/1.1\r\n");
            assert_eq!(ok(&more), ok(v));
        }
    }

    #[test]
    fn fields_are_read() {
        let h = ok(b"GET /a?b HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.minor, 1);
        assert!(h.keep_alive);
        assert_eq!(h.body, Body::None);
        let buf = b"GET /a?b HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(&buf[h.target.clone()], b"/a?b");
        assert!(!ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert_eq!(ok(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n").method, Method::Head);
        assert_eq!(ok(b"DELETE / HTTP/1.1\r\nHost: a\r\n\r\n").method, Method::Other);
        assert_eq!(ok(b"get / HTTP/1.1\r\nHost: a\r\n\r\n").method, Method::Other, "methods are case-sensitive");
        assert_eq!(ok(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n").body, Body::Length(12));
        assert_eq!(ok(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").body, Body::None);
        assert_eq!(ok(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n").body, Body::Chunked);
        assert!(ok(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").expect_continue);
    }

    #[test]
    fn framing_rejections() {
        let bad: &[&[u8]] = &[
            // CL together with TE
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            // duplicate / differing / malformed CL
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1.0\r\n\r\n",
            // TE whose final coding is not chunked
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n",
            // TE in HTTP/1.0
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            // Host missing or repeated in HTTP/1.1
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            // whitespace before the colon
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n",
            // obs-fold
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n",
            // bare CR, bare LF, NUL and other control bytes
            b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n",
            b"GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
            // invalid field names
            b"GET / HTTP/1.1\r\nHost: a\r\nX(y): b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX\x80: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX y: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
            // malformed request lines
            b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1x\r\nHost: a\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
            b" GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /\r\n\r\n",
        ];
        // Every one of these is a 400 (the README); the only framing 501 is a coding before
        // `chunked` (`gzip, chunked`), in version_and_size_rejections.
        for b in bad {
            let r = rejects(b);
            assert_eq!(r.status(), 400, "{:?} -> {:?}", String::from_utf8_lossy(b), r);
        }
    }

    #[test]
    fn version_and_size_rejections() {
        assert_eq!(rejects(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"), Reject::Version);
        assert_eq!(rejects(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Reject::Version);
        assert_eq!(rejects(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), Reject::NotImplemented);
        let limits = Limits::default();
        let mut long = b"GET /".to_vec();
        long.resize(limits.max_request_line + 10, b'a');
        assert_eq!(rejects(&long), Reject::UriTooLong, "no line end yet");
        long.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(rejects(&long), Reject::UriTooLong);
        let mut big = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        while big.len() <= limits.max_head {
            big.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
        }
        assert_eq!(rejects(&big), Reject::HeadTooLarge, "incomplete but over the limit");
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..limits.max_headers {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(rejects(&many), Reject::HeadTooLarge);
    }

    fn host(v: &[u8]) -> ParseResult {
        let mut req = b"GET / HTTP/1.1\r\nHost: ".to_vec();
        req.extend_from_slice(v);
        req.extend_from_slice(b"\r\n\r\n");
        parse(&req)
    }

    #[test]
    fn host_grammar() {
        let good: &[&[u8]] = &[
            b"example.com",
            b"example.com:",
            b"example.com:8080",
            b"example.com:0",
            b"example.com:65535",
            b"example.com:00080", // the port is checked by value
            b"example.com.",
            b"EXAMPLE.com",
            b"localhost",
            b"127.0.0.1",
            b"127.0.0.1:80",
            b"1.2.3.4.5",       // not an IPv4address, but a reg-name
            b"256.1.1.1",
            b"xn--bcher-kva.example",
            b"a_b-c~d",
            b"a%41b",           // pct-encoded
            b"a!$&'()*+;=b",    // sub-delims, except ','
            b"[::1]",
            b"[::1]:80",
            b"[::1]:",
            b"[::]",
            b"[2001:db8::8:800:200c:417a]",
            b"[2001:DB8:0:0:8:800:200C:417A]:443",
            b"[::ffff:192.0.2.1]",
            b"[1:2:3:4:5:6:7::]",
            b"[v1.fe]",
            b"[v7.a:b!$]:80",
            b"[VF.x]",
            b"",                // empty: a target without authority (RFC 9112 §3.2)
            b" a ",             // OWS around the value is not part of it
        ];
        for v in good {
            assert!(matches!(host(v), Ok(Some(_))), "{:?}: {:?}", String::from_utf8_lossy(v), host(v));
        }
        let bad: &[&[u8]] = &[
            b"a:80:80",
            b"a:80:",
            b"a::80",
            b"[::1",
            b"[::1:80",
            b"::1",
            b"::1]",
            b"[::1]]",
            b"[::1]x",
            b"[::1]80",
            b"[::1]:8x",
            b"[::1]:80:80",
            b"[[::1]]",
            b"[]",
            b"[:::1]",
            b"[1:2:3:4:5:6:7:8:9]",
            b"[1::2:3:4:5:6:7:8]", // "::" standing for no group
            b"[::ffff:01.2.3.4]",
            b"[12345::1]",
            b"[::g]",
            b"[1.2.3.4]",
            b"[::1.2.3]",
            b"[::1.2.3.04]",
            b"[fe80::1%25eth0]", // zone identifiers are not in RFC 3986
            b"[fe80::1%eth0]",
            b"[v.x]",
            b"[v1x]",
            b"[v1.]",
            b"[vg.x]",
            b"[v1.x/y]",
            b"a]",
            b"a[b",
            b"a b",
            b"a\tb",
            b"a/b",
            b"a@b",
            b"user@a",
            b"a?b",
            b"a#b",
            b"a\\b",
            b"a\"b",
            b"a<b",
            b"a{b",
            b"a^b",
            b"a|b",
            b"a`b",
            b"a:8x",
            b"a:-1",
            b"a:+80",
            b"a: 80",
            b"a :80",
            b"a:65536",
            b"a:99999999999999999999",
            b"a:0x50",
            b":80",            // an empty host before a port
            b":",
            b"a,b",            // a list
            b"a, b",
            b"a,",
            b",",
            b"a%",             // broken pct-encoding
            b"a%4",
            b"a%4g",
            b"a%%41",
            b"\x80",           // obs-text
            b"b\xc3\xbccher.example",
        ];
        for v in bad {
            assert_eq!(host(v), Err(Reject::BadRequest("invalid Host")), "{:?}", String::from_utf8_lossy(v));
        }
        // The table is the grammar's: unreserved and sub-delims, less ','.
        for b in 0..=255u8 {
            assert_eq!(REG_NAME[b as usize], is_unreserved(b) || (is_sub_delim(b) && b != b','), "byte {b}");
        }
        // HTTP/1.0 does not need Host, but one that is sent is held to the same grammar.
        assert!(matches!(parse(b"GET / HTTP/1.0\r\nHost: a:80:80\r\n\r\n"), Err(Reject::BadRequest(_))));
        assert!(matches!(parse(b"GET / HTTP/1.0\r\nHost: a:80\r\n\r\n"), Ok(Some(_))));
        // The field is one value: a second line is a repeat, not a list element.
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\r\nHost:\r\n\r\n"), Err(Reject::BadRequest("repeated Host")));
    }

    #[test]
    fn the_target_holds_only_what_rfc_3986_and_browsers_send() {
        let req = |t: &[u8], m: &[u8]| [m, b" ", t, b" HTTP/1.1\r\nHost: a\r\n\r\n"].concat();
        for t in [&b"/a/b?c=d&e=%20f"[..], b"/~user/!$&'()*+,;=:@", b"/a[1]?q={x}|y^z`w\\v", b"/%zz", b"http://a/p?q"] {
            assert!(matches!(parse(&req(t, b"GET")), Ok(Some(_))), "{:?}", String::from_utf8_lossy(t));
        }
        assert!(matches!(parse(&req(b"*", b"OPTIONS")), Ok(Some(_))));
        for m in [&b"GET"[..], b"HEAD", b"POST", b"DELETE"] {
            assert_eq!(parse(&req(b"*", m)), Err(Reject::BadRequest("* is the target of OPTIONS only")));
        }
        for t in [&b"/a#frag"[..], b"/#", b"http://a/#x", b"/a\"b", b"/<script>", b"/a>b", b"/caf\xc3\xa9", b"/\x80", b"/\xff", b"/a\x7fb"] {
            assert!(matches!(parse(&req(t, b"GET")), Err(Reject::BadRequest(_))), "{:?}", String::from_utf8_lossy(t));
        }
        // Every byte, one at a time in the path: refused exactly where the table says so (controls
        // and space end the target in httparse, which refuses them its own way).
        for b in 0u8..=255 {
            let t = [b'/', b'a', b, b'z'];
            let got = parse(&req(&t, b"GET"));
            let allowed = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%[]\\^`{|}".contains(&b);
            assert_eq!(matches!(got, Ok(Some(_))), allowed, "byte {b:#04x}: {got:?}");
            assert!(allowed || matches!(got, Err(Reject::BadRequest(_))), "byte {b:#04x}: {got:?}");
        }
    }

    #[test]
    fn absolute_form_authority() {
        // The server goes by the target's authority and ignores Host (RFC 9112 §3.2.2): they are
        // not compared, but both must be valid.
        for t in [&b"http://example.com/a"[..], b"HTTP://example.com:8080/a?b", b"https://[::1]:443/", b"http://a", b"http://a?q", b"http://a:/"] {
            let mut req = b"GET ".to_vec();
            req.extend_from_slice(t);
            req.extend_from_slice(b" HTTP/1.1\r\nHost: other\r\n\r\n");
            assert!(matches!(parse(&req), Ok(Some(_))), "{:?}", String::from_utf8_lossy(t));
        }
        for t in [
            &b"http:///a"[..],
            b"http://",
            b"http://:80/",
            b"http://a:80:80/",
            b"http://[::1/",
            b"http://user@a/",
            b"http://user:pw@a/",
            b"http://a%/",
            b"http://a,b/",
            b"https://a:99999/",
        ] {
            let mut req = b"GET ".to_vec();
            req.extend_from_slice(t);
            req.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(parse(&req), Err(Reject::BadRequest("invalid authority in the target")), "{:?}", String::from_utf8_lossy(t));
        }
        // A valid authority does not excuse an invalid Host.
        assert_eq!(parse(b"GET http://a/ HTTP/1.1\r\nHost: [::1\r\n\r\n"), Err(Reject::BadRequest("invalid Host")));
    }

    #[test]
    fn line_ending_neighbours() {
        // Bare LF, or a bare CR, anywhere a CRLF belongs; in leading empty lines too (httparse
        // skips bare-LF empty lines before the request line).
        let bad: &[&[u8]] = &[
            b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\r\n\r\n\r\n\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\r\n\r\n\r\n\r\n\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\nHost: a\n\n",
            b"GET / HTTP/1.0\n\n",
            b"GET / HTTP/1.0\n\r\n",
            b"GET / HTTP/1.0\r\n\n",
            b"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: b\n\r\n",
            b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /\tHTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
            b"GET / HTTP/1.1\r\n\tHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n \r\n\r\n",
        ];
        for b in bad {
            let r = rejects(b);
            assert_eq!(r.status(), 400, "{:?} -> {:?}", String::from_utf8_lossy(b), r);
        }
    }

    #[test]
    fn content_length_grammar() {
        assert_eq!(parse_content_length(b"0"), Ok(0));
        assert_eq!(parse_content_length(b"0012"), Ok(12));
        assert_eq!(parse_content_length(b"9999999999999999999"), Ok(9_999_999_999_999_999_999));
        for bad in [&b""[..], b"+1", b"-1", b"0x1", b"1e3", b" 1", b"1,1", b"99999999999999999999"] {
            assert!(parse_content_length(bad).is_err(), "{:?}", bad);
        }
    }
}
