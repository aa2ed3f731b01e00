//! vw._core: the per-request loop of vw. Python starts, pins and supervises workers; each worker
//! calls `run_worker`, which serves until a stop signal without entering Python per request.

pub mod apps;
pub mod h1;
pub mod h2;
pub mod io;
pub mod service;
pub mod statics;
pub mod tls;
pub mod ws;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::types::PyDict;
use pyo3::prelude::*;
use std::collections::HashMap;

/// The tunables of a worker, from the keyword arguments of `run_worker` / `asgi_worker`.
struct Options {
    default_type: String,
    index: String,
    inline_max: u64,
    cache_max_bytes: usize,
    max_body: u64,
    max_connections: usize,
    shutdown_timeout: i64,
    timeouts: h1::conn::Timeouts,
    limits: h1::parse::Limits,
    /// (URL path prefix, Cache-Control value) for static files.
    cache_control: Vec<(String, String)>,
    compress: bool,
    /// (body, Content-Type) of the page sent with a static 404.
    not_found_page: Option<(Vec<u8>, String)>,
    /// Address of this worker's counters slot in the region shared with the supervisor.
    stats_addr: usize,
    /// (path or "-", format)
    access_log: Option<(String, String)>,
    /// Threads per worker that run a synchronous application's handlers.
    threads: usize,
    /// WSGI and ASGI get request bodies as they arrive ("stream"), or read whole first ("spool").
    stream_bodies: bool,
    /// WebSocket messages longer than this end the connection with 1009.
    ws_max_message: u64,
    /// The listener speaks TLS (see `tls_settings`).
    tls: Option<tls::Settings>,
    /// HTTP/2 with prior knowledge on a plain listener (h2c).
    http2_cleartext: bool,
    /// Run on an io_uring (`io="uring"`), not epoll.
    uring: bool,
    /// The peers whose forwarding fields are believed (None: `--no-proxy-headers`).
    trust: Option<service::proxy::Trust>,
}

/// TLS settings from Python: ([(certificate PEM, key PEM, label)], client CA PEM or None,
/// ticket secret).
type TlsArg = (Vec<(Vec<u8>, Vec<u8>, String)>, Option<Vec<u8>>, Vec<u8>);

fn tls_settings((ids, client_ca, ticket_secret): TlsArg) -> tls::Settings {
    tls::Settings {
        identities: ids.into_iter().map(|(cert_pem, key_pem, label)| tls::Identity { cert_pem, key_pem, label }).collect(),
        client_ca,
        ticket_secret,
        alpn: vec![b"http/1.1".to_vec()],
    }
}

impl Options {
    fn from_kwargs(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut o = Options {
            default_type: "application/octet-stream".into(),
            index: "index.html".into(),
            inline_max: 256 * 1024,
            cache_max_bytes: 64 << 20,
            max_body: 1 << 30,
            max_connections: 100_000,
            shutdown_timeout: 4,
            timeouts: h1::conn::Timeouts::default(),
            limits: h1::parse::Limits::default(),
            cache_control: Vec::new(),
            compress: false,
            not_found_page: None,
            stats_addr: 0,
            access_log: None,
            threads: 64,
            stream_bodies: true,
            ws_max_message: 16 << 20,
            tls: None,
            http2_cleartext: false,
            uring: false,
            trust: None,
        };
        let Some(kwargs) = kwargs else { return Ok(o) };
        for (key, value) in kwargs.iter() {
            let key: String = key.extract()?;
            match key.as_str() {
                "default_type" => o.default_type = value.extract()?,
                "index" => o.index = value.extract()?,
                "inline_max" => o.inline_max = value.extract()?,
                "cache_max_bytes" => o.cache_max_bytes = value.extract()?,
                "max_body" => o.max_body = value.extract()?,
                "max_connections" => o.max_connections = value.extract()?,
                "shutdown_timeout" => o.shutdown_timeout = value.extract()?,
                "header_timeout" => o.timeouts.header = value.extract()?,
                "body_timeout" => o.timeouts.body = value.extract()?,
                "keepalive_timeout" => o.timeouts.keepalive = value.extract()?,
                "write_timeout" => o.timeouts.write = value.extract()?,
                "ws_ping_interval" => o.timeouts.ws.interval = value.extract()?,
                "ws_ping_timeout" => o.timeouts.ws.timeout = value.extract()?,
                "ws_max_message" => o.ws_max_message = value.extract()?,
                "tls" => o.tls = value.extract::<Option<TlsArg>>()?.map(tls_settings),
                "http2_cleartext" => o.http2_cleartext = value.extract()?,
                "default_headers" => {
                    let (server, extra): (bool, Vec<(Vec<u8>, Vec<u8>)>) = value.extract()?;
                    if !h1::encode::set_defaults(server, &extra) && (!server || !extra.is_empty()) {
                        return Err(PyValueError::new_err("the default response fields were set already in this process"));
                    }
                }
                "forwarded_allow_ips" => {
                    o.trust = match value.extract::<Option<Vec<String>>>()? {
                        None => None,
                        Some(items) => Some(service::proxy::Trust::parse(&items).map_err(PyValueError::new_err)?),
                    }
                }
                "io" => {
                    o.uring = match value.extract::<String>()?.as_str() {
                        "uring" => true,
                        "epoll" => false,
                        other => return Err(PyValueError::new_err(format!("io is uring or epoll, not {other:?}"))),
                    }
                }
                "max_request_line" => o.limits.max_request_line = value.extract()?,
                "max_head" => o.limits.max_head = value.extract()?,
                "max_headers" => o.limits.max_headers = value.extract::<usize>()?.min(h1::parse::MAX_HEADERS_LIMIT),
                "cache_control" => o.cache_control = value.extract()?,
                "compress" => o.compress = value.extract()?,
                "not_found_page" => o.not_found_page = value.extract()?,
                "stats_addr" => o.stats_addr = value.extract()?,
                "access_log" => o.access_log = value.extract()?,
                "threads" => o.threads = value.extract::<usize>()?.max(1),
                "request_body" => {
                    o.stream_bodies = match value.extract::<String>()?.as_str() {
                        "stream" => true,
                        "spool" => false,
                        other => return Err(PyValueError::new_err(format!("request_body is stream or spool, not {other:?}"))),
                    }
                }
                _ => return Err(PyValueError::new_err(format!("unknown worker option {key:?}"))),
            }
        }
        Ok(o)
    }

