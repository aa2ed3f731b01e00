//! The kernel side: `worker` (the epoll loop, accept, timers, signals, lingering close),
//! `transport` (the one seam a connection's bytes cross: a socket now, TLS and io_uring later),
//! `out` (the output queue, written through a transport), `tee` (bodies sent from a pipe),
//! `sys` (errno and other wrappers).

pub mod out;
pub mod sys;
pub mod tee;
pub mod transport;
pub mod worker;
