//! Handlers that may wait: a leader/follower pool of threads per worker for the synchronous
//! interfaces (WSGI and the sync handlers of vw.App).
//!
//! One thread at a time leads: it holds the worker (the baton) and runs its event loop. A request
//! for the application becomes a [`Job`]. The leader runs it itself, with the baton put down, so a
//! quick handler costs no handoff at all; when it returns, the leader picks the baton up again and
//! goes on. Meanwhile a watcher thread looks every millisecond: when the same job is still running
//! on its second look, the handler is waiting (a database, a sleep, a slow upstream) or computing,
//! and the watcher takes the baton and leads in its place. The old leader finishes its job, posts
//! the response to the worker (an eventfd wakes the loop) and becomes a follower.
//!
//! A route whose handler made the watcher take over is marked slow: its next jobs go straight to
//! a follower (one futex wake and one eventfd write, nothing next to a handler that waits), so a
//! slow route does not cost the loop a millisecond per request. A dispatched job that turns out
//! quick lowers the mark, and the route runs inline again after a few.
//!
//! Lock order: a thread never blocks on the baton. It takes it with `try_lock` (after a job, or
//! as the watcher) and whoever holds it leads; a job thread that finds it taken posts its
//! response instead. The GIL is held only to run Python and is never awaited while holding the
//! pool's small locks.

use super::exchange::{body_bytes, Done, Flow, Job, Part, ResponseHead, Route};
use super::reply::{internal_error, Reply};
use super::{App, AppCall, AppRequest, Exchange, ReqBody, SharedExchange};
use crate::io::worker::Worker;
use pyo3::prelude::*;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::time::Duration;

/// How often the watcher looks at the running job. A job still running at its second look has
/// run at least this long.
const WATCH_TICK: Duration = Duration::from_millis(1);
/// Looks without any job before the watcher sleeps until the next job (an idle worker does not
/// wake every millisecond).
const WATCH_IDLE_TICKS: u32 = 200;
/// The slow mark a route gets when the watcher took over from one of its jobs; each quick
/// dispatched job takes one off.
const SLOW_MARK: u8 = 8;
/// A dispatched job shorter than this counts as quick.
const QUICK: Duration = Duration::from_micros(500);
const ROUTE_SLOTS: usize = 256;

/// An application called on the pool's threads.
pub trait SyncApp: Send + Sync {
    /// On the loop, without Python: which handler serves the request, or the answer itself
    /// (a 404 or 405 of the router).
    fn route(&self, req: &AppRequest) -> Result<Route, Reply>;
    /// On a pool thread, holding the GIL: answer the job through `out`.
    fn run(&self, py: Python<'_>, job: &mut Job, out: &mut Responder);

    /// For an async route, on the event loop's thread: the coroutine that answers the job.
    fn start_async<'py>(&self, _py: Python<'py>, _job: &mut Job) -> PyResult<Bound<'py, PyAny>> {
        Err(pyo3::exceptions::PyRuntimeError::new_err("this application has no async handlers"))
    }

    /// The response made of what the coroutine returned (or raised): whole, or a head and
    /// the (async) iterator of its body.
    fn finish_async<'py>(&self, py: Python<'py>, result: PyResult<Bound<'py, PyAny>>) -> Finished<'py> {
        let err = result.err().unwrap_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("no async handlers"));
        Finished::Whole(internal_error(py, err, "the application"))
    }

    /// Request bodies go to the application as they arrive (`ReqBody::Stream`).
    fn streams_body(&self) -> bool {
        false
    }

    /// The asyncio loop async routes run on.
    fn event_loop(&self) -> Option<&Py<PyAny>> {
        None
    }

    /// On the loop, without Python: the WebSocket handler of this request's path, if any.
    fn ws_route(&self, _req: &AppRequest) -> Option<Route> {
        None
    }

    /// On the event loop's thread: the coroutine that runs a WebSocket's handler with `handle`.
    fn start_ws<'py>(&self, _py: Python<'py>, _job: &mut Job, _handle: Bound<'py, super::native_ws::WsHandle>) -> PyResult<Bound<'py, PyAny>> {
        Err(pyo3::exceptions::PyRuntimeError::new_err("this application has no WebSocket handlers"))
    }
}

