//! The file-system side of static files: opening a path below the docroot (`openat2` with
//! RESOLVE_BENEATH, or `openat` and a check of the real path on kernels before 5.6), `fstatat`,
//! the identity of a file ([`FileId`]) that tells whether it changed, reading a small file whole,
//! and turning a request target into a path below the root ([`request_path`], [`normalize`],
//! [`canonical_path`]). [`Outcome`] is here too, at the bottom of the module's layers, because
//! most of its refusals (404, 403, 400, 503) come from these functions.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

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

/// A file as it was when its response was prepared.
#[derive(Clone)]
pub(super) struct FileId {
    /// The resolved path below the root (what was opened).
    pub(super) rel: CString,
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) size: u64,
    pub(super) mtime_ns: i128,
}

impl FileId {
    pub(super) fn of(rel: CString, st: &libc::stat) -> FileId {
        FileId { rel, dev: st.st_dev, ino: st.st_ino, size: st.st_size as u64, mtime_ns: mtime_ns(st) }
    }

    pub(super) fn same_file(&self, st: &libc::stat) -> bool {
        self.unchanged(st) && (st.st_mode & libc::S_IFMT) == libc::S_IFREG
    }

    /// The same inode, size and mtime, whatever kind of file it is.
    pub(super) fn unchanged(&self, st: &libc::stat) -> bool {
        st.st_dev == self.dev && st.st_ino == self.ino && st.st_size as u64 == self.size && mtime_ns(st) == self.mtime_ns
    }
}

/// Open a large representation's file for one response, making sure it is still the file the
/// prepared header describes.
pub(super) fn open_same(root: &OwnedFd, id: &FileId) -> Result<OwnedFd, Outcome> {
    let (fd, st) = open_beneath(root, &id.rel)?;
    if id.same_file(&st) {
        Ok(fd)
    } else {
        Err(Outcome::NotFound)
    }
}

/// `/` + the resolved path (+ `/` for a directory), percent-encoded: the canonical spelling of a
/// request path, and the only one ever put in a Location header.
pub(super) fn canonical_path(rel: &[u8], dir: bool) -> Vec<u8> {
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
pub(super) fn open_beneath(root: &OwnedFd, c: &CString) -> Result<(OwnedFd, libc::stat), Outcome> {
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

/// The path part of a request target: origin-form as is, absolute-form without scheme and
/// authority; the query (and a stray fragment) dropped.
pub fn request_path(target: &[u8]) -> &[u8] {
    let mut t = target;
    if t.first() != Some(&b'/') {
        let Some(rest) = crate::h1::parse::after_scheme(t) else { return t };
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

pub(super) fn fstatat(root: &OwnedFd, rel: &CString) -> Option<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::fstatat(root.as_raw_fd(), rel.as_ptr(), &mut st, 0) };
    (r == 0).then_some(st)
}

pub(super) fn mtime_ns(st: &libc::stat) -> i128 {
    st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128
}

pub(super) fn read_all(fd: &OwnedFd, size: u64) -> std::io::Result<Vec<u8>> {
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
