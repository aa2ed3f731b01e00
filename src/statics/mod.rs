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

pub mod negotiate;

use negotiate::{Coding, Fields, RangeAsk};
use crate::h1::parse::COND_OTHER;
use crate::h1::encode::{self, http_date, Clock, DATE_LEN};
use crate::io::out::{Mapping, OutQueue, Seg};
use crate::io::tee::BodyPipe;
use std::collections::HashMap;
use std::ffi::CString;
use std::hash::{BuildHasher, Hasher};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::rc::Rc;

/// How often [`StaticFiles::sweep`] looks at mapped files, in seconds.
pub const SWEEP_SECS: i64 = 5;

#[derive(Clone, Debug)]
pub struct StaticConfig {
    pub root: PathBuf,
    /// Lower-case extension without the dot → Content-Type value.
    pub mime: HashMap<String, String>,
    pub default_type: String,
    pub index: String,
    /// Files up to this size are held in memory with their header; larger ones are mapped, or
    /// sent with sendfile past 64 MiB.
    pub inline_max: u64,
    /// Bound on the bytes held by the cache; when a new entry would pass it, the cache is emptied.
    pub cache_max_bytes: usize,
    pub cache_max_entries: usize,
    /// (path prefix below the mount, Cache-Control value), longest prefix first.
    pub cache_control: Vec<(Vec<u8>, Vec<u8>)>,
    /// Gzip compressible files held in memory, once when they are loaded.
    pub compress: bool,
}

impl StaticConfig {
    pub fn new(root: PathBuf) -> Self {
        StaticConfig {
            root,
            mime: HashMap::new(),
            default_type: "application/octet-stream".into(),
            index: "index.html".into(),
            inline_max: 256 * 1024,
            cache_max_bytes: 64 << 20,
            cache_max_entries: 10_000,
            cache_control: Vec::new(),
            compress: false,
        }
    }
}

/// A file as it was when its response was prepared.
#[derive(Clone)]
struct FileId {
    /// The resolved path below the root (what was opened).
    rel: CString,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl FileId {
    fn of(rel: CString, st: &libc::stat) -> FileId {
        FileId { rel, dev: st.st_dev, ino: st.st_ino, size: st.st_size as u64, mtime_ns: mtime_ns(st) }
    }

    fn same_file(&self, st: &libc::stat) -> bool {
        self.unchanged(st) && (st.st_mode & libc::S_IFMT) == libc::S_IFREG
    }

    /// The same inode, size and mtime, whatever kind of file it is.
    fn unchanged(&self, st: &libc::stat) -> bool {
        st.st_dev == self.dev && st.st_ino == self.ino && st.st_size as u64 == self.size && mtime_ns(st) == self.mtime_ns
    }
}

/// One representation of a file: the file itself, or one of its compressed forms.
struct Rep {
    /// The file a large body is read from (mapped, or with sendfile).
    file: FileId,
    /// Body length.
    size: u64,
    /// Head of the 200 response, then the body when it is held in memory.
    buf: Rc<[u8]>,
    head_len: usize,
    date_off: usize,
    date_sec: i64,
    /// The body is not in `buf`: it is sent from the file.
    large: bool,
    /// A large body's file, mapped (up to [`crate::io::out::MAP_MAX`]); without it the file is opened for each
    /// response and sent with sendfile.
    map: Option<Rc<Mapping>>,
    /// The in-memory body also held in a pipe, sent with tee and splice (see [`crate::io::tee`]):
    /// made at the first full GET of a cached entry (`pipe_tried`), never for one served once.
    pipe: Option<Rc<BodyPipe>>,
    pipe_tried: bool,
    /// The strong entity-tag, with its quotes.
    etag: Box<[u8]>,
    /// Last-Modified, in seconds.
    lm: i64,
    /// Header lines every response with this representation's body carries (Content-Type,
    /// Content-Encoding, Last-Modified, ETag, Accept-Ranges, Vary, Cache-Control).
    fields: Box<[u8]>,
    /// What a 304 repeats of them (ETag, Vary, Cache-Control).
    meta: Box<[u8]>,
}

impl Rep {
    /// Put the in-memory body in a pipe, once (see [`crate::io::tee`] for which bodies qualify).
    fn make_pipe(&mut self) {
        if !self.pipe_tried {
            self.pipe_tried = true;
            self.pipe = BodyPipe::new(&self.buf[self.head_len..]).map(Rc::new);
        }
    }
}

/// A cached file: the file, and the compressed siblings found beside it.
struct Entry {
    ident: Rep,
    br: Option<Rep>,
    gzip: Option<Rep>,
    /// The sibling names looked for (`.br`, `.gz`) and what was found, to notice one that appears
    /// or goes.
    siblings: [(CString, Option<FileId>); 2],
    /// The second this entry was last compared with the file system.
    checked: i64,
}

impl Entry {
    fn bytes(&self) -> usize {
        self.ident.buf.len() + self.br.as_ref().map_or(0, |r| r.buf.len()) + self.gzip.as_ref().map_or(0, |r| r.buf.len())
    }

