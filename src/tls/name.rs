//! The subject of an X.509 certificate as an RFC 4514 string ("CN=client,O=Example"), for the
//! ASGI TLS extension's `client_cert_name`. A small DER walk: Certificate → TBSCertificate →
//! subject (RFC 5280 §4.1), each attribute by its short name or as a dotted OID with its value
//! in hex (RFC 4514 §2.4). Anything it cannot read gives None.

/// One DER element: (tag, contents, the rest after it).
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |a, &b| a << 8 | b as usize), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

fn oid_text(oid: &[u8]) -> Option<String> {
    let (&first, rest) = oid.split_first()?;
    let mut parts = vec![(first / 40).min(2) as u64, (first as u64).saturating_sub(40 * (first / 40).min(2) as u64)];
    let mut v: u64 = 0;
    for &b in rest {
        v = v.checked_mul(128)? | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            parts.push(v);
            v = 0;
        }
    }
    Some(parts.iter().map(u64::to_string).collect::<Vec<_>>().join("."))
}

fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// A value as RFC 4514 §2.4 writes it: specials escaped with a backslash.
fn escape(v: &str, out: &mut String) {
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && (c == ' ' || c == '#'))
            || (i == last && c == ' ');
        if c == '\0' {
            out.push_str("\\00");
            continue;
        }
        if special {
            out.push('\\');
        }
        out.push(c);
    }
}

fn attribute(atv: &[u8], out: &mut String) -> Option<()> {
    let (tag, body, _) = element(atv)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, oid, rest) = element(body)?;
    if tag != OID {
        return None;
    }
    let (vtag, value, after) = element(rest)?;
    let value_der = &rest[..rest.len() - after.len()];
    let dotted = oid_text(oid)?;
    // strings: UTF8String, PrintableString, IA5String, TeletexString (as Latin-1), BMPString
    let text = match vtag {
        0x0c | 0x13 | 0x16 => std::str::from_utf8(value).ok().map(str::to_owned),
        0x14 => Some(value.iter().map(|&b| b as char).collect()),
        0x1e => char::decode_utf16(value.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).collect::<Result<String, _>>().ok(),
        _ => None,
    };
    match (short_name(&dotted), text) {
        (Some(name), Some(text)) => {
            out.push_str(name);
            out.push('=');
            escape(&text, out);
        }
        _ => {
            // an unknown type or a value that is not a string: the OID and the DER in hex
            out.push_str(&dotted);
            out.push_str("=#");
            for b in value_der {
                out.push_str(&format!("{b:02x}"));
            }
        }
    }
    Some(())
}

/// The subject of a DER certificate, RFC 4514: the last RDN first, `+` inside a multi-valued one.
pub fn subject_rfc4514(cert: &[u8]) -> Option<String> {
    let (_, certificate, _) = element(cert).filter(|e| e.0 == SEQUENCE)?;
    let (_, tbs, _) = element(certificate).filter(|e| e.0 == SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2; // [0] version
    }
    for _ in 0..4 {
        rest = element(rest)?.2; // serial, signature algorithm, issuer, validity
    }
    let (tag, mut subject, _) = element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rdns = Vec::new();
    while !subject.is_empty() {
        let (tag, set, after) = element(subject)?;
        if tag != SET {
            return None;
        }
        let mut one = String::new();
        let mut atvs = set;
        while !atvs.is_empty() {
            let next = element(atvs)?.2;
            if !one.is_empty() {
                one.push('+');
            }
            attribute(&atvs[..atvs.len() - next.len()], &mut one)?;
            atvs = next;
        }
        rdns.push(one);
        subject = after;
    }
    rdns.reverse();
    Some(rdns.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_rfc4514_says() {
        let mut s = String::new();
        escape(" a,b+c#\"", &mut s);
        assert_eq!(s, "\\ a\\,b\\+c#\\\"");
        let mut s = String::new();
        escape("#x ", &mut s);
        assert_eq!(s, "\\#x\\ ");
    }

    #[test]
    fn oids_print_dotted() {
        assert_eq!(oid_text(&[0x55, 0x04, 0x03]).as_deref(), Some("2.5.4.3"));
        assert_eq!(oid_text(&[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19]).as_deref(), Some("0.9.2342.19200300.100.1.25"));
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        for bad in [&b""[..], b"\x30", b"\x30\x82\xff\xff", b"\x30\x03\x30\x01\x00", b"\x04\x00"] {
            assert_eq!(subject_rfc4514(bad), None);
        }
    }
}
