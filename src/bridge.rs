//! The bridge to Python applications: WSGI (PEP 3333) and vw's own handler API. Both run inline
//! in the worker loop, on the thread that owns the connection: one Python call per request, with
//! the request turned into Python objects and the response assembled here, in Rust.

use crate::app::{App, AppCall, AppRequest, ReqBody};
use crate::response::{reason, Clock, OutQueue, Seg};
use crate::statics::normalize_percent;
use pyo3::exceptions::{PyAssertionError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::intern;
use std::borrow::Cow;
use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;

/// A response as the application gave it, before it is framed.
struct Reply {
    status: u16,
    status_line: Cow<'static, [u8]>,
    headers: Vec<(Cow<'static, [u8]>, Cow<'static, [u8]>)>,
    body: Vec<u8>,
    /// A file to send after `body` (wsgi.file_wrapper): descriptor, offset, length.
    file: Option<(OwnedFd, u64, u64)>,
}

/// Why an application's response cannot go on the wire.
fn bad(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

fn is_token(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(|&c| crate::body::is_tchar(c))
}

/// A field value may hold visible characters, spaces, tabs and obs-text: never CR, LF, NUL or
/// other control bytes, so nothing an application sets can split or add a header.
fn is_field_value(b: &[u8]) -> bool {
    b.iter().all(|&c| c == b'\t' || (c >= 0x20 && c != 0x7f))
}

impl Reply {
    fn new(status: u16) -> Self {
        Reply { status, status_line: status_text(status), headers: Vec::new(), body: Vec::new(), file: None }
    }

    /// Frame the response: status line, the application's headers (checked), Server and Date
    /// unless given, Content-Length from the real body, the Connection line.
    fn write(self, clock: &Clock, conn: Option<&[u8]>, head_only: bool, out: &mut OutQueue) {
        let no_body = self.status < 200 || self.status == 204 || self.status == 304;
        let body_len = self.body.len() as u64 + self.file.as_ref().map_or(0, |f| f.2);
        let t = out.owned_tail();
        t.extend_from_slice(b"HTTP/1.1 ");
        t.extend_from_slice(&self.status_line);
        t.extend_from_slice(b"\r\n");
        let given_length = crate::response::app_headers(t, &self.headers, &clock.date);
        if !no_body {
            t.extend_from_slice(b"Content-Length: ");
            match given_length {
                // HEAD: the application may say how long the GET body would be.
                Some(v) if head_only && body_len == 0 => match std::str::from_utf8(v).ok().and_then(|v| v.trim().parse::<u64>().ok()) {
                    Some(n) => t.extend_from_slice(n.to_string().as_bytes()),
                    None => t.push(b'0'),
                },
                _ => t.extend_from_slice(body_len.to_string().as_bytes()),
            }
            t.extend_from_slice(b"\r\n");
        }
        if let Some(line) = conn {
            t.extend_from_slice(line);
        }
        t.extend_from_slice(b"\r\n");
        if head_only || no_body {
            return;
        }
        t.extend_from_slice(&self.body);
        if let Some((fd, off, len)) = self.file {
            if len > 0 {
                out.push(Seg::File { fd: Rc::new(fd), off, len });
            }
        }
    }
}

fn status_text(status: u16) -> Cow<'static, [u8]> {
    match status {
        200 => Cow::Borrowed(b"200 OK"),
        _ => Cow::Owned(format!("{} {}", status, reason(status)).into_bytes()),
    }
}

const CONTENT_TYPE: Cow<'static, [u8]> = Cow::Borrowed(b"Content-Type");
const TEXT_PLAIN: Cow<'static, [u8]> = Cow::Borrowed(b"text/plain; charset=utf-8");

/// Append a 500 after logging the exception with its traceback.
fn internal_error(py: Python<'_>, err: PyErr, what: &str, clock: &Clock, conn: Option<&[u8]>, head_only: bool, out: &mut OutQueue) {
    eprintln!("vw: {what} raised an exception; answering 500");
    err.print(py);
    let mut r = Reply::new(500);
    r.headers.push((CONTENT_TYPE, TEXT_PLAIN));
    r.body = b"Internal Server Error\n".to_vec();
    r.write(clock, conn, head_only, out);
}

/// PATH_INFO and friends: the path percent-decoded (bytes as latin-1, per PEP 3333).
fn split_target(target: &[u8]) -> (&[u8], &[u8]) {
    let path = crate::statics::request_path(target);
    let query = match target.iter().position(|&b| b == b'?') {
        Some(i) => {
            let q = &target[i + 1..];
            &q[..q.iter().position(|&b| b == b'#').unwrap_or(q.len())]
        }
        None => b"",
    };
    (path, query)
}

fn latin1<'py>(py: Python<'py>, b: &[u8]) -> Bound<'py, PyString> {
    if b.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        PyString::new(py, unsafe { std::str::from_utf8_unchecked(b) })
    } else {
        let s: String = b.iter().map(|&c| c as char).collect();
        PyString::new(py, &s)
    }
}

