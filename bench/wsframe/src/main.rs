//! What a frame costs to read, vw's reader against tungstenite's frame parser, in one process,
//! alternating: `cargo run --release` in bench/wsframe (pin it: `taskset -c 1`).
//!
//! - header: parse the header of 32-byte client frames, 10 million times (tungstenite's
//!   `FrameHeader::parse` checks only the opcode; vw's `parse_header` every header rule);
//! - 32 B / 64 KiB: a whole message from a masked frame to its unmasked payload: vw's `Reader`
//!   (header rules, message rules, UTF-8 not needed for binary) against tungstenite's header
//!   parse plus the unmasking a caller of it must do itself (its `apply_mask` is private: the
//!   same word-wise XOR is used for it here, so only the frame reading differs).

use std::hint::black_box;
use std::io::Cursor;
use std::time::Instant;
use tungstenite::protocol::frame::FrameHeader;
use vw::ws::conn::{Event, Reader};
use vw::ws::deflate::Codec;
use vw::ws::frame::{parse_header, unmask};

fn frame(len: usize) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x82u8];
    match len {
        0..=125 => f.push(0x80 | len as u8),
        126..=65535 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend((0..len).map(|i| (i as u8) ^ mask[i % 4]));
    f
}

fn time(label: &str, n: u64, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("{label:40} {ns:10.1} ns");
    ns
}

fn main() {
    let small = frame(32);
    let big = frame(65536);
    for round in 0..3 {
        println!("round {round}");
        time("header: vw parse_header", 10_000_000, || {
            black_box(parse_header(black_box(&small), false, 1 << 24).unwrap());
        });
        time("header: tungstenite FrameHeader::parse", 10_000_000, || {
            let mut c = Cursor::new(black_box(&small[..]));
            black_box(FrameHeader::parse(&mut c).unwrap());
        });
        for (name, f, n) in [("32 B", &small, 5_000_000u64), ("64 KiB", &big, 20_000)] {
            let (mut events, mut out, mut codec) = (Vec::new(), Vec::new(), Codec::default());
            let mut r = Reader::new(1 << 24); // one per connection, as in the server
            time(&format!("{name} message: vw Reader"), n, || {
                r.feed(black_box(f), &mut events, &mut out, &mut codec);
                match events.pop() {
                    Some(Event::Binary(b)) => {
                        black_box(b);
                    }
                    other => panic!("{other:?}"),
                }
            });
            time(&format!("{name} message: tungstenite parse + unmask"), n, || {
                let mut c = Cursor::new(black_box(&f[..]));
                let (h, len) = FrameHeader::parse(&mut c).unwrap().unwrap();
                let at = c.position() as usize;
                let mut payload = f[at..at + len as usize].to_vec();
                unmask(&mut payload, h.mask.unwrap(), 0);
                black_box(payload);
            });
        }
    }
}
