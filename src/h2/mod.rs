//! HTTP/2 (RFC 9113): the h2 crate driven from vw's own loop (no runtime: a no-op waker, and
//! the loop polls again after every read and write; see docs/design/h2-choice.md). `conn` is one
//! connection: bytes in, frames out to the connection's output queue; `app` is a stream whose
//! request goes to the application; `stream` what every stream does (its request's head, the
//! body it sends).

pub mod app;
pub mod conn;
pub mod stream;
