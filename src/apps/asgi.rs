//! ASGI 3 (HTTP) on the worker's asyncio event loop.
//!
//! The Rust loop becomes a reader on the asyncio loop: its epoll descriptor is registered with
//! `loop.add_reader`, and one call (`AsgiWorker.poll`) drains every ready event, answers static
//! hits itself and starts one task per application request. The application's `send()` frames
//! the response here and hands it to the connection through an `Exchange`; the worker is asked to
//! write it with one `call_soon` per loop turn, however many responses are ready.

use crate::apps::{App, AppCall, AppRequest, Exchange, Inbox, ReqBody, SharedExchange, Taken, Wakeups};
use super::asgi_base::{field, headers_from, set_result, Ready, Waker, HIGH_WATER, LOW_WATER};

/// The largest body message `receive()` gives at once.
const BODY_CHUNK: usize = 1 << 20;
use std::sync::Arc;
use crate::apps::exchange::{Part, ResponseHead};
use crate::apps::reply::server_error;
use crate::h1::encode;
use std::borrow::Cow;
use crate::io::worker::{Worker, WorkerConfig};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyStopIteration, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use std::cell::{Cell, RefCell};
use std::io::Read;
use std::rc::Rc;


/// Futures waiting on a connection: for room to write, for the end of the exchange.
#[derive(Default)]
struct Waiters {
    drain: Vec<Py<PyAny>>,
    disconnect: Vec<Py<PyAny>>,
    /// A request body arriving as the application reads it, and the receive() waiting for it.
    inbox: Option<Arc<Inbox>>,
    body: Option<Py<PyAny>>,
}

fn body_message<'py>(py: Python<'py>, data: &[u8], more: bool) -> PyResult<Bound<'py, PyDict>> {
    let msg = PyDict::new(py);
    msg.set_item(intern!(py, "type"), intern!(py, "http.request"))?;
    msg.set_item(intern!(py, "body"), PyBytes::new(py, data))?;
    msg.set_item(intern!(py, "more_body"), more)?;
    Ok(msg)
}

impl Waiters {
    /// The next message of a streamed body, if there is one now (None: wait). The inbox is
    /// dropped at the end of the body; a cut body is a disconnect.
    fn next_body<'py>(&mut self, py: Python<'py>) -> PyResult<(Option<Bound<'py, PyDict>>, bool)> {
        let Some(inbox) = &self.inbox else { return Ok((None, false)) };
        let (taken, wake) = inbox.take_flag(BODY_CHUNK);
        let msg = match taken {
            Taken::Data(d) => Some(body_message(py, &d, !inbox.at_end())?),
            Taken::End => Some(body_message(py, b"", false)?),
            Taken::Broken => Some(disconnect_message(py)?),
            Taken::Empty => None,
        };
        if msg.is_some() && inbox.at_end() {
            self.inbox = None;
        }
        Ok((msg, wake))
    }
}

fn disconnect_message(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "type"), intern!(py, "http.disconnect"))?;
    Ok(d)
}

/// Resolve what can be resolved after the worker wrote output or saw the connection go.
fn settle(py: Python<'_>, ex: &SharedExchange, waiters: &RefCell<Waiters>) {
    let (gone, finished, backlog) = {
        let e = ex.borrow();
        (e.gone, e.finished || e.peer_eof, e.backlog())
    };
    let mut w = waiters.borrow_mut();
    if w.body.is_some() {
        if let Ok((Some(msg), _)) = w.next_body(py) {
            if let Some(fut) = w.body.take() {
                set_result(py, &fut, msg.into_any());
            }
        }
    }
    if gone || backlog <= LOW_WATER {
        for fut in w.drain.drain(..) {
            set_result(py, &fut, py.None().into_bound(py));
        }
    }
    if gone || finished {
        for fut in w.disconnect.drain(..) {
            if let Ok(msg) = disconnect_message(py) {
                set_result(py, &fut, msg.into_any());
            }
        }
    }
}


/// The response once its head is out.
struct Started {
    /// Trailer fields follow the body (http.response.trailers): the end waits for them.
    trailers: bool,
    /// The last body message came (more_body false).
    body_done: bool,
}

/// What `http.response.start` said, until the first body message tells the framing.
struct Start {
    status: u16,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    trailers: bool,
}

