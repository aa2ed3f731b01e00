//! The request fields static files answer to (preconditions, ranges, codings): arbitrary bytes
//! never panic, and what comes back is consistent (a range lies inside the file, a coding chosen
//! is one that exists).
#![no_main]
use _core::statics::negotiate::{self, Coding, Fields, RangeAsk};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let len = u64::from_le_bytes(data[..8].try_into().unwrap()) >> (data[8] % 64);
    let v = &data[9..];
    match negotiate::range(v, len) {
        RangeAsk::One(first, last) => assert!(first <= last && last < len, "{first}-{last}/{len}"),
        RangeAsk::Unsatisfiable | RangeAsk::Several | RangeAsk::Ignore => {}
    }
    let etag = b"\"18eba5c1dd0c42a9-1\"";
    let _ = negotiate::if_match(v, etag);
    let _ = negotiate::none_match_hits(v, etag);
    if let Some(t) = negotiate::parse_http_date(v) {
        // a date we read back from what we write is the same date
        if (0..253_402_300_800).contains(&t) {
            assert_eq!(negotiate::parse_http_date(&_core::h1::encode::http_date(t)), Some(t));
        }
    }
    let _ = negotiate::if_range_holds(v, etag, len as i64, (len >> 1) as i64);
    let (br, gzip) = (data[8] & 1 == 1, data[8] & 2 == 2);
    match negotiate::choose_coding(Some(v), br, gzip) {
        Some(Coding::Br) => assert!(br),
        Some(Coding::Gzip) => assert!(gzip),
        Some(Coding::Identity) | None => {}
    }
    let f = Fields::parse(v);
    if let Some(r) = &f.range {
        let _ = negotiate::range(r, len);
    }
});
