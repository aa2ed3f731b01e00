//! Static files: a cache of prepared responses keyed by the request path as sent.
//!
//! A hit is one shared buffer holding status line, headers and body together, queued by reference:
//! no formatting and no copying per request. The Date inside it is patched at most once a second.
//! Bodies of 32 KiB and more held in memory are also put in a pipe once, and leave with tee and
//! splice (see [`crate::io::tee`]). Files above `inline_max` keep only their header in memory: their
//! body is written from a read-only mapping of the file (up to 64 MiB, see
//! [`crate::io::out::Mapping`]), or sent with sendfile beyond.
//! Each entry is re-checked against the file system at most once a second, so a changed, new or
//! deleted file is served fresh without a restart. Misses resolve the path with `openat2`
//! (RESOLVE_BENEATH): nothing outside the docroot is ever opened, symlinks included.
//!
//! A request with preconditions, a Range or an Accept-Encoding that matters goes through
//! [`answer`], which applies RFC 9110 with the rules of [`crate::statics::negotiate`]: 304, 412, 206, 416,
//! and the choice between the file and its precompressed siblings (`x.css.br`, `x.css.gz`, or a
//! gzip made once when the file is loaded, with `compress`).
//!
//! The code is in layers, each file importing only from those below it: [`negotiate`] (the rules)
//! and `fs` (opening below the root, stat, paths, [`Outcome`]); `prepare` (a representation, its
//! kept head and where its body comes from); `cache` (the entries, their map and limits, and
//! [`StaticFiles`]); and this file, which answers a request ([`StaticFiles::serve`], `answer`,
//! `emit`) and re-exports the names used outside.

pub mod negotiate;
mod cache;
mod fs;
mod prepare;

pub use cache::{PathHash, PathHasher, StaticConfig, StaticFiles, SWEEP_SECS};
pub use fs::{normalize, normalize_percent, request_path, Outcome};

use cache::Entry;
use negotiate::{Coding, Fields, RangeAsk};
use prepare::{body_of, Body, Rep};
use crate::h1::parse::COND_OTHER;
use crate::h1::encode::{self, Clock, DATE_LEN};
use crate::io::out::{OutQueue, Seg};
use std::os::fd::OwnedFd;
use std::rc::Rc;

/// The request, as far as a static file is concerned.
pub struct StaticRequest<'a> {
    /// The path below the mount (see [`request_path`]).
    pub path: &'a [u8],
    pub head_only: bool,
    /// `None` for the common HTTP/1.1 keep-alive case, else the Connection line to add.
    pub conn: Option<&'static [u8]>,
    /// The request head with its fields, and which of the fields static files answer to it
    /// has (`Head::cond`).
    pub head: crate::h1::parse::FieldIndex<'a>,
    pub cond: u8,
}

impl StaticFiles {
    /// Queue the response to a GET or HEAD.
    pub fn serve(&mut self, req: &StaticRequest<'_>, clock: &Clock, out: &mut OutQueue) -> Outcome {
        let path = req.path;
        if path.first() != Some(&b'/') {
            return Outcome::BadPath;
        }
        // The hit: one lookup, and at most once a second one fstatat to see the file unchanged.
        if let Some(e) = self.map.get_mut(path) {
            if e.checked == clock.sec || e.fresh(&self.root) {
                e.checked = clock.sec;
                if let Some(outcome) = answer(e, &self.root, req, clock, out, true) {
                    return outcome;
                }
            }
        }
        if let Some(old) = self.map.remove(path) {
            self.bytes -= old.bytes();
        }
        let (mut entry, canonical) = match self.load(path, clock) {
            Ok(loaded) => loaded,
            Err(outcome) => return outcome,
        };
        let outcome = answer(&mut entry, &self.root, req, clock, out, false).unwrap_or(Outcome::NotFound);
        // Only the canonical spelling of a path is cached: `//a`, `/./a` or `/%61` are served but
        // not kept, so the cache holds at most one entry per file whatever clients send.
        if canonical {
            self.insert(path, entry);
        }
        outcome
    }
}

