//! Request body framing: Content-Length counting and a strict chunked decoder (RFC 9112 §7.1).
//!
//! The decoder is a byte-driven state machine so that a body split anywhere across reads decodes
//! the same. It accepts exactly the RFC 9112 grammar:
//!
//! ```text
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*HEXDIG                     ; any number of leading zeros, value <= u64::MAX
//! chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! chunk-ext-name = token
//! chunk-ext-val  = token / quoted-string
//! quoted-string  = DQUOTE *( qdtext / quoted-pair ) DQUOTE
//! qdtext         = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
//! quoted-pair    = "\" ( HTAB / SP / VCHAR / obs-text )
//! trailer-section = *( field-line CRLF ) CRLF   ; no obs-fold, no bare CR or LF
//! ```
//!
//! A CR or LF anywhere but in the CRLF ending a line (inside a quoted-string too: a peer that
//! reads the string across lines would disagree about where the body ends), an unterminated
//! quoted-string, whitespace before the size or before the CRLF, a `0x` prefix: each is an
//! error, and the connection is closed: nothing after a framing error is parsed as a request.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    BadChunkSize,
    BadChunkExtension,
    BadChunkEnd,
    BadTrailer,
    TooLarge,
}

/// Hex digits on one size line. Not a grammar limit (leading zeros are legal at any length and
/// the value is what is checked for overflow): it only bounds a line of zeros that never ends.
const MAX_SIZE_DIGITS: u32 = 4096;
/// Bytes of one chunk line after the size (whitespace and extensions).
const MAX_EXTENSION: u32 = 4096;
const MAX_TRAILERS: u32 = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// Reading hex digits; `digits` read so far.
    Size { digits: u32 },
    /// BWS after the digits: only a `;` may follow, never the CRLF.
    SizeWs,
    /// After `;`: BWS, then the extension name.
    ExtPreName,
    /// In the extension name (a token).
    ExtName,
    /// BWS after the name: `=` or the next `;` follows.
    ExtPostName,
    /// After `=`: BWS, then a token or a quoted-string.
    ExtPreVal,
    /// In a token value.
    ExtToken,
    /// In a quoted-string value.
    ExtQuoted,
    /// After a `\` in a quoted-string.
    ExtQuotedPair,
    /// Just after the closing DQUOTE: BWS, `;` or CR.
    ExtAfterQuoted,
    /// BWS after a value: only the next `;` may follow.
    ExtPostVal,
    /// CR seen after the size line; expecting LF.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field; `colon` says whether the name has ended.
    Trailer { colon: bool, name_len: u32 },
    TrailerLf,
    FinalLf,
    Done,
}

/// Decodes a chunked body. Feed bytes with [`Chunked::feed`]; data is handed to `sink`.
#[derive(Clone, Debug)]
pub struct Chunked {
    st: St,
    size: u64,
    /// Bytes of the current chunk line after the size, checked against `MAX_EXTENSION`.
    ext_len: u32,
    trailer_bytes: u32,
    /// Sum of chunk sizes so far, checked against `max_body`.
    total: u64,
    max_body: u64,
}

impl Chunked {
    pub fn new(max_body: u64) -> Self {
        Chunked { st: St::Size { digits: 0 }, size: 0, ext_len: 0, trailer_bytes: 0, total: 0, max_body }
    }

    pub fn is_done(&self) -> bool {
        self.st == St::Done
    }

    /// Allow at most `more` bytes of chunk data from here on (a body that is only skipped).
    pub fn limit(&mut self, more: u64) {
        self.max_body = self.max_body.min(self.total.saturating_add(more));
    }

