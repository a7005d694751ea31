//! The messages between a pool and its workers, and the worker's loop.
//!
//! Each worker has one duplex socket to the pool (a
//! [`Connection`](crate::Connection) passed as its spawn argument), in
//! mpkit's framing, with descriptors beside each message. Byte layouts
//! (integers little-endian):
//!
//! | message | layout |
//! |---|---|
//! | pool → worker: task | `1`, number `u64`, runner offset `u64`, function offset `u64`, item count `u64`, the items (a format byte, then the items; see `fixed/`) |
//! | pool → worker: task, payload in the arena | `3`, number `u64`, runner offset `u64`, function offset `u64`, the payload's length `u64` (the payload, from the item count on, is at the start of the arena) |
//! | pool → worker: initializer | `2`, number `u64` (0), runner offset `u64`, function offset `u64`, postcard argument |
//! | worker → pool: chunk done | number `u64`, `5`, postcard `Vec<(u64, u8, &str, String)>` (the items that failed), postcard count `u64`, the other items' results (a format byte, then the results; see `fixed/`) |
//! | worker → pool: chunk done, body in the arena | number `u64`, `6`, the body's length `u64` (the body, what follows the `5` above, is at [`ARENA_HALF`] in the arena) |
//! | worker → pool: initializer failed | number `u64`, `2`, UTF-8 message |
//! | worker → pool: initializer done, ready for tasks | number `u64`, `4` |
//!
//! Each worker may have an *arena*: an anonymous shared-memory block of
//! two halves of [`ARENA_HALF`] bytes, made by the pool and passed at
//! spawn. A chunk's payload without descriptors that fits goes into the
//! first half and the message only says how long it is; a reply's body
//! without descriptors that fits goes into the second (either only from
//! [`ARENA_MIN`] bytes: a short one costs no more through the socket). The socket message
//! that follows each write orders it before the other side's read, and
//! neither side writes its half again until the other has answered (the
//! pool gives a worker its next chunk only after the reply). Each side
//! copies what it reads out of the arena word by word, so a process that
//! scribbles there meanwhile (a task that found the memfd) can change the
//! bytes of its own chunk's reply, as it could its own results, but
//! causes no undefined behaviour. A task that forks, with both processes
//! going on as the worker, is the one way a reply could land in another
//! chunk's: only the process the pool started answers through the arena.
//! The arena's size is sealed, so nobody can cut it under the mappings.
//! A chunk and its reply cross with two copies instead of a socket's
//! four, and no socket buffers to fill and drain.
//!
//! The number is the dispatcher's: each task it hands out gets the next
//! one (from 1; the initializer's is 0), and every reply echoes the number
//! of the message it answers. A reply whose number is not that of the task
//! the worker holds (a task forked and both processes went on as the
//! worker, or a task wrote to the worker's socket) is never taken as a
//! result: the dispatcher kills that worker.
//!
//! A task's items are encoded one after the other straight into the
//! message, fixed-width when each is the same scalar and in postcard
//! otherwise (`fixed/` says how it is chosen) (an item that does not encode is left out, and fails alone in
//! the pool), all under one `handle::collect`, and decoded in order under
//! one `handle::provide`: handles index the message's descriptor list.
//! The count comes first, as a fixed-width word, because it is known only
//! once every item was tried.
//!
//! A reply lists the items that failed first, each as its position in the
//! chunk (ascending), a tag ([`OUT_PANICKED`], [`OUT_ARGS_DECODE`],
//! [`OUT_RESULT_ENCODE`]), a type name and a message; then the results of
//! the others, in order. A result that does not encode is cut back out
//! and fails alone. The results are encoded as their functions return, a
//! block at a time, each block under one `handle::collect_into` the same
//! list: handles index the reply's one descriptor list, and the user's
//! function never runs while the list is installed.
//!
//! The offsets are distances from `process::child::anchor`, as for
//! [`Process`](crate::Process): the worker runs the pool's own executable
//! (its bootstrap checked that), so `anchor + offset` is the
//! monomorphised runner for the task's argument and result types, and the
//! user's function.