/// Queue the answer to `req` from a fresh entry. None when a large file is no longer what the
/// entry describes (the caller reloads it).
fn answer(e: &mut Entry, root: &OwnedFd, req: &StaticRequest<'_>, clock: &Clock, out: &mut OutQueue, cached: bool) -> Option<Outcome> {
    if req.cond == 0 {
        let rep = &mut e.ident;
        let body = body_of(rep, root, req.head_only)?;
        emit(rep, body, req, cached, clock, out);
        return Some(Outcome::Served(200));
    }
    let f = Fields::from_fields(req.head.iter());
    let rep = match negotiate::choose_coding(f.accept_encoding.as_deref(), e.br.is_some(), e.gzip.is_some()) {
        None => return Some(Outcome::NotAcceptable),
        Some(Coding::Identity) => &mut e.ident,
        Some(Coding::Br) => e.br.as_mut()?,
        Some(Coding::Gzip) => e.gzip.as_mut()?,
    };
    if req.cond & COND_OTHER != 0 {
        // RFC 9110 §13.2.2: If-Match, else If-Unmodified-Since; then If-None-Match, else
        // If-Modified-Since; then Range, if If-Range allows it.
        if let Some(v) = &f.if_match {
            if !negotiate::if_match(v, &rep.etag) {
                return Some(Outcome::PreconditionFailed);
            }
        } else if let Some(t) = f.if_unmodified_since.as_deref().and_then(negotiate::parse_http_date) {
            if rep.lm > t {
                return Some(Outcome::PreconditionFailed);
            }
        }
        let not_modified = match (&f.if_none_match, f.if_modified_since.as_deref().and_then(negotiate::parse_http_date)) {
            (Some(v), _) => negotiate::none_match_hits(v, &rep.etag),
            (None, Some(t)) => rep.lm <= t,
            (None, None) => false,
        };
        if not_modified {
            let t = out.owned_tail();
            encode::head_start(t, b"304 Not Modified", &clock.date);
            t.extend_from_slice(&rep.meta);
            encode::head_end(t, None, req.conn);
            return Some(Outcome::Served(304));
        }
        // Range is defined for GET only (RFC 9110 §14.2): a HEAD gets the 200 head.
        let ranged = f.range.as_deref().filter(|_| !req.head_only).filter(|_| f.if_range.as_deref().is_none_or(|v| negotiate::if_range_holds(v, &rep.etag, rep.lm, clock.sec)));
        if let Some(r) = ranged {
            match negotiate::range(r, rep.size) {
                RangeAsk::One(first, last) => {
                    let body = body_of(rep, root, req.head_only)?;
                    let t = out.owned_tail();
                    encode::head_start(t, b"206 Partial Content", &clock.date);
                    t.extend_from_slice(&rep.fields);
                    t.extend_from_slice(format!("Content-Range: bytes {first}-{last}/{}\r\n", rep.size).as_bytes());
                    encode::head_end(t, Some(last - first + 1), req.conn);
                    if !req.head_only {
                        match body {
                            Body::File(fd) => out.push(Seg::File { fd, off: first, len: last - first + 1 }),
                            Body::Map(map) => out.push(Seg::Mapped { map, start: first as usize, end: last as usize + 1 }),
                            Body::InBuf => out.push_shared(&rep.buf, rep.head_len + first as usize, rep.head_len + last as usize + 1),
                        }
                    }
                    return Some(Outcome::Served(206));
                }
                RangeAsk::Unsatisfiable => return Some(Outcome::RangeNotSatisfiable(rep.size)),
                RangeAsk::Several | RangeAsk::Ignore => {}
            }
        }
    }
    let body = body_of(rep, root, req.head_only)?;
    emit(rep, body, req, cached, clock, out);
    Some(Outcome::Served(200))
}

/// Queue a representation's 200 response, its body from `body` when it is not in `e.buf`, or
/// from the body's pipe, made at the first full GET of a `cached` entry.
fn emit(e: &mut Rep, body: Body, req: &StaticRequest<'_>, cached: bool, clock: &Clock, out: &mut OutQueue) {
    let (head_only, conn) = (req.head_only, req.conn);
    if cached && !head_only {
        e.make_pipe();
    }
    if e.date_sec != clock.sec {
        // Patch the Date in place when no queued response still points at the buffer.
        match Rc::get_mut(&mut e.buf) {
            Some(b) => b[e.date_off..e.date_off + DATE_LEN].copy_from_slice(&clock.date),
            None => {
                let mut b = e.buf.to_vec();
                b[e.date_off..e.date_off + DATE_LEN].copy_from_slice(&clock.date);
                e.buf = b.into();
            }
        }
        e.date_sec = clock.sec;
    }
    let piped = e.pipe.as_ref().filter(|_| !head_only);
    // What goes from the buffer: the head, and the body unless it is piped (or there is none).
    let end = if head_only || piped.is_some() { e.head_len } else { e.buf.len() };
    match conn {
        None => out.push_shared(&e.buf, 0, end),
        Some(line) => {
            let t = out.owned_tail();
            t.extend_from_slice(&e.buf[..e.head_len - 2]); // the kept head but for its blank line
            encode::head_end(t, None, Some(line));
            out.push_shared(&e.buf, e.head_len, end);
        }
    }
    if let Some(pipe) = piped {
        out.push(Seg::Piped { pipe: pipe.clone(), buf: e.buf.clone(), start: e.head_len, end: e.buf.len() });
    }
    match body {
        Body::File(fd) => out.push(Seg::File { fd, off: 0, len: e.size }),
        Body::Map(map) => out.push(Seg::Mapped { map, start: 0, end: e.size as usize }),
        Body::InBuf => {}
    }
}
