//! What a map does with the caller's items, between real processes: item
//! iterators that panic, lie in `size_hint`, resume after `None` or use
//! the pool themselves; every chunk size around the item count and 2^20;
//! a function not in the executable; handles split across chunks; drops.
//! (Result and argument types read as another type than was sent:
//! `pool_result_types.rs`.) Each test states what the pool promises.

mod common;

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use common::{TempDir, watchdog};
use mpkit::pool::{Executor, TaskError};
use mpkit::{Connection, Pool};
use serde::{Deserialize, Serialize};

/// The most items in one chunk (`batch.rs`: `MAX_CHUNK`).
const MAX_CHUNK: usize = 1 << 20;

/// Items from a vector, with a `size_hint` of our choosing, that panic
/// when asked for item `panic_at`.
struct Items<T> {
    items: std::vec::IntoIter<T>,
    taken: usize,
    panic_at: Option<usize>,
    hint: Hint,
}

#[derive(Clone, Copy)]
enum Hint {
    /// The truth, exactly (the map's direct path).
    Exact,
    /// `(0, None)` (the map collects first).
    Unknown,
    /// This, whatever is left.
    Lie(usize, Option<usize>),
}

impl<T> Items<T> {
    fn new(items: Vec<T>, hint: Hint) -> Items<T> {
        Items {
            items: items.into_iter(),
            taken: 0,
            panic_at: None,
            hint,
        }
    }

    fn panicking_at(mut self, at: usize) -> Items<T> {
        self.panic_at = Some(at);
        self
    }
}

impl<T> Iterator for Items<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.panic_at == Some(self.taken) {
            panic!("input {} panics", self.taken);
        }
        self.taken += 1;
        self.items.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.hint {
            Hint::Exact => self.items.size_hint(),
            Hint::Unknown => (0, None),
            Hint::Lie(lo, hi) => (lo, hi),
        }
    }
}

/// The panic message of a caught panic.
fn message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p
            .downcast_ref::<&str>()
            .map_or_else(String::new, |s| s.to_string()),
    }
}

/// The directory a worker writes its marks into: the test process's
/// `TempDir` of that tag (a worker's parent is the pool's process).
fn marks_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "mpkit-test-{}-{tag}",
        std::os::unix::process::parent_id()
    ))
}

/// Leaves a mark that item `x` ran.
fn record(x: u64) -> u64 {
    std::fs::write(marks_dir("inputs-ran").join(x.to_string()), b"").unwrap();
    x
}

/// [`record`] for items in postcard.
fn record_pair((x, _): (u64, String)) -> u64 {
    record(x)
}

/// The items that left a mark in `dir`, emptying it.
fn marks(dir: &TempDir) -> Vec<u64> {
    let mut ran: Vec<u64> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let x = e.file_name().to_str().unwrap().parse().unwrap();
            std::fs::remove_file(e.path()).unwrap();
            x
        })
        .collect();
    ran.sort_unstable();
    ran
}

