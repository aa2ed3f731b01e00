//! WSGI (PEP 3333): the environ made from the request, `start_response`, `wsgi.input` and
//! `wsgi.file_wrapper`, and the response iterable collected into a [`Reply`].

use super::reply::{bad, internal_error, is_field_value, is_token, latin1, split_target, Reply};
use super::exchange::{Job, Route};
use super::threads::{Responder, SyncApp};
use super::{AppRequest, Inbox, ReqBody, Taken};
use crate::statics::normalize_percent;
use pyo3::exceptions::{PyAssertionError, PyOSError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use std::borrow::Cow;
use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd};

/// `start_response` and `write` for one request. `write()` sends at once (PEP 3333): the head
/// goes out with the first write. Unsendable: it is used only on the thread that runs the job.
#[pyclass(module = "vw._core", unsendable)]
pub struct StartResponse {
    status: Option<(u16, Vec<u8>)>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    written: Vec<u8>,
    /// While the application runs: where write() sends (the job's responder, on this thread);
    /// None for HEAD, whose written bytes only count.
    out: Option<*mut Responder>,
    ended: bool,
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info=None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyString>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut me = slf.borrow_mut();
        let has_exc = exc_info.is_some_and(|e| !e.is_none());
        if me.status.is_some() && !has_exc {
            return Err(PyAssertionError::new_err("start_response() called a second time without exc_info"));
        }
        if has_exc && me.sent() {
            // The head is out: the error can't replace it (PEP 3333: re-raise).
            let exc = exc_info.unwrap().get_item(1)?;
            return Err(PyErr::from_value(exc));
        }
        // Until something is sent, a later call with exc_info replaces the status and headers.
        let s = status.to_str()?.as_bytes();
        if s.len() < 4 || !s[..3].iter().all(u8::is_ascii_digit) || s[3] != b' ' || !is_field_value(s) {
            return Err(bad(format!("invalid WSGI status {:?}", status.to_str()?)));
        }
        let code = (s[0] - b'0') as u16 * 100 + (s[1] - b'0') as u16 * 10 + (s[2] - b'0') as u16;
        let mut list = Vec::new();
        for item in headers.try_iter()? {
            let item = item?;
            let pair = item.cast::<PyTuple>().map_err(|_| PyTypeError::new_err("WSGI headers must be (name, value) tuples"))?;
            if pair.len() != 2 {
                return Err(PyTypeError::new_err("WSGI headers must be (name, value) tuples"));
            }
            let name = pair.get_item(0)?;
            let value = pair.get_item(1)?;
            let name = name.cast::<PyString>().map_err(|_| PyTypeError::new_err("header names must be str"))?.to_str()?.as_bytes().to_vec();
            let value = value.cast::<PyString>().map_err(|_| PyTypeError::new_err("header values must be str"))?;
            let value = str_latin1(value)?;
            if !is_token(&name) || !is_field_value(&value) {
                return Err(bad(format!("invalid header {:?}", String::from_utf8_lossy(&name))));
            }
            list.push((name, value));
        }
        if has_exc && me.status.is_some() {
            me.written.clear(); // the error response replaces what the failed one wrote
        }
        me.status = Some((code, s.to_vec()));
        me.headers = list;
        drop(me);
        slf.getattr(intern!(slf.py(), "write"))
    }

    fn write(&mut self, py: Python<'_>, data: &Bound<'_, PyBytes>) -> PyResult<()> {
        let Some((status, line)) = &self.status else {
            return Err(PyAssertionError::new_err("write() before start_response()"));
        };
        if self.ended {
            return Err(PyAssertionError::new_err("write() after the response ended"));
        }
        let Some(out) = self.out else {
            self.written.extend_from_slice(data.as_bytes());
            return Ok(());
        };
        if data.as_bytes().is_empty() {
            return Ok(());
        }
        // SAFETY: `out` is set only while `respond` runs this job on this thread (the class is
        // unsendable), and the responder lives on that call's stack; it is cleared before.
        let out = unsafe { &mut *out };
        if !out.started() {
            let headers = self.headers.iter().map(|(k, v)| (Cow::Owned(k.clone()), Cow::Owned(v.clone()))).collect();
            out.start(Reply { status: *status, status_line: Cow::Owned(line.clone()), headers, body: Vec::new(), file: None });
        }
        if !out.send(py, data.as_bytes()) {
            return Err(PyOSError::new_err("the client has gone"));
        }
        Ok(())
    }
}

impl StartResponse {
    fn sent(&self) -> bool {
        // SAFETY: as in `write`.
        self.out.is_some_and(|o| unsafe { (*o).started() })
    }
}

