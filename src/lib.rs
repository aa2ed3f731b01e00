//! vw._core: the per-request loop of vw. Python starts, pins and supervises workers; each worker
//! calls `run_worker`, which serves until a stop signal without entering Python per request.

pub mod body;
pub mod conn;
pub mod parse;
pub mod response;
pub mod statics;
pub mod worker;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use std::collections::HashMap;

/// Serve on `listen_fd` (bound and listening) until SIGTERM/SIGINT/SIGQUIT/SIGHUP, then drain.
#[pyfunction]
#[pyo3(signature = (listen_fd, root, mime, preload, *, default_type="application/octet-stream".to_string(),
    index="index.html".to_string(), inline_max=256*1024, cache_max_bytes=64<<20, max_body=1<<30,
    shutdown_timeout=4))]
#[allow(clippy::too_many_arguments)]
fn run_worker(
    py: Python<'_>,
    listen_fd: i32,
    root: String,
    mime: HashMap<String, String>,
    preload: Vec<String>,
    default_type: String,
    index: String,
    inline_max: u64,
    cache_max_bytes: usize,
    max_body: u64,
    shutdown_timeout: i64,
) -> PyResult<()> {
    let mut statics = statics::StaticConfig::new(root.into());
    statics.mime = mime;
    statics.default_type = default_type;
    statics.index = index;
    statics.inline_max = inline_max;
    statics.cache_max_bytes = cache_max_bytes;
    let cfg = worker::WorkerConfig {
        listen_fd,
        statics,
        preload,
        limits: parse::Limits::default(),
        max_body,
        shutdown_timeout,
    };
    py.detach(|| {
        let mut w = worker::Worker::new(cfg)?;
        w.run()
    })
    .map_err(|e: std::io::Error| PyOSError::new_err(e.to_string()))
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
    Ok(())
}