// ---------------------------------------------------------------------------------------------
// WSGI

/// `start_response` and `write` for one request.
#[pyclass(module = "vw._core")]
pub struct StartResponse {
    status: Option<(u16, Vec<u8>)>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    written: Vec<u8>,
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
        // Nothing is sent before the application returns, so a later call with exc_info may
        // always replace the status and headers (PEP 3333).
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

    fn write(&mut self, data: &Bound<'_, PyBytes>) -> PyResult<()> {
        if self.status.is_none() {
            return Err(PyAssertionError::new_err("write() before start_response()"));
        }
        self.written.extend_from_slice(data.as_bytes());
        Ok(())
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
    keys: std::cell::RefCell<HashMap<Vec<u8>, Py<PyString>>>,
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
            if req.minor == 1 { intern!(py, "HTTP/1.1") } else { intern!(py, "HTTP/1.0") },
        )?;
        if let Some(peer) = req.peer {
            env.set_item(intern!(py, "REMOTE_ADDR"), peer.ip().to_string())?;
            env.set_item(intern!(py, "REMOTE_PORT"), peer.port().to_string())?;
        }
        let mut keys = self.keys.borrow_mut();
        for (name, value) in req.headers() {
            if name.contains(&b'_') {
                continue; // X_Forwarded_For would alias X-Forwarded-For in the environ: drop it
            }
            if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"transfer-encoding") {
                continue; // set below from the body actually read
            }
            // The environ key for a field name as sent, made once (interned) and then reused.
            let key = match keys.get(name) {
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
                    if keys.len() < 512 {
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
            ReqBody::File(f, n) => {
                env.set_item(intern!(py, "CONTENT_LENGTH"), n.to_string())?;
                use std::os::fd::IntoRawFd;
                self.open.bind(py).call1((f.into_raw_fd(), "rb"))?
            }
        };
        env.set_item(intern!(py, "wsgi.input"), input)?;
        Ok(env)
    }

    fn run(&self, py: Python<'_>, req: &AppRequest, body: ReqBody) -> PyResult<Reply> {
        let env = self.environ(py, req, body)?;
        let sr = Bound::new(py, StartResponse { status: None, headers: Vec::new(), written: Vec::new() })?;
        let result = self.app.bind(py).call1((env, &sr))?;
        let collected = collect_body(py, &result, &sr);
        // close() is called whatever happened while iterating (PEP 3333).
        let plain = result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>();
        let closed = if !plain && result.hasattr(intern!(py, "close"))? {
            result.call_method0(intern!(py, "close")).map(|_| ())
        } else {
            Ok(())
        };
        let (body, file) = collected?;
        closed?;
        let mut sr = sr.borrow_mut();
        let Some((status, line)) = sr.status.take() else {
            return Err(PyAssertionError::new_err("the application returned without calling start_response()"));
        };
        let mut all = std::mem::take(&mut sr.written);
        all.extend_from_slice(&body);
        let headers = std::mem::take(&mut sr.headers).into_iter().map(|(k, v)| (Cow::Owned(k), Cow::Owned(v))).collect();
        Ok(Reply { status, status_line: Cow::Owned(line), headers, body: all, file })
    }
}

