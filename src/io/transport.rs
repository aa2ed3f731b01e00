//! The one seam between a connection and the kernel. The output queue (`out`) and the loop
//! (`worker`) move bytes only through a [`Transport`]: a plain TCP socket ([`Socket`]), TLS over
//! one (`io::tls`, chosen per connection by `io::wire`); an io_uring backend implements the same
//! calls later. Nothing above these files makes a read or write syscall on a connection.

use super::sys::errno;
use super::tee::{self, BodyPipe, Sent};
use std::os::fd::{AsRawFd, OwnedFd};

/// What one call moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// This many bytes (for a read, 0 is the peer's end of input).
    Done(usize),
    /// Nothing now: the kernel's buffer is full (write) or empty (read).
    Blocked,
    /// The connection failed.
    Error,
}

pub trait Transport {
    /// Read into `buf`.
    fn read(&mut self, buf: &mut [std::mem::MaybeUninit<u8>]) -> Io;
    /// Read into the spare room of `v` (at least `room` bytes of it), extending it by what came.
    fn read_append(&mut self, v: &mut Vec<u8>, room: usize) -> Io {
        v.reserve(room);
        let r = self.read(v.spare_capacity_mut());
        if let Io::Done(n) = r {
            // SAFETY: the kernel wrote `n` bytes of the spare room.
            unsafe { v.set_len(v.len() + n) };
        }
        r
    }
    /// Read into an initialized buffer.
    fn read_into(&mut self, buf: &mut [u8]) -> Io {
        // SAFETY: only initialized bytes are written through the view.
        self.read(unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) })
    }
    /// Write the buffers in order. `more`: further output follows at once (a file or piped
    /// body after a head), so the kernel may hold a short packet back for it.
    fn writev(&mut self, iov: &[libc::iovec], more: bool) -> Io;
    /// Send `len` bytes of `file` from `off`.
    fn sendfile(&mut self, file: &OwnedFd, off: u64, len: usize) -> Io;
    /// Send a body held in a pipe without copying it. A transport that must see the bytes (TLS)
    /// answers [`Sent::Unusable`] and the queue sends the body from memory.
    fn splice(&mut self, _pipe: &BodyPipe) -> Sent {
        Sent::Unusable
    }
    /// Write what the transport itself still holds once the queue is empty (TLS records the
    /// socket did not take yet).
    fn flush_held(&mut self) -> Io {
        Io::Done(0)
    }
    /// The transport holds output of its own (a TLS handshake's reply).
    fn holds_output(&self) -> bool {
        false
    }
}

/// A connected, non-blocking TCP socket.
pub struct Socket(pub i32);

/// Retry a call interrupted by a signal; sort its result.
fn io(mut call: impl FnMut() -> isize) -> Io {
    loop {
        let n = call();
        if n >= 0 {
            return Io::Done(n as usize);
        }
        match errno() {
            libc::EINTR => continue,
            libc::EAGAIN => return Io::Blocked,
            _ => return Io::Error,
        }
    }
}

impl Transport for Socket {
    fn read(&mut self, buf: &mut [std::mem::MaybeUninit<u8>]) -> Io {
        io(|| unsafe { libc::read(self.0, buf.as_mut_ptr().cast(), buf.len()) })
    }

    fn writev(&mut self, iov: &[libc::iovec], more: bool) -> Io {
        // One buffer (the common keep-alive case) goes out with write(2), which costs the
        // kernel a little less than writev(2) with a single iovec.
        io(|| unsafe {
            if more {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
                msg.msg_iovlen = iov.len();
                libc::sendmsg(self.0, &msg, libc::MSG_MORE | libc::MSG_NOSIGNAL)
            } else if iov.len() == 1 {
                libc::write(self.0, iov[0].iov_base, iov[0].iov_len)
            } else {
                libc::writev(self.0, iov.as_ptr(), iov.len() as i32)
            }
        })
    }

    fn sendfile(&mut self, file: &OwnedFd, off: u64, len: usize) -> Io {
        io(|| {
            let mut o = off as libc::off_t;
            unsafe { libc::sendfile(self.0, file.as_raw_fd(), &mut o, len) }
        })
    }

    fn splice(&mut self, pipe: &BodyPipe) -> Sent {
        tee::send(self.0, pipe)
    }
}
