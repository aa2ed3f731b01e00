//! Who the client is behind a proxy vw trusts (`--forwarded-allow-ips`, `--proxy-headers`):
//! the client's address and the scheme it used, from RFC 7239 `Forwarded`, or else from
//! `X-Forwarded-For` and `X-Forwarded-Proto`. Protocol-neutral: the fields come from an HTTP/1.1
//! head or an HTTP/2 stream alike.
//!
//! Only a trusted peer's fields count. The client is the rightmost address of the chain that is
//! not itself trusted (each trusted proxy appends the address it got the request from; what is
//! left of an untrusted hop may be forged by anyone). A malformed value changes nothing and never
//! fails the request: the connection's own peer and scheme stand. `X-Forwarded-Host` and `-Port`
//! are not used (the `Host` a client sent stays what the application sees; frameworks read those
//! fields themselves where told to, as Django's `USE_X_FORWARDED_HOST`).

use std::net::{IpAddr, SocketAddr};

/// The peers whose forwarding fields are believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trust {
    nets: Vec<(IpAddr, u8)>,
    any: bool,
    /// A peer on a Unix socket (no address).
    unix: bool,
}

impl Trust {
    /// From `--forwarded-allow-ips` items: IPv4 or IPv6 addresses, CIDRs (`10.0.0.0/8`), `*`
    /// (every peer) and `unix` (peers on a Unix socket).
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Trust, String> {
        let mut t = Trust::default();
        for item in items {
            let item = item.as_ref().trim();
            match item {
                "" => {}
                "*" => t.any = true,
                "unix" => t.unix = true,
                _ => {
                    let (addr, bits) = match item.split_once('/') {
                        Some((a, b)) => (a, Some(b)),
                        None => (item, None),
                    };
                    let ip: IpAddr = addr.trim_matches(|c| c == '[' || c == ']').parse().map_err(|_| format!("{item:?} is not an IP address, a CIDR, * or unix"))?;
                    let max = if ip.is_ipv4() { 32 } else { 128 };
                    let bits = match bits {
                        None => max,
                        Some(b) => b.parse::<u8>().ok().filter(|&b| b <= max).ok_or_else(|| format!("{item:?}: a prefix length is 0 to {max}"))?,
                    };
                    t.nets.push((ip, bits));
                }
            }
        }
        Ok(t)
    }

    /// Whether a connection's peer (None: a Unix socket) is trusted.
    pub fn trusts(&self, peer: Option<SocketAddr>) -> bool {
        match peer {
            None => self.unix || self.any,
            Some(p) => self.trusts_ip(p.ip()),
        }
    }

    fn trusts_ip(&self, ip: IpAddr) -> bool {
        if self.any {
            return true;
        }
        let ip = canonical(ip);
        self.nets.iter().any(|&(net, bits)| match (canonical(net), ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), bits),
            _ => false,
        })
    }
}

/// An IPv4-mapped IPv6 address (a dual-stack listener's peers) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = ((bits / 8) as usize, bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// What the forwarding fields of a trusted peer say; `None`: as the connection says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// The client (port 0 when the proxy did not say it).
    pub client: Option<SocketAddr>,
    /// The client used https (or wss): Some(true); http (or ws): Some(false).
    pub https: Option<bool>,
}

/// The client and scheme behind `peer`, from a request's fields. Nothing when the peer is not
/// trusted or the fields are missing or malformed.
pub fn resolve<'a>(trust: &Trust, peer: Option<SocketAddr>, fields: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Forwarded {
    if !trust.trusts(peer) {
        return Forwarded::default();
    }
    // Repeated fields are one list, in order (RFC 9110 §5.3).
    let (mut forwarded, mut xff, mut proto): (Vec<&[u8]>, Vec<&[u8]>, Option<&[u8]>) = (Vec::new(), Vec::new(), None);
    for (name, value) in fields {
        if name.len() == 9 && name.eq_ignore_ascii_case(b"forwarded") {
            forwarded.push(value);
        } else if name.len() == 15 && name.eq_ignore_ascii_case(b"x-forwarded-for") {
            xff.push(value);
        } else if name.len() == 17 && name.eq_ignore_ascii_case(b"x-forwarded-proto") {
            proto = Some(value); // the last one: what the nearest proxy set
        }
    }
    if !forwarded.is_empty() {
        if let Some(f) = from_forwarded(trust, &forwarded) {
            return f;
        }
        return Forwarded::default();
    }
    let mut out = Forwarded::default();
    if !xff.is_empty() {
        let mut chain = Vec::new();
        for v in &xff {
            for item in split(v) {
                match node(item) {
                    Some(a) => chain.push(a),
                    None => {
                        chain.clear();
                        break; // one malformed entry: the whole field is not believed
                    }
                }
            }
        }
        out.client = pick(trust, &chain);
    }
    if let Some(p) = proto {
        // A list (a proxy that appends): its last element is what the nearest proxy saw.
        out.https = split(p).last().and_then(scheme);
    }
    out
}

