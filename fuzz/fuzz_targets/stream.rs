//! The connection state machine with an application that takes its request bodies as they
//! arrive (the path of WSGI and ASGI): an arbitrary byte stream cut at arbitrary points (the
//! first bytes choose the cuts) must never panic, and every cut must give the output of the
//! whole. The application answers `/deny...` at once (its body is then skipped or the connection
//! closed), and every other request with the length and a checksum of its body once the body is
//! complete or cut: for `/s...` in two pieces of unknown length (chunked, or close-delimited for
//! HTTP/1.0), else whole.
#![no_main]

use _core::apps::exchange::{Part, ResponseHead};
use _core::apps::reply::Reply;
use _core::apps::{App, AppCall, AppRequest, ReqBody, SharedExchange, Taken};
use _core::h1::conn::{Ctx, Proto};
use _core::h1::encode::{status_line, Clock};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

type Pending = Rc<RefCell<Vec<(SharedExchange, Arc<_core::apps::Inbox>, u64, u32, bool)>>>;

struct Echo(Pending);

impl App for Echo {
    fn streams_body(&self) -> bool {
        true
    }

    fn call(&mut self, req: &AppRequest, body: ReqBody, head_only: bool) -> AppCall {
        if req.target.starts_with(b"/deny") {
            return Reply::new(401).answer(head_only);
        }
        let ex: SharedExchange = Default::default();
        match body {
            ReqBody::Stream(inbox) => self.0.borrow_mut().push((ex.clone(), inbox, 0, 0, req.target.starts_with(b"/s"))),
            _ => {
                Reply::new(204).into_exchange(head_only, &mut ex.borrow_mut());
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
            for (ex, inbox, mut len, mut sum, streamed) in list {
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
                    None => pending.borrow_mut().push((ex, inbox, len, sum, streamed)),
                    Some(complete) => {
                        let body = format!("{len} {sum} {complete}");
                        let mut e = ex.borrow_mut();
                        if streamed {
                            let (a, b) = body.as_bytes().split_at(body.len() / 2);
                            e.push(Part::Head(ResponseHead { status: 200, status_line: status_line(200), fields: Vec::new(), length: None }));
                            e.push(Part::Body(a.to_vec()));
                            e.push(Part::Body(b.to_vec()));
                            e.push(Part::End { trailers: Vec::new() });
                        } else {
                            let mut r = Reply::new(200);
                            r.body = body.into_bytes();
                            r.into_exchange(false, &mut e);
                        }
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
