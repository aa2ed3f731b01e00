//! vw._core: the per-request loop of vw. Python starts, pins and supervises workers; each worker
//! calls `run_worker`, which serves until a stop signal without entering Python per request.

pub mod app;
pub mod asgi;
pub mod body;
pub mod bridge;
pub mod conn;
pub mod parse;
pub mod response;
pub mod statics;
pub mod worker;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::types::PyDict;
use pyo3::prelude::*;
use std::collections::HashMap;

/// Serve on `listen_fd` (bound and listening) until SIGTERM/SIGINT/SIGQUIT/SIGHUP, then drain.
///
/// `mounts`: (URL prefix, docroot, paths to prepare) for static files. At most one of `wsgi`
/// (application, base environ, SCRIPT_NAME) and `native` (routes, coroutine runner) is given; with
/// one, the loop holds the GIL (released while it waits) and calls the application inline.
#[pyfunction]
#[pyo3(signature = (listen_fd, mounts, mime, *, wsgi=None, native=None,
    default_type="application/octet-stream".to_string(), index="index.html".to_string(),
    inline_max=256*1024, cache_max_bytes=64<<20, max_body=1<<30, shutdown_timeout=4,
    header_timeout=10, body_timeout=30, keepalive_timeout=30, write_timeout=30))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn run_worker(
    py: Python<'_>,
    listen_fd: i32,
    mounts: Vec<(String, String, Vec<String>)>,
    mime: HashMap<String, String>,
    wsgi: Option<(Py<PyAny>, Py<PyDict>, String)>,
    native: Option<(Vec<(String, String, Py<PyAny>, bool)>, Option<Py<PyAny>>)>,
    default_type: String,
    index: String,
    inline_max: u64,
    cache_max_bytes: usize,
    max_body: u64,
    shutdown_timeout: i64,
    header_timeout: i64,
    body_timeout: i64,
    keepalive_timeout: i64,
    write_timeout: i64,
) -> PyResult<()> {
    let timeouts = worker::Timeouts { header: header_timeout, body: body_timeout, keepalive: keepalive_timeout, write: write_timeout };
    let mounts = static_mounts(mounts, &mime, &default_type, &index, inline_max, cache_max_bytes);
    let app: Option<Box<dyn app::App>> = match (wsgi, native) {
        (Some((app, environ, script_name)), None) => Some(Box::new(bridge::Wsgi::new(py, app, environ, &script_name)?)),
        (None, Some((routes, run_async))) => Some(Box::new(bridge::Native::new(py, routes, run_async)?)),
        (None, None) => None,
        _ => return Err(PyValueError::new_err("give one application interface, not two")),
    };
    let config = move |app: Option<Box<dyn app::App>>, holds_gil: bool| worker::WorkerConfig {
        listen_fd,
        mounts,
        app,
        limits: parse::Limits::default(),
        max_body,
        shutdown_timeout,
        holds_gil,
        timeouts,
    };
    let result = match app {
        // An application runs on this thread: keep the GIL (the loop lets go of it to wait).
        Some(app) => worker::Worker::new(config(Some(app), true)).and_then(|mut w| w.run()),
        // Static files only: Python is never needed again.
        None => py.detach(move || worker::Worker::new(config(None, false)).and_then(|mut w| w.run())),
    };
    result.map_err(|e: std::io::Error| PyOSError::new_err(e.to_string()))
}

type Mounts = Vec<(Vec<u8>, statics::StaticConfig, Vec<String>)>;

fn static_mounts(
    mounts: Vec<(String, String, Vec<String>)>,
    mime: &HashMap<String, String>,
    default_type: &str,
    index: &str,
    inline_max: u64,
    cache_max_bytes: usize,
) -> Mounts {
    mounts
        .into_iter()
        .map(|(prefix, root, preload)| {
            let mut c = statics::StaticConfig::new(root.into());
            c.mime = mime.clone();
            c.default_type = default_type.to_string();
            c.index = index.to_string();
            c.inline_max = inline_max;
            c.cache_max_bytes = cache_max_bytes;
            (prefix.trim_end_matches('/').as_bytes().to_vec(), c, preload)
        })
        .collect()
}

/// A worker for an ASGI application, driven by the asyncio loop `event_loop` (see vw.asgi).
/// `wake` is called (through `call_soon`) when applications have output to write.
#[pyfunction]
#[pyo3(signature = (listen_fd, mounts, mime, *, app, event_loop, wake, state, server,
    inline_max=256*1024, cache_max_bytes=64<<20, max_body=1<<30, shutdown_timeout=4,
    header_timeout=10, body_timeout=30, keepalive_timeout=30, write_timeout=30))]
#[allow(clippy::too_many_arguments)]
fn asgi_worker(
    listen_fd: i32,
    mounts: Vec<(String, String, Vec<String>)>,
    mime: HashMap<String, String>,
    app: Py<PyAny>,
    event_loop: Bound<'_, PyAny>,
    wake: Py<PyAny>,
    state: Py<PyDict>,
    server: Py<PyAny>,
    inline_max: u64,
    cache_max_bytes: usize,
    max_body: u64,
    shutdown_timeout: i64,
    header_timeout: i64,
    body_timeout: i64,
    keepalive_timeout: i64,
    write_timeout: i64,
) -> PyResult<asgi::AsgiWorker> {
    let mounts = static_mounts(mounts, &mime, "application/octet-stream", "index.html", inline_max, cache_max_bytes);
    let asgi_app = asgi::Asgi::new(app, &event_loop, wake, state, server)?;
    let scheduled = asgi::scheduled_flag(&asgi_app);
    let cfg = worker::WorkerConfig {
        listen_fd,
        mounts,
        app: Some(Box::new(asgi_app)),
        limits: parse::Limits::default(),
        max_body,
        shutdown_timeout,
        holds_gil: true,
        timeouts: worker::Timeouts { header: header_timeout, body: body_timeout, keepalive: keepalive_timeout, write: write_timeout },
    };
    asgi::AsgiWorker::create(cfg, scheduled)
}

/// The CPU this thread runs on now (getcpu(2)).
#[pyfunction]
fn current_cpu() -> i32 {
    unsafe { libc::sched_getcpu() }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run_worker, m)?)?;
    m.add_function(wrap_pyfunction!(current_cpu, m)?)?;
    bridge::register(m)?;
    asgi::register(m)?;
    m.add_function(wrap_pyfunction!(asgi_worker, m)?)?;
    Ok(())
}