/// An item iterator whose `next` panics, mid-chunk, at a chunk's first
/// item (between chunks) or at the very first item, with items in a
/// fixed-width column or in postcard, through `map` and `map_outcomes`:
/// the panic reaches the caller with its message; the pool stays usable;
/// no item of the chunk being encoded, nor any later one, ever runs (the
/// chunk is half-built: nothing of it may be sent).
#[test]
fn an_item_iterator_that_panics_reaches_the_caller_and_sends_nothing_half_built() {
    let _w = watchdog(120);
    let dir = TempDir::new("inputs-ran");
    // The marks show what ran.
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.map(record, [1000, 1001]), Ok(vec![1000, 1001]));
    drop(pool);
    assert_eq!(marks(&dir), [1000, 1001]);
    let n = 20usize;
    for (chunk, at) in [(4, 6), (4, 8), (4, 0), (4, 19), (1, 5), (7, 13), (20, 10)] {
        for (postcard, outcomes, hint) in [
            (false, false, Hint::Exact),
            (false, true, Hint::Exact),
            (true, false, Hint::Exact),
            (true, true, Hint::Unknown),
        ] {
            let case =
                format!("chunk {chunk}, panic at {at}, postcard {postcard}, outcomes {outcomes}");
            let pool = Pool::new(2).unwrap();
            let caught = catch_unwind(AssertUnwindSafe(|| {
                let xs: Vec<u64> = (0..n as u64).collect();
                if postcard {
                    let items = xs
                        .into_iter()
                        .map(|x| (x, "p".repeat(x as usize)))
                        .collect();
                    let items = Items::new(items, hint).panicking_at(at);
                    match outcomes {
                        true => drop(pool.map_outcomes_chunked(record_pair, items, chunk)),
                        false => drop(pool.map_chunked(record_pair, items, chunk)),
                    }
                } else {
                    let items = Items::new(xs, hint).panicking_at(at);
                    match outcomes {
                        true => drop(pool.map_outcomes_chunked(record, items, chunk)),
                        false => drop(pool.map_chunked(record, items, chunk)),
                    }
                }
            }));
            let payload = caught.expect_err(&case);
            assert_eq!(message(payload), format!("input {at} panics"), "{case}");
            // Still usable, by the same thread.
            let want: Vec<u64> = (1..=1000).collect();
            assert_eq!(
                pool.map_chunked(|x: u64| x + 1, 0..1000, 7),
                Ok(want),
                "{case}"
            );
            // Whatever was queued runs now; nothing else ever will.
            pool.close();
            pool.join();
            let first_unsent = match hint {
                Hint::Unknown => 0,
                _ => (at / chunk * chunk) as u64,
            };
            let ran = marks(&dir);
            assert!(
                ran.iter().all(|&x| x < first_unsent),
                "{case}: items at or past {first_unsent} ran: {ran:?}"
            );
        }
    }
}

/// Yields the values of `script` (a `None` in it is a `None` returned),
/// then `None` for ever; says it has exactly as many items as come before
/// its next `None` (the truth, as far as a fused reading goes).
struct Resumes {
    script: Vec<Option<u64>>,
    at: usize,
    calls_after_none: Rc<Cell<usize>>,
    seen_none: bool,
}

impl Iterator for Resumes {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.seen_none {
            self.calls_after_none.set(self.calls_after_none.get() + 1);
        }
        let item = self.script.get(self.at).copied().flatten();
        self.at += 1;
        if item.is_none() {
            self.seen_none = true;
        }
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let rest = self.script.get(self.at..).unwrap_or_default();
        let n = rest.iter().take_while(|x| x.is_some()).count();
        (n, Some(n))
    }
}

/// An item iterator that is not fused (it yields again after a `None`):
/// the map's items are those before its first `None`, as for any
/// consumer of an iterator (`collect`, `for`, and this same map when the
/// iterator gives no exact length), whatever the chunk size. The direct
/// path (`Job::send_chunks`) reads on after a `None` that fell inside a
/// chunk (`items.peek()` after `send_taking` returned) and maps the items
/// after it: how many items a map has depends on its chunk size.
#[test]
fn a_map_ends_at_its_items_first_none_whatever_the_chunk_size() {
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    let script = vec![
        Some(0),
        Some(1),
        Some(2),
        None,
        Some(3),
        Some(4),
        None,
        Some(5),
    ];
    let mut wrong = Vec::new();
    for chunk in [0, 1, 2, 3, 4, 5, 8] {
        let calls = Rc::new(Cell::new(0));
        let items = Resumes {
            script: script.clone(),
            at: 0,
            calls_after_none: Rc::clone(&calls),
            seen_none: false,
        };
        let got = pool.map_chunked(|x: u64| x * 10, items, chunk).unwrap();
        if got != [0, 10, 20] || calls.get() > 0 {
            wrong.push(format!(
                "chunk {chunk}: {got:?}, next() called {} times after None",
                calls.get()
            ));
        }
    }
    // The same items read through a `(0, None)` hint: collected first.
    let collected: Vec<u64> = Resumes {
        script,
        at: 0,
        calls_after_none: Rc::new(Cell::new(0)),
        seen_none: false,
    }
    .collect();
    assert_eq!(collected, [0, 1, 2]);
    assert!(wrong.is_empty(), "maps past the first None: {wrong:?}");
}

