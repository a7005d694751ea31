//! What a map does with the caller's items and with result types that
//! ask for something else than what the worker sent, between real
//! processes: item iterators that panic, lie in `size_hint` or resume
//! after `None`; every chunk size around the item count and 2^20; a
//! function not in the executable; handles split across chunks; results
//! asked as another width, kind or shape than their column holds. Each
//! test states what the pool promises.

mod common;

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use common::{TempDir, watchdog};
use mpkit::pool::{Executor, TaskError};
use mpkit::{Connection, Pool};
use serde::de::DeserializeOwned;
use serde::ser::Error as _;
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// Sent as a `u64` or `i64` (a fixed-width column of those), read back as
/// whatever `T` asks for.
#[derive(Debug, PartialEq)]
enum Asked<T> {
    U(u64),
    I(i64),
    Got(T),
}

impl<T> Serialize for Asked<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Asked::U(v) => s.serialize_u64(*v),
            Asked::I(v) => s.serialize_i64(*v),
            Asked::Got(_) => Err(S::Error::custom("only sent")),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Asked<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Asked<T>, D::Error> {
        T::deserialize(d).map(Asked::Got)
    }
}

fn send_u<T>(x: u64) -> Asked<T> {
    Asked::U(x)
}

fn send_i<T>(x: i64) -> Asked<T> {
    Asked::I(x)
}

/// What serde makes of `v` read as a `T` (its own value deserializers:
/// `visit_u64`/`visit_i64` with the visitor's range checks).
fn serde_u<T: DeserializeOwned>(v: u64) -> Option<T> {
    use serde::de::IntoDeserializer;
    let d: serde::de::value::U64Deserializer<serde::de::value::Error> = v.into_deserializer();
    T::deserialize(d).ok()
}

fn serde_i<T: DeserializeOwned>(v: i64) -> Option<T> {
    use serde::de::IntoDeserializer;
    let d: serde::de::value::I64Deserializer<serde::de::value::Error> = v.into_deserializer();
    T::deserialize(d).ok()
}

#[derive(Deserialize, Serialize, Debug, PartialEq)]
struct Newtype<T>(T);

#[derive(Deserialize, Serialize, Debug, PartialEq)]
#[serde(transparent)]
struct Transparent<T>(T);

#[derive(Deserialize, Serialize, Debug, PartialEq)]
struct Pair(u64, u64);

const US: [u64; 10] = [
    0,
    1,
    127,
    128,
    255,
    256,
    65_535,
    65_536,
    1 << 31,
    u32::MAX as u64,
];
const IS: [i64; 12] = [
    0,
    1,
    -1,
    127,
    -128,
    128,
    -129,
    32_767,
    -32_769,
    65_536,
    i32::MIN as i64,
    i32::MAX as i64,
];

/// Chunks laid out to make each column kind: each value alone (narrow:
/// `U64As32`/`I64As32`), each value then a wide one (widened mid-chunk),
/// a wide one then each value (wide from the first).
fn layouts<V: Copy>(values: &[V], wide: V) -> Vec<(&'static str, usize, Vec<V>)> {
    vec![
        ("narrow", 1, values.to_vec()),
        (
            "widened",
            2,
            values.iter().flat_map(|&v| [v, wide]).collect(),
        ),
        ("wide", 2, values.iter().flat_map(|&v| [wide, v]).collect()),
    ]
}

/// What a chunk's outcomes must be, from each value's own reading: the
/// values up to the first that does not read, then errors to the end of
/// the chunk.
fn expected<T>(values: Vec<Option<T>>, chunk: usize) -> Vec<Option<T>> {
    let mut out = Vec::new();
    let mut values = values.into_iter().peekable();
    while values.peek().is_some() {
        let mut failed = false;
        for v in values.by_ref().take(chunk) {
            failed |= v.is_none();
            out.push(if failed { None } else { v });
        }
    }
    out
}