/// Header values are str holding latin-1 code points (PEP 3333).
fn str_latin1(s: &Bound<'_, PyString>) -> PyResult<Vec<u8>> {
    let t = s.to_str()?;
    if t.is_ascii() {
        return Ok(t.as_bytes().to_vec());
    }
    t.chars().map(|c| u8::try_from(c as u32).map_err(|_| bad("header value is not latin-1"))).collect()
}

/// `wsgi.file_wrapper`: a file the server sends with sendfile when it has a descriptor.
#[pyclass(module = "vw._core")]
pub struct FileWrapper {
    #[pyo3(get)]
    filelike: Py<PyAny>,
    blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize=8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        FileWrapper { filelike, blksize }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let data = self.filelike.bind(py).call_method1(intern!(py, "read"), (self.blksize,))?;
        if data.len()? == 0 {
            Ok(None)
        } else {
            Ok(Some(data.unbind()))
        }
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if self.filelike.bind(py).hasattr(intern!(py, "close"))? {
            self.filelike.bind(py).call_method0(intern!(py, "close"))?;
        }
        Ok(())
    }
}

pub struct Wsgi {
    app: Py<PyAny>,
    base: Py<PyDict>,
    bytes_io: Py<PyAny>,
    open: Py<PyAny>,
    script_name: Vec<u8>,
    /// Environ keys already made, by field name as sent ("Host" → HTTP_HOST), interned.
    keys: std::sync::Mutex<HashMap<Vec<u8>, Py<PyString>>>,
    /// wsgi.input for requests without a body: one immutable empty stream per worker.
    empty_input: Py<EmptyInput>,
}

/// `wsgi.input` when there is no body: reads give b"" (it has no state, so one is shared).
#[pyclass(module = "vw._core", frozen)]
pub struct EmptyInput;

#[pymethods]
impl EmptyInput {
    #[pyo3(signature = (_size=-1))]
    fn read<'py>(&self, py: Python<'py>, _size: isize) -> Bound<'py, PyBytes> {
        PyBytes::new(py, b"")
    }

    #[pyo3(signature = (_size=-1))]
    fn readline<'py>(&self, py: Python<'py>, _size: isize) -> Bound<'py, PyBytes> {
        PyBytes::new(py, b"")
    }

    #[pyo3(signature = (_hint=-1))]
    fn readlines<'py>(&self, py: Python<'py>, _hint: isize) -> Bound<'py, PyList> {
        PyList::empty(py)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self) -> Option<()> {
        None
    }

    fn close(&self) {}
}

impl Wsgi {
    pub fn new(py: Python<'_>, app: Py<PyAny>, base: Py<PyDict>, script_name: &str) -> PyResult<Self> {
        let io = py.import("io")?;
        let base_b = base.bind(py);
        base_b.set_item("wsgi.file_wrapper", py.get_type::<FileWrapper>())?;
        Ok(Wsgi {
            app,
            base,
            bytes_io: io.getattr("BytesIO")?.unbind(),
            open: io.getattr("open")?.unbind(),
            script_name: script_name.trim_end_matches('/').as_bytes().to_vec(),
            keys: Default::default(),
            empty_input: Py::new(py, EmptyInput)?,
        })
    }