/// Iterate a WSGI response. A FileWrapper over a real file becomes a sendfile segment.
fn collect_body(py: Python<'_>, result: &Bound<'_, PyAny>, _sr: &Bound<'_, StartResponse>) -> PyResult<(Vec<u8>, Option<(OwnedFd, u64, u64)>)> {
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

impl App for Wsgi {
    fn call(&mut self, req: &AppRequest, body: ReqBody, conn: Option<&'static [u8]>, head_only: bool, clock: &Clock, out: &mut OutQueue) -> AppCall {
        Python::attach(|py| match self.run(py, req, body) {
            Ok(reply) => reply.write(clock, conn, head_only, out),
            Err(e) => internal_error(py, e, "the WSGI application", clock, conn, head_only, out),
        });
        AppCall::Done
    }
}

// ---------------------------------------------------------------------------------------------
// vw's own handler API

/// The request a handler receives. Fields are made on first use.
#[pyclass(module = "vw._core")]
pub struct Request {
    head: Vec<u8>,
    method_len: usize,
    target: std::ops::Range<usize>,
    body: Option<Py<PyBytes>>,
    params: Vec<(Py<PyString>, Vec<u8>)>,
    params_dict: Option<Py<PyDict>>,
    headers: Option<Py<PyDict>>,
}

#[pymethods]
impl Request {
    /// Path parameters captured by `{name}` segments.
    #[getter]
    fn params<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        if let Some(d) = &self.params_dict {
            return Ok(d.bind(py).clone());
        }
        let d = PyDict::new(py);
        for (k, v) in &self.params {
            d.set_item(k.bind(py), PyString::new(py, &String::from_utf8_lossy(v)))?;
        }
        self.params_dict = Some(d.clone().unbind());
        Ok(d)
    }

    #[getter]
    fn method<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        PyString::intern(py, std::str::from_utf8(&self.head[..self.method_len]).unwrap_or(""))
    }

    /// The path, percent-decoded.
    #[getter]
    fn path<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        let (p, _) = split_target(&self.head[self.target.clone()]);
        let p = normalize_percent(p).unwrap_or_else(|| p.to_vec());
        PyString::new(py, &String::from_utf8_lossy(&p))
    }

    /// The query string, as sent.
    #[getter]
    fn query<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        let (_, q) = split_target(&self.head[self.target.clone()]);
        latin1(py, q)
    }

    /// Request fields, names in lower case; repeated fields joined with ", ".
    #[getter]
    fn headers<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        if let Some(h) = &self.headers {
            return Ok(h.bind(py).clone());
        }
        let d = PyDict::new(py);
        let areq = AppRequest { head: &self.head, method: b"", target: b"", minor: 1, peer: None, local_port: 0, conn_id: (0, 0) };
        for (name, value) in areq.headers() {
            let key = PyString::new(py, &String::from_utf8_lossy(name).to_ascii_lowercase());
            let value = latin1(py, value);
            match d.get_item(&key)? {
                Some(prev) => {
                    let joined = format!("{}, {}", prev.extract::<String>()?, value.to_str()?);
                    d.set_item(key, joined)?
                }
                None => d.set_item(key, value)?,
            }
        }
        self.headers = Some(d.clone().unbind());
        Ok(d)
    }

    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        match &self.body {
            Some(b) => b.bind(py).clone(),
            None => PyBytes::new(py, b""),
        }
    }

    /// The body parsed as JSON.
    fn json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("json")?.call_method1("loads", (self.body(py),))
    }
}

/// What a handler may return besides bytes, str, dict and list.
#[pyclass(module = "vw._core", name = "Response")]
pub struct PyResponse {
    body: Py<PyAny>,
    #[pyo3(get)]
    status: u16,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    content_type: Option<Vec<u8>>,
}

