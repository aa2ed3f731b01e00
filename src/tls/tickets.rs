//! Session tickets every worker of a server can open (RFC 8446 §4.6.1, RFC 5077): SO_REUSEPORT
//! sends a client's next connection to any worker, so a key made per process (rustls' own
//! ticketer) would make most resumptions fail. The supervisor makes one random secret before it
//! forks; each period's key is derived from it (HMAC-SHA256 of the period's number), so the
//! workers rotate together without talking, and a key is forgotten two periods after its own.
//!
//! A ticket is `period (8 bytes, big-endian) || nonce (12) || ChaCha20-Poly1305(state)`, the
//! period authenticated as associated data. One made in the current or the previous period opens.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use std::time::{SystemTime, UNIX_EPOCH};

/// Keys change every 6 hours (as rustls' and OpenSSL's own ticketers do).
pub const PERIOD_SECS: u64 = 6 * 60 * 60;

pub struct Tickets {
    secret: hmac::Key,
    period: u64,
    rng: SystemRandom,
}

impl std::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tickets").field("period", &self.period).finish_non_exhaustive()
    }
}

impl Tickets {
    /// Keys derived from `secret` (at least 32 random bytes), rotated every `period` seconds.
    pub fn new(secret: &[u8], period: u64) -> Option<Tickets> {
        if secret.len() < 32 || period == 0 {
            return None;
        }
        Some(Tickets { secret: hmac::Key::new(hmac::HMAC_SHA256, secret), period, rng: SystemRandom::new() })
    }

    fn key(&self, n: u64) -> LessSafeKey {
        let tag = hmac::sign(&self.secret, &n.to_be_bytes());
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &tag.as_ref()[..32]).expect("a 32-byte key"))
    }

    fn now(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) / self.period
    }

    pub fn seal_at(&self, plain: &[u8], n: u64) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(8 + NONCE_LEN + plain.len() + 16);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let mut body = out.split_off(8 + NONCE_LEN);
        self.key(n).seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(n.to_be_bytes()), &mut body).ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    pub fn open_at(&self, ticket: &[u8], now: u64) -> Option<Vec<u8>> {
        if ticket.len() < 8 + NONCE_LEN + 16 {
            return None;
        }
        let n = u64::from_be_bytes(ticket[..8].try_into().ok()?);
        if n != now && n.checked_add(1) != Some(now) {
            return None; // made more than one period ago (or in the future): forgotten
        }
        let nonce = Nonce::try_assume_unique_for_key(&ticket[8..8 + NONCE_LEN]).ok()?;
        let mut body = ticket[8 + NONCE_LEN..].to_vec();
        let plain = self.key(n).open_in_place(nonce, Aad::from(n.to_be_bytes()), &mut body).ok()?;
        Some(plain.to_vec())
    }
}

impl rustls::server::ProducesTickets for Tickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.period as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal_at(plain, self.now())
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open_at(cipher, self.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [7; 32];

    #[test]
    fn opens_what_any_worker_sealed_this_period_and_the_last() {
        let (a, b) = (Tickets::new(&SECRET, 60).unwrap(), Tickets::new(&SECRET, 60).unwrap());
        let t = a.seal_at(b"session state", 100).unwrap();
        assert_eq!(b.open_at(&t, 100).as_deref(), Some(&b"session state"[..]));
        assert_eq!(b.open_at(&t, 101).as_deref(), Some(&b"session state"[..]));
        assert_eq!(b.open_at(&t, 102), None, "two periods later the key is gone");
        assert_eq!(b.open_at(&t, 99), None, "not before it was made");
    }

    #[test]
    fn refuses_another_secret_a_changed_byte_or_a_short_ticket() {
        let a = Tickets::new(&SECRET, 60).unwrap();
        let other = Tickets::new(&[8; 32], 60).unwrap();
        let t = a.seal_at(b"state", 5).unwrap();
        assert_eq!(other.open_at(&t, 5), None);
        for i in 0..t.len() {
            let mut bad = t.clone();
            bad[i] ^= 1;
            assert_eq!(a.open_at(&bad, 5), None, "byte {i} changed");
        }
        assert_eq!(a.open_at(&t[..30], 5), None);
        assert_eq!(a.open_at(b"", 5), None);
        assert_ne!(a.seal_at(b"state", 5), a.seal_at(b"state", 5), "a fresh nonce each time");
        assert!(Tickets::new(&[1; 16], 60).is_none(), "a short secret is refused");
    }
}