/// `receive` and `send` of one request.
#[pyclass(module = "vw._core", unsendable)]
pub struct Channel {
    ex: SharedExchange,
    waiters: Rc<RefCell<Waiters>>,
    id: (i32, u64),
    waker: Waker,
    create_future: Py<PyAny>,
    done: Py<Ready>,
    body: Option<ReqBody>,
    head_only: bool,
    minor: u8,
    framing: Option<Started>,
    pending_start: Option<Start>,
    trailer_block: Vec<u8>,
    /// The request has `TE: trailers`: trailer fields may be sent.
    te_trailers: bool,
}

impl Channel {
    fn finish(&mut self, py: Python<'_>, close: bool) {
        {
            let mut e = self.ex.borrow_mut();
            e.finished = true;
            e.close |= close;
        }
        self.waker.kick(py, self.id);
        settle(py, &self.ex, &self.waiters);
    }

    fn emit(&mut self, py: Python<'_>, part: Part) {
        self.ex.borrow_mut().push(part);
        self.waker.kick(py, self.id);
    }

    /// Send the head once the first body message tells how the body is delimited.
    fn start(&mut self, py: Python<'_>, first_body: &[u8], more: bool) -> PyResult<()> {
        self.start_with(py, first_body, more, None)
    }

    /// The head; `file_len`: the body is a file of this length (pathsend).
    fn start_with(&mut self, py: Python<'_>, first_body: &[u8], more: bool, file_len: Option<u64>) -> PyResult<()> {
        let Start { status, mut headers, trailers } = self.pending_start.take().ok_or_else(|| PyRuntimeError::new_err("http.response.body before http.response.start"))?;
        // Trailers go out only in a chunked body, to a client that said it takes them.
        let trailers = trailers && self.te_trailers && self.minor == 1 && !self.head_only && file_len.is_none() && !encode::bodiless(status);
        if trailers || file_len.is_some() {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(b"content-length"));
        }
        let given = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(b"content-length"))
            .map(|(_, v)| std::str::from_utf8(v).ok().and_then(|v| v.trim().parse::<u64>().ok()).ok_or_else(|| PyValueError::new_err("invalid content-length from the application")))
            .transpose()?;
        let length = match (file_len, given) {
            (Some(n), _) | (None, Some(n)) => Some(n),
            // One body message and no length given: its length.
            (None, None) if !more && !trailers => Some(first_body.len() as u64),
            (None, None) => None, // chunked (HTTP/1.1), or the body ends with the connection
        };
        let fields = headers.into_iter().map(|(n, v)| (Cow::Owned(n), Cow::Owned(v))).collect();
        self.framing = Some(Started { trailers, body_done: false });
        self.emit(py, Part::Head(ResponseHead { status, status_line: encode::status_line(status), fields, length }));
        Ok(())
    }

    fn body(&mut self, py: Python<'_>, data: &[u8], more: bool) -> PyResult<()> {
        if self.framing.is_none() {
            self.start(py, data, more)?;
        }
        if !data.is_empty() && !self.head_only {
            self.emit(py, Part::Body(data.to_vec()));
        }
        if !more {
            let f = self.framing.as_mut().expect("started");
            if f.trailers {
                f.body_done = true;
                return Ok(()); // the last chunk goes with the trailer fields
            }
            self.end_body(py, Vec::new());
        }
        Ok(())
    }

    /// The end of the body (the last chunk, with these trailer fields), and of the response.
    fn end_body(&mut self, py: Python<'_>, trailers: Vec<u8>) {
        self.ex.borrow_mut().push(Part::End { trailers });
        self.finish(py, false);
    }

    /// The task ended: if it did not complete its response, complete or cut it.
    fn ended(&mut self, py: Python<'_>, error: Option<PyErr>) {
        if self.ex.borrow().finished {
            if let Some(e) = error {
                super::reply::log_exception(py, "vw: the ASGI application raised an exception after its response", e);
            }
            return;
        }
        if let Some(e) = &error {
            super::reply::log_exception(py, "vw: the ASGI application raised an exception; answering 500", e.clone_ref(py));
        } else {
            eprintln!("vw: the ASGI application returned without completing its response");
        }
        if self.framing.is_none() {
            server_error().into_exchange(self.head_only, &mut self.ex.borrow_mut());
            self.finish(py, false);
        } else if self.framing.as_ref().is_some_and(|f| f.trailers && f.body_done) && error.is_none() {
            self.end_body(py, Vec::new()); // a whole body whose trailers never came
        } else {
            self.finish(py, true); // the response started: only closing can end it now
        }
    }
}