#[pymethods]
impl PyResponse {
    #[new]
    #[pyo3(signature = (body=None, status=200, headers=None, content_type=None))]
    fn new(py: Python<'_>, body: Option<Py<PyAny>>, status: u16, headers: Option<&Bound<'_, PyAny>>, content_type: Option<&str>) -> PyResult<Self> {
        if !(100..=999).contains(&status) {
            return Err(bad(format!("invalid status {status}")));
        }
        let mut list = Vec::new();
        if let Some(h) = headers {
            let items = if let Ok(d) = h.cast::<PyDict>() { d.items().into_any() } else { h.clone() };
            for item in items.try_iter()? {
                let (k, v): (String, String) = item?.extract()?;
                if !is_token(k.as_bytes()) || !is_field_value(v.as_bytes()) {
                    return Err(bad(format!("invalid header {k:?}: names are tokens, values hold no CR, LF or NUL")));
                }
                list.push((k.into_bytes(), v.into_bytes()));
            }
        }
        if let Some(ct) = content_type {
            if !is_field_value(ct.as_bytes()) {
                return Err(bad("invalid content_type"));
            }
        }
        Ok(PyResponse { body: body.unwrap_or_else(|| py.None()), status, headers: list, content_type: content_type.map(|c| c.as_bytes().to_vec()) })
    }
}

enum Route {
    Exact,
    Pattern(Vec<Option<Vec<u8>>>, Vec<Py<PyString>>),
}

struct Handler {
    method: Vec<u8>,
    route: Route,
    path: Vec<u8>,
    func: Py<PyAny>,
    is_async: bool,
}

pub struct Native {
    handlers: Vec<Handler>,
    /// Routes without parameters: path → [(method, handler index)].
    exact: HashMap<Vec<u8>, Vec<(Vec<u8>, usize)>, crate::statics::PathHash>,
    run_async: Option<Py<PyAny>>,
    json_dumps: Py<PyAny>,
}

impl Native {
    /// `routes`: (method, path pattern with `{name}` segments, handler, is coroutine function).
    pub fn new(py: Python<'_>, routes: Vec<(String, String, Py<PyAny>, bool)>, run_async: Option<Py<PyAny>>) -> PyResult<Self> {
        let mut handlers = Vec::new();
        let mut exact = HashMap::with_hasher(crate::statics::PathHash::new());
        for (method, path, func, is_async) in routes {
            if !path.starts_with('/') {
                return Err(bad(format!("route {path:?} must start with /")));
            }
            let route = if path.contains('{') {
                let mut segs = Vec::new();
                let mut names = Vec::new();
                for seg in path[1..].split('/') {
                    if seg.starts_with('{') && seg.ends_with('}') && seg.len() > 2 {
                        segs.push(None);
                        names.push(PyString::intern(py, &seg[1..seg.len() - 1]).unbind());
                    } else {
                        segs.push(Some(seg.as_bytes().to_vec()));
                    }
                }
                Route::Pattern(segs, names)
            } else {
                exact.entry(path.as_bytes().to_vec()).or_insert_with(Vec::new).push((method.as_bytes().to_vec(), handlers.len()));
                Route::Exact
            };
            handlers.push(Handler { method: method.into_bytes(), route, path: path.into_bytes(), func, is_async });
        }
        let json_dumps = py.import("json")?.getattr("dumps")?.unbind();
        Ok(Native { handlers, exact, run_async, json_dumps })
    }

