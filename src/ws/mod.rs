//! WebSocket (RFC 6455), sans-io like `h1`: bytes in, frames and output bytes out, no socket.
//! `frame`: the wire format of one frame (header rules, masking, close payloads) and the UTF-8
//! check of text messages that arrive in pieces; `handshake`: the opening handshake (which
//! requests ask for a WebSocket, why one is refused, the 101's key); `conn`: the reading side as
//! a state machine (messages from frames, Ping and Close answered, every message rule). Wiring
//! it to connections, the writing side and permessage-deflate come next (issue 12; see
//! docs/design/websocket-research.md).

pub mod frame;
pub mod handshake;
pub mod conn;
