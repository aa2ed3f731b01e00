//! The connection state machine with an application that takes its request bodies as they
//! arrive (the path of WSGI and ASGI): an arbitrary byte stream cut at arbitrary points (the
//! first bytes choose the cuts) must never panic, and every cut must give the output of the
//! whole. The application answers `/deny...` at once (its body is then skipped or the connection
//! closed), and every other request with the length and a checksum of its body once the body is
//! complete or cut.
#![no_main]

use _core::apps::{App, AppCall, AppRequest, ReqBody, SharedExchange, Taken};
use _core::h1::conn::{Ctx, Proto};
use _core::h1::encode::{simple, Clock};
use _core::io::out::OutQueue;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

type Pending = Rc<RefCell<Vec<(SharedExchange, Arc<_core::apps::Inbox>, u64, u32)>>>;

struct Echo(Pending);

impl App for Echo {
    fn streams_body(&self) -> bool {
        true
    }

    fn call(&mut self, req: &AppRequest, body: ReqBody, conn: Option<&'static [u8]>, head_only: bool, clock: &Clock, out: &mut OutQueue) -> AppCall {
        if req.target.starts_with(b"/deny") {
            simple(out.owned_tail(), clock, 401, b"", conn, head_only);
            return AppCall::Done;
        }
        let ex: SharedExchange = Default::default();
        match body {
            ReqBody::Stream(inbox) => self.0.borrow_mut().push((ex.clone(), inbox, 0, 0)),
            _ => {
                ex.borrow_mut().out.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
                ex.borrow_mut().finished = true;
            }
        }
        AppCall::Pending(ex)
    }
}

fn run(clock: &Clock, chunks: &[&[u8]]) -> (Vec<u8>, bool) {
    let pending: Pending = Default::default();
    let clock = Clock { sec: clock.sec, date: clock.date };
    let mut ctx = Ctx::new(clock, Vec::new(), Some(Box::new(Echo(pending.clone()))));
    ctx.max_body = 1 << 20;
    let mut p = Proto::default();
    let mut input = Vec::new();
    for c in chunks {
        input.extend_from_slice(c);
        loop {
            let n = p.feed(&input, &mut ctx);
            assert!(n <= input.len());
            input.drain(..n);
            // The application takes what arrived; a body complete or cut gets its answer.
            let (mut answered, mut took) = (false, false);
            let list = std::mem::take(&mut *pending.borrow_mut());
            for (ex, inbox, mut len, mut sum) in list {
                let end = loop {
                    match inbox.take(usize::MAX) {
                        Taken::Data(d) => {
                            took = true;
                            len += d.len() as u64;
                            sum = d.iter().fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(b as u32));
                        }
                        Taken::Empty => break None,
                        t => break Some(t == Taken::End),
                    }
                };
                match end {
                    None => pending.borrow_mut().push((ex, inbox, len, sum)),
                    Some(complete) => {
                        let body = format!("{len} {sum} {complete}");
                        let mut e = ex.borrow_mut();
                        e.out.extend_from_slice(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
                        e.finished = true;
                        answered = true;
                    }
                }
            }
            let finished = answered && p.take_app_output(&mut ctx);
            if !finished && !(took && !input.is_empty()) {
                break; // nothing more can happen until more input comes
            }
        }
    }
    (p.out.to_bytes(), p.close_after_flush)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (cuts, stream) = data.split_at(2);
    let clock = Clock::new();
    let whole = run(&clock, &[stream]);
    let a = cuts[0] as usize % (stream.len() + 1);
    let b = a + (cuts[1] as usize % (stream.len() - a + 1));
    let split = run(&clock, &[&stream[..a], &stream[a..b], &stream[b..]]);
    assert_eq!(whole, split, "{:?}", String::from_utf8_lossy(stream));
});
