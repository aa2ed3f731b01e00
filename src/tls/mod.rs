//! TLS for a worker's listener: the certificates (several, chosen by the name the client asks
//! for), client certificates when asked, the session tickets all workers share, and whether the
//! kernel could take over the record layer. The per-connection side (reading and writing through
//! rustls) is the transport `io::tls`.
//!
//! Configuration comes from the supervisor as PEM bytes it read before dropping privileges, so a
//! key only root may read still works with `--user`.

pub mod name;
pub mod tickets;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::sync::Arc;

/// One certificate chain and its key, as PEM; `label` names them in errors (the file names).
pub struct Identity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub label: String,
}

pub struct Settings {
    /// The first answers clients that name no server, or a name no certificate is for.
    pub identities: Vec<Identity>,
    /// PEM of the CAs whose client certificates are accepted; a client without one is refused.
    pub client_ca: Option<Vec<u8>>,
    /// At least 32 random bytes, the same in every worker (see [`tickets`]).
    pub ticket_secret: Vec<u8>,
    /// ALPN protocols offered, in the server's order of preference.
    pub alpn: Vec<Vec<u8>>,
}

/// What an application may learn of a connection's TLS (the ASGI `tls` extension).
#[derive(Debug, Clone)]
pub struct TlsInfo {
    /// 0x0304 for TLS 1.3, 0x0303 for 1.2.
    pub version: u16,
    /// The IANA number of the cipher suite.
    pub cipher: u16,
    pub server_name: Option<String>,
    /// The leaf certificate the connection was answered with, as PEM.
    pub server_cert: Arc<str>,
    /// The client's certificates (leaf first) as PEM, when it sent any.
    pub client_chain: Vec<String>,
    /// The subject of the client's certificate, RFC 4514 (`CN=...,O=...`).
    pub client_name: Option<String>,
    pub alpn: Option<Vec<u8>>,
}

/// What a worker keeps: the config every new connection starts from, and the certificates (to
/// tell an application which one a connection was answered with).
pub struct Tls {
    pub config: Arc<ServerConfig>,
    pub certs: Arc<Certs>,
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates, in the order given, with their leaf as PEM.
#[derive(Debug)]
pub struct Certs {
    keys: Vec<Arc<CertifiedKey>>,
    leaf_pem: Vec<Arc<str>>,
}

impl Certs {
    /// Which certificate answers a client that asked for `name`: the first valid for it
    /// (wildcards as RFC 6125 has them), else the first one.
    pub fn pick(&self, name: Option<&str>) -> usize {
        let Some(name) = name.and_then(|n| ServerName::try_from(n).ok()) else { return 0 };
        self.keys
            .iter()
            .position(|k| {
                k.end_entity_cert()
                    .ok()
                    .and_then(|der| webpki::EndEntityCert::try_from(der).ok())
                    .is_some_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
            })
            .unwrap_or(0)
    }

    /// The leaf certificate of `pick`'s choice, as PEM.
    pub fn leaf_pem(&self, i: usize) -> Arc<str> {
        self.leaf_pem[i].clone()
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.keys[self.pick(hello.server_name())].clone())
    }
}

/// DER as PEM text.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

fn load(id: &Identity, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&id.cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: the certificate PEM does not parse ({e})", id.label))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in it (want PEM: -----BEGIN CERTIFICATE-----)", id.label));
    }
    if let Err(e) = webpki::EndEntityCert::try_from(&chain[0]) {
        return Err(format!("{}: the first certificate is not a valid X.509 certificate ({e})", id.label));
    }
    let key = PrivateKeyDer::from_pem_slice(&id.key_pem).map_err(|e| format!("{}: no private key found ({e})", id.label))?;
    let ck = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!("{}: the private key does not belong to the certificate", id.label),
        e => format!("{}: {e}", id.label),
    })?;
    ck.keys_match().map_err(|_| format!("{}: the private key does not belong to the certificate", id.label))?;
    Ok(ck)
}

/// Build the server side from PEM: every problem is one line naming the file.
pub fn build(s: &Settings) -> Result<Tls, String> {
    if s.identities.is_empty() {
        return Err("TLS needs at least one certificate".into());
    }
    let provider = provider();
    let mut keys = Vec::new();
    let mut leaf_pem = Vec::new();
    for id in &s.identities {
        let ck = load(id, &provider)?;
        leaf_pem.push(Arc::from(pem("CERTIFICATE", ck.cert[0].as_ref())));
        keys.push(Arc::new(ck));
    }
    let certs = Arc::new(Certs { keys, leaf_pem });
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match &s.client_ca {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(pem) {
                let c = c.map_err(|e| format!("--tls-client-ca: the PEM does not parse ({e})"))?;
                roots.add(c).map_err(|e| format!("--tls-client-ca: {e}"))?;
            }
            if roots.is_empty() {
                return Err("--tls-client-ca: no certificate in it".into());
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("--tls-client-ca: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(certs.clone());
    config.alpn_protocols = s.alpn.clone();
    config.ticketer = Arc::new(tickets::Tickets::new(&s.ticket_secret, tickets::PERIOD_SECS).ok_or("TLS: the ticket secret must be 32 bytes or more")?);
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(1024);
    Ok(Tls { config: Arc::new(config), certs })
}

/// Whether this kernel can take the TLS record layer over (kTLS): the `tls` upper-layer protocol
/// exists (asking for it loads the module where there is one). An unconnected socket answers
/// ENOTCONN when it does, ENOENT when it does not.
pub fn kernel_tls_available() -> bool {
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return false;
        }
        let r = libc::setsockopt(fd, libc::SOL_TCP, libc::TCP_ULP, b"tls\0".as_ptr().cast(), 3);
        let err = *libc::__errno_location();
        libc::close(fd);
        r == 0 || err == libc::ENOTCONN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_tls_probe_agrees_with_the_kernels_list() {
        let probed = kernel_tls_available();
        // after the probe, a tls module that exists is loaded and listed
        let listed = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp").unwrap_or_default();
        assert_eq!(probed, listed.split_whitespace().any(|u| u == "tls"), "listed: {listed:?}");
    }

    #[test]
    fn pem_wraps_at_64() {
        let p = pem("CERTIFICATE", &[0u8; 100]);
        let lines: Vec<&str> = p.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines.last(), Some(&"-----END CERTIFICATE-----"));
        let der: Vec<CertificateDer> = CertificateDer::pem_slice_iter(p.as_bytes()).collect::<Result<_, _>>().unwrap();
        assert_eq!(der[0].as_ref(), &[0u8; 100][..]);
    }

    #[test]
    fn bad_pem_is_one_line_naming_the_file() {
        let s = |cert: &[u8], key: &[u8]| Settings {
            identities: vec![Identity { cert_pem: cert.to_vec(), key_pem: key.to_vec(), label: "site.pem".into() }],
            client_ca: None,
            ticket_secret: vec![1; 32],
            alpn: vec![],
        };
        let e = build(&s(b"", b"")).err().unwrap();
        assert!(e.starts_with("site.pem: no certificate"), "{e}");
        let junk = pem("CERTIFICATE", b"not a certificate");
        let e = build(&s(junk.as_bytes(), b"")).err().unwrap();
        assert!(e.contains("not a valid X.509"), "{e}");
        assert!(!e.contains('\n'));
    }
}