/// What an async handler's result makes.
pub enum Finished<'py> {
    Whole(Reply),
    /// The head, and an iterator or async iterator of the body's pieces.
    Stream(Reply, Bound<'py, PyAny>),
}

/// The worker, to be held by one thread at a time.
struct Baton(Worker);

// SAFETY: the worker's Rc's and RefCells are reached only through the baton's mutex, by the one
// thread that holds it; nothing that crosses threads (jobs, `Done`, `Flow`) holds any of them.
unsafe impl Send for Baton {}

/// What the pool's threads share.
struct Shared {
    app: Arc<dyn SyncApp>,
    baton: std::sync::OnceLock<Mutex<Baton>>,
    /// Odd while the baton is down for an inline job.
    seq: AtomicU64,
    /// The route key of the inline job running now.
    running_key: AtomicUsize,
    slow: Vec<AtomicU8>,
    ctl: Mutex<Ctl>,
    /// Followers wait here for a dispatched job or for the watcher's place.
    work: Condvar,
    /// The watcher waits here between looks (and while idle).
    watch: Condvar,
    done: Mutex<Vec<Done>>,
    /// Registered with the worker's epoll: readable when `done` has something.
    efd: i32,
    /// The worker has stopped: every thread ends.
    stop: AtomicBool,
    /// `Ctl::watcher_parked`, readable without the lock (checked for every inline job).
    watcher_parked: AtomicBool,
    /// `Ctl::watcher`, readable without the lock: the baton is put down for an inline job only
    /// while someone watches (else nobody could take the loop over from it).
    watcher_present: AtomicBool,
    max_threads: usize,
    lane: Lane,
}

/// Async handlers: one thread per worker runs the asyncio loop (uvloop when installed) forever,
/// started with the first async job; jobs reach it through `jobs` and an eventfd the loop reads,
/// and every coroutine runs as a task of that loop, concurrently.
struct Lane {
    jobs: Mutex<VecDeque<Box<Job>>>,
    efd: i32,
    started: std::sync::Once,
}

#[derive(Default)]
struct Ctl {
    jobs: VecDeque<Box<Job>>,
    threads: usize,
    idle: usize,
    /// Idle followers notified and not yet awake (so that two notifies are not spent on one).
    pending: usize,
    watcher: bool,
    /// The watcher sleeps until a job starts.
    watcher_parked: bool,
    /// A job asked to be taken over now (it is about to wait).
    promote_now: bool,
}

impl Shared {
    fn post(&self, d: Done) {
        let first = {
            let mut list = self.done.lock().unwrap();
            list.push(d);
            list.len() == 1
        };
        if first {
            let one: u64 = 1;
            unsafe { libc::write(self.efd, &one as *const u64 as *const libc::c_void, 8) };
        }
    }

    fn baton(&self) -> &Mutex<Baton> {
        self.baton.get().expect("the worker is made before any thread runs")
    }

    fn is_slow(&self, key: usize) -> bool {
        self.slow[key % ROUTE_SLOTS].load(Ordering::Relaxed) > 0
    }

    /// Start a thread if the pool may grow (called with `ctl` held): up to `max_threads` that
    /// run handlers, and one more so that there is always a watcher to take the loop over.
    /// Start a thread unless the pool is at its size; false when none was started.
    fn grow(self: &Arc<Self>, ctl: &mut Ctl) -> bool {
        let cap = if ctl.watcher { self.max_threads } else { self.max_threads + 1 };
        if ctl.threads >= cap {
            return false;
        }
        ctl.threads += 1;
        let me = self.clone();
        let spawned = std::thread::Builder::new().name("vw-handler".into()).spawn(move || {
            Python::attach(|py| py.detach(|| me.follow()));
        });
        if spawned.is_err() {
            ctl.threads -= 1;
            return false;
        }
        true
    }

