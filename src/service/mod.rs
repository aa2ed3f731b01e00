//! What the service keeps about itself: per-worker counters for /metrics and the access log;
//! and who a request's client is behind a trusted proxy (`proxy`).

pub mod observe;
pub mod proxy;
