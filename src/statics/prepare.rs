//! One prepared representation of a file ([`Rep`]): its header lines and its kept 200 response,
//! head built once with [`crate::h1::encode`] (only its Date is patched later), then the body when
//! it is held in memory; the gzip form made once at load time with `compress`; and where a
//! response's body comes from when it is sent ([`Body`], [`body_of`]): the buffer, the pipe made
//! for a mid-size body (see [`crate::io::tee`]), the file's mapping, or the file opened for sendfile.

use super::fs::{fstatat, open_same, FileId};
use super::negotiate::Coding;
use crate::h1::encode::{self, http_date, Clock};
use crate::io::out::Mapping;
use crate::io::tee::BodyPipe;
use std::os::fd::OwnedFd;
use std::rc::Rc;

/// One representation of a file: the file itself, or one of its compressed forms.
pub(super) struct Rep {
    /// The file a large body is read from (mapped, or with sendfile).
    pub(super) file: FileId,
    /// Body length.
    pub(super) size: u64,
    /// Head of the 200 response, then the body when it is held in memory.
    pub(super) buf: Rc<[u8]>,
    pub(super) head_len: usize,
    pub(super) date_off: usize,
    pub(super) date_sec: i64,
    /// The body is not in `buf`: it is sent from the file.
    pub(super) large: bool,
    /// A large body's file, mapped (up to [`crate::io::out::MAP_MAX`]); without it the file is opened for each
    /// response and sent with sendfile.
    pub(super) map: Option<Rc<Mapping>>,
    /// The in-memory body also held in a pipe, sent with tee and splice (see [`crate::io::tee`]):
    /// made at the first full GET of a cached entry (`pipe_tried`), never for one served once.
    pub(super) pipe: Option<Rc<BodyPipe>>,
    pub(super) pipe_tried: bool,
    /// The strong entity-tag, with its quotes.
    pub(super) etag: Box<[u8]>,
    /// Last-Modified, in seconds.
    pub(super) lm: i64,
    /// Header lines every response with this representation's body carries (Content-Type,
    /// Content-Encoding, Last-Modified, ETag, Accept-Ranges, Vary, Cache-Control).
    pub(super) fields: Box<[u8]>,
    /// What a 304 repeats of them (ETag, Vary, Cache-Control).
    pub(super) meta: Box<[u8]>,
}

impl Rep {
    /// Put the in-memory body in a pipe, once (see [`crate::io::tee`] for which bodies qualify).
    pub(super) fn make_pipe(&mut self) {
        if !self.pipe_tried {
            self.pipe_tried = true;
            self.pipe = BodyPipe::new(&self.buf[self.head_len..]).map(Rc::new);
        }
    }
}

/// Types worth compressing: text, and the textual or uncompressed application types.
pub(super) fn compressible(ctype: &str) -> bool {
    let t = ctype.split(';').next().unwrap_or("").trim();
    t.starts_with("text/")
        || t.ends_with("+xml")
        || t.ends_with("+json")
        || matches!(t, "application/javascript" | "application/json" | "application/xml" | "application/wasm" | "image/x-icon" | "image/bmp")
}

/// The gzip form of an in-memory representation, made once; None when it does not save bytes.
pub(super) fn gzip_of(ident: &Rep, ctype: &str, cache_control: Option<&[u8]>, clock: &Clock) -> Option<Rep> {
    use std::io::Write;
    let body = &ident.buf[ident.head_len..];
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 2), flate2::Compression::best());
    enc.write_all(body).ok()?;
    let gz = enc.finish().ok()?;
    if gz.len() + 32 >= body.len() {
        return None;
    }
    let size = gz.len() as u64;
    Some(prepare(ident.file.clone(), gz, size, false, ident.file.mtime_ns, Coding::Gzip, ctype, cache_control, true, clock))
}

/// Build a representation's header lines and its prepared 200 response.
#[allow(clippy::too_many_arguments)]
pub(super) fn prepare(
    file: FileId,
    body: Vec<u8>,
    size: u64,
    large: bool,
    mtime: i128,
    coding: Coding,
    ctype: &str,
    cache_control: Option<&[u8]>,
    vary: bool,
    clock: &Clock,
) -> Rep {
    let lm = mtime.div_euclid(1_000_000_000) as i64;
    let suffix = match coding {
        Coding::Identity => "",
        Coding::Br => "-br",
        Coding::Gzip => "-gz",
    };
    let etag = format!("\"{:x}-{:x}{}\"", mtime, size, suffix).into_bytes();
    let mut meta = Vec::with_capacity(96);
    meta.extend_from_slice(b"ETag: ");
    meta.extend_from_slice(&etag);
    meta.extend_from_slice(b"\r\n");
    if vary {
        meta.extend_from_slice(b"Vary: Accept-Encoding\r\n");
    }
    if let Some(v) = cache_control {
        meta.extend_from_slice(b"Cache-Control: ");
        meta.extend_from_slice(v);
        meta.extend_from_slice(b"\r\n");
    }
    let mut fields = Vec::with_capacity(192);
    fields.extend_from_slice(b"Content-Type: ");
    fields.extend_from_slice(ctype.as_bytes());
    fields.extend_from_slice(b"\r\n");
    match coding {
        Coding::Identity => {}
        Coding::Br => fields.extend_from_slice(b"Content-Encoding: br\r\n"),
        Coding::Gzip => fields.extend_from_slice(b"Content-Encoding: gzip\r\n"),
    }
    fields.extend_from_slice(b"Last-Modified: ");
    fields.extend_from_slice(&http_date(lm));
    fields.extend_from_slice(b"\r\nAccept-Ranges: bytes\r\n");
    fields.extend_from_slice(&meta);
    let mut head = Vec::with_capacity(256 + body.len());
    let date_off = encode::head_start(&mut head, b"200 OK", &clock.date);
    head.extend_from_slice(&fields);
    encode::head_end(&mut head, Some(size), None);
    let head_len = head.len();
    head.extend_from_slice(&body);
    Rep {
        file,
        size,
        buf: head.into(),
        head_len,
        date_off,
        date_sec: clock.sec,
        large,
        map: None,
        pipe: None,
        pipe_tried: large,
        etag: etag.into(),
        lm,
        fields: fields.into(),
        meta: meta.into(),
    }
}

/// Where a response's body comes from when it is not in the representation's buffer.
pub(super) enum Body {
    /// It is (or there is none: a HEAD).
    InBuf,
    /// The large file's mapping.
    Map(Rc<Mapping>),
    /// The large file, opened for this response.
    File(Rc<OwnedFd>),
}

/// The body of a response: in the buffer for a small file or a HEAD; else the large file's
/// mapping, or the file opened now and checked to be the one the entry describes (None: it is
/// not any more).
pub(super) fn body_of(rep: &Rep, root: &OwnedFd, head_only: bool) -> Option<Body> {
    if !rep.large || head_only {
        return Some(Body::InBuf);
    }
    if let Some(map) = &rep.map {
        // Checked per response, as the file opened for sendfile is: a file rewritten in place
        // is reloaded at once, never sent under the head prepared for its old content.
        return fstatat(root, &rep.file.rel).filter(|st| rep.file.same_file(st)).map(|_| Body::Map(map.clone()));
    }
    open_same(root, &rep.file).ok().map(|fd| Body::File(Rc::new(fd)))
}