#[pymethods]
impl Channel {
    fn receive<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if self.waiters.borrow().inbox.is_some() {
            let (msg, wake) = self.waiters.borrow_mut().next_body(py)?;
            if wake {
                self.waker.kick(py, self.id); // asked for body (100 Continue), or made room
            }
            if let Some(msg) = msg {
                return Ok(Bound::new(py, Ready { value: msg.into_any().unbind() })?.into_any());
            }
            let fut = self.create_future.bind(py).call0()?;
            self.waiters.borrow_mut().body = Some(fut.clone().unbind());
            return Ok(fut);
        }
        if let Some(body) = self.body.take() {
            let msg = PyDict::new(py);
            msg.set_item(intern!(py, "type"), intern!(py, "http.request"))?;
            let (data, more) = match body {
                ReqBody::Empty | ReqBody::Stream(_) => (Vec::new(), false),
                ReqBody::Mem(v) => (v, false),
                ReqBody::File(mut f, n) => {
                    let mut buf = vec![0u8; BODY_CHUNK.min(n as usize)];
                    let mut got = 0;
                    while got < buf.len() {
                        match f.read(&mut buf[got..]) {
                            Ok(0) => break,
                            Ok(k) => got += k,
                            Err(e) => return Err(PyOSError::new_err(e.to_string())),
                        }
                    }
                    buf.truncate(got);
                    let left = n - got as u64;
                    if left > 0 {
                        self.body = Some(ReqBody::File(f, left));
                    }
                    (buf, left > 0)
                }
            };
            msg.set_item(intern!(py, "body"), PyBytes::new(py, &data))?;
            msg.set_item(intern!(py, "more_body"), more)?;
            return Ok(Bound::new(py, Ready { value: msg.into_any().unbind() })?.into_any());
        }
        let (gone, finished) = {
            let e = self.ex.borrow();
            (e.gone || e.peer_eof, e.finished)
        };
        if gone || finished {
            return Ok(Bound::new(py, Ready { value: disconnect_message(py)?.into_any().unbind() })?.into_any());
        }
        let fut = self.create_future.bind(py).call0()?;
        let mut w = self.waiters.borrow_mut();
        // Callers that poll (is_disconnected) leave cancelled futures behind: drop them.
        w.disconnect.retain(|f| !f.bind(py).call_method0(intern!(py, "done")).and_then(|d| d.is_truthy()).unwrap_or(true));
        w.disconnect.push(fut.clone().unbind());
        Ok(fut)
    }

    fn send<'py>(&mut self, py: Python<'py>, message: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let kind = field(message, intern!(py, "type"))?.ok_or_else(|| PyValueError::new_err("message without a type"))?;
        let kind = kind.cast::<PyString>().map_err(|_| PyTypeError::new_err("message type must be str"))?.to_str()?;
        if self.ex.borrow().gone {
            return Err(PyOSError::new_err("the client has gone"));
        }
        match kind {
            "http.response.start" => {
                if self.pending_start.is_some() || self.framing.is_some() {
                    return Err(PyRuntimeError::new_err("http.response.start sent twice"));
                }
                let status: u16 = field(message, intern!(py, "status"))?.ok_or_else(|| PyValueError::new_err("http.response.start without a status"))?.extract()?;
                if !(200..=999).contains(&status) {
                    // 1xx responses are interim; vw sends 100 Continue itself and offers no other.
                    return Err(PyValueError::new_err(format!("invalid final status {status}")));
                }
                let headers = match field(message, intern!(py, "headers"))? {
                    Some(h) => headers_from(&h)?,
                    None => Vec::new(),
                };
                let trailers = match field(message, intern!(py, "trailers"))? {
                    Some(t) => t.is_truthy()?,
                    None => false,
                };
                self.pending_start = Some(Start { status, headers, trailers });
            }
            "http.response.pathsend" => {
                // The core sends the file itself (sendfile), as it sends static files.
                if self.framing.is_some() || self.pending_start.is_none() {
                    return Err(PyRuntimeError::new_err("http.response.pathsend must follow http.response.start, alone"));
                }
                let path: std::path::PathBuf = field(message, intern!(py, "path"))?.ok_or_else(|| PyValueError::new_err("http.response.pathsend without a path"))?.extract()?;
                if !path.is_absolute() {
                    return Err(PyValueError::new_err("http.response.pathsend: the path must be absolute"));
                }
                let file = std::fs::File::open(&path).map_err(|e| PyOSError::new_err(format!("{}: {e}", path.display())))?;
                let meta = file.metadata().map_err(|e| PyOSError::new_err(e.to_string()))?;
                if !meta.is_file() {
                    return Err(PyValueError::new_err(format!("{}: not a regular file", path.display())));
                }
                let len = meta.len();
                self.start_with(py, b"", false, Some(len))?;
                if !self.head_only && len > 0 {
                    self.ex.borrow_mut().push(Part::File { fd: file.into(), off: 0, len });
                }
                self.end_body(py, Vec::new());
            }
            "http.response.trailers" => {
                let more = match field(message, intern!(py, "more_trailers"))? {
                    Some(m) => m.is_truthy()?,
                    None => false,
                };
                let pending = self.framing.as_ref().is_some_and(|f| f.trailers) && !self.ex.borrow().finished;
                if !pending {
                    return Ok(self.done.bind(py).clone().into_any()); // not asked for by the client: dropped
                }
                let headers = match field(message, intern!(py, "headers"))? {
                    Some(h) => headers_from(&h)?,
                    None => Vec::new(),
                };
                let mut block = std::mem::take(&mut self.trailer_block);
                for (name, value) in headers {
                    // Fields that frame or route a message have no place in trailers.
                    let forbidden = [&b"content-length"[..], b"transfer-encoding", b"host", b"connection", b"te", b"trailer"];
                    if forbidden.iter().any(|f| name.eq_ignore_ascii_case(f)) {
                        continue;
                    }
                    block.extend_from_slice(&name);
                    block.extend_from_slice(b": ");
                    block.extend_from_slice(&value);
                    block.extend_from_slice(b"\r\n");
                }
                if more {
                    self.trailer_block = block;
                } else {
                    self.end_body(py, block);
                }
            }
            "http.response.body" => {
                if self.ex.borrow().finished {
                    return Err(PyRuntimeError::new_err("the response is already complete"));
                }
                let more = match field(message, intern!(py, "more_body"))? {
                    Some(m) => m.is_truthy()?,
                    None => false,
                };
                match field(message, intern!(py, "body"))? {
                    Some(b) => self.body(py, b.cast::<PyBytes>().map_err(|_| PyTypeError::new_err("body must be bytes"))?.as_bytes(), more)?,
                    None => self.body(py, b"", more)?,
                }
            }
            _ => {} // not offered in the scope's extensions
        }
        let backlog = {
            let e = self.ex.borrow();
            e.backlog()
        };
        if backlog > HIGH_WATER && !self.ex.borrow().finished {
            // Backpressure: wait until the client has read enough of what is queued.
            let fut = self.create_future.bind(py).call0()?;
            self.waiters.borrow_mut().drain.push(fut.clone().unbind());
            return Ok(fut);
        }
        Ok(self.done.bind(py).clone().into_any())
    }

}