    fn environ<'py>(&self, py: Python<'py>, req: &AppRequest, body: ReqBody) -> PyResult<Bound<'py, PyDict>> {
        let env = self.base.bind(py).copy()?;
        let method = std::str::from_utf8(req.method).unwrap_or("GET");
        env.set_item(intern!(py, "REQUEST_METHOD"), PyString::intern(py, method))?;
        let (raw_path, query) = split_target(req.target);
        let path = normalize_percent(raw_path).unwrap_or_else(|| raw_path.to_vec());
        let path_info = match path.strip_prefix(&self.script_name[..]) {
            Some(rest) if !self.script_name.is_empty() && (rest.is_empty() || rest[0] == b'/') => rest,
            _ => &path[..],
        };
        env.set_item(intern!(py, "PATH_INFO"), latin1(py, path_info))?;
        env.set_item(intern!(py, "QUERY_STRING"), latin1(py, query))?;
        let uri = latin1(py, req.target);
        env.set_item(intern!(py, "REQUEST_URI"), &uri)?;
        env.set_item(intern!(py, "RAW_URI"), uri)?;
        env.set_item(
            intern!(py, "SERVER_PROTOCOL"),
            if req.http2 {
                intern!(py, "HTTP/2")
            } else if req.minor == 1 {
                intern!(py, "HTTP/1.1")
            } else {
                intern!(py, "HTTP/1.0")
            },
        )?;
        if let Some(peer) = req.peer {
            env.set_item(intern!(py, "REMOTE_ADDR"), peer.ip().to_string())?;
            env.set_item(intern!(py, "REMOTE_PORT"), peer.port().to_string())?;
        }
        match req.https {
            // A trusted proxy said which scheme the client used (the base environ has the port's).
            Some(true) => {
                env.set_item(intern!(py, "wsgi.url_scheme"), intern!(py, "https"))?;
                env.set_item(intern!(py, "HTTPS"), intern!(py, "on"))?;
            }
            Some(false) => {
                env.set_item(intern!(py, "wsgi.url_scheme"), intern!(py, "http"))?;
                if env.contains(intern!(py, "HTTPS"))? {
                    env.del_item(intern!(py, "HTTPS"))?;
                }
            }
            None => {}
        }
        // Held with the GIL: never waited for (a thread that waits here holding the GIL could
        // block one that holds the map and needs the GIL back); without it keys are made anew.
        let mut keys = self.keys.try_lock().ok();
        let mut length = None;
        for (name, value) in req.headers() {
            if name.contains(&b'_') {
                continue; // X_Forwarded_For would alias X-Forwarded-For in the environ: drop it
            }
            if name.eq_ignore_ascii_case(b"content-length") {
                length = Some(value); // set below, for a body read as it arrives
                continue;
            }
            if name.eq_ignore_ascii_case(b"transfer-encoding") {
                continue;
            }
            // The environ key for a field name as sent, made once (interned) and then reused.
            let key = match keys.as_ref().and_then(|k| k.get(name)) {
                Some(k) => k.bind(py).clone(),
                None => {
                    let k: Vec<u8> = if name.eq_ignore_ascii_case(b"content-type") {
                        b"CONTENT_TYPE".to_vec()
                    } else {
                        let mut k = b"HTTP_".to_vec();
                        k.extend(name.iter().map(|&c| if c == b'-' { b'_' } else { c.to_ascii_uppercase() }));
                        k
                    };
                    let k = PyString::intern(py, std::str::from_utf8(&k).unwrap_or("HTTP_"));
                    if let Some(keys) = keys.as_mut().filter(|k| k.len() < 512) {
                        keys.insert(name.to_vec(), k.clone().unbind());
                    }
                    k
                }
            };
            match env.get_item(&key)? {
                // A repeated field (the base environ holds no HTTP_* or CONTENT_TYPE keys).
                Some(prev) => {
                    let sep = if key.to_str()? == "HTTP_COOKIE" { "; " } else { ", " };
                    let joined = format!("{}{}{}", prev.cast::<PyString>()?.to_str()?, sep, latin1(py, value).to_str()?);
                    env.set_item(key, joined)?;
                }
                None => env.set_item(key, latin1(py, value))?,
            }
        }
        drop(keys);
        let input = match body {
            ReqBody::Empty => self.empty_input.bind(py).clone().into_any(),
            ReqBody::Mem(v) => {
                env.set_item(intern!(py, "CONTENT_LENGTH"), v.len().to_string())?;
                self.bytes_io.bind(py).call1((PyBytes::new(py, &v),))?
            }
            ReqBody::Stream(inbox) => {
                // Read as it arrives: wsgi.input blocks this handler's thread until it has.
                if let Some(v) = length {
                    env.set_item(intern!(py, "CONTENT_LENGTH"), latin1(py, v))?;
                }
                Bound::new(py, Input { inbox, buf: Vec::new(), end: false })?.into_any()
            }
            ReqBody::File(f, n) => {
                env.set_item(intern!(py, "CONTENT_LENGTH"), n.to_string())?;
                use std::os::fd::IntoRawFd;
                self.open.bind(py).call1((f.into_raw_fd(), "rb"))?
            }
        };
        env.set_item(intern!(py, "wsgi.input"), input)?;
        Ok(env)
    }

    /// Call the application and send what it returns: a list, tuple or file wrapper whole
    /// (one write, Content-Length from the body), any other iterable piece by piece as it is
    /// produced (its Content-Length if given, else chunked), waiting while the client is behind.
    /// `close()` is called whatever happened, also when the client left mid-stream.
    fn respond(&self, py: Python<'_>, req: &AppRequest, body: ReqBody, head_only: bool, out: &mut Responder) -> PyResult<()> {
        let env = self.environ(py, req, body)?;
        // write() reaches the responder through this pointer while the application runs; `out`
        // itself is not used again until the guard has cleared it (on every way out).
        let ptr = out as *mut Responder as *mut Responder;
        let sr = Bound::new(py, StartResponse { status: None, headers: Vec::new(), written: Vec::new(), out: (!head_only).then_some(ptr), ended: false })?;
        let guard = Ended(&sr);
        let result = self.app.bind(py).call1((env, &sr))?;
        let plain = result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>();
        // Once write() has sent the head, whatever the iterable holds follows in pieces.
        // SAFETY: a short use of the pointer, between Python calls, on this thread.
        let started = unsafe { (*ptr).started() };
        let whole = !started && (plain || head_only || result.is_instance_of::<FileWrapper>());
        let sent = if whole { collect_body(py, &result).map(Some) } else { stream_body(py, &result, &sr, ptr).map(|()| None) };
        drop(guard);
        // close() is called whatever happened while iterating (PEP 3333).
        let closed = match result.hasattr(intern!(py, "close")) {
            Ok(true) if !plain => result.call_method0(intern!(py, "close")).map(|_| ()),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        let sent = sent?;
        closed?;
        if out.started() {
            out.end();
            return Ok(());
        }
        let (body, file) = sent.unwrap_or_default();
        let mut reply = reply_of(&sr)?;
        reply.body.extend_from_slice(&body);
        reply.file = file;
        out.complete(reply, head_only);
        Ok(())
    }
}

