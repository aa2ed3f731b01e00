//! The request fields a static file answers to, and the rules of RFC 9110 for them: preconditions
//! (§13), ranges (§14) and content codings (§12.5.3). Pure functions over bytes, tested here; the
//! static cache decides with them what to send.

/// The fields of one request that static files care about, read from its head only when the
/// parser saw one of them (see `Head::cond`). A list field sent on several lines is joined with
/// commas (RFC 9110 §5.3); a singleton field sent twice is invalid and so ignored.
#[derive(Default, Debug)]
pub struct Fields {
    pub if_match: Option<Vec<u8>>,
    pub if_none_match: Option<Vec<u8>>,
    pub if_modified_since: Option<Vec<u8>>,
    pub if_unmodified_since: Option<Vec<u8>>,
    pub range: Option<Vec<u8>>,
    pub if_range: Option<Vec<u8>>,
    pub accept_encoding: Option<Vec<u8>>,
}

/// The (name, value) fields of a request head (request line, fields, blank line) already
/// validated by the parser, values without their surrounding whitespace.
pub fn head_fields(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    head.split(|&b| b == b'\n').skip(1).filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        Some((&line[..colon], trim(&line[colon + 1..])))
    })
}

impl Fields {
    /// Read them from a request head (see [`head_fields`]).
    pub fn parse(head: &[u8]) -> Fields {
        Fields::from_fields(head_fields(head))
    }

    /// Read them from a request's fields.
    pub fn from_fields<'a>(fields: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Fields {
        let mut f = Fields::default();
        let mut twice = [false; 4];
        for (name, value) in fields {
            let lower = name.to_ascii_lowercase();
            let (slot, single) = match &lower[..] {
                b"if-match" => (&mut f.if_match, None),
                b"if-none-match" => (&mut f.if_none_match, None),
                b"accept-encoding" => (&mut f.accept_encoding, None),
                b"if-modified-since" => (&mut f.if_modified_since, Some(0)),
                b"if-unmodified-since" => (&mut f.if_unmodified_since, Some(1)),
                b"range" => (&mut f.range, Some(2)),
                b"if-range" => (&mut f.if_range, Some(3)),
                _ => continue,
            };
            match (slot.as_mut(), single) {
                (None, _) => *slot = Some(value.to_vec()),
                (Some(_), Some(i)) => twice[i] = true,
                (Some(v), None) => {
                    v.extend_from_slice(b", ");
                    v.extend_from_slice(value);
                }
            }
        }
        for (i, slot) in [&mut f.if_modified_since, &mut f.if_unmodified_since, &mut f.range, &mut f.if_range].into_iter().enumerate() {
            if twice[i] {
                *slot = None;
            }
        }
        f
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(v.len());
    let end = v.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(start, |i| i + 1);
    &v[start..end]
}

/// The entity-tags of an If-Match / If-None-Match value.
#[derive(Debug, PartialEq, Eq)]
pub enum TagList<'a> {
    Star,
    /// (weak, opaque-tag with its quotes)
    Tags(Vec<(bool, &'a [u8])>),
}

/// Parse `"*" / #entity-tag`; None when malformed. A malformed If-None-Match matches nothing
/// (the full response is sent); a malformed If-Match matches nothing either (412): failing closed.
pub fn tag_list(v: &[u8]) -> Option<TagList<'_>> {
    if trim(v) == b"*" {
        return Some(TagList::Star);
    }
    let mut tags = Vec::new();
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b' ' | b'\t' | b',' => i += 1,
            _ => {
                let weak = v[i..].starts_with(b"W/");
                if weak {
                    i += 2;
                }
                if v.get(i) != Some(&b'"') {
                    return None;
                }
                let end = i + 1 + v[i + 1..].iter().position(|&b| b == b'"')?;
                if !v[i + 1..end].iter().all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80) {
                    return None;
                }
                tags.push((weak, &v[i..=end]));
                i = end + 1;
            }
        }
    }
    if tags.is_empty() {
        return None;
    }
    Some(TagList::Tags(tags))
}

/// If-Match: true when the strong tag `etag` (with quotes) matches (strong comparison).
pub fn if_match(v: &[u8], etag: &[u8]) -> bool {
    match tag_list(v) {
        Some(TagList::Star) => true,
        Some(TagList::Tags(t)) => t.iter().any(|&(weak, tag)| !weak && tag == etag),
        None => false,
    }
}

/// If-None-Match: true when `etag` matches one of the list (weak comparison), i.e. the
/// condition is false and the answer is 304.
pub fn none_match_hits(v: &[u8], etag: &[u8]) -> bool {
    match tag_list(v) {
        Some(TagList::Star) => true,
        Some(TagList::Tags(t)) => t.iter().any(|&(_, tag)| tag == etag),
        None => false,
    }
}

