//! ASGI WebSocket (asgiref `www.rst`, spec 2.4, with the `websocket.http.response` extension):
//! `receive` and `send` of a `websocket` scope. The application sees whole messages; frames,
//! pings, UTF-8 and the close handshake are the connection's (`ws::session`).
//!
//! - `receive()` gives `websocket.connect` first, then `websocket.receive` (text or bytes) and at
//!   the end `websocket.disconnect` with the code (1005: the client's Close had none; 1006: the
//!   connection was lost; 1001: the server is going away) and reason.
//! - `send()` takes `websocket.accept` (subprotocol: one the client offered; headers),
//!   `websocket.send`, `websocket.close` (before the accept: 403), or a denial response
//!   (`websocket.http.response.start` / `.body`). It waits while 256 KiB are unwritten; after the
//!   client is gone it raises `OSError` (Starlette turns that into `WebSocketDisconnect(1006)`).
//! - The task ending closes the WebSocket: 1000 when it returned, 1011 when it raised; an
//!   application that ends without answering the handshake gives 403 (500 if it raised).

use super::asgi_base::{field, headers_from, set_result, Ready, Waker, HIGH_WATER, LOW_WATER};
use super::exchange::{Part, ResponseHead, SharedExchange};
use super::reply::Reply;
use super::ws::{Mail, Mailbox, Message};
use crate::h1::encode;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

/// Where the application's side of the handshake stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not answered yet.
    Opening,
    /// Denied with an HTTP response whose body is still coming.
    Denying,
    Accepted,
    /// The application closed (or denied, completely): nothing more may be sent.
    Closed,
}

/// Futures waiting on the WebSocket.
#[derive(Default)]
pub(super) struct Waiters {
    receive: Option<Py<PyAny>>,
    drain: Vec<Py<PyAny>>,
}

#[pyclass(module = "vw._core", unsendable)]
pub struct WsChannel {
    ex: SharedExchange,
    mailbox: Arc<Mailbox>,
    waiters: Rc<RefCell<Waiters>>,
    id: (i32, u64),
    waker: Waker,
    create_future: Py<PyAny>,
    done: Py<Ready>,
    /// The subprotocols the client offered.
    offered: Vec<String>,
    connect_told: bool,
    phase: Phase,
    /// A denial's status and fields, until its first body message.
    denial: Option<(u16, Vec<(Vec<u8>, Vec<u8>)>)>,
}

fn message<'py>(py: Python<'py>, m: Message) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "type"), intern!(py, "websocket.receive"))?;
    match m {
        Message::Text(s) => d.set_item(intern!(py, "text"), PyString::new(py, &s))?,
        m => d.set_item(intern!(py, "bytes"), PyBytes::new(py, m.bytes()))?,
    }
    Ok(d)
}

fn disconnect<'py>(py: Python<'py>, code: u16, reason: &str) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "type"), intern!(py, "websocket.disconnect"))?;
    d.set_item(intern!(py, "code"), code)?;
    d.set_item(intern!(py, "reason"), reason)?;
    Ok(d)
}

/// What the next `receive()` gives now, if anything; and whether the connection must be told
/// that the application made room (it had stopped reading).
fn next_message<'py>(py: Python<'py>, ex: &SharedExchange, mailbox: &Mailbox) -> PyResult<(Option<Bound<'py, PyDict>>, bool)> {
    match mailbox.take() {
        (Mail::Message(m), room) => Ok((Some(message(py, m)?), room)),
        (Mail::Closed(code, reason), _) => Ok((Some(disconnect(py, code, &reason)?), false)),
        (Mail::Empty, _) if ex.borrow().gone => Ok((Some(disconnect(py, 1006, "")?), false)),
        (Mail::Empty, _) => Ok((None, false)),
    }
}

/// After the connection moved messages or output: resolve the futures that can be.
pub(super) fn settle(py: Python<'_>, ex: &SharedExchange, mailbox: &Mailbox, waiters: &RefCell<Waiters>, waker: &Waker, id: (i32, u64)) {
    let mut w = waiters.borrow_mut();
    if w.receive.is_some() {
        if let Ok((Some(msg), room)) = next_message(py, ex, mailbox) {
            if let Some(fut) = w.receive.take() {
                set_result(py, &fut, msg.into_any());
            }
            if room {
                waker.kick(py, id);
            }
        }
    }
    let (gone, backlog) = {
        let e = ex.borrow();
        (e.gone, e.backlog())
    };
    if gone || backlog <= LOW_WATER || mailbox.is_closed() {
        for fut in w.drain.drain(..) {
            set_result(py, &fut, py.None().into_bound(py));
        }
    }
}