/// What a request's task runs: the application's coroutine, stepped through, with the end of the
/// exchange reported to the channel when it returns or raises (a done-callback would cost a loop
/// turn, a Python wrapper coroutine a frame). Registered as a `collections.abc.Coroutine`.
#[pyclass(module = "vw._core", unsendable)]
pub struct Run {
    coro: Py<PyAny>,
    channel: Chan,
}

/// The channel of a task: an HTTP request's, or a WebSocket's.
pub(super) enum Chan {
    Http(Py<Channel>),
    Ws(Py<super::asgi_ws::WsChannel>),
}

impl Chan {
    fn ended(&self, py: Python<'_>, error: Option<PyErr>) {
        match self {
            Chan::Http(c) => c.borrow_mut(py).ended(py, error),
            Chan::Ws(c) => c.borrow_mut(py).ended(py, error),
        }
    }

    fn finished(&self, py: Python<'_>) -> bool {
        match self {
            Chan::Http(c) => c.borrow(py).ex.borrow().finished,
            Chan::Ws(c) => c.borrow(py).finished(),
        }
    }
}

impl Run {
    /// Turn one step's outcome into what the task expects: the yielded value, or StopIteration
    /// once the application is done (its failure reported to the channel, not to the task,
    /// except KeyboardInterrupt and SystemExit, which are not the application's to swallow).
    fn outcome(&self, py: Python<'_>, step: PyResult<Option<Py<PyAny>>>) -> PyResult<Option<Py<PyAny>>> {
        match step {
            Ok(Some(v)) => Ok(Some(v)),
            Ok(None) => {
                self.channel.ended(py, None);
                Ok(None)
            }
            Err(e) => {
                let fatal = !e.is_instance_of::<pyo3::exceptions::PyException>(py);
                let again = if fatal { Some(e.clone_ref(py)) } else { None };
                self.channel.ended(py, Some(e));
                match again {
                    Some(e) => Err(e),
                    None => Ok(None),
                }
            }
        }
    }

