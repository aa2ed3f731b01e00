//! vw's own handler API: routes matched in Rust, a `Request` whose fields are made on first
//! use, and what a handler returns (bytes, str, JSON, None, `vw.Response`) made into a [`Reply`].

use super::reply::{bad, internal_error, is_field_value, is_token, latin1, split_target, status_text, Reply, CONTENT_TYPE, TEXT_PLAIN};
use super::exchange::{Job, Route as ThreadRoute};
use super::threads::{Finished, Responder, SyncApp};
use super::{AppRequest, ReqBody};
use crate::h1::encode::reason;
use crate::statics::normalize_percent;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use std::borrow::Cow;
use std::collections::HashMap;

/// The request a handler receives. Fields are made on first use.
#[pyclass(module = "vw._core")]
pub struct Request {
    head: Vec<u8>,
    fields: Vec<crate::h1::parse::Field>,
    method_len: usize,
    target: std::ops::Range<usize>,
    body: Option<Py<PyBytes>>,
    params: Vec<(Py<PyString>, Vec<u8>)>,
    params_dict: Option<Py<PyDict>>,
    headers: Option<Py<PyDict>>,
    /// The client (behind a trusted proxy: the one it named) and whether it used https.
    client: Option<std::net::SocketAddr>,
    https: bool,
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
        for (name, value) in (crate::h1::parse::FieldIndex { head: &self.head, fields: &self.fields }).iter() {
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

    /// The client as (host, port), or None (a Unix socket's peer); behind a proxy vw trusts,
    /// the client the proxy named (port 0 when it did not say).
    #[getter]
    fn client<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.client {
            Some(a) => Ok((a.ip().to_string(), a.port()).into_pyobject(py)?.into_any()),
            None => Ok(py.None().into_bound(py)),
        }
    }

    /// "https" or "http": the connection's, or what a proxy vw trusts said the client used.
    #[getter]
    fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
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
    /// The worker's asyncio loop, for async handlers.
    event_loop: Option<Py<PyAny>>,
    json_dumps: Py<PyAny>,
}

impl Native {
    /// `routes`: (method, path pattern with `{name}` segments, handler, is coroutine function).
    pub fn new(py: Python<'_>, routes: Vec<(String, String, Py<PyAny>, bool)>, event_loop: Option<Py<PyAny>>) -> PyResult<Self> {
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
        Ok(Native { handlers, exact, event_loop, json_dumps })
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
            .filter(|m| *m != WEBSOCKET)
            .collect();
        allow.sort();
        allow.dedup();
        Err(allow)
    }

    /// Call handler `i`: its return value (a coroutine for an async handler).
    fn call_handler<'py>(&self, py: Python<'py>, job: &mut Job) -> PyResult<Bound<'py, PyAny>> {
        let request = self.request(py, job)?;
        // An async handler gives its coroutine: it runs on the worker's event loop (the
        // pool's async lane), and `convert` makes its result a reply there.
        self.handlers[job.route.handler].func.bind(py).call1((request,))
    }

    /// The `Request` of a job (it keeps the job's head: the job is done with it).
    fn request(&self, py: Python<'_>, job: &mut Job) -> PyResult<Request> {
        let body = std::mem::replace(&mut job.body, ReqBody::Empty);
        let params = std::mem::take(&mut job.route.params);
        let h = &self.handlers[job.route.handler];
        let mut named = Vec::new();
        if let Route::Pattern(_, names) = &h.route {
            for (n, (_, v)) in params.into_iter().enumerate() {
                named.push((names[n].clone_ref(py), v));
            }
        }
        let body = match body {
            ReqBody::Empty => None,
            ReqBody::Mem(v) => Some(PyBytes::new(py, &v).unbind()),
            ReqBody::Stream(inbox) => Some(PyBytes::new(py, &inbox.read_all(py).map_err(bad)?).unbind()),
            ReqBody::File(mut f, n) => {
                use std::io::Read;
                let mut v = Vec::with_capacity(n as usize);
                f.read_to_end(&mut v).map_err(|e| bad(e.to_string()))?;
                Some(PyBytes::new(py, &v).unbind())
            }
        };
        Ok(Request {
            method_len: job.method.len(),
            target: job.target.clone(),
            head: std::mem::take(&mut job.head),
            fields: std::mem::take(&mut job.fields),
            body,
            params: named,
            params_dict: None,
            headers: None,
            client: job.peer,
            https: job.https.unwrap_or(job.tls.is_some()),
        })
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

/// A body that is an iterator (a generator), given as the return value or as a Response's
/// body: the head to send before it, and the iterator.
/// `asynchronous`: an async iterator counts too (the result of an `async def` handler, whose
/// body is taken on the event loop).
fn streamed<'py>(result: &Bound<'py, PyAny>, asynchronous: bool) -> PyResult<Option<(Reply, Bound<'py, PyAny>)>> {
    let is_iter = |v: &Bound<'py, PyAny>| {
        !v.is_instance_of::<PyBytes>()
            && !v.is_instance_of::<PyString>()
            && (v.hasattr("__next__").unwrap_or(false) || (asynchronous && v.hasattr("__anext__").unwrap_or(false)))
    };
    let octets = (CONTENT_TYPE, Cow::Borrowed(&b"application/octet-stream"[..]));
    if let Ok(r) = result.cast::<PyResponse>() {
        let r = r.borrow();
        let body = r.body.bind(result.py());
        if !is_iter(body) {
            return Ok(None);
        }
        let mut head = Reply::new(r.status);
        head.headers = r.headers.iter().map(|(k, v)| (Cow::Owned(k.clone()), Cow::Owned(v.clone()))).collect();
        if let Some(ct) = &r.content_type {
            head.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(b"content-type"));
            head.headers.push((CONTENT_TYPE, Cow::Owned(ct.clone())));
        } else if !head.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(b"content-type")) {
            head.headers.push(octets);
        }
        return Ok(Some((head, body.clone())));
    }
    if is_iter(result) {
        let mut head = Reply::new(200);
        head.headers.push(octets);
        return Ok(Some((head, result.clone())));
    }
    Ok(None)
}