    /// The file and its siblings are as they were when the entry was made.
    fn fresh(&self, root: &OwnedFd) -> bool {
        fstatat(root, &self.ident.file.rel).is_some_and(|st| self.ident.file.same_file(&st))
            && self.siblings.iter().all(|(name, was)| match (was, fstatat(root, name)) {
                (Some(id), Some(st)) => id.unchanged(&st),
                (None, None) => true,
                _ => false,
            })
    }
}

/// What a request for a path comes to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response was queued, with this status (200, 206 or 304).
    Served(u16),
    NotFound,
    Forbidden,
    BadPath,
    /// A directory asked for without its trailing slash: 301 to this location.
    Redirect(Vec<u8>),
    /// Out of descriptors or memory: 503, try again.
    Unavailable,
    /// If-Match or If-Unmodified-Since is false: 412.
    PreconditionFailed,
    /// The Range overlaps nothing of a representation this long: 416.
    RangeNotSatisfiable(u64),
    /// Accept-Encoding excludes every coding there is: 406.
    NotAcceptable,
}

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

pub struct StaticFiles {
    cfg: StaticConfig,
    root: OwnedFd,
    map: HashMap<Box<[u8]>, Entry, PathHash>,
    bytes: usize,
    /// When [`StaticFiles::sweep`] looks next.
    next_sweep: i64,
}

impl StaticFiles {
    pub fn open(cfg: StaticConfig) -> std::io::Result<Self> {
        let c = CString::new(cfg.root.as_os_str().as_bytes())?;
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let map = HashMap::with_hasher(PathHash::new());
        Ok(StaticFiles { cfg, root: unsafe { OwnedFd::from_raw_fd(fd) }, map, bytes: 0, next_sweep: 0 })
    }

    pub fn cached_entries(&self) -> usize {
        self.map.len()
    }

    pub fn cached_bytes(&self) -> usize {
        self.bytes
    }

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

    /// Drop the entries of mapped files that changed or went: called once a second, it looks
    /// every [`SWEEP_SECS`] seconds, and only when this worker maps something. A file deleted or
    /// replaced is so unmapped within that time even if nobody asks for it again, and its space
    /// is freed.
    pub fn sweep(&mut self, clock: &Clock) {
        if Mapping::mapped() == 0 || clock.sec < self.next_sweep {
            return;
        }
        self.next_sweep = clock.sec + SWEEP_SECS;
        let root = &self.root;
        let mut freed = 0;
        self.map.retain(|_, e| {
            let mapped = [Some(&e.ident), e.br.as_ref(), e.gzip.as_ref()].into_iter().flatten().any(|r| r.map.is_some());
            if !mapped || e.checked == clock.sec {
                return true;
            }
            if e.fresh(root) {
                e.checked = clock.sec;
                return true;
            }
            freed += e.bytes();
            false
        });
        self.bytes -= freed;
    }

