//! The io_uring backend (`--io uring`, issue 14). The loop (`worker`) stays readiness-driven and
//! the connection state machine (`h1::conn`) does not know which backend runs it: this file
//! turns completions into the readiness the rest expects.
//!
//! - Input: each connection has one multishot recv into a provided-buffer ring. What a
//!   completion carries is copied onto the connection's [`RingSock::rx`] and the buffer goes
//!   back to the ring at once; a read through the transport takes from `rx`, and a connection
//!   with `rx` not empty is "readable" (level-triggered, as epoll's EPOLLIN).
//! - Output: a write through the transport copies the bytes onto [`RingSock::next`] (a small
//!   socket buffer in user space, [`STAGE_MAX`] at most) and reports them written; the loop
//!   sends what is staged with one send per connection in flight, all of a turn's sends in one
//!   `io_uring_enter`. A large write with nothing staged goes straight to the socket (the copy
//!   would cost more than the syscall), as do files (sendfile) and piped bodies (splice), so
//!   their bytes are never reordered with staged ones: they wait until the staged bytes went.
//! - Waiting: one `io_uring_enter` per turn submits what the turn queued and waits for the
//!   next completion (or the turn's timeout).
//!
//! Ownership: every buffer the kernel reads from (a send in flight) is owned here until its
//! completion, even when its connection closed before (an orphan).

use super::tee::{self, BodyPipe, Sent};
use super::transport::{Io, Socket, Transport};
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::io;
use std::os::fd::OwnedFd;

/// Buffers in the provided-buffer ring (a power of two), and the size of each: 512 × 8 KiB
/// = 4 MiB a worker. A completion carries at most one buffer, so this is also the most one
/// turn can receive before the loop reads it.
const BUF_COUNT: u16 = 512;
const BUF_SIZE: usize = 8 * 1024;
const GROUP: u16 = 0;
/// Bytes received and not read yet past which the recv is stopped.
const RX_MAX: usize = 256 * 1024;
/// Bytes a connection may have staged and in flight before a write reports the socket full.
pub const STAGE_MAX: usize = 256 * 1024;
/// A write at least this large, with nothing staged, goes to the socket directly.
const DIRECT_MIN: usize = 16 * 1024;

/// What a completion is for (the top byte of its user data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Accept = 1,
    Recv = 2,
    Send = 3,
    /// A connection waits for room after a direct write found the socket full.
    PollOut = 4,
    /// The signalfd is readable.
    Signals = 5,
    /// The application's descriptor is readable.
    AppWake = 6,
    /// A cancelation's own completion (nothing to do).
    Cancel = 7,
}

/// User data: the op, the descriptor (24 bits) and the low 32 bits of the connection's
/// generation, so a completion for an earlier connection on the same descriptor is told apart.
pub fn user_data(op: Op, fd: i32, gen: u64) -> u64 {
    ((op as u64) << 56) | (((fd as u64) & 0xff_ffff) << 32) | (gen & 0xffff_ffff)
}

#[derive(Clone, Copy)]
pub struct Completion {
    pub op: Option<Op>,
    pub fd: i32,
    pub gen: u32,
    pub res: i32,
    pub flags: u32,
    pub data: u64,
}

impl Completion {
    fn new(data: u64, res: i32, flags: u32) -> Self {
        let op = match data >> 56 {
            1 => Some(Op::Accept),
            2 => Some(Op::Recv),
            3 => Some(Op::Send),
            4 => Some(Op::PollOut),
            5 => Some(Op::Signals),
            6 => Some(Op::AppWake),
            7 => Some(Op::Cancel),
            _ => None,
        };
        Completion { op, fd: ((data >> 32) & 0xff_ffff) as i32, gen: data as u32, res, flags, data }
    }

    /// The operation goes on (a multishot one that will complete again).
    pub fn more(&self) -> bool {
        cqueue::more(self.flags)
    }

    /// A connection's generation, as user data holds it.
    pub fn is_for(&self, gen: u64) -> bool {
        self.gen == gen as u32
    }
}

