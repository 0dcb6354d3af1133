//! Answers of finished misses, held on the worker's thread and sent
//! together. A miss's task that sent its own answer would pay a `sendto` and
//! the kernel's whole output path for it, and, on a busy client, often the
//! wake-up of the client's thread; held, the answers of one scheduler pass
//! leave in one `sendmmsg`, and those of one size to one client as one
//! segmented message ([`SendBatch`]).
//!
//! Nothing waits for a timer: held answers leave just before the worker
//! parks (the runtime's `on_thread_park` hook, [`flush`]), when the receive
//! loop finds its socket empty or sends its own answers, before each new
//! miss's upstream exchange, and whenever [`BATCH`] answers are held for one
//! socket. A worker with nothing else to do parks as soon as the miss's task
//! ends, so an idle worker's answer leaves at once.

use std::cell::RefCell;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use super::batch::{SendBatch, BATCH};
use super::cmsg::Destination;
use crate::reactor;

/// The answers held for one socket of this worker.
struct Held {
    socket: Arc<reactor::Udp>,
    answers: SendBatch,
}

thread_local! {
    static OUTBOX: RefCell<Vec<Held>> = const { RefCell::new(Vec::new()) };
}

/// A worker's runtime: one thread, its I/O and timers, and the outbox
/// flushed whenever it is about to sleep.
pub fn worker_runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(flush)
        .build()
}

/// Holds `reply` for `peer` (from `source` on a wildcard socket), to be sent
/// on `socket` with the others.
pub fn hold(
    socket: &Arc<reactor::Udp>,
    reply: Vec<u8>,
    peer: SocketAddr,
    source: Option<Destination>,
) {
    let full = OUTBOX.with_borrow_mut(|outbox| {
        let held = match outbox
            .iter()
            .position(|held| Arc::ptr_eq(&held.socket, socket))
        {
            Some(i) => &mut outbox[i],
            None => {
                outbox.push(Held {
                    socket: socket.clone(),
                    answers: SendBatch::default(),
                });
                outbox.last_mut().expect("just pushed")
            }
        };
        held.answers.push(reply, peer, source);
        held.answers.len() >= BATCH
    });
    if full {
        flush();
    }
}

/// Sends every held answer without blocking. A socket whose buffer is full
/// gets a task that waits for room; an answer the kernel refuses for its
/// destination is dropped, as a `sendto` of it would have been.
pub fn flush() {
    OUTBOX.with_borrow_mut(|outbox| {
        for held in outbox.iter_mut() {
            send_held(held);
        }
        // A socket only this outbox still holds was closed by its loop
        // (drain): let it go.
        outbox.retain(|held| Arc::strong_count(&held.socket) > 1);
    });
}

fn send_held(held: &mut Held) {
    let fd = held.socket.as_raw_fd();
    while !held.answers.is_empty() {
        match held.answers.send(fd) {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                let (socket, mut answers) = (held.socket.clone(), mem::take(&mut held.answers));
                tokio::spawn(async move { super::udp::send_all(&socket, &mut answers).await });
                return;
            }
            Err(_) => held.answers.skip_first(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn client() -> std::net::UdpSocket {
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_nonblocking(true).unwrap();
        client
    }

    fn received(client: &std::net::UdpSocket) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let mut numbers = Vec::new();
        while let Ok(len) = client.recv(&mut buf) {
            assert_eq!(len, 20);
            numbers.push(buf[0]);
        }
        numbers.sort();
        numbers
    }

    #[test]
    fn held_answers_leave_when_the_worker_parks_or_a_batch_is_held() {
        let client = client();
        let to_client = client.local_addr().unwrap();
        let runtime = worker_runtime().unwrap();
        runtime.block_on(async {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.set_nonblocking(true).unwrap();
            let socket = Arc::new(reactor::register(socket).unwrap());
            for n in 0..5 {
                hold(&socket, vec![n; 20], to_client, None);
            }
            std::thread::sleep(Duration::from_millis(20));
            assert_eq!(received(&client), [0u8; 0], "held while the worker runs");
            // The worker has nothing else to do: it parks, and flushes first.
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(received(&client), [0, 1, 2, 3, 4]);

            for n in 0..BATCH as u8 {
                hold(&socket, vec![n; 20], to_client, None);
            }
            std::thread::sleep(Duration::from_millis(20));
            let all: Vec<u8> = (0..BATCH as u8).collect();
            assert_eq!(received(&client), all, "a full batch leaves at once");
        });
    }
}