    fn config(mut self, listen_fd: i32, mounts: Vec<(String, String, Vec<String>)>, mime: HashMap<String, String>,
              app: Option<Box<dyn apps::App>>, holds_gil: bool) -> std::io::Result<io::worker::WorkerConfig> {
        let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, msg);
        let stats = if self.stats_addr == 0 {
            service::observe::Counters::local()
        } else {
            if self.stats_addr % 8 != 0 {
                return Err(invalid("stats_addr must be 8-byte aligned".into()));
            }
            // SAFETY: the supervisor maps the region before forking and keeps it for its life.
            unsafe { service::observe::Counters::at(self.stats_addr) }
        };
        let log = match &self.access_log {
            None => None,
            Some((path, format)) => {
                let format = service::observe::Format::parse(format).ok_or_else(|| invalid(format!("unknown access log format {format:?}")))?;
                Some(service::observe::AccessLog::open(Some(path.as_str()), format).map_err(|e| invalid(format!("access log {path}: {e}")))?)
            }
        };
        let mounts = mounts
            .into_iter()
            .map(|(prefix, root, preload)| {
                let mut c = statics::StaticConfig::new(root.into());
                c.mime = mime.clone();
                c.default_type = self.default_type.clone();
                c.index = self.index.clone();
                c.inline_max = self.inline_max;
                c.cache_max_bytes = self.cache_max_bytes;
                c.compress = self.compress;
                // over TLS and HTTP/2 bodies are read in user space: map no file (see map_large)
                c.map_large = self.tls.is_none() && !self.http2_cleartext;
                let prefix = prefix.trim_end_matches('/');
                c.cache_control = cache_control_below(&self.cache_control, prefix);
                (prefix.as_bytes().to_vec(), c, preload)
            })
            .collect();
        let tls = match &mut self.tls {
            None => None,
            Some(s) => {
                s.alpn.insert(0, b"h2".to_vec()); // preferred over http/1.1
                Some(tls::build(s).map_err(invalid)?)
            }
        };
        Ok(io::worker::WorkerConfig {
            listen_fd,
            mounts,
            app,
            limits: self.limits,
            max_body: self.max_body,
            stream_bodies: self.stream_bodies,
            ws_max_message: self.ws_max_message,
            max_connections: self.max_connections,
            shutdown_timeout: self.shutdown_timeout,
            holds_gil,
            timeouts: self.timeouts,
            not_found_page: self.not_found_page,
            stats,
            log,
            tls,
            h2c: self.http2_cleartext,
            uring: self.uring,
            trust: self.trust,
        })
    }
}

/// The Cache-Control rules (site-wide URL prefixes) as seen from inside the mount at `mount`:
/// prefixes below the mount, the most specific rule first.
fn cache_control_below(rules: &[(String, String)], mount: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<(usize, Vec<u8>, Vec<u8>)> = Vec::new();
    for (prefix, value) in rules {
        let inside = if let Some(rest) = prefix.strip_prefix(mount).filter(|r| r.is_empty() || r.starts_with('/')) {
            if rest.is_empty() { "/" } else { rest }
        } else if mount.starts_with(prefix.as_str()) {
            "/" // the rule covers the whole mount
        } else {
            continue;
        };
        out.push((prefix.len(), inside.as_bytes().to_vec(), value.as_bytes().to_vec()));
    }
    out.sort_by(|a, b| b.0.cmp(&a.0));
    out.into_iter().map(|(_, p, v)| (p, v)).collect()
}

