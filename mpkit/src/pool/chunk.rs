//! The worker's side of a chunk: runs each item's function and writes the
//! reply (`wire.rs` lays the messages out, `fixed/` the values).
//!
//! Items in a fixed-width column (each the same scalar: no handle among
//! them) are read, run and answered one at a time, with nothing held
//! between: each that does not decode fails alone. While the results are
//! a fixed-width column too, they are written a batch at a time through
//! room on the stack (`ItemWriter::extend_fixed_from`), the loop's state
//! in registers. Items in postcard are decoded first, all under one
//! `handle::provide`, since their handles index the message's one list
//! and one item cannot be found past another that does not decode: such a
//! chunk fails whole.
//!
//! The reply is written where it is sent from: its results after
//! [`LEAD_ROOM`] bytes of room, and what leads them (the reply's number,
//! its kind, the failures, the count) into that room once they are known,
//! ending where the results begin (spliced in, the one copy, when it does
//! not fit).
//!
//! A result is written fixed-width while it is the column's scalar,
//! outside any handle list (a handle refuses to serialize there, and so
//! goes to postcard). Results in postcard are encoded a block of
//! [`BLOCK`] at a time under one `handle::collect_into` the reply's list:
//! handles index it, and the user's function never runs while the list is
//! installed. Every function, `Serialize` and `Deserialize` of the user's
//! runs under `catch_unwind`: a panic fails its item alone.

use std::os::fd::OwnedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::fixed::{self, FixedReader, ItemReader, ItemWriter, PushError, Run};
use super::wire::{OUT_ARGS_DECODE, OUT_PANICKED, OUT_RESULT_ENCODE, REPLY_DONE, append};
use crate::handle;
use crate::process::child::panic_message;
use crate::sys;

/// Results in postcard encoded under one `handle::collect_into`. Bounds
/// the results held at once.
const BLOCK: usize = 64;

/// Why an item of a chunk has no result, in the worker: the fields of a
/// [`WireFailure`](super::wire::WireFailure).
type Failure = (u64, u8, &'static str, String);

/// Room left before a reply's results for what leads them (its kind, the
/// failures, the count), written once the results are: the usual reply's
/// lead fits, so its results are written where they are sent from, not
/// copied there.
const LEAD_ROOM: usize = 32;

/// Runs every item of a chunk of `fn(A) -> R` tasks. `items`: the count,
/// then the items (see the layouts in `wire.rs`). Appends the reply (its
/// kind byte first) to `out`, and returns where the message now starts in
/// `out` (what `out` held first, the reply's number, is moved up to just
/// before the reply), its descriptors and the results whose type has a
/// destructor, to be dropped after the reply is sent (a panic there is not
/// reported: the result was delivered).
///
/// # Safety
/// `function` must be the address of a `fn(A) -> R` in this executable
/// (the pool computed its offset from a value of that type).
pub(super) unsafe fn run_chunk<A: DeserializeOwned, R: Serialize>(
    function: usize,
    items: &[u8],
    fds: Vec<OwnedFd>,
    out: &mut Vec<u8>,
) -> (usize, Vec<OwnedFd>, Results) {
    // SAFETY: guaranteed by the caller; fn pointers and usize have the
    // same size.
    let f: fn(A) -> R = unsafe { std::mem::transmute::<usize, fn(A) -> R>(function) };
    let prefix = out.len();
    let values_at = prefix + LEAD_ROOM;
    out.reserve(LEAD_ROOM + items.len());
    out.resize(values_at, 0);
    let mut reply = ReplyWriter::<R>::new(out);
    match fixed_args(items, &fds) {
        Some((count, mut reader)) => {
            let mut at = 0;
            while at < count {
                // The usual run: arguments that decode, results of the
                // column's scalar.
                at = reply.run_fixed(at, count, f, &mut reader);
                if at == count {
                    break;
                }
                // One item the other way (the first, or one that stopped
                // the run before it was run).
                match catch_unwind(AssertUnwindSafe(|| reader.next_alone::<A>())) {
                    Ok(Ok(arg)) => reply.run(at, f, arg),
                    Ok(Err(e)) => reply.fail_decode::<A>(at, e.to_string()),
                    Err(payload) => reply.fail(at, OUT_PANICKED, "", panic_message(payload)),
                }
                at += 1;
            }
        }
        None => match decode_args::<A>(items, fds) {
            Ok(args) => {
                for (arg, at) in args.into_iter().zip(0u64..) {
                    reply.run(at, f, arg);
                }
            }
            // The items cannot be told apart past the one that failed:
            // every item of the chunk fails alike.
            Err((count, tag, type_name, why)) => {
                for at in 0..count as u64 {
                    reply.fail(at, tag, type_name, why.clone());
                }
            }
        },
    }
    let (mut failures, mut returned, mut out_fds, kept) = reply.finish();
    // Listed in the order of the items (a block's encode failures come
    // after the panics of later items).
    failures.sort_unstable_by_key(|f| f.0);
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
        out.truncate(values_at);
        out.push(fixed::POSTCARD);
        returned = 0;
        out_fds.clear();
    }
    // The prefix, the kind, then strings, numbers and a count: these
    // cannot fail to encode.
    let mut lead = Vec::with_capacity(prefix + LEAD_ROOM);
    lead.extend_from_slice(&out[..prefix]);
    lead.push(REPLY_DONE);
    let _ = append(&mut lead, &failures);
    let _ = append(&mut lead, &returned);
    // Right before the format byte and the results.
    let start = match values_at.checked_sub(lead.len()) {
        Some(start) => {
            out[start..values_at].copy_from_slice(&lead);
            start
        }
        None => {
            out.splice(..values_at, lead);
            0
        }
    };
    (start, out_fds, Results::new(kept))
}