    /// `coro.send(None)`: Some(yielded), None when it returned.
    fn step(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let mut result: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
        // SAFETY: both pointers are valid for the call; the result is a new reference or null.
        let status = unsafe { pyo3::ffi::PyIter_Send(self.coro.as_ptr(), pyo3::ffi::Py_None(), &mut result) };
        match status {
            pyo3::ffi::PySendResult::PYGEN_NEXT => Ok(Some(unsafe { Bound::from_owned_ptr(py, result) }.unbind())),
            pyo3::ffi::PySendResult::PYGEN_RETURN => {
                if !result.is_null() {
                    unsafe { pyo3::ffi::Py_DECREF(result) };
                }
                Ok(None)
            }
            _ => Err(PyErr::fetch(py)),
        }
    }
}

#[pymethods]
impl Run {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.outcome(py, self.step(py))
    }

    fn send(&self, py: Python<'_>, value: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let step = if value.is_none() {
            self.step(py)
        } else {
            match self.coro.bind(py).call_method1(intern!(py, "send"), (value,)) {
                Ok(v) => Ok(Some(v.unbind())),
                Err(e) if e.is_instance_of::<PyStopIteration>(py) => Ok(None),
                Err(e) => Err(e),
            }
        };
        self.outcome(py, step)?.ok_or_else(|| PyStopIteration::new_err(()))
    }

    #[pyo3(signature = (exc, *rest))]
    fn throw(&self, py: Python<'_>, exc: Bound<'_, PyAny>, rest: Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        let mut args = vec![exc];
        args.extend(rest.iter());
        let step = match self.coro.bind(py).call_method1(intern!(py, "throw"), PyTuple::new(py, args)?) {
            Ok(v) => Ok(Some(v.unbind())),
            Err(e) if e.is_instance_of::<PyStopIteration>(py) => Ok(None),
            Err(e) => Err(e),
        };
        self.outcome(py, step)?.ok_or_else(|| PyStopIteration::new_err(()))
    }

    /// The task is being destroyed before the application finished: close it, and end its
    /// exchange (a response begun is cut, none begun becomes a 500) so the connection goes on.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let result = self.coro.bind(py).call_method0(intern!(py, "close"));
        if !self.channel.finished(py) {
            self.channel.ended(py, Some(PyRuntimeError::new_err("the application's task was closed")));
        }
        result.map(|_| ())
    }
}

pub struct Asgi {
    app: Py<PyAny>,
    create_task: Py<PyAny>,
    create_future: Py<PyAny>,
    call_soon: Py<PyAny>,
    wake: Py<PyAny>,
    state: Py<PyDict>,
    waker: Option<Waker>,
    scheduled: Rc<Cell<bool>>,
    done: Py<Ready>,
    /// scope["asgi"], copied for every request.
    asgi_info: Py<PyDict>,
    /// Every scope key in order, with the values that do not change.
    template: Py<PyDict>,
    /// scope["extensions"].
    extensions: Py<PyDict>,
    /// scope["extensions"] of a WebSocket, shared as the HTTP one is.
    ws_extensions: Py<PyDict>,
    /// Lowercase field names as bytes, by the name as sent: made once per worker, not per
    /// request (bounded; names past it are made each time).
    names: std::collections::HashMap<Box<[u8]>, Py<PyBytes>, crate::statics::PathHash>,
    last_ip: Option<(std::net::IpAddr, Py<PyString>)>,
    coroutine_type: Py<PyAny>,
}

