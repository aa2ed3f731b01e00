//! The applications' side of the core. At the bottom, what a connection and an application
//! exchange, independent of any interface: `request` (a request and its body, complete or
//! arriving) and `exchange` (the `App` trait, a response as parts, jobs for handler threads and
//! their backpressure). Above, what the Python interfaces share: `reply` (a response as an
//! application gave it) and `threads` (the pool that runs handlers that may wait). On top, one
//! module per interface, each driving the worker's loop its own way: `wsgi`, `native` (vw.App)
//! and `asgi` (with `asgi_ws`, its WebSocket channel, and `asgi_base`, what the two share; `native_ws` is vw.App's WebSocket handle). `ws` is the shape of a WebSocket for all of them: whole messages both ways.

pub mod asgi;
pub mod asgi_base;
pub mod asgi_ws;
pub mod exchange;
pub mod native;
pub mod native_ws;
pub mod reply;
pub mod request;
pub mod threads;
pub mod wsgi;
pub mod ws;

pub use exchange::{notify, App, AppCall, Exchange, SharedExchange, Wakeups};
pub use request::{AppRequest, BodySink, Inbox, ReqBody, Taken, INBOX_HIGH};