/// An HTTP-date in any of the three forms a recipient must accept (RFC 9110 §5.6.7):
/// IMF-fixdate, RFC 850 and asctime. Seconds since the epoch.
pub fn parse_http_date(v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(trim(v)).ok()?;
    let month = |m: &str| -> Option<u32> {
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
            .iter()
            .position(|&x| x == m)
            .map(|i| i as u32 + 1)
    };
    let num = |t: &str, len: usize| -> Option<u32> {
        (t.len() == len && t.bytes().all(|b| b.is_ascii_digit())).then(|| t.parse().ok()).flatten()
    };
    let hms = |t: &str| -> Option<(u32, u32, u32)> {
        let mut p = t.split(':');
        let r = (num(p.next()?, 2)?, num(p.next()?, 2)?, num(p.next()?, 2)?);
        (p.next().is_none() && r.0 < 24 && r.1 < 60 && r.2 < 61).then_some(r)
    };
    let parts: Vec<&str> = s.split(' ').collect();
    let (y, mo, d, t) = if parts.len() == 6 && parts[0].len() == 4 && parts[0].ends_with(',') && parts[5] == "GMT" {
        // Sun, 06 Nov 1994 08:49:37 GMT
        (num(parts[3], 4)? as i64, month(parts[2])?, num(parts[1], 2)?, hms(parts[4])?)
    } else if parts.len() == 4 && parts[0].ends_with(',') && parts[3] == "GMT" {
        // Sunday, 06-Nov-94 08:49:37 GMT: a two-digit year that would be more than 50 years
        // ahead is the latest past year with those digits (RFC 9110 §5.6.7).
        let mut dmy = parts[1].split('-');
        let (d, mo, yy) = (num(dmy.next()?, 2)?, month(dmy.next()?)?, num(dmy.next()?, 2)? as i64);
        let now = current_year();
        let mut y = now - now.rem_euclid(100) + yy;
        if y > now + 50 {
            y -= 100;
        }
        (y, mo, d, hms(parts[2])?)
    } else {
        // Sun Nov  6 08:49:37 1994
        let p: Vec<&str> = s.split(' ').filter(|x| !x.is_empty()).collect();
        if p.len() != 5 || p[0].len() != 3 {
            return None;
        }
        let d: u32 = if p[2].len() <= 2 && p[2].bytes().all(|b| b.is_ascii_digit()) { p[2].parse().ok()? } else { return None };
        (num(p[4], 4)? as i64, month(p[1])?, d, hms(p[3])?)
    };
    if d == 0 || d > 31 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86400 + (t.0 * 3600 + t.1 * 60 + t.2) as i64)
}

fn current_year() -> i64 {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    crate::h1::encode::civil_from_days(secs.div_euclid(86400)).0
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// What a Range field asks of a representation of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAsk {
    /// Not a byte range we read (another unit, bad syntax): serve the whole representation.
    Ignore,
    /// One satisfiable range: first and last byte, inclusive.
    One(u64, u64),
    /// Several ranges, some satisfiable: vw answers 200 with the whole representation.
    Several,
    /// No range overlaps the representation: 416.
    Unsatisfiable,
}

pub fn range(v: &[u8], len: u64) -> RangeAsk {
    let v = trim(v);
    if v.len() < 6 || !v[..6].eq_ignore_ascii_case(b"bytes=") {
        return RangeAsk::Ignore;
    }
    let num = |t: &[u8]| -> Option<u64> {
        if t.is_empty() || t.len() > 19 || !t.iter().all(|b| b.is_ascii_digit()) {
            return None;
        }
        std::str::from_utf8(t).ok()?.parse().ok()
    };
    let mut specs = 0;
    let mut satisfiable = Vec::new();
    for spec in v[6..].split(|&b| b == b',') {
        let spec = trim(spec);
        if spec.is_empty() {
            continue;
        }
        specs += 1;
        let Some(dash) = spec.iter().position(|&b| b == b'-') else { return RangeAsk::Ignore };
        let (a, b) = (&spec[..dash], &spec[dash + 1..]);
        if a.is_empty() {
            // -N: the last N bytes
            let Some(n) = num(b) else { return RangeAsk::Ignore };
            if n > 0 && len > 0 {
                satisfiable.push((len.saturating_sub(n), len - 1));
            }
        } else {
            let Some(first) = num(a) else { return RangeAsk::Ignore };
            let last = if b.is_empty() {
                u64::MAX
            } else {
                match num(b) {
                    Some(l) if l >= first => l,
                    _ => return RangeAsk::Ignore,
                }
            };
            if first < len {
                satisfiable.push((first, last.min(len - 1)));
            }
        }
    }
    match (specs, satisfiable.len()) {
        (0, _) => RangeAsk::Ignore,
        (_, 0) => RangeAsk::Unsatisfiable,
        (1, _) => RangeAsk::One(satisfiable[0].0, satisfiable[0].1),
        _ => RangeAsk::Several,
    }
}