impl WsChannel {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(ex: SharedExchange, mailbox: Arc<Mailbox>, id: (i32, u64), waker: Waker, create_future: Py<PyAny>, done: Py<Ready>, offered: Vec<String>) -> Self {
        let waiters: Rc<RefCell<Waiters>> = Rc::default();
        {
            // A weak reference: the exchange must not keep itself alive through its own hook.
            let (ex2, mb, w2, wk) = (Rc::downgrade(&ex), mailbox.clone(), waiters.clone(), waker.clone());
            ex.borrow_mut().on_progress = Some(Box::new(move || {
                if let Some(ex) = ex2.upgrade() {
                    Python::attach(|py| settle(py, &ex, &mb, &w2, &wk, id))
                }
            }));
        }
        WsChannel { ex, mailbox, waiters, id, waker, create_future, done, offered, connect_told: false, phase: Phase::Opening, denial: None }
    }

    pub(super) fn finished(&self) -> bool {
        self.ex.borrow().finished
    }

    fn emit(&mut self, py: Python<'_>, part: Part) {
        self.ex.borrow_mut().push(part);
        self.waker.kick(py, self.id);
    }

    fn finish(&mut self, py: Python<'_>) {
        self.ex.borrow_mut().finished = true;
        self.waker.kick(py, self.id);
    }

    /// The task ended: close what it left open.
    pub(super) fn ended(&mut self, py: Python<'_>, error: Option<PyErr>) {
        if self.finished() {
            return;
        }
        if let Some(e) = &error {
            if !(self.ex.borrow().gone || self.mailbox.is_closed()) || self.phase != Phase::Accepted {
                eprintln!("vw: the ASGI WebSocket application raised an exception");
                e.print(py);
            }
        }
        match self.phase {
            Phase::Opening if error.is_some() => {
                for part in Reply::new(500).parts() {
                    self.emit(py, part);
                }
            }
            Phase::Opening => self.emit(py, Part::Close(1000, String::new())), // denied: 403
            Phase::Accepted => self.emit(py, Part::Close(if error.is_some() { 1011 } else { 1000 }, String::new())),
            Phase::Denying => self.ex.borrow_mut().close = true, // a denial cut short
            Phase::Closed => {}
        }
        self.phase = Phase::Closed;
        self.finish(py);
    }

    fn gone(&self) -> bool {
        self.ex.borrow().gone || self.mailbox.is_closed()
    }

    fn accept(&mut self, py: Python<'_>, m: &Bound<'_, PyAny>) -> PyResult<()> {
        let headers = match field(m, intern!(py, "headers"))? {
            Some(h) => headers_from(&h)?,
            None => Vec::new(),
        };
        let subprotocol = field(m, intern!(py, "subprotocol"))?.filter(|p| !p.is_none()).map(|p| p.extract()).transpose()?;
        let head = ResponseHead::websocket_accept(&self.offered, subprotocol, headers).map_err(PyValueError::new_err)?;
        self.phase = Phase::Accepted;
        self.emit(py, head);
        Ok(())
    }
}

