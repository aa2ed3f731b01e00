//! The kernel side: `worker` (the epoll loop, accept, timers, signals, lingering close),
//! `transport` (the one seam a connection's bytes cross), `tls` (TLS over a socket, through that
//! seam), `wire` (a connection's transport: its socket, or TLS over it), `out` (the output queue,
//! written through a transport), `tee` (bodies sent from a pipe), `sys` (errno and other wrappers).

pub mod out;
pub mod ring;
pub mod sys;
pub mod tee;
pub mod tls;
pub mod transport;
pub mod wire;
pub mod worker;