/// Send an iterator's items (bytes, or str as UTF-8) as they come; `close()` it at the end.
fn stream(py: Python<'_>, head: Reply, items: &Bound<'_, PyAny>, out: &mut Responder) {
    out.start(head);
    let mut failed = None;
    for item in items.try_iter().into_iter().flatten() {
        let sent = match item {
            Ok(i) => match (i.cast::<PyBytes>(), i.cast::<PyString>()) {
                (Ok(b), _) => out.send(py, b.as_bytes()),
                (_, Ok(s)) => match s.to_str() {
                    Ok(t) => out.send(py, t.as_bytes()),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                },
                _ => {
                    failed = Some(PyTypeError::new_err("a streamed body yields bytes or str"));
                    break;
                }
            },
            Err(e) => {
                failed = Some(e);
                break;
            }
        };
        if !sent {
            break; // the client left
        }
    }
    if items.hasattr("close").unwrap_or(false) {
        let _ = items.call_method0("close");
    }
    match failed {
        Some(e) => {
            super::reply::log_exception(py, "vw: a handler's streamed body raised an exception; closing the connection", e);
            out.abort();
        }
        None => out.end(),
    }
}

impl SyncApp for Native {
    fn route(&self, req: &AppRequest) -> Result<ThreadRoute, Reply> {
        let (raw_path, _) = split_target(req.target);
        let path: Cow<[u8]> = if raw_path.contains(&b'%') {
            Cow::Owned(normalize_percent(raw_path).unwrap_or_else(|| raw_path.to_vec()))
        } else {
            Cow::Borrowed(raw_path)
        };
        match self.find(req.method, &path) {
            Ok((i, params)) => Ok(ThreadRoute { key: i, handler: i, params, is_async: self.handlers[i].is_async }),
            Err(allow) => {
                let mut r = Reply::new(if allow.is_empty() { 404 } else { 405 });
                if !allow.is_empty() {
                    r.headers.push((Cow::Borrowed(b"Allow"), Cow::Owned(allow.join(&b", "[..]))));
                }
                r.headers.push((CONTENT_TYPE, TEXT_PLAIN));
                r.body = [reason(r.status).as_bytes(), b"\n"].concat();
                Err(r)
            }
        }
    }

    fn run(&self, py: Python<'_>, job: &mut Job, out: &mut Responder) {
        let result = self.call_handler(py, job);
        if let Ok(r) = &result {
            match streamed(r, false) {
                Ok(Some((head, items))) if !job.head_only => return stream(py, head, &items, out),
                Ok(_) => {}
                Err(e) => return out.complete(internal_error(py, e, "a handler"), job.head_only),
            }
        }
        let reply = match result.and_then(|r| self.convert(py, &r)) {
            Ok(reply) => reply,
            Err(e) => internal_error(py, e, "a handler"),
        };
        out.complete(reply, job.head_only);
    }

    fn start_async<'py>(&self, py: Python<'py>, job: &mut Job) -> PyResult<Bound<'py, PyAny>> {
        self.call_handler(py, job)
    }

    fn finish_async<'py>(&self, py: Python<'py>, result: PyResult<Bound<'py, PyAny>>) -> Finished<'py> {
        if let Ok(r) = &result {
            match streamed(r, true) {
                Ok(Some((head, items))) => return Finished::Stream(head, items),
                Ok(None) => {}
                Err(e) => return Finished::Whole(internal_error(py, e, "a handler")),
            }
        }
        Finished::Whole(match result.and_then(|r| self.convert(py, &r)) {
            Ok(reply) => reply,
            Err(e) => internal_error(py, e, "a handler"),
        })
    }

    fn event_loop(&self) -> Option<&Py<PyAny>> {
        self.event_loop.as_ref()
    }

    fn ws_route(&self, req: &AppRequest) -> Option<ThreadRoute> {
        let (raw_path, _) = split_target(req.target);
        let path = normalize_percent(raw_path).unwrap_or_else(|| raw_path.to_vec());
        let (i, params) = self.find(WEBSOCKET, &path).ok()?;
        Some(ThreadRoute { key: i, handler: i, params, is_async: true })
    }

    fn start_ws<'py>(&self, py: Python<'py>, job: &mut Job, handle: Bound<'py, super::native_ws::WsHandle>) -> PyResult<Bound<'py, PyAny>> {
        let request = self.request(py, job)?;
        let func = self.handlers[job.route.handler].func.bind(py);
        py.import("vw.websocket")?.getattr("_session")?.call1((func, handle, request))
    }
}

/// The method WebSocket routes are registered under (`App.websocket`): never an HTTP one.
const WEBSOCKET: &[u8] = b"WEBSOCKET";

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Request>()?;
    m.add_class::<PyResponse>()?;
    Ok(())
}