/// The status and headers given to start_response, with what write() was given as the body.
fn reply_of(sr: &Bound<'_, StartResponse>) -> PyResult<Reply> {
    let mut sr = sr.borrow_mut();
    let Some((status, line)) = sr.status.take() else {
        return Err(PyAssertionError::new_err("the application returned without calling start_response()"));
    };
    let body = std::mem::take(&mut sr.written);
    let headers = std::mem::take(&mut sr.headers).into_iter().map(|(k, v)| (Cow::Owned(k), Cow::Owned(v))).collect();
    Ok(Reply { status, status_line: Cow::Owned(line), headers, body, file: None })
}

/// Clears `StartResponse::out` when dropped: write() can't reach the responder afterwards,
/// however `respond` returns.
struct Ended<'a, 'py>(&'a Bound<'py, StartResponse>);

impl Drop for Ended<'_, '_> {
    fn drop(&mut self) {
        if let Ok(mut sr) = self.0.try_borrow_mut() {
            (sr.out, sr.ended) = (None, true);
        }
    }
}

/// Send an iterable's items as they come. Nothing is started for an iterable that yields no
/// bytes (the caller then sends the whole, empty or written, response). The responder is
/// reached through `ptr` for each step only: the iterable's Python code may call write(),
/// which reaches it through the same pointer.
fn stream_body(py: Python<'_>, result: &Bound<'_, PyAny>, sr: &Bound<'_, StartResponse>, ptr: *mut Responder) -> PyResult<()> {
    for item in result.try_iter()? {
        let item = item?;
        let data = chunk(&item)?;
        if data.is_empty() {
            continue;
        }
        // SAFETY: no other reference to the responder is live while this one is (the
        // application's code runs between these uses, never during them).
        let out = unsafe { &mut *ptr };
        if !out.started() {
            let mut reply = reply_of(sr)?;
            let written = std::mem::take(&mut reply.body);
            out.start(reply);
            if !written.is_empty() && !out.send(py, &written) {
                return Ok(());
            }
        }
        if !out.send(py, data) {
            return Ok(()); // the client left: stop iterating (close() follows)
        }
    }
    Ok(())
}

/// Iterate a WSGI response. A FileWrapper over a real file becomes a sendfile segment.
fn collect_body(py: Python<'_>, result: &Bound<'_, PyAny>) -> PyResult<(Vec<u8>, Option<(OwnedFd, u64, u64)>)> {
    let mut body = Vec::new();
    if let Ok(list) = result.cast::<PyList>() {
        for item in list.iter() {
            body.extend_from_slice(chunk(&item)?);
        }
        return Ok((body, None));
    }
    if let Ok(w) = result.cast::<FileWrapper>() {
        if let Some(file) = sendfile_source(py, w.borrow().filelike.bind(py))? {
            return Ok((body, Some(file)));
        }
    }
    for item in result.try_iter()? {
        body.extend_from_slice(chunk(&item?)?);
    }
    Ok((body, None))
}

fn chunk<'a>(item: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    item.cast::<PyBytes>().map(|b| b.as_bytes()).map_err(|_| PyTypeError::new_err("a WSGI application must yield bytes"))
}

