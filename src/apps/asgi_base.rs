//! What the ASGI channels (HTTP in `asgi`, WebSocket in `asgi_ws`) share: the worker's waker,
//! the already-complete awaitable, reading a message's fields, checking headers, and the marks of
//! output backpressure.

use pyo3::exceptions::{PyStopIteration, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};
use std::cell::Cell;
use std::rc::Rc;
use super::Wakeups;

/// Output past this many unwritten bytes makes `send()` wait until the client has read some.
pub(crate) const HIGH_WATER: usize = 256 * 1024;
pub(crate) const LOW_WATER: usize = 64 * 1024;

/// Asks the worker, once per loop turn, to write what applications have sent.
#[derive(Clone)]
pub(crate) struct Waker {
    pub(crate) wakeups: Wakeups,
    pub(crate) scheduled: Rc<Cell<bool>>,
    pub(crate) call_soon: Rc<Py<PyAny>>,
    pub(crate) wake: Rc<Py<PyAny>>,
}

impl Waker {
    pub(crate) fn kick(&self, py: Python<'_>, id: (i32, u64)) {
        self.wakeups.list.borrow_mut().push(id);
        if !self.scheduled.replace(true) {
            if let Err(e) = self.call_soon.bind(py).call1((self.wake.bind(py),)) {
                e.print(py);
            }
        }
    }
}

/// An awaitable that is already complete: `await` gives `value` without a trip through the loop.
/// It keeps no state (the value is not consumed), so one instance for None is shared by every
/// `send()` of a worker.
#[pyclass(module = "vw._core", frozen)]
pub struct Ready {
    pub(crate) value: Py<PyAny>,
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Done at once. None is returned as an exhausted iterator (no StopIteration object made,
    /// which matters: every `await send(...)` ends here); any other value rides on StopIteration.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<()>> {
        if self.value.is_none(py) {
            return Ok(None);
        }
        Err(PyStopIteration::new_err((self.value.clone_ref(py),)))
    }

    fn send(&self, py: Python<'_>, _arg: Py<PyAny>) -> PyResult<()> {
        Err(PyStopIteration::new_err((self.value.clone_ref(py),)))
    }

    #[pyo3(signature = (exc, *_rest))]
    fn throw(&self, exc: Bound<'_, PyAny>, _rest: Bound<'_, PyTuple>) -> PyResult<()> {
        Err(PyErr::from_value(exc))
    }

    fn close(&self) {}
}

pub(crate) fn set_result(py: Python<'_>, fut: &Py<PyAny>, value: Bound<'_, PyAny>) {
    let f = fut.bind(py);
    if let Ok(false) = f.call_method0(intern!(py, "done")).and_then(|d| d.is_truthy()) {
        let _ = f.call_method1(intern!(py, "set_result"), (value,));
    }
}

/// `message[key]`, or None when absent: a dict is read without raising (a KeyError costs more
/// than the rest of a `send()`), any other mapping through `__getitem__`.
pub(crate) fn field<'py>(message: &Bound<'py, PyAny>, key: &Bound<'py, PyString>) -> PyResult<Option<Bound<'py, PyAny>>> {
    if let Ok(d) = message.cast::<PyDict>() {
        return d.get_item(key);
    }
    match message.get_item(key) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyKeyError>(message.py()) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn headers_from(v: &Bound<'_, PyAny>) -> PyResult<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    for item in v.try_iter()? {
        let item = item?;
        let name = item.get_item(0)?;
        let value = item.get_item(1)?;
        let name = name.cast::<PyBytes>().map_err(|_| PyTypeError::new_err("ASGI header names must be bytes"))?.as_bytes().to_vec();
        let value = value.cast::<PyBytes>().map_err(|_| PyTypeError::new_err("ASGI header values must be bytes"))?.as_bytes().to_vec();
        if name.is_empty() || !name.iter().all(|&c| crate::h1::body::is_tchar(c)) || !value.iter().all(|&c| c == b'\t' || (c >= 0x20 && c != 0x7f)) {
            return Err(PyValueError::new_err(format!("invalid header {:?}", String::from_utf8_lossy(&name))));
        }
        out.push((name, value));
    }
    Ok(out)
}
