//! The TLS-facing input of a connection (`io::tls::Tls` over a real socket pair):
//! - mode 0: the input as raw bytes from the client, in pieces: whatever it is (a broken
//!   ClientHello, records of any type), the server answers or ends without panic or hang;
//! - mode 1: a real rustls client completes a handshake (TLS 1.3 or 1.2), then sends the input as
//!   application data in records of input-chosen sizes, with a close_notify or a bare end: the
//!   server must read exactly those bytes, and what it writes back reaches the client intact;
//! - mode 255: the bytes as a certificate whose subject is written as RFC 4514;
//! - with the mode's top bit set (but 255), modes 0 and 1 run with the server's ciphertext
//!   through its side of an io_uring (`--io uring`) instead of the socket.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::sync::{Arc, OnceLock};
use _core::io::ring::{Op, Ring, RingSock, RingWire};
use _core::io::tls::{Raw, Tls};
use _core::io::transport::Io;

struct Setup {
    server: Arc<rustls::ServerConfig>,
    clients: [Arc<rustls::ClientConfig>; 2],
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
        let der: CertificateDer<'static> = cert.der().clone();
        let pem = |label: &str, d: &[u8]| _core::tls::pem(label, d).into_bytes();
        let settings = _core::tls::Settings {
            identities: vec![_core::tls::Identity { cert_pem: pem("CERTIFICATE", &der), key_pem: pem("PRIVATE KEY", &key.serialize_der()), label: "fuzz".into() }],
            client_ca: None,
            ticket_secret: vec![9; 32],
            alpn: vec![b"http/1.1".to_vec()],
        };
        let server = _core::tls::build(&settings).unwrap().config;
        let _ = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client = |v: &'static rustls::SupportedProtocolVersion| {
            Arc::new(
                rustls::ClientConfig::builder_with_provider(_core::tls::provider())
                    .with_protocol_versions(&[v])
                    .unwrap()
                    .with_root_certificates(roots.clone())
                    .with_no_client_auth(),
            )
        };
        Setup { server, clients: [client(&rustls::version::TLS13), client(&rustls::version::TLS12)] }
    })
}

fn pair() -> (i32, i32) {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) }, 0);
    (fds[0], fds[1])
}

struct Peer(i32);

impl Read for Peer {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = unsafe { libc::read(self.0, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n as usize) }
    }
}

impl Write for Peer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = unsafe { libc::write(self.0, buf.as_ptr().cast(), buf.len()) };
        if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n as usize) }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The server's side: its socket, and its side of a ring when the ciphertext goes through one.
struct Srv {
    fd: i32,
    ring: Option<(Ring, RingSock)>,
}

impl Srv {
    fn raw(&mut self) -> Raw<'_> {
        match &mut self.ring {
            Some((_, sock)) => Raw::Ring(RingWire { fd: self.fd, sock }),
            None => Raw::Fd(self.fd),
        }
    }

    /// One turn of the ring, as the loop makes it: staged bytes sent, completions handled, the
    /// recv started again. True if anything completed.
    fn pump(&mut self) -> bool {
        let Some((ring, sock)) = &mut self.ring else { return false };
        ring.send(self.fd, 1, sock);
        ring.recv(self.fd, 1, sock);
        ring.wait(0, false).unwrap();
        let list = ring.take();
        let any = !list.is_empty();
        for c in &list {
            match c.op {
                Some(Op::Recv) => ring.received(c, sock),
                Some(Op::Send) => {
                    ring.sent(c, sock);
                }
                Some(Op::PollOut) => sock.polled(),
                _ => {}
            }
        }
        ring.keep(list);
        ring.recv(self.fd, 1, sock);
        ring.send(self.fd, 1, sock);
        any
    }
}

