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
//! | worker → pool: chunk done | number `u64`, `5`, postcard `Vec<(u64, u8, &str, String)>` (the items that failed), postcard count `u64`, the other items' postcard results back to back |
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
use crate::Connection;
use crate::codec::{Codec, CodecError, Postcard};
use crate::handle;
use crate::process::child::{address_of, panic_message};
use crate::sys;

pub(super) const MSG_TASK: u8 = 1;
pub(super) const MSG_INIT: u8 = 2;
pub(super) const REPLY_DONE: u8 = 5;
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

/// A failed item's tags.
pub(super) const OUT_PANICKED: u8 = 1;
pub(super) const OUT_ARGS_DECODE: u8 = 2;
pub(super) const OUT_RESULT_ENCODE: u8 = 3;

/// Results encoded under one `handle::collect_into`: the functions of a
/// block run first, then its results are encoded (so the user's code never
/// runs while the reply's descriptor list is installed). Bounds the
/// results held at once.
const BLOCK: usize = 64;

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

/// Why an item of a chunk has no result, in the worker: the fields of a
/// [`WireFailure`].
type Failure = (u64, u8, &'static str, String);

/// The worker side: runs every item of a chunk of `fn(A) -> R` tasks.
/// `items`: the count, then the items (see the layouts). Appends the reply
/// (its kind byte first) to `out`.
///
/// The chunk's arguments are decoded first, all under one
/// `handle::provide` (the function never runs inside it). Then, a block of
/// [`BLOCK`] items at a time, the functions run, each under its own
/// `catch_unwind`, and their results are encoded, under one
/// `handle::collect_into` the reply's list. Results whose type has a
/// destructor are returned, to be dropped after the reply is sent (a
/// panic there is not reported: the result was delivered).
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
    let mut failures: Vec<Failure> = Vec::new();
    let mut values = Vec::with_capacity(items.len());
    let mut returned = 0u64;
    let mut out_fds = Vec::new();
    let mut kept: Vec<R> = Vec::new();
    match decode_args::<A>(items, fds) {
        Ok(args) => {
            let mut block: Vec<(u64, R)> = Vec::with_capacity(BLOCK.min(args.len()));
            let mut args = args.into_iter().zip(0u64..).peekable();
            while args.peek().is_some() {
                for (arg, at) in args.by_ref().take(BLOCK) {
                    match catch_unwind(AssertUnwindSafe(|| f(arg))) {
                        Ok(r) => block.push((at, r)),
                        Err(payload) => {
                            failures.push((at, OUT_PANICKED, "", panic_message(payload)))
                        }
                    }
                }
                handle::collect_into(&mut out_fds, || {
                    let mut values = Appender::new(&mut values);
                    for (at, r) in block.drain(..) {
                        let start = values.buf().len();
                        match catch_unwind(AssertUnwindSafe(|| values.push(&r))) {
                            Ok(Ok(())) => returned += 1,
                            Ok(Err(why)) => failures.push((
                                at,
                                OUT_RESULT_ENCODE,
                                std::any::type_name::<R>(),
                                why,
                            )),
                            Err(payload) => {
                                values.buf().truncate(start);
                                failures.push((at, OUT_PANICKED, "", panic_message(payload)));
                            }
                        }
                        if std::mem::needs_drop::<R>() {
                            kept.push(r);
                        }
                    }
                });
            }
            // Listed in the order of the items (a panic comes before the
            // encode failures of its block's earlier items).
            failures.sort_unstable_by_key(|f| f.0);
        }
        // The items cannot be told apart past the one that failed: every
        // item of the chunk fails alike.
        Err((count, tag, type_name, why)) => {
            failures.extend((0..count as u64).map(|at| (at, tag, type_name, why.clone())));
        }
    }
    if out_fds.len() > sys::MAX_FDS_PER_MESSAGE {
        // Too many handles for one reply: every item of the chunk fails.
        let why = format!(
            "the chunk's results hold {} handles; at most {} fit in one reply (use a smaller chunk size)",
            out_fds.len(),
            sys::MAX_FDS_PER_MESSAGE
        );
        let items = failures.len() as u64 + returned;
        failures = (0..items)
            .map(|at| {
                (
                    at,
                    OUT_RESULT_ENCODE,
                    std::any::type_name::<R>(),
                    why.clone(),
                )
            })
            .collect();
        values.clear();
        returned = 0;
        out_fds.clear();
    }
    out.push(REPLY_DONE);
    // Strings, numbers and a count: these cannot fail to encode.
    let _ = append(out, &failures);
    let _ = append(out, &returned);
    out.extend_from_slice(&values);
    (out_fds, Results::new(kept))
}

/// A chunk's results that have a destructor, kept until its reply is sent,
/// then dropped, each under its own `catch_unwind` (a panic in a
/// destructor is not reported). The worker's loop does not know the result
/// type, so the type is erased: a boxed `Vec<R>` and the function that
/// drops it.
pub(super) struct Results {
    results: *mut (),
    drop_them: unsafe fn(*mut ()),
}