    /// Warm the cache with the paths the indexer found (best effort).
    pub fn preload(&mut self, paths: &[String], clock: &Clock) -> usize {
        let mut n = 0;
        for p in paths {
            if self.map.len() >= self.cfg.cache_max_entries {
                break;
            }
            if let Ok((e, true)) = self.load(p.as_bytes(), clock) {
                self.insert(p.as_bytes(), e);
                n += 1;
            }
        }
        n
    }

    fn insert(&mut self, key: &[u8], e: Entry) {
        let size = e.bytes();
        if self.map.len() >= self.cfg.cache_max_entries || self.bytes + size > self.cfg.cache_max_bytes {
            self.map.clear();
            self.bytes = 0;
        }
        self.bytes += size;
        self.map.insert(key.into(), e);
    }

    /// Resolve `path`, open what it names and prepare its responses. Returns the entry and
    /// whether `path` is the canonical spelling (the one worth caching).
    fn load(&self, path: &[u8], clock: &Clock) -> Result<(Entry, bool), Outcome> {
        let (rel, trailing_slash) = normalize(path)?;
        let canonical = canonical_path(&rel, trailing_slash) == path;
        let (fd, st) = self.open_beneath(&rel)?;
        let (fd, st, rel) = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG if !trailing_slash => (fd, st, rel),
            libc::S_IFREG => return Err(Outcome::NotFound), // "/file.txt/" names no directory
            libc::S_IFDIR => {
                if !trailing_slash {
                    return Err(Outcome::Redirect(canonical_path(&rel, true)));
                }
                let mut idx = if rel == b"." { Vec::new() } else { [&rel[..], b"/"].concat() };
                idx.extend_from_slice(self.cfg.index.as_bytes());
                let (fd, st) = self.open_beneath(&idx)?;
                if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                    return Err(Outcome::NotFound);
                }
                (fd, st, idx)
            }
            _ => return Err(Outcome::NotFound),
        };
        let ctype = self.content_type(&rel).to_string();
        let cache_control = self.cache_control(&canonical_path(&rel, false)).map(|v| v.to_vec());
        // Precompressed siblings, found once here and watched with the file.
        let mut siblings = Vec::new();
        let mut found: [Option<(OwnedFd, libc::stat)>; 2] = [None, None];
        for (i, ext) in [&b".br"[..], b".gz"].into_iter().enumerate() {
            let name = [&rel[..], ext].concat();
            let c = CString::new(name).map_err(|_| Outcome::BadPath)?;
            let id = match open_beneath(&self.root, &c) {
                Ok((sfd, sst)) if sst.st_mode & libc::S_IFMT == libc::S_IFREG => {
                    let id = FileId::of(c.clone(), &sst);
                    found[i] = Some((sfd, sst));
                    Some(id)
                }
                // There but not usable (unreadable, not a file): not served, but remembered as
                // it is, so that the entry is not rebuilt every second for it.
                _ => fstatat(&self.root, &c).map(|st| FileId::of(c.clone(), &st)),
            };
            siblings.push((c, id));
        }
        let [found_br, found_gz] = found;
        let compress = self.cfg.compress && found_gz.is_none() && compressible(&ctype) && st.st_size >= 256;
        let vary = found_br.is_some() || found_gz.is_some() || compress;
        let rel = CString::new(rel).map_err(|_| Outcome::BadPath)?;
        let make = |fd: OwnedFd, st: &libc::stat, file: FileId, coding: Coding| -> Result<Rep, Outcome> {
            let large = st.st_size as u64 > self.cfg.inline_max;
            let body = if large { Vec::new() } else { read_all(&fd, st.st_size as u64).map_err(|_| Outcome::NotFound)? };
            let size = if large { st.st_size as u64 } else { body.len() as u64 };
            let file = FileId { size, ..file };
            // A large body's file is mapped (see `sweep` for how long a deleted one stays mapped),
            // or else opened again for each response and checked to be the same file.
            let map = if large { Mapping::new(&fd, size).map(Rc::new) } else { None };
            let rep = prepare(file, body, size, large, mtime_ns(st), coding, &ctype, cache_control.as_deref(), vary, clock);
            Ok(Rep { map, ..rep })
        };
        let ident = make(fd, &st, FileId::of(rel, &st), Coding::Identity)?;
        let br = match found_br {
            Some((f, s)) => Some(make(f, &s, FileId::of(siblings[0].0.clone(), &s), Coding::Br)?),
            None => None,
        };
        let gzip = match found_gz {
            Some((f, s)) => Some(make(f, &s, FileId::of(siblings[1].0.clone(), &s), Coding::Gzip)?),
            None if compress && !ident.large => gzip_of(&ident, &ctype, cache_control.as_deref(), clock),
            None => None,
        };
        let [sib_br, sib_gz]: [(CString, Option<FileId>); 2] = siblings.try_into().map_err(|_| Outcome::NotFound)?;
        let entry = Entry { ident, br, gzip, siblings: [sib_br, sib_gz], checked: clock.sec };
        Ok((entry, canonical))
    }

    fn content_type(&self, rel: &[u8]) -> &str {
        let name = rel.rsplit(|&b| b == b'/').next().unwrap_or(rel);
        if let Some(dot) = name.iter().rposition(|&b| b == b'.') {
            if let Ok(ext) = std::str::from_utf8(&name[dot + 1..]) {
                if let Some(t) = self.cfg.mime.get(&ext.to_ascii_lowercase()) {
                    return t;
                }
            }
        }
        &self.cfg.default_type
    }

    /// The Cache-Control value for a canonical path: the longest configured prefix wins.
    fn cache_control(&self, path: &[u8]) -> Option<&[u8]> {
        self.cfg.cache_control.iter().find(|(prefix, _)| path.starts_with(prefix)).map(|(_, v)| &v[..])
    }

    fn open_beneath(&self, rel: &[u8]) -> Result<(OwnedFd, libc::stat), Outcome> {
        let c = CString::new(rel).map_err(|_| Outcome::BadPath)?;
        open_beneath(&self.root, &c)
    }
}