use std::os::fd::OwnedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::TaskError;
use super::chunk::Results;
use crate::Connection;
use crate::codec::{Codec, Postcard};
use crate::handle;
use crate::process::child::{address_of, panic_message};
use crate::shm::SharedMemory;

pub(super) const MSG_TASK: u8 = 1;
pub(super) const MSG_INIT: u8 = 2;
pub(super) const MSG_TASK_IN_ARENA: u8 = 3;
pub(super) const REPLY_DONE: u8 = 5;
pub(super) const REPLY_DONE_IN_ARENA: u8 = 6;
pub(super) const REPLY_INIT_FAILED: u8 = 2;
pub(super) const REPLY_READY: u8 = 4;

/// The bytes of each half of a worker's arena: the pool writes a task's
/// payload into the first, the worker its reply's body into the second.
pub(super) const ARENA_HALF: usize = 2 << 20;
/// Payloads and bodies shorter than this go through the socket even when
/// they fit the arena: for a few bytes the socket costs no more.
pub(super) const ARENA_MIN: usize = 4 << 10;

/// Bytes before a task's or initializer's payload.
pub(super) const HEADER: usize = 25;
/// Where a task's item count lies in its message.
pub(super) const COUNT_AT: std::ops::Range<usize> = HEADER..HEADER + 8;
/// Where a task's number lies in its message.
pub(super) const NUMBER_AT: std::ops::Range<usize> = 1..9;
/// Bytes before a reply's kind: its number.
pub(super) const REPLY_NUMBER: usize = 8;

/// A failed item's tags.
pub(super) const OUT_PANICKED: u8 = 1;
pub(super) const OUT_ARGS_DECODE: u8 = 2;
pub(super) const OUT_RESULT_ENCODE: u8 = 3;

/// Runs every item of a chunk: `(function, count and items, their
/// descriptors, the reply to append to)`; returns where the message starts
/// in that buffer, the reply's descriptors and the results, to drop once
/// the reply is sent.
pub(super) type TaskRunner =
    unsafe fn(usize, &[u8], Vec<OwnedFd>, &mut Vec<u8>) -> (usize, Vec<OwnedFd>, Results);
/// Runs the initializer: `(function, argument, its descriptors)`.
pub(super) type InitRunner = unsafe fn(usize, &[u8], Vec<OwnedFd>) -> Result<(), String>;

/// The start of a message: kind, number 0 (the dispatcher sets a task's
/// when it hands the task out) and the two offsets.
pub(super) fn header(kind: u8, runner: u64, function: u64) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64);
    buf.push(kind);
    buf.extend_from_slice(&0u64.to_le_bytes());
    buf.extend_from_slice(&runner.to_le_bytes());
    buf.extend_from_slice(&function.to_le_bytes());
    buf
}

/// postcard's output appended to a borrowed vector (its own `to_extend`
/// takes the vector by value, and loses it when the value fails).
pub(super) struct Append<'a>(pub(super) &'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        // Most pieces are a varint of a few bytes: pushed one by one they
        // cost less than a call to `memcpy` each.
        if bytes.len() <= 16 {
            // A trusted length: one capacity check, then a plain loop.
            self.0.extend(bytes.iter().copied());
        } else {
            self.0.extend_from_slice(bytes);
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Encodes values one after another onto the end of a vector, with one
/// postcard serializer for them all.
pub(super) struct Appender<'a> {
    ser: postcard::Serializer<Append<'a>>,
}

impl<'a> Appender<'a> {
    pub(super) fn new(buf: &'a mut Vec<u8>) -> Appender<'a> {
        Appender {
            ser: postcard::Serializer {
                output: Append(buf),
            },
        }
    }

    /// The vector written to.
    pub(super) fn buf(&mut self) -> &mut Vec<u8> {
        self.ser.output.0
    }

    /// Appends `value`'s postcard encoding; on failure the vector is left
    /// as it was and the error says why (as [`Postcard`] words it).
    /// Handles go to the list of the surrounding `handle::collect` (a
    /// handle the value gave before it failed stays there unclaimed, and
    /// the reader closes it).
    #[inline]
    pub(super) fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), String> {
        let start = self.buf().len();
        if value.serialize(&mut self.ser).is_ok() {
            return Ok(());
        }
        self.buf().truncate(start);
        // Encoded again for the words: the codec recovers what a custom
        // error said, which postcard's own error drops.
        Err(match Postcard::encode(value, &mut Vec::new()) {
            Err(e) => e.to_string(),
            Ok(()) => "postcard: the value failed to encode once".to_string(),
        })
    }
}

