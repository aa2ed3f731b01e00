//! One connection's TLS over its socket: rustls' buffered sans-io `ServerConnection` driven by
//! the loop (as rustls' `tlsserver-mio` example drives it). Ciphertext is read and written
//! through [`Raw`]: the socket with plain syscalls, or the connection's side of the io_uring
//! (`--io uring`); what rustls decrypts goes to the caller's buffer, so `h1` sees the
//! same bytes it would from a plain socket. Files go out by `pread` and encryption (never read
//! from a mapping: a file truncated meanwhile would raise SIGBUS in user space).

use super::ring::RingWire;
use super::sys::errno;
use super::transport::{Io, Transport};
use rustls::ServerConnection;
use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use crate::tls::TlsInfo;

pub struct Tls {
    conn: ServerConnection,
    /// Plaintext rustls holds, not yet read.
    plain: usize,
    /// The client sent close_notify.
    closed: bool,
    /// Nothing has been received yet: the first byte tells TLS from plain HTTP.
    fresh: bool,
    /// The first bytes were not a TLS record; `plain_http`: they were an HTTP request.
    not_tls: bool,
    pub plain_http: bool,
}

/// Where the ciphertext goes: the socket, or the connection's side of the ring.
pub enum Raw<'a> {
    Fd(i32),
    Ring(RingWire<'a>),
}

impl Raw<'_> {
    /// The first byte received, left to be read (a TLS record starts with 22).
    fn peek(&mut self) -> Result<u8, Io> {
        match self {
            Raw::Fd(fd) => loop {
                let mut first = [0u8; 1];
                match unsafe { libc::recv(*fd, first.as_mut_ptr().cast(), 1, libc::MSG_PEEK) } {
                    1 => return Ok(first[0]),
                    0 => return Err(Io::Done(0)),
                    _ if errno() == libc::EAGAIN => return Err(Io::Blocked),
                    _ if errno() == libc::EINTR => continue,
                    _ => return Err(Io::Error),
                }
            },
            Raw::Ring(w) => w.peek(),
        }
    }
}

/// The transport's answer as std::io's (the way rustls takes it).
fn as_io(r: Io) -> std::io::Result<usize> {
    match r {
        Io::Done(n) => Ok(n),
        Io::Blocked => Err(std::io::ErrorKind::WouldBlock.into()),
        Io::Error => Err(std::io::ErrorKind::ConnectionReset.into()),
    }
}

impl Read for Raw<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let fd = match self {
            Raw::Fd(fd) => *fd,
            Raw::Ring(w) => return as_io(w.read_into(buf)),
        };
        loop {
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            match errno() {
                libc::EINTR => continue,
                _ => return Err(std::io::Error::last_os_error()),
            }
        }
    }
}