impl Asgi {
    pub fn new(app: Py<PyAny>, event_loop: &Bound<'_, PyAny>, wake: Py<PyAny>, state: Py<PyDict>, server: Py<PyAny>) -> PyResult<Self> {
        let py = event_loop.py();
        let asgi_info = PyDict::new(py);
        asgi_info.set_item("version", "3.0")?;
        asgi_info.set_item("spec_version", "2.4")?;
        // One dict for every request (apps read it): pathsend always; trailers are added, in a
        // copy, for a request that says `TE: trailers`.
        let extensions = PyDict::new(py);
        extensions.set_item("http.response.pathsend", PyDict::new(py))?;
        let template = PyDict::new(py);
        for (key, value) in [
            ("type", PyString::new(py, "http").into_any()),
            ("asgi", py.None().into_bound(py)),
            ("http_version", PyString::new(py, "1.1").into_any()),
            ("method", py.None().into_bound(py)),
            ("scheme", PyString::new(py, "http").into_any()),
            ("path", py.None().into_bound(py)),
            ("raw_path", py.None().into_bound(py)),
            ("query_string", py.None().into_bound(py)),
            ("root_path", PyString::new(py, "").into_any()),
            ("headers", py.None().into_bound(py)),
            ("client", py.None().into_bound(py)),
            ("server", server.bind(py).clone()),
            ("state", py.None().into_bound(py)),
            ("extensions", extensions.clone().into_any()),
        ] {
            template.set_item(PyString::intern(py, key), value)?;
        }
        let ws_extensions = PyDict::new(py);
        ws_extensions.set_item("websocket.http.response", PyDict::new(py))?;
        Ok(Asgi {
            ws_extensions: ws_extensions.unbind(),
            names: std::collections::HashMap::with_hasher(crate::statics::PathHash::new()),
            done: Py::new(py, Ready { value: py.None() })?,
            asgi_info: asgi_info.unbind(),
            template: template.unbind(),
            extensions: extensions.unbind(),
            last_ip: None,
            coroutine_type: py.import("types")?.getattr("CoroutineType")?.unbind(),
            app,
            create_task: event_loop.getattr("create_task")?.unbind(),
            create_future: event_loop.getattr("create_future")?.unbind(),
            call_soon: event_loop.getattr("call_soon")?.unbind(),
            wake,
            state,
            waker: None,
            scheduled: Rc::new(Cell::new(false)),
        })
    }

    /// The scope of one request: a copy of a template holding the keys in their order (so no
    /// insertion grows the dict), then the per-request values put in place.
    /// The scope, and whether the request says `TE: trailers` (read in the same pass over the
    /// fields).
    fn scope<'py>(&mut self, py: Python<'py>, req: &AppRequest) -> PyResult<(Bound<'py, PyDict>, bool)> {
        let scope = self.template.bind(py).copy()?;
        // A dict of its own per request: middleware may write to scope["asgi"].
        scope.set_item(intern!(py, "asgi"), self.asgi_info.bind(py).copy()?)?;
        if req.http2 {
            scope.set_item(intern!(py, "http_version"), intern!(py, "2"))?;
        } else if req.minor != 1 {
            scope.set_item(intern!(py, "http_version"), intern!(py, "1.0"))?;
        }
        scope.set_item(intern!(py, "method"), PyString::intern(py, std::str::from_utf8(req.method).unwrap_or("GET")))?;
        let raw_path = crate::statics::request_path(req.target);
        let decoded = crate::statics::normalize_percent(raw_path).unwrap_or_else(|| raw_path.to_vec());
        scope.set_item(intern!(py, "path"), PyString::new(py, &String::from_utf8_lossy(&decoded)))?;
        scope.set_item(intern!(py, "raw_path"), PyBytes::new(py, raw_path))?;
        let query = match req.target.iter().position(|&b| b == b'?') {
            Some(i) => &req.target[i + 1..],
            None => b"",
        };
        scope.set_item(intern!(py, "query_string"), PyBytes::new(py, query))?;
        let headers = PyList::empty(py);
        let mut te_trailers = false;
        for (name, value) in req.headers() {
            te_trailers |= name.eq_ignore_ascii_case(b"te") && value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"));
            let lower = match self.names.get(name) {
                Some(n) => n.bind(py).clone(),
                None => {
                    let n = PyBytes::new(py, &name.to_ascii_lowercase());
                    if self.names.len() < 256 && name.len() <= 64 {
                        self.names.insert(name.into(), n.clone().unbind());
                    }
                    n
                }
            };
            headers.append(PyTuple::new(py, [lower, PyBytes::new(py, value)])?)?;
        }
        scope.set_item(intern!(py, "headers"), headers)?;
        if let Some(p) = req.peer {
            // Clients mostly come from few addresses: the host string is made once per address.
            let host = match &self.last_ip {
                Some((ip, s)) if *ip == p.ip() => s.clone_ref(py),
                _ => {
                    let s = PyString::new(py, &p.ip().to_string()).unbind();
                    self.last_ip = Some((p.ip(), s.clone_ref(py)));
                    s
                }
            };
            scope.set_item(intern!(py, "client"), (host, p.port()))?;
        }
        scope.set_item(intern!(py, "state"), self.state.bind(py).copy()?)?;
        // The base scope says http; a trusted proxy's word wins over the connection's TLS.
        if req.https.unwrap_or(req.tls.is_some()) {
            scope.set_item(intern!(py, "scheme"), intern!(py, "https"))?;
        }
        if let Some(tls) = &req.tls {
            let ext = self.extensions.bind(py).copy()?;
            ext.set_item(intern!(py, "tls"), tls_extension(py, tls)?)?;
            scope.set_item(intern!(py, "extensions"), ext)?;
        }
        Ok((scope, te_trailers))
    }
}