/// Appends one value's postcard encoding to `buf`; see [`Appender::push`].
pub(super) fn append<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> Result<(), String> {
    Appender::new(buf).push(value)
}

/// Whether a reply's first item returned (without decoding its result): no
/// failure listed, or the first one not at position 0.
pub(super) fn first_returned(reply: &[u8]) -> bool {
    let mut de = postcard::Deserializer::from_bytes(reply);
    match serde::Deserialize::deserialize(&mut de) {
        Ok(0u64) => true,
        Ok(_) => !matches!(serde::Deserialize::deserialize(&mut de), Ok(0u64)),
        Err(_) => false,
    }
}

/// The error of an outcome that is missing or not a result.
pub(super) fn malformed<R>() -> TaskError {
    TaskError::ResultDecode {
        type_name: std::any::type_name::<R>(),
        message: "the worker's reply is malformed".into(),
    }
}

/// A failed item as a reply lists it: its position in the chunk, tag,
/// type name and message.
pub(super) type WireFailure = (u64, u8, String, String);

/// The error a listed failure stands for.
pub(super) fn failure_error<R>((_, tag, type_name, message): WireFailure) -> TaskError {
    match tag {
        OUT_PANICKED => TaskError::Panicked { message },
        OUT_ARGS_DECODE => TaskError::ArgsDecode { type_name, message },
        OUT_RESULT_ENCODE => TaskError::ResultEncode { type_name, message },
        _ => malformed::<R>(),
    }
}

