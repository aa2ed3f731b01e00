//! A connection's transport as the loop holds it: its socket, with TLS over it when the listener
//! is a TLS one, or its side of the io_uring (`--io uring`). The loop makes one of these per
//! call; the queue and the reads go through it.

use super::ring::{RingSock, RingWire};
use super::tee::{BodyPipe, Sent};
use super::tls::{Raw, Tls};
use super::transport::{Io, Socket, Transport};
use std::os::fd::OwnedFd;

pub struct Wire<'a> {
    pub fd: i32,
    pub tls: Option<&'a mut Tls>,
    pub ring: Option<&'a mut RingSock>,
}

impl<'a> Wire<'a> {
    pub fn new(fd: i32, tls: Option<&'a mut Box<Tls>>, ring: Option<&'a mut RingSock>) -> Self {
        Wire { fd, tls: tls.map(|t| &mut **t), ring }
    }
}

/// Where a connection's bytes (its ciphertext, with TLS) go: its socket, or its side of the ring.
pub fn raw(fd: i32, ring: Option<&mut RingSock>) -> Raw<'_> {
    match ring {
        Some(sock) => Raw::Ring(RingWire { fd, sock }),
        None => Raw::Fd(fd),
    }
}

/// Over the ring without TLS, the call goes to its side of it.
macro_rules! ring_or {
    ($w:ident, $call:ident($($a:expr),*)) => {
        if $w.tls.is_none() {
            if let Some(sock) = $w.ring.as_deref_mut() {
                return RingWire { fd: $w.fd, sock }.$call($($a),*);
            }
        }
    };
}

impl Transport for Wire<'_> {
    fn read(&mut self, buf: &mut [std::mem::MaybeUninit<u8>]) -> Io {
        ring_or!(self, read(buf));
        match &mut self.tls {
            None => Socket(self.fd).read(buf),
            Some(t) => t.read(&mut raw(self.fd, self.ring.as_deref_mut()), buf),
        }
    }

    fn writev(&mut self, iov: &[libc::iovec], more: bool) -> Io {
        ring_or!(self, writev(iov, more));
        match &mut self.tls {
            None => Socket(self.fd).writev(iov, more),
            Some(t) => t.writev(&mut raw(self.fd, self.ring.as_deref_mut()), iov),
        }
    }

    fn sendfile(&mut self, file: &OwnedFd, off: u64, len: usize) -> Io {
        ring_or!(self, sendfile(file, off, len));
        match &mut self.tls {
            None => Socket(self.fd).sendfile(file, off, len),
            Some(t) => t.sendfile(&mut raw(self.fd, self.ring.as_deref_mut()), file, off, len),
        }
    }

    fn splice(&mut self, pipe: &BodyPipe) -> Sent {
        ring_or!(self, splice(pipe));
        match &mut self.tls {
            None => Socket(self.fd).splice(pipe),
            Some(_) => Sent::Unusable, // TLS must see (and encrypt) the bytes
        }
    }

    fn flush_held(&mut self) -> Io {
        match &mut self.tls {
            None => Io::Done(0),
            Some(t) => t.write_out(&mut raw(self.fd, self.ring.as_deref_mut())),
        }
    }

    fn holds_output(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.holds_output())
    }
}
