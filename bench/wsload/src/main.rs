//! WebSocket echo load: `wsload PORT PATH CONNECTIONS IN_FLIGHT SIZE SECONDS`; with `broadcast`
//! after them, CONNECTIONS listeners join the room at PATH and one more connection sends a
//! message to it whenever fewer than IN_FLIGHT of its messages are still on their way to every
//! listener; the count is of messages delivered (one per listener).
//! Each connection (a thread of its own, blocking sockets) does the handshake, sends IN_FLIGHT
//! binary messages of SIZE bytes, and sends one more for every echo it gets back, for SECONDS.
//! Prints one JSON line: messages echoed, seconds, and the connections that failed.
//! Frames are masked with a fixed key (the server cannot tell; it costs the client nothing).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

fn client_frame(size: usize) -> Vec<u8> {
    let mut f = vec![0x82u8];
    match size {
        0..=125 => f.push(0x80 | size as u8),
        126..=65535 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(size as u16).to_be_bytes());
        }
        _ => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(size as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&MASK);
    f.extend((0..size).map(|i| (i as u8) ^ MASK[i % 4]));
    f
}

/// The length of the first complete server frame in `buf`, if it is complete.
fn frame_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < 2 {
        return None;
    }
    let (n, at) = match buf[1] & 0x7F {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize, 10),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    (buf.len() >= at + n).then_some(at + n)
}

fn run(port: u16, path: &str, in_flight: usize, size: usize, stop: &AtomicBool, count: &AtomicU64) -> std::io::Result<()> {
    let (mut s, mut buf) = open(port, path)?;
    let mut chunk = vec![0u8; 1 << 20];
    let one = client_frame(size);
    let mut out = Vec::with_capacity(one.len() * in_flight);
    for _ in 0..in_flight {
        out.extend_from_slice(&one);
    }
    s.write_all(&out)?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    while !stop.load(Ordering::Relaxed) {
        let n = match s.read(&mut chunk) {
            Ok(0) => return Err(std::io::Error::other("closed by the server")),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
        let (mut pos, mut got) = (0, 0);
        while let Some(len) = frame_len(&buf[pos..]) {
            pos += len;
            got += 1;
        }
        buf.drain(..pos);
        if got > 0 {
            count.fetch_add(got, Ordering::Relaxed);
            out.clear();
            for _ in 0..got {
                out.extend_from_slice(&one);
            }
            s.write_all(&out)?;
        }
    }
    Ok(())
}

/// The handshake on a new connection; the bytes read past it.
fn open(port: u16, path: &str) -> std::io::Result<(TcpStream, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    // One write, as a real client sends it (some servers fail a head split across packets).
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").as_bytes())?;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 4096];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::other("closed during the handshake"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                return Err(std::io::Error::other(String::from_utf8_lossy(&buf[..i]).into_owned()));
            }
            buf.drain(..i + 4);
            return Ok((s, buf));
        }
    }
}

/// A listener of the room: counts the messages it gets.
fn listen(mut s: TcpStream, mut buf: Vec<u8>, stop: &AtomicBool, count: &AtomicU64) -> std::io::Result<()> {
    let mut chunk = vec![0u8; 1 << 16];
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    while !stop.load(Ordering::Relaxed) {
        let (mut pos, mut got) = (0, 0);
        while let Some(len) = frame_len(&buf[pos..]) {
            pos += len;
            got += 1;
        }
        buf.drain(..pos);
        count.fetch_add(got, Ordering::Relaxed);
        match s.read(&mut chunk) {
            Ok(0) => return Err(std::io::Error::other("closed by the server")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn broadcast(port: u16, path: &str, listeners: usize, in_flight: u64, size: usize, secs: f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut failed = 0;
    let mut threads = Vec::new();
    for _ in 0..listeners {
        let (s, buf) = match open(port, path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("wsload: a listener could not join: {e}");
                failed += 1;
                continue;
            }
        };
        let (stop, count) = (stop.clone(), count.clone());
        threads.push(std::thread::Builder::new().stack_size(128 * 1024).spawn(move || {
            if let Err(e) = listen(s, buf, &stop, &count) {
                if !stop.load(Ordering::Relaxed) {
                    eprintln!("wsload: {e}");
                }
            }
        }).expect("a thread"));
    }
    let listeners = threads.len();
    std::thread::sleep(Duration::from_millis(500)); // every listener is in the room
    let (mut sender, _) = open(port, path).expect("the sender joins the room");
    let one = client_frame(size);
    let listeners = listeners as u64 + 1; // the sender is in the room too (its own copies are not read)
    let (mut sent, mut started, mut c0, mut t0) = (0u64, false, 0, Instant::now());
    let begin = Instant::now();
    loop {
        let delivered = count.load(Ordering::Relaxed);
        if !started && begin.elapsed().as_secs_f64() >= secs / 10.0 {
            (started, c0, t0) = (true, delivered, Instant::now());
            println!("{{\"event\": \"start\"}}");
        }
        if started && t0.elapsed().as_secs_f64() >= secs {
            println!("{{\"messages\": {}, \"seconds\": {:.4}, \"failed\": {failed}}}", delivered - c0, t0.elapsed().as_secs_f64());
            break;
        }
        if sent * (listeners - 1) < delivered + in_flight * (listeners - 1) {
            sender.write_all(&one).expect("the sender writes");
            sent += 1;
        } else {
            std::thread::yield_now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    drop(sender);
    for t in threads {
        let _ = t.join();
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() == 8 && a[7] == "broadcast" {
        let port: u16 = a[1].parse().expect("PORT");
        broadcast(port, &a[2], a[3].parse().expect("CONNECTIONS"), a[4].parse().expect("IN_FLIGHT"), a[5].parse().expect("SIZE"), a[6].parse().expect("SECONDS"));
        return;
    }
    if a.len() != 7 {
        eprintln!("usage: wsload PORT PATH CONNECTIONS IN_FLIGHT SIZE SECONDS [broadcast]");
        std::process::exit(2);
    }
    let port: u16 = a[1].parse().expect("PORT");
    let path = a[2].clone();
    let (conns, in_flight, size): (usize, usize, usize) = (a[3].parse().expect("CONNECTIONS"), a[4].parse().expect("IN_FLIGHT"), a[5].parse().expect("SIZE"));
    let secs: f64 = a[6].parse().expect("SECONDS");
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let (stop, count, failed, path) = (stop.clone(), count.clone(), failed.clone(), path.clone());
            std::thread::spawn(move || {
                if let Err(e) = run(port, &path, in_flight, size, &stop, &count) {
                    if !stop.load(Ordering::Relaxed) {
                        eprintln!("wsload: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // Warm up for a tenth of the time, then count.
    std::thread::sleep(Duration::from_secs_f64(secs / 10.0));
    let (c0, t0) = (count.load(Ordering::Relaxed), Instant::now());
    println!("{{\"event\": \"start\"}}");
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (c1, dt) = (count.load(Ordering::Relaxed), t0.elapsed().as_secs_f64());
    println!("{{\"messages\": {}, \"seconds\": {dt:.4}, \"failed\": {}}}", c1 - c0, failed.load(Ordering::Relaxed));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
}
