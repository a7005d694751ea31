//! The messages between a pool and its workers, and the worker's loop.
//!
//! Each worker has one duplex socket to the pool (a
//! [`Connection`](crate::Connection) passed as its spawn argument), in
//! mpkit's framing, with descriptors beside each message. Byte layouts
//! (integers little-endian):
//!
//! | message | layout |
//! |---|---|
//! | pool → worker: task | `1`, number `u64`, runner offset `u64`, function offset `u64`, item count `u64`, the items' postcard encodings back to back |
//! | pool → worker: initializer | `2`, number `u64` (0), runner offset `u64`, function offset `u64`, postcard argument |
//! | worker → pool: chunk done | number `u64`, `1`, outcome records |
//! | worker → pool: packed chunk done | number `u64`, `3`, postcard `Vec<WireOutcome<R>>` |
//! | worker → pool: chunk done, every item returned | number `u64`, `5`, postcard `Vec<R>` |
//! | worker → pool: initializer failed | number `u64`, `2`, UTF-8 message |
//! | worker → pool: initializer done, ready for tasks | number `u64`, `4` |
//!
//! The number is the dispatcher's: each task it hands out gets the next
//! one (from 1; the initializer's is 0), and every reply echoes the number
//! of the message it answers. A reply whose number is not that of the task
//! the worker holds (a task forked and both processes went on as the
//! worker, or a task wrote to the worker's socket) is never taken as a
//! result: the dispatcher kills that worker.
//!
//! A task's items are encoded one after the other straight into the
//! message (an item that does not encode is left out, and fails alone in
//! the pool), all under one `handle::collect`, and decoded in order under
//! one `handle::provide`: handles index the message's descriptor list.
//! The count comes first, as a fixed-width word, because it is known only
//! once every item was tried.
//!
//! A reply is packed (one postcard sequence) when it encodes so; otherwise
//! it is records, so that one result that does not encode fails alone.
//! Records are `[tag u8][len u32][len bytes]`, one per item of the chunk,
//! in order. An outcome's tag is [`OUT_OK`] (bytes: the postcard result)
//! or an error tag (bytes: the postcard `(type name, message)`).
//!
//! The offsets are distances from `process::child::anchor`, as for
//! [`Process`](crate::Process): the worker runs the pool's own executable
//! (its bootstrap checked that), so `anchor + offset` is the
//! monomorphised runner for the task's argument and result types, and the
//! user's function.

use std::os::fd::OwnedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::TaskError;
use crate::Connection;
use crate::codec::{Codec, CodecError, Postcard};
use crate::handle;
use crate::process::child::{address_of, panic_message};
use crate::sys;

pub(super) const MSG_TASK: u8 = 1;
pub(super) const MSG_INIT: u8 = 2;
pub(super) const REPLY_DONE: u8 = 1;
pub(super) const REPLY_DONE_PACKED: u8 = 3;
pub(super) const REPLY_DONE_VALUES: u8 = 5;
pub(super) const REPLY_INIT_FAILED: u8 = 2;
pub(super) const REPLY_READY: u8 = 4;

/// Bytes before a task's or initializer's payload.
pub(super) const HEADER: usize = 25;
/// Where a task's item count lies in its message.
pub(super) const COUNT_AT: std::ops::Range<usize> = HEADER..HEADER + 8;
/// Where a task's number lies in its message.
pub(super) const NUMBER_AT: std::ops::Range<usize> = 1..9;
/// Bytes before a reply's kind: its number.
pub(super) const REPLY_NUMBER: usize = 8;
/// Bytes before a record's bytes.
const RECORD_HEADER: usize = 5;

pub(super) const OUT_OK: u8 = 0;
const OUT_PANICKED: u8 = 1;
const OUT_ARGS_DECODE: u8 = 2;
const OUT_RESULT_ENCODE: u8 = 3;