    /// Consume bytes from `input`, returning how many were used. Stops at the end of the body
    /// (so bytes after it, the next request, are left alone) or at the end of input.
    pub fn feed(&mut self, input: &[u8], sink: &mut impl FnMut(&[u8])) -> Result<usize, BodyError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.st {
                St::Size { digits } => match hex(b) {
                    Some(d) => {
                        if digits == MAX_SIZE_DIGITS {
                            return Err(BodyError::BadChunkSize);
                        }
                        // By value: leading zeros cost nothing, a 17th significant digit overflows.
                        if self.size > u64::MAX >> 4 {
                            return Err(BodyError::BadChunkSize);
                        }
                        self.size = (self.size << 4) | d as u64;
                        self.st = St::Size { digits: digits + 1 };
                    }
                    None if digits == 0 => return Err(BodyError::BadChunkSize),
                    None => {
                        // The limit counts from after `<size>;`, or from the first BWS.
                        self.ext_len = 0;
                        match b {
                            b'\r' => self.st = St::SizeLf,
                            b';' => self.st = St::ExtPreName,
                            b' ' | b'\t' => {
                                self.ext_len = 1;
                                self.st = St::SizeWs
                            }
                            _ => return Err(BodyError::BadChunkSize),
                        }
                    }
                },
                St::SizeWs
                | St::ExtPreName
                | St::ExtName
                | St::ExtPostName
                | St::ExtPreVal
                | St::ExtToken
                | St::ExtQuoted
                | St::ExtQuotedPair
                | St::ExtAfterQuoted
                | St::ExtPostVal => {
                    if b == b'\r' && matches!(self.st, St::ExtName | St::ExtToken | St::ExtAfterQuoted) {
                        self.st = St::SizeLf;
                    } else {
                        if self.ext_len >= MAX_EXTENSION {
                            return Err(BodyError::BadChunkExtension);
                        }
                        self.ext_len += 1;
                        self.st = ext_step(self.st, b)?;
                    }
                }
                St::SizeLf => {
                    if b != b'\n' {
                        return Err(BodyError::BadChunkSize);
                    }
                    if self.size == 0 {
                        self.st = St::TrailerStart;
                    } else {
                        self.total = self.total.saturating_add(self.size);
                        if self.total > self.max_body {
                            return Err(BodyError::TooLarge);
                        }
                        self.st = St::Data;
                    }
                }
                St::Data => {
                    let n = (input.len() - i).min(self.size.min(usize::MAX as u64) as usize);
                    sink(&input[i..i + n]);
                    self.size -= n as u64;
                    i += n;
                    if self.size == 0 {
                        self.st = St::DataCr;
                    }
                    continue;
                }
                St::DataCr => {
                    if b != b'\r' {
                        return Err(BodyError::BadChunkEnd);
                    }
                    self.st = St::DataLf;
                }
                St::DataLf => {
                    if b != b'\n' {
                        return Err(BodyError::BadChunkEnd);
                    }
                    self.st = St::Size { digits: 0 };
                }
                St::TrailerStart => {
                    if b == b'\r' {
                        self.st = St::FinalLf;
                    } else if is_tchar(b) {
                        self.count_trailer()?;
                        self.st = St::Trailer { colon: false, name_len: 1 };
                    } else {
                        return Err(BodyError::BadTrailer);
                    }
                }
                St::Trailer { colon, name_len } => {
                    self.count_trailer()?;
                    match b {
                        b'\r' if colon => self.st = St::TrailerLf,
                        b':' if !colon && name_len > 0 => self.st = St::Trailer { colon: true, name_len },
                        _ if !colon && is_tchar(b) => self.st = St::Trailer { colon, name_len: name_len + 1 },
                        b'\t' | 0x20..=0x7e | 0x80..=0xff if colon => {}
                        _ => return Err(BodyError::BadTrailer),
                    }
                }
                St::TrailerLf => {
                    if b != b'\n' {
                        return Err(BodyError::BadTrailer);
                    }
                    self.st = St::TrailerStart;
                }
                St::FinalLf => {
                    if b != b'\n' {
                        return Err(BodyError::BadTrailer);
                    }
                    self.st = St::Done;
                    return Ok(i + 1);
                }
                St::Done => return Ok(i),
            }
            i += 1;
        }
        Ok(i)
    }

    fn count_trailer(&mut self) -> Result<(), BodyError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILERS {
            Err(BodyError::BadTrailer)
        } else {
            Ok(())
        }
    }
}