    /// The handler for (method, decoded path) and its path parameters; else the allowed methods.
    fn find<'a>(&'a self, method: &[u8], path: &[u8]) -> Result<(usize, Vec<(usize, Vec<u8>)>), Vec<&'a [u8]>> {
        let lookup = |m: &[u8]| -> Option<(usize, Vec<(usize, Vec<u8>)>)> {
            if let Some(list) = self.exact.get(path) {
                if let Some((_, i)) = list.iter().find(|(meth, _)| meth == m) {
                    return Some((*i, Vec::new()));
                }
            }
            for (i, h) in self.handlers.iter().enumerate() {
                if h.method != m {
                    continue;
                }
                if let Some(params) = match_pattern(&h.route, path) {
                    return Some((i, params));
                }
            }
            None
        };
        if let Some(found) = lookup(method) {
            return Ok(found);
        }
        if method == b"HEAD" {
            if let Some(found) = lookup(b"GET") {
                return Ok(found);
            }
        }
        let mut allow: Vec<&[u8]> = self
            .handlers
            .iter()
            .filter(|h| match &h.route {
                Route::Exact => h.path == path,
                r => match_pattern(r, path).is_some(),
            })
            .map(|h| &h.method[..])
            .collect();
        allow.sort();
        allow.dedup();
        Err(allow)
    }

    fn run(&self, py: Python<'_>, req: &AppRequest, body: ReqBody, i: usize, params: Vec<(usize, Vec<u8>)>) -> PyResult<Reply> {
        let h = &self.handlers[i];
        let mut named = Vec::new();
        if let Route::Pattern(_, names) = &h.route {
            for (n, (_, v)) in params.into_iter().enumerate() {
                named.push((names[n].clone_ref(py), v));
            }
        }
        let body = match body {
            ReqBody::Empty => None,
            ReqBody::Mem(v) => Some(PyBytes::new(py, &v).unbind()),
            ReqBody::File(mut f, n) => {
                use std::io::Read;
                let mut v = Vec::with_capacity(n as usize);
                f.read_to_end(&mut v).map_err(|e| bad(e.to_string()))?;
                Some(PyBytes::new(py, &v).unbind())
            }
        };
        let target_start = req.target.as_ptr() as usize - req.head.as_ptr() as usize;
        let request = Request {
            head: req.head.to_vec(),
            method_len: req.method.len(),
            target: target_start..target_start + req.target.len(),
            body,
            params: named,
            params_dict: None,
            headers: None,
        };
        let mut result = h.func.bind(py).call1((request,))?;
        if h.is_async {
            let runner = self.run_async.as_ref().ok_or_else(|| bad("no event loop for async handlers"))?;
            result = runner.bind(py).call1((result,))?;
        }
        self.convert(py, &result)
    }

    /// bytes, str, dict/list (JSON), None (204) or a Response.
    fn convert(&self, py: Python<'_>, result: &Bound<'_, PyAny>) -> PyResult<Reply> {
        let mut reply = Reply::new(200);
        let (body, ctype): (Vec<u8>, &'static [u8]) = if let Ok(b) = result.cast::<PyBytes>() {
            (b.as_bytes().to_vec(), b"application/octet-stream")
        } else if let Ok(s) = result.cast::<PyString>() {
            (s.to_str()?.as_bytes().to_vec(), b"text/plain; charset=utf-8")
        } else if result.is_none() {
            return Ok(Reply::new(204));
        } else if let Ok(r) = result.cast::<PyResponse>() {
            let r = r.borrow();
            let mut inner = self.convert(py, r.body.bind(py))?;
            inner.status = r.status;
            inner.status_line = status_text(r.status);
            if let Some(ct) = &r.content_type {
                inner.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(b"content-type"));
                inner.headers.push((CONTENT_TYPE, Cow::Owned(ct.clone())));
            }
            for (k, v) in &r.headers {
                if k.eq_ignore_ascii_case(b"content-type") {
                    inner.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(b"content-type"));
                }
                inner.headers.push((Cow::Owned(k.clone()), Cow::Owned(v.clone())));
            }
            if r.body.bind(py).is_none() {
                inner.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(b"content-type") || r.content_type.is_some());
            }
            return Ok(inner);
        } else if result.cast::<PyDict>().is_ok() || result.cast::<PyList>().is_ok() {
            let mut out = Vec::with_capacity(64);
            if write_json(result, &mut out).is_err() {
                out = self.json_dumps.bind(py).call1((result,))?.extract::<String>()?.into_bytes();
            }
            (out, b"application/json")
        } else {
            return Err(PyTypeError::new_err(format!(
                "a handler returns bytes, str, dict, list, None or vw.Response, not {}",
                result.get_type().name()?
            )));
        };
        reply.body = body;
        reply.headers.push((CONTENT_TYPE, Cow::Borrowed(ctype)));
        Ok(reply)
    }
}

fn match_pattern(route: &Route, path: &[u8]) -> Option<Vec<(usize, Vec<u8>)>> {
    let Route::Pattern(segs, _) = route else { return None };
    let parts: Vec<&[u8]> = path[1..].split(|&b| b == b'/').collect();
    if parts.len() != segs.len() {
        return None;
    }
    let mut params = Vec::new();
    for (i, (seg, part)) in segs.iter().zip(parts).enumerate() {
        match seg {
            Some(lit) if lit[..] == *part => {}
            Some(_) => return None,
            None if part.is_empty() => return None,
            None => params.push((i, part.to_vec())),
        }
    }
    Some(params)
}