/// The descriptor, position and remaining length of a regular file behind `filelike`.
fn sendfile_source(py: Python<'_>, filelike: &Bound<'_, PyAny>) -> PyResult<Option<(OwnedFd, u64, u64)>> {
    let Ok(fileno) = filelike.call_method0(intern!(py, "fileno")) else { return Ok(None) };
    let fd: i32 = fileno.extract()?;
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(None);
    }
    let pos: u64 = filelike.call_method0(intern!(py, "tell")).and_then(|p| p.extract()).unwrap_or(0);
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Ok(None);
    }
    let len = (st.st_size as u64).saturating_sub(pos);
    Ok(Some((unsafe { OwnedFd::from_raw_fd(dup) }, pos, len)))
}

/// `wsgi.input` for a body still arriving: reads wait (without the GIL) for the bytes they ask
/// for, or the end of the body; a body the client cut raises OSError.
#[pyclass(module = "vw._core")]
pub struct Input {
    inbox: std::sync::Arc<Inbox>,
    /// Taken from the inbox, not yet read.
    buf: Vec<u8>,
    end: bool,
}

impl Input {
    /// Take more of the body into `buf`, waiting for it; false at its end.
    fn fill(&mut self, py: Python<'_>) -> PyResult<bool> {
        if self.end {
            return Ok(false);
        }
        loop {
            match self.inbox.take(1 << 20) {
                Taken::Data(d) => {
                    if self.buf.is_empty() {
                        self.buf = d;
                    } else {
                        self.buf.extend_from_slice(&d);
                    }
                    return Ok(true);
                }
                Taken::End => {
                    self.end = true;
                    return Ok(false);
                }
                Taken::Broken => return Err(PyOSError::new_err("the request body is incomplete: the client ended it or broke its framing")),
                Taken::Empty => {
                    let inbox = self.inbox.clone();
                    py.detach(move || inbox.wait());
                }
            }
        }
    }

    fn split(&mut self, n: usize) -> Vec<u8> {
        if n >= self.buf.len() {
            std::mem::take(&mut self.buf)
        } else {
            let rest = self.buf.split_off(n);
            std::mem::replace(&mut self.buf, rest)
        }
    }
}

#[pymethods]
impl Input {
    #[pyo3(signature = (size=-1))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let size = size.unwrap_or(-1);
        if size < 0 {
            while self.fill(py)? {}
            return Ok(PyBytes::new(py, &std::mem::take(&mut self.buf)));
        }
        let size = size as usize;
        while self.buf.len() < size && self.fill(py)? {}
        Ok(PyBytes::new(py, &self.split(size)))
    }

    #[pyo3(signature = (size=-1))]
    fn readline<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let limit = match size.unwrap_or(-1) {
            n if n < 0 => usize::MAX,
            n => n as usize,
        };
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                return Ok(PyBytes::new(py, &self.split((i + 1).min(limit))));
            }
            if self.buf.len() >= limit || !self.fill(py)? {
                return Ok(PyBytes::new(py, &self.split(limit)));
            }
        }
    }

    #[pyo3(signature = (hint=-1))]
    fn readlines<'py>(&mut self, py: Python<'py>, hint: Option<isize>) -> PyResult<Bound<'py, PyList>> {
        let hint = hint.unwrap_or(-1);
        let lines = PyList::empty(py);
        let mut total = 0usize;
        loop {
            let line = self.readline(py, None)?;
            if line.as_bytes().is_empty() {
                return Ok(lines);
            }
            total += line.as_bytes().len();
            lines.append(line)?;
            if hint > 0 && total >= hint as usize {
                return Ok(lines);
            }
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.readline(py, None)?;
        Ok(if line.as_bytes().is_empty() { None } else { Some(line) })
    }

    fn close(&self) {}
}

impl SyncApp for Wsgi {
    fn streams_body(&self) -> bool {
        true
    }

    fn route(&self, req: &AppRequest) -> Result<Route, Reply> {
        // Requests for one path share a slow mark.
        let (path, _) = split_target(req.target);
        let mut h: usize = 0xcbf29ce484222325u64 as usize;
        for &b in path {
            h = (h ^ b as usize).wrapping_mul(0x100000001b3);
        }
        Ok(Route { key: h, handler: 0, params: Vec::new(), is_async: false })
    }

    fn run(&self, py: Python<'_>, job: &mut Job, out: &mut Responder) {
        let body = std::mem::replace(&mut job.body, ReqBody::Empty);
        if let Err(e) = self.respond(py, &job.request(), body, job.head_only, out) {
            if out.started() {
                super::reply::log_exception(py, "vw: the WSGI application raised an exception mid-response; closing the connection", e);
                out.abort();
            } else {
                out.complete(internal_error(py, e, "the WSGI application"), job.head_only);
            }
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<StartResponse>()?;
    m.add_class::<FileWrapper>()?;
    m.add_class::<EmptyInput>()?;
    m.add_class::<Input>()?;
    Ok(())
}
