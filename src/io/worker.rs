//! One worker's event loop: epoll over its own SO_REUSEPORT listener, its connections and a
//! signalfd. Level-triggered; a connection waits either for input (EPOLLIN) or for room to write
//! (EPOLLOUT), and its interest set changes only when that direction changes, not per request.
//! Each readable event is one read, every request in it answered with one writev.

use crate::apps::{notify, App, Wakeups};
use crate::h1::conn::{Conn, Ctx, Expiry, Mount, Proto, ReadState, Timeouts, Want, WAITING_INPUT_MAX};
use crate::h1::parse::Limits;
use crate::h1::encode::Clock;
use crate::io::out::Flush;
use crate::io::ring::{self, Completion, Op, Ring, RingSock};
use crate::io::sys::errno;
use crate::io::tls::Tls;
use crate::io::transport::{Io, Transport};
use crate::io::wire::{self, Wire};
use crate::h2::app::Origin;
use crate::h2::conn::{Wait, H2, PREFACE};
use crate::service::observe::{AccessLog, Counters};
use crate::statics::{StaticConfig, StaticFiles};
use std::io;
use std::net::SocketAddr;

pub struct WorkerConfig {
    pub listen_fd: i32,
    /// (URL prefix without trailing slash, docroot, paths to prepare ahead).
    pub mounts: Vec<(Vec<u8>, StaticConfig, Vec<String>)>,
    pub app: Option<Box<dyn App>>,
    pub limits: Limits,
    pub max_body: u64,
    /// Applications that can take a body as it arrives get it so; false: every body is read
    /// whole (spooled past 1 MiB) before the application is called.
    pub stream_bodies: bool,
    /// WebSocket messages longer than this end the connection with 1009.
    pub ws_max_message: u64,
    /// The peers whose forwarding fields are believed (None: proxy headers off).
    pub trust: Option<crate::service::proxy::Trust>,
    /// Connections beyond this many are answered 503 and closed at once.
    pub max_connections: usize,
    /// Seconds a graceful stop waits for responses in flight.
    pub shutdown_timeout: i64,
    /// The loop runs holding the GIL (an application is served): release it while waiting.
    pub holds_gil: bool,
    pub timeouts: Timeouts,
    /// (body, Content-Type) of the page sent with a static 404.
    pub not_found_page: Option<(Vec<u8>, String)>,
    /// This worker's slot in the counters region the supervisor reads.
    pub stats: Counters,
    pub log: Option<AccessLog>,
    /// The listener speaks TLS with these certificates.
    pub tls: Option<crate::tls::Tls>,
    /// A plain connection that starts with the HTTP/2 preface speaks HTTP/2 (h2c, prior
    /// knowledge). Over TLS, ALPN decides.
    pub h2c: bool,
    /// Run on an io_uring instead of epoll (`--io uring`; see `io::ring`).
    pub uring: bool,
}

const LISTENER: u64 = u64::MAX;
const SIGNALS: u64 = u64::MAX - 1;
/// The application's descriptor: other threads have output for connections.
const APP_WAKE: u64 = u64::MAX - 2;
const READ_SIZE: usize = 64 * 1024;
/// After a close response: how long to read and discard what the client still sends, so that our
/// close does not turn into a reset that destroys the response before the client reads it.
const LINGER_SECS: i64 = 2;

/// A connection as the loop holds it: its state (`h1::conn::Conn`), and what only the loop
/// needs: the epoll events registered now, and the generation that tells it from an earlier
/// connection on the same descriptor.
struct Slot {
    conn: Conn,
    interest: u32,
    gen: u64,
    /// TLS over the socket (a TLS listener's connections).
    tls: Option<Box<Tls>>,
    /// The connection speaks HTTP/2 (ALPN `h2`, or the preface with h2c).
    h2: Option<Box<H2>>,
    /// Its side of the io_uring, when the worker runs on one.
    ring: Option<RingSock>,
}

impl Slot {
    /// The connection's transport, and its state apart (the two are used together).
    fn split(&mut self, fd: i32) -> (Wire<'_>, &mut Conn) {
        (Wire::new(fd, self.tls.as_mut(), self.ring.as_mut()), &mut self.conn)
    }

    /// Input waits: received by the ring and not read yet, or in the socket.
    fn input_waiting(&self, fd: i32) -> bool {
        self.ring.as_ref().is_some_and(|r| r.has_input()) || input_waiting(fd)
    }
}

impl std::ops::Deref for Slot {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl std::ops::DerefMut for Slot {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

pub struct Worker {
    /// The epoll descriptor, or -1 on the ring.
    ep: i32,
    ring: Option<Box<Ring>>,
    /// On the ring: connections with input not read yet, looked at again at the end of the
    /// turn (what level-triggered epoll would report again).
    level: Vec<i32>,
    /// On the ring: the multishot accept has not ended yet (a stopping worker waits for its
    /// last completion, so no connection it took is left unserved).
    accept_live: bool,
    /// On the ring: connections closed with output still staged: their descriptor is closed
    /// when the last send completes (a close on epoll leaves that output to the kernel alike).
    /// Each is given up (reset) past its deadline, the write timeout.
    closing: Vec<(i32, u64, RingSock, i64)>,
    sfd: i32,
    listen_fd: i32,
    accepting: bool,
    accept_paused_until: i64,
    conns: Vec<Option<Box<Slot>>>,
    open: usize,
    ctx: Ctx,
    timeouts: Timeouts,
    scratch: Vec<u8>,
    stop_deadline: Option<i64>,
    /// When the stop began (ns, monotonic): idle connections are closed a whole second later.
    stop_began_ns: u64,
    shutdown_timeout: i64,
    /// Record each client's address (applications see it).
    with_peer: bool,
    holds_gil: bool,
    /// Connections an application that answers later has output for.
    wakeups: Option<Wakeups>,
    events: Vec<libc::epoll_event>,
    /// Kept between turns for `process_wakeups`.
    wake_scratch: Vec<(i32, u64)>,
    last_sec: i64,
    max_connections: usize,
    tls: Option<crate::tls::Tls>,
    h2c: bool,
}

/// glibc gives the top of its heap back to the kernel as soon as 128 KiB are free there, and
/// maps every block of 128 KiB or more on its own. A worker that frees and allocates
/// buffers of tens of KiB per message (WebSocket messages, request bodies, their Python bytes)
/// then pays page faults for each: at 64 KiB WebSocket echo that was a third of its CPU
/// (72 µs per message with the defaults, 48 µs with these; bench/ws.py). Free memory is kept
/// up to 16 MiB at the heap's top, and blocks below 1 MiB come from the heap.
fn keep_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    });
}