/// Runs every item of a chunk: `(function, count and items, their
/// descriptors, the reply to append to)`; returns the reply's descriptors
/// and the results, to drop once the reply is sent.
pub(super) type TaskRunner =
    unsafe fn(usize, &[u8], Vec<OwnedFd>, &mut Vec<u8>) -> (Vec<OwnedFd>, Results);
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
struct Append<'a>(&'a mut Vec<u8>);

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
            self.0.reserve(bytes.len());
            bytes.iter().for_each(|&b| self.0.push(b));
        } else {
            self.0.extend_from_slice(bytes);
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends `value`'s postcard encoding to `buf`; on failure `buf` is left
/// as it was and the error says why (as [`Postcard`] words it). Handles go
/// to the list of the surrounding `handle::collect`, as for
/// [`push_record`].
#[inline]
pub(super) fn append<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> Result<(), String> {
    let start = buf.len();
    if postcard::serialize_with_flavor(value, Append(buf)).is_ok() {
        return Ok(());
    }
    buf.truncate(start);
    // Encoded again for the words: the codec recovers what a custom
    // error said, which postcard's own error drops.
    Err(match Postcard::encode(value, &mut Vec::new()) {
        Err(e) => e.to_string(),
        Ok(()) => "postcard: the value failed to encode once".to_string(),
    })
}

/// Appends `value` as one record with tag `tag`. Its handles go to the
/// list of the surrounding `handle::collect`, which spans the whole
/// message. On failure the buffer is left as it was (a handle the value
/// already gave stays in the list unclaimed, and is closed by the reader).
pub(super) fn push_record<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    tag: u8,
    value: &T,
) -> Result<(), String> {
    // Encoded aside: a failed encode may leave its buffer emptied. This is
    // the slow path (the packed one failed), so the extra copy is fine.
    let mut bytes = Vec::new();
    Postcard::encode(value, &mut bytes).map_err(|e| e.to_string())?;
    let len = u32::try_from(bytes.len()).map_err(|_| "larger than 4 GiB".to_string())?;
    buf.push(tag);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&bytes);
    Ok(())
}

/// One record read back: its tag and bytes.
pub(super) struct Record<'a> {
    pub tag: u8,
    pub bytes: &'a [u8],
}

/// Reads records in order. Stops (`None`) at the end or at the first
/// record that does not fit in what is left.
pub(super) struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Records<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Records<'a> {
        Records { rest: bytes }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        let (h, body) = self.rest.split_first_chunk::<RECORD_HEADER>()?;
        let len = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
        if body.len() < len {
            self.rest = &[];
            return None;
        }
        let (bytes, rest) = body.split_at(len);
        self.rest = rest;
        Some(Record { tag: h[0], bytes })
    }
}

/// Decodes one outcome record as the task's result (inside the
/// `handle::provide` of the whole reply).
pub(super) fn decode_outcome<R: DeserializeOwned>(record: Record<'_>) -> Result<R, TaskError> {
    if record.tag == OUT_OK {
        return Postcard::decode::<R>(record.bytes).map_err(|e| TaskError::ResultDecode {
            type_name: std::any::type_name::<R>(),
            message: e.to_string(),
        });
    }
    let Ok((type_name, message)) = Postcard::decode::<(String, String)>(record.bytes) else {
        return Err(malformed::<R>());
    };
    Err(match record.tag {
        OUT_PANICKED => TaskError::Panicked { message },
        OUT_ARGS_DECODE => TaskError::ArgsDecode { type_name, message },
        OUT_RESULT_ENCODE => TaskError::ResultEncode { type_name, message },
        _ => malformed::<R>(),
    })
}

/// Whether a reply's first outcome is a returned value (without decoding
/// it): a record tagged [`OUT_OK`], in a packed reply variant 0 of
/// [`WireOutcome`] after the sequence's length, or any value of a reply of
/// values.
pub(super) fn first_returned(reply: &[u8], kind: u8) -> bool {
    match kind {
        REPLY_DONE_VALUES => matches!(postcard::take_from_bytes::<u64>(reply), Ok((n, _)) if n > 0),
        REPLY_DONE_PACKED => match postcard::take_from_bytes::<u64>(reply) {
            Ok((n, rest)) => n > 0 && rest.first() == Some(&0),
            Err(_) => false,
        },
        _ => reply.first() == Some(&OUT_OK),
    }
}