/// Item iterators whose `size_hint` lies (an exact length far too large
/// or zero, a lower bound far past the truth): the hint only sizes the
/// chunks, and every item, no more, gets its result in order. A lower
/// bound of `usize::MAX` with no upper bound goes to `start_map`'s
/// `collect`, which reserves that many items first ("capacity overflow").
#[test]
fn a_lying_size_hint_only_changes_the_chunks() {
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    let mut wrong = Vec::new();
    for (n, lo, hi) in [
        (5usize, usize::MAX, Some(usize::MAX)),
        (5, 1 << 40, Some(1 << 40)),
        (1000, 0, Some(0)),
        (300, 3, Some(3)),
        (5, 1 << 16, None),
        (5, usize::MAX, None),
        (5, usize::MAX, Some(1)),
    ] {
        let xs: Vec<u64> = (0..n as u64).map(|x| x * 3).collect();
        let want: Vec<u64> = xs.iter().map(|x| x + 1).collect();
        for chunk in [0, 1, 4] {
            let items = Items::new(xs.clone(), Hint::Lie(lo, hi));
            let got = catch_unwind(AssertUnwindSafe(|| {
                pool.map_chunked(|x: u64| x + 1, items, chunk)
            }));
            match got {
                Ok(Ok(got)) if got == want => {}
                Ok(got) => wrong.push(format!("hint ({lo}, {hi:?}), chunk {chunk}: {got:?}")),
                Err(p) => wrong.push(format!(
                    "hint ({lo}, {hi:?}), chunk {chunk}: panicked: {}",
                    message(p)
                )),
            }
            let items = Items::new(xs.clone(), Hint::Lie(lo, hi));
            if let Ok(outcomes) = catch_unwind(AssertUnwindSafe(|| {
                pool.map_outcomes_chunked(|x: u64| x + 1, items, chunk)
            })) {
                let got: Vec<u64> = outcomes.into_iter().map(Result::unwrap).collect();
                assert_eq!(got, want, "outcomes, hint ({lo}, {hi:?}), chunk {chunk}");
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Every chunk size around the item count (1, 2, exact divisors and
/// multiples, one more than the items, 2^20 and past it) through every
/// way in: each item gets exactly one outcome, in order, failures in
/// place, with exact and unknown lengths.
#[test]
fn every_item_gets_one_outcome_in_order_at_every_chunk_size() {
    let _w = watchdog(120);
    let pool = Pool::new(2).unwrap();
    let f = |x: u64| {
        assert!(x % 5 != 3, "no {x}");
        x * 2
    };
    for n in [0usize, 1, 2, 5, 8, 9, 16] {
        let xs: Vec<u64> = (0..n as u64).collect();
        let want: Vec<Result<u64, bool>> = xs
            .iter()
            .map(|&x| if x % 5 == 3 { Err(true) } else { Ok(x * 2) })
            .collect();
        let shape = |o: Vec<Result<u64, TaskError>>| -> Vec<Result<u64, bool>> {
            o.into_iter()
                .map(|r| r.map_err(|e| matches!(e, TaskError::Panicked { .. })))
                .collect()
        };
        let sizes = [
            0,
            1,
            2,
            3,
            4,
            n.max(1) - 1,
            n,
            n + 1,
            2 * n,
            MAX_CHUNK,
            MAX_CHUNK + 1,
            usize::MAX,
        ];
        for chunk in sizes {
            for hint in [Hint::Exact, Hint::Unknown] {
                let case = format!("{n} items, chunk {chunk}");
                let got = pool.map_outcomes_chunked(f, Items::new(xs.clone(), hint), chunk);
                assert_eq!(shape(got), want, "{case}");
                let plain: Vec<u64> = xs.iter().map(|x| x + 7).collect();
                let got = pool.map_chunked(|x: u64| x + 7, Items::new(xs.clone(), hint), chunk);
                assert_eq!(got, Ok(plain), "{case}");
            }
            let chunk = chunk.min(64);
            let got: Vec<_> = pool.imap_chunked(f, xs.clone(), chunk.max(1)).collect();
            assert_eq!(shape(got), want, "imap, {n} items, chunk {chunk}");
            let mut got = shape(
                pool.imap_unordered_chunked(f, xs.clone(), chunk.max(1))
                    .collect(),
            );
            let mut sorted = want.clone();
            got.sort();
            sorted.sort();
            assert_eq!(got, sorted, "imap_unordered, {n} items, chunk {chunk}");
        }
    }
}

/// Zero-sized items at the 2^20 edge of a chunk: 2^20 and 2^20 + 1
/// items at chunk sizes of 2^20, 2^20 + 1 and `usize::MAX` (cut to
/// 2^20), and 2^21 items in exactly two chunks: each gets its outcome.
#[test]
fn zero_sized_items_at_the_largest_chunk() {
    let _w = watchdog(180);
    let pool = Pool::new(2).unwrap();
    for n in [MAX_CHUNK, MAX_CHUNK + 1] {
        for chunk in [MAX_CHUNK, MAX_CHUNK + 1, usize::MAX] {
            let out = pool.map_outcomes_chunked(|(): ()| 1u8, std::iter::repeat_n((), n), chunk);
            assert_eq!(out.len(), n, "{n} items, chunk {chunk}");
            assert!(out.iter().all(|o| *o == Ok(1)), "{n} items, chunk {chunk}");
        }
    }
    let n = 2 * MAX_CHUNK;
    let out = pool.map_chunked(|(): ()| (), std::iter::repeat_n((), n), MAX_CHUNK);
    assert_eq!(out.map(|v| v.len()), Ok(n));
}

/// A function of the right type that is not in the executable (`abs`, in
/// the C library): never run (nothing calls it).
fn foreign() -> fn(u64) -> u64 {
    // SAFETY: dlsym with a valid, NUL-terminated name.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"abs".as_ptr()) };
    assert!(!p.is_null(), "no abs in this process");
    // SAFETY: a non-null code address; the pool refuses it before any
    // call, which is what is tested.
    unsafe { std::mem::transmute::<*mut libc::c_void, fn(u64) -> u64>(p) }
}

/// A function not in the executable: every item of every chunk gets
/// `ForeignFunction`, exactly one outcome each at every chunk size
/// (`send_taking` takes at most its limit per chunk there too), through
/// map, map_outcomes, imap of an endless input, apply and submit.
#[test]
fn a_foreign_function_fails_every_item_once() {
    let _w = watchdog(60);
    let pool = Pool::new(1).unwrap();
    let f = foreign();
    assert_eq!(pool.apply(f, 1), Err(TaskError::ForeignFunction));
    for n in [0usize, 1, 7, 9] {
        for chunk in [0, 1, 2, 3, n, n + 1, usize::MAX] {
            for hint in [Hint::Exact, Hint::Unknown] {
                let items = Items::new((0..n as u64).collect(), hint);
                let out = pool.map_outcomes_chunked(f, items, chunk);
                assert_eq!(out.len(), n, "{n} items, chunk {chunk}");
                assert!(out.iter().all(|o| *o == Err(TaskError::ForeignFunction)));
                let items = Items::new((0..n as u64).collect(), hint);
                let want = if n == 0 {
                    Ok(vec![])
                } else {
                    Err(TaskError::ForeignFunction)
                };
                assert_eq!(pool.map_chunked(f, items, chunk), want);
            }
        }
    }
    let out: Vec<_> = pool.imap_chunked(f, 0.., 3).take(7).collect();
    assert_eq!(out, vec![Err(TaskError::ForeignFunction); 7]);
    let out: Vec<_> = pool.imap_unordered(f, 0..5).collect();
    assert_eq!(out, vec![Err(TaskError::ForeignFunction); 5]);
    let ex = Executor::new(1).unwrap();
    assert_eq!(ex.submit(f, 3).result(), Err(TaskError::ForeignFunction));
    // And the pool still runs functions that are in the executable.
    assert_eq!(pool.map(|x: u64| x + 1, 0..3), Ok(vec![1, 2, 3]));
}

/// Item 0 fails; item 1 waits on a FIFO that this test opens only once
/// the map has returned; the rest leave a mark.
fn gate(x: u64) -> u64 {
    assert!(x != 0, "item 0 fails");
    let dir = marks_dir("inputs-gate");
    if x == 1 {
        // Blocks until a writer opens it.
        drop(std::fs::File::open(dir.join("fifo")).unwrap());
    }
    std::fs::write(dir.join(x.to_string()), b"").unwrap();
    x
}

/// `map` stops at the first failure: once it returned, chunks not yet
/// started are dropped. One worker: item 0 fails, item 1 holds the worker
/// until the map has returned, so every later chunk is still queued when
/// the map cancels them, and none may run.
#[test]
fn a_failed_map_runs_none_of_its_later_chunks() {
    let _w = watchdog(60);
    let dir = TempDir::new("inputs-gate");
    let fifo = dir.0.join("fifo");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let pool = Pool::new(1).unwrap();
    let got = pool.map_chunked(gate, Items::new((0..40).collect(), Hint::Exact), 1);
    assert!(
        matches!(got, Err(TaskError::Panicked { ref message }) if message == "item 0 fails"),
        "{got:?}"
    );
    // Lets item 1 go if it started (read and write: opening never blocks).
    use std::os::unix::fs::OpenOptionsExt;
    let open = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    pool.close();
    pool.join();
    drop(open);
    std::fs::remove_file(&fifo).unwrap();
    let ran = marks(&dir);
    assert!(
        ran.iter().all(|&x| x <= 1),
        "chunks after the failure ran: {ran:?}"
    );
}

/// Items holding connections, split across chunks of every size: each
/// item's connection reaches its own item.
#[test]
fn handles_split_across_chunks_stay_with_their_items() {
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    for chunk in [1, 2, 3, 5, 9, 10, 11] {
        let (items, mut peers): (Vec<(u32, Connection)>, Vec<Connection>) = (0..10u32)
            .map(|i| {
                let (a, b) = mpkit::pipe(true).unwrap();
                ((i, a), b)
            })
            .unzip();
        let items = Items::new(items, Hint::Exact);
        let out = pool.map_chunked(
            |(i, mut c): (u32, Connection)| c.send(&i).is_ok(),
            items,
            chunk,
        );
        assert_eq!(out, Ok(vec![true; 10]), "chunk {chunk}");
        for (i, peer) in peers.iter_mut().enumerate() {
            assert_eq!(peer.recv::<u32>().unwrap(), i as u32, "chunk {chunk}");
        }
    }
}

/// An item iterator of connections that panics mid-chunk: the chunk's
/// handles already encoded are closed with it, and none of its items
/// runs. Each peer sees its number only if its chunk was sent whole, then
/// the end of file (a descriptor left open anywhere would hold it off).
#[test]
fn a_panic_mid_chunk_closes_the_handles_it_encoded_and_runs_none() {
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    for (chunk, at) in [(4, 6), (4, 4), (3, 1), (12, 11)] {
        let (items, mut peers): (Vec<(u32, Connection)>, Vec<Connection>) = (0..12u32)
            .map(|i| {
                let (a, b) = mpkit::pipe(true).unwrap();
                ((i, a), b)
            })
            .unzip();
        let items = Items::new(items, Hint::Exact).panicking_at(at);
        let caught = catch_unwind(AssertUnwindSafe(|| {
            pool.map_chunked(
                |(i, mut c): (u32, Connection)| c.send(&i).is_ok(),
                items,
                chunk,
            )
        }));
        assert_eq!(message(caught.unwrap_err()), format!("input {at} panics"));
        let sent = at / chunk * chunk;
        for (i, peer) in peers.iter_mut().enumerate() {
            let case = format!("chunk {chunk}, panic at {at}, item {i}");
            if i < sent {
                let got = peer.recv_timeout::<u32>(Duration::from_secs(20));
                assert_eq!(got.unwrap(), i as u32, "{case}");
            }
            match peer.recv_timeout::<u32>(Duration::from_secs(20)) {
                Err(mpkit::RecvError::Eof) => {}
                other => panic!("{case}: {other:?} instead of the end of file"),
            }
        }
    }
    assert_eq!(pool.map(|x: u32| x, 0..4), Ok(vec![0, 1, 2, 3]));
}

/// Drops of [`Counted`] values in this process, by `K`.
static DROPS: [std::sync::atomic::AtomicUsize; 4] =
    [const { std::sync::atomic::AtomicUsize::new(0) }; 4];

/// A number that counts its drops here (a worker's copies count in the
/// worker).
#[derive(Serialize, Deserialize, Debug)]
#[serde(transparent)]
struct Counted<const K: usize>(u64);

impl<const K: usize> Drop for Counted<K> {
    fn drop(&mut self) {
        DROPS[K].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn drops<const K: usize>() -> usize {
    DROPS[K].load(std::sync::atomic::Ordering::SeqCst)
}

/// Every item the caller's iterator yields or still holds is dropped
/// exactly once here, whatever becomes of the map: it runs, its iterator
/// panics mid-chunk or between chunks, its function is not in the
/// executable, or its length is unknown.
#[test]
fn every_item_is_dropped_once_whatever_becomes_of_its_map() {
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    let items = |n: u64| (0..n).map(Counted::<0>).collect::<Vec<_>>();
    let mut made = 0;
    for (chunk, panic_at) in [
        (7, None),
        (7, Some(23)),
        (7, Some(21)),
        (1, Some(0)),
        (50, Some(49)),
    ] {
        for hint in [Hint::Exact, Hint::Unknown] {
            let mut it = Items::new(items(50), hint);
            made += 50;
            if let Some(at) = panic_at {
                it = it.panicking_at(at);
            }
            let out = catch_unwind(AssertUnwindSafe(|| {
                pool.map_chunked(|c: Counted<0>| c.0 + 1, it, chunk)
            }));
            match (out, panic_at) {
                (Ok(Ok(v)), None) => assert_eq!(v, (1..=50).collect::<Vec<_>>()),
                (Err(_), Some(_)) => {}
                (out, _) => panic!("chunk {chunk}, panic at {panic_at:?}: {out:?}"),
            }
            assert_eq!(drops::<0>(), made, "chunk {chunk}, panic at {panic_at:?}");
        }
    }
    // A function not in the executable.
    let f: fn(Counted<1>) -> u64 = {
        // SAFETY: as in `foreign`: never called.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"abs".as_ptr()) };
        assert!(!p.is_null());
        // SAFETY: a non-null code address the pool refuses before any call.
        unsafe { std::mem::transmute::<*mut libc::c_void, fn(Counted<1>) -> u64>(p) }
    };
    let out = pool.map_outcomes_chunked(f, (0..30).map(Counted::<1>), 4);
    assert_eq!(out.len(), 30);
    assert_eq!(drops::<1>(), 30);
}

/// An item iterator that uses the same pool while it is read (an `apply`
/// in its `next`, with a connection in it, while the outer map's chunk
/// holds connections too): each level's handles stay with their items.
#[test]
fn an_item_iterator_may_use_the_pool_itself() {
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    let mut peers = Vec::new();
    let mut inner_peers = Vec::new();
    let items = (0..12u32).map(|i| {
        let (a, b) = mpkit::pipe(true).unwrap();
        peers.push(b);
        let (c, d) = mpkit::pipe(true).unwrap();
        inner_peers.push(d);
        let doubled = pool
            .apply(
                |(i, mut c): (u32, Connection)| c.send(&(i + 100)).map(|()| i * 2).unwrap(),
                (i, c),
            )
            .unwrap();
        (doubled, a)
    });
    let out = pool.map_chunked(|(i, mut c): (u32, Connection)| c.send(&i).is_ok(), items, 5);
    assert_eq!(out, Ok(vec![true; 12]));
    for (i, (peer, inner)) in peers.iter_mut().zip(&mut inner_peers).enumerate() {
        assert_eq!(peer.recv::<u32>().unwrap(), 2 * i as u32);
        assert_eq!(inner.recv::<u32>().unwrap(), i as u32 + 100);
    }
}

/// An `imap` whose input panics once, mid-chunk (items 3 and 4 of a
/// chunk of 3, 4, 5 already taken), caught by the caller who goes on
/// reading: the outcomes it yields are of items in order with none
/// skipped (it may end there, or go on with item 3; it may not go on past
/// items it took and dropped). `Imap::top_up` collects a chunk's items
/// into a vector before sending it (`imap.rs`): the panic drops the items
/// taken, and the next call maps 6, 7, ... as if 3 and 4 never were.
#[test]
fn an_imap_whose_input_panicked_skips_no_item_it_took() {
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    for unordered in [false, true] {
        let mut n = 0u64;
        let once = std::iter::from_fn(move || {
            n += 1;
            assert!(n != 6, "input 5 panics");
            (n <= 12).then_some(n - 1)
        });
        let mut imap = match unordered {
            false => pool.imap_chunked(|x: u64| x, once, 3),
            true => pool.imap_unordered_chunked(|x: u64| x, once, 3),
        };
        let mut seen = Vec::new();
        let mut panics = 0;
        loop {
            match catch_unwind(AssertUnwindSafe(|| imap.next())) {
                Ok(Some(r)) => seen.push(r.unwrap()),
                Ok(None) => break,
                Err(p) => {
                    assert_eq!(message(p), "input 5 panics");
                    panics += 1;
                }
            }
        }
        assert_eq!(panics, 1);
        seen.sort_unstable();
        let prefix: Vec<u64> = (0..seen.len() as u64).collect();
        assert_eq!(seen, prefix, "unordered {unordered}: items skipped");
    }
}

/// A number sent in one of five shapes that postcard writes alike (as a
/// `u16`, `u32` or `u64`, a one-element tuple, a newtype), read back as a
/// `u64`: its chunk's column is fixed-width while the shape holds, and
/// turns to postcard at the first change.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Shaped(u64, u8);

impl Serialize for Shaped {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        match self.1 {
            0 => s.serialize_u16(self.0 as u16),
            1 => s.serialize_u32(self.0 as u32),
            2 => s.serialize_u64(self.0),
            3 => {
                let mut t = s.serialize_tuple(1)?;
                t.serialize_element(&self.0)?;
                t.end()
            }
            _ => s.serialize_newtype_struct("Shaped", &self.0),
        }
    }
}

impl<'de> Deserialize<'de> for Shaped {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Shaped, D::Error> {
        u64::deserialize(d).map(|x| Shaped(x, 0))
    }
}

/// Items whose shape changes at, just before and just after chunk
/// boundaries, at every chunk size around them: each chunk starts its
/// column afresh, and every item, argument and result, comes back as it
/// was, in order.
#[test]
fn items_changing_shape_at_chunk_boundaries_stay_right() {
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    // Runs of one shape of lengths 1 to 6, values that fit each shape.
    let mut items = Vec::new();
    for (run, shape) in (1..=6).cycle().zip((0..5u8).cycle()).take(40) {
        for _ in 0..run {
            let x = items.len() as u64 * 7 % 60_000;
            items.push(Shaped(x, shape));
        }
    }
    let n = items.len();
    let want: Vec<u64> = items.iter().map(|s| s.0).collect();
    for chunk in [1, 2, 3, 4, 5, 6, 7, 11, n - 1, n, n + 1] {
        let got = pool.map_chunked(|s: Shaped| s.0, items.clone(), chunk);
        assert_eq!(got.as_ref(), Ok(&want), "arguments, chunk {chunk}");
        let xs = items.iter().map(|s| (s.0, s.1));
        let back = pool.map_outcomes_chunked(|(x, shape): (u64, u8)| Shaped(x, shape), xs, chunk);
        let back: Vec<u64> = back.into_iter().map(|r| r.unwrap().0).collect();
        assert_eq!(back, want, "results, chunk {chunk}");
    }
}
