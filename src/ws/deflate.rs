//! permessage-deflate (RFC 7692): the negotiation of an offer, and the compression of messages.
//!
//! vw always answers `server_no_context_takeover; client_no_context_takeover`: every message is
//! compressed on its own, so no zlib state outlives a message and one compressor and one
//! decompressor per worker ([`Codec`]) serve all of its connections. An idle WebSocket holds no
//! compression memory at all; a worker holds at most one of each (about 300 KiB for the
//! compressor, 45 KiB for the decompressor, made at the first compressed message). The price is
//! the ratio on streams of similar small messages, which context takeover would compress
//! better; the bound matters more to a server with 10,000 sockets.
//!
//! Inflating is bounded by the message limit: output past it is a 1009 after at most
//! `limit + 64 KiB` bytes were produced, whatever the compression ratio (a "bomb").

use super::frame::Violation;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Messages shorter than this are sent uncompressed (RFC 7692 §6: an endpoint may send any
/// message so): deflating a few bytes costs more than it saves.
pub const MIN_COMPRESS: usize = 128;

/// What was agreed with the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreed {
    /// `server_max_window_bits` the client asked for: messages longer than 2^bits are sent
    /// uncompressed (in a message compressed on its own, no back-reference reaches further
    /// back than the message's length), so the compressor's window never matters.
    pub server_window_bits: u8,
}

/// The answer to a `Sec-WebSocket-Extensions` offer list: the first permessage-deflate offer
/// whose parameters are valid (RFC 7692 §7: an unknown or repeated parameter, or a value out of
/// range, declines that offer), and the response value. None: no extension.
pub fn negotiate(offers: &[&[u8]]) -> Option<(Agreed, Vec<u8>)> {
    offers.iter().find_map(|o| accept_offer(o))
}

fn accept_offer(offer: &[u8]) -> Option<(Agreed, Vec<u8>)> {
    let mut parts = offer.split(|&b| b == b';').map(|p| p.trim_ascii());
    if !parts.next()?.eq_ignore_ascii_case(b"permessage-deflate") {
        return None;
    }
    let mut seen: Vec<&[u8]> = Vec::new();
    let mut server_bits = None;
    for p in parts {
        let (name, value) = match p.iter().position(|&b| b == b'=') {
            Some(i) => (p[..i].trim_ascii(), Some(unquote(p[i + 1..].trim_ascii()))),
            None => (p, None),
        };
        let name_lc = name.to_ascii_lowercase();
        if seen.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            return None;
        }
        seen.push(name);
        match (&name_lc[..], value) {
            (b"server_no_context_takeover" | b"client_no_context_takeover", None) => {}
            (b"server_max_window_bits", Some(v)) => server_bits = Some(window_bits(v)?),
            (b"client_max_window_bits", None) => {}
            (b"client_max_window_bits", Some(v)) => {
                window_bits(v)?;
            }
            _ => return None,
        }
    }
    let mut answer = b"permessage-deflate; server_no_context_takeover; client_no_context_takeover".to_vec();
    if let Some(b) = server_bits {
        answer.extend_from_slice(format!("; server_max_window_bits={b}").as_bytes());
    }
    Some((Agreed { server_window_bits: server_bits.unwrap_or(15) }, answer))
}

fn unquote(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        v => v,
    }
}

/// A window size: 8 to 15, digits only (RFC 7692 §7.1.2: `1*DIGIT`, no leading zero).
fn window_bits(v: &[u8]) -> Option<u8> {
    if v.is_empty() || v.len() > 2 || v[0] == b'0' || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u8 = std::str::from_utf8(v).ok()?.parse().ok()?;
    (8..=15).contains(&n).then_some(n)
}

/// The trailer of a sync flush, stripped from each compressed message (RFC 7692 §7.2.1) and put
/// back before inflating one.
const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// A worker's compressor and decompressor, made when first needed and reset after each message.
#[derive(Default)]
pub struct Codec {
    inflate: Option<Box<Decompress>>,
    deflate: Option<Box<Compress>>,
}

impl Codec {
    /// Inflate one whole message (`data` without its tail), at most `max` bytes of output.
    /// Never inlined: making the decompressor takes a frame of over 10 KiB of stack, which a
    /// caller would otherwise probe on every call (the reader's `feed`, for every read).
    #[inline(never)]
    pub fn inflate(&mut self, data: &[u8], max: u64) -> Result<Vec<u8>, Violation> {
        let d = self.inflate.get_or_insert_with(|| Box::new(Decompress::new(false)));
        let result = inflate_bounded(d, data, max);
        d.reset(false);
        result
    }