/// The error of an outcome that is missing or not a record.
pub(super) fn malformed<R>() -> TaskError {
    TaskError::ResultDecode {
        type_name: std::any::type_name::<R>(),
        message: "the worker's reply is malformed".into(),
    }
}

/// An item's outcome in the worker. It serializes as [`WireOutcome`] (the
/// same postcard bytes: a boxed tuple struct is its fields in order, as a
/// tuple variant's are), the packed reply's element type. The failure is
/// boxed so that an outcome takes little more room than its result.
#[derive(Serialize)]
enum Outcome<R> {
    Returned(R),
    Failed(Box<Failure>),
}

/// Why an item has no result: its tag, a type name and a message.
#[derive(Serialize)]
struct Failure(u8, &'static str, String);

/// An item's outcome as the pool reads a packed reply.
#[derive(Deserialize)]
pub(super) enum WireOutcome<R> {
    Returned(R),
    Failed(u8, String, String),
}

impl<R> WireOutcome<R> {
    #[inline]
    pub(super) fn into_result(self) -> Result<R, TaskError> {
        match self {
            WireOutcome::Returned(r) => Ok(r),
            WireOutcome::Failed(tag, type_name, message) => Err(match tag {
                OUT_PANICKED => TaskError::Panicked { message },
                OUT_ARGS_DECODE => TaskError::ArgsDecode { type_name, message },
                OUT_RESULT_ENCODE => TaskError::ResultEncode { type_name, message },
                _ => malformed::<R>(),
            }),
        }
    }
}

/// The worker side: runs every item of a chunk of `fn(A) -> R` tasks.
/// `items`: the count, then the items (see the layouts). Appends the reply
/// (its kind byte first) to `out`.
///
/// The chunk's arguments are decoded first, all under one
/// `handle::provide` (the function never runs inside it), and the results
/// are encoded last, all under one `handle::collect`: one descriptor list
/// per message, not per item. Each call runs under its own
/// `catch_unwind`. The results go back packed when they encode so, else
/// as records (so one result that does not encode fails alone). The
/// results are returned, to be dropped after the reply is sent; a panic in
/// a result's destructor is not reported (the result was delivered).
///
/// # Safety
/// `function` must be the address of a `fn(A) -> R` in this executable
/// (the pool computed its offset from a value of that type).
pub(super) unsafe fn run_chunk<A: DeserializeOwned, R: Serialize>(
    function: usize,
    items: &[u8],
    fds: Vec<OwnedFd>,
    out: &mut Vec<u8>,
) -> (Vec<OwnedFd>, Results) {
    // SAFETY: guaranteed by the caller; fn pointers and usize have the
    // same size.
    let f: fn(A) -> R = unsafe { std::mem::transmute::<usize, fn(A) -> R>(function) };
    let outcomes: Vec<Outcome<R>> = match decode_args::<A>(items, fds) {
        Ok(args) => args
            .into_iter()
            .map(|arg| match catch_unwind(AssertUnwindSafe(|| f(arg))) {
                Ok(r) => Outcome::Returned(r),
                Err(payload) => failed(OUT_PANICKED, "", panic_message(payload)),
            })
            .collect(),
        // The items cannot be told apart past the one that failed: every
        // item of the chunk fails alike.
        Err((count, tag, type_name, why)) => (0..count)
            .map(|_| failed(tag, type_name, why.clone()))
            .collect(),
    };
    let start = out.len();
    // What `out` held before (the reply's number): a failed encode may
    // leave its buffer emptied.
    let head = out.clone();
    // Every item returned (the common case): the results alone, as one
    // sequence; else one sequence of outcomes.
    let all_returned = outcomes.iter().all(|o| matches!(o, Outcome::Returned(_)));
    let (encoded, mut out_fds) = handle::collect(|| {
        catch_unwind(AssertUnwindSafe(|| {
            if all_returned {
                out.push(REPLY_DONE_VALUES);
                Postcard::encode(&Values(&outcomes), out)
            } else {
                out.push(REPLY_DONE_PACKED);
                Postcard::encode(&outcomes, out)
            }
        }))
    });
    if !matches!(encoded, Ok(Ok(()))) {
        out.clear();
        out.extend_from_slice(&head);
        out.push(REPLY_DONE);
        ((), out_fds) = handle::collect(|| {
            for outcome in &outcomes {
                push_outcome(out, outcome);
            }
        });
    }
    if out_fds.len() > sys::MAX_FDS_PER_MESSAGE {
        // Too many handles for one reply: every item of the chunk fails.
        let why = format!(
            "the chunk's results hold {} handles; at most {} fit in one reply (use a smaller chunk size)",
            out_fds.len(),
            sys::MAX_FDS_PER_MESSAGE
        );
        out.truncate(start);
        out.push(REPLY_DONE);
        for _ in &outcomes {
            error_record(
                out,
                OUT_RESULT_ENCODE,
                std::any::type_name::<R>(),
                why.clone(),
            );
        }
        out_fds.clear();
    }
    (out_fds, Results::new(outcomes))
}

/// A chunk's results, kept until its reply is sent, then dropped, each
/// under its own `catch_unwind` (a panic in a destructor is not reported).
/// The worker's loop does not know the result type, so the type is erased:
/// a boxed `Vec<Outcome<R>>` and the function that drops it.
pub(super) struct Results {
    outcomes: *mut (),
    drop_them: unsafe fn(*mut ()),
}

impl Results {
    fn new<R>(outcomes: Vec<Outcome<R>>) -> Results {
        Results {
            outcomes: Box::into_raw(Box::new(outcomes)).cast(),
            drop_them: drop_outcomes::<R>,
        }
    }
}

/// # Safety
/// `outcomes` must come from `Box::<Vec<Outcome<R>>>::into_raw`, and not
/// be used again.
unsafe fn drop_outcomes<R>(outcomes: *mut ()) {
    // SAFETY: guaranteed by the caller.
    let outcomes = unsafe { Box::from_raw(outcomes.cast::<Vec<Outcome<R>>>()) };
    if !std::mem::needs_drop::<R>() {
        // No destructor of the user's to run: the failures' strings
        // cannot panic.
        return;
    }
    for outcome in *outcomes {
        let _ = catch_unwind(AssertUnwindSafe(move || drop(outcome)));
    }
}

impl Drop for Results {
    fn drop(&mut self) {
        // SAFETY: `Results::new` made the pair from a boxed
        // `Vec<Outcome<R>>` and this `drop_outcomes::<R>`; it is dropped
        // once. The results borrow nothing (`R: DeserializeOwned`, made in
        // this process from owned arguments).
        unsafe { (self.drop_them)(self.outcomes) }
    }
}

/// The results of a chunk whose every item returned, serialized as the
/// sequence of the values alone.
struct Values<'a, R>(&'a [Outcome<R>]);