/// Types worth compressing: text, and the textual or uncompressed application types.
fn compressible(ctype: &str) -> bool {
    let t = ctype.split(';').next().unwrap_or("").trim();
    t.starts_with("text/")
        || t.ends_with("+xml")
        || t.ends_with("+json")
        || matches!(t, "application/javascript" | "application/json" | "application/xml" | "application/wasm" | "image/x-icon" | "image/bmp")
}

/// The gzip form of an in-memory representation, made once; None when it does not save bytes.
fn gzip_of(ident: &Rep, ctype: &str, cache_control: Option<&[u8]>, clock: &Clock) -> Option<Rep> {
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
fn prepare(
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

/// Where a response's body comes from when it is not in the representation's buffer.
enum Body {
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
fn body_of(rep: &Rep, root: &OwnedFd, head_only: bool) -> Option<Body> {
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

/// Open a large representation's file for one response, making sure it is still the file the
/// prepared header describes.
fn open_same(root: &OwnedFd, id: &FileId) -> Result<OwnedFd, Outcome> {
    let (fd, st) = open_beneath(root, &id.rel)?;
    if id.same_file(&st) {
        Ok(fd)
    } else {
        Err(Outcome::NotFound)
    }
}

/// `/` + the resolved path (+ `/` for a directory), percent-encoded: the canonical spelling of a
/// request path, and the only one ever put in a Location header.
fn canonical_path(rel: &[u8], dir: bool) -> Vec<u8> {
    let mut out = vec![b'/'];
    if rel != b"." {
        for &b in rel {
            if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
                out.push(b);
            } else {
                out.extend_from_slice(format!("%{:02X}", b).as_bytes());
            }
        }
        if dir {
            out.push(b'/');
        }
    }
    out
}

/// Open `rel` below the root; symlinks are followed only while they stay below it.
fn open_beneath(root: &OwnedFd, c: &CString) -> Result<(OwnedFd, libc::stat), Outcome> {
    let fd = openat2_beneath(root.as_raw_fd(), c).map_err(|e| match e {
        libc::EACCES | libc::EPERM => Outcome::Forbidden,
        libc::EMFILE | libc::ENFILE | libc::ENOMEM => Outcome::Unavailable,
        _ => Outcome::NotFound, // ENOENT, ENOTDIR, and EXDEV/ELOOP for escapes: never say more
    })?;
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(Outcome::NotFound);
    }
    Ok((fd, st))
}

/// A fast keyed hash for request paths (SipHash costs more than the rest of a cache hit). The
/// key is random per worker, so colliding paths cannot be precomputed by a client.
#[derive(Clone, Copy)]
pub struct PathHash(u64);

impl PathHash {
    pub fn new() -> Self {
        let mut seed = [0u8; 8];
        unsafe { libc::getrandom(seed.as_mut_ptr() as *mut _, 8, 0) };
        PathHash(u64::from_ne_bytes(seed) | 1)
    }
}

pub struct PathHasher(u64);

impl BuildHasher for PathHash {
    type Hasher = PathHasher;
    fn build_hasher(&self) -> PathHasher {
        PathHasher(self.0)
    }
}

impl Hasher for PathHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().unwrap());
            h = (h.rotate_left(23) ^ w).wrapping_mul(K);
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(23) ^ u64::from_le_bytes(tail) ^ (bytes.len() as u64) << 56).wrapping_mul(K);
        self.0 = h;
    }
    fn finish(&self) -> u64 {
        let h = self.0;
        (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (h >> 32)
    }
}

