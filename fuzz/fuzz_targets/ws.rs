//! WebSocket frames on arbitrary bytes: the header parser never panics, never claims more bytes
//! than it was given, and says the same for every prefix (incomplete, or the same header); a
//! payload unmasked in two pieces is the payload masked once undone; and text checked in pieces
//! cut anywhere is accepted exactly when the whole is UTF-8; and the reading state machine gives
//! the same messages and answers whether the stream comes whole or cut in two, with compressed
//! messages (permessage-deflate) inflated within the message limit.
#![no_main]

use _core::ws::conn::Reader;
use _core::ws::deflate::Codec;
use _core::ws::frame::{check_close, parse_header, unmask, unmask_into, Utf8Stream};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let deflate = data.first().is_some_and(|b| b & 1 == 1);
    if let Ok(Some((h, n))) = parse_header(data, deflate, 1 << 20) {
        assert!(n <= data.len() && (2..=14).contains(&n));
        for cut in 0..n {
            assert_eq!(parse_header(&data[..cut], deflate, 1 << 20), Ok(None));
        }
        assert!(!h.opcode.is_control() || (h.fin && h.len <= 125));
        let body = &data[n..];
        let split = body.len() / 2;
        let mut once = body.to_vec();
        unmask(&mut once, h.mask, 0);
        let mut twice = body.to_vec();
        let (a, b) = twice.split_at_mut(split);
        unmask(a, h.mask, 0);
        unmask(b, h.mask, split as u64);
        assert_eq!(once, twice);
        let mut fused = b"kept".to_vec();
        unmask_into(&mut fused, &body[..split], h.mask, 0);
        unmask_into(&mut fused, &body[split..], h.mask, split as u64);
        assert_eq!(&fused[4..], &once[..], "unmasking while copying is the same as after");
        unmask(&mut once, h.mask, 0);
        assert_eq!(once, body, "masking twice is the identity");
        let _ = check_close(&twice[..twice.len().min(125)]);
    }
    // The reader, the stream whole and cut where the first byte says.
    if let Some((&c, stream)) = data.split_first() {
        // permessage-deflate on or off, as the first byte says: compressed messages are
        // inflated within the limit (a bomb is a 1009, never a panic or a large allocation).
        let read = |pieces: &[&[u8]]| {
            let (mut ev, mut out, mut r, mut kept, mut codec) = (Vec::new(), Vec::new(), Reader::new(4096), Vec::new(), Codec::default());
            r.deflate = c & 2 != 0;
            for p in pieces {
                kept.extend_from_slice(p);
                loop {
                    let used = r.feed(&kept, &mut ev, &mut out, &mut codec);
                    assert!(used <= kept.len());
                    kept.drain(..used);
                    if used == 0 {
                        break;
                    }
                }
            }
            for e in &ev {
                if let _core::ws::conn::Event::Binary(b) = e {
                    assert!(b.len() <= 4096, "a message past the limit was delivered");
                }
            }
            (ev, out)
        };
        let cut = c as usize % (stream.len() + 1);
        assert_eq!(read(&[stream]), read(&[&stream[..cut], &stream[cut..]]));
    }
    // Text split at two points chosen by the input itself.
    if data.len() >= 2 {
        let (cuts, text) = data.split_at(2);
        let a = cuts[0] as usize % (text.len() + 1);
        let b = a + cuts[1] as usize % (text.len() - a + 1);
        let mut s = Utf8Stream::default();
        let pieces = s.feed(&text[..a]).and_then(|_| s.feed(&text[a..b])).and_then(|_| s.feed(&text[b..])).and_then(|_| s.finish());
        assert_eq!(pieces.is_ok(), std::str::from_utf8(text).is_ok(), "{text:02x?} cut at {a} {b}");
    }
});