/// `Forwarded: for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"` (RFC 7239 §4): the element of
/// the client (the rightmost `for` not trusted) and its `proto`. None when malformed.
fn from_forwarded(trust: &Trust, values: &[&[u8]]) -> Option<Forwarded> {
    let mut elements: Vec<(Option<SocketAddr>, Option<bool>)> = Vec::new();
    for v in values {
        for element in split(v) {
            let (mut for_, mut proto) = (None, None);
            for pair in element.split(|&b| b == b';') {
                let pair = pair.trim_ascii();
                if pair.is_empty() {
                    continue;
                }
                let eq = pair.iter().position(|&b| b == b'=')?;
                let (name, value) = (pair[..eq].trim_ascii(), unquote(pair[eq + 1..].trim_ascii())?);
                if name.eq_ignore_ascii_case(b"for") {
                    // "unknown" and obfuscated identifiers ("_hidden") name no address.
                    for_ = Some(if value.eq_ignore_ascii_case(b"unknown") || value.first() == Some(&b'_') { None } else { Some(node(value)?) });
                } else if name.eq_ignore_ascii_case(b"proto") {
                    proto = Some(scheme(value)?);
                }
            }
            elements.push((for_.flatten(), proto));
        }
    }
    // The rightmost element whose address is not trusted is the client's; when every one is
    // trusted, the leftmost.
    let at = elements.iter().rposition(|(a, _)| a.is_some_and(|a| !trust.trusts_ip(a.ip()))).or(if elements.is_empty() { None } else { Some(0) })?;
    let (client, https) = elements[at];
    Some(Forwarded { client, https })
}

fn pick(trust: &Trust, chain: &[SocketAddr]) -> Option<SocketAddr> {
    chain.iter().rev().find(|a| !trust.trusts_ip(a.ip())).or(chain.first()).copied()
}

/// Elements of a comma-separated list, trimmed, empty ones skipped.
fn split(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(|s| s.trim_ascii()).filter(|s| !s.is_empty())
}