    /// Wake an idle follower not already woken, or start a thread (called with `ctl` held).
    fn wake_one(self: &Arc<Self>, ctl: &mut Ctl) {
        if ctl.idle > ctl.pending {
            ctl.pending += 1;
            self.work.notify_one();
        } else if !self.grow(ctl) && ctl.watcher {
            // The pool is at its size and every thread is busy but the watcher: it leaves its
            // watch and runs the queued job (see `watch_loop`), or the job would wait for ever.
            ctl.watcher_parked = false;
            self.watcher_parked.store(false, Ordering::Relaxed);
            self.watch.notify_one();
        }
    }

    /// Hand a job to a follower.
    fn dispatch(self: &Arc<Self>, job: Box<Job>) {
        let mut ctl = self.ctl.lock().unwrap();
        ctl.jobs.push_back(job);
        self.wake_one(&mut ctl);
    }

    /// Hand an async job to the event loop's thread.
    fn dispatch_async(self: &Arc<Self>, job: Box<Job>) {
        let first = {
            let mut q = self.lane.jobs.lock().unwrap();
            q.push_back(job);
            q.len() == 1
        };
        self.lane.started.call_once(|| {
            let me = self.clone();
            let _ = std::thread::Builder::new().name("vw-async".into()).spawn(move || {
                Python::attach(|py| {
                    if let Err(e) = me.run_lane(py) {
                        super::reply::log_exception(py, "vw: the event loop of async handlers stopped", e);
                    }
                })
            });
        });
        if first {
            let one: u64 = 1;
            unsafe { libc::write(self.lane.efd, &one as *const u64 as *const libc::c_void, 8) };
        }
    }

