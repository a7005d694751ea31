//! Model-based property tests of the queue logic: random sequences of
//! operations are applied both to a real queue and to a model (a `VecDeque`
//! plus the ring's byte accounting), and every outcome must match exactly.
//!
//! The model follows `queue/ring.rs`: a message of `len` bytes takes a
//! record of `(16 + len)` bytes rounded up to 64; the ring holds
//! `capacity.max(64).next_power_of_two()` bytes of records and at most
//! `maxsize` messages (0: no limit); the largest message is `capacity - 16`.
//! A put checks, in order: too large, closed, room.
//!
//! Everything runs in one process (cross-process behaviour is tested in
//! `queue.rs`); several threads take turns, one operation at a time, so the
//! sides' leases are granted, used and revoked while the order of
//! operations stays deterministic.

#[path = "../common/mod.rs"]
mod common;

mod bytes;
mod check;
mod model;
mod ops;
mod typed;
mod workers;

use std::sync::mpsc;
use std::time::Duration;

use common::watchdog;
use mpkit::queue::{
    ByteQueue, GetError, GetTimeoutError, PutError, PutTimeoutError, Queue, TryGetError,
    TryPutError,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use bytes::{Msg, exec};
use check::check;
use ops::{Op, capacity, get_op, maxsize, op, put_op, small_len, with_close};
use typed::{Item, encoded_len, texec, typed_item, typed_op, varint_len};
use workers::{Handle, run_property, with_workers};

/// The timeout of `put_timeout` / `get_timeout` on a full / empty queue.
const TINY: Duration = Duration::from_millis(1);

/// Random operations on a byte queue of a random small capacity and
/// maxsize, from one thread, against the model.
#[test]
fn byte_queue_matches_the_model() {
    let _w = watchdog(120);
    let strategy = (
        capacity(),
        maxsize(),
        vec(op(), 1..=300),
        proptest::option::weighted(0.4, (any::<Index>(), Just(0usize))),
    );
    run_property(256, strategy, |(requested, maxsize, ops, close)| {
        let q = ByteQueue::with_capacity(maxsize, requested).unwrap();
        let steps = with_close(ops.into_iter().map(|op| (0, op)).collect(), close);
        with_workers(
            vec![Handle::Shared(&q)],
            exec,
            || q.close(),
            |run| check(&q, requested, maxsize, &steps, run),
        )
    });
}

/// Worker threads to issue operations from; the queue's sides follow them.
const THREADS: usize = 3;

/// A run of operations: long runs by one thread (a side is leased to a
/// thread after 64 consecutive entries, twice as many after each
/// revocation), quick alternation, and one thread putting while another
/// gets (each side leased to a different thread).
fn segment() -> impl Strategy<Value = Vec<(usize, Op)>> {
    let run = |t: usize, ops: Vec<Op>| ops.into_iter().map(|op| (t, op)).collect::<Vec<_>>();
    prop_oneof![
        3 => (0..THREADS, vec(op(), 1..=200)).prop_map(move |(t, ops)| run(t, ops)),
        1 => (0..THREADS, vec(prop_oneof![put_op(small_len()), get_op()], 64..=300))
            .prop_map(move |(t, ops)| run(t, ops)),
        3 => vec((0..THREADS, op()), 1..=12),
        2 => (0..THREADS, 1..THREADS, vec((put_op(small_len()), get_op()), 10..=150)).prop_map(
            |(p, d, rounds)| {
                let c = (p + d) % THREADS;
                rounds
                    .into_iter()
                    .flat_map(|(put, get)| [(p, put), (c, get)])
                    .collect()
            }
        ),
    ]
}

/// The same against operations issued by several threads in turn, each
/// through a handle of its own (`try_clone`) or all through one shared
/// handle.
#[test]
fn byte_queue_from_threads_in_turn_matches_the_model() {
    let _w = watchdog(120);
    let strategy = (
        capacity(),
        maxsize(),
        any::<bool>(),
        vec(segment(), 1..=6).prop_map(|segs| segs.concat()),
        proptest::option::weighted(0.3, (any::<Index>(), 0..THREADS)),
    );
    run_property(
        96,
        strategy,
        |(requested, maxsize, shared, steps, close)| {
            let q = ByteQueue::with_capacity(maxsize, requested).unwrap();
            let steps = with_close(steps, close);
            let handles = (0..THREADS)
                .map(|_| match shared {
                    true => Handle::Shared(&q),
                    false => Handle::Own(q.try_clone().unwrap()),
                })
                .collect();
            with_workers(
                handles,
                exec,
                || q.close(),
                |run| check(&q, requested, maxsize, &steps, run),
            )
        },
    );
}

/// A `Queue<Vec<u32>>` against the model, sizes being postcard encodings
/// (items of exactly the largest size, one byte more, and so on), checking
/// also `is_full` (`maxsize` items queued) and that refused items are
/// handed back.
#[test]
fn typed_queue_matches_the_model() {
    let _w = watchdog(120);
    let strategy = (
        capacity(),
        maxsize(),
        vec(typed_op(), 1..=200),
        proptest::option::weighted(0.4, (any::<Index>(), Just(0usize))),
    );
    run_property(128, strategy, |(requested, maxsize, ops, close)| {
        let q: Queue<Item> = Queue::with_capacity(maxsize, requested).unwrap();
        let steps = with_close(ops.into_iter().map(|op| (0, op)).collect(), close);
        with_workers(
            vec![Handle::Shared(&q)],
            texec,
            || q.close(),
            |run| check(&q, requested, maxsize, &steps, run),
        )
    });
}

#[test]
fn typed_items_have_the_sizes_asked_for() {
    for id in [1u64, 100, 127, 128, 300, 20_000, 1 << 40] {
        let first = varint_len(id as u32);
        for size in 1 + first..3000 {
            let item = typed_item(id, size);
            assert_eq!(item[0], id as u32);
            assert_eq!(encoded_len(&item), size, "id {id}, item {item:?}");
        }
    }
}

// ----- fixed sequences -------------------------------------------------------

/// Closing a queue that holds messages: puts fail at once (a too-large
/// message is still `TooLarge`), gets drain in order, then fail with
/// `Closed`, whatever their wait.
#[test]
fn close_while_nonempty_drains_then_refuses() {
    let _w = watchdog(30);
    let q = ByteQueue::with_capacity(2, 256).unwrap();
    let a = Msg::new(1, 100);
    let b = Msg::new(2, 0);
    q.put(&a.0).unwrap();
    q.put(&b.0).unwrap();
    assert!(matches!(q.try_put(b"x"), Err(TryPutError::Full(()))));
    q.close();
    q.close(); // twice is fine
    assert!(q.is_closed());
    assert!(matches!(q.try_put(b"x"), Err(TryPutError::Closed(()))));
    assert!(matches!(q.put(b"x"), Err(PutError::Closed(()))));
    assert!(matches!(
        q.put_timeout(&[0; 241], TINY),
        Err(PutTimeoutError::TooLarge {
            size: 241,
            max: 240,
            ..
        })
    ));
    assert!(matches!(q.put_many(&[b"x"]), Err(PutError::Closed(0))));
    assert_eq!(q.len(), 2);
    assert_eq!(Msg(q.get().unwrap()), a);
    assert_eq!(q.get_many(5).unwrap(), vec![b.0]);
    assert!(matches!(q.try_get(), Err(TryGetError::Closed)));
    assert!(matches!(q.get(), Err(GetError::Closed)));
    assert!(matches!(q.get_timeout(TINY), Err(GetTimeoutError::Closed)));
    assert!(matches!(q.get_many(3), Err(GetError::Closed)));
    let mut buf = vec![1, 2, 3];
    assert!(matches!(q.get_into(&mut buf), Err(GetError::Closed)));
    assert!(buf.is_empty());
}

/// Runs `f` on a thread of its own: its result, or `None` if it has not
/// returned within 2 s, after which `unblock` is called to let it out.
fn within_2s<R: Send>(f: impl FnOnce() -> R + Send, unblock: impl Fn()) -> Option<R> {
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(move || {
            let _ = tx.send(f());
        });
        let r = rx.recv_timeout(Duration::from_secs(2)).ok();
        if r.is_none() {
            unblock();
        }
        r
    })
}

