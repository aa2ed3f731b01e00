//! WebSocket (RFC 6455, permessage-deflate of RFC 7692), sans-io like `h1`: bytes in, messages
//! and output bytes out, no socket. `frame`: the wire format of one frame (header rules,
//! masking, close payloads) and the UTF-8 check of text that arrives in pieces; `handshake`: the
//! opening handshake (which requests ask for a WebSocket, why one is refused, the 101's key);
//! `deflate`: the negotiation of permessage-deflate and the worker's compressor, bounded;
//! `conn`: the reading side as a state machine (messages from frames, Ping and Close answered,
//! every message rule); `session`: a connection after its 101, between the reader, the
//! application's mailbox and the output queue, with its ping and close clocks.
//! `h1::conn` routes a handshake here; applications see only whole messages (`apps::ws`).

pub mod frame;
pub mod handshake;
pub mod conn;
pub mod deflate;
pub mod session;