impl Write for Raw<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_vectored(&[std::io::IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        // IoSlice is ABI-compatible with iovec on Unix (std's guarantee).
        let iov: &[libc::iovec] = unsafe { std::slice::from_raw_parts(bufs.as_ptr().cast(), bufs.len().min(1024)) };
        let fd = match self {
            Raw::Fd(fd) => *fd,
            Raw::Ring(w) => return as_io(w.writev(iov, false)),
        };
        loop {
            let n = unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as i32) };
            if n >= 0 {
                return Ok(n as usize);
            }
            match errno() {
                libc::EINTR => continue,
                _ => return Err(std::io::Error::last_os_error()),
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn blocked(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock
}

/// Bytes read from a file per encryption: four full records.
const FILE_CHUNK: usize = 64 * 1024;

thread_local! {
    static FILE_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Tls {
    pub fn new(config: &Arc<rustls::ServerConfig>) -> Option<Box<Tls>> {
        let conn = ServerConnection::new(config.clone()).ok()?;
        Some(Box::new(Tls { conn, plain: 0, closed: false, fresh: true, not_tls: false, plain_http: false }))
    }

    pub fn handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Ciphertext is waiting to be written.
    pub fn holds_output(&self) -> bool {
        self.conn.wants_write()
    }

    /// Plaintext is waiting to be read (none from the socket is needed).
    pub fn holds_input(&self) -> bool {
        self.plain > 0
    }

    pub fn info(&self, certs: &crate::tls::Certs) -> TlsInfo {
        let name = self.conn.server_name().map(str::to_owned);
        TlsInfo {
            version: self.conn.protocol_version().map(u16::from).unwrap_or(0),
            cipher: self.conn.negotiated_cipher_suite().map(|s| u16::from(s.suite())).unwrap_or(0),
            server_cert: certs.leaf_pem(certs.pick(name.as_deref())),
            server_name: name,
            client_chain: self.conn.peer_certificates().unwrap_or(&[]).iter().map(|c| crate::tls::pem("CERTIFICATE", c.as_ref())).collect(),
            alpn: self.conn.alpn_protocol().map(<[u8]>::to_vec),
            client_name: self.conn.peer_certificates().and_then(|c| c.first()).and_then(|c| crate::tls::name::subject_rfc4514(c.as_ref())),
        }
    }

    /// Write what rustls holds (handshake messages, alerts, records) until it is out or the
    /// socket is full.
    pub fn write_out(&mut self, raw: &mut Raw<'_>) -> Io {
        while self.conn.wants_write() {
            match self.conn.write_tls(raw) {
                Ok(_) => {}
                Err(e) if blocked(&e) => return Io::Blocked,
                Err(_) => return Io::Error,
            }
        }
        Io::Done(0)
    }

    /// The connection ends in order: tell the client (close_notify), as far as the socket takes it.
    pub fn close_notify(&mut self, raw: &mut Raw<'_>) {
        if self.not_tls {
            return; // no alert to someone who does not speak TLS
        }
        self.conn.send_close_notify();
        let _ = self.write_out(raw);
    }

    pub fn read(&mut self, raw: &mut Raw<'_>, buf: &mut [MaybeUninit<u8>]) -> Io {
        loop {
            if self.plain > 0 && !buf.is_empty() {
                let n = self.plain.min(buf.len());
                // SAFETY: the first n bytes are initialized here before the slice is made.
                let dst = unsafe {
                    std::ptr::write_bytes(buf.as_mut_ptr(), 0, n);
                    std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), n)
                };
                match self.conn.reader().read(dst) {
                    Ok(k) if k > 0 => {
                        self.plain -= k;
                        if self.plain == 0 {
                            // records read with the last ones may be complete but not yet
                            // decrypted: the socket will not signal them again
                            if let Ok(state) = self.conn.process_new_packets() {
                                self.plain = state.plaintext_bytes_to_read();
                            }
                        }
                        return Io::Done(k);
                    }
                    _ => self.plain = 0,
                }
            }
            if self.closed {
                return Io::Done(0);
            }
            let got = if self.fresh {
                // peek at the first byte: a TLS handshake record starts with 22
                match raw.peek() {
                    Ok(first) => {
                        self.fresh = false;
                        if first != 0x16 {
                            self.not_tls = true;
                            self.plain_http = first.is_ascii_uppercase();
                            return Io::Error;
                        }
                        self.conn.read_tls(raw)
                    }
                    Err(r) => return r,
                }
            } else {
                self.conn.read_tls(raw)
            };
            match got {
                Ok(0) => return Io::Done(0),
                Ok(_) => {}
                Err(e) if blocked(&e) => return Io::Blocked,
                Err(_) => return Io::Error,
            }
            match self.conn.process_new_packets() {
                Ok(state) => {
                    self.plain = state.plaintext_bytes_to_read();
                    self.closed = state.peer_has_closed();
                }
                Err(_) => {
                    let _ = self.write_out(raw); // the alert that says why
                    return Io::Error;
                }
            }
            if self.conn.wants_write() && self.write_out(raw) == Io::Error {
                return Io::Error; // the handshake's reply could not be written
            }
        }
    }

    pub fn writev(&mut self, raw: &mut Raw<'_>, iov: &[libc::iovec]) -> Io {
        match self.write_out(raw) {
            Io::Done(_) => {}
            other => return other,
        }
        // SAFETY: IoSlice is ABI-compatible with iovec on Unix (std's guarantee).
        let slices: &[std::io::IoSlice<'_>] = unsafe { std::slice::from_raw_parts(iov.as_ptr().cast(), iov.len()) };
        let n = self.conn.writer().write_vectored(slices).unwrap_or(0);
        if self.write_out(raw) == Io::Error {
            return Io::Error;
        }
        if n == 0 {
            Io::Blocked
        } else {
            Io::Done(n)
        }
    }

    pub fn sendfile(&mut self, raw: &mut Raw<'_>, file: &OwnedFd, off: u64, len: usize) -> Io {
        match self.write_out(raw) {
            Io::Done(_) => {}
            other => return other,
        }
        FILE_BUF.with_borrow_mut(|buf| {
            buf.resize(FILE_CHUNK, 0);
            let want = len.min(FILE_CHUNK);
            let got = loop {
                let n = unsafe { libc::pread(file.as_raw_fd(), buf.as_mut_ptr().cast(), want, off as libc::off_t) };
                if n >= 0 {
                    break n as usize;
                }
                if errno() != libc::EINTR {
                    return Io::Error;
                }
            };
            if got == 0 {
                return Io::Done(0); // the file is shorter than its head said
            }
            let iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: got };
            self.writev(raw, &[iov])
        })
    }
}
