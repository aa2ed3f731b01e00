//! Request body framing: Content-Length counting and a strict chunked decoder (RFC 9112 §7.1).
//!
//! The decoder is a byte-driven state machine so that a body split anywhere across reads decodes
//! the same. It accepts exactly: 1..=16 hex digits, optional `;` extensions of visible characters,
//! CRLF, the data, CRLF; after the `0` chunk, trailer fields and a final CRLF. Anything else is an
//! error, and the connection is closed: nothing after a framing error is parsed as a request.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    BadChunkSize,
    BadChunkExtension,
    BadChunkEnd,
    BadTrailer,
    TooLarge,
}

const MAX_SIZE_DIGITS: u32 = 16;
const MAX_EXTENSION: u32 = 4096;
const MAX_TRAILERS: u32 = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// Reading hex digits; `digits` read so far.
    Size { digits: u32 },
    /// Optional whitespace after the digits, before `;` or CR.
    SizeWs,
    /// Inside a chunk extension (after `;`), counting its length.
    Ext { len: u32 },
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
    trailer_bytes: u32,
    /// Sum of chunk sizes so far, checked against `max_body`.
    total: u64,
    max_body: u64,
}

impl Chunked {
    pub fn new(max_body: u64) -> Self {
        Chunked { st: St::Size { digits: 0 }, size: 0, trailer_bytes: 0, total: 0, max_body }
    }

    pub fn is_done(&self) -> bool {
        self.st == St::Done
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
                        self.size = (self.size << 4) | d as u64;
                        self.st = St::Size { digits: digits + 1 };
                    }
                    None if digits == 0 => return Err(BodyError::BadChunkSize),
                    None => match b {
                        b'\r' => self.st = St::SizeLf,
                        b';' => self.st = St::Ext { len: 0 },
                        b' ' | b'\t' => self.st = St::SizeWs,
                        _ => return Err(BodyError::BadChunkSize),
                    },
                },
                // BWS is allowed only before a `;` extension, never before the CRLF.
                St::SizeWs => match b {
                    b' ' | b'\t' => {}
                    b';' => self.st = St::Ext { len: 0 },
                    _ => return Err(BodyError::BadChunkSize),
                },
                St::Ext { len } => match b {
                    b'\r' => self.st = St::SizeLf,
                    b'\t' | 0x20..=0x7e | 0x80..=0xff => {
                        if len >= MAX_EXTENSION {
                            return Err(BodyError::BadChunkExtension);
                        }
                        self.st = St::Ext { len: len + 1 };
                    }
                    _ => return Err(BodyError::BadChunkExtension),
                },
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

    #[test]
    fn rejects_bad_chunks() {
        let bad: &[&[u8]] = &[
            b"x\r\n",                         // not hex
            b"0x5\r\nhello\r\n0\r\n\r\n",     // 0x prefix
            b"+5\r\nhello\r\n0\r\n\r\n",      // sign
            b"-5\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",      // leading whitespace
            b"\r\n",                          // empty size
            b"00000000000000001\r\nx\r\n",     // 17 digits
            b"5\nhello\r\n0\r\n\r\n",         // bare LF after size
            b"5\r\rhello\r\n0\r\n\r\n",
            b"5;a\nb\r\nhello\r\n0\r\n\r\n",  // bare LF in extension
            b"5;a\rb\r\nhello\r\n0\r\n\r\n",  // bare CR in extension
            b"5;a\x00b\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",      // data longer than size
            b"5\r\nhello\n0\r\n\r\n",         // bare LF after data
            b"5\r\nhello\r0\r\n\r\n",
            b"5\r\nhello0\r\n\r\n",           // nothing after data
            b"0\r\nX : y\r\n\r\n",            // bad trailer name
            b"0\r\n y\r\n\r\n",               // obs-fold in trailers
            b"0\r\nNoColon\r\n\r\n",
            b"0\r\nX: a\rb\r\n\r\n",
            b"0\r\nX: a\nb\r\n\r\n",
            b"0\r\n\rx",
            b"5 x\r\nhello\r\n0\r\n\r\n",     // junk after size
            b"5 \r\nhello\r\n0\r\n\r\n",      // whitespace before CRLF
        ];
        for b in bad {
            assert!(decode_all(b).is_err(), "{:?}", String::from_utf8_lossy(b));
        }
    }

    #[test]
    fn size_limit() {
        let mut c = Chunked::new(4);
        assert_eq!(c.feed(b"5\r\nhello\r\n", &mut |_| {}), Err(BodyError::TooLarge));
        // 16 hex digits of f: no overflow panic, just too large.
        let mut c = Chunked::new(u64::MAX - 1);
        assert_eq!(c.feed(b"ffffffffffffffff\r\n", &mut |_| {}), Err(BodyError::TooLarge));
    }
}
