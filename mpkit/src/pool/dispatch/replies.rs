//! Reading workers' replies: a chunk's result (from the socket, or its
//! body from the worker's arena), an initializer's answer, or something
//! no worker should send.

use std::os::fd::OwnedFd;
use std::time::Instant;

use super::{Dispatcher, Reply, TaskError};
use crate::connection::RecvError;
use crate::pool::spare;
use crate::pool::wire::{
    ARENA_HALF, REPLY_DONE, REPLY_DONE_IN_ARENA, REPLY_INIT_FAILED, REPLY_NUMBER, REPLY_READY,
};
use crate::shm::SharedMemory;

impl Dispatcher {
    /// Takes every whole reply worker `i` has sent so far.
    pub(super) fn read_replies(&mut self, i: usize) {
        loop {
            let Some(conn) = self.workers[i].conn.as_mut() else {
                return;
            };
            // The body is copied once, out of the connection's buffer.
            match conn.recv_with(Some(Instant::now()), |msg, fds| (Incoming::new(msg), fds)) {
                Ok((msg, fds)) => self.on_reply(i, msg, fds),
                Err(RecvError::Timeout) => return,
                // Descriptors ran out here: the message was taken whole
                // (the stream is in step) but its handles are gone.
                Err(RecvError::HandlesLost) => self.on_handles_lost(i),
                // End of file, or a reply cut short by the worker's death:
                // its pidfd tells the rest.
                Err(_) => {
                    self.workers[i].conn = None;
                    return;
                }
            }
        }
    }

    fn on_reply(&mut self, i: usize, msg: Incoming, fds: Vec<OwnedFd>) {
        #[cfg(test)]
        if super::tests::PANIC_ON_REPLY.swap(false, std::sync::atomic::Ordering::SeqCst) {
            panic!("injected dispatcher panic");
        }
        let w = &mut self.workers[i];
        let Incoming {
            number,
            kind,
            len,
            body,
        } = msg;
        let mut arena_failed = false;
        let (kind, body) = match (kind, &w.arena) {
            (Some(REPLY_DONE_IN_ARENA), Some(arena)) => match from_arena(arena, &body) {
                Some(body) => (Some(REPLY_DONE), body),
                // No reply: the worker is killed below.
                None => {
                    arena_failed = true;
                    (None, body)
                }
            },
            other => (other.0, body),
        };
        // The number of the chunk a result is expected for, if any.
        let expected = w
            .held
            .as_ref()
            .filter(|h| !h.timed_out && h.bad_reply.is_none())
            .map(|h| h.number);
        match kind {
            Some(REPLY_DONE) if expected.is_some() && number == expected => {
                let held = w.held.take().expect("checked above");
                let reply = Reply { bytes: body, fds };
                held.chunk.batch.deliver(held.chunk.seq, Ok(reply));
                self.chunk_done(i);
            }
            Some(REPLY_READY) if body.is_empty() && number == Some(0) && !w.ready => {
                w.ready = true;
                self.init_deaths = 0;
            }
            Some(REPLY_INIT_FAILED) if number == Some(0) && !w.ready => {
                let message = String::from_utf8_lossy(&body).into_owned();
                let error = TaskError::InitializerFailed { message };
                if let Some(held) = w.held.take() {
                    held.chunk.fail(error.clone());
                }
                w.conn = None;
                let mut st = self.shared.lock();
                st.failure.get_or_insert(error);
            }
            // A reply nobody asked for (after a timeout, a second one from
            // a task that forked), or bytes that are no reply: this worker
            // cannot be trusted with more work, nor its chunk's result.
            _ => {
                let _ = w.process.kill();
                // No more chunks for it (it is dying): its replacement
                // starts now.
                w.conn = None;
                w.out = None;
                if let Some(h) = w.held.as_mut().filter(|h| !h.timed_out) {
                    h.bad_reply.get_or_insert_with(|| match number {
                        _ if arena_failed => format!(
                            "its reply to task {} could not be read from its arena",
                            h.number
                        ),
                        Some(n) if kind.is_some() && n < h.number => format!(
                            "a reply to its earlier task {n} came while it ran task {}",
                            h.number
                        ),
                        _ => format!("{len} bytes that are no reply to task {}", h.number),
                    });
                }
                self.replace();
            }
        }
    }

    /// Worker `i` finished the chunk it held.
    fn chunk_done(&mut self, i: usize) {
        let w = &mut self.workers[i];
        w.chunks_done += 1;
        let limit = self.shared.config.max_tasks_per_child;
        if limit.is_some_and(|m| w.chunks_done >= m) {
            // Retire it: at end of file it exits; its pidfd then says so
            // and it is reaped. The replacement starts now.
            w.conn = None;
            w.out = None;
            self.replace();
        }
    }

    /// Worker `i` sent a message whose descriptors could not be received
    /// (this process is out of them). A chunk's result is the only message
    /// that carries any: the chunk it holds fails alone, and the worker,
    /// which did nothing wrong, carries on. With no result expected, it is
    /// a reply nobody asked for.
    fn on_handles_lost(&mut self, i: usize) {
        let w = &mut self.workers[i];
        let expected = w
            .held
            .as_ref()
            .is_some_and(|h| !h.timed_out && h.bad_reply.is_none() && w.out.is_none());
        if expected {
            let held = w.held.take().expect("checked above");
            held.chunk.fail(TaskError::ResultHandlesLost);
            self.chunk_done(i);
        } else if !w.held.as_ref().is_some_and(|h| h.timed_out) {
            let _ = w.process.kill();
            if let Some(h) = w.held.as_mut() {
                h.bad_reply.get_or_insert_with(|| {
                    format!(
                        "a message with handles that came while it ran task {}",
                        h.number
                    )
                });
            }
        }
    }
}

/// A reply body a worker put in its arena, copied out: `len` is what its
/// message said (a length `u64`). `None` for a length that is not one, or
/// past the arena's half, or an arena whose file another process cut.
fn from_arena(arena: &SharedMemory, len: &[u8]) -> Option<Vec<u8>> {
    let len = u64::from_le_bytes(len.try_into().ok()?);
    let len = usize::try_from(len).ok().filter(|&n| n <= ARENA_HALF)?;
    let mut body = spare::filled(len);
    arena.read(ARENA_HALF, &mut body).ok()?;
    Some(body)
}

/// A worker's message, taken apart: its number and kind, its length, and
/// what follows them.
struct Incoming {
    number: Option<u64>,
    kind: Option<u8>,
    len: usize,
    body: Vec<u8>,
}

impl Incoming {
    fn new(msg: &[u8]) -> Incoming {
        Incoming {
            number: msg
                .first_chunk::<REPLY_NUMBER>()
                .map(|n| u64::from_le_bytes(*n)),
            kind: msg.get(REPLY_NUMBER).copied(),
            len: msg.len(),
            body: msg.get(REPLY_NUMBER + 1..).unwrap_or_default().to_vec(),
        }
    }
}