impl<R: Serialize> Serialize for Values<'_, R> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Mapped one to one, so the sequence's length is known up front
        // (postcard needs it).
        s.collect_seq(self.0.iter().map(ValueOf))
    }
}

/// One outcome as its value; a failure is an encoding error (never seen:
/// [`Values`] is used only when every item returned).
struct ValueOf<'a, R>(&'a Outcome<R>);

impl<R: Serialize> Serialize for ValueOf<'_, R> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Outcome::Returned(r) => r.serialize(s),
            Outcome::Failed(_) => Err(serde::ser::Error::custom("an item did not return")),
        }
    }
}

fn failed<R>(tag: u8, type_name: &'static str, message: String) -> Outcome<R> {
    Outcome::Failed(Box::new(Failure(tag, type_name, message)))
}

/// Why a chunk's arguments did not decode: how many items it has (at most
/// [`MAX_FAILED_ITEMS`] are reported), and the outcome each of them gets.
type ArgsFailure = (usize, u8, &'static str, String);

/// Bounds the item count of a task that did not decode: it only sizes an
/// error reply.
const MAX_FAILED_ITEMS: u64 = 1 << 20;

/// Decodes a chunk's count and arguments, in order, all or none.
fn decode_args<A: DeserializeOwned>(
    items: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<Vec<A>, ArgsFailure> {
    let type_name = std::any::type_name::<A>();
    let Some((count, body)) = items.split_first_chunk::<8>() else {
        return Err((0, OUT_ARGS_DECODE, type_name, "no item count".into()));
    };
    let count = u64::from_le_bytes(*count);
    let reported = count.min(MAX_FAILED_ITEMS) as usize;
    let decoded = handle::provide(fds, || {
        match catch_unwind(AssertUnwindSafe(|| {
            // Each item takes a byte at least, but for zero-sized ones:
            // the count only hints the room.
            let mut args = Vec::with_capacity(reported.min(body.len()));
            let mut de = postcard::Deserializer::from_bytes(body);
            for _ in 0..count {
                args.push(A::deserialize(&mut de).map_err(|e| CodecError::new(Postcard::NAME, e))?);
            }
            match de.finalize() {
                Ok([]) => Ok(args),
                Ok(rest) => Err(CodecError::new(
                    Postcard::NAME,
                    format_args!("{} trailing bytes after the items", rest.len()),
                )),
                Err(e) => Err(CodecError::new(Postcard::NAME, e)),
            }
        })) {
            Ok(Ok(args)) => Ok(Ok(args)),
            Ok(Err(e)) => Err(e),
            Err(payload) => Ok(Err(panic_message(payload))),
        }
    });
    match decoded {
        Ok(Ok(args)) => Ok(args),
        Ok(Err(why)) => Err((reported, OUT_PANICKED, "", why)),
        Err(e) => Err((reported, OUT_ARGS_DECODE, type_name, e.to_string())),
    }
}

/// Appends one outcome as a record; a result that does not encode (or
/// panics encoding) becomes an error record.
fn push_outcome<R: Serialize>(out: &mut Vec<u8>, outcome: &Outcome<R>) {
    match outcome {
        Outcome::Returned(result) => {
            let start = out.len();
            match catch_unwind(AssertUnwindSafe(|| push_record(out, OUT_OK, result))) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => error_record(out, OUT_RESULT_ENCODE, std::any::type_name::<R>(), e),
                Err(payload) => {
                    out.truncate(start);
                    error_record(out, OUT_PANICKED, "", panic_message(payload));
                }
            }
        }
        Outcome::Failed(failure) => {
            let Failure(tag, type_name, message) = &**failure;
            error_record(out, *tag, type_name, message.clone())
        }
    }
}

/// Appends an error outcome (which cannot fail to encode: two strings).
fn error_record(out: &mut Vec<u8>, tag: u8, type_name: &str, message: String) {
    let _ = push_record(out, tag, &(type_name, message));
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
    /// Send the reply, then drop the results (if any).
    Reply(Vec<OwnedFd>, Option<Results>),
    ReplyAndExit,
    Exit,
}

/// The worker process's function: runs tasks until the pool closes its end
/// of the socket (or goes away).
pub(super) fn worker_main(conn: Connection) {
    let mut conn = conn.into_raw();
    let mut out = Vec::with_capacity(4096);
    loop {
        out.clear();
        let next = conn.recv_with(None, |msg, fds| handle_message(msg, fds, &mut out));
        let sent = match next {
            Ok(Next::Reply(fds, results)) => {
                let sent = conn.send_message(&out, &fds);
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
    }
}

fn handle_message(msg: &[u8], fds: Vec<OwnedFd>, out: &mut Vec<u8>) -> Next {
    let Some((head, payload)) = msg.split_first_chunk::<HEADER>() else {
        return Next::Exit;
    };
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&head[i..i + 8]);
        u64::from_le_bytes(w)
    };
    let (runner, function) = (address_of(word(9)), address_of(word(17)));
    // Every reply starts with the number of the message it answers.
    out.extend_from_slice(&head[NUMBER_AT]);
    match head[0] {
        MSG_TASK => {
            // SAFETY: only the pool holds the other end of this socket (it
            // made the pair and passed this end at spawn), and it computed
            // the offsets from a `run_chunk::<A, R>` and a `fn(A) -> R`; the
            // bootstrap proved this is the pool's executable.
            let runner: TaskRunner = unsafe { std::mem::transmute::<usize, TaskRunner>(runner) };
            // SAFETY: as above.
            let (fds, results) = unsafe { runner(function, payload, fds, out) };
            Next::Reply(fds, Some(results))
        }
        MSG_INIT => {
            // SAFETY: as for a task, from a `run_init::<A>` and a `fn(A)`.
            let runner: InitRunner = unsafe { std::mem::transmute::<usize, InitRunner>(runner) };
            // SAFETY: as above.
            match unsafe { runner(function, payload, fds) } {
                Ok(()) => {
                    out.push(REPLY_READY);
                    Next::Reply(Vec::new(), None)
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

    fn halve(x: u64) -> u64 {
        assert!(x % 2 == 0, "odd {x}");
        x / 2
    }

    /// A task's payload: the count, then the items.
    fn payload(items: &[u64]) -> Vec<u8> {
        let mut message = (items.len() as u64).to_le_bytes().to_vec();
        for item in items {
            append(&mut message, item).unwrap();
        }
        message
    }

    /// Runs a chunk of `items` through the worker side, in this process:
    /// the reply's kind and its body.
    fn run(message: &[u8]) -> (u8, Vec<u8>) {
        let mut out = Vec::new();
        let f: fn(u64) -> u64 = halve;
        // SAFETY: `f` is a `fn(u64) -> u64`, as `run_chunk` is told.
        let (fds, _results) =
            unsafe { run_chunk::<u64, u64>(f as usize, message, Vec::new(), &mut out) };
        assert!(fds.is_empty());
        (out[0], out[1..].to_vec())
    }

    fn outcomes(body: &[u8]) -> Vec<Result<u64, TaskError>> {
        Postcard::decode::<Vec<WireOutcome<u64>>>(body)
            .unwrap()
            .into_iter()
            .map(WireOutcome::into_result)
            .collect()
    }

    #[test]
    fn a_chunk_whose_items_all_returned_comes_back_as_values() {
        let (kind, body) = run(&payload(&[2, 4, 6]));
        assert_eq!(kind, REPLY_DONE_VALUES);
        assert_eq!(Postcard::decode::<Vec<u64>>(&body).unwrap(), [1, 2, 3]);
        assert!(first_returned(&body, kind));
    }

    #[test]
    fn a_chunk_with_a_failure_comes_back_as_outcomes() {
        let (kind, body) = run(&payload(&[3, 4]));
        assert_eq!(kind, REPLY_DONE_PACKED);
        assert!(!first_returned(&body, kind));
        assert_eq!(
            outcomes(&body),
            [
                Err(TaskError::Panicked {
                    message: "odd 3".into()
                }),
                Ok(2)
            ]
        );
    }

    #[test]
    fn a_chunk_that_does_not_decode_fails_every_item_alike() {
        // One byte short, a count past the items, trailing bytes.
        let mut short = payload(&[2, 400]);
        short.pop();
        let mut long_count = payload(&[2, 4]);
        long_count[..8].copy_from_slice(&3u64.to_le_bytes());
        let mut trailing = payload(&[2, 4]);
        trailing.push(0);
        for (message, items) in [(short, 2), (long_count, 3), (trailing, 2)] {
            let (kind, body) = run(&message);
            assert_eq!(kind, REPLY_DONE_PACKED);
            let all = outcomes(&body);
            assert_eq!(all.len(), items);
            assert!(
                all.iter()
                    .all(|o| matches!(o, Err(TaskError::ArgsDecode { .. }))),
                "{all:?}"
            );
        }
        // No count at all: nothing to run, an empty reply.
        let (_, body) = run(&[1, 2]);
        assert!(outcomes(&body).is_empty());
    }

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

    #[test]
    fn records_stop_at_a_length_past_the_end() {
        let mut buf = Vec::new();
        push_record(&mut buf, OUT_OK, &7u8).unwrap();
        buf.extend_from_slice(&[OUT_OK, 200, 0, 0, 0, 1]);
        let records: Vec<_> = Records::new(&buf).collect();
        assert_eq!(records.len(), 1);
        assert_eq!(
            decode_outcome::<u8>(Records::new(&buf).next().unwrap()),
            Ok(7)
        );
    }
}