/// One byte of `chunk-ext` other than the CR that ends the line (which the caller takes in the
/// states where the grammar allows it: after a name, a token value or a closing DQUOTE).
#[inline]
fn ext_step(st: St, b: u8) -> Result<St, BodyError> {
    let ws = b == b' ' || b == b'\t';
    Ok(match st {
        St::SizeWs if ws => St::SizeWs,
        St::SizeWs if b == b';' => St::ExtPreName,
        St::SizeWs => return Err(BodyError::BadChunkSize),
        St::ExtPreName if ws => St::ExtPreName,
        St::ExtPreName | St::ExtName if is_tchar(b) => St::ExtName,
        St::ExtName | St::ExtPostName if ws => St::ExtPostName,
        St::ExtName | St::ExtPostName if b == b'=' => St::ExtPreVal,
        St::ExtPreVal if ws => St::ExtPreVal,
        St::ExtPreVal | St::ExtToken if is_tchar(b) => St::ExtToken,
        St::ExtPreVal if b == b'"' => St::ExtQuoted,
        St::ExtQuoted => match b {
            b'"' => St::ExtAfterQuoted,
            b'\\' => St::ExtQuotedPair,
            b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => St::ExtQuoted,
            _ => return Err(BodyError::BadChunkExtension),
        },
        St::ExtQuotedPair => match b {
            b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => St::ExtQuoted,
            _ => return Err(BodyError::BadChunkExtension),
        },
        St::ExtToken | St::ExtAfterQuoted | St::ExtPostVal if ws => St::ExtPostVal,
        St::ExtName | St::ExtPostName | St::ExtToken | St::ExtAfterQuoted | St::ExtPostVal if b == b';' => St::ExtPreName,
        _ => return Err(BodyError::BadChunkExtension),
    })
}