impl Asgi {
    /// Start the application's task for one channel.
    fn start(&self, py: Python<'_>, scope: Bound<'_, PyDict>, receive: Bound<'_, PyAny>, send: Bound<'_, PyAny>, channel: Chan) -> PyResult<()> {
        let mut coro = self.app.bind(py).call1((scope, receive, send))?;
        if !coro.get_type().is(self.coroutine_type.bind(py)) {
            coro = coro.call_method0(intern!(py, "__await__"))?; // an awaitable, not a coroutine
        }
        let run = Bound::new(py, Run { coro: coro.unbind(), channel })?;
        self.create_task.bind(py).call1((run,))?;
        Ok(())
    }

    /// The scope of a WebSocket: an HTTP scope's keys, without `method`, with `subprotocols`
    /// and the denial extension.
    fn ws_scope<'py>(&mut self, py: Python<'py>, req: &AppRequest, offer: &super::ws::Offer) -> PyResult<Bound<'py, PyDict>> {
        let (scope, _) = self.scope(py, req)?;
        scope.set_item(intern!(py, "type"), intern!(py, "websocket"))?;
        scope.set_item(intern!(py, "scheme"), if req.https.unwrap_or(req.tls.is_some()) { intern!(py, "wss") } else { intern!(py, "ws") })?;
        scope.del_item(intern!(py, "method"))?;
        scope.set_item(intern!(py, "subprotocols"), PyList::new(py, &offer.protocols)?)?;
        match &req.tls {
            None => scope.set_item(intern!(py, "extensions"), self.ws_extensions.bind(py))?,
            Some(tls) => {
                let ext = self.ws_extensions.bind(py).copy()?;
                ext.set_item(intern!(py, "tls"), tls_extension(py, tls)?)?;
                scope.set_item(intern!(py, "extensions"), ext)?;
            }
        }
        Ok(scope)
    }
}

/// scope["extensions"]["tls"] (the ASGI TLS extension): the certificate the connection was
/// answered with, the client's chain (PEM), the version and cipher suite as their numbers.
fn tls_extension<'py>(py: Python<'py>, tls: &crate::tls::TlsInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("server_cert", &*tls.server_cert)?;
    d.set_item("client_cert_chain", PyList::new(py, &tls.client_chain)?)?;
    d.set_item("client_cert_name", tls.client_name.as_deref())?;
    d.set_item("client_cert_error", py.None())?;
    d.set_item("tls_version", tls.version)?;
    d.set_item("cipher_suite", tls.cipher)?;
    Ok(d)
}

impl App for Asgi {
    fn streams_body(&self) -> bool {
        true
    }

    fn takes_websocket(&self, _req: &AppRequest) -> bool {
        true // the application decides: accept, or close (403), or deny with a response
    }

    fn websocket(&mut self, req: &AppRequest, offer: super::ws::Offer, mailbox: Arc<super::ws::Mailbox>) -> SharedExchange {
        let ex: SharedExchange = Rc::new(RefCell::new(Exchange::default()));
        let result = Python::attach(|py| -> PyResult<()> {
            let scope = self.ws_scope(py, req, &offer)?;
            let waker = self.waker.clone().ok_or_else(|| PyRuntimeError::new_err("ASGI app not bound to a worker"))?;
            let chan = Bound::new(py, super::asgi_ws::WsChannel::new(ex.clone(), mailbox, req.conn_id, waker, self.create_future.clone_ref(py), self.done.clone_ref(py), offer.protocols))?;
            let receive = chan.getattr(intern!(py, "receive"))?;
            let send = chan.getattr(intern!(py, "send"))?;
            self.start(py, scope, receive, send, Chan::Ws(chan.unbind()))
        });
        if let Err(e) = result {
            Python::attach(|py| {
                super::reply::log_exception(py, "vw: calling the ASGI application failed; answering 500", e);
            });
            let mut x = ex.borrow_mut();
            server_error().into_exchange(false, &mut x);
            x.finished = true;
        }
        ex
    }

