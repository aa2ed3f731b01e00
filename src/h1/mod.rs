//! HTTP/1.1, sans-io: `parse` (a request head, once, with the indices others reuse), `body`
//! (Content-Length and chunked bodies), `encode` (response heads), `conn` (the connection's
//! state: bytes in, responses queued out; it never touches a socket).

pub mod body;
pub mod conn;
pub mod encode;
pub mod parse;