/// The path part of a request target: origin-form as is, absolute-form without scheme and
/// authority; the query (and a stray fragment) dropped.
pub fn request_path(target: &[u8]) -> &[u8] {
    let mut t = target;
    if t.first() != Some(&b'/') {
        let ci = |p: &[u8]| t.len() >= p.len() && t[..p.len()].eq_ignore_ascii_case(p);
        let skip = if ci(b"http://") {
            7
        } else if ci(b"https://") {
            8
        } else {
            return t;
        };
        let rest = &t[skip..];
        t = match rest.iter().position(|&b| b == b'/') {
            Some(i) => &rest[i..],
            None => b"/",
        };
    }
    let end = t.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(t.len());
    &t[..end]
}

/// Percent-decode `path`; `None` for a malformed escape.
pub fn normalize_percent(path: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' {
            let h = |c: Option<&u8>| c.and_then(|&c| (c as char).to_digit(16));
            out.push((h(path.get(i + 1))? * 16 + h(path.get(i + 2))?) as u8);
            i += 3;
        } else {
            out.push(path[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Percent-decode and resolve dot segments. Returns the path relative to the root (`.` for the
/// root itself) and whether the request named a directory (trailing slash).
/// Any segment that would climb above the root, a NUL, or a bad escape is refused; a segment
/// starting with a dot (a hidden file, `.git`, `.env`) is never served.
pub fn normalize(path: &[u8]) -> Result<(Vec<u8>, bool), Outcome> {
    let decoded = normalize_percent(path).ok_or(Outcome::BadPath)?;
    if decoded.contains(&0) {
        return Err(Outcome::BadPath);
    }
    let trailing = decoded.last() == Some(&b'/');
    let mut segs: Vec<&[u8]> = Vec::new();
    for seg in decoded.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                if segs.pop().is_none() {
                    return Err(Outcome::BadPath);
                }
            }
            s if s[0] == b'.' => return Err(Outcome::NotFound),
            s => segs.push(s),
        }
    }
    if segs.is_empty() {
        return Ok((b".".to_vec(), true));
    }
    Ok((segs.join(&b'/'), trailing))
}

fn openat2_beneath(dirfd: i32, path: &CString) -> Result<i32, i32> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
    const RESOLVE_BENEATH: u64 = 0x08;
    let flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
    let how = OpenHow { flags: flags as u64, mode: 0, resolve: RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS };
    let fd = unsafe {
        libc::syscall(libc::SYS_openat2, dirfd, path.as_ptr(), &how as *const OpenHow, std::mem::size_of::<OpenHow>())
    };
    if fd >= 0 {
        return Ok(fd as i32);
    }
    let err = crate::io::sys::errno();
    // ENOSYS: a kernel before 5.6; EPERM: a seccomp filter that refuses openat2.
    if err != libc::ENOSYS && err != libc::EPERM {
        return Err(err);
    }
    // Kernels before 5.6: open, then check that the real path is still below the root.
    let fd = unsafe { libc::openat(dirfd, path.as_ptr(), flags) };
    if fd < 0 {
        return Err(crate::io::sys::errno());
    }
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let real = std::fs::read_link(format!("/proc/self/fd/{fd}")).map_err(|_| libc::ENOENT)?;
    let root = std::fs::read_link(format!("/proc/self/fd/{dirfd}")).map_err(|_| libc::ENOENT)?;
    if !real.starts_with(&root) {
        return Err(libc::EXDEV);
    }
    use std::os::fd::IntoRawFd;
    Ok(owned.into_raw_fd())
}

