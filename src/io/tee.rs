//! Bodies that leave by reference: tee(2) from a pipe that holds the body, then splice(2) from
//! there to the socket. For bodies above [`MIN`] this costs the kernel less than write(2) copying
//! them from memory, because the socket gets references to the pipe's pages instead of a copy.
//! Measured with the C floor (bench/README.md), server CPU per request for a 64 KiB body:
//! write 11.2 µs, header with MSG_MORE then tee and splice 10.2 µs; at 16 KiB write is cheaper.
//!
//! This is for a response sent on its own (keep-alive, one request at a time): among pipelined
//! responses the output queue writes the body from memory with the others in one writev, as
//! three calls per response cost more there (64 KiB, 16 deep: 15.5 against 9.5 µs per response).
//!
//! Each worker has one outgoing pipe, empty between calls. Per response: tee(body pipe →
//! outgoing), then splice(outgoing → socket). When the socket takes only part, the rest is
//! dropped from the outgoing pipe (spliced to /dev/null) and the caller sends it from the copy
//! of the body it keeps in memory. So no connection owns a pipe, and nothing is lost or sent
//! twice.
//!
//! Pipe pages are limited per user (`/proc/sys/fs/pipe-user-pages-soft`, 64 MiB by default), and
//! past that limit every new pipe of the user (the application's too) gets 8 KiB. So a worker
//! holds at most a quarter of the limit divided by the number of CPUs (one worker each), and at
//! most [`BUDGET`], counting its outgoing pipe. Past it, or whenever the kernel refuses a pipe,
//! bodies go out from memory as before.

use std::cell::{Cell, RefCell};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Bodies smaller than this are written from memory: below about 32 KiB one copy is cheaper
/// than the three calls (head, tee, splice) and the page references.
pub const MIN: usize = 32 * 1024;
/// The largest body sent this way (the outgoing pipe grows to the largest body sent, up to this).
pub const MAX: usize = 1 << 20;
/// Bytes of pipes one worker may hold at most (see [`budget`]).
pub const BUDGET: usize = 16 << 20;
/// A pipe's default size.
const PIPE_DEFAULT: usize = 64 * 1024;

/// The worker's outgoing pipe, and /dev/null to empty it.
struct Outgoing {
    r: OwnedFd,
    w: OwnedFd,
    null: OwnedFd,
    cap: usize,
}

enum State {
    Unopened,
    Open(Outgoing),
    /// The kernel refused it: bodies go out from memory.
    Refused,
}

thread_local! {
    static OUT: RefCell<State> = const { RefCell::new(State::Unopened) };
    static USED: Cell<usize> = const { Cell::new(0) };
    static LIMIT: Cell<Option<usize>> = const { Cell::new(None) };
    static SPLICED: Cell<u64> = const { Cell::new(0) };
}

/// Bodies this thread sent with splice, whole or in part.
pub fn spliced() -> u64 {
    SPLICED.get()
}

/// Bytes of pipes this worker may hold: a quarter of the user's soft limit shared by one worker
/// per CPU, at most [`BUDGET`] (all of it when the limit is off).
pub fn budget() -> usize {
    if let Some(b) = LIMIT.get() {
        return b;
    }
    let pages: usize = std::fs::read_to_string("/proc/sys/fs/pipe-user-pages-soft")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(16384);
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    let b = if pages == 0 { BUDGET } else { (pages * 4096 / 4 / cpus).min(BUDGET) };
    LIMIT.set(Some(b));
    b
}

fn pipe() -> Option<(OwnedFd, OwnedFd)> {
    let mut p = [0i32; 2];
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return None;
    }
    unsafe { Some((OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1]))) }
}

/// Give the pipe at least `len` bytes of room; its size, or None.
fn size_pipe(w: &OwnedFd, len: usize) -> Option<usize> {
    let cap = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ) };
    if cap >= 0 && cap as usize >= len {
        return Some(cap as usize);
    }
    let cap = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, len as libc::c_int) };
    (cap >= 0 && cap as usize >= len).then_some(cap as usize)
}

