//! The per-worker cache of prepared responses: its configuration ([`StaticConfig`]), the entries
//! (a file and the precompressed siblings found beside it), the map keyed by the request path as
//! sent with its fast keyed hash ([`PathHash`]) and its limits in entries and bytes, loading an
//! entry on a miss (resolving the path, the index file, the siblings, and preparing each
//! representation), the check of an entry against the file system, and the sweep of mapped files.

use super::fs::{canonical_path, fstatat, mtime_ns, normalize, open_beneath, read_all, FileId, Outcome};
use super::negotiate::Coding;
use super::prepare::{compressible, gzip_of, prepare, Rep};
use crate::h1::encode::Clock;
use crate::io::out::Mapping;
use std::collections::HashMap;
use std::ffi::CString;
use std::hash::{BuildHasher, Hasher};
use std::os::fd::{FromRawFd, OwnedFd};
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
    /// Large files may be mapped (written from the mapping by the kernel). Off over TLS, which
    /// reads bodies in user space, where a file truncated under its mapping raises SIGBUS:
    /// there they are read with pread.
    pub map_large: bool,
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
            map_large: true,
        }
    }
}

/// A cached file: the file, and the compressed siblings found beside it.
pub(super) struct Entry {
    pub(super) ident: Rep,
    pub(super) br: Option<Rep>,
    pub(super) gzip: Option<Rep>,
    /// The sibling names looked for (`.br`, `.gz`) and what was found, to notice one that appears
    /// or goes.
    siblings: [(CString, Option<FileId>); 2],
    /// The second this entry was last compared with the file system.
    pub(super) checked: i64,
}

impl Entry {
    pub(super) fn bytes(&self) -> usize {
        self.ident.buf.len() + self.br.as_ref().map_or(0, |r| r.buf.len()) + self.gzip.as_ref().map_or(0, |r| r.buf.len())
    }

    /// The file and its siblings are as they were when the entry was made.
    pub(super) fn fresh(&self, root: &OwnedFd) -> bool {
        fstatat(root, &self.ident.file.rel).is_some_and(|st| self.ident.file.same_file(&st))
            && self.siblings.iter().all(|(name, was)| match (was, fstatat(root, name)) {
                (Some(id), Some(st)) => id.unchanged(&st),
                (None, None) => true,
                _ => false,
            })
    }
}

pub struct StaticFiles {
    cfg: StaticConfig,
    pub(super) root: OwnedFd,
    pub(super) map: HashMap<Box<[u8]>, Entry, PathHash>,
    pub(super) bytes: usize,
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

    pub(super) fn insert(&mut self, key: &[u8], e: Entry) {
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
    pub(super) fn load(&self, path: &[u8], clock: &Clock) -> Result<(Entry, bool), Outcome> {
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
            let map = if large && self.cfg.map_large { Mapping::new(&fd, size).map(Rc::new) } else { None };
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
