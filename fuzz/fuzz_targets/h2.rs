//! The HTTP/2 side of a connection (`h2::conn::H2`) fed the client preface and then arbitrary
//! bytes as frames, cut at input-chosen points, over a docroot: it must never panic or hang,
//! every drive must return, and the output must stay bounded by the input, however cut.
#![no_main]

use _core::h1::conn::{Ctx, Mount};
use _core::h1::encode::Clock;
use _core::h2::conn::{H2, PREFACE};
use _core::io::out::OutQueue;
use _core::statics::{StaticConfig, StaticFiles};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn docroot() -> &'static std::path::PathBuf {
    static ROOT: OnceLock<std::path::PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("vw-fuzz-h2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("1b"), b"x").unwrap();
        std::fs::write(dir.join("index.html"), b"<p>hi</p>").unwrap();
        std::fs::write(dir.join("big.bin"), (0..300_000u32).map(|i| (i / 7) as u8).collect::<Vec<_>>()).unwrap();
        dir
    })
}

fn run(chunks: &[&[u8]]) -> (bool, usize) {
    let mut cfg = StaticConfig::new(docroot().clone());
    cfg.map_large = false; // as a worker that may speak HTTP/2 configures it
    let files = StaticFiles::open(cfg).unwrap();
    let mut ctx = Ctx::new(Clock::new(), vec![Mount { prefix: Vec::new(), files }], None);
    let mut h2 = H2::new(16384, None);
    let mut out = OutQueue::default();
    h2.feed(PREFACE);
    let mut written = 0;
    for c in chunks {
        h2.feed(c);
        h2.drive(&mut ctx, &mut out);
        // the client reads everything (so the server frames all it may)
        written += out.pending_bytes();
        let _ = out.take_segs();
        for _ in 0..4 {
            h2.drive(&mut ctx, &mut out);
            written += out.pending_bytes();
            let _ = out.take_segs();
        }
    }
    (h2.ended(), written)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (cuts, stream) = data.split_at(2);
    let (ended, written) = run(&[stream]);
    // a request can ask for at most the 64 KiB window of big.bin, plus heads and control frames
    assert!(written <= 200_000 + stream.len() * 64, "{written} bytes out for {} in", stream.len());
    // The same bytes cut elsewhere: the same bounds. (Whether the connection ends may differ:
    // a frame on a stream is a stream error or a connection error depending on whether the
    // server had already answered that stream, which depends on where the reads were cut.)
    let a = cuts[0] as usize % (stream.len() + 1);
    let b = a + (cuts[1] as usize % (stream.len() - a + 1));
    let (_, written_split) = run(&[&stream[..a], &stream[a..b], &stream[b..]]);
    assert!(written_split <= 200_000 + stream.len() * 64);
    let _ = ended;
});