fn open_outgoing() -> Option<Outgoing> {
    let (r, w) = pipe()?;
    let cap = size_pipe(&w, PIPE_DEFAULT)?;
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if null < 0 {
        return None;
    }
    USED.set(USED.get() + cap);
    Some(Outgoing { r, w, null: unsafe { OwnedFd::from_raw_fd(null) }, cap })
}

impl Outgoing {
    /// Room for a body of `len` bytes: grow the pipe within the budget. False if it can't.
    fn room_for(&mut self, len: usize) -> bool {
        if len <= self.cap {
            return true;
        }
        let want = len.next_power_of_two();
        if USED.get() + want - self.cap > budget() {
            return false;
        }
        match size_pipe(&self.w, want) {
            Some(cap) => {
                USED.set(USED.get() + cap - self.cap);
                self.cap = cap;
                true
            }
            None => false,
        }
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        USED.set(USED.get() - self.cap);
    }
}

/// A body held in a pipe, read only with tee(2), so it stays there.
pub struct BodyPipe {
    fd: OwnedFd,
    len: usize,
    cap: usize,
}

impl BodyPipe {
    /// A pipe holding `body`; None when the body is outside [`MIN`]..=[`MAX`], the worker's
    /// budget is spent, or the kernel refuses.
    pub fn new(body: &[u8]) -> Option<BodyPipe> {
        let len = body.len();
        let refused = OUT.with_borrow(|s| matches!(s, State::Refused));
        if refused || !(MIN..=MAX).contains(&len) || USED.get() + len.next_power_of_two().max(PIPE_DEFAULT) > budget() {
            return None;
        }
        let (r, w) = pipe()?;
        let cap = size_pipe(&w, len)?;
        let mut off = 0;
        while off < len {
            let n = unsafe { libc::write(w.as_raw_fd(), body[off..].as_ptr().cast(), len - off) };
            if n <= 0 {
                return None;
            }
            off += n as usize;
        }
        USED.set(USED.get() + cap);
        Some(BodyPipe { fd: r, len, cap })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for BodyPipe {
    fn drop(&mut self) {
        USED.set(USED.get() - self.cap);
    }
}

/// Bytes of body pipes this worker holds now.
pub fn used() -> usize {
    USED.get()
}

/// What [`send`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// The whole body.
    All,
    /// This many bytes (more than 0, less than all): the socket is full; send the rest from
    /// memory when it is writable.
    Part(usize),
    /// Nothing: the socket is full.
    Blocked,
    /// Nothing: no pipe could be used. Send the body from memory.
    Unusable,
    /// The connection failed.
    Error,
}

/// Send `body` to the socket `sock`: the last output queued, so no SPLICE_F_MORE.
pub fn send(sock: i32, body: &BodyPipe) -> Sent {
    OUT.with_borrow_mut(|state| {
        if let State::Unopened = state {
            *state = open_outgoing().map_or(State::Refused, State::Open);
        }
        let State::Open(out) = state else { return Sent::Unusable };
        if !out.room_for(body.len) {
            return Sent::Unusable;
        }
        let nb = libc::SPLICE_F_NONBLOCK;
        let t = loop {
            let t = unsafe { libc::tee(body.fd.as_raw_fd(), out.w.as_raw_fd(), body.len, nb) };
            if t >= 0 || crate::io::sys::errno() != libc::EINTR {
                break t;
            }
        };
        if t != body.len as isize {
            if t > 0 && !drain(out, t as usize) {
                *state = State::Unopened;
            }
            return Sent::Unusable;
        }
        let flags = nb | libc::SPLICE_F_MOVE;
        let s = loop {
            let s = unsafe {
                libc::splice(out.r.as_raw_fd(), std::ptr::null_mut(), sock, std::ptr::null_mut(), body.len, flags)
            };
            if s >= 0 || crate::io::sys::errno() != libc::EINTR {
                break s;
            }
        };
        let err = crate::io::sys::errno();
        let sent = if s < 0 { 0 } else { s as usize };
        if sent > 0 {
            SPLICED.set(SPLICED.get() + 1);
        }
        if sent < body.len && !drain(out, body.len - sent) {
            *state = State::Unopened; // a fresh pipe next time: this one may hold stale bytes
        }
        match s {
            _ if s < 0 && err == libc::EAGAIN => Sent::Blocked,
            _ if s < 0 && matches!(err, libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS) => {
                *state = State::Refused; // this socket can't be spliced to: nothing was sent
                Sent::Unusable
            }
            _ if s < 0 => Sent::Error,
            0 => Sent::Error, // splice returns 0 only when nothing could ever be written
            _ if sent == body.len => Sent::All,
            _ => Sent::Part(sent),
        }
    })
}

/// Throw away the `n` bytes left in the outgoing pipe. False if that failed.
fn drain(out: &Outgoing, mut n: usize) -> bool {
    while n > 0 {
        let d = unsafe {
            libc::splice(out.r.as_raw_fd(), std::ptr::null_mut(), out.null.as_raw_fd(), std::ptr::null_mut(), n, libc::SPLICE_F_NONBLOCK)
        };
        if d <= 0 {
            if d < 0 && crate::io::sys::errno() == libc::EINTR {
                continue;
            }
            return false;
        }
        n -= d as usize;
    }
    true
}

/// Make this thread's sends find no usable pipe (tests of the fallback to memory).
#[cfg(test)]
pub fn refuse() {
    OUT.with_borrow_mut(|s| *s = State::Refused);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn sizes_outside_the_range_are_not_piped() {
        assert!(BodyPipe::new(&body(MIN - 1)).is_none());
        assert!(BodyPipe::new(&body(MAX + 1)).is_none());
        let p = BodyPipe::new(&body(MIN)).expect("a pipe");
        assert_eq!(p.len(), MIN);
        assert!(used() >= MIN);
    }

    /// Send `b` three times through a socket whose buffer holds less than one body, the reader
    /// starting only after the first try: the first send is cut short, its rest goes from
    /// memory, and the stream holds the three bodies exactly (nothing stale left in the pipe).
    #[test]
    fn a_cut_body_is_finished_from_memory_and_nothing_is_left_over() {
        let b = body(200_000);
        let p = BodyPipe::new(&b).expect("a pipe");
        let (a, mut z) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let small: libc::c_int = 16 * 1024;
        unsafe {
            libc::setsockopt(a.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, (&small as *const libc::c_int).cast(), 4);
        }
        let first = send(a.as_raw_fd(), &p);
        let cut = match first {
            Sent::Part(n) => n,
            other => panic!("expected a partial send, got {other:?}"),
        };
        assert!(cut > 0 && cut < b.len());
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            z.read_to_end(&mut got).unwrap();
            got
        });
        let write_all = |mut rest: &[u8]| {
            let mut w = &a;
            while !rest.is_empty() {
                match std::io::Write::write(&mut w, rest) {
                    Ok(k) => rest = &rest[k..],
                    Err(_) => std::thread::yield_now(),
                }
            }
        };
        write_all(&b[cut..]);
        for _ in 0..2 {
            loop {
                match send(a.as_raw_fd(), &p) {
                    Sent::All => break,
                    Sent::Part(n) => {
                        write_all(&b[n..]);
                        break;
                    }
                    Sent::Blocked => std::thread::yield_now(),
                    other => panic!("{other:?}"),
                }
            }
        }
        drop(a);
        let got = reader.join().unwrap();
        assert_eq!(got.len(), b.len() * 3);
        for chunk in got.chunks(b.len()) {
            assert!(chunk == &b[..], "a body came out changed");
        }
    }

    #[test]
    fn the_budget_is_given_back() {
        let before = used();
        let p = BodyPipe::new(&body(64 * 1024)).expect("a pipe");
        assert!(used() > before);
        drop(p);
        assert_eq!(used(), before);
    }
}
