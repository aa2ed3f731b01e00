//! The kernel side: `worker` (the epoll loop, accept, timers, signals, lingering close), `out`
//! (the output queue and its writes: the transport seam), `tee` (bodies sent from a pipe).

pub mod out;
pub mod tee;
pub mod worker;