/// JSON for the common types, written directly; anything else (or NaN) falls back to json.dumps.
fn write_json(v: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> Result<(), ()> {
    if let Ok(s) = v.cast::<PyString>() {
        json_str(s.to_str().map_err(|_| ())?, out);
    } else if v.is_none() {
        out.extend_from_slice(b"null");
    } else if let Ok(b) = v.cast::<PyBool>() {
        out.extend_from_slice(if b.is_true() { b"true" } else { b"false" });
    } else if let Ok(i) = v.cast::<PyInt>() {
        let n: i64 = i.extract().map_err(|_| ())?;
        out.extend_from_slice(n.to_string().as_bytes());
    } else if let Ok(f) = v.cast::<PyFloat>() {
        let x = f.value();
        if !x.is_finite() {
            return Err(());
        }
        out.extend_from_slice(f.repr().map_err(|_| ())?.to_str().map_err(|_| ())?.as_bytes());
    } else if let Ok(d) = v.cast::<PyDict>() {
        out.push(b'{');
        for (n, (k, val)) in d.iter().enumerate() {
            if n > 0 {
                out.extend_from_slice(b", ");
            }
            let k = k.cast::<PyString>().map_err(|_| ())?;
            json_str(k.to_str().map_err(|_| ())?, out);
            out.extend_from_slice(b": ");
            write_json(&val, out)?;
        }
        out.push(b'}');
    } else if let Ok(l) = v.cast::<PyList>() {
        out.push(b'[');
        for (n, item) in l.iter().enumerate() {
            if n > 0 {
                out.extend_from_slice(b", ");
            }
            write_json(&item, out)?;
        }
        out.push(b']');
    } else if let Ok(t) = v.cast::<PyTuple>() {
        out.push(b'[');
        for (n, item) in t.iter().enumerate() {
            if n > 0 {
                out.extend_from_slice(b", ");
            }
            write_json(&item, out)?;
        }
        out.push(b']');
    } else {
        return Err(());
    }
    Ok(())
}

fn json_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 || !c.is_ascii() => {
                // ASCII output, like json.dumps(ensure_ascii=True).
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.extend_from_slice(format!("\\u{:04x}", unit).as_bytes());
                }
            }
            c => out.push(c as u8),
        }
    }
    out.push(b'"');
}

impl App for Native {
    fn call(&mut self, req: &AppRequest, body: ReqBody, conn: Option<&'static [u8]>, head_only: bool, clock: &Clock, out: &mut OutQueue) -> AppCall {
        let (raw_path, _) = split_target(req.target);
        let path: Cow<[u8]> = if raw_path.contains(&b'%') {
            Cow::Owned(normalize_percent(raw_path).unwrap_or_else(|| raw_path.to_vec()))
        } else {
            Cow::Borrowed(raw_path)
        };
        match self.find(req.method, &path) {
            Ok((i, params)) => Python::attach(|py| match self.run(py, req, body, i, params) {
                Ok(reply) => reply.write(clock, conn, head_only, out),
                Err(e) => internal_error(py, e, "a handler", clock, conn, head_only, out),
            }),
            Err(allow) => {
                let mut r = Reply::new(if allow.is_empty() { 404 } else { 405 });
                if !allow.is_empty() {
                    r.headers.push((Cow::Borrowed(b"Allow"), Cow::Owned(allow.join(&b", "[..]))));
                }
                r.headers.push((CONTENT_TYPE, TEXT_PLAIN));
                r.body = [reason(r.status).as_bytes(), b"\n"].concat();
                r.write(clock, conn, head_only, out);
            }
        }
        AppCall::Done
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<StartResponse>()?;
    m.add_class::<FileWrapper>()?;
    m.add_class::<EmptyInput>()?;
    m.add_class::<Request>()?;
    m.add_class::<PyResponse>()?;
    Ok(())
}