/// Results of `u64`/`i64` columns (narrow, widened, wide) read as `T`:
/// each outcome is what serde's range checks make of the value (never a
/// value cut or reinterpreted), a value that does not read fails with the
/// rest of its chunk, through `map_outcomes` (the reader through
/// `ItemReader`) and `map` (read by value into the vector).
fn check_asked<T>(
    pool: &Pool,
    name: &str,
    u: impl Fn(u64) -> Option<T>,
    i: impl Fn(i64) -> Option<T>,
    wrong: &mut Vec<String>,
) where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let mut check = |what: String, got: Vec<Result<Asked<T>, TaskError>>, want: Vec<Option<T>>| {
        let got: Vec<Option<T>> = got
            .into_iter()
            .map(|r| match r {
                Ok(Asked::Got(t)) => Some(t),
                Err(TaskError::ResultDecode { .. }) => None,
                other => panic!("{what}: {other:?}"),
            })
            .collect();
        if got != want {
            wrong.push(format!("{name}, {what}: got {got:?}, want {want:?}"));
        }
    };
    for (layout, chunk, values) in layouts(&US, u64::MAX) {
        let want = expected(values.iter().map(|&v| u(v)).collect(), chunk);
        let got = pool.map_outcomes_chunked(send_u::<T>, values.clone(), chunk);
        check(format!("u64 {layout} outcomes"), got, want);
        for c in values.chunks(chunk) {
            let want = expected(c.iter().map(|&v| u(v)).collect(), chunk);
            let got = match pool.map_chunked(send_u::<T>, c.to_vec(), chunk) {
                Ok(v) => v.into_iter().map(Ok).collect(),
                Err(e) => c.iter().map(|_| Err(e.clone())).collect(),
            };
            let want = match want.iter().all(Option::is_some) {
                true => want,
                false => c.iter().map(|_| None).collect(),
            };
            check(format!("u64 {layout} map of {c:?}"), got, want);
        }
    }
    for (layout, chunk, values) in layouts(&IS, i64::MIN) {
        let want = expected(values.iter().map(|&v| i(v)).collect(), chunk);
        let got = pool.map_outcomes_chunked(send_i::<T>, values.clone(), chunk);
        check(format!("i64 {layout} outcomes"), got, want);
        for c in values.chunks(chunk) {
            let want = expected(c.iter().map(|&v| i(v)).collect(), chunk);
            let got = match pool.map_chunked(send_i::<T>, c.to_vec(), chunk) {
                Ok(v) => v.into_iter().map(Ok).collect(),
                Err(e) => c.iter().map(|_| Err(e.clone())).collect(),
            };
            let want = match want.iter().all(Option::is_some) {
                true => want,
                false => c.iter().map(|_| None).collect(),
            };
            check(format!("i64 {layout} map of {c:?}"), got, want);
        }
    }
}

/// The worker's side of [`Asked`]: the argument as `T` read it.
fn take_asked<T>(a: Asked<T>) -> T {
    match a {
        Asked::Got(t) => t,
        _ => panic!("an argument not read"),
    }
}

/// Arguments of `u64`/`i64` columns read as `T` in the worker (its reader
/// by value, each value from its own bytes): each item is what serde
/// makes of its value, or fails alone with `ArgsDecode`.
fn check_args<T>(
    pool: &Pool,
    name: &str,
    u: impl Fn(u64) -> Option<T>,
    i: impl Fn(i64) -> Option<T>,
    wrong: &mut Vec<String>,
) where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let mut check = |what: String, got: Vec<Result<T, TaskError>>, want: Vec<Option<T>>| {
        let got: Vec<Option<T>> = got
            .into_iter()
            .map(|r| match r {
                Ok(t) => Some(t),
                Err(TaskError::ArgsDecode { .. }) => None,
                Err(other) => panic!("{name}, {what}: {other:?}"),
            })
            .collect();
        if got != want {
            wrong.push(format!(
                "{name} arguments, {what}: got {got:?}, want {want:?}"
            ));
        }
    };
    for (layout, chunk, values) in layouts(&US, u64::MAX) {
        let items = values.iter().map(|&v| Asked::<T>::U(v));
        let got = pool.map_outcomes_chunked(take_asked::<T>, items, chunk);
        check(
            format!("u64 {layout}"),
            got,
            values.iter().map(|&v| u(v)).collect(),
        );
    }
    for (layout, chunk, values) in layouts(&IS, i64::MIN) {
        let items = values.iter().map(|&v| Asked::<T>::I(v));
        let got = pool.map_outcomes_chunked(take_asked::<T>, items, chunk);
        check(
            format!("i64 {layout}"),
            got,
            values.iter().map(|&v| i(v)).collect(),
        );
    }
}