/// Everything the server can read now: (bytes, ended).
fn drain(tls: &mut Tls, srv: &mut Srv, into: &mut Vec<u8>) -> bool {
    let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
    for _ in 0..10_000 {
        srv.pump();
        match tls.read(&mut srv.raw(), &mut buf) {
            Io::Done(0) | Io::Error => return true,
            // on the ring, what the socket holds arrives with a turn's completions
            Io::Blocked if srv.pump() => {}
            Io::Blocked => return false,
            Io::Done(n) => into.extend(buf[..n].iter().map(|b| unsafe { b.assume_init() })),
        }
    }
    panic!("read never blocked")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode == 0xff {
        // a certificate's subject as RFC 4514 (client_cert_name): any bytes, no panic
        if let Some(name) = _core::tls::name::subject_rfc4514(rest) {
            assert!(!name.contains('\0'));
        }
        return;
    }
    let on_ring = mode & 0x80 != 0;
    let mode = mode & 0x7f;
    let s = setup();
    let (fd, cli) = pair();
    let ring = on_ring.then(|| (Ring::with_sizes(true, 64, 256, 16).unwrap(), RingSock::default()));
    let mut srv = Srv { fd, ring };
    let mut tls = Tls::new(&s.server).unwrap();
    let mut got = Vec::new();
    if mode % 2 == 0 {
        let step = 1 + (mode as usize >> 1) % 64;
        for piece in rest.chunks(step) {
            if unsafe { libc::write(cli, piece.as_ptr().cast(), piece.len()) } < 0 || drain(&mut tls, &mut srv, &mut got) {
                break;
            }
        }
        assert!(got.is_empty() || !tls.handshaking(), "plaintext before the handshake ended");
    } else {
        let mut c = rustls::ClientConnection::new(s.clients[(mode as usize >> 1) % 2].clone(), ServerName::try_from("localhost").unwrap()).unwrap();
        for _ in 0..20 {
            while c.wants_write() {
                c.write_tls(&mut Peer(cli)).unwrap();
            }
            assert!(!drain(&mut tls, &mut srv, &mut got), "the server ended a good handshake");
            let _ = c.read_tls(&mut Peer(cli));
            c.process_new_packets().unwrap();
            if !c.is_handshaking() && !tls.handshaking() {
                break;
            }
        }
        assert!(!c.is_handshaking() && !tls.handshaking());
        // the input as application data, in pieces of sizes taken from the input itself
        let mut at = 0;
        let mut i = 0;
        while at < rest.len() {
            let n = (1 + rest[i % rest.len()] as usize * 37) % 20_000 + 1;
            let end = (at + n).min(rest.len());
            c.writer().write_all(&rest[at..end]).unwrap();
            while c.wants_write() {
                c.write_tls(&mut Peer(cli)).unwrap();
            }
            assert!(!drain(&mut tls, &mut srv, &mut got));
            at = end;
            i += 1;
        }
        assert_eq!(got, rest, "the server read other bytes than the client sent");
        // and back: the server writes them, the client decrypts the same
        let iov = libc::iovec { iov_base: rest.as_ptr() as *mut _, iov_len: rest.len() };
        let mut sent = 0;
        let mut back = Vec::new();
        while sent < rest.len() || tls.holds_output() || srv.ring.as_ref().is_some_and(|(_, sock)| sock.pending()) {
            if sent < rest.len() {
                let iov = libc::iovec { iov_base: unsafe { (iov.iov_base as *mut u8).add(sent) }.cast(), iov_len: rest.len() - sent };
                if let Io::Done(n) = tls.writev(&mut srv.raw(), &[iov]) {
                    sent += n;
                }
            } else {
                let _ = tls.write_out(&mut srv.raw());
            }
            srv.pump();
            while let Ok(n) = c.read_tls(&mut Peer(cli)) {
                if n == 0 {
                    break;
                }
                c.process_new_packets().unwrap();
                let _ = c.reader().read_to_end(&mut back);
            }
        }
        assert_eq!(back, rest, "the client read other bytes than the server wrote");
        c.send_close_notify();
        while c.wants_write() {
            c.write_tls(&mut Peer(cli)).unwrap();
        }
        assert!(drain(&mut tls, &mut srv, &mut got), "close_notify ends the input");
    }
    drop(srv.ring.take()); // the ring's operations end with it
    unsafe {
        libc::close(fd);
        libc::close(cli);
    }
});