    /// Compress one message into `out` (the frame's payload, without the sync-flush tail).
    #[inline(never)]
    pub fn deflate(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let c = self.deflate.get_or_insert_with(|| Box::new(Compress::new(Compression::fast(), false)));
        let (start, in0) = (out.len(), c.total_in());
        out.reserve_exact(data.len() / 2 + 64);
        loop {
            let used = (c.total_in() - in0) as usize;
            c.compress_vec(&data[used..], out, FlushCompress::Sync).expect("deflate of memory cannot fail");
            // zlib's rule: the flush is complete when all input is in and output room is left.
            if (c.total_in() - in0) as usize == data.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve_exact(out.capacity().max(4096));
        }
        c.reset();
        if out[start..].ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
    }
}

/// Inflate `data` and the sync-flush tail; the output grows in steps that never go past
/// `max + 1` bytes, so a bomb costs at most that much memory before it is a 1009.
fn inflate_bounded(d: &mut Decompress, data: &[u8], max: u64) -> Result<Vec<u8>, Violation> {
    let first = (data.len() as u64 * 4).clamp(256, 64 * 1024).min(max + 1) as usize;
    let mut out: Vec<u8> = Vec::with_capacity(first);
    let (in0, whole) = (d.total_in(), data.len() + TAIL.len());
    loop {
        let used = (d.total_in() - in0) as usize;
        let input: &[u8] = if used < data.len() { &data[used..] } else { &TAIL[(used - data.len()).min(TAIL.len())..] };
        if out.len() == out.capacity() {
            if out.len() as u64 > max {
                return Err(Violation::TooBig);
            }
            let step = out.len().clamp(4096, 1 << 20) as u64;
            out.reserve_exact(step.min(max + 1 - out.len() as u64) as usize);
        }
        let before = (d.total_in(), d.total_out());
        let status = d.decompress_vec(input, &mut out, FlushDecompress::Sync).map_err(|_| Violation::InvalidData)?;
        if out.len() as u64 > max {
            return Err(Violation::TooBig);
        }
        let room = out.len() < out.capacity();
        if status == Status::StreamEnd || ((d.total_in() - in0) as usize >= whole && room) {
            return Ok(out);
        }
        if (d.total_in(), d.total_out()) == before && room {
            return Err(Violation::InvalidData); // no progress with room to write: not DEFLATE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_are_accepted_or_declined_by_their_parameters() {
        let ok = |o: &[u8]| negotiate(&[o]).map(|(a, v)| (a.server_window_bits, String::from_utf8(v).unwrap()));
        let base = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
        assert_eq!(ok(b"permessage-deflate"), Some((15, base.into())));
        assert_eq!(ok(b"permessage-deflate; client_max_window_bits"), Some((15, base.into())));
        assert_eq!(ok(b"permessage-deflate; client_max_window_bits=\"10\"; server_max_window_bits=12"), Some((12, format!("{base}; server_max_window_bits=12"))));
        for bad in [&b"permessage-deflate; server_max_window_bits=7"[..], b"permessage-deflate; server_max_window_bits=16",
            b"permessage-deflate; server_max_window_bits", b"permessage-deflate; server_max_window_bits=010",
            b"permessage-deflate; unknown", b"permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            b"permessage-deflate; server_no_context_takeover=1", b"x-webkit-deflate-frame"] {
            assert_eq!(ok(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        // A declined offer lets the next one be taken.
        let (a, _) = negotiate(&[b"permessage-deflate; bogus", b"permessage-deflate; server_max_window_bits=9"]).unwrap();
        assert_eq!(a.server_window_bits, 9);
    }

    #[test]
    fn messages_round_trip_and_each_stands_alone() {
        let mut c = Codec::default();
        for msg in [&b"hello hello hello hello hello hello hello hello hello"[..], &[7u8; 300_000], b"", b"x"] {
            let mut out = Vec::new();
            c.deflate(msg, &mut out);
            assert!(!out.ends_with(&TAIL) || out.is_empty());
            // A fresh decompressor decodes it: no context is carried between messages.
            assert_eq!(Codec::default().inflate(&out, 1 << 20).unwrap(), msg);
            assert_eq!(c.inflate(&out, 1 << 20).unwrap(), msg);
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_garbage_is_invalid() {
        let mut c = Codec::default();
        let mut bomb = Vec::new();
        c.deflate(&vec![0u8; 50 << 20], &mut bomb);
        assert!(bomb.len() < 1 << 20, "50 MiB of zeros compress to {}", bomb.len());
        assert_eq!(c.inflate(&bomb, 1 << 20), Err(Violation::TooBig));
        assert_eq!(c.inflate(&bomb, 50 << 20).map(|v| v.len()), Ok(50 << 20), "exactly the limit is allowed");
        assert_eq!(c.inflate(&[0xFF, 0xFF, 0xFF, 0x12, 0x34], 1 << 20), Err(Violation::InvalidData));
        // The codec is usable after a failure.
        let mut out = Vec::new();
        c.deflate(b"again again again", &mut out);
        assert_eq!(c.inflate(&out, 100).unwrap(), b"again again again");
    }
}