/// The count and a reader of a chunk whose items are a fixed-width column
/// of exactly that many values, with no descriptors beside them; `None`
/// for any other chunk (which [`decode_args`] reads, or fails whole).
fn fixed_args<'b>(items: &'b [u8], fds: &[OwnedFd]) -> Option<(u64, FixedReader<'b>)> {
    let (count, body) = items.split_first_chunk::<8>()?;
    let count = u64::from_le_bytes(*count);
    // Zero-sized values take no room: a count far past the body goes to
    // `decode_args`, which refuses it.
    if count > (body.len() as u64).saturating_add(MAX_FAILED_ITEMS) {
        return None;
    }
    let reader = ItemReader::new(body).ok()?;
    match reader.fixed_exactly(count) {
        Some(Ok(())) if fds.is_empty() => Some((count, reader.into_fixed()?)),
        _ => None,
    }
}

/// A chunk's reply being written: its results, the items that failed, the
/// descriptors the results' handles gave.
struct ReplyWriter<'v, R> {
    values: ItemWriter<'v>,
    failures: Vec<Failure>,
    returned: u64,
    fds: Vec<OwnedFd>,
    /// Results waiting to be encoded in postcard, in order.
    pending: Vec<(u64, R)>,
    /// Results with a destructor, dropped once the reply is sent.
    kept: Vec<R>,
}