/// Serve on `listen_fd` (bound and listening) until SIGTERM/SIGINT/SIGQUIT/SIGHUP, then drain.
///
/// `mounts`: (URL prefix, docroot, paths to prepare) for static files. At most one of `wsgi`
/// (application, base environ, SCRIPT_NAME) and `native` (routes, coroutine runner) is given; with
/// one, the loop holds the GIL (released while it waits) and calls the application inline.
/// `options`: see `Options` (timeouts, limits, cache sizes).
#[pyfunction]
#[pyo3(signature = (listen_fd, mounts, mime, *, wsgi=None, native=None, **options))]
#[allow(clippy::type_complexity)]
fn run_worker(
    py: Python<'_>,
    listen_fd: i32,
    mounts: Vec<(String, String, Vec<String>)>,
    mime: HashMap<String, String>,
    wsgi: Option<(Py<PyAny>, Py<PyDict>, String)>,
    native: Option<(Vec<(String, String, Py<PyAny>, bool)>, Option<Py<PyAny>>)>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<()> {
    let mut opts = Options::from_kwargs(options)?;
    let threads = opts.threads;
    let app: Option<std::sync::Arc<dyn apps::threads::SyncApp>> = match (wsgi, native) {
        (Some((app, environ, script_name)), None) => Some(std::sync::Arc::new(apps::wsgi::Wsgi::new(py, app, environ, &script_name)?)),
        (None, Some((routes, event_loop))) => Some(std::sync::Arc::new(apps::native::Native::new(py, routes, event_loop)?)),
        (None, None) => None,
        _ => return Err(PyValueError::new_err("give one application interface, not two")),
    };
    let result = match app {
        // The application runs on a pool of threads, the first of them this one (see
        // apps::threads); each takes the GIL only to run Python.
        Some(app) => {
            opts.threads = threads;
            py.detach(move || {
                apps::threads::serve(app, threads, move |app| opts.config(listen_fd, mounts, mime, Some(app), false).and_then(io::worker::Worker::new))
            })
        }
        // Static files only: Python is never needed again.
        None => py.detach(move || opts.config(listen_fd, mounts, mime, None, false).and_then(io::worker::Worker::new).and_then(|mut w| w.run())),
    };
    result.map_err(|e: std::io::Error| PyOSError::new_err(e.to_string()))
}

/// A worker for an ASGI application, driven by the asyncio loop `event_loop` (see vw.asgi).
/// `wake` is called (through `call_soon`) when applications have output to write.
#[pyfunction]
#[pyo3(signature = (listen_fd, mounts, mime, *, app, event_loop, wake, state, server, **options))]
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
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<apps::asgi::AsgiWorker> {
    let opts = Options::from_kwargs(options)?;
    let asgi_app = apps::asgi::Asgi::new(app, &event_loop, wake, state, server)?;
    let scheduled = apps::asgi::scheduled_flag(&asgi_app);
    let cfg = opts.config(listen_fd, mounts, mime, Some(Box::new(asgi_app)), true).map_err(|e| PyOSError::new_err(e.to_string()))?;
    apps::asgi::AsgiWorker::create(cfg, scheduled)
}

/// Check TLS settings as a worker will build them: one line (ValueError) naming what is wrong.
/// Returns whether the kernel could take over the record layer (kTLS).
#[pyfunction]
fn tls_check(settings: TlsArg) -> PyResult<bool> {
    tls::build(&tls_settings(settings)).map_err(PyValueError::new_err)?;
    Ok(tls::kernel_tls_available())
}

/// Why this machine can't run a worker on io_uring (`--io uring`), in a few words; None if it can.
#[pyfunction]
fn uring_unavailable() -> Option<String> {
    io::ring::unavailable()
}

/// The CPU this thread runs on now (getcpu(2)).
#[pyfunction]
fn current_cpu() -> i32 {
    unsafe { libc::sched_getcpu() }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run_worker, m)?)?;
    m.add_function(wrap_pyfunction!(uring_unavailable, m)?)?;
    m.add_function(wrap_pyfunction!(current_cpu, m)?)?;
    m.add_function(wrap_pyfunction!(tls_check, m)?)?;
    apps::wsgi::register(m)?;
    apps::native::register(m)?;
    apps::native_ws::register(m)?;
    apps::asgi::register(m)?;
    m.add_function(wrap_pyfunction!(asgi_worker, m)?)?;
    // The layout of a worker's counters slot, for the supervisor's /metrics.
    m.add("STATS_SLOT_WORDS", service::observe::slot::WORDS)?;
    m.add("STATS_BUCKETS_US", service::observe::BUCKETS_US.to_vec())?;
    m.add("STATS_CLASSES", service::observe::slot::CLASSES)?;
    m.add("STATS_BYTES", service::observe::slot::BYTES)?;
    m.add("STATS_OPEN", service::observe::slot::OPEN)?;
    m.add("STATS_HEARTBEAT_MS", service::observe::slot::HEARTBEAT_MS)?;
    m.add("STATS_H2", service::observe::slot::H2)?;
    m.add("STATS_TLS", service::observe::slot::TLS)?;
    m.add("STATS_ACCEPTED", service::observe::slot::ACCEPTED)?;
    m.add("STATS_LATENCY_SUM_US", service::observe::slot::LATENCY_SUM_US)?;
    m.add("STATS_LATENCY_BUCKETS", service::observe::slot::LATENCY_BUCKETS)?;
    Ok(())
}