fn local_port(fd: i32) -> u16 {
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    if unsafe { libc::getsockname(fd, &mut ss as *mut _ as *mut libc::sockaddr, &mut len) } != 0 {
        return 0;
    }
    sockaddr_to(&ss).map_or(0, |a| a.port())
}

fn sockaddr_to(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as i32 {
        libc::AF_INET => {
            let a = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            let a = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::new(ip.into(), u16::from_be(a.sin6_port)))
        }
        _ => None,
    }
}

/// A connected socket's peer address (getpeername).
fn peer_of(fd: i32) -> Option<SocketAddr> {
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    if unsafe { libc::getpeername(fd, &mut ss as *mut _ as *mut libc::sockaddr, &mut len) } != 0 {
        return None;
    }
    sockaddr_to(&ss)
}

/// Bytes wait in the socket's receive queue (a look that takes none).
fn input_waiting(fd: i32) -> bool {
    let mut b = 0u8;
    unsafe { libc::recv(fd, (&mut b as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) > 0 }
}

fn check(r: i32) -> io::Result<i32> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn ctl(ep: i32, op: i32, fd: i32, events: u32, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    check(unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) }).map(|_| ())
}

/// Block the stop signals (and SIGUSR1, the access log's reopen) and return a signalfd that
/// reports them.
fn signal_fd() -> io::Result<i32> {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT, libc::SIGHUP, libc::SIGUSR1] {
            libc::sigaddset(&mut set, s);
        }
        check(libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()))?;
        check(libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC))
    }
}