    fn run_lane(self: &Arc<Self>, py: Python<'_>) -> PyResult<()> {
        let Some(event_loop) = self.app.event_loop() else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err("no event loop"));
        };
        let event_loop = event_loop.bind(py).clone();
        let drain = Bound::new(py, LaneDrain { shared: self.clone(), event_loop: event_loop.clone().unbind() })?;
        event_loop.call_method1("add_reader", (self.lane.efd, drain))?;
        event_loop.call_method0("run_forever")?;
        Ok(())
    }

    /// Post the whole response `reply` for `job`.
    fn answer(self: &Arc<Self>, job: &Job, reply: Reply) {
        let mut out = Responder::new(self, job.id, false);
        out.complete(reply, job.head_only);
        self.post(Done { id: job.id, parts: out.parts, finished: true, close: out.close, flow: None });
    }

    /// A job is about to wait (for room to write): let the watcher take over at once.
    fn yield_loop(self: &Arc<Self>) {
        let mut ctl = self.ctl.lock().unwrap();
        ctl.promote_now = true;
        ctl.watcher_parked = false;
        self.watcher_parked.store(false, Ordering::Relaxed);
        if ctl.watcher {
            self.watch.notify_one();
        } else {
            self.wake_one(&mut ctl); // it becomes the watcher and takes over at its first look
        }
    }

    /// A follower: run dispatched jobs, or watch when nobody does.
    fn follow(self: &Arc<Self>) {
        loop {
            let job = {
                let mut ctl = self.ctl.lock().unwrap();
                loop {
                    if self.stop.load(Ordering::Relaxed) {
                        ctl.threads -= 1;
                        return;
                    }
                    // A queued job first (without a watcher the leader queues every job, so a
                    // thread that watched instead could leave it there for good); then the watch.
                    if let Some(job) = ctl.jobs.pop_front() {
                        break Some(job);
                    }
                    if !ctl.watcher {
                        ctl.watcher = true;
                        self.watcher_present.store(true, Ordering::SeqCst);
                        break None;
                    }
                    ctl.idle += 1;
                    ctl = self.work.wait(ctl).unwrap();
                    ctl.idle -= 1;
                    ctl.pending = ctl.pending.saturating_sub(1);
                }
            };
            match job {
                Some(job) => self.run_dispatched(job),
                None => {
                    if let Some(baton) = self.watch_loop() {
                        self.lead(baton);
                    }
                }
            }
        }
    }

    fn run_dispatched(self: &Arc<Self>, mut job: Box<Job>) {
        let started = std::time::Instant::now();
        let done = Python::attach(|py| run_job(py, self, &mut job, false));
        let slot = &self.slow[job.route.key % ROUTE_SLOTS];
        if started.elapsed() < QUICK {
            let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
        } else {
            slot.store(SLOW_MARK, Ordering::Relaxed);
        }
        self.post(done);
    }

    /// Look at the inline job every tick; take the baton from one that runs too long. Returns
    /// the baton when this thread is to lead, None when the pool stops.
    fn watch_loop(self: &Arc<Self>) -> Option<std::sync::MutexGuard<'_, Baton>> {
        let mut last = u64::MAX;
        let mut quiet = 0;
        let mut ctl = self.ctl.lock().unwrap();
        loop {
            if self.stop.load(Ordering::Relaxed) {
                ctl.watcher = false;
                self.watcher_present.store(false, Ordering::SeqCst);
                return None;
            }
            ctl = if ctl.watcher_parked {
                self.watch.wait(ctl).unwrap()
            } else {
                self.watch.wait_timeout(ctl, WATCH_TICK).unwrap().0
            };
            if ctl.jobs.len() > ctl.pending && ctl.idle <= ctl.pending && self.seq.load(Ordering::Acquire) % 2 == 0 {
                // Queued jobs nobody else can take, and no inline job to watch: run them
                // (`follow` pops them) instead of watching. Without a watcher the leader queues
                // every job, and the first thread free watches again.
                ctl.watcher = false;
                self.watcher_present.store(false, Ordering::SeqCst);
                return None;
            }
            let s = self.seq.load(Ordering::Acquire);
            let urgent = std::mem::take(&mut ctl.promote_now);
            if s % 2 == 1 && (s == last || urgent) {
                if let Ok(baton) = self.baton().try_lock() {
                    if self.seq.load(Ordering::Acquire) % 2 == 1 {
                        self.seq.fetch_add(1, Ordering::AcqRel);
                        if !urgent {
                            self.slow[self.running_key.load(Ordering::Relaxed) % ROUTE_SLOTS].store(SLOW_MARK, Ordering::Relaxed);
                        }
                        ctl.watcher = false;
                        self.watcher_present.store(false, Ordering::SeqCst);
                        // Another thread takes the watch.
                        self.wake_one(&mut ctl);
                        return Some(baton);
                    }
                }
            }
            if s == last && s % 2 == 0 {
                quiet += 1;
                if quiet >= WATCH_IDLE_TICKS {
                    // Park, unless a job started meanwhile (it bumps `seq`, then reads the flag:
                    // with both sequentially consistent, one of the two sees the other).
                    self.watcher_parked.store(true, Ordering::SeqCst);
                    ctl.watcher_parked = self.seq.load(Ordering::SeqCst) % 2 == 0;
                    if !ctl.watcher_parked {
                        self.watcher_parked.store(false, Ordering::SeqCst);
                    }
                    quiet = 0;
                }
            } else {
                quiet = 0;
            }
            last = s;
        }
    }

    /// Lead: run the worker's loop and its inline jobs until the baton is lost or the worker
    /// stops.
    fn lead<'a>(self: &'a Arc<Self>, mut baton: std::sync::MutexGuard<'a, Baton>) {
        loop {
            // Jobs left from a takeover run now, not after the next second's tick.
            let wait = if baton.0.has_job() { Some(0) } else { None };
            match baton.0.run_once(wait) {
                Ok(true) => {}
                Ok(false) | Err(_) => {
                    baton.0.flush_log();
                    self.stop_all();
                    return;
                }
            }
            // The jobs of this turn, and those the answers let through (pipelined requests),
            // under one hold of the GIL; the baton is put down for each job.
            let mut held = Some(baton);
            let kept = Python::attach(|py| loop {
                let b = held.as_mut().expect("held between jobs");
                let Some(mut job) = b.0.next_job() else {
                    b.0.process_wakeups();
                    if b.0.has_job() {
                        continue;
                    }
                    return true;
                };
                if !self.watcher_present.load(Ordering::SeqCst) {
                    // Nobody could take the loop over from this job: a follower runs it (its
                    // connection's output is written when its answer comes).
                    b.0.undefer(job.id);
                    self.dispatch(job);
                    continue;
                }
                self.running_key.store(job.route.key, Ordering::Relaxed);
                self.seq.fetch_add(1, Ordering::SeqCst);
                if self.watcher_parked.load(Ordering::SeqCst) {
                    let mut ctl = self.ctl.lock().unwrap();
                    ctl.watcher_parked = false;
                    self.watcher_parked.store(false, Ordering::Relaxed);
                    self.watch.notify_one();
                }
                held = None;
                let done = run_job(py, self, &mut job, true);
                match self.baton().try_lock() {
                    Ok(mut b) => {
                        self.seq.fetch_add(1, Ordering::AcqRel);
                        if done.flow.is_some() {
                            b.0.take_done(); // its earlier pieces, posted: they go first
                        }
                        b.0.deliver(done);
                        held = Some(b);
                    }
                    Err(TryLockError::WouldBlock) => {
                        self.post(done);
                        return false; // the new leader has the loop; follow
                    }
                    Err(TryLockError::Poisoned(_)) => return false,
                }
            });
            match held {
                Some(b) if kept => baton = b,
                _ => return,
            }
        }
    }

    fn stop_all(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ctl = self.ctl.lock().unwrap();
        self.work.notify_all();
        self.watch.notify_all();
    }
}