/// A `token` or a `quoted-string` (without escapes: no address holds a `\\`).
fn unquote(v: &[u8]) -> Option<&[u8]> {
    match v {
        [b'"', inner @ .., b'"'] if !inner.contains(&b'"') && !inner.contains(&b'\\') => Some(inner),
        [b'"', ..] => None,
        v if !v.is_empty() && v.iter().all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) => Some(v),
        _ => None,
    }
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:8080`.
fn node(v: &[u8]) -> Option<SocketAddr> {
    let s = std::str::from_utf8(v).ok()?;
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(canonical(ip), 0));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, tail) = rest.split_once(']')?;
        let ip: IpAddr = ip.parse().ok()?;
        let port = match tail {
            "" => 0,
            t => t.strip_prefix(':')?.parse().ok()?,
        };
        return Some(SocketAddr::new(canonical(ip), port));
    }
    let a: SocketAddr = s.parse().ok()?;
    a.is_ipv4().then_some(a)
}

fn scheme(v: &[u8]) -> Option<bool> {
    if v.eq_ignore_ascii_case(b"https") || v.eq_ignore_ascii_case(b"wss") {
        Some(true)
    } else if v.eq_ignore_ascii_case(b"http") || v.eq_ignore_ascii_case(b"ws") {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    fn go(trust: &Trust, p: Option<SocketAddr>, fields: &[(&str, &str)]) -> Forwarded {
        resolve(trust, p, fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    #[test]
    fn the_trust_list_takes_addresses_cidrs_any_and_unix() {
        let t = Trust::parse(&["127.0.0.1", "::1", "10.0.0.0/8", "fd00::/8", "192.168.1.128/25"]).unwrap();
        for yes in ["127.0.0.1:1", "[::1]:1", "10.200.3.4:80", "[fd12::1]:1", "192.168.1.200:5", "[::ffff:10.1.2.3]:9"] {
            assert!(t.trusts(peer(yes)), "{yes}");
        }
        for no in ["127.0.0.2:1", "11.0.0.1:1", "[fe80::1]:1", "192.168.1.127:5", "[::2]:1"] {
            assert!(!t.trusts(peer(no)), "{no}");
        }
        assert!(!t.trusts(None), "a Unix peer only with `unix`");
        assert!(Trust::parse(&["unix"]).unwrap().trusts(None));
        assert!(Trust::parse(&["*"]).unwrap().trusts(peer("8.8.8.8:1")));
        for bad in ["10.0.0.0/33", "fd00::/129", "example.com", "1.2.3", "10.0.0.0/x"] {
            assert!(Trust::parse(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn x_forwarded_for_gives_the_rightmost_untrusted_address() {
        let t = Trust::parse(&["127.0.0.1", "10.0.0.0/8"]).unwrap();
        let local = peer("127.0.0.1:5000");
        let f = go(&t, local, &[("X-Forwarded-For", "203.0.113.9, 198.51.100.7, 10.1.1.1"), ("X-Forwarded-Proto", "https")]);
        assert_eq!(f, Forwarded { client: peer("198.51.100.7:0"), https: Some(true) }, "what is left of an untrusted hop may be forged");
        assert_eq!(go(&t, local, &[("x-forwarded-for", "10.0.0.5, 10.0.0.6")]).client, peer("10.0.0.5:0"), "all trusted: the leftmost");
        assert_eq!(go(&t, local, &[("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-For", "2001:db8::7")]).client, "[2001:db8::7]:0".parse().ok());
        assert_eq!(go(&t, local, &[("X-Forwarded-For", "[2001:db8::7]:443")]).client, "[2001:db8::7]:443".parse().ok());
        assert_eq!(go(&t, local, &[("X-Forwarded-Proto", "http, https")]).https, Some(true), "the nearest proxy's");
        assert_eq!(go(&t, local, &[("X-Forwarded-Proto", "wss")]).https, Some(true));
        assert_eq!(go(&t, local, &[("X-Forwarded-Proto", "ws")]).https, Some(false));
        // Malformed: nothing changes, nothing fails.
        for (name, value) in [("X-Forwarded-For", "203.0.113.9, not-an-ip"), ("X-Forwarded-For", "1.2.3.4.5"), ("X-Forwarded-For", "[::1"),
            ("X-Forwarded-Proto", "gopher"), ("X-Forwarded-For", "\u{e9}")] {
            assert_eq!(go(&t, local, &[(name, value)]), Forwarded::default(), "{name}: {value}");
        }
        // From a peer that is not trusted, nothing is believed.
        assert_eq!(go(&t, peer("198.51.100.1:1"), &[("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-Proto", "https")]), Forwarded::default());
    }

    #[test]
    fn forwarded_is_read_by_its_grammar_and_wins() {
        let t = Trust::parse(&["127.0.0.1"]).unwrap();
        let local = peer("127.0.0.1:5000");
        let f = go(&t, local, &[("Forwarded", "for=192.0.2.60;proto=https;by=203.0.113.43"), ("X-Forwarded-For", "1.1.1.1")]);
        assert_eq!(f, Forwarded { client: peer("192.0.2.60:0"), https: Some(true) });
        let f = go(&t, local, &[("Forwarded", r#"for="[2001:db8:cafe::17]:4711";proto=http, for=127.0.0.1;proto=https"#)]);
        assert_eq!(f, Forwarded { client: "[2001:db8:cafe::17]:4711".parse().ok(), https: Some(false) }, "the client's element, its proto");
        assert_eq!(go(&t, local, &[("Forwarded", "for=unknown;proto=https")]), Forwarded { client: None, https: Some(true) });
        assert_eq!(go(&t, local, &[("Forwarded", "For=\"_gazonk\"")]).client, None);
        for bad in ["for=192.0.2.60;proto", "for=\"[::1]:80", "for=300.1.1.1", "proto=gopher", "for=[::1]"] {
            assert_eq!(go(&t, local, &[("Forwarded", bad), ("X-Forwarded-For", "1.1.1.1")]), Forwarded::default(), "{bad}");
        }
    }
}
