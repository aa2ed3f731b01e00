//! vw.App WebSocket handlers (`@app.websocket`): the Rust half of `vw.WebSocket`
//! (`python/vw/websocket.py`). A handler runs as a task of the worker's async lane (the event
//! loop on a thread of its own, see `threads`); its [`WsHandle`] posts the accept, messages and
//! the close to the connection as parts (the eventfd of async responses wakes the worker's
//! loop) and takes the client's messages from the mailbox, waiting on a future that the
//! connection's thread resolves when mail comes. Backpressure both ways: `room()` waits while
//! 256 KiB are unwritten; a full mailbox stops the connection reading until a take makes room.

use super::exchange::{Done, Flow, Part, ResponseHead};
use super::reply::{is_field_value, is_token, Reply};
use super::ws::{Mail, Mailbox, Message};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};
use std::sync::Arc;

/// Hands a connection's output to the worker (from the lane's thread).
pub type Post = Arc<dyn Fn(Done) + Send + Sync>;

#[pyclass(module = "vw._core")]
pub struct WsHandle {
    id: (i32, u64),
    offered: Vec<String>,
    mailbox: Arc<Mailbox>,
    post: Post,
    flow: Arc<Flow>,
    event_loop: Py<PyAny>,
}

impl WsHandle {
    pub fn new(id: (i32, u64), offered: Vec<String>, mailbox: Arc<Mailbox>, post: Post, event_loop: Py<PyAny>) -> Self {
        WsHandle { id, offered, mailbox, post, flow: Arc::default(), event_loop }
    }

    fn send_parts(&self, parts: Vec<Part>, finished: bool) {
        (self.post)(Done { id: self.id, parts, finished, close: false, flow: Some(self.flow.clone()) });
    }

    /// A future of the lane's loop, and a callback (for any thread) that resolves it.
    fn future(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Box<dyn FnOnce() + Send>)> {
        let fut = self.event_loop.bind(py).call_method0("create_future")?.unbind();
        let (wake, lp) = (fut.clone_ref(py), self.event_loop.clone_ref(py));
        let resolve = py.import("vw.app")?.getattr("_resolve")?.unbind();
        let call = Box::new(move || {
            Python::attach(|py| {
                let _ = lp.bind(py).call_method1("call_soon_threadsafe", (resolve.bind(py), wake.bind(py)));
            })
        });
        Ok((fut, call))
    }

    /// The handler's task ended: `accepted`, and whether it raised. Before an accept that is
    /// a 403 (a 500 if it raised); after, a Close with 1000 (1011 if it raised), unless the
    /// handler closed already (then nothing more is sent).
    pub fn finish(&self, accepted: bool, failed: bool) {
        let parts = match (accepted, failed) {
            (false, true) => Reply::new(500).parts(),
            (false, false) => vec![Part::Close(1000, String::new())],
            (true, failed) => vec![Part::Close(if failed { 1011 } else { 1000 }, String::new())],
        };
        self.send_parts(parts, true);
    }
}

#[pymethods]
impl WsHandle {
    /// The subprotocols the client offered.
    #[getter]
    fn subprotocols(&self) -> Vec<String> {
        self.offered.clone()
    }

    /// Accept: the 101 goes out, with `subprotocol` (one the client offered) and `headers`.
    #[pyo3(signature = (subprotocol=None, headers=Vec::new()))]
    fn accept(&self, subprotocol: Option<String>, headers: Vec<(String, String)>) -> PyResult<()> {
        let headers: Vec<(Vec<u8>, Vec<u8>)> = headers.into_iter().map(|(n, v)| (n.into_bytes(), v.into_bytes())).collect();
        if let Some((n, _)) = headers.iter().find(|(n, v)| !is_token(n) || !is_field_value(v)) {
            return Err(PyValueError::new_err(format!("invalid header {:?}", String::from_utf8_lossy(n))));
        }
        let head = ResponseHead::websocket_accept(&self.offered, subprotocol, headers).map_err(PyValueError::new_err)?;
        self.send_parts(vec![head], false);
        Ok(())
    }

    /// Send a message (str: text, bytes: binary). False: the client is gone.
    fn send(&self, data: &Bound<'_, PyAny>) -> PyResult<bool> {
        let m = if let Ok(s) = data.cast::<PyString>() {
            Message::Text(s.to_str()?.to_owned())
        } else if let Ok(b) = data.cast::<PyBytes>() {
            Message::from_bytes(b)
        } else {
            return Err(PyTypeError::new_err("a WebSocket message is str or bytes"));
        };
        if !self.flow.posted(m.len()) || self.mailbox.is_closed() {
            return Ok(false);
        }
        self.send_parts(vec![Part::Message(m)], false);
        Ok(true)
    }

    /// None when there is room to send more; else a future done when the client has read
    /// enough of what waits (or has gone).
    fn room(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        if !self.flow.behind() {
            return Ok(None);
        }
        let (fut, call) = self.future(py)?;
        if self.flow.room_or_call(call) {
            return Ok(None);
        }
        Ok(Some(fut))
    }

    /// The next message now: str, bytes, None (nothing yet: see `wait`), or (code, reason)
    /// once the WebSocket has ended.
    fn take<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let (mail, room) = self.mailbox.take();
        if room {
            // The connection stopped reading for want of room: a post with no parts wakes it.
            (self.post)(Done { id: self.id, parts: Vec::new(), finished: false, close: false, flow: None });
        }
        Ok(match mail {
            Mail::Message(Message::Text(s)) => Some(PyString::new(py, &s).into_any()),
            Mail::Message(m) => Some(PyBytes::new(py, m.bytes()).into_any()),
            Mail::Empty => None,
            Mail::Closed(code, reason) => Some(PyTuple::new(py, [code.into_pyobject(py)?.into_any(), PyString::new(py, &reason).into_any()])?.into_any()),
        })
    }

    /// None when `take` has something now; else a future done when it will.
    fn wait(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let (fut, call) = self.future(py)?;
        if self.mailbox.wait_then(call) {
            Ok(Some(fut))
        } else {
            Ok(None)
        }
    }

    /// Close with `code` (1000-1003, 1007-1014, 3000-4999) and `reason`.
    #[pyo3(signature = (code=1000, reason=String::new()))]
    fn close(&self, code: u16, reason: String) -> PyResult<()> {
        if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
            return Err(PyValueError::new_err(format!("{code} is not a close code an endpoint may send")));
        }
        if reason.len() > 123 {
            return Err(PyValueError::new_err("a close reason is at most 123 bytes"));
        }
        self.send_parts(vec![Part::Close(code, reason)], false);
        Ok(())
    }

    /// The handler's task ended (see [`WsHandle::finish`]).
    #[pyo3(name = "finish")]
    fn py_finish(&self, accepted: bool, failed: bool) {
        self.finish(accepted, failed);
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<WsHandle>()
}