/// The provided buffers: a ring of (address, length, id) entries shared with the kernel, and
/// the memory they point into.
struct BufRing {
    entries: *mut types::BufRingEntry,
    mem: Vec<u8>,
    tail: u16,
    /// How many (a power of two; BUF_COUNT but in tests).
    count: u16,
}

impl BufRing {
    fn new(count: u16) -> io::Result<BufRing> {
        let size = count as usize * std::mem::size_of::<types::BufRingEntry>();
        let p = unsafe { libc::mmap(std::ptr::null_mut(), size, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_ANONYMOUS | libc::MAP_PRIVATE, -1, 0) };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // Written once here, so the worker holds its buffers from the start (as it will under
        // load) rather than growing by them later.
        let mut b = BufRing { entries: p.cast(), mem: vec![1u8; count as usize * BUF_SIZE], tail: 0, count };
        for id in 0..count {
            b.add(id);
        }
        b.publish();
        Ok(b)
    }

    fn add(&mut self, id: u16) {
        let slot = (self.tail & (self.count - 1)) as usize;
        // SAFETY: `slot` < `count` entries of the mapping; the kernel reads only published ones.
        let e = unsafe { &mut *self.entries.add(slot) };
        e.set_addr(self.mem.as_ptr() as u64 + id as u64 * BUF_SIZE as u64);
        e.set_len(BUF_SIZE as u32);
        e.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Let the kernel see the entries added (a release store of the tail).
    fn publish(&self) {
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries) as *const std::sync::atomic::AtomicU16;
            (*tail).store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }

    fn bytes(&self, id: u16, len: usize) -> &[u8] {
        let start = id as usize * BUF_SIZE;
        &self.mem[start..start + len.min(BUF_SIZE)]
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        let size = self.count as usize * std::mem::size_of::<types::BufRingEntry>();
        unsafe { libc::munmap(self.entries.cast(), size) };
    }
}