fn fstatat(root: &OwnedFd, rel: &CString) -> Option<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::fstatat(root.as_raw_fd(), rel.as_ptr(), &mut st, 0) };
    (r == 0).then_some(st)
}

fn mtime_ns(st: &libc::stat) -> i128 {
    st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128
}

fn read_all(fd: &OwnedFd, size: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size as usize];
    let mut got = 0;
    while got < buf.len() {
        let n = unsafe {
            libc::pread(fd.as_raw_fd(), buf[got..].as_mut_ptr() as *mut _, buf.len() - got, got as libc::off_t)
        };
        if n < 0 {
            if crate::io::sys::errno() == libc::EINTR {
                continue;
            }
            return Err(std::io::Error::last_os_error());
        }
        if n == 0 {
            break; // truncated while we read: serve what is there, consistently framed
        }
        got += n as usize;
    }
    buf.truncate(got);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(request_path(b"/a/b?x=1"), b"/a/b");
        assert_eq!(request_path(b"/a#f"), b"/a");
        assert_eq!(request_path(b"http://h:1/x?y"), b"/x");
        assert_eq!(request_path(b"HTTPS://h"), b"/");
        assert_eq!(request_path(b"*"), b"*");
        assert_eq!(normalize(b"/").unwrap(), (b".".to_vec(), true));
        assert_eq!(normalize(b"/a/b").unwrap(), (b"a/b".to_vec(), false));
        assert_eq!(normalize(b"/a//./b/").unwrap(), (b"a/b".to_vec(), true));
        assert_eq!(normalize(b"/a/../b").unwrap(), (b"b".to_vec(), false));
        assert_eq!(normalize(b"/%61%2Fb").unwrap(), (b"a/b".to_vec(), false));
        assert_eq!(normalize(b"/.."), Err(Outcome::BadPath));
        assert_eq!(normalize(b"/a/../.."), Err(Outcome::BadPath));
        assert_eq!(normalize(b"/%2e%2e/etc/passwd"), Err(Outcome::BadPath));
        assert_eq!(normalize(b"/%2E%2E%2fetc"), Err(Outcome::BadPath));
        assert_eq!(normalize(b"/a%00b"), Err(Outcome::BadPath));
        assert_eq!(normalize(b"/a%zz"), Err(Outcome::BadPath));
        assert_eq!(normalize(b"/a%2"), Err(Outcome::BadPath));
        assert_eq!(normalize(b"/.git/config"), Err(Outcome::NotFound));
        assert_eq!(normalize(b"/a/.env"), Err(Outcome::NotFound));
    }
}