/// If-Range: whether the Range still applies to the representation with this `etag` and
/// Last-Modified second `lm`, answered at second `now`: a strong comparison of tags, or the
/// exact date, when that date is a strong validator (RFC 9110 §13.1.5: not the current second,
/// in which the file could have changed twice unseen).
pub fn if_range_holds(v: &[u8], etag: &[u8], lm: i64, now: i64) -> bool {
    let v = trim(v);
    if v.first() == Some(&b'"') || v.starts_with(b"W/") {
        return matches!(tag_list(v), Some(TagList::Tags(t)) if t.len() == 1 && !t[0].0 && t[0].1 == etag);
    }
    lm < now && parse_http_date(v) == Some(lm)
}

/// A content coding vw can offer for a file, besides identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Br,
    Gzip,
}

/// Choose among identity and the codings available (`br`, `gzip`) by Accept-Encoding's
/// q-values. Ties go to the smaller body (br, then gzip, then identity). None: nothing
/// acceptable (identity excluded by `identity;q=0` or `*;q=0` and no other coding offered): 406.
pub fn choose_coding(accept: Option<&[u8]>, br: bool, gzip: bool) -> Option<Coding> {
    let Some(accept) = accept else { return Some(Coding::Identity) };
    let (mut q_br, mut q_gzip, mut q_identity, mut q_star) = (None, None, None, None);
    for item in accept.split(|&b| b == b',') {
        let mut parts = item.split(|&b| b == b';');
        let coding = trim(parts.next().unwrap_or(b"")).to_ascii_lowercase();
        if coding.is_empty() {
            continue;
        }
        let mut q = 1000u32;
        for p in parts {
            let p = trim(p);
            if p.len() >= 2 && (p[0] == b'q' || p[0] == b'Q') && p[1] == b'=' {
                q = qvalue(&p[2..]).unwrap_or(0);
            }
        }
        match &coding[..] {
            b"br" => q_br = Some(q),
            b"gzip" | b"x-gzip" => q_gzip = Some(q),
            b"identity" => q_identity = Some(q),
            b"*" => q_star = Some(q),
            _ => {}
        }
    }
    let q_br = if br { q_br.or(q_star).unwrap_or(0) } else { 0 };
    let q_gzip = if gzip { q_gzip.or(q_star).unwrap_or(0) } else { 0 };
    let q_identity = q_identity.or(q_star).unwrap_or(1);
    let best = q_br.max(q_gzip).max(q_identity);
    if best == 0 {
        return None;
    }
    Some(if q_br == best {
        Coding::Br
    } else if q_gzip == best {
        Coding::Gzip
    } else {
        Coding::Identity
    })
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn qvalue(v: &[u8]) -> Option<u32> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths = 0;
    for (i, &d) in frac.iter().enumerate() {
        thousandths += (d - b'0') as u32 * [100, 10, 1][i];
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_joined_and_singletons_kept_single() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"a\"\r\nif-none-match:  \"b\" \r\nRange: bytes=0-1\r\nRange: bytes=2-3\r\nAccept-Encoding: gzip\r\n\r\n";
        let f = Fields::parse(head);
        assert_eq!(f.if_none_match.as_deref(), Some(&b"\"a\", \"b\""[..]));
        assert_eq!(f.range, None, "two Range fields: invalid, ignored");
        assert_eq!(f.accept_encoding.as_deref(), Some(&b"gzip"[..]));
        assert_eq!(f.if_match, None);
    }

    #[test]
    fn entity_tags() {
        let e = b"\"abc\"";
        assert!(none_match_hits(b"\"x\", W/\"abc\"", e), "weak comparison");
        assert!(none_match_hits(b"*", e));
        assert!(!none_match_hits(b"\"abcd\"", e));
        assert!(!none_match_hits(b"abc", e), "unquoted: malformed, no match");
        assert!(if_match(b"\"abc\"", e));
        assert!(!if_match(b"W/\"abc\"", e), "If-Match compares strongly");
        assert!(if_match(b" * ", e));
        assert!(!if_match(b"garbage", e));
        assert_eq!(tag_list(b"\"a,b\", \"c\""), Some(TagList::Tags(vec![(false, &b"\"a,b\""[..]), (false, &b"\"c\""[..])])));
    }

    #[test]
    fn dates_in_all_three_forms() {
        let t = 784111777; // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), Some(t));
        // two-digit years: up to 50 years ahead is ahead, further is the past century
        let y = current_year();
        assert!((2026..2100).contains(&y));
        let ahead = format!("Monday, 01-Jan-{:02} 00:00:00 GMT", (y + 44) % 100);
        let back = format!("Monday, 01-Jan-{:02} 00:00:00 GMT", (y + 60) % 100);
        assert_eq!(parse_http_date(ahead.as_bytes()), Some(days_from_civil(y + 44, 1, 1) * 86400));
        assert_eq!(parse_http_date(back.as_bytes()), Some(days_from_civil(y - 40, 1, 1) * 86400));
        assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994"), Some(t));
        assert_eq!(parse_http_date(b"Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 PST"), None);
        assert_eq!(parse_http_date(b"Sun, 06 Foo 1994 08:49:37 GMT"), None);
        assert_eq!(parse_http_date(b"yesterday"), None);
        assert_eq!(parse_http_date(b""), None);
        let now = 1_795_000_000;
        assert_eq!(parse_http_date(&crate::h1::encode::http_date(now)), Some(now));
    }

    #[test]
    fn ranges() {
        assert_eq!(range(b"bytes=0-5", 100), RangeAsk::One(0, 5));
        assert_eq!(range(b"bytes=-7", 100), RangeAsk::One(93, 99));
        assert_eq!(range(b"bytes=10-", 100), RangeAsk::One(10, 99));
        assert_eq!(range(b"bytes=90-200", 100), RangeAsk::One(90, 99));
        assert_eq!(range(b"bytes=-500", 100), RangeAsk::One(0, 99));
        assert_eq!(range(b"bytes=100-", 100), RangeAsk::Unsatisfiable);
        assert_eq!(range(b"bytes=-0", 100), RangeAsk::Unsatisfiable);
        assert_eq!(range(b"bytes=0-0", 0), RangeAsk::Unsatisfiable);
        assert_eq!(range(b"bytes=0-1,5-6", 100), RangeAsk::Several);
        assert_eq!(range(b"bytes=0-1,500-600", 100), RangeAsk::Several);
        assert_eq!(range(b"bytes=500-600,700-", 100), RangeAsk::Unsatisfiable);
        assert_eq!(range(b"bytes=5-1", 100), RangeAsk::Ignore);
        assert_eq!(range(b"bytes=a-1", 100), RangeAsk::Ignore);
        assert_eq!(range(b"items=0-1", 100), RangeAsk::Ignore);
        assert_eq!(range(b"bytes=", 100), RangeAsk::Ignore);
        assert_eq!(range(b"bytes=99999999999999999999-", 100), RangeAsk::Ignore);
        assert_eq!(range(b"bytes=10737418230-", 10 << 30), RangeAsk::One(10737418230, (10 << 30) - 1));
    }

    #[test]
    fn if_range() {
        assert!(if_range_holds(b"\"e\"", b"\"e\"", 5, 9));
        assert!(!if_range_holds(b"W/\"e\"", b"\"e\"", 5, 9));
        assert!(!if_range_holds(b"\"f\"", b"\"e\"", 5, 9));
        assert!(if_range_holds(b"Thu, 01 Jan 1970 00:00:05 GMT", b"\"e\"", 5, 9));
        assert!(!if_range_holds(b"Thu, 01 Jan 1970 00:00:06 GMT", b"\"e\"", 5, 9));
        assert!(!if_range_holds(b"Thu, 01 Jan 1970 00:00:05 GMT", b"\"e\"", 5, 5), "modified this second: weak");
    }

    #[test]
    fn codings() {
        use Coding::*;
        assert_eq!(choose_coding(None, true, true), Some(Identity));
        assert_eq!(choose_coding(Some(b"gzip, deflate, br"), true, true), Some(Br));
        assert_eq!(choose_coding(Some(b"gzip, deflate, br"), false, true), Some(Gzip));
        assert_eq!(choose_coding(Some(b"br;q=0.5, gzip;q=0.8"), true, true), Some(Gzip));
        assert_eq!(choose_coding(Some(b"gzip;q=0"), false, true), Some(Identity));
        assert_eq!(choose_coding(Some(b"identity;q=0"), false, false), None);
        assert_eq!(choose_coding(Some(b"gzip;q=0.1, identity;q=0"), false, true), Some(Gzip));
        assert_eq!(choose_coding(Some(b"*;q=0"), false, true), None);
        assert_eq!(choose_coding(Some(b"*;q=0, identity"), false, true), Some(Identity));
        assert_eq!(choose_coding(Some(b"*"), true, false), Some(Br));
        assert_eq!(choose_coding(Some(b""), true, true), Some(Identity));
        assert_eq!(choose_coding(Some(b"GZIP;Q=1.000"), false, true), Some(Gzip));
        assert_eq!(choose_coding(Some(b"gzip;q=2"), false, true), Some(Identity), "bad qvalue: not acceptable");
        assert_eq!(choose_coding(Some(b"identity;q=0.5, gzip;q=0.5"), false, true), Some(Gzip));
    }
}