/// Run one job (holding the GIL) and give what is left to deliver. `inline`: this thread may
/// still be the leader (a streamed response then hands the loop over before it waits).
fn run_job(py: Python<'_>, shared: &Arc<Shared>, job: &mut Job, inline: bool) -> Done {
    let app = shared.app.clone();
    let mut out = Responder::new(shared, job.id, inline);
    app.run(py, job, &mut out);
    if !out.finished {
        // The application neither answered nor failed: a 500 when nothing is out yet.
        if !out.started() && out.parts.is_empty() {
            out.complete(internal_error(py, pyo3::exceptions::PyRuntimeError::new_err("no response"), "the application"), job.head_only);
        } else {
            out.end();
        }
    }
    Done { id: job.id, parts: out.parts, finished: true, close: out.close, flow: out.flow }
}

/// Where a job's response goes: whole (`complete`), or head then pieces (`start`, `send`, `end`),
/// as parts of the exchange (the connection frames them).
pub struct Responder {
    shared: Arc<Shared>,
    id: (i32, u64),
    inline: bool,
    parts: Vec<Part>,
    /// A streamed body's length when the application gave one, and how much of it came.
    stream: Option<(Option<u64>, u64)>,
    flow: Option<Arc<Flow>>,
    close: bool,
    finished: bool,
}

impl Responder {
    fn new(shared: &Arc<Shared>, id: (i32, u64), inline: bool) -> Self {
        let shared = shared.clone();
        Responder { shared, id, inline, parts: Vec::new(), stream: None, flow: None, close: false, finished: false }
    }

    /// The whole response; `head_only`: to a HEAD request (no body, the length of the GET's).
    pub fn complete(&mut self, reply: Reply, head_only: bool) {
        reply.into_parts(head_only, &mut self.parts);
        self.finished = true;
    }

    /// The status and headers of a body that follows in pieces.
    pub fn start(&mut self, reply: Reply) {
        let head: ResponseHead = reply.stream_head();
        // A status that has no body (204, 304) is complete at once, as is a given length.
        let length = if crate::h1::encode::bodiless(head.status) { Some(0) } else { head.length };
        self.stream = Some((length, 0));
        self.parts.push(Part::Head(head));
    }