/// The worker side: runs the pool's initializer `fn(A)`.
///
/// # Safety
/// `function` must be the address of a `fn(A)` in this executable.
pub(super) unsafe fn run_init<A: DeserializeOwned>(
    function: usize,
    args: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<(), String> {
    // SAFETY: guaranteed by the caller.
    let f: fn(A) = unsafe { std::mem::transmute::<usize, fn(A)>(function) };
    let ran = catch_unwind(AssertUnwindSafe(|| {
        let arg = handle::provide(fds, || Postcard::decode::<A>(args))
            .map_err(|e| format!("decoding its arguments: {e}"))?;
        f(arg);
        Ok(())
    }));
    ran.unwrap_or_else(|payload| Err(panic_message(payload)))
}

/// What the worker does after a message.
enum Next {
    /// Send the reply (from this offset of the buffer on), then drop the
    /// results (if any).
    Reply(usize, Vec<OwnedFd>, Option<Results>),
    ReplyAndExit,
    Exit,
}

/// The worker process's function: runs tasks until the pool closes its end
/// of the socket (or goes away). Its arguments: that socket, and the
/// worker's arena, if the pool could make one.
pub(super) fn worker_main((conn, arena): (Connection, Option<SharedMemory>)) {
    let mut conn = conn.into_raw();
    let mut out = Vec::with_capacity(4096);
    let mut inbox = Vec::new();
    // A task that forks, with both processes going on as this loop, must
    // not have the copy answer through the arena: its reply would land in
    // the half the pool reads for this worker's next chunk. Through the
    // socket, its stale number gives it away.
    let me = std::process::id();
    loop {
        out.clear();
        let next = conn.recv_with(None, |msg, fds| {
            handle_message(msg, fds, arena.as_ref(), &mut inbox, &mut out)
        });
        let sent = match next {
            Ok(Next::Reply(start, fds, results)) => {
                if fds.is_empty() && std::process::id() == me {
                    if let Some(arena) = &arena {
                        into_arena(arena, &mut out, start);
                    }
                }
                let sent = conn.send_message(&out[start..], &fds);
                // The results' destructors run once the results went out.
                drop(results);
                sent
            }
            Ok(Next::ReplyAndExit) => {
                let _ = conn.send_message(&out, &[]);
                return;
            }
            Ok(Next::Exit) | Err(_) => return,
        };
        if sent.is_err() {
            return;
        }
        if out.capacity() > 1 << 20 {
            out = Vec::with_capacity(4096);
        }
        if inbox.capacity() > ARENA_HALF {
            inbox = Vec::new();
        }
    }
}

/// Moves a chunk's reply body (the message from `start` on in `out`) into
/// the arena's second half, leaving in `out` the message that says so; a
/// reply of another kind, one too long, or an arena that fails (another
/// process cut its file) goes whole through the socket.
fn into_arena(arena: &SharedMemory, out: &mut Vec<u8>, start: usize) {
    let Some(body) = out.get(start + REPLY_NUMBER + 1..) else {
        return;
    };
    if out[start + REPLY_NUMBER] != REPLY_DONE
        || !(ARENA_MIN..=ARENA_HALF).contains(&body.len())
        || arena.write(ARENA_HALF, body).is_err()
    {
        return;
    }
    let len = body.len() as u64;
    out.truncate(start + REPLY_NUMBER);
    out.push(REPLY_DONE_IN_ARENA);
    out.extend_from_slice(&len.to_le_bytes());
}

fn handle_message(
    msg: &[u8],
    fds: Vec<OwnedFd>,
    arena: Option<&SharedMemory>,
    inbox: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Next {
    let Some((head, mut payload)) = msg.split_first_chunk::<HEADER>() else {
        return Next::Exit;
    };
    let mut kind = head[0];
    if kind == MSG_TASK_IN_ARENA {
        // The payload is in the arena's first half; the message holds its
        // length. Copied out: the pool writes there again only for the
        // next task, after this one's reply.
        let len = payload
            .first_chunk::<8>()
            .map(|n| u64::from_le_bytes(*n) as usize);
        let (Some(arena), Some(len @ ..=ARENA_HALF)) = (arena, len) else {
            return Next::Exit;
        };
        inbox.resize(len, 0);
        if arena.read(0, inbox).is_err() {
            return Next::Exit;
        }
        payload = inbox.as_slice();
        kind = MSG_TASK;
    }
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&head[i..i + 8]);
        u64::from_le_bytes(w)
    };
    let (runner, function) = (address_of(word(9)), address_of(word(17)));
    // Every reply starts with the number of the message it answers.
    out.extend_from_slice(&head[NUMBER_AT]);
    match kind {
        MSG_TASK => {
            // SAFETY: only the pool holds the other end of this socket (it
            // made the pair and passed this end at spawn), and it computed
            // the offsets from a `run_chunk::<A, R>` and a `fn(A) -> R`; the
            // bootstrap proved this is the pool's executable.
            let runner: TaskRunner = unsafe { std::mem::transmute::<usize, TaskRunner>(runner) };
            // SAFETY: as above.
            let (start, fds, results) = unsafe { runner(function, payload, fds, out) };
            Next::Reply(start, fds, Some(results))
        }
        MSG_INIT => {
            // SAFETY: as for a task, from a `run_init::<A>` and a `fn(A)`.
            let runner: InitRunner = unsafe { std::mem::transmute::<usize, InitRunner>(runner) };
            // SAFETY: as above.
            match unsafe { runner(function, payload, fds) } {
                Ok(()) => {
                    out.push(REPLY_READY);
                    Next::Reply(0, Vec::new(), None)
                }
                Err(message) => {
                    out.push(REPLY_INIT_FAILED);
                    out.extend_from_slice(message.as_bytes());
                    Next::ReplyAndExit
                }
            }
        }
        _ => Next::Exit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_leaves_the_buffer_as_it_was_when_a_value_fails() {
        struct Refuses;
        impl Serialize for Refuses {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeTuple;
                let mut t = s.serialize_tuple(2)?;
                t.serialize_element(&7u8)?;
                Err(serde::ser::Error::custom("no, after one byte"))
            }
        }
        let mut buf = vec![1, 2];
        let why = append(&mut buf, &Refuses).unwrap_err();
        assert_eq!(buf, [1, 2]);
        assert!(why.contains("after one byte"), "{why}");
    }
}