impl Worker {
    pub fn new(cfg: WorkerConfig) -> io::Result<Self> {
        keep_freed_memory();
        let clock = Clock::new();
        let mut mounts = Vec::new();
        for (prefix, scfg, preload) in cfg.mounts {
            let mut files = StaticFiles::open(scfg)?;
            files.preload(&preload, &clock);
            mounts.push(Mount { prefix, files });
        }
        let with_peer = cfg.app.is_some() || cfg.log.is_some(); // the peer address costs accept4 a copy
        let mut app = cfg.app;
        let wakeups = app.as_mut().map(|a| {
            let w = Wakeups { list: Default::default() };
            a.bind(w.clone());
            w
        });
        let mut ctx = Ctx::new(clock, mounts, app);
        ctx.limits = cfg.limits;
        ctx.max_body = cfg.max_body;
        ctx.ws_max_message = cfg.ws_max_message;
        ctx.trust = cfg.trust;
        ctx.stream_bodies = cfg.stream_bodies;
        ctx.not_found_page = cfg.not_found_page.map(|(body, ctype)| (ctype.into_bytes(), body.into()));
        ctx.stats = cfg.stats;
        ctx.log = cfg.log;
        ctx.local_port = local_port(cfg.listen_fd);
        let sfd = signal_fd()?;
        unsafe {
            let fl = libc::fcntl(cfg.listen_fd, libc::F_GETFL);
            check(libc::fcntl(cfg.listen_fd, libc::F_SETFL, fl | libc::O_NONBLOCK))?;
        }
        let wake_fd = ctx.app.as_ref().and_then(|a| a.wake_fd());
        let (ep, ring) = if cfg.uring {
            let mut ring = Box::new(Ring::new(ctx.app.is_none())?);
            ring.accept(cfg.listen_fd);
            ring.watch(sfd, Op::Signals);
            if let Some(fd) = wake_fd {
                ring.watch(fd, Op::AppWake);
            }
            (-1, Some(ring))
        } else {
            let ep = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
            ctl(ep, libc::EPOLL_CTL_ADD, cfg.listen_fd, libc::EPOLLIN as u32, LISTENER)?;
            ctl(ep, libc::EPOLL_CTL_ADD, sfd, libc::EPOLLIN as u32, SIGNALS)?;
            if let Some(fd) = wake_fd {
                ctl(ep, libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32, APP_WAKE)?;
            }
            (ep, None)
        };
        Ok(Worker {
            ep,
            ring,
            level: Vec::new(),
            accept_live: cfg.uring,
            closing: Vec::new(),
            sfd,
            listen_fd: cfg.listen_fd,
            accepting: true,
            accept_paused_until: 0,
            conns: Vec::new(),
            open: 0,
            ctx,
            timeouts: cfg.timeouts,
            with_peer,
            holds_gil: cfg.holds_gil,
            wakeups,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 512],
            wake_scratch: Vec::new(),
            last_sec: 0,
            max_connections: cfg.max_connections,
            scratch: vec![0u8; READ_SIZE],
            stop_deadline: None,
            stop_began_ns: 0,
            shutdown_timeout: cfg.shutdown_timeout,
            tls: cfg.tls,
            h2c: cfg.h2c,
        })
    }

    /// Serve until a stop signal, then drain: stop accepting, finish what is in flight, return.
    pub fn run(&mut self) -> io::Result<()> {
        while self.run_once(None)? {}
        Ok(())
    }

    /// One turn of the loop: wait for events (at most `wait_ms`; by default until the next
    /// second, so deadlines are checked on time), handle them. False once stopped and drained.
    pub fn run_once(&mut self, wait_ms: Option<i32>) -> io::Result<bool> {
        let timeout = match wait_ms {
            Some(ms) => ms,
            None if self.stop_deadline.is_some() => 100,
            None => crate::h1::encode::ms_to_next_second(),
        };
        if self.ring.is_some() {
            self.ring_turn(timeout)?;
            let go_on = self.after_turn();
            if self.holds_gil {
                // Driven by asyncio, which waits on the ring's descriptor: what this turn queued
                // must reach the kernel now, or no completion would come to wake it.
                if let Some(r) = self.ring.as_mut() {
                    r.submit();
                }
            }
            return Ok(go_on);
        }
        let events = &mut self.events;
        let n = if self.holds_gil && timeout != 0 {
            // Under load the next events are already there: take them without letting go of
            // the GIL (releasing and retaking it costs more than the wait). Only a wait that
            // would block releases it, so the application's other threads can run.
            let ready = unsafe { libc::epoll_wait(self.ep, events.as_mut_ptr(), events.len() as i32, 0) };
            if ready != 0 {
                ready
            } else {
                unsafe {
                    let ts = pyo3::ffi::PyEval_SaveThread();
                    let n = libc::epoll_wait(self.ep, events.as_mut_ptr(), events.len() as i32, timeout);
                    pyo3::ffi::PyEval_RestoreThread(ts);
                    n
                }
            }
        } else {
            unsafe { libc::epoll_wait(self.ep, events.as_mut_ptr(), events.len() as i32, timeout) }
        };
        if n < 0 {
            if errno() == libc::EINTR {
                return Ok(true);
            }
            return Err(io::Error::last_os_error());
        }
        self.ctx.clock.tick();
        for i in 0..n as usize {
            let (flags, data) = (self.events[i].events, self.events[i].u64);
            match data {
                LISTENER => self.accept(),
                SIGNALS => self.on_signal(),
                APP_WAKE => self.take_done(),
                fd => self.on_conn(fd as i32, flags),
            }
        }
        Ok(self.after_turn())
    }

    /// What every turn ends with, whatever the backend: applications' output, the second's
    /// work, the stop's drain. False once stopped and drained.
    fn after_turn(&mut self) -> bool {
        self.process_wakeups();
        if self.ctx.clock.sec != self.last_sec {
            self.last_sec = self.ctx.clock.sec;
            self.ctx.stats.heartbeat();
            self.on_second();
        }
        if let Some(deadline) = self.stop_deadline {
            // Give keep-alive clients a second to send the request they may have on the way: it
            // gets an answer with `Connection: close`. Then the idle ones are closed. (A whole
            // second, measured: counted in the clock's seconds it could be a few milliseconds,
            // and a busy client's next request, between two of its writes, met a closed
            // connection: wrk's read errors under --max-requests.)
            if crate::service::observe::now_ns().saturating_sub(self.stop_began_ns) >= 1_000_000_000 || self.ctx.clock.sec >= deadline {
                self.close_idle();
            }
            if (self.open == 0 && !self.accept_live && self.closing.is_empty()) || self.ctx.clock.sec >= deadline {
                return false;
            }
        }
        true
    }

    /// One turn on the ring: submit what the last one queued, wait, handle the completions,
    /// then the connections that still have input to read.
    fn ring_turn(&mut self, timeout: i32) -> io::Result<()> {
        let Some(ring) = self.ring.as_mut() else { return Ok(()) };
        let again = self.level.iter().any(|&fd| match self.conns.get(fd as usize) {
            Some(Some(s)) => s.ring.as_ref().is_some_and(|r| r.has_input()) && s.want() == Want::Read,
            _ => false,
        });
        ring.wait(if again { 0 } else { timeout }, self.holds_gil)?;
        self.ctx.clock.tick();
        let list = ring.take();
        for c in &list {
            self.on_completion(c);
        }
        if let Some(ring) = self.ring.as_mut() {
            ring.keep(list);
        }
        self.read_level();
        Ok(())
    }

    /// Read what the ring received and the loop did not read yet, for connections that want
    /// input now (the input epoll would report again, level-triggered).
    fn read_level(&mut self) {
        let level = std::mem::take(&mut self.level);
        for fd in level {
            let Some(Some(slot)) = self.conns.get_mut(fd as usize) else { continue };
            let Some(sock) = slot.ring.as_mut() else { continue };
            sock.listed = false;
            if sock.readable() && slot.conn.want() == Want::Read {
                self.on_conn(fd, libc::EPOLLIN as u32);
            }
            self.relist(fd);
            self.sync_interest(fd); // all read: receive again
        }
    }

    /// Keep a connection whose input is not all read in the list for the end of the turn.
    fn relist(&mut self, fd: i32) {
        if let Some(Some(slot)) = self.conns.get_mut(fd as usize) {
            if let Some(sock) = slot.ring.as_mut().filter(|s| s.readable() && !s.listed) {
                sock.listed = true;
                self.level.push(fd);
            }
        }
    }

    /// The slot of a completion's connection, if it is still the one the operation was for.
    fn slot_for<'a>(conns: &'a mut [Option<Box<Slot>>], c: &Completion) -> Option<&'a mut Slot> {
        match conns.get_mut(c.fd as usize) {
            Some(Some(s)) if c.is_for(s.gen) && s.ring.is_some() => Some(s),
            _ => None,
        }
    }

    fn on_completion(&mut self, c: &Completion) {
        match c.op {
            Some(Op::Accept) => {
                if !c.more() {
                    self.accept_live = false;
                }
                if c.res >= 0 {
                    self.adopt(c.res, None);
                } else if matches!(-c.res, libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) {
                    // Out of descriptors: accept again in a second (see `accept`).
                    if c.more() {
                        if let Some(r) = self.ring.as_mut() {
                            r.cancel(c.data);
                        }
                    }
                    self.accepting = false;
                    self.accept_paused_until = self.ctx.clock.sec + 1;
                    return;
                }
                if !c.more() && self.accepting {
                    if let Some(r) = self.ring.as_mut() {
                        r.accept(self.listen_fd);
                        self.accept_live = true;
                    }
                }
            }
            Some(Op::Recv) => {
                let Some(slot) = Self::slot_for(&mut self.conns, c) else {
                    if let Some(r) = self.ring.as_mut() {
                        r.drop_buffer(c);
                    }
                    return;
                };
                let (Some(ring), Some(sock)) = (self.ring.as_mut(), slot.ring.as_mut()) else { return };
                ring.received(c, sock);
                if sock.readable() {
                    self.on_conn(c.fd, libc::EPOLLIN as u32);
                }
                self.relist(c.fd);
                self.sync_interest(c.fd); // a recv that ended starts again if input is wanted
            }
            Some(Op::Send) => {
                if self.ring.as_mut().is_some_and(|r| r.orphan_done(c.data)) {
                    return;
                }
                if let Some(i) = self.closing.iter().position(|(fd, gen, _, _)| *fd == c.fd && c.is_for(*gen)) {
                    let Some(r) = self.ring.as_mut() else { return };
                    let (fd, _, sock, _) = &mut self.closing[i];
                    if r.sent(c, sock) || sock.failed() {
                        unsafe { libc::close(*fd) };
                        self.closing.swap_remove(i);
                    }
                    return;
                }
                let Some(slot) = Self::slot_for(&mut self.conns, c) else { return };
                let (Some(ring), Some(sock)) = (self.ring.as_mut(), slot.ring.as_mut()) else { return };
                let all = ring.sent(c, sock);
                if sock.failed() {
                    self.close(c.fd);
                    return;
                }
                if all && sock.shut_pending {
                    sock.shut_pending = false;
                    unsafe { libc::shutdown(c.fd, libc::SHUT_WR) };
                }
                if slot.conn.writing {
                    self.on_conn(c.fd, libc::EPOLLOUT as u32); // room again
                }
            }
            Some(Op::PollOut) => {
                let Some(slot) = Self::slot_for(&mut self.conns, c) else { return };
                if let Some(sock) = slot.ring.as_mut() {
                    sock.polled();
                }
                self.on_conn(c.fd, libc::EPOLLOUT as u32);
            }
            Some(Op::Signals) => {
                self.on_signal();
                if !c.more() {
                    if let Some(r) = self.ring.as_mut() {
                        r.watch(self.sfd, Op::Signals);
                    }
                }
            }
            Some(Op::AppWake) => {
                self.take_done();
                if !c.more() {
                    if let (Some(r), Some(fd)) = (self.ring.as_mut(), self.ctx.app.as_ref().and_then(|a| a.wake_fd())) {
                        r.watch(fd, Op::AppWake);
                    }
                }
            }
            Some(Op::Cancel) | None => {}
        }
    }

    /// The epoll descriptor (or the ring's): readable when `run_once(Some(0))` has something to do.
    pub fn fileno(&self) -> i32 {
        self.ring.as_ref().map_or(self.ep, |r| r.fd())
    }


    /// Write out what the access log holds (a worker driven from Python may never be dropped
    /// before its process exits).
    pub fn flush_log(&mut self) {
        if let Some(log) = &mut self.ctx.log {
            log.flush();
        }
    }

    /// Handle the output applications produced since the last turn (no waiting).
    pub fn wake(&mut self) {
        self.ctx.clock.tick();
        self.process_wakeups();
        if self.ring.is_some() {
            // An application made room for input the ring already holds: read it now, and
            // what the output queued (a recv to start again, sends) goes now, not at the next poll.
            self.read_level();
            if let Some(r) = self.ring.as_mut() {
                r.submit();
            }
        }
    }

    fn on_signal(&mut self) {
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let sz = std::mem::size_of::<libc::signalfd_siginfo>();
        while unsafe { libc::read(self.sfd, &mut info as *mut _ as *mut libc::c_void, sz) } == sz as isize {
            if info.ssi_signo == libc::SIGUSR1 as u32 {
                // logrotate renamed the access log: write what is buffered, then open it anew
                if let Some(log) = &mut self.ctx.log {
                    log.reopen();
                }
                continue;
            }
            if self.stop_deadline.is_none() {
                self.stop_deadline = Some(self.ctx.clock.sec + self.shutdown_timeout);
                self.stop_began_ns = crate::service::observe::now_ns();
                self.ctx.stopping = true;
                self.close_websockets();
                self.stop_h2();
                // Take the connections already queued on our listener (closing it would reset
                // them); they are served, and closed after their first response.
                if self.accepting {
                    self.accept();
                }
                if self.accepting {
                    self.unwatch_listener();
                }
                self.accepting = false;
                unsafe { libc::close(self.listen_fd) };
            }
        }
    }

    /// Once a second: end the connections that waited too long, resume accepting after EMFILE.
    fn on_second(&mut self) {
        if let Some(log) = &mut self.ctx.log {
            log.flush(); // lines wait at most a second
        }
        for m in self.ctx.mounts.iter_mut() {
            m.files.sweep(&self.ctx.clock);
        }
        let now = self.ctx.clock.sec;
        let expired: Vec<i32> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(fd, c)| c.as_ref().filter(|c| c.deadline < now).map(|_| fd as i32))
            .collect();
        for fd in expired {
            self.expire(fd);
        }
        self.give_up_closing(now);
        if !self.accepting && self.stop_deadline.is_none() && now >= self.accept_paused_until && !self.accept_live {
            if let Some(r) = self.ring.as_mut() {
                r.accept(self.listen_fd);
                self.accept_live = true;
                self.accepting = true;
            } else if ctl(self.ep, libc::EPOLL_CTL_ADD, self.listen_fd, libc::EPOLLIN as u32, LISTENER).is_ok() {
                self.accepting = true;
            }
        }
    }

    /// Closed connections whose staged output did not all go by `now`: their sends are
    /// canceled and the descriptor closed (as a write timeout resets a live one).
    fn give_up_closing(&mut self, now: i64) {
        let mut i = 0;
        while i < self.closing.len() {
            if self.closing[i].3 <= now {
                let (fd, gen, sock, _) = self.closing.swap_remove(i);
                if let Some(r) = self.ring.as_mut() {
                    r.forget(fd, gen, sock);
                }
                unsafe { libc::close(fd) };
            } else {
                i += 1;
            }
        }
    }

    /// A connection's deadline passed: a request in progress gets 408; otherwise it just ends.
    fn expire(&mut self, fd: i32) {
        let Some(Some(c)) = self.conns.get_mut(fd as usize) else { return };
        match c.expiry() {
            Expiry::Abort => self.abort(fd),
            Expiry::Close => self.close(fd),
            Expiry::Linger => self.start_close(fd),
            Expiry::CutBody => {
                if c.proto.body_timed_out(&mut self.ctx) {
                    c.inbuf = Vec::new();
                    self.write(fd);
                } else {
                    self.abort(fd);
                }
            }
            Expiry::TimedOut => {
                c.inbuf = Vec::new();
                c.proto.timed_out(&mut self.ctx);
                self.write(fd);
            }
            Expiry::Ws => {
                c.proto.ws_expired(&mut self.ctx);
                self.write(fd);
                self.arm(fd);
            }
        }
    }

    /// Set the deadline for the phase the connection is in now.
    fn arm(&mut self, fd: i32) {
        let (now, t) = (self.ctx.clock.sec, self.timeouts);
        if let Some(Some(c)) = self.conns.get_mut(fd as usize) {
            c.conn.arm(now, &t);
            if let Some(h2) = c.h2.as_ref().filter(|_| !c.conn.writing && !c.conn.lingering) {
                match h2.wait() {
                    Wait::App => c.conn.deadline = i64::MAX, // as for HTTP/1.1: no clock on the application
                    Wait::Body => c.conn.deadline = now + t.body,
                    Wait::Client => {}
                }
            }
        }
    }

    /// The worker stops: every WebSocket is closed with 1001 (going away); each ends when its
    /// client answers, or after the close wait.
    fn close_websockets(&mut self) {
        let ws: Vec<i32> = self.conns.iter().enumerate().filter_map(|(fd, c)| c.as_ref().filter(|c| c.proto.is_websocket()).map(|_| fd as i32)).collect();
        for fd in ws {
            if let Some(Some(c)) = self.conns.get_mut(fd as usize) {
                c.proto.going_away(&mut self.ctx);
            }
            self.write(fd);
            self.arm(fd);
        }
    }

    /// The worker stops: every HTTP/2 connection is told (GOAWAY) to open no new stream; those
    /// in flight finish.
    fn stop_h2(&mut self) {
        let h2: Vec<i32> = self.conns.iter().enumerate().filter_map(|(fd, c)| c.as_ref().filter(|c| c.h2.is_some()).map(|_| fd as i32)).collect();
        for fd in h2 {
            if let Some(Some(slot)) = self.conns.get_mut(fd as usize) {
                if let Some(h2) = &mut slot.h2 {
                    h2.stopping(&mut self.ctx, &mut slot.conn.proto.out);
                }
            }
            self.write(fd);
        }
    }

    /// While stopping: end every connection with no request in progress. Our side is shut
    /// down with a lingering close, so a request already on its way sees a clean end of stream
    /// (which clients retry) rather than a reset.
    fn close_idle(&mut self) {
        let idle: Vec<i32> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(fd, c)| match c {
                // (a request already in the socket, not read yet on this turn, is answered
                // first: closing now would drop it)
                Some(c) if c.idle() && c.h2.as_ref().is_none_or(|h| h.idle()) && !c.input_waiting(fd as i32) => Some(fd as i32),
                _ => None,
            })
            .collect();
        for fd in idle {
            if let Some(Some(slot)) = self.conns.get_mut(fd as usize) {
                if let Some(h2) = &mut slot.h2 {
                    h2.go_away(&mut self.ctx, &mut slot.conn.proto.out);
                    slot.conn.proto.close_after_flush = true;
                    self.write(fd); // the GOAWAY, then the lingering close
                    continue;
                }
            }
            self.start_close(fd);
        }
    }

    /// Stop taking connections from the listener (until `on_second` takes it up again).
    fn unwatch_listener(&mut self) {
        match self.ring.as_mut() {
            Some(r) => {
                // Now, not at the next turn: until the cancel is taken, connections still come.
                r.cancel(ring::user_data(Op::Accept, self.listen_fd, 0));
                r.submit();
            }
            None => {
                let _ = ctl(self.ep, libc::EPOLL_CTL_DEL, self.listen_fd, 0, 0);
            }
        }
    }

    fn accept(&mut self) {
        for _ in 0..128 {
            let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            let fd = unsafe {
                libc::accept4(
                    self.listen_fd,
                    &mut ss as *mut _ as *mut libc::sockaddr,
                    &mut len,
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                match errno() {
                    libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                        // Out of descriptors: stop polling the listener for a second instead of
                        // spinning on an event we cannot consume.
                        self.unwatch_listener();
                        self.accepting = false;
                        self.accept_paused_until = self.ctx.clock.sec + 1;
                    }
                    _ => {}
                }
                return;
            }
            self.adopt(fd, Some(&ss));
        }
    }

    /// Take a new connection: `ss` is its peer's address when accept gave it (the ring's
    /// multishot accept does not).
    fn adopt(&mut self, fd: i32, ss: Option<&libc::sockaddr_storage>) {
        let full = self.open >= self.max_connections;
        let one: libc::c_int = 1;
        unsafe {
            libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, &one as *const _ as *const libc::c_void, 4);
        }
        if self.ring.is_none() && ctl(self.ep, libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32, fd as u64).is_err() {
            unsafe { libc::close(fd) };
            return;
        }
        let i = fd as usize;
        if self.conns.len() <= i {
            self.conns.resize_with(i + 1, || None);
        }
        let mut proto = Proto::default();
        if self.with_peer {
            proto.peer = match ss {
                Some(ss) => sockaddr_to(ss),
                None => peer_of(fd),
            };
        }
        let gen = self.ctx.next_generation();
        proto.id = (fd, gen);
        let now = self.ctx.clock.sec;
        let tls = match &self.tls {
            None => None,
            Some(t) => match Tls::new(&t.config) {
                Some(tls) => Some(tls),
                None => {
                    unsafe { libc::close(fd) };
                    return;
                }
            },
        };
        let mut sock = self.ring.as_ref().map(|_| RingSock::default());
        if let (Some(r), Some(s)) = (self.ring.as_mut(), sock.as_mut()) {
            r.recv(fd, gen, s);
        }
        self.conns[i] = Some(Box::new(Slot { conn: Conn::new(proto, now, &self.timeouts), interest: libc::EPOLLIN as u32, gen, tls, h2: None, ring: sock }));
        self.open += 1;
        self.ctx.stats.opened();
        if full {
            // Over the limit: answer 503 and close (with the usual lingering close), rather
            // than let the client wait in the backlog. Open connections are not affected.
            if let Some(Some(c)) = self.conns.get_mut(i) {
                c.proto.refuse(&mut self.ctx);
            }
            self.write(fd);
        }
    }

    fn close(&mut self, fd: i32) {
        self.close_as(fd, false);
    }

    /// `discard`: drop output not sent yet (a reset); otherwise what is written goes out first.
    fn close_as(&mut self, fd: i32, discard: bool) {
        if let Some(slot) = self.conns.get_mut(fd as usize) {
            if let Some(mut conn) = slot.take() {
                conn.proto.abandon(&mut self.ctx);
                if let Some(h2) = &mut conn.h2 {
                    h2.abandon(&mut self.ctx); // every application still answering is told
                }
                self.open -= 1;
                self.ctx.stats.closed();
                let mut later = false;
                if let (Some(r), Some(mut sock)) = (self.ring.as_mut(), conn.ring.take()) {
                    if sock.pending() && !sock.failed() && !discard {
                        // Staged output is the kernel's on epoll: here it is sent, then closed.
                        r.retire(fd, conn.gen, &mut sock);
                        self.closing.push((fd, conn.gen, sock, self.ctx.clock.sec + self.timeouts.write));
                        later = true;
                    } else {
                        r.forget(fd, conn.gen, sock); // what is in flight is canceled, its bytes kept
                    }
                }
                if !later {
                    unsafe { libc::close(fd) };
                }
                if let Some(ex) = conn.proto.exchange() {
                    ex.borrow_mut().gone = true;
                }
                // A handler waiting for body the client will never send is told (it raises, or
                // gets http.disconnect) instead of waiting for ever.
                conn.proto.body_cut();
                if let Some(ex) = conn.proto.exchange() {
                    notify(ex);
                }
            }
        }
    }

    /// Close with a reset (SO_LINGER 0), discarding unsent data instead of trickling it out.
    fn abort(&mut self, fd: i32) {
        let lg = libc::linger { l_onoff: 1, l_linger: 0 };
        unsafe {
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_LINGER, &lg as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t);
        }
        self.close_as(fd, true);
    }

    fn on_conn(&mut self, fd: i32, flags: u32) {
        self.on_conn_once(fd, flags);
        // TLS may hold decrypted input that the socket will not signal again.
        for _ in 0..16 {
            let Some(Some(slot)) = self.conns.get_mut(fd as usize) else { return };
            let Some(tls) = &slot.tls else { break };
            if !tls.holds_input() || slot.lingering || slot.want() != Want::Read {
                break;
            }
            self.on_conn_once(fd, libc::EPOLLIN as u32);
        }
        self.send_staged(fd); // what a read staged too (TLS answers a handshake from inside a read)
    }

    /// On the ring: what the connection staged goes with the turn's submission.
    fn send_staged(&mut self, fd: i32) {
        if let (Some(r), Some(Some(slot))) = (self.ring.as_mut(), self.conns.get_mut(fd as usize)) {
            if let Some(sock) = slot.ring.as_mut() {
                r.send(fd, slot.gen, sock);
            }
        }
    }

    /// What a read on a TLS connection found besides bytes: the handshake ended (the
    /// application may learn its details), or the client spoke plain HTTP to the TLS port.
    fn after_tls_read(&mut self, fd: i32, got: Io) -> bool {
        let Some(Some(slot)) = self.conns.get_mut(fd as usize) else { return false };
        let Some(tls) = &mut slot.tls else { return true };
        if got == Io::Error && tls.plain_http {
            // Answered in plain text, then closed: the client sees why, not a TLS alert.
            slot.tls = None;
            slot.conn.inbuf = Vec::new();
            slot.conn.proto.plain_http_on_tls(&mut self.ctx);
            self.write(fd);
            return false;
        }
        if got == Io::Error {
            // A TLS failure: the alert rustls queued goes out before a lingering close, so the
            // client reads why instead of a reset.
            let _ = tls.write_out(&mut wire::raw(fd, slot.ring.as_mut()));
            self.start_close(fd);
            return false;
        }
        if slot.conn.proto.tls.is_none() && !tls.handshaking() {
            if let Some(t) = &self.tls {
                let info = std::sync::Arc::new(tls.info(&t.certs));
                self.ctx.stats.tls_handshake();
                if info.alpn.as_deref() == Some(b"h2") {
                    slot.h2 = Some(H2::new(self.ctx.limits.max_head, Origin { fd, peer: slot.conn.proto.peer, tls: Some(info.clone()) }));
                    slot.conn.fresh = false; // no request head to wait for: idle is keep-alive
                }
                slot.conn.proto.tls = Some(info);
            }
        }
        if got == Io::Blocked && tls.holds_output() {
            self.write(fd); // the handshake's reply did not all go: wait to write the rest
            return false;
        }
        true
    }

    fn on_conn_once(&mut self, fd: i32, flags: u32) {
        let Some(Some(conn)) = self.conns.get_mut(fd as usize) else { return };
        if flags & libc::EPOLLERR as u32 != 0 {
            self.close(fd);
            return;
        }
        if conn.lingering {
            let (mut wire, _) = conn.split(fd);
            wire.tls = None; // what a lingering close reads is discarded unread
            if matches!(wire.read_into(&mut self.scratch), Io::Done(0) | Io::Error) {
                self.close(fd);
            }
            return;
        }
        if conn.writing {
            if flags & (libc::EPOLLOUT as u32 | libc::EPOLLHUP as u32) != 0 {
                self.write(fd);
                self.arm(fd);
            }
            return;
        }
        if conn.h2.is_some() {
            let Some(got) = self.read_scratch(fd) else { return };
            match got {
                Io::Done(0) => self.start_close(fd),
                Io::Error => self.close(fd),
                Io::Blocked => {}
                Io::Done(n) => self.h2_input(fd, n),
            }
            return;
        }
        if conn.proto.is_websocket() && conn.inbuf.is_empty() && !conn.eof_pending {
            // A WebSocket reads into the worker's buffer; only a cut frame header (or what a
            // full mailbox leaves) is kept on the connection, so an idle one holds no buffer.
            let Some(got) = self.read_scratch(fd) else { return };
            let Some(Some(conn)) = self.conns.get_mut(fd as usize) else { return };
            let n = match got {
                Io::Done(0) | Io::Error => {
                    self.close(fd); // the application is told (close() cuts the session)
                    return;
                }
                Io::Blocked => return,
                Io::Done(n) => n,
            };
            let used = conn.proto.feed(&self.scratch[..n], &mut self.ctx);
            if used < n {
                conn.inbuf.extend_from_slice(&self.scratch[used..n]);
            }
            self.write(fd);
            self.arm(fd);
            return;
        }
        if conn.proto.exchange().is_some() {
            // Waiting for the application: keep what arrives (pipelined requests) for later,
            // up to a bound; past it, or at end of input, stop polling for input.
            if flags & libc::EPOLLHUP as u32 != 0 && flags & libc::EPOLLIN as u32 == 0 {
                self.close(fd);
                return;
            }
            if conn.inbuf.len() < WAITING_INPUT_MAX {
                let Some(got) = self.read_inbuf(fd) else { return };
                let Some(Some(conn)) = self.conns.get_mut(fd as usize) else { return };
                if conn.proto.is_websocket() && matches!(got, Io::Done(0) | Io::Error) {
                    // A WebSocket has no half-close: the client is gone (its application is
                    // told 1006 unless a Close came first).
                    conn.feed_inbuf(&mut self.ctx);
                    self.close(fd);
                    return;
                }
                if got == Io::Done(0) {
                    conn.eof_pending = true;
                    conn.proto.body_cut(); // a body still arriving never will
                    if let Some(ex) = conn.proto.exchange() {
                        ex.borrow_mut().peer_eof = true;
                        notify(ex);
                    }
                } else if got == Io::Error {
                    self.close(fd);
                    return;
                }
            }
            let Some(Some(conn)) = self.conns.get_mut(fd as usize) else { return };
            if conn.proto.resume_body() {
                // The application takes its body as it comes: decode what arrived.
                conn.feed_inbuf(&mut self.ctx);
                self.write(fd);
                self.arm(fd);
                return;
            }
            self.sync_interest(fd);
            return;
        }
        if flags & (libc::EPOLLIN as u32 | libc::EPOLLHUP as u32) == 0 {
            return;
        }
        // Read straight into the shared scratch buffer unless a partial request is waiting.
        let eof;
        let to_scratch = conn.inbuf.is_empty();
        let Some(got) = (if to_scratch { self.read_scratch(fd) } else { self.read_inbuf(fd) }) else { return };
        let Some(Some(conn)) = self.conns.get_mut(fd as usize) else { return };
        if to_scratch {
            let n = match got {
                Io::Done(n) => n,
                Io::Blocked => return,
                Io::Error => {
                    self.close(fd);
                    return;
                }
            };
            eof = n == 0;
            if conn.h2.is_none() && self.h2c && conn.fresh && conn.tls.is_none() && self.scratch[..n].starts_with(PREFACE) {
                conn.h2 = Some(H2::new(self.ctx.limits.max_head, Origin { fd, peer: conn.conn.proto.peer, tls: None }));
                conn.fresh = false;
            }
            if conn.h2.is_some() {
                self.h2_input(fd, n); // ALPN chose HTTP/2 in this read, or the preface did
                return;
            }
            let data = &self.scratch[..n];
            let used = conn.proto.feed(data, &mut self.ctx);
            if used > 0 {
                conn.fresh = false;
                conn.head_started = None; // a request ended: the next head's clock starts anew
            }
            if used < data.len() {
                conn.inbuf.extend_from_slice(&data[used..]);
            }
        } else {
            eof = match got {
                Io::Done(n) => n == 0,
                Io::Blocked => return,
                Io::Error => {
                    self.close(fd);
                    return;
                }
            };
            conn.feed_inbuf(&mut self.ctx);
        }
        if matches!(conn.proto.read, ReadState::Done | ReadState::Refused(_)) {
            conn.inbuf = Vec::new();
        }
        if eof {
            if conn.proto.out.is_empty() && conn.proto.exchange().is_none() {
                self.close(fd);
                return;
            }
            if conn.proto.exchange().is_none() {
                conn.proto.eof();
            }
        }
        self.write(fd);
        self.arm(fd);
    }

    /// HTTP/2 input in the worker's buffer: framed, answered, written.
    fn h2_input(&mut self, fd: i32, n: usize) {
        if let Some(Some(Some(h2))) = self.conns.get_mut(fd as usize).map(|s| s.as_mut().map(|s| &mut s.h2)) {
            h2.feed(&self.scratch[..n]);
        }
        self.h2_drive(fd);
    }

    /// Drive an HTTP/2 connection (new input, or its applications' output), then write.
    fn h2_drive(&mut self, fd: i32) {
        let Some(Some(slot)) = self.conns.get_mut(fd as usize) else { return };
        let Some(h2) = &mut slot.h2 else { return };
        h2.drive(&mut self.ctx, &mut slot.conn.proto.out);
        if h2.ended() {
            slot.conn.proto.close_after_flush = true;
        }
        self.write(fd);
        self.arm(fd);
    }

    /// Read from a connection into the worker's buffer. None: the read settled the connection
    /// otherwise (see `after_tls_read`).
    fn read_scratch(&mut self, fd: i32) -> Option<Io> {
        let slot = self.conns.get_mut(fd as usize)?.as_mut()?;
        let got = Wire::new(fd, slot.tls.as_mut(), slot.ring.as_mut()).read_into(&mut self.scratch);
        if slot.tls.is_some() && !self.after_tls_read(fd, got) {
            return None;
        }
        Some(got)
    }

    /// Read from a connection onto the input it keeps.
    fn read_inbuf(&mut self, fd: i32) -> Option<Io> {
        let slot = self.conns.get_mut(fd as usize)?.as_mut()?;
        let (mut wire, conn) = slot.split(fd);
        let got = wire.read_append(&mut conn.inbuf, READ_SIZE);
        if slot.tls.is_some() && !self.after_tls_read(fd, got) {
            return None;
        }
        Some(got)
    }

    /// A job queued on this turn, to run inline (see `apps::threads`).
    pub fn next_job(&mut self) -> Option<Box<crate::apps::exchange::Job>> {
        self.ctx.app.as_mut().and_then(|a| a.next_job())
    }

    pub fn has_job(&self) -> bool {
        self.ctx.app.as_ref().is_some_and(|a| a.has_job())
    }

    /// A job that was to run inline goes to another thread: its connection's output is written
    /// as usual meanwhile.
    pub fn undefer(&mut self, id: (i32, u64)) {
        if let Some(ex) = self.exchange(id) {
            ex.borrow_mut().defer_write = false;
        }
        self.write(id.0);
    }

    /// The exchange an application answers through: a connection's, or an HTTP/2 stream's.
    fn exchange(&self, (fd, gen): (i32, u64)) -> Option<crate::apps::SharedExchange> {
        match self.conns.get(fd as usize) {
            Some(Some(conn)) if conn.gen == gen => conn.proto.exchange().cloned(),
            Some(Some(slot)) => slot.h2.as_ref().and_then(|h| h.exchange(gen)).cloned(),
            _ => None,
        }
    }

    /// Deliver what other threads posted for connections.
    pub fn take_done(&mut self) {
        let done = self.ctx.app.as_mut().map(|a| a.take_done()).unwrap_or_default();
        for d in done {
            self.deliver(d);
        }
    }

    /// Output of a job (run here or on another thread) for its connection's exchange; written
    /// by the next `process_wakeups`.
    pub fn deliver(&mut self, d: crate::apps::exchange::Done) {
        let Some(ex) = self.exchange(d.id) else {
            if let Some(flow) = d.flow {
                flow.cut(); // the client left before the response started
            }
            return;
        };
        {
            let mut e = ex.borrow_mut();
            let n = crate::apps::exchange::body_bytes(&d.parts);
            e.extend(d.parts);
            e.finished |= d.finished;
            e.close |= d.close;
            e.defer_write = false;
            if e.gone {
                // the client left (an HTTP/2 stream it reset): the producer is told at once
                if let Some(flow) = d.flow {
                    flow.cut();
                }
            } else if let Some(flow) = d.flow {
                flow.moved(n);
                if e.on_progress.is_none() {
                    // After each write: how much is left, and whether the client is gone.
                    let weak = std::rc::Rc::downgrade(&ex);
                    e.on_progress = Some(Box::new(move || {
                        if let Some(ex) = weak.upgrade() {
                            let e = ex.borrow();
                            flow.progress(e.backlog(), e.gone);
                        }
                    }));
                }
            }
        }
        if let Some(w) = &self.wakeups {
            w.list.borrow_mut().push(d.id);
        }
    }

    /// Applications that answer later have output for these connections: write it, and when a
    /// response is finished, go on with the requests that waited behind it.
    pub fn process_wakeups(&mut self) {
        let Some(w) = self.wakeups.as_ref() else { return };
        // The list is swapped with a kept one, so that neither is allocated anew each turn.
        let mut list = std::mem::take(&mut self.wake_scratch);
        std::mem::swap(&mut list, &mut *w.list.borrow_mut());
        let mut streams: Vec<i32> = Vec::new();
        for (fd, gen) in list.drain(..) {
            let Some(Some(conn)) = self.conns.get_mut(fd as usize) else { continue };
            if conn.gen != gen && conn.h2.is_some() {
                // An HTTP/2 stream's: each connection is driven once, for all its streams.
                if !streams.contains(&fd) {
                    streams.push(fd);
                }
                continue;
            }
            if conn.gen != gen || conn.proto.exchange().is_none() {
                continue;
            }
            if conn.proto.resume_body() && !conn.inbuf.is_empty() {
                conn.feed_inbuf(&mut self.ctx); // the application made room for more body
            }
            if conn.proto.take_app_output(&mut self.ctx) {
                if !conn.inbuf.is_empty() {
                    conn.feed_inbuf(&mut self.ctx);
                }
                if conn.eof_pending && conn.proto.exchange().is_none() {
                    conn.proto.eof(); // the client finished sending before this response did
                }
            }
            self.write(fd);
            self.arm(fd);
        }
        self.wake_scratch = list;
        for fd in streams {
            self.h2_drive(fd);
        }
    }

    /// What the connection waits for now: the one place that decides its epoll interest.
    fn sync_interest(&mut self, fd: i32) {
        let Some(Some(conn)) = self.conns.get_mut(fd as usize) else { return };
        let want = match conn.want() {
            Want::Read => libc::EPOLLIN as u32,
            Want::Write => libc::EPOLLOUT as u32,
            Want::Nothing => 0, // the application has the request; more input waits in the socket
        };
        if let (Some(r), Some(sock)) = (self.ring.as_mut(), conn.ring.as_mut()) {
            // On the ring: receive while input is wanted (a multishot recv), and only then, so
            // input the loop is not reading waits in the socket as it does on epoll; room to
            // write is reported by the staged send's completion, or by a poll after a direct
            // write found the socket full.
            match conn.conn.want() {
                Want::Read => r.recv(fd, conn.gen, sock),
                Want::Write => {
                    r.stop_recv(fd, conn.gen, sock);
                    if !sock.pending() {
                        r.poll_out(fd, conn.gen, sock);
                    }
                }
                Want::Nothing => r.stop_recv(fd, conn.gen, sock),
            }
            conn.interest = want;
            return;
        }
        if want != conn.interest {
            conn.interest = want;
            let _ = ctl(self.ep, libc::EPOLL_CTL_MOD, fd, want, fd as u64);
        }
    }

    /// Flush the queue; HTTP/2 streams frame more body as it empties (at most 8 rounds a turn,
    /// then the next turn goes on, so one connection does not keep the loop).
    fn write(&mut self, fd: i32) {
        for _ in 0..8 {
            self.write_once(fd);
            if !self.h2_more(fd) {
                return;
            }
        }
        if let Some(Some(c)) = self.conns.get_mut(fd as usize) {
            if !c.writing && !c.lingering {
                c.writing = true; // EPOLLOUT comes at once: the rest on the next turn
                self.sync_interest(fd);
            }
        }
    }

    /// An HTTP/2 connection whose queue was written frames more body: true if it queued some.
    fn h2_more(&mut self, fd: i32) -> bool {
        let Some(Some(slot)) = self.conns.get_mut(fd as usize) else { return false };
        if slot.conn.writing || slot.conn.lingering {
            return false;
        }
        let Some(h2) = &mut slot.h2 else { return false };
        if h2.idle() {
            return false;
        }
        let before = slot.conn.proto.out.pending_bytes();
        h2.drive(&mut self.ctx, &mut slot.conn.proto.out);
        if h2.ended() {
            slot.conn.proto.close_after_flush = true;
        }
        slot.conn.proto.out.pending_bytes() > before
    }

    fn write_once(&mut self, fd: i32) {
        let now = self.ctx.clock.sec;
        let Some(Some(conn)) = self.conns.get_mut(fd as usize) else { return };
        if !conn.writing && conn.proto.exchange().is_some_and(|ex| ex.borrow().defer_write) {
            return; // written with the inline response that follows on this turn
        }
        // The write timeout counts from the last time the client took bytes, not from the
        // last time there was something to send.
        let before = if conn.writing { conn.proto.out.pending_bytes() } else { usize::MAX };
        let (mut wire, conn) = conn.split(fd);
        let result = if conn.proto.out.is_empty() && !wire.holds_output() { Flush::Done } else { conn.proto.out.flush(&mut wire) };
        if !conn.writing || conn.proto.out.pending_bytes() < before {
            conn.progress_at = now;
        }
        match result {
            Flush::Done => {
                conn.writing = false;
                if conn.proto.close_after_flush {
                    self.start_close(fd);
                    return;
                }
            }
            Flush::Blocked => conn.writing = true,
            Flush::Error => {
                self.close(fd);
                return;
            }
        }
        if let Some(ex) = conn.proto.exchange() {
            ex.borrow_mut().unflushed = conn.proto.out.pending_bytes();
            notify(ex);
        }
        self.send_staged(fd);
        let Some(Some(conn)) = self.conns.get_mut(fd as usize) else { return };
        if conn.proto.is_websocket() {
            conn.proto.out.release(); // an idle WebSocket holds no output ring
        }
        self.sync_interest(fd);
    }

    /// Everything is written and the connection ends: shut our side and read until the peer
    /// closes (or LINGER_SECS pass), so unread input does not make the kernel reset the stream.
    fn start_close(&mut self, fd: i32) {
        let Some(Some(conn)) = self.conns.get_mut(fd as usize) else { return };
        if let Some(h2) = &mut conn.h2 {
            h2.abandon(&mut self.ctx); // no answer can reach the client now: its applications are told
        }
        if let Some(tls) = &mut conn.tls {
            tls.close_notify(&mut wire::raw(fd, conn.ring.as_mut())); // an orderly end, so the client can tell it from a cut
        }
        match (self.ring.as_mut(), conn.ring.as_mut()) {
            (Some(r), Some(sock)) => {
                r.send(fd, conn.gen, sock);
                ring::shutdown_after(fd, sock); // after the staged bytes
            }
            _ => unsafe {
                libc::shutdown(fd, libc::SHUT_WR);
            },
        }
        conn.lingering = true;
        conn.writing = false;
        conn.deadline = self.ctx.clock.sec + LINGER_SECS;
        conn.inbuf = Vec::new();
        self.sync_interest(fd);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        for fd in 0..self.conns.len() {
            self.close(fd as i32);
        }
        self.give_up_closing(i64::MAX);
        unsafe {
            libc::close(self.ep);
            libc::close(self.sfd);
            if self.stop_deadline.is_none() {
                libc::close(self.listen_fd); // not yet closed by a stop signal
            }
        }
    }
}
