//! The io_uring transport (`io::ring`) over a real ring and a loopback TCP pair, driven by an
//! arbitrary sequence of the loop's moves: the peer sends, the connection reads in pieces of any
//! size, writes of any sizes (staged, or straight to the socket), sends, turns of the ring, the
//! recv stopped and started again, the peer reads. Whatever the order, nothing may panic, and
//! once the ring is drained every byte arrives once and in order, both ways.
#![no_main]

use _core::io::ring::{Op, Ring, RingSock, RingWire};
use _core::io::transport::{Io, Transport};
use libfuzzer_sys::fuzz_target;
use std::os::fd::IntoRawFd;

const GEN: u64 = 9;

fn out_byte(i: usize) -> u8 {
    (i * 31 + 7) as u8 % 251
}

fn in_byte(i: usize) -> u8 {
    (i * 17 + 3) as u8 % 253
}

fn tcp_pair() -> (i32, i32) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (ours, _) = l.accept().unwrap();
    ours.set_nonblocking(true).unwrap();
    peer.set_nonblocking(true).unwrap();
    (ours.into_raw_fd(), peer.into_raw_fd())
}

struct Run {
    ring: Ring,
    sock: RingSock,
    ours: i32,
    peer: i32,
    /// Bytes the connection wrote (accepted by the transport) and the peer got.
    written: usize,
    got: Vec<u8>,
    /// Bytes the peer sent and the connection read.
    sent: usize,
    read: Vec<u8>,
    want_input: bool,
}

impl Run {
    /// One turn: completions handled as the loop handles them.
    fn turn(&mut self, timeout_ms: i32) -> bool {
        self.ring.wait(timeout_ms, false).unwrap();
        let list = self.ring.take();
        let any = !list.is_empty();
        for c in &list {
            assert!(c.is_for(GEN) || c.op == Some(Op::Cancel), "a completion for another connection");
            match c.op {
                Some(Op::Recv) => {
                    self.ring.received(c, &mut self.sock);
                    if !c.more() && self.want_input {
                        self.ring.recv(self.ours, GEN, &mut self.sock);
                    }
                }
                Some(Op::Send) => {
                    assert!(c.res >= 0, "a send failed: {}", c.res);
                    self.ring.sent(c, &mut self.sock);
                }
                Some(Op::PollOut) => self.sock.polled(),
                Some(Op::Cancel) => {}
                other => panic!("unexpected completion {other:?}"),
            }
        }
        self.ring.keep(list);
        any
    }

    fn wire(&mut self) -> RingWire<'_> {
        RingWire { fd: self.ours, sock: &mut self.sock }
    }

    fn read(&mut self, n: usize) {
        let mut buf = vec![0u8; n.max(1)];
        if let Io::Done(k) = self.wire().read_into(&mut buf) {
            assert!(k > 0, "the peer never ends its side");
            self.read.extend_from_slice(&buf[..k]);
            let at = self.read.len() - k;
            assert!((at..self.read.len()).all(|i| self.read[i] == in_byte(i)), "input out of order");
        }
    }

    fn write(&mut self, sizes: &[usize]) {
        let bytes: Vec<Vec<u8>> = sizes.iter().scan(self.written, |at, &n| {
            let v: Vec<u8> = (*at..*at + n).map(out_byte).collect();
            *at += n;
            Some(v)
        }).collect();
        let iov: Vec<libc::iovec> = bytes.iter().map(|b| libc::iovec { iov_base: b.as_ptr() as *mut _, iov_len: b.len() }).collect();
        match self.wire().writev(&iov, false) {
            Io::Done(n) => {
                assert!(n <= sizes.iter().sum::<usize>());
                self.written += n;
            }
            Io::Blocked => {}
            other => panic!("write: {other:?}"),
        }
    }

    fn peer_send(&mut self, n: usize) {
        let v: Vec<u8> = (self.sent..self.sent + n).map(in_byte).collect();
        let k = unsafe { libc::write(self.peer, v.as_ptr().cast(), v.len()) };
        if k > 0 {
            self.sent += k as usize;
        }
    }

    fn peer_read(&mut self) {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let k = unsafe { libc::read(self.peer, buf.as_mut_ptr().cast(), buf.len()) };
            if k <= 0 {
                break;
            }
            let at = self.got.len();
            self.got.extend_from_slice(&buf[..k as usize]);
            assert!((at..self.got.len()).all(|i| self.got[i] == out_byte(i)), "output out of order");
        }
    }

    /// As the loop's `sync_interest` after every move: receive while input is wanted (a recv
    /// is not started while received input waits to be read).
    fn sync(&mut self) {
        if self.want_input {
            self.ring.recv(self.ours, GEN, &mut self.sock);
        }
    }

    fn set_input(&mut self, on: bool) {
        self.want_input = on;
        if on {
            self.ring.recv(self.ours, GEN, &mut self.sock);
        } else {
            self.ring.stop_recv(self.ours, GEN, &mut self.sock);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (ours, peer) = tcp_pair();
    // few buffers and a small completion queue, so the faults come quickly
    let ring = Ring::with_sizes(true, 16, 32, 4).unwrap();
    let mut r = Run { ring, sock: RingSock::default(), ours, peer, written: 0, got: Vec::new(), sent: 0, read: Vec::new(), want_input: false };
    let mut ops = data.iter().copied();
    let size = |b: u8| (b as usize).pow(2) * 5; // 0 ..= 325 KiB, small ones most often
    while let Some(op) = ops.next() {
        let arg = ops.next().unwrap_or(0);
        match op % 8 {
            0 => r.peer_send(size(arg)),
            1 => r.read(size(arg)),
            2 => {
                let n = 1 + (arg % 3) as usize;
                let sizes: Vec<usize> = (0..n).map(|_| size(ops.next().unwrap_or(0))).collect();
                r.write(&sizes);
            }
            3 => r.ring.send(ours, GEN, &mut r.sock),
            4 => {
                r.turn(0);
            }
            5 => r.set_input(arg % 2 == 0),
            6 => r.peer_read(),
            _ => {
                r.ring.send(ours, GEN, &mut r.sock);
                r.ring.submit();
            }
        }
        r.sync();
    }
    // Drain: everything written reaches the peer and everything sent is read.
    r.set_input(true);
    for _ in 0..2000 {
        r.ring.send(ours, GEN, &mut r.sock);
        r.peer_read();
        while r.sock.has_input() {
            r.read(1 << 16);
        }
        r.sync();
        if r.got.len() == r.written && r.read.len() == r.sent && !r.sock.pending() {
            break;
        }
        r.turn(5);
    }
    assert_eq!(r.got.len(), r.written, "output lost");
    assert_eq!(r.read.len(), r.sent, "input lost");
    unsafe {
        libc::close(ours);
        libc::close(peer);
    }
    drop(r); // the ring's in-flight operations end with it
});
