//! HTTP/2 (RFC 9113): the h2 crate driven from vw's own loop (no runtime: a no-op waker, and
//! the loop polls again after every read and write; see docs/design/h2-choice.md). `conn` is one
//! connection: bytes in, frames out to the connection's output queue.

pub mod conn;
