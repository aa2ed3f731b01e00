//! What the service keeps about itself: per-worker counters for /metrics and the access log.

pub mod observe;