#[inline]
fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 9110 token characters.
#[inline]
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize), BodyError> {
        let mut c = Chunked::new(u64::MAX);
        let mut out = Vec::new();
        let n = c.feed(input, &mut |d| out.extend_from_slice(d))?;
        if !c.is_done() {
            return Err(BodyError::BadChunkEnd);
        }
        Ok((out, n))
    }

    const GOOD: &[(&[u8], &[u8])] = &[
        (b"0\r\n\r\n", b""),
        (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
        (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
        (b"a;name=value\r\n0123456789\r\n0;x\r\n\r\n", b"0123456789"),
        (b"3 ;ext=\"q\"\r\nabc\r\n0\r\nTrailer-A: 1\r\nB:\r\n\r\n", b"abc"),
        (b"0000000000000003\r\nabc\r\n0\r\n\r\n", b"abc"),
        // Leading zeros are legal at any length: the value is checked, not the digits.
        (b"00000000000000001\r\nx\r\n0\r\n\r\n", b"x"),
        (b"000000000000000000000005\r\nhello\r\n000000000000000000000000\r\n\r\n", b"hello"),
        (b"00000000000000000000000000000000000000000000000000000000000000000003\r\nabc\r\n0\r\n\r\n", b"abc"),
        // chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
        (b"3 ; a = b\r\nabc\r\n0\r\n\r\n", b"abc"),
        (b"3\t;\ta\t=\tb\r\nabc\r\n0\r\n\r\n", b"abc"),
        (b"3;a;b=c;d=\"e\";f\r\nabc\r\n0;last=\"1\"\r\n\r\n", b"abc"),
        (b"3;a=b ;c=d\r\nabc\r\n0\r\n\r\n", b"abc"),
        (b"3;a=\"\" ; b\r\nabc\r\n0\r\n\r\n", b"abc"),
        (b"3;!#$%&'*+-.^_`|~=!#$%&'*+-.^_`|~\r\nabc\r\n0\r\n\r\n", b"abc"),
        // quoted-string: qdtext (HTAB, SP, ! # .. [ ] .. ~, obs-text) and quoted-pairs
        (b"3;a=\"x y\tz,;=[]{}\x80\xff\"\r\nabc\r\n0\r\n\r\n", b"abc"),
        (b"3;a=\"\\\"\\\\\\ \\\t\\a\\\x80\"\r\nabc\r\n0\r\n\r\n", b"abc"),
        (b"3;a=\";\";b=\"\\\";\"\r\nabc\r\n0\r\n\r\n", b"abc"),
        // trailers
        (b"0\r\nA: 1\r\nB: \t x\x80 \r\n\r\n", b""),
    ];

    #[test]
    fn decodes_valid_bodies_split_anywhere() {
        for (input, want) in GOOD {
            let (out, n) = decode_all(input).unwrap();
            assert_eq!(&out[..], *want);
            assert_eq!(n, input.len());
            for cut in 0..=input.len() {
                let mut c = Chunked::new(u64::MAX);
                let mut out = Vec::new();
                let a = c.feed(&input[..cut], &mut |d| out.extend_from_slice(d)).unwrap();
                assert_eq!(a, cut);
                let b = c.feed(&input[cut..], &mut |d| out.extend_from_slice(d)).unwrap();
                assert_eq!(a + b, input.len());
                assert!(c.is_done());
                assert_eq!(&out[..], *want, "cut at {cut}");
            }
        }
    }

    #[test]
    fn stops_at_end_of_body() {
        let input = b"1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        let (out, n) = decode_all(input).unwrap();
        assert_eq!(out, b"x");
        assert_eq!(&input[n..], b"GET / HTTP/1.1\r\n");
    }

    /// `feed` itself must fail (not merely wait for more), whole and byte by byte.
    fn assert_rejected(input: &[u8]) -> BodyError {
        let mut c = Chunked::new(u64::MAX);
        let whole = c.feed(input, &mut |_| {});
        let Err(e) = whole else { panic!("accepted {:?}: {:?}", String::from_utf8_lossy(input), whole) };
        let mut c = Chunked::new(u64::MAX);
        let mut got = None;
        for b in input.chunks(1) {
            if let Err(e) = c.feed(b, &mut |_| {}) {
                got = Some(e);
                break;
            }
        }
        assert_eq!(got, Some(e), "byte by byte {:?}", String::from_utf8_lossy(input));
        e
    }

    #[test]
    fn rejects_bad_chunks() {
        let bad: &[&[u8]] = &[
            b"x\r\n",                         // not hex
            b"0x5\r\nhello\r\n0\r\n\r\n",     // 0x prefix
            b"0X5\r\nhello\r\n0\r\n\r\n",
            b"x5\r\nhello\r\n0\r\n\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",      // sign
            b"-5\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",      // leading whitespace
            b"\t5\r\nhello\r\n0\r\n\r\n",
            b"\r\n",                          // empty size
            b";a\r\n",                        // extension without a size
            b"5\nhello\r\n0\r\n\r\n",         // bare LF after size
            b"5\r\rhello\r\n0\r\n\r\n",
            b"5\n\nhello\n0\n\n",             // LF-only lines throughout
            b"5\x00\r\nhello\r\n0\r\n\r\n",
            b"5_0\r\nhello\r\n0\r\n\r\n",
            b"5;a\nb\r\nhello\r\n0\r\n\r\n",  // bare LF in extension
            b"5;a\rb\r\nhello\r\n0\r\n\r\n",  // bare CR in extension
            b"5;a\x00b\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",      // data longer than size
            b"5\r\nhello\n0\r\n\r\n",         // bare LF after data
            b"5\r\nhello\r0\r\n\r\n",
            b"5\r\nhello0\r\n\r\n",           // nothing after data
            b"5\r\nhello\r\n\r\n0\r\n\r\n",   // an extra CRLF after data
            b"0\r\nX : y\r\n\r\n",            // bad trailer name
            b"0\r\n y\r\n\r\n",               // obs-fold in trailers
            b"0\r\n\ty\r\n\r\n",
            b"0\r\nX: a\r\n b\r\n\r\n",
            b"0\r\nNoColon\r\n\r\n",
            b"0\r\n: v\r\n\r\n",              // empty trailer name
            b"0\r\nX: a\rb\r\n\r\n",
            b"0\r\nX: a\nb\r\n\r\n",
            b"0\r\nX: a\n\r\n",               // bare LF ending a trailer
            b"0\r\nX: a\r\n\n",               // bare LF as the final line
            b"0\r\n\n",
            b"0\n\r\n",
            b"0\r\nX: a\x00\r\n\r\n",         // NUL, other CTLs and DEL in a trailer value
            b"0\r\nX: a\x01\r\n\r\n",
            b"0\r\nX: a\x7f\r\n\r\n",
            b"0\r\nX\x00: a\r\n\r\n",
            b"0\r\n\rx",
            b"5 x\r\nhello\r\n0\r\n\r\n",     // junk after size
            b"5 \r\nhello\r\n0\r\n\r\n",      // whitespace before CRLF
            b"5\t\r\nhello\r\n0\r\n\r\n",
            // chunk-ext grammar
            b"5;\r\nhello\r\n0\r\n\r\n",      // empty name
            b"5; \r\nhello\r\n0\r\n\r\n",
            b"5;;a\r\nhello\r\n0\r\n\r\n",
            b"5;a;\r\nhello\r\n0\r\n\r\n",
            b"5;=b\r\nhello\r\n0\r\n\r\n",
            b"5;a=\r\nhello\r\n0\r\n\r\n",    // empty value
            b"5;a= \r\nhello\r\n0\r\n\r\n",
            b"5;a==b\r\nhello\r\n0\r\n\r\n",
            b"5;a=b=c\r\nhello\r\n0\r\n\r\n",
            b"5;a b\r\nhello\r\n0\r\n\r\n",   // two names without `;`
            b"5;a=b c\r\nhello\r\n0\r\n\r\n",
            b"5;a \r\nhello\r\n0\r\n\r\n",    // BWS before the CRLF
            b"5;a=b \r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\" \r\nhello\r\n0\r\n\r\n",
            b"5;a,b\r\nhello\r\n0\r\n\r\n",   // not token characters
            b"5;a=b,c\r\nhello\r\n0\r\n\r\n",
            b"5;a=@\r\nhello\r\n0\r\n\r\n",
            b"5;a=b/c\r\nhello\r\n0\r\n\r\n",
            b"5;a(b)\r\nhello\r\n0\r\n\r\n",
            b"5;\x80\r\nhello\r\n0\r\n\r\n",  // obs-text only inside a quoted-string
            b"5;a=\x80\r\nhello\r\n0\r\n\r\n",
            b"5;a=\x7f\r\nhello\r\n0\r\n\r\n",
            b"5;a=b\nhello\r\n0\r\n\r\n",     // bare LF ending the line
            b"5;a\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\"\nhello\r\n0\r\n\r\n",
            // quoted-string: CR or LF inside, unterminated, bad bytes, junk after it
            b"5;a=\"x\r\ny\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\ny\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\ry\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\r\nhello\r\n0\r\n\r\n",          // unterminated
            b"5;a=\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\\\"\r\nhello\r\n0\r\n\r\n",      // escaped DQUOTE, so still unterminated
            b"5;a=\"x\\\r\nhello\r\n0\r\n\r\n",        // quoted-pair of CR
            b"5;a=\"x\\\ny\"\r\nhello\r\n0\r\n\r\n",   // quoted-pair of LF
            b"5;a=\"x\\\x00\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\\\x7f\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\x00\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\x01\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\x7f\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\"y\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\"\"y\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=x\"y\"\r\nhello\r\n0\r\n\r\n",
            b"5;\"a\"=b\r\nhello\r\n0\r\n\r\n",        // a name is never quoted
            // Funky Chunks 2: a quoted CRLF that would hide a chunk from a peer reading across it
            b"2;a=\"\r\nxx\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n\"\r\nyy\r\n0\r\n\r\n",
            b"0;a=\"\r\n\r\n\"\r\n\r\n",
        ];
        for b in bad {
            assert_rejected(b);
        }
        // Each error where it belongs.
        assert_eq!(assert_rejected(b"5;a=\"x\r\n"), BodyError::BadChunkExtension);
        assert_eq!(assert_rejected(b"5 \r\n"), BodyError::BadChunkSize);
        assert_eq!(assert_rejected(b"5\r\nhelloX"), BodyError::BadChunkEnd);
        assert_eq!(assert_rejected(b"0\r\nX: a\n"), BodyError::BadTrailer);
    }

    #[test]
    fn size_limit() {
        let mut c = Chunked::new(4);
        assert_eq!(c.feed(b"5\r\nhello\r\n", &mut |_| {}), Err(BodyError::TooLarge));
        // 16 hex digits of f: no overflow panic, just too large.
        let mut c = Chunked::new(u64::MAX - 1);
        assert_eq!(c.feed(b"ffffffffffffffff\r\n", &mut |_| {}), Err(BodyError::TooLarge));
        // Leading zeros do not count towards overflow; a 17th significant digit does.
        let mut c = Chunked::new(u64::MAX - 1);
        assert_eq!(c.feed(b"00000000ffffffffffffffff\r\n", &mut |_| {}), Err(BodyError::TooLarge));
        assert_eq!(assert_rejected(b"10000000000000000\r\n"), BodyError::BadChunkSize);
        assert_eq!(assert_rejected(b"0000000010000000000000000\r\n"), BodyError::BadChunkSize);
        assert_eq!(assert_rejected(b"fffffffffffffffff\r\n"), BodyError::BadChunkSize);
        // The sum of the chunks is held to the limit too.
        let mut c = Chunked::new(8);
        assert_eq!(c.feed(b"5\r\nhello\r\n0004\r\n", &mut |_| {}), Err(BodyError::TooLarge));
    }

    #[test]
    fn line_limits() {
        // Leading zeros: any length a client sends in practice; a line of them that never ends
        // is cut off by a resource limit, not by the grammar.
        let mut ok = vec![b'0'; MAX_SIZE_DIGITS as usize - 1];
        ok.extend_from_slice(b"3\r\nabc\r\n0\r\n\r\n");
        assert_eq!(decode_all(&ok).unwrap().0, b"abc");
        let zeros = vec![b'0'; MAX_SIZE_DIGITS as usize + 1];
        assert_eq!(assert_rejected(&zeros), BodyError::BadChunkSize);
        // Extensions: the existing 4 KiB limit on the rest of the line after `3;`, quoted or not.
        for (open, close) in [(&b"3;a="[..], &b""[..]), (b"3;a=\"", b"\"")] {
            let fill = MAX_EXTENSION as usize - (open.len() - 2) - close.len();
            let mut line = open.to_vec();
            line.extend(std::iter::repeat_n(b'x', fill));
            line.extend_from_slice(close);
            let mut good = line.clone();
            good.extend_from_slice(b"\r\nabc\r\n0\r\n\r\n");
            assert_eq!(decode_all(&good).unwrap().0, b"abc");
            let mut long = line;
            long.insert(open.len(), b'x');
            long.extend_from_slice(b"\r\nabc\r\n0\r\n\r\n");
            assert_eq!(assert_rejected(&long), BodyError::BadChunkExtension);
        }
        // Whitespace before `;` counts too: it cannot go on forever.
        let mut ws = b"3".to_vec();
        ws.extend(std::iter::repeat_n(b' ', MAX_EXTENSION as usize + 1));
        assert_eq!(assert_rejected(&ws), BodyError::BadChunkExtension);
    }
}