    /// One piece of the body. It goes out now (the connection's loop is woken for it) unless it
    /// completes the body; waits while the client is behind. False: the client is gone, stop.
    pub fn send(&mut self, py: Python<'_>, data: &[u8]) -> bool {
        if !self.started() {
            return false;
        }
        if !self.piece(data) {
            return true; // the end follows: sent with it, in one write
        }
        self.flush(py)
    }

    /// Queue one piece; false when it completes a body of given length (nothing to post yet).
    fn piece(&mut self, data: &[u8]) -> bool {
        let Some((length, sent)) = self.stream.as_mut() else { return false };
        *sent += data.len() as u64;
        let complete = length.is_some_and(|n| *sent >= n);
        if !data.is_empty() {
            self.parts.push(Part::Body(data.to_vec()));
        }
        !complete
    }

    /// Post what is framed so far, after waiting while the client is behind; false when the
    /// client is gone.
    fn flush(&mut self, py: Python<'_>) -> bool {
        self.flow_state().wait_room(py);
        self.post_now()
    }

    fn flow_state(&mut self) -> Arc<Flow> {
        self.flow.get_or_insert_with(Default::default).clone()
    }

    /// Post what is framed so far without waiting; false when the client is gone.
    fn post_now(&mut self) -> bool {
        let flow = self.flow_state();
        if !flow.posted(body_bytes(&self.parts)) {
            return false;
        }
        let parts = std::mem::take(&mut self.parts);
        self.shared.post(Done { id: self.id, parts, finished: false, close: false, flow: Some(flow) });
        if self.inline {
            // From here on this job writes through the leader: let another thread lead now.
            self.shared.yield_loop();
            self.inline = false;
        }
        true
    }

    /// The end of a streamed body.
    pub fn end(&mut self) {
        if self.stream.is_some() {
            self.parts.push(Part::End { trailers: Vec::new() });
        }
        self.finished = true;
    }

    /// The response cannot be finished (the application failed mid-body): close after what
    /// went out.
    pub fn abort(&mut self) {
        self.close = true;
        self.finished = true;
    }

    pub fn started(&self) -> bool {
        self.stream.is_some()
    }
}

/// The `App` the worker sees for a synchronous application: requests become jobs, run inline
/// by the leader or dispatched to a follower.
pub struct Threaded {
    shared: Arc<Shared>,
    inline: VecDeque<Box<Job>>,
}

/// Serve a synchronous application with a pool of at most `max_threads` threads: `make` builds
/// the worker around the `App` it is given; this thread leads first. Returns when the worker
/// has stopped.
pub fn serve(app: Arc<dyn SyncApp>, max_threads: usize, make: impl FnOnce(Box<dyn App>) -> std::io::Result<Worker>) -> std::io::Result<()> {
    let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    let lane_efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if efd < 0 || lane_efd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let shared = Arc::new(Shared {
        app,
        baton: std::sync::OnceLock::new(),
        seq: AtomicU64::new(0),
        running_key: AtomicUsize::new(0),
        slow: (0..ROUTE_SLOTS).map(|_| AtomicU8::new(0)).collect(),
        ctl: Mutex::new(Ctl { threads: 1, ..Default::default() }),
        work: Condvar::new(),
        watch: Condvar::new(),
        done: Mutex::new(Vec::new()),
        efd,
        stop: AtomicBool::new(false),
        watcher_parked: AtomicBool::new(false),
        watcher_present: AtomicBool::new(false),
        max_threads: max_threads.max(1),
        lane: Lane { jobs: Mutex::new(VecDeque::new()), efd: lane_efd, started: std::sync::Once::new() },
    });
    let worker = make(Box::new(Threaded { shared: shared.clone(), inline: VecDeque::new() }))?;
    if shared.baton.set(Mutex::new(Baton(worker))).is_err() {
        unreachable!("the baton is made once");
    }
    {
        // The watcher from the start (the first slow handler is then caught).
        let mut ctl = shared.ctl.lock().unwrap();
        shared.grow(&mut ctl);
    }
    let baton = shared.baton().lock().unwrap();
    shared.lead(baton);
    if !shared.stop.load(Ordering::Relaxed) {
        shared.follow();
    }
    Ok(())
}

