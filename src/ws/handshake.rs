//! The opening handshake (RFC 6455 §4.2): whether a request asks to become a WebSocket, what is
//! wrong with it when it cannot, and the key of the 101 answer.

use crate::h1::parse::FieldIndex;
use base64::Engine;
use sha1::{Digest, Sha1};

/// The one version of the protocol (§4.4); a client asking for another gets 426 and this.
pub const VERSION: &[u8] = b"13";

/// What a valid opening handshake asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// Sec-WebSocket-Key, as sent (24 characters of base64).
    pub key: &'a [u8],
    /// Sec-WebSocket-Protocol: the subprotocols offered, in order.
    pub protocols: Vec<&'a [u8]>,
    /// Sec-WebSocket-Extensions, as sent (negotiated later).
    pub extensions: Vec<&'a [u8]>,
}

/// Why a request that asks for a WebSocket cannot have one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the handshake is malformed (§4.2.1).
    Bad(&'static str),
    /// 426 with `Sec-WebSocket-Version: 13`: another version was asked for (§4.4).
    Version,
}

/// Whether the request's fields ask to upgrade to a WebSocket: `Upgrade: websocket` (the
/// connection then becomes one only if [`check`] passes too).
pub fn wants_upgrade(fields: FieldIndex<'_>) -> bool {
    fields.iter().any(|(n, v)| n.eq_ignore_ascii_case(b"upgrade") && tokens(v).any(|t| t.eq_ignore_ascii_case(b"websocket")))
}

/// Check an opening handshake (§4.2.1): a GET in HTTP/1.1 (the caller checks those), with
/// `Connection: upgrade`, `Upgrade: websocket`, one `Sec-WebSocket-Key` of 16 bytes in base64
/// and `Sec-WebSocket-Version: 13`.
pub fn check(fields: FieldIndex<'_>) -> Result<Request<'_>, Refusal> {
    let (mut upgrade, mut connection, mut key, mut version) = (false, false, None, None);
    let mut req = Request { key: b"", protocols: Vec::new(), extensions: Vec::new() };
    for (name, value) in fields.iter() {
        if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade |= tokens(value).any(|t| t.eq_ignore_ascii_case(b"websocket"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection |= tokens(value).any(|t| t.eq_ignore_ascii_case(b"upgrade"));
        } else if name.eq_ignore_ascii_case(b"sec-websocket-key") {
            if key.replace(value).is_some() {
                return Err(Refusal::Bad("repeated Sec-WebSocket-Key"));
            }
        } else if name.eq_ignore_ascii_case(b"sec-websocket-version") {
            if version.replace(value).is_some() {
                return Err(Refusal::Bad("repeated Sec-WebSocket-Version"));
            }
        } else if name.eq_ignore_ascii_case(b"sec-websocket-protocol") {
            req.protocols.extend(tokens(value).filter(|t| !t.is_empty()));
        } else if name.eq_ignore_ascii_case(b"sec-websocket-extensions") {
            req.extensions.extend(value.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty()));
        }
    }
    if !upgrade || !connection {
        return Err(Refusal::Bad("Upgrade: websocket needs Connection: upgrade"));
    }
    match version {
        Some(v) if v == VERSION => {}
        Some(_) => return Err(Refusal::Version),
        None => return Err(Refusal::Bad("no Sec-WebSocket-Version")),
    }
    let key = key.ok_or(Refusal::Bad("no Sec-WebSocket-Key"))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(key).map_err(|_| Refusal::Bad("Sec-WebSocket-Key is not base64"))?;
    if decoded.len() != 16 {
        return Err(Refusal::Bad("Sec-WebSocket-Key is not 16 bytes"));
    }
    req.key = key;
    Ok(req)
}

/// Sec-WebSocket-Accept for a key: base64(SHA-1(key + the protocol's GUID)) (§4.2.2).
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut h = Sha1::new();
    h.update(key);
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let mut out = [0u8; 28];
    let n = base64::engine::general_purpose::STANDARD.encode_slice(h.finalize(), &mut out).expect("28 bytes of base64");
    debug_assert_eq!(n, 28);
    out
}

fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim)
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &v[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1::parse::{parse_head, Limits};

    fn with(head: &[u8], f: impl FnOnce(FieldIndex<'_>)) {
        let mut fields = Vec::new();
        let h = parse_head(head, &Limits::default(), &mut fields).unwrap().unwrap();
        f(FieldIndex { head: &head[..h.len], fields: &fields });
    }

    #[test]
    fn the_rfc_s_example_key_is_accepted_with_its_answer() {
        // RFC 6455 §1.3.
        assert_eq!(&accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let head = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-other\r\nSec-WebSocket-Version: 13\r\n\r\n";
        with(head, |f| {
            assert!(wants_upgrade(f));
            let r = check(f).unwrap();
            assert_eq!(r.key, b"dGhlIHNhbXBsZSBub25jZQ==");
            assert_eq!(r.protocols, vec![&b"chat"[..], b"superchat"]);
            assert_eq!(r.extensions, vec![&b"permessage-deflate; client_max_window_bits"[..], b"x-other"]);
        });
    }

    #[test]
    fn malformed_handshakes_are_refused() {
        let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
        let cases = [
            (format!("Upgrade: websocket\r\n{key}Sec-WebSocket-Version: 13\r\n"), Refusal::Bad("Upgrade: websocket needs Connection: upgrade")),
            (format!("Upgrade: websocket\r\nConnection: upgrade\r\n{key}"), Refusal::Bad("no Sec-WebSocket-Version")),
            (format!("Upgrade: websocket\r\nConnection: upgrade\r\n{key}Sec-WebSocket-Version: 8\r\n"), Refusal::Version),
            ("Upgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\n".to_string(), Refusal::Bad("no Sec-WebSocket-Key")),
            ("Upgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Key: not base64!\r\nSec-WebSocket-Version: 13\r\n".to_string(), Refusal::Bad("Sec-WebSocket-Key is not base64")),
            ("Upgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n".to_string(), Refusal::Bad("Sec-WebSocket-Key is not 16 bytes")),
            (format!("Upgrade: websocket\r\nConnection: upgrade\r\n{key}{key}Sec-WebSocket-Version: 13\r\n"), Refusal::Bad("repeated Sec-WebSocket-Key")),
        ];
        for (fields, want) in cases {
            let head = format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
            with(head.as_bytes(), |f| assert_eq!(check(f), Err(want), "{fields}"));
        }
        with(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n", |f| assert!(!wants_upgrade(f)));
    }
}