#[pymethods]
impl WsChannel {
    fn receive<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if !self.connect_told {
            self.connect_told = true;
            let d = PyDict::new(py);
            d.set_item(intern!(py, "type"), intern!(py, "websocket.connect"))?;
            return Ok(Bound::new(py, Ready { value: d.into_any().unbind() })?.into_any());
        }
        let (msg, room) = next_message(py, &self.ex, &self.mailbox)?;
        if room {
            self.waker.kick(py, self.id);
        }
        if let Some(msg) = msg {
            return Ok(Bound::new(py, Ready { value: msg.into_any().unbind() })?.into_any());
        }
        if self.waiters.borrow().receive.is_some() {
            return Err(PyRuntimeError::new_err("receive() is already awaited by another task"));
        }
        let fut = self.create_future.bind(py).call0()?;
        self.waiters.borrow_mut().receive = Some(fut.clone().unbind());
        Ok(fut)
    }

    fn send<'py>(&mut self, py: Python<'py>, message: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let kind = field(message, intern!(py, "type"))?.ok_or_else(|| PyValueError::new_err("message without a type"))?;
        let kind = kind.cast::<PyString>().map_err(|_| PyTypeError::new_err("message type must be str"))?.to_str()?.to_owned();
        match (kind.as_str(), self.phase) {
            (_, Phase::Closed) => return Err(PyRuntimeError::new_err(format!("{kind} after the WebSocket was closed or denied"))),
            (_, Phase::Accepted) if self.gone() => return Err(PyOSError::new_err("the WebSocket client has gone")),
            ("websocket.accept", Phase::Opening) => self.accept(py, message)?,
            ("websocket.send", Phase::Accepted) => {
                let text = field(message, intern!(py, "text"))?.filter(|t| !t.is_none());
                let bytes = field(message, intern!(py, "bytes"))?.filter(|b| !b.is_none());
                let m = match (text, bytes) {
                    (Some(t), None) => Message::Text(t.cast::<PyString>().map_err(|_| PyTypeError::new_err("websocket.send: text must be str"))?.to_str()?.to_owned()),
                    (None, Some(b)) => Message::from_bytes(b.cast::<PyBytes>().map_err(|_| PyTypeError::new_err("websocket.send: bytes must be bytes"))?),
                    _ => return Err(PyValueError::new_err("websocket.send needs exactly one of text and bytes")),
                };
                self.emit(py, Part::Message(m));
            }
            ("websocket.close", Phase::Opening | Phase::Accepted) => {
                let code: u16 = match field(message, intern!(py, "code"))?.filter(|c| !c.is_none()) {
                    Some(c) => c.extract()?,
                    None => 1000,
                };
                let reason: String = match field(message, intern!(py, "reason"))?.filter(|r| !r.is_none()) {
                    Some(r) => r.extract()?,
                    None => String::new(),
                };
                if self.phase == Phase::Accepted && !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                    return Err(PyValueError::new_err(format!("websocket.close: {code} is not a close code an endpoint may send")));
                }
                self.phase = Phase::Closed;
                self.emit(py, Part::Close(code, reason));
            }
            ("websocket.http.response.start", Phase::Opening) => {
                let status: u16 = field(message, intern!(py, "status"))?.ok_or_else(|| PyValueError::new_err("websocket.http.response.start without a status"))?.extract()?;
                if !(100..=599).contains(&status) || status == 101 {
                    return Err(PyValueError::new_err(format!("invalid status {status} for a denial")));
                }
                let headers = match field(message, intern!(py, "headers"))? {
                    Some(h) => headers_from(&h)?,
                    None => Vec::new(),
                };
                self.denial = Some((status, headers));
                self.phase = Phase::Denying;
            }
            ("websocket.http.response.body", Phase::Denying) => {
                let body = match field(message, intern!(py, "body"))? {
                    Some(b) => b.cast::<PyBytes>().map_err(|_| PyTypeError::new_err("body must be bytes"))?.as_bytes().to_vec(),
                    None => Vec::new(),
                };
                let more = field(message, intern!(py, "more_body"))?.map(|m| m.is_truthy()).transpose()?.unwrap_or(false);
                if let Some((status, headers)) = self.denial.take() {
                    let length = if more { None } else { Some(body.len() as u64) };
                    let fields = headers.into_iter().filter(|(n, _)| !n.eq_ignore_ascii_case(b"content-length")).map(|(n, v)| (Cow::Owned(n), Cow::Owned(v))).collect();
                    self.emit(py, Part::Head(ResponseHead { status, status_line: encode::status_line(status), fields, length }));
                }
                if !body.is_empty() {
                    self.emit(py, Part::Body(body));
                }
                if !more {
                    self.emit(py, Part::End { trailers: Vec::new() });
                    self.phase = Phase::Closed;
                    self.finish(py);
                }
            }
            (other, phase) => return Err(PyRuntimeError::new_err(format!("unexpected ASGI message {other:?} on a WebSocket ({phase:?})"))),
        }
        if self.ex.borrow().backlog() > HIGH_WATER && !self.gone() {
            // Backpressure: wait until the client has read enough of what is queued.
            let fut = self.create_future.bind(py).call0()?;
            self.waiters.borrow_mut().drain.push(fut.clone().unbind());
            return Ok(fut);
        }
        Ok(self.done.bind(py).clone().into_any())
    }
}