impl App for Threaded {
    fn call(&mut self, req: &AppRequest, body: ReqBody, head_only: bool) -> AppCall {
        let route = match self.shared.app.route(req) {
            Ok(r) => r,
            Err(reply) => return reply.answer(head_only),
        };
        let job = Job::new(req, body, head_only, route, None);
        if let ReqBody::Stream(inbox) = &job.body {
            // The application asked for body, or made room: the loop sends 100 Continue or
            // reads on (a message with no output wakes it for this connection).
            let (shared, id) = (self.shared.clone(), job.id);
            inbox.set_waker(Box::new(move || shared.post(Done { id, parts: Vec::new(), finished: false, close: false, flow: None })));
        }
        let ex: SharedExchange = Rc::new(RefCell::new(Exchange::default()));
        if job.route.is_async {
            self.shared.dispatch_async(job);
        } else if self.shared.is_slow(job.route.key) {
            self.shared.dispatch(job);
        } else {
            ex.borrow_mut().defer_write = true;
            self.inline.push_back(job);
        }
        AppCall::Pending(ex)
    }

    fn next_job(&mut self) -> Option<Box<Job>> {
        self.inline.pop_front()
    }

    fn takes_websocket(&self, req: &AppRequest) -> bool {
        self.shared.app.ws_route(req).is_some()
    }

    /// A WebSocket's handler runs as a task of the async lane; it reaches the connection the
    /// way async responses do (posted parts, an eventfd) and reads the mailbox.
    fn websocket(&mut self, req: &AppRequest, offer: super::ws::Offer, mailbox: Arc<super::ws::Mailbox>) -> SharedExchange {
        let route = self.shared.app.ws_route(req).expect("takes_websocket said so");
        let job = Job::new(req, ReqBody::Empty, false, route, Some(Box::new((offer, mailbox))));
        self.shared.dispatch_async(job);
        Rc::new(RefCell::new(Exchange::default()))
    }

    fn streams_body(&self) -> bool {
        self.shared.app.streams_body()
    }

    fn has_job(&self) -> bool {
        !self.inline.is_empty()
    }

    fn wake_fd(&self) -> Option<i32> {
        Some(self.shared.efd)
    }

    fn take_done(&mut self) -> Vec<Done> {
        let mut n: u64 = 0;
        unsafe { libc::read(self.shared.efd, &mut n as *mut u64 as *mut libc::c_void, 8) };
        std::mem::take(&mut *self.shared.done.lock().unwrap())
    }
}

/// Read by the event loop when async jobs are queued: starts a task for each.
#[pyclass(module = "vw._core")]
struct LaneDrain {
    shared: Arc<Shared>,
    event_loop: Py<PyAny>,
}

#[pymethods]
impl LaneDrain {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let mut n: u64 = 0;
        unsafe { libc::read(self.shared.lane.efd, &mut n as *mut u64 as *mut libc::c_void, 8) };
        let jobs = std::mem::take(&mut *self.shared.lane.jobs.lock().unwrap());
        for mut job in jobs {
            let app = self.shared.app.clone();
            if let Some(open) = job.ws.take() {
                let (offer, mailbox) = *open;
                let shared = self.shared.clone();
                let post: super::native_ws::Post = Arc::new(move |d| shared.post(d));
                let handle = Bound::new(py, super::native_ws::WsHandle::new(job.id, offer.protocols, mailbox, post, self.event_loop.clone_ref(py)))?;
                let started = app.start_ws(py, &mut job, handle.clone()).and_then(|coro| self.event_loop.bind(py).call_method1("create_task", (coro,)));
                if let Err(e) = started {
                    e.print(py);
                    handle.borrow().finish(false, true);
                }
                continue;
            }
            let started = app.start_async(py, &mut job).and_then(|coro| self.event_loop.bind(py).call_method1("create_task", (coro,)));
            match started {
                Ok(task) => {
                    // The callback owns the job; if it cannot be attached, the job is answered.
                    let done = Bound::new(py, AsyncDone { shared: self.shared.clone(), job: Some(job) })?;
                    if let Err(e) = task.call_method1("add_done_callback", (&done,)) {
                        if let Some(job) = done.borrow_mut().job.take() {
                            self.shared.answer(&job, internal_error(py, e, "a handler"));
                        }
                    }
                }
                Err(e) => self.shared.answer(&job, internal_error(py, e, "a handler")),
            }
        }
        Ok(())
    }
}

