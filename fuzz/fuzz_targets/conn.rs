//! The connection state machine fed an arbitrary byte stream cut at arbitrary points (the first
//! bytes choose the cuts): it must never panic, and every cut must give the output of the whole.
#![no_main]

use _core::h1::conn::{Ctx, Mount, Proto};
use _core::h1::encode::Clock;
use _core::statics::{StaticConfig, StaticFiles};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn docroot() -> &'static std::path::PathBuf {
    static ROOT: OnceLock<std::path::PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("vw-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("1b"), b"x").unwrap();
        std::fs::write(dir.join("index.html"), b"<p>hi</p>").unwrap();
        std::fs::write(dir.join("sub/index.html"), b"sub").unwrap();
        // a body sent from a pipe once cached (32 KiB..=inline_max), and a mapped large file
        std::fs::write(dir.join("mid.bin"), (0..40_000u32).map(|i| i as u8).collect::<Vec<_>>()).unwrap();
        std::fs::write(dir.join("big.bin"), (0..300_000u32).map(|i| (i / 7) as u8).collect::<Vec<_>>()).unwrap();
        dir
    })
}

fn run(clock_sec_date: &Clock, chunks: &[&[u8]]) -> (Vec<u8>, bool) {
    let files = StaticFiles::open(StaticConfig::new(docroot().clone())).unwrap();
    let clock = Clock { sec: clock_sec_date.sec, date: clock_sec_date.date };
    let mut ctx = Ctx::new(clock, vec![Mount { prefix: Vec::new(), files }], None);
    let mut p = Proto::default();
    let mut pending = Vec::new();
    for c in chunks {
        pending.extend_from_slice(c);
        let n = p.feed(&pending, &mut ctx);
        assert!(n <= pending.len());
        pending.drain(..n);
    }
    (p.out.to_bytes(), p.close_after_flush)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (cuts, stream) = data.split_at(2.min(data.len()));
    let clock = Clock::new();
    let whole = run(&clock, &[stream]);
    let a = cuts[0] as usize % (stream.len() + 1);
    let b = a + (cuts[1] as usize % (stream.len() - a + 1));
    let split = run(&clock, &[&stream[..a], &stream[a..b], &stream[b..]]);
    assert_eq!(whole, split);
});
