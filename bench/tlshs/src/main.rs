//! Full and resumed TLS handshakes between a rustls client and server in one process, the
//! bytes passed in memory; only the time spent in the server's calls is counted. Prints the
//! server's µs per handshake for TLS 1.3 and 1.2, with an ECDSA P-256 and an RSA-2048 key.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn provider() -> CryptoProvider {
    #[cfg(feature = "aws-lc-rs")]
    return rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    return rustls::crypto::ring::default_provider();
}

/// A self-signed certificate for localhost made by openssl: `newkey` is `ec` or `rsa:2048`.
fn certificate(newkey: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let dir = std::env::temp_dir().join(format!("tlshs-{}-{}", std::process::id(), newkey.replace(':', "")));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["req", "-x509", "-newkey", newkey]);
    if newkey == "ec" {
        cmd.args(["-pkeyopt", "ec_paramgen_curve:prime256v1"]);
    }
    let ok = cmd.args(["-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout").arg(&key).arg("-out").arg(&cert)
        .stderr(std::process::Stdio::null()).status().unwrap().success();
    assert!(ok, "openssl req failed");
    let c = CertificateDer::from_pem_file(&cert).unwrap();
    let k = PrivateKeyDer::from_pem_file(&key).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (c, k)
}

fn configs(newkey: &str, version: &'static rustls::SupportedProtocolVersion, tickets: bool) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let (der, key) = certificate(newkey);
    let p = Arc::new(provider());
    let mut server = ServerConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    if tickets {
        #[cfg(feature = "aws-lc-rs")]
        {
            server.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().unwrap();
        }
        #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
        {
            server.ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
        }
    } else {
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
    }
    let mut roots = RootCertStore::empty();
    roots.add(der).unwrap();
    let mut client = ClientConfig::builder_with_provider(p).with_protocol_versions(&[version]).unwrap().with_root_certificates(roots).with_no_client_auth();
    if !tickets {
        client.resumption = rustls::client::Resumption::disabled();
    }
    (Arc::new(server), Arc::new(client))
}

/// One handshake (and one byte of data each way); returns the time spent in server calls.
fn handshake(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> (Duration, bool) {
    let mut c = ClientConnection::new(client.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s: Option<ServerConnection> = None;
    let mut spent = Duration::ZERO;
    let mut buf = Vec::new();
    for _ in 0..10 {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let t = Instant::now();
        let sv = s.get_or_insert_with(|| ServerConnection::new(server.clone()).unwrap());
        let mut rd = &buf[..];
        while !rd.is_empty() {
            sv.read_tls(&mut rd).unwrap();
            sv.process_new_packets().unwrap();
        }
        let mut out = Vec::new();
        while sv.wants_write() {
            sv.write_tls(&mut out).unwrap();
        }
        spent += t.elapsed();
        let mut rd = &out[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets().unwrap();
        }
        if !c.is_handshaking() && !sv.is_handshaking() && !c.wants_write() {
            break;
        }
    }
    let resumed = c.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    (spent, resumed)
}

fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let name = if cfg!(feature = "aws-lc-rs") { "aws-lc-rs" } else { "ring" };
    for (alg, alg_name) in [("ec", "ECDSA-P256"), ("rsa:2048", "RSA-2048")] {
        for (version, vname) in [(&rustls::version::TLS13, "TLS1.3"), (&rustls::version::TLS12, "TLS1.2")] {
            for resume in [false, true] {
                let (server, client) = configs(alg, version, resume);
                handshake(&server, &client); // warm, and the first ticket
                let mut total = Duration::ZERO;
                let mut resumed = 0;
                for _ in 0..n {
                    let (d, r) = handshake(&server, &client);
                    total += d;
                    resumed += r as u32;
                }
                let kind = if resume { "resumed" } else { "full" };
                println!("{name:9} {alg_name:10} {vname} {kind:7}: {:8.1} µs server CPU per handshake ({resumed}/{n} resumed)", total.as_secs_f64() * 1e6 / n as f64);
            }
        }
    }
}