/// Every width and kind asked of `u64` and `i64` columns, narrow,
/// widened and wide, plainly, in newtypes and transparent wrappers, and
/// shapes a scalar column cannot hold (options, tuples, strings): serde's
/// range checks decide, errors are errors, and no value is cut; the
/// same asked of arguments in the worker.
#[test]
fn results_asked_as_another_width_or_kind_read_as_serde_says() {
    let _w = watchdog(180);
    let pool = Pool::new(2).unwrap();
    let mut wrong = Vec::new();
    macro_rules! plain {
        ($($t:ty),*) => {$(
            check_asked::<$t>(&pool, stringify!($t), serde_u::<$t>, serde_i::<$t>, &mut wrong);
            check_args::<$t>(&pool, stringify!($t), serde_u::<$t>, serde_i::<$t>, &mut wrong);
        )*};
    }
    plain!(
        u8,
        u16,
        u32,
        u64,
        u128,
        i8,
        i16,
        i32,
        i64,
        i128,
        f32,
        f64,
        char,
        bool,
        ()
    );
    plain!(
        String,
        Option<u64>,
        (u64, u64),
        Pair,
        Transparent<u16>,
        Transparent<i8>
    );
    macro_rules! newtype {
        ($($t:ty),*) => {$(
            check_asked::<Newtype<$t>>(
                &pool,
                concat!("Newtype<", stringify!($t), ">"),
                |v| serde_u::<$t>(v).map(Newtype),
                |v| serde_i::<$t>(v).map(Newtype),
                &mut wrong,
            );
            check_args::<Newtype<$t>>(
                &pool,
                concat!("Newtype<", stringify!($t), ">"),
                |v| serde_u::<$t>(v).map(Newtype),
                |v| serde_i::<$t>(v).map(Newtype),
                &mut wrong,
            );
        )*};
    }
    newtype!(u8, u16, u32, u64, i8, i16, i32, i64);
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// `Option<u64>` results, `None` and `Some` of every size mixed, beside
/// plain numbers in other maps of the same pool: each comes back as it
/// was, at every chunk size.
#[test]
fn optional_numbers_mixed_with_plain_ones_come_back_as_they_were() {
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    let f = |x: u64| -> Option<u64> {
        match x % 4 {
            0 => None,
            1 => Some(x),
            2 => Some(x << 40),
            _ => Some(u64::MAX - x),
        }
    };
    let xs: Vec<u64> = (0..300).collect();
    let want: Vec<Option<u64>> = xs.iter().map(|&x| f(x)).collect();
    for chunk in [1, 2, 3, 4, 64, 299, 300, 301] {
        assert_eq!(
            pool.map_chunked(f, xs.clone(), chunk).as_ref(),
            Ok(&want),
            "chunk {chunk}"
        );
        let plain: Vec<u64> = xs.iter().map(|&x| x << 33).collect();
        assert_eq!(
            pool.map_chunked(|x: u64| x << 33, xs.clone(), chunk),
            Ok(plain)
        );
        let got: Vec<Option<u64>> = pool
            .map_outcomes_chunked(f, xs.clone(), chunk)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, want, "chunk {chunk}");
    }
}

/// A number sent as a pair `(x, x + 1000)` and read back as one number:
/// a `Serialize`/`Deserialize` pair that disagree (reads fewer bytes than
/// were written).
#[derive(Debug, PartialEq)]
struct Lopsided(u64);

impl Serialize for Lopsided {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.0)?;
        t.serialize_element(&(self.0 + 1000))?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Lopsided {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Lopsided, D::Error> {
        u64::deserialize(d).map(Lopsided)
    }
}

/// A number sent as itself (7 as a one-element tuple, postcard's same
/// bytes, which makes its chunk's column postcard) and read back as a
/// pair: reads more bytes than were written.
#[derive(Debug, PartialEq)]
struct Greedy(u64, u64);

impl Serialize for Greedy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 7 {
            let mut t = s.serialize_tuple(1)?;
            t.serialize_element(&self.0)?;
            return t.end();
        }
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Greedy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Greedy, D::Error> {
        <(u64, u64)>::deserialize(d).map(|(a, b)| Greedy(a, b))
    }
}

/// Results whose `Deserialize` reads fewer or more bytes than their
/// `Serialize` wrote: no outcome is a value read from another item's
/// bytes. A chunk's arguments in postcard that leave bytes unread fail
/// whole (`ArgsDecode`: the worker checks its reader is finished); a
/// chunk's results are read as a stream with no such check
/// (`Plan::decode_split`, `batch.rs`): `Lopsided` results come back as
/// `[1, 1001, 2, 1002]`, and `Greedy` ones as `(1, 2), (7, 4)` then
/// errors. In a fixed-width column the same `Greedy` chunk fails whole.
#[test]
fn results_that_read_more_or_fewer_bytes_than_written_are_never_other_items_values() {
    let _w = watchdog(60);
    let pool = Pool::new(1).unwrap();
    // The arguments' side, for comparison: refused whole.
    let args = pool.map_outcomes_chunked(|l: Lopsided| l.0, (1..=4).map(Lopsided), 4);
    assert!(
        args.iter()
            .all(|o| matches!(o, Err(TaskError::ArgsDecode { .. }))),
        "{args:?}"
    );
    // A fixed-width column asked for a pair: every item fails.
    let fixed = pool.map_outcomes_chunked(|x: u64| Greedy(x, 0), [1, 2, 3, 4], 4);
    assert!(
        fixed
            .iter()
            .all(|o| matches!(o, Err(TaskError::ResultDecode { .. }))),
        "{fixed:?}"
    );
    let mut wrong = Vec::new();
    let fewer = pool.map_outcomes_chunked(Lopsided, [1, 2, 3, 4], 4);
    if fewer.iter().any(Result::is_ok) {
        wrong.push(format!("read fewer: {fewer:?}"));
    }
    let more = pool.map_outcomes_chunked(|x: u64| Greedy(x, 0), [1, 2, 7, 4], 4);
    if more.iter().any(Result::is_ok) {
        wrong.push(format!("read more: {more:?}"));
    }
    let map = pool.map_chunked(Lopsided, [1, 2, 3, 4], 4);
    if map.is_ok() {
        wrong.push(format!("map of read fewer: {map:?}"));
    }
    assert!(
        wrong.is_empty(),
        "values from other items' bytes: {wrong:#?}"
    );
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
