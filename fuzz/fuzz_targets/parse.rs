//! Request head parsing and chunked decoding on arbitrary bytes: never a panic, and a head that
//! parses never claims more bytes than it was given.
#![no_main]

use _core::h1::body::Chunked;
use _core::h1::parse::{parse_head, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(Some(head)) = parse_head(data, &limits) {
        assert!(head.len <= data.len());
        assert!(head.target.end <= head.len);
        // Any prefix of a complete head is incomplete or the same head, never something else.
        let again = parse_head(&data[..head.len], &limits).unwrap().unwrap();
        assert_eq!(again, head);
    }
    let mut dec = Chunked::new(1 << 20);
    let mut total = 0usize;
    if let Ok(n) = dec.feed(data, &mut |d| total += d.len()) {
        assert!(n <= data.len());
        assert!(total <= n);
    }
});
