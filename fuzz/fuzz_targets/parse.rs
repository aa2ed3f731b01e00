//! Request head parsing and chunked decoding on arbitrary bytes: never a panic, a head that
//! parses never claims more bytes than it was given, and its field index points inside it at
//! names and values that a plain scan of the head finds too.
#![no_main]

use _core::h1::body::Chunked;
use _core::h1::parse::{parse_head, FieldIndex, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut fields = Vec::new();
    if let Ok(Some(head)) = parse_head(data, &limits, &mut fields) {
        assert!(head.len <= data.len());
        assert!(head.target.end <= head.len);
        let index = FieldIndex { head: &data[..head.len], fields: &fields };
        let listed: Vec<_> = index.iter().collect(); // panics if an offset is outside the head
        for (name, value) in &listed {
            assert!(!name.is_empty() && !name.contains(&b':'));
            assert!(!value.contains(&b'\n'));
        }
        // Any prefix of a complete head is incomplete or the same head, never something else.
        let mut again_fields = Vec::new();
        let again = parse_head(&data[..head.len], &limits, &mut again_fields).unwrap().unwrap();
        assert_eq!(again, head);
        assert_eq!(again_fields, fields);
    }
    let mut dec = Chunked::new(1 << 20);
    let mut total = 0usize;
    if let Ok(n) = dec.feed(data, &mut |d| total += d.len()) {
        assert!(n <= data.len());
        assert!(total <= n);
    }
});
