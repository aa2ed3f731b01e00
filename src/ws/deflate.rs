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

    /// Compress one message into `out` (the frame's payload, without the sync-flush tail), when
    /// that makes it shorter: false (and `out` as it was) when it would not.
    ///
    /// One call into an output of the message's length plus the tail: a flush that found room
    /// left is complete; one that filled it was not shorter than the message. Growing the output
    /// and calling again is what zlib allows, but miniz_oxide then returns a block it had held
    /// back (a full LZ buffer) and never flushes the input still in its lookahead: such
    /// messages went out cut short (issue 26: 58,250 of 60,000 random bytes).
    #[inline(never)]
    pub fn deflate(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        let c = self.deflate.get_or_insert_with(|| Box::new(Compress::new(Compression::fast(), false)));
        let (start, in0) = (out.len(), c.total_in());
        out.reserve_exact(data.len() + TAIL.len());
        let room = start + data.len() + TAIL.len();
        c.compress_vec(data, out, FlushCompress::Sync).expect("deflate of memory cannot fail");
        let whole = (c.total_in() - in0) as usize == data.len() && out.len() < room;
        c.reset();
        if !whole || !out[start..].ends_with(&TAIL) {
            out.truncate(start);
            return false;
        }
        out.truncate(out.len() - TAIL.len());
        true
    }
}

/// Inflate `data` and the sync-flush tail; the output grows in steps that never go past
/// `max + 1` bytes, so a bomb costs at most that much memory before it is a 1009.
///
/// The message is whole only when a call with room to write makes no progress (or the stream
/// ends): an inflater may have taken all of its input and still hold output (miniz_oxide keeps
/// up to a window of it when its output reaches the end of its dictionary), so "all input
/// taken and room left" is not the end. Taking that for the end cut messages short (issue 26:
/// Autobahn 12.*, 61,548 of 65,536 bytes echoed).
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
        if status == Status::StreamEnd {
            return Ok(out);
        }
        if (d.total_in(), d.total_out()) == before && out.len() < out.capacity() {
            // Nothing more comes out with room to write it: the end, once all input is in;
            // before that, the input is not DEFLATE.
            return if (d.total_in() - in0) as usize >= whole { Ok(out) } else { Err(Violation::InvalidData) };
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

    /// Payloads of the kinds that matter to a compressor: random (stored blocks), text, runs
    /// of zeros, and random runs of either (block types change mid-message).
    fn payload(seed: &mut u64, kind: u8, n: usize) -> Vec<u8> {
        let mut next = || {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed
        };
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let r = next();
            match kind {
                0 => out.extend_from_slice(&r.to_le_bytes()),
                1 => out.extend_from_slice(["alpha ", "beta ", "gamma ", "vw "][(r % 4) as usize].as_bytes()),
                2 => out.push(0),
                _ => {
                    let k = (r % 20_000) as usize;
                    if r & 1 == 0 {
                        out.extend(std::iter::repeat_n((r >> 8) as u8, k));
                    } else {
                        (0..k / 8 + 1).for_each(|_| out.extend_from_slice(&next().to_le_bytes()));
                    }
                }
            }
        }
        out.truncate(n);
        out
    }

    /// What another implementation makes of a payload vw sent: miniz_oxide's one-shot inflate
    /// (after the tail and a final empty block, which a one-shot inflate needs to end).
    fn reference_inflate(z: &[u8]) -> Vec<u8> {
        let mut whole = z.to_vec();
        whole.extend_from_slice(&TAIL);
        whole.extend_from_slice(&[0x03, 0x00]);
        miniz_oxide::inflate::decompress_to_vec(&whole).expect("vw's output is DEFLATE")
    }

    const SIZES: [usize; 17] = [0, 1, 128, 1000, 4096, 16_384, 32_767, 32_768, 32_769, 60_000, 65_535, 65_536, 65_537, 100_000, 262_144, 500_000, 1 << 20];

    #[test]
    fn every_message_deflated_is_whole_or_declined() {
        // One codec for all, in an order that puts every kind after every other (the report:
        // 60,000 random bytes after a compressible message came back as 58,250).
        let (mut c, mut seed) = (Codec::default(), 0x9E37_79B9_7F4A_7C15u64);
        for round in 0..3 {
            for &n in &SIZES {
                for kind in [(round + n) as u8 % 4, 0, 1, 3, 2] {
                    let msg = payload(&mut seed, kind, n);
                    let mut out = b"kept".to_vec(); // what was in `out` before stays
                    if c.deflate(&msg, &mut out) {
                        assert!(out.len() - 4 < msg.len(), "compressed only when shorter");
                        assert!(!out.ends_with(&TAIL) || out.len() == 4, "the tail is dropped");
                        assert_eq!(reference_inflate(&out[4..]), msg, "kind {kind}, {n} bytes");
                        assert_eq!(Codec::default().inflate(&out[4..], 2 << 20).unwrap(), msg, "no context is carried");
                    } else {
                        assert_eq!(out, b"kept");
                        assert!(!matches!(kind, 1 | 2) || n < 1000, "kind {kind}, {n} bytes should compress");
                    }
                }
            }
        }
    }

    #[test]
    fn every_message_compressed_elsewhere_inflates_whole() {
        // miniz_oxide's one-shot deflate at levels 0 (stored), 1, 6 and 10 (a final block: the
        // stream ends before the tail), and vw's own, read by one codec in turn.
        let (mut c, mut seed) = (Codec::default(), 7u64);
        for &n in &SIZES {
            for kind in 0..4u8 {
                let msg = payload(&mut seed, kind, n);
                for level in [0u8, 1, 6, 10] {
                    let z = miniz_oxide::deflate::compress_to_vec(&msg, level);
                    assert_eq!(c.inflate(&z, 2 << 20).unwrap(), msg, "kind {kind}, {n} bytes, level {level}");
                }
            }
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_garbage_is_invalid() {
        let mut c = Codec::default();
        let mut bomb = Vec::new();
        assert!(c.deflate(&vec![0u8; 50 << 20], &mut bomb));
        assert!(bomb.len() < 1 << 20, "50 MiB of zeros compress to {}", bomb.len());
        assert_eq!(c.inflate(&bomb, 1 << 20), Err(Violation::TooBig));
        assert_eq!(c.inflate(&bomb, 50 << 20).map(|v| v.len()), Ok(50 << 20), "exactly the limit is allowed");
        assert_eq!(c.inflate(&[0xFF, 0xFF, 0xFF, 0x12, 0x34], 1 << 20), Err(Violation::InvalidData));
        // The codec is usable after a failure.
        let (mut out, again) = (Vec::new(), b"again again again again again again".repeat(8));
        assert!(c.deflate(&again, &mut out));
        assert_eq!(c.inflate(&out, 1000).unwrap(), again);
    }
}
