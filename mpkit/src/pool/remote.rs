//! What a remote pool (`redis_pool`) takes from the local pool's wire
//! format: the worker's side of a chunk, run in a process that got the
//! chunk's payload some other way than a socket from a dispatcher.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::wire::{self, OUT_RESULT_ENCODE, REPLY_DONE};

/// Runs every item of a chunk of `f` tasks: `payload` is the item count
/// (`u64`, little-endian) and the items (a format byte, then the items), as a
/// [`Job`](super::Job) for a remote pool makes it. Returns the reply's
/// body (the failures, then the results, as `wire.rs` lays a reply out),
/// which [`Plan::decode`](super::batch::Plan::decode) reads. Each item's
/// decode, function and encode run under `catch_unwind`. Results that hold
/// handles (descriptors) cannot leave the host: every item of such a
/// chunk fails with `ResultEncode`, saying so.
pub(crate) fn run_chunk<A: DeserializeOwned, R: Serialize>(
    f: fn(A) -> R,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    // SAFETY: `f` is a `fn(A) -> R`, which is what `run_chunk::<A, R>`
    // is told it is.
    let (start, fds, results) =
        unsafe { super::chunk::run_chunk::<A, R>(f as usize, payload, Vec::new(), &mut out) };
    out.drain(..start);
    let handles = fds.len();
    drop(fds);
    drop(results);
    if handles > 0 {
        let items = payload
            .first_chunk::<8>()
            .map_or(0, |c| u64::from_le_bytes(*c));
        let why = format!(
            "the chunk's results hold {handles} handles (descriptors), which cannot go to another host"
        );
        let failures: Vec<(u64, u8, &str, &str)> = (0..items)
            .map(|at| {
                (
                    at,
                    OUT_RESULT_ENCODE,
                    std::any::type_name::<R>(),
                    why.as_str(),
                )
            })
            .collect();
        out.clear();
        out.push(REPLY_DONE);
        // Numbers and strings: these cannot fail to encode.
        let _ = wire::append(&mut out, &failures);
        let _ = wire::append(&mut out, &0u64);
        // No results: the format byte alone.
        out.push(super::fixed::POSTCARD);
    }
    debug_assert_eq!(out.first(), Some(&REPLY_DONE));
    out.remove(0);
    out
}