/// Why io_uring can't be used here, in a few words (None: it can). Tried the way the worker
/// makes its ring, so a kernel or sandbox that forbids part of it (a seccomp profile, the
/// `kernel.io_uring_disabled` sysctl, a kernel before 6.1) is found before serving.
pub fn unavailable() -> Option<String> {
    match Ring::new(true) {
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}

pub struct Ring {
    uring: IoUring,
    bufs: BufRing,
    /// Staged bytes of sends in flight whose connections were closed: freed by their completion.
    orphans: Vec<(u64, Vec<u8>)>,
    /// A turn's completions, kept between turns.
    cqes: Vec<Completion>,
}

impl Ring {
    /// `solo`: only the thread that makes the ring ever enters it, and nothing else waits on
    /// it: IORING_SETUP_SINGLE_ISSUER and DEFER_TASKRUN (completions are posted when this thread
    /// asks for them, none interrupts it). A worker serving an application is not: its loop
    /// passes between the handler threads (`apps::threads`), or asyncio waits on the ring's
    /// descriptor (ASGI), so its completions must be posted without the loop entering the ring.
    /// Such a ring gets IORING_SETUP_COOP_TASKRUN instead: a completion does not interrupt the
    /// thread that submitted its operation (an inter-processor interrupt when the client's
    /// packet was taken on another CPU) but runs at its next entry to the kernel, which wakes it
    /// when it sleeps. Without it, the native hello cost 8.8-9.5 µs of system time per request
    /// on the ring against 5.6-6.3 on epoll; with it 6.1-6.9.
    pub fn new(solo: bool) -> io::Result<Ring> {
        Ring::with_sizes(solo, 4096, 16384, BUF_COUNT)
    }

    /// A ring of `sq` submission and `cq` completion entries with `bufs` provided buffers
    /// (smaller ones make the faults of the tests and of the `ring` fuzz target: a full
    /// completion queue, no buffer left).
    pub fn with_sizes(solo: bool, sq: u32, cq: u32, bufs: u16) -> io::Result<Ring> {
        let mut b = IoUring::builder();
        b.setup_cqsize(cq);
        if solo {
            b.setup_single_issuer().setup_defer_taskrun();
        } else {
            b.setup_coop_taskrun().setup_taskrun_flag();
        }
        let uring = b.build(sq).map_err(|e| io::Error::new(e.kind(), format!("io_uring_setup: {e}")))?;
        let mut probe = io_uring::Probe::new();
        uring.submitter().register_probe(&mut probe).map_err(|e| io::Error::new(e.kind(), format!("io_uring probe: {e}")))?;
        for (code, name) in [(opcode::RecvMulti::CODE, "recv"), (opcode::AcceptMulti::CODE, "accept"), (opcode::Send::CODE, "send"), (opcode::PollAdd::CODE, "poll")] {
            if !probe.is_supported(code) {
                return Err(io::Error::other(format!("io_uring has no {name} operation")));
            }
        }
        let bufs = BufRing::new(bufs)?;
        // SAFETY: the entries live as long as the ring (dropped after it: field order).
        unsafe { uring.submitter().register_buf_ring_with_flags(bufs.entries as u64, bufs.count, GROUP, 0) }
            .map_err(|e| io::Error::new(e.kind(), format!("io_uring provided buffers (kernel 5.19+): {e}")))?;
        Ok(Ring { uring, bufs, orphans: Vec::new(), cqes: Vec::new() })
    }

    pub fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.uring.as_raw_fd()
    }

    fn push(&mut self, e: squeue::Entry) {
        // SAFETY: every buffer an entry points to outlives its completion (see the callers).
        unsafe {
            if self.uring.submission().push(&e).is_err() {
                let _ = self.uring.submit(); // the queue is full: hand it to the kernel first
                let _ = self.uring.submission().push(&e);
            }
        }
    }

    pub fn accept(&mut self, listen_fd: i32) {
        let e = opcode::AcceptMulti::new(types::Fd(listen_fd)).flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC).build();
        self.push(e.user_data(user_data(Op::Accept, listen_fd, 0)));
    }

    /// Watch a descriptor for input, for ever (the signalfd, the application's descriptor).
    pub fn watch(&mut self, fd: i32, op: Op) {
        let e = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32).multi(true).build();
        self.push(e.user_data(user_data(op, fd, 0)));
    }

    pub fn cancel(&mut self, data: u64) {
        self.push(opcode::AsyncCancel::new(data).build().user_data(user_data(Op::Cancel, 0, 0)));
    }

    /// Start receiving on a connection.
    pub fn recv(&mut self, fd: i32, gen: u64, sock: &mut RingSock) {
        if sock.recv || sock.readable() {
            // Read what was received first (the loop reads it at the end of the turn). A recv
            // being canceled is started again only after its last completion: two on one
            // socket would share a user data, and a cancel would stop only one of them.
            return;
        }
        sock.recv = true;
        let e = opcode::RecvMulti::new(types::Fd(fd), GROUP).build();
        self.push(e.user_data(user_data(Op::Recv, fd, gen)));
    }

    /// Stop receiving (the connection has enough input waiting; the rest waits in the socket).
    pub fn stop_recv(&mut self, fd: i32, gen: u64, sock: &mut RingSock) {
        if sock.recv && !sock.canceling {
            sock.canceling = true; // `recv` stays set until its last completion
            self.cancel(user_data(Op::Recv, fd, gen));
        }
    }

    /// Wait for room on the socket (a direct write found it full).
    pub fn poll_out(&mut self, fd: i32, gen: u64, sock: &mut RingSock) {
        if !sock.poll {
            sock.poll = true;
            let e = opcode::PollAdd::new(types::Fd(fd), libc::POLLOUT as u32).build();
            self.push(e.user_data(user_data(Op::PollOut, fd, gen)));
        }
    }

    /// Send what the connection staged, unless a send is in flight (its completion sends the rest).
    pub fn send(&mut self, fd: i32, gen: u64, sock: &mut RingSock) {
        if !sock.flight.is_empty() || sock.next.is_empty() {
            return;
        }
        std::mem::swap(&mut sock.flight, &mut sock.next);
        sock.sent = 0;
        self.send_rest(fd, gen, sock);
    }

    fn send_rest(&mut self, fd: i32, gen: u64, sock: &mut RingSock) {
        let rest = &sock.flight[sock.sent..];
        // SAFETY: `flight` is not touched until this send completes (or is orphaned, then freed
        // by the completion).
        let e = opcode::Send::new(types::Fd(fd), rest.as_ptr(), rest.len() as u32).flags(libc::MSG_NOSIGNAL).build();
        self.push(e.user_data(user_data(Op::Send, fd, gen)));
    }

    /// A send completed: true if everything staged is gone (a short send sends the rest).
    pub fn sent(&mut self, c: &Completion, sock: &mut RingSock) -> bool {
        if c.res < 0 {
            sock.failed = true;
            sock.flight.clear();
            sock.next.clear();
            return true;
        }
        sock.sent += c.res as usize;
        if sock.sent < sock.flight.len() {
            self.send_rest(c.fd, c.gen as u64, sock);
            return false;
        }
        sock.flight.clear();
        sock.sent = 0;
        self.send(c.fd, c.gen as u64, sock);
        !sock.pending()
    }

    /// The connection closes once what it staged went: stop receiving and polling, and send
    /// the staged bytes (the loop closes its descriptor when the last send completes).
    pub fn retire(&mut self, fd: i32, gen: u64, sock: &mut RingSock) {
        self.stop_recv(fd, gen, sock);
        if sock.poll {
            sock.poll = false;
            self.cancel(user_data(Op::PollOut, fd, gen));
        }
        self.send(fd, gen, sock);
    }

    /// The connection is closed: cancel what it has in flight; what the kernel may still read
    /// is kept until its completion.
    pub fn forget(&mut self, fd: i32, gen: u64, sock: RingSock) {
        if sock.recv {
            self.cancel(user_data(Op::Recv, fd, gen));
        }
        if sock.poll {
            self.cancel(user_data(Op::PollOut, fd, gen));
        }
        if !sock.flight.is_empty() {
            let data = user_data(Op::Send, fd, gen);
            self.cancel(data);
            self.orphans.push((data, sock.flight));
        }
    }

    /// A send's completion for a closed connection: true if it was one (its bytes are freed).
    pub fn orphan_done(&mut self, data: u64) -> bool {
        match self.orphans.iter().position(|(d, _)| *d == data) {
            Some(i) => {
                self.orphans.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// A recv's completion: its bytes onto `rx` (the buffer goes back to the kernel), or the end
    /// of input; a recv that ended (no `more`) is started again by the loop if input is wanted.
    pub fn received(&mut self, c: &Completion, sock: &mut RingSock) {
        if let (Some(id), true) = (cqueue::buffer_select(c.flags), c.res > 0) {
            sock.rx.extend_from_slice(self.bufs.bytes(id, c.res as usize));
        }
        self.drop_buffer(c);
        match c.res {
            0 => sock.rx_end = Some(Io::Done(0)),
            r if r == -libc::ENOBUFS || r == -libc::ECANCELED => {}
            r if r < 0 => sock.rx_end = Some(Io::Error),
            _ => {}
        }
        if !c.more() {
            sock.recv = false;
            sock.canceling = false;
        }
        if sock.recv && !sock.canceling && sock.rx.len() - sock.rx_off > RX_MAX {
            // The loop does not read as fast as the client sends: the rest waits in the
            // socket (TCP's flow control) until what is here has been read.
            sock.canceling = true;
            self.cancel(c.data);
            self.submit(); // now: until it is taken, the kernel fills buffers for it
        }
    }

    /// Give a recv's buffer back to the kernel (its bytes were taken, or are not wanted).
    pub fn drop_buffer(&mut self, c: &Completion) {
        if let Some(id) = cqueue::buffer_select(c.flags) {
            self.bufs.add(id);
            self.bufs.publish();
        }
    }

    /// Hand what is queued to the kernel now, without waiting.
    pub fn submit(&mut self) {
        if !self.uring.submission().is_empty() {
            let _ = self.uring.submit();
        }
    }

    /// Submit the turn's operations and wait up to `timeout_ms` for a completion (0: none),
    /// releasing the GIL for a wait that blocks when `holds_gil`.
    pub fn wait(&mut self, timeout_ms: i32, holds_gil: bool) -> io::Result<()> {
        let ready = !self.uring.completion().is_empty();
        let queued = self.uring.submission().len() as u32;
        let submitter = self.uring.submitter();
        let r = if timeout_ms == 0 || ready {
            // No wait, but GETEVENTS: with DEFER_TASKRUN only an enter that asks for events
            // posts the completions the kernel has ready.
            unsafe { submitter.enter::<libc::sigset_t>(queued, 0, 1 /* IORING_ENTER_GETEVENTS */, None) }
        } else {
            let ts = types::Timespec::new().sec((timeout_ms / 1000) as u64).nsec((timeout_ms % 1000) as u32 * 1_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            if holds_gil {
                unsafe {
                    let st = pyo3::ffi::PyEval_SaveThread();
                    let r = submitter.submit_with_args(1, &args);
                    pyo3::ffi::PyEval_RestoreThread(st);
                    r
                }
            } else {
                submitter.submit_with_args(1, &args)
            }
        };
        match r {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The completions posted so far (the ring's queue is emptied into a kept list).
    pub fn take(&mut self) -> Vec<Completion> {
        let mut list = std::mem::take(&mut self.cqes);
        for c in self.uring.completion() {
            list.push(Completion::new(c.user_data(), c.result(), c.flags()));
        }
        list
    }

    /// Give the list back for the next turn.
    pub fn keep(&mut self, mut list: Vec<Completion>) {
        list.clear();
        self.cqes = list;
    }
}

/// A connection's side of the ring: input received and not read yet, output staged and in flight.
#[derive(Default)]
pub struct RingSock {
    rx: Vec<u8>,
    rx_off: usize,
    /// The end of input (Done(0)) or a failure, reported once `rx` is read.
    rx_end: Option<Io>,
    /// A multishot recv is armed (until its last completion, even once canceled).
    recv: bool,
    /// Its cancelation was asked for.
    canceling: bool,
    /// A POLLOUT poll is armed.
    poll: bool,
    /// The bytes of the send in flight, and how many of them went.
    flight: Vec<u8>,
    sent: usize,
    /// Bytes staged behind the send in flight.
    next: Vec<u8>,
    /// A send failed: the connection is gone.
    failed: bool,
    /// Shut the sending side once everything staged went (a lingering close).
    pub shut_pending: bool,
    /// The loop listed this connection as readable for the end of its turn.
    pub listed: bool,
}

impl RingSock {
    /// Input (or its end) waits to be read.
    pub fn readable(&self) -> bool {
        self.rx_off < self.rx.len() || self.rx_end.is_some()
    }

    /// Bytes received and not read yet.
    pub fn has_input(&self) -> bool {
        self.rx_off < self.rx.len()
    }

    /// Output staged or in flight.
    pub fn pending(&self) -> bool {
        !self.flight.is_empty() || !self.next.is_empty()
    }

    pub fn failed(&self) -> bool {
        self.failed
    }

    /// The POLLOUT poll completed.
    pub fn polled(&mut self) {
        self.poll = false;
    }

    fn staged(&self) -> usize {
        self.flight.len() - self.sent + self.next.len()
    }
}

/// A connection's transport over the ring (see the module's text).
pub struct RingWire<'a> {
    pub fd: i32,
    pub sock: &'a mut RingSock,
}

impl RingWire<'_> {
    /// The first byte received, left to be read (TLS tells its records from plain HTTP by it).
    pub fn peek(&mut self) -> Result<u8, Io> {
        let s = &*self.sock;
        match s.rx.get(s.rx_off) {
            Some(&b) => Ok(b),
            None => Err(s.rx_end.unwrap_or(Io::Blocked)),
        }
    }
}

impl Transport for RingWire<'_> {
    fn read(&mut self, buf: &mut [std::mem::MaybeUninit<u8>]) -> Io {
        let s = &mut *self.sock;
        if s.rx_off < s.rx.len() {
            let n = buf.len().min(s.rx.len() - s.rx_off);
            // SAFETY: `n` bytes fit in both; MaybeUninit<u8> has u8's layout.
            unsafe { std::ptr::copy_nonoverlapping(s.rx.as_ptr().add(s.rx_off), buf.as_mut_ptr().cast(), n) };
            s.rx_off += n;
            if s.rx_off == s.rx.len() {
                if s.rx.capacity() > RX_MAX {
                    s.rx = Vec::new(); // a burst's room is not kept
                } else {
                    s.rx.clear();
                }
                s.rx_off = 0;
            }
            return Io::Done(n);
        }
        s.rx_end.unwrap_or(Io::Blocked)
    }

    fn writev(&mut self, iov: &[libc::iovec], more: bool) -> Io {
        let s = &mut *self.sock;
        if s.failed {
            return Io::Error;
        }
        let total: usize = iov.iter().map(|v| v.iov_len).sum();
        if !s.pending() && total >= DIRECT_MIN {
            return Socket(self.fd).writev(iov, more);
        }
        let room = STAGE_MAX.saturating_sub(s.staged());
        if room == 0 {
            return Io::Blocked;
        }
        let mut n = 0;
        for v in iov {
            let take = v.iov_len.min(room - n);
            // SAFETY: the iovec describes `iov_len` readable bytes.
            s.next.extend_from_slice(unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, take) });
            n += take;
            if n == room {
                break;
            }
        }
        Io::Done(n)
    }

    fn sendfile(&mut self, file: &OwnedFd, off: u64, len: usize) -> Io {
        if self.sock.failed {
            return Io::Error;
        }
        if self.sock.pending() {
            return Io::Blocked; // after the staged bytes
        }
        Socket(self.fd).sendfile(file, off, len)
    }

    fn splice(&mut self, pipe: &BodyPipe) -> Sent {
        if self.sock.failed {
            return Sent::Error;
        }
        if self.sock.pending() {
            return Sent::Blocked;
        }
        tee::send(self.fd, pipe)
    }
}

/// The sending side is shut (a lingering close's start), now or once the staged bytes went.
pub fn shutdown_after(fd: i32, sock: &mut RingSock) {
    if sock.pending() {
        sock.shut_pending = true;
    } else {
        unsafe { libc::shutdown(fd, libc::SHUT_WR) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iov(b: &[u8]) -> libc::iovec {
        libc::iovec { iov_base: b.as_ptr() as *mut _, iov_len: b.len() }
    }

    #[test]
    fn small_writes_are_staged_in_order_up_to_the_bound_then_the_socket_is_full() {
        let mut sock = RingSock::default();
        let mut w = RingWire { fd: -1, sock: &mut sock };
        assert_eq!(w.writev(&[iov(b"HTTP/1.1 200 OK\r\n"), iov(b"\r\nx")], false), Io::Done(20));
        let big = vec![7u8; STAGE_MAX];
        // staged bytes wait: a large write is not sent around them, it is staged up to the bound
        assert_eq!(w.writev(&[iov(&big)], false), Io::Done(STAGE_MAX - 20));
        assert_eq!(w.writev(&[iov(b"more")], false), Io::Blocked);
        assert_eq!(&sock.next[..20], b"HTTP/1.1 200 OK\r\n\r\nx");
        assert_eq!(sock.next.len(), STAGE_MAX);
        // a file or a piped body waits for the staged bytes too
        let file: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        assert_eq!(RingWire { fd: -1, sock: &mut sock }.sendfile(&file, 0, 1), Io::Blocked);
    }

    #[test]
    fn a_large_write_with_nothing_staged_goes_to_the_socket_directly() {
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0, fds.as_mut_ptr()) }, 0);
        let mut sock = RingSock::default();
        let big = vec![1u8; DIRECT_MIN];
        assert_eq!(RingWire { fd: fds[0], sock: &mut sock }.writev(&[iov(&big)], false), Io::Done(DIRECT_MIN));
        assert!(!sock.pending(), "nothing staged: the kernel took it");
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }

    #[test]
    fn received_input_is_read_in_pieces_then_the_end_is_reported_every_time() {
        let mut sock = RingSock { rx: b"GET / HTTP/1.1\r\n\r\n".to_vec(), rx_end: Some(Io::Done(0)), ..Default::default() };
        assert!(sock.readable() && sock.has_input());
        let mut w = RingWire { fd: -1, sock: &mut sock };
        let mut buf = [0u8; 5];
        assert_eq!(w.read_into(&mut buf), Io::Done(5));
        assert_eq!(&buf, b"GET /");
        let mut rest = [0u8; 64];
        assert_eq!(w.read_into(&mut rest), Io::Done(13));
        assert_eq!(w.read_into(&mut rest), Io::Done(0));
        assert_eq!(w.read_into(&mut rest), Io::Done(0), "level-triggered, as epoll reports an end");
        assert!(!sock.has_input() && sock.readable());
    }

    /// A connected pair of non-blocking TCP sockets on loopback: (ours, the peer's).
    fn tcp_pair() -> (i32, i32) {
        use std::os::fd::IntoRawFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (ours, _) = l.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        peer.set_nonblocking(true).unwrap();
        (ours.into_raw_fd(), peer.into_raw_fd())
    }

    fn close(fds: &[i32]) {
        for &fd in fds {
            unsafe { libc::close(fd) };
        }
    }

    /// One turn of the loop: wait up to 100 ms, and the completions posted.
    fn turn(ring: &mut Ring) -> Vec<Completion> {
        ring.wait(100, false).unwrap();
        let list = ring.take();
        let out = list.clone();
        ring.keep(list);
        out
    }

    fn read_some(fd: i32, into: &mut Vec<u8>) {
        let mut buf = [0u8; 65536];
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            into.extend_from_slice(&buf[..n as usize]);
        }
    }

    #[test]
    fn a_short_send_sends_the_rest_in_order() {
        let (ours, peer) = tcp_pair();
        let small = 32768i32;
        unsafe {
            libc::setsockopt(ours, libc::SOL_SOCKET, libc::SO_SNDBUF, (&small as *const i32).cast(), 4);
            libc::setsockopt(peer, libc::SOL_SOCKET, libc::SO_RCVBUF, (&small as *const i32).cast(), 4);
        }
        let mut ring = Ring::with_sizes(true, 64, 128, 8).unwrap();
        let mut sock = RingSock::default();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut w = RingWire { fd: ours, sock: &mut sock };
        assert_eq!(w.writev(&[iov(&data[..1000])], false), Io::Done(1000));
        assert_eq!(w.writev(&[iov(&data[1000..])], false), Io::Done(data.len() - 1000), "staged behind the first");
        ring.send(ours, 1, &mut sock);
        let (mut got, mut short, mut sends) = (Vec::new(), 0, 0);
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while (got.len() < data.len() || sock.pending()) && std::time::Instant::now() < until {
            read_some(peer, &mut got); // room again: the send waiting for it goes on
            for c in turn(&mut ring) {
                assert_eq!(c.op, Some(Op::Send));
                assert!(c.res > 0, "send failed: {}", c.res);
                sends += 1;
                if (c.res as usize) < sock.flight.len() - sock.sent {
                    short += 1;
                }
                ring.sent(&c, &mut sock);
            }
        }
        assert!(got == data, "{} of {} bytes, in order: {}", got.len(), data.len(), got == data[..got.len()]);
        assert!(short > 0, "the socket took everything at once ({sends} sends): no short send was made");
        assert!(!sock.pending());
        close(&[ours, peer]);
    }

    #[test]
    fn completions_past_a_full_completion_queue_are_all_delivered() {
        let mut ring = Ring::with_sizes(true, 8, 16, 2).unwrap();
        let n = 200u64;
        for i in 0..n {
            ring.push(opcode::Nop::new().build().user_data(user_data(Op::Cancel, i as i32, i)));
        }
        ring.submit();
        assert!(ring.uring.submission().cq_overflow(), "200 completions overflow a 16-entry queue");
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..100 {
            for c in turn(&mut ring) {
                assert!(seen.insert(c.fd), "completion {} twice", c.fd);
            }
            if seen.len() as u64 == n {
                break;
            }
        }
        assert_eq!(seen.len() as u64, n, "every completion is delivered, none lost or repeated");
        assert!(!ring.uring.submission().cq_overflow());
    }

    #[test]
    fn a_recv_being_canceled_is_not_started_again_until_its_last_completion() {
        let (ours, peer) = tcp_pair();
        let mut ring = Ring::with_sizes(true, 64, 128, 8).unwrap();
        let mut sock = RingSock::default();
        ring.recv(ours, 3, &mut sock);
        ring.submit();
        ring.stop_recv(ours, 3, &mut sock);
        ring.recv(ours, 3, &mut sock); // input is wanted again before the cancel completed
        assert_eq!(ring.uring.submission().len(), 1, "only the cancel is queued, no second recv");
        let mut ended = None;
        for _ in 0..50 {
            for c in turn(&mut ring) {
                if c.op == Some(Op::Recv) {
                    ring.received(&c, &mut sock);
                    if !c.more() {
                        ended = Some(c.res);
                    }
                }
            }
            if ended.is_some() {
                break;
            }
        }
        assert_eq!(ended, Some(-libc::ECANCELED));
        assert!(!sock.recv && !sock.canceling);
        ring.recv(ours, 3, &mut sock);
        assert!(sock.recv, "started again after the last completion");
        assert_eq!(unsafe { libc::write(peer, b"hello".as_ptr().cast(), 5) }, 5);
        for _ in 0..50 {
            for c in turn(&mut ring) {
                ring.received(&c, &mut sock);
            }
            if sock.has_input() {
                break;
            }
        }
        assert_eq!(sock.rx, b"hello");
        close(&[ours, peer]);
    }

    #[test]
    fn a_recv_that_finds_no_buffer_left_is_started_again_and_loses_nothing() {
        let mut ring = Ring::with_sizes(true, 64, 128, 2).unwrap();
        let pairs: Vec<(i32, i32)> = (0..3).map(|_| tcp_pair()).collect();
        let mut socks: Vec<RingSock> = (0..3).map(|_| RingSock::default()).collect();
        for (i, &(_, peer)) in pairs.iter().enumerate() {
            let msg = format!("request {i}");
            assert_eq!(unsafe { libc::write(peer, msg.as_ptr().cast(), msg.len()) }, msg.len() as isize);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        for (i, &(ours, _)) in pairs.iter().enumerate() {
            ring.recv(ours, 1, &mut socks[i]);
        }
        let mut enobufs = 0;
        for _ in 0..50 {
            for c in turn(&mut ring) {
                let i = pairs.iter().position(|p| p.0 == c.fd).unwrap();
                if c.res == -libc::ENOBUFS {
                    enobufs += 1;
                }
                ring.received(&c, &mut socks[i]);
                if !c.more() {
                    ring.recv(c.fd, 1, &mut socks[i]); // as the loop does while input is wanted
                }
            }
            if socks.iter().all(|s| s.has_input()) {
                break;
            }
        }
        assert!(enobufs > 0, "three recvs and two buffers: one found none");
        for (i, s) in socks.iter().enumerate() {
            assert_eq!(s.rx, format!("request {i}").as_bytes());
        }
        close(&pairs.iter().flat_map(|p| [p.0, p.1]).collect::<Vec<_>>());
    }

    #[test]
    fn user_data_tells_an_earlier_connection_on_the_same_descriptor_apart() {
        let c = Completion::new(user_data(Op::Send, 42, 7), 10, 0);
        assert_eq!((c.op, c.fd), (Some(Op::Send), 42));
        assert!(c.is_for(7) && !c.is_for(8));
        assert!(c.is_for(7 + (1 << 32)), "generations compare on their low 32 bits");
    }
}