    fn bind(&mut self, wakeups: Wakeups) {
        Python::attach(|py| {
            self.waker = Some(Waker {
                wakeups,
                scheduled: self.scheduled.clone(),
                call_soon: Rc::new(self.call_soon.clone_ref(py)),
                wake: Rc::new(self.wake.clone_ref(py)),
            });
        });
    }

    fn call(&mut self, req: &AppRequest, body: ReqBody, head_only: bool) -> AppCall {
        let ex: SharedExchange = Rc::new(RefCell::new(Exchange::default()));
        let waiters: Rc<RefCell<Waiters>> = Rc::default();
        let body = match body {
            ReqBody::Stream(inbox) => {
                waiters.borrow_mut().inbox = Some(inbox);
                None
            }
            other => Some(other),
        };
        {
            // A weak reference: the exchange must not keep itself alive through its own hook.
            let (ex2, w2) = (Rc::downgrade(&ex), waiters.clone());
            ex.borrow_mut().on_progress = Some(Box::new(move || {
                if let Some(ex) = ex2.upgrade() {
                    Python::attach(|py| settle(py, &ex, &w2))
                }
            }));
        }
        let result = Python::attach(|py| -> PyResult<()> {
            let (scope, te_trailers) = self.scope(py, req)?;
            let waker = self.waker.clone().ok_or_else(|| PyRuntimeError::new_err("ASGI app not bound to a worker"))?;
            let chan = Bound::new(
                py,
                Channel {
                    ex: ex.clone(),
                    waiters,
                    id: req.conn_id,
                    waker,
                    create_future: self.create_future.clone_ref(py),
                    done: self.done.clone_ref(py),
                    body,
                    head_only,
                    minor: req.minor,
                    framing: None,
                    pending_start: None,
                    trailer_block: Vec::new(),
                    te_trailers,
                },
            )?;
            if te_trailers {
                let ext = self.extensions.bind(py).copy()?;
                ext.set_item(intern!(py, "http.response.trailers"), PyDict::new(py))?;
                scope.set_item(intern!(py, "extensions"), ext)?;
            }
            let receive = chan.getattr(intern!(py, "receive"))?;
            let send = chan.getattr(intern!(py, "send"))?;
            self.start(py, scope, receive, send, Chan::Http(chan.unbind()))
        });
        if let Err(e) = result {
            Python::attach(|py| {
                super::reply::log_exception(py, "vw: calling the ASGI application failed; answering 500", e);
            });
            let mut x = ex.borrow_mut();
            server_error().into_exchange(head_only, &mut x);
            x.finished = true;
        }
        AppCall::Pending(ex)
    }
}

/// A worker whose loop is driven by asyncio: `poll()` from `loop.add_reader(fileno(), ...)`.
#[pyclass(module = "vw._core", unsendable)]
pub struct AsgiWorker {
    worker: Worker,
    scheduled: Rc<Cell<bool>>,
}

impl AsgiWorker {
    pub fn create(cfg: WorkerConfig, scheduled: Rc<Cell<bool>>) -> PyResult<Self> {
        let worker = Worker::new(cfg).map_err(|e| PyOSError::new_err(e.to_string()))?;
        Ok(AsgiWorker { worker, scheduled })
    }
}

#[pymethods]
impl AsgiWorker {
    fn fileno(&self) -> i32 {
        self.worker.fileno()
    }

    /// Handle every ready event without blocking. False once stopped and drained.
    fn poll(&mut self) -> PyResult<bool> {
        self.worker.run_once(Some(0)).map_err(|e| PyOSError::new_err(e.to_string()))
    }

    /// The worker is done: write out what the access log holds.
    fn close(&mut self) {
        self.worker.flush_log();
    }

    /// Write what applications sent since the last turn.
    fn wake(&mut self) {
        self.scheduled.set(false);
        self.worker.wake();
    }
}

pub fn scheduled_flag(app: &Asgi) -> Rc<Cell<bool>> {
    app.scheduled.clone()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Ready>()?;
    m.add_class::<Channel>()?;
    m.add_class::<super::asgi_ws::WsChannel>()?;
    m.add_class::<Run>()?;
    m.add_class::<AsgiWorker>()?;
    Ok(())
}