/// `get_many(0)` (and `get_many_timeout(0, _)`) must return an empty batch
/// at once and leave the queued message where it is. (It once took nothing,
/// found the queue not empty, "waited" for a message, which returned at
/// once, and tried again forever at 100% CPU, deadline or not.)
#[test]
fn get_many_zero_returns_at_once() {
    let _w = watchdog(30);
    let mut failures = Vec::new();

    let q = ByteQueue::with_capacity(0, 1024).unwrap();
    q.put(b"x").unwrap();
    // Closed and empty, a stuck call fails `Closed` and returns.
    let unblock = || {
        q.close();
        while q.try_get().is_ok() {}
    };
    match within_2s(|| q.get_many(0), unblock) {
        Some(r) => {
            assert!(r.is_ok_and(|v| v.is_empty()));
            assert_eq!(q.try_get().unwrap(), b"x");
        }
        None => failures.push("ByteQueue::get_many(0) on a queue of one message"),
    }

    let t: Queue<u32> = Queue::with_capacity(0, 1024).unwrap();
    t.put(7).unwrap();
    let unblock = || {
        t.close();
        while t.try_get().is_ok() {}
    };
    match within_2s(|| t.get_many_timeout(0, Duration::from_millis(10)), unblock) {
        Some(r) => {
            assert!(r.is_ok_and(|v| v.is_empty()));
            assert_eq!(t.try_get().unwrap(), 7);
        }
        None => failures.push("Queue::get_many_timeout(0, 10 ms) on a queue of one item"),
    }
    assert!(failures.is_empty(), "still running after 2 s: {failures:?}");
}
