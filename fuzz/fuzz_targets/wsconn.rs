//! A connection that becomes a WebSocket, through `h1::conn`: a valid handshake (offering
//! permessage-deflate when the first byte says so), then arbitrary bytes as the client's frames,
//! cut where the first byte says. An application accepts at once and echoes every message
//! (closing when one says "close"). The connection must never panic, never deliver a message
//! past the limit, and give the same output for the stream cut as whole.
#![no_main]

use _core::apps::exchange::{Part, ResponseHead};
use _core::apps::ws::{Mail, Mailbox, Offer};
use _core::apps::{App, AppCall, AppRequest, ReqBody, SharedExchange};
use _core::h1::conn::{Ctx, Proto};
use _core::h1::encode::Clock;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

type Open = Rc<RefCell<Vec<(SharedExchange, Arc<Mailbox>)>>>;

struct Echo(Open);

impl App for Echo {
    fn call(&mut self, _: &AppRequest, _: ReqBody, _: bool) -> AppCall {
        AppCall::Answer(Vec::new())
    }

    fn takes_websocket(&self, _: &AppRequest) -> bool {
        true
    }

    fn websocket(&mut self, _: &AppRequest, _: Offer, mailbox: Arc<Mailbox>) -> SharedExchange {
        let ex: SharedExchange = Default::default();
        ex.borrow_mut().push(Part::Head(ResponseHead { status: 101, status_line: b"101 Switching Protocols"[..].into(), fields: Vec::new(), length: None }));
        self.0.borrow_mut().push((ex.clone(), mailbox));
        ex
    }
}

const MAX: u64 = 4096;

fn run(chunks: &[&[u8]]) -> Vec<u8> {
    let open: Open = Default::default();
    // A fixed date: the two runs of an input must not straddle a second.
    let mut ctx = Ctx::new(Clock { sec: 0, date: *b"Thu, 01 Jan 1970 00:00:00 GMT" }, Vec::new(), Some(Box::new(Echo(open.clone()))));
    ctx.ws_max_message = MAX;
    let mut p = Proto::default();
    let mut input = Vec::new();
    for c in chunks {
        input.extend_from_slice(c);
        loop {
            let n = p.feed(&input, &mut ctx);
            assert!(n <= input.len());
            input.drain(..n);
            let mut moved = p.take_app_output(&mut ctx);
            for (ex, mailbox) in open.borrow().iter() {
                loop {
                    match mailbox.take().0 {
                        Mail::Message(m) => {
                            assert!(m.len() as u64 <= MAX, "a message past the limit was delivered");
                            let close = m.bytes() == b"close";
                            ex.borrow_mut().push(if close { Part::Close(1000, String::new()) } else { Part::Message(m) });
                            moved = true;
                        }
                        Mail::Closed(..) => {
                            ex.borrow_mut().finished = true;
                            break;
                        }
                        Mail::Empty => break,
                    }
                }
            }
            p.take_app_output(&mut ctx);
            if n == 0 && !moved {
                break;
            }
        }
    }
    p.out.to_bytes()
}

fuzz_target!(|data: &[u8]| {
    let Some((&c, frames)) = data.split_first() else { return };
    let deflate = c & 1 == 1;
    let ext = if deflate { "Sec-WebSocket-Extensions: permessage-deflate\r\n" } else { "" };
    let mut stream = format!("GET /ws HTTP/1.1\r\nHost: f\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n").into_bytes();
    stream.extend_from_slice(frames);
    let cut = (c as usize >> 1) % (stream.len() + 1);
    let whole = run(&[&stream]);
    assert!(whole.starts_with(b"HTTP/1.1 101 "), "the handshake is accepted");
    assert_eq!(whole, run(&[&stream[..cut], &stream[cut..]]), "cut at {cut}");
});