impl<'v, R: Serialize> ReplyWriter<'v, R> {
    fn new(values: &'v mut Vec<u8>) -> ReplyWriter<'v, R> {
        ReplyWriter {
            values: ItemWriter::new(values),
            failures: Vec::new(),
            returned: 0,
            fds: Vec::new(),
            pending: Vec::new(),
            kept: Vec::new(),
        }
    }

    /// Runs item `at`, and writes its result (or its panic).
    #[inline(always)]
    fn run<A>(&mut self, at: u64, f: fn(A) -> R, arg: A) {
        match catch_unwind(AssertUnwindSafe(|| f(arg))) {
            Ok(r) => self.put(at, r),
            Err(payload) => self.fail(at, OUT_PANICKED, "", panic_message(payload)),
        }
    }

    fn fail(&mut self, at: u64, tag: u8, type_name: &'static str, why: String) {
        self.failures.push((at, tag, type_name, why));
    }

    fn fail_decode<A>(&mut self, at: u64, why: String) {
        self.fail(at, OUT_ARGS_DECODE, std::any::type_name::<A>(), why)
    }

    /// Runs items `at..count` of a fixed-width column while the results
    /// are the fixed-width column's scalar, writing them a batch at a time
    /// (see [`ItemWriter::extend_fixed_from`]). An item that does not
    /// decode, panics, or whose `Serialize` panics fails alone and the run
    /// goes on; a result of another shape is written by [`put`] (the
    /// column is postcard from then on) and ends the run. Returns the
    /// next item not run: `at` itself while the results' column is not
    /// fixed-width, or when results need dropping after the reply.
    ///
    /// [`put`]: Self::put
    #[inline(always)]
    fn run_fixed<'b, A: serde::Deserialize<'b>>(
        &mut self,
        mut at: u64,
        count: u64,
        f: fn(A) -> R,
        reader: &mut FixedReader<'b>,
    ) -> u64 {
        if std::mem::needs_drop::<R>() {
            return at;
        }
        while at < count {
            // Why the item after the last result made failed, if it did.
            let mut failed = None;
            let mut next = at;
            let run = self.values.extend_fixed_from::<true, R>(|| {
                if next == count {
                    return None;
                }
                next += 1;
                match catch_unwind(AssertUnwindSafe(|| reader.next_alone::<A>())) {
                    Ok(Ok(arg)) => match catch_unwind(AssertUnwindSafe(|| f(arg))) {
                        Ok(r) => return Some(r),
                        Err(payload) => failed = Some(Err(payload)),
                    },
                    Ok(Err(e)) => failed = Some(Ok(e.to_string())),
                    Err(payload) => failed = Some(Err(payload)),
                }
                None
            });
            let (written, end) = match run {
                Run::NotFixed => return at,
                Run::Done(n) => (n, None),
                Run::Stopped(n, r) => (n, Some(Ok(r))),
                Run::Panicked(n, payload) => (n, Some(Err(payload))),
            };
            self.returned += written as u64;
            at += written as u64;
            match (end, failed) {
                // Out of items.
                (None, None) => return at,
                (None, Some(Ok(why))) => self.fail_decode::<A>(at, why),
                (None, Some(Err(payload))) | (Some(Err(payload)), _) => {
                    self.fail(at, OUT_PANICKED, "", panic_message(payload))
                }
                (Some(Ok(r)), _) => {
                    self.put(at, r);
                    return at + 1;
                }
            }
            at += 1;
        }
        at
    }

    #[inline(always)]
    fn put(&mut self, at: u64, r: R) {
        if !self.values.is_postcard() {
            match self.values.try_fixed::<true, R>(&r) {
                Ok(true) => {
                    self.returned += 1;
                    self.keep(r);
                    return;
                }
                Ok(false) => {}
                Err(payload) => {
                    self.fail(at, OUT_PANICKED, "", panic_message(payload));
                    self.keep(r);
                    return;
                }
            }
        }
        self.pending.push((at, r));
        if self.pending.len() == BLOCK {
            self.flush();
        }
    }

    #[inline]
    fn keep(&mut self, r: R) {
        if std::mem::needs_drop::<R>() {
            self.kept.push(r);
        }
    }

    /// Encodes the pending results in postcard, under one
    /// `handle::collect_into` the reply's list.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let ReplyWriter {
            values,
            failures,
            returned,
            fds,
            pending,
            kept,
        } = self;
        handle::collect_into(fds, || {
            for (at, r) in pending.drain(..) {
                match values.push_caught(&r) {
                    Ok(()) => *returned += 1,
                    Err(PushError::Encode(why)) => {
                        failures.push((at, OUT_RESULT_ENCODE, std::any::type_name::<R>(), why))
                    }
                    Err(PushError::Panicked(payload)) => {
                        failures.push((at, OUT_PANICKED, "", panic_message(payload)))
                    }
                }
                if std::mem::needs_drop::<R>() {
                    kept.push(r);
                }
            }
        });
    }

    /// The failures, the count of results, the descriptors and the results
    /// kept.
    fn finish(mut self) -> (Vec<Failure>, u64, Vec<OwnedFd>, Vec<R>) {
        self.flush();
        (self.failures, self.returned, self.fds, self.kept)
    }
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
const MAX_FAILED_ITEMS: u64 = super::batch::MAX_CHUNK as u64;

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
            let mut reader = ItemReader::new(body)?;
            for _ in 0..count {
                args.push(reader.next::<A>()?);
            }
            reader.finish().map(|()| args)
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

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::super::TaskError;
    use super::super::wire::{WireFailure, failure_error, first_returned};
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
        // Nor in a fixed-width column of units, which reads item by item:
        // such a chunk goes to `decode_args`, which refuses it as above.
        let mut forged = u64::MAX.to_le_bytes().to_vec();
        forged.push(fixed::Kind::Unit as u8);
        assert!(fixed_args(&forged, &[]).is_none());
        assert!(decode_args::<()>(&forged, Vec::new()).is_err());
        let mut three = 3u64.to_le_bytes().to_vec();
        three.push(fixed::Kind::Unit as u8);
        assert_eq!(fixed_args(&three, &[]).map(|(n, _)| n), Some(3));
        // A real chunk of them still decodes.
        let mut three = 3u64.to_le_bytes().to_vec();
        three.push(fixed::POSTCARD);
        assert_eq!(decode_args::<()>(&three, Vec::new()).unwrap().len(), 3);
    }

    /// A task's payload: the count, then the items.
    fn payload(items: &[u64]) -> Vec<u8> {
        let mut message = (items.len() as u64).to_le_bytes().to_vec();
        let mut writer = ItemWriter::new(&mut message);
        for item in items {
            writer.push(item).unwrap();
        }
        message
    }

    /// Runs a chunk through the worker side, in this process: the reply's
    /// body, after its kind.
    fn run(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let f: fn(u64) -> u64 = halve;
        // SAFETY: `f` is a `fn(u64) -> u64`, as `run_chunk` is told.
        let (start, fds, _results) =
            unsafe { run_chunk::<u64, u64>(f as usize, message, Vec::new(), &mut out) };
        assert!(fds.is_empty());
        assert_eq!(out[start], REPLY_DONE);
        out[start + 1..].to_vec()
    }

    /// A reply's failures and results.
    fn parse(body: &[u8]) -> (Vec<(u64, TaskError)>, Vec<u64>) {
        let mut de = postcard::Deserializer::from_bytes(body);
        let failures = Vec::<WireFailure>::deserialize(&mut de).unwrap();
        let n = u64::deserialize(&mut de).unwrap();
        let mut reader = ItemReader::new(de.finalize().unwrap()).unwrap();
        let values = (0..n).map(|_| reader.next::<u64>().unwrap()).collect();
        reader.finish().unwrap();
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
}