impl Results {
    fn new<R>(results: Vec<R>) -> Results {
        Results {
            results: Box::into_raw(Box::new(results)).cast(),
            drop_them: drop_results::<R>,
        }
    }
}

/// # Safety
/// `results` must come from `Box::<Vec<R>>::into_raw`, and not be used
/// again.
unsafe fn drop_results<R>(results: *mut ()) {
    // SAFETY: guaranteed by the caller.
    let results = unsafe { Box::from_raw(results.cast::<Vec<R>>()) };
    for result in *results {
        let _ = catch_unwind(AssertUnwindSafe(move || drop(result)));
    }
}

impl Drop for Results {
    fn drop(&mut self) {
        // SAFETY: `Results::new` made the pair from a boxed `Vec<R>` and
        // this `drop_results::<R>`; it is dropped once. The results borrow
        // nothing (`R: DeserializeOwned`, made in this process from owned
        // arguments).
        unsafe { (self.drop_them)(self.results) }
    }
}

/// Why a chunk's arguments did not decode: how many items it has (at most
/// [`MAX_FAILED_ITEMS`] are reported), and the tag, type name and message
/// each of them fails with.
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
    // Each item takes a byte at least, but for those that encode to
    // nothing (zero-sized ones): a count far past the body is refused,
    // not looped over (2^64 units of `()` from a forged task).
    if count > (body.len() as u64).saturating_add(MAX_FAILED_ITEMS) {
        return Err((
            reported,
            OUT_ARGS_DECODE,
            type_name,
            format!(
                "{count} items announced in {} bytes: more than a chunk can hold",
                body.len()
            ),
        ));
    }
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
    use serde::Deserialize;

    use super::*;

    fn halve(x: u64) -> u64 {
        assert!(x % 2 == 0, "odd {x}");
        x / 2
    }

    #[test]
    fn a_forged_count_of_zero_sized_items_is_refused_not_looped_over() {
        // `()` encodes to nothing: 2^64 of them would take no bytes.
        let forged = u64::MAX.to_le_bytes();
        let (reported, kind, _, why) = decode_args::<()>(&forged, Vec::new()).unwrap_err();
        assert_eq!(
            (reported, kind),
            (MAX_FAILED_ITEMS as usize, OUT_ARGS_DECODE)
        );
        assert!(why.contains("more than a chunk can hold"), "{why}");
        // A real chunk of them still decodes.
        let three = 3u64.to_le_bytes();
        assert_eq!(decode_args::<()>(&three, Vec::new()).unwrap().len(), 3);
    }

    /// A task's payload: the count, then the items.
    fn payload(items: &[u64]) -> Vec<u8> {
        let mut message = (items.len() as u64).to_le_bytes().to_vec();
        for item in items {
            append(&mut message, item).unwrap();
        }
        message
    }

    /// Runs a chunk through the worker side, in this process: the reply's
    /// body, after its kind.
    fn run(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let f: fn(u64) -> u64 = halve;
        // SAFETY: `f` is a `fn(u64) -> u64`, as `run_chunk` is told.
        let (fds, _results) =
            unsafe { run_chunk::<u64, u64>(f as usize, message, Vec::new(), &mut out) };
        assert!(fds.is_empty());
        assert_eq!(out[0], REPLY_DONE);
        out[1..].to_vec()
    }

    /// A reply's failures and results.
    fn parse(body: &[u8]) -> (Vec<(u64, TaskError)>, Vec<u64>) {
        let mut de = postcard::Deserializer::from_bytes(body);
        let failures = Vec::<WireFailure>::deserialize(&mut de).unwrap();
        let n = u64::deserialize(&mut de).unwrap();
        let values = (0..n).map(|_| u64::deserialize(&mut de).unwrap()).collect();
        assert!(de.finalize().unwrap().is_empty());
        let failures = failures
            .into_iter()
            .map(|f| (f.0, failure_error::<u64>(f)))
            .collect();
        (failures, values)
    }

    #[test]
    fn a_chunk_whose_items_all_returned_comes_back_as_values_alone() {
        let body = run(&payload(&[2, 4, 6]));
        assert_eq!(parse(&body), (vec![], vec![1, 2, 3]));
        assert!(first_returned(&body));
    }

    #[test]
    fn failures_are_listed_by_position_before_the_other_results() {
        let body = run(&payload(&[4, 3, 8, 5]));
        let panicked = |m: &str| TaskError::Panicked { message: m.into() };
        assert_eq!(
            parse(&body),
            (
                vec![(1, panicked("odd 3")), (3, panicked("odd 5"))],
                vec![2, 4]
            )
        );
        assert!(first_returned(&body));
        assert!(!first_returned(&run(&payload(&[3, 4]))));
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
            let (failures, values) = parse(&run(&message));
            assert!(values.is_empty());
            assert_eq!(failures.len(), items);
            assert!(
                failures.iter().enumerate().all(
                    |(i, (at, e))| *at == i as u64 && matches!(e, TaskError::ArgsDecode { .. })
                ),
                "{failures:?}"
            );
        }
        // No count at all: nothing to run, an empty reply.
        assert_eq!(parse(&run(&[1, 2])), (vec![], vec![]));
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
}