/// The end of an async handler's task: its result becomes the response.
#[pyclass(module = "vw._core")]
struct AsyncDone {
    shared: Arc<Shared>,
    job: Option<Box<Job>>,
}

#[pymethods]
impl AsyncDone {
    fn __call__(&mut self, py: Python<'_>, task: Bound<'_, PyAny>) -> PyResult<()> {
        let Some(job) = self.job.take() else { return Ok(()) };
        let result = task.call_method0("result");
        match self.shared.app.finish_async(py, result) {
            Finished::Whole(reply) => self.shared.answer(&job, reply),
            Finished::Stream(head, items) => {
                // The body's pieces come from a task of the event loop (`vw.app._pump`), which
                // waits for room without blocking the loop.
                let mut out = Responder::new(&self.shared, job.id, false);
                out.start(head);
                let stream = Bound::new(py, BodyStream { out, event_loop: task.call_method0("get_loop")?.unbind() })?;
                let pump = py.import("vw.app")?.getattr("_pump")?.call1((items, stream))?;
                task.call_method0("get_loop")?.call_method1("create_task", (pump,))?;
            }
        }
        Ok(())
    }
}

/// A response body sent from an event loop's task, piece by piece (see `vw.app._pump`).
#[pyclass(module = "vw._core")]
pub struct BodyStream {
    out: Responder,
    event_loop: Py<PyAny>,
}

#[pymethods]
impl BodyStream {
    /// Send one piece (bytes, or str as UTF-8) now. False: the client is gone.
    fn send(&mut self, py: Python<'_>, piece: &Bound<'_, PyAny>) -> PyResult<bool> {
        let data: &[u8] = if let Ok(b) = piece.cast::<pyo3::types::PyBytes>() {
            b.as_bytes()
        } else if let Ok(t) = piece.cast::<pyo3::types::PyString>() {
            t.to_str()?.as_bytes()
        } else {
            return Err(pyo3::exceptions::PyTypeError::new_err("a streamed body yields bytes or str"));
        };
        let _ = py;
        if !self.out.started() {
            return Ok(false);
        }
        // A piece that completes a body of given length goes with the end.
        Ok(!self.out.piece(data) || self.out.post_now())
    }

    /// None when there is room for more; else a future that is done when the client has read
    /// enough of what waits (or has gone).
    fn room(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let flow = self.out.flow_state();
        if !flow.behind() {
            return Ok(None);
        }
        let event_loop = self.event_loop.bind(py);
        let fut = event_loop.call_method0("create_future")?.unbind();
        let (wake, lp) = (fut.clone_ref(py), self.event_loop.clone_ref(py));
        let resolve = py.import("vw.app")?.getattr("_resolve")?.unbind();
        let call = Box::new(move || {
            Python::attach(|py| {
                let _ = lp.bind(py).call_method1("call_soon_threadsafe", (resolve.bind(py), wake.bind(py)));
            })
        });
        if flow.room_or_call(call) {
            return Ok(None);
        }
        Ok(Some(fut))
    }

    /// The body is complete.
    fn end(&mut self) {
        self.out.end();
        self.finish();
    }

    /// The body failed: close the connection after what went out.
    fn abort(&mut self) {
        self.out.abort();
        self.finish();
    }
}

impl BodyStream {
    fn finish(&mut self) {
        let parts = std::mem::take(&mut self.out.parts);
        let flow = self.out.flow.clone();
        self.out.shared.post(Done { id: self.out.id, parts, finished: true, close: self.out.close, flow });
    }
}
