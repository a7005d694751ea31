//! The pool's faster paths, by tests (between real
//! processes): u64/i64 columns sent 4 bytes a value and widened in place,
//! the worker's batches of 256 results with failures among them, the
//! reply's lead written before its results (or spliced in when it does
//! not fit), reply bodies copied into recycled buffers that keep stale
//! bytes, a map's results read straight into its vector's spare room, and
//! the dispatcher's eventfd wake-up. Each test states what the pool
//! promises.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{first_diff, watchdog};
use mpkit::Pool;
use mpkit::pool::{Executor, TaskError};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The worker writes results 256 at a time: positions at and around the
/// edges of its batches, and the ends of a chunk.
const EDGES: [usize; 11] = [0, 1, 254, 255, 256, 257, 511, 512, 513, 1022, 1023];

/// `len` values `3 * i`, with `value` at `at`.
fn with_at<T: Copy>(len: usize, at: usize, value: T, base: impl Fn(usize) -> T) -> Vec<T> {
    (0..len)
        .map(|i| if i == at { value } else { base(i) })
        .collect()
}

/// Every u64 value at the edges of 32 bits, at every batch edge, one
/// chunk a placement: in as arguments and back as results (identity: the
/// arguments' column widens where the results' does), and back as
/// `u64::MAX - x` (results wide from the first). Chunks of 1024 values:
/// 4 KiB narrow (through the arena), 8 KiB once widened; and of 600
/// values (2400 bytes narrow: through the socket).
#[test]
fn u64_values_at_32_bit_edges_come_back_unchanged_wherever_they_widen() {
    let _w = watchdog(120);
    let pool = Pool::new(2).unwrap();
    let edges = [
        u64::from(u32::MAX),
        u64::from(u32::MAX) + 1,
        u64::from(u32::MAX) - 1,
        1 << 32,
        1 << 63,
        u64::MAX,
        u64::MAX - 1,
        0,
    ];
    for len in [1024usize, 600] {
        let mut items = Vec::new();
        for &v in &edges {
            for &at in EDGES.iter().filter(|&&at| at < len) {
                items.extend(with_at(len, at, v, |i| 3 * i as u64));
            }
            // The last value of the chunk.
            items.extend(with_at(len, len - 1, v, |i| 3 * i as u64));
        }
        let got = pool.map_chunked(|x: u64| x, items.clone(), len).unwrap();
        assert!(
            got == items,
            "identity, chunks of {len}: {}",
            first_diff(&items, &got)
        );
        let want: Vec<u64> = items.iter().map(|x| u64::MAX - x).collect();
        let got = pool
            .map_chunked(|x: u64| u64::MAX - x, items.clone(), len)
            .unwrap();
        assert!(
            got == want,
            "MAX - x, chunks of {len}: {}",
            first_diff(&want, &got)
        );
        // map_outcomes reads through `Plan::decode`, not `decode_values`.
        let got: Vec<u64> = pool
            .map_outcomes_chunked(|x: u64| x, items.clone(), len)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert!(
            got == items,
            "outcomes, chunks of {len}: {}",
            first_diff(&items, &got)
        );
    }
}

/// The same for i64: sign extension when widening (`-1`, `i32::MIN`,
/// `i32::MIN - 1`, `i32::MAX + 1`), and results that widen where the
/// arguments do not (`-x` of `i32::MIN` is `i32::MAX + 1`).
#[test]
fn i64_values_at_32_bit_edges_come_back_unchanged_wherever_they_widen() {
    let _w = watchdog(120);
    let pool = Pool::new(2).unwrap();
    let edges = [
        -1i64,
        i64::from(i32::MIN),
        i64::from(i32::MIN) - 1,
        i64::from(i32::MAX),
        i64::from(i32::MAX) + 1,
        i64::MIN,
        i64::MAX,
        i64::from(u32::MAX),
    ];
    for len in [1024usize, 600] {
        let mut items = Vec::new();
        for &v in &edges {
            for &at in EDGES.iter().filter(|&&at| at < len) {
                // Small negative and positive values around it.
                items.extend(with_at(len, at, v, |i| {
                    i as i64 * if i % 2 == 0 { -3 } else { 5 }
                }));
            }
        }
        let got = pool.map_chunked(|x: i64| x, items.clone(), len).unwrap();
        assert!(
            got == items,
            "identity, chunks of {len}: {}",
            first_diff(&items, &got)
        );
        let want: Vec<i64> = items.iter().map(|x| x.wrapping_neg()).collect();
        let got = pool
            .map_chunked(|x: i64| x.wrapping_neg(), items.clone(), len)
            .unwrap();
        assert!(
            got == want,
            "-x, chunks of {len}: {}",
            first_diff(&want, &got)
        );
        // Narrow i64 arguments, u64 results (and back): no value changes
        // sign or loses bits.
        let want: Vec<u64> = items.iter().map(|&x| x as u64).collect();
        let got = pool
            .map_chunked(|x: i64| x as u64, items.clone(), len)
            .unwrap();
        assert!(
            got == want,
            "as u64, chunks of {len}: {}",
            first_diff(&want, &got)
        );
    }
}

/// Narrow values through every other path of the pool: imap, unordered
/// imap, apply, apply_async and the executor (they decode with
/// `Plan::decode`).
#[test]
fn narrow_and_widened_values_through_imap_apply_and_the_executor() {
    let _w = watchdog(120);
    let pool = Pool::new(2).unwrap();
    let items: Vec<u64> = (0..3000u64)
        .map(|i| match i % 700 {
            256 => u64::from(u32::MAX) + i,
            699 => u64::MAX - i,
            _ => i,
        })
        .collect();
    let got: Vec<u64> = pool
        .imap_chunked(|x: u64| x, items.clone(), 700)
        .map(Result::unwrap)
        .collect();
    assert!(got == items, "imap: {}", first_diff(&items, &got));
    let mut got: Vec<u64> = pool
        .imap_unordered_chunked(|x: u64| x, items.clone(), 300)
        .map(Result::unwrap)
        .collect();
    got.sort_unstable();
    let mut sorted = items.clone();
    sorted.sort_unstable();
    assert!(
        got == sorted,
        "imap_unordered: {}",
        first_diff(&sorted, &got)
    );
    for v in [u64::from(u32::MAX), u64::from(u32::MAX) + 1, u64::MAX, 0] {
        assert_eq!(pool.apply(|x: u64| x, v), Ok(v));
        assert_eq!(pool.apply_async(|x: u64| x, v).get(), Ok(v));
    }
    for v in [i64::from(i32::MIN), i64::from(i32::MIN) - 1, -1, i64::MIN] {
        assert_eq!(pool.apply(|x: i64| x, v), Ok(v));
        assert_eq!(pool.apply(|x: i64| vec![x, 1, x], v), Ok(vec![v, 1, v]));
    }
    let ex = Executor::new(2).unwrap();
    let tasks: Vec<_> = [i64::from(i32::MAX) + 1, -1, i64::from(i32::MIN), 5]
        .into_iter()
        .map(|v| (v, ex.submit(|x: i64| x, v)))
        .collect();
    for (v, t) in tasks {
        assert_eq!(t.result(), Ok(v));
    }
}

/// A value that refuses to decode (after reading it) when it is 13.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
#[serde(transparent)]
struct Refuse13(u64);

impl<'de> Deserialize<'de> for Refuse13 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Refuse13, D::Error> {
        let v = u64::deserialize(d)?;
        if v == 13 {
            return Err(D::Error::custom("thirteen"));
        }
        Ok(Refuse13(v))
    }
}

/// A result whose `Serialize` panics once it wrote [`BOOM`] successfully:
/// into a narrowed column it is refused (it does not fit 32 bits), so it
/// panics only after the column was widened for it.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(transparent)]
struct PanicsWide(u64);

const BOOM: u64 = (1 << 33) + 5;
const WIDE: u64 = 1 << 35;

impl Serialize for PanicsWide {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = s.serialize_u64(self.0);
        assert!(!(r.is_ok() && self.0 == BOOM), "boom after widening");
        r
    }
}

/// Values with `overrides` over a base of even numbers.
fn variant(len: usize, overrides: &[(usize, u64)]) -> Vec<u64> {
    let mut v: Vec<u64> = (0..len as u64).map(|i| 2 * i).collect();
    for &(at, x) in overrides {
        v[at] = x;
    }
    v
}

fn panics_on_x999(a: Refuse13) -> PanicsWide {
    assert!(a.0 % 1000 != 999, "f{}", a.0);
    PanicsWide(a.0)
}

/// Failures in the worker's batches (an argument that does not decode, a
/// panic in f, a result whose `Serialize` panics once its column was
/// widened for it) at batch edges, right before and after a widening,
/// and first in a chunk: each fails alone, with its own error, and every
/// other item's result is its own.
#[test]
fn failures_around_a_widening_in_the_workers_batches_fail_alone() {
    let _w = watchdog(120);
    let pool = Pool::new(2).unwrap();
    let len = 1500;
    let variants = [
        variant(
            len,
            &[(255, 13), (256, 1999), (257, WIDE), (511, BOOM), (512, 13)],
        ),
        variant(len, &[(0, BOOM), (1, WIDE)]),
        variant(len, &[(255, BOOM), (256, WIDE), (1499, 1999)]),
        variant(len, &[(256, BOOM)]),
        variant(len, &[(511, BOOM), (512, 999), (513, 13), (514, WIDE + 1)]),
        variant(
            len,
            &[
                (100, u64::from(u32::MAX)),
                (101, u64::from(u32::MAX) + 1),
                (102, 13),
                (1499, BOOM),
            ],
        ),
        variant(len, &[(0, 13), (1, 999), (2, BOOM), (3, 4)]),
        variant(len, &[(1498, 13), (1499, WIDE)]),
    ];
    let items: Vec<u64> = variants.concat();
    for chunk in [len, 1, 7, 256, 257, 1000] {
        let outcomes =
            pool.map_outcomes_chunked(panics_on_x999, items.iter().map(|&x| Refuse13(x)), chunk);
        assert_eq!(outcomes.len(), items.len());
        for (i, (x, o)) in items.iter().zip(&outcomes).enumerate() {
            let ok = match (x, o) {
                (13, Err(TaskError::ArgsDecode { message, .. })) => message.contains("thirteen"),
                (&x, Err(TaskError::Panicked { message })) if x % 1000 == 999 => {
                    *message == format!("f{x}")
                }
                (&BOOM, Err(TaskError::Panicked { message })) => {
                    message.contains("boom after widening")
                }
                (&x, Ok(r)) => x != 13 && x != BOOM && x % 1000 != 999 && r.0 == x,
                _ => false,
            };
            assert!(ok, "chunks of {chunk}, item {i} ({x}): {o:?}");
        }
    }
}

/// Arguments that panic, with a message of `x - 1_000_000` bytes.
const FAILS: std::ops::Range<u64> = 1_000_000..1_100_000;

fn panics_with_length(x: u64) -> u64 {
    if FAILS.contains(&x) {
        let len = (x - 1_000_000) as usize;
        panic!("{}", "m".repeat(len));
    }
    x * 7
}

/// The worker writes a reply's lead (number, kind, failures, count) in
/// the 32 bytes of room before the results, or splices it in when it
/// does not fit. Failures whose messages take 0 to 60 bytes (crossing
/// that room), one or many, with and without results, through the
/// socket (small chunks) and the arena (large ones): every failure's
/// message and every result exact and in place.
#[test]
fn a_reply_lead_of_any_length_leaves_results_in_place() {
    let _w = watchdog(120);
    let pool = Pool::new(2).unwrap();
    let check = |items: &[u64], chunk: usize| {
        let outcomes = pool.map_outcomes_chunked(panics_with_length, items.to_vec(), chunk);
        assert_eq!(outcomes.len(), items.len());
        for (i, (&x, o)) in items.iter().zip(&outcomes).enumerate() {
            match o {
                Ok(r) => assert!(!FAILS.contains(&x) && *r == x * 7, "item {i} ({x}): {r}"),
                Err(TaskError::Panicked { message }) => assert!(
                    FAILS.contains(&x) && message.len() == (x - 1_000_000) as usize,
                    "item {i} ({x}): {message:?}"
                ),
                Err(e) => panic!("item {i} ({x}): {e:?}"),
            }
        }
    };
    for msg_len in 0..=60u64 {
        for (len, at) in [(40usize, 17usize), (2000, 0), (2000, 1999), (2000, 256)] {
            // One failure among numbers (and the numbers past 2^32 on
            // the large chunks: a widened column).
            let mut items: Vec<u64> = (0..len as u64)
                .map(|i| if len > 1000 && i % 3 == 0 { i << 33 } else { i })
                .collect();
            items[at] = 1_000_000 + msg_len;
            check(&items, len);
        }
        // Every item fails: no results at all.
        check(&[1_000_000 + msg_len; 5], 5);
    }
    // Many failures with long messages, among results: the lead is
    // hundreds of KiB, far past its room.
    let items: Vec<u64> = (0..3000u64)
        .map(|i| {
            if i % 3 == 1 {
                1_000_000 + 200 + i % 50
            } else {
                i
            }
        })
        .collect();
    check(&items, 3000);
    check(&items, 100);
    // None: the usual lead.
    let items: Vec<u64> = (0..5000).collect();
    check(&items, 5000);
    check(&items, 1);
}

/// Counters of [`Tracked`] values in this (the calling) process, by
/// test: made by `Deserialize`, dropped, and dropped when not alive (a
/// second drop, or a drop of memory never written).
static MADE: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];
static DROPPED: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];
static BAD_DROPS: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];

const ALIVE: u64 = 0x5eed_a11e_0b5e_55ed;
/// The value whose `Deserialize` panics in the caller.
const TRACKED_BOOM: u64 = 600;
/// The value whose `Deserialize` fails in the caller.
const TRACKED_REFUSED: u64 = 700;

/// A number with a destructor that counts itself, whose `Deserialize`
/// panics at [`TRACKED_BOOM`] and fails at [`TRACKED_REFUSED`]. `K`
/// picks the counters.
#[derive(Debug)]
struct Tracked<const K: usize> {
    v: u64,
    alive: u64,
}

impl<const K: usize> Serialize for Tracked<K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.v)
    }
}

impl<'de, const K: usize> Deserialize<'de> for Tracked<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tracked<K>, D::Error> {
        let v = u64::deserialize(d)?;
        assert!(v != TRACKED_BOOM, "tracked boom");
        if v == TRACKED_REFUSED {
            return Err(D::Error::custom("refused"));
        }
        MADE[K].fetch_add(1, Ordering::SeqCst);
        Ok(Tracked { v, alive: ALIVE })
    }
}

impl<const K: usize> Drop for Tracked<K> {
    fn drop(&mut self) {
        if self.alive == ALIVE {
            DROPPED[K].fetch_add(1, Ordering::SeqCst);
        } else {
            BAD_DROPS[K].fetch_add(1, Ordering::SeqCst);
        }
        self.alive = 0;
    }
}

fn tracked<const K: usize>(x: u64) -> Tracked<K> {
    Tracked { v: x, alive: ALIVE }
}

/// A map whose result's `Deserialize` panics in the caller in the middle
/// of a chunk (read straight into the result vector's spare room): the
/// panic reaches the caller, no value is dropped twice or dropped
/// without having been made, and the pool runs the next map right.
#[test]
fn a_result_deserialize_panicking_mid_chunk_drops_no_value_twice() {
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    for chunk in [1000usize, 400, 1] {
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.map_chunked(tracked::<0>, 0..1000u64, chunk)
        }));
        assert!(r.is_err(), "the panic reaches the caller");
        assert_eq!(
            BAD_DROPS[0].load(Ordering::SeqCst),
            0,
            "a value dropped twice or unmade"
        );
        assert!(DROPPED[0].load(Ordering::SeqCst) <= MADE[0].load(Ordering::SeqCst));
        let got = pool.map_chunked(|x: u64| x + 1, 0..5000u64, chunk).unwrap();
        assert_eq!(got, (1..5001).collect::<Vec<_>>());
    }
}

/// The same, counting the values decoded before the panic: each is
/// dropped (as a vector they were pushed onto drops them; a value that
/// holds a descriptor or memory must not be leaked by a panic).
#[test]
fn a_result_deserialize_panicking_mid_chunk_leaks_no_value() {
    let _w = watchdog(60);
    let pool = Pool::new(1).unwrap();
    // Through map_outcomes (`Plan::decode`, values pushed one by one).
    let r = catch_unwind(AssertUnwindSafe(|| {
        pool.map_outcomes_chunked(tracked::<1>, 0..1000u64, 1000)
    }));
    assert!(r.is_err());
    let (made, dropped) = (
        MADE[1].load(Ordering::SeqCst),
        DROPPED[1].load(Ordering::SeqCst),
    );
    assert_eq!((made, dropped), (600, 600), "map_outcomes: made, dropped");
    // Through map (`read_into`).
    let r = catch_unwind(AssertUnwindSafe(|| {
        pool.map_chunked(tracked::<1>, 0..1000u64, 1000)
    }));
    assert!(r.is_err());
    let (made, dropped) = (
        MADE[1].load(Ordering::SeqCst),
        DROPPED[1].load(Ordering::SeqCst),
    );
    assert_eq!(BAD_DROPS[1].load(Ordering::SeqCst), 0);
    assert_eq!(
        (made - 600, dropped - 600),
        (600, 600),
        "map: values made before the panic, values dropped"
    );
}

/// A write end of a pipe beside a number: the chunk's descriptors send
/// its reply through the socket (never the arena), its arguments in
/// postcard; the i64 results still narrow and widen.
#[derive(Serialize, Deserialize)]
struct WithPipe(mpkit::os::PipeWriter, i64);

#[test]
fn results_beside_handles_widen_right_through_the_socket() {
    use std::io::{Read, Write};
    let _w = watchdog(60);
    let pool = Pool::new(1).unwrap();
    let mut readers = Vec::new();
    let mut items = Vec::new();
    let values: Vec<i64> = (0..100i64)
        .map(|i| match i {
            40 => i64::from(i32::MIN) - 1,
            41 => i64::from(i32::MAX) + 1,
            _ => -i,
        })
        .collect();
    for &v in &values {
        let (r, w) = mpkit::os::pipe().unwrap();
        items.push(WithPipe(w, v));
        readers.push(r);
    }
    let got = pool
        .map_chunked(
            |WithPipe(mut w, v): WithPipe| {
                w.write_all(&[1]).unwrap();
                v
            },
            items,
            100,
        )
        .unwrap();
    assert_eq!(got, values);
    for r in &mut readers {
        let mut b = [0u8];
        r.read_exact(&mut b).unwrap();
    }
    // Results that hold handles beside numbers past 32 bits.
    let got = pool
        .map_chunked(
            |v: i64| {
                let (_r, w) = mpkit::os::pipe().unwrap();
                (v, w)
            },
            values.clone(),
            50,
        )
        .unwrap();
    let back: Vec<i64> = got.into_iter().map(|(v, _)| v).collect();
    assert_eq!(back, values);
}

/// Results holding more handles than one reply carries: every item of
/// that chunk fails with `ResultEncode` (its lead, hundreds of failures,
/// is spliced in before the empty column), the other chunks of the map
/// and the next map are right.
#[test]
fn a_chunk_whose_results_hold_too_many_handles_fails_whole_and_alone() {
    let _w = watchdog(60);
    let pool = Pool::new(1).unwrap();
    let outcomes = pool.map_outcomes_chunked(
        |x: u64| {
            let (_r, w) = mpkit::os::pipe().unwrap();
            (x, if x < 300 { Some(w) } else { None })
        },
        0..600u64,
        300,
    );
    for (x, o) in outcomes.iter().enumerate() {
        match o {
            Err(TaskError::ResultEncode { message, .. }) if x < 300 => {
                assert!(message.contains("handles"), "{message}")
            }
            Ok((got, None)) if x >= 300 => assert_eq!(*got, x as u64),
            other => panic!("item {x}: {other:?}"),
        }
    }
    let got = pool.map_chunked(|x: i64| -x, 0..5000i64, 5000).unwrap();
    assert_eq!(got, (0..5000).map(|x: i64| -x).collect::<Vec<_>>());
}

/// A map whose result's `Deserialize` fails (an error, not a panic) in
/// the middle of a chunk: the map fails with `ResultDecode`, and every
/// value read before it is dropped once.
#[test]
fn a_result_that_does_not_decode_mid_chunk_fails_the_map_and_drops_each_value_once() {
    let _w = watchdog(60);
    let pool = Pool::new(1).unwrap();
    let r = pool.map_chunked(tracked::<2>, 650..1000u64, 350);
    assert!(
        matches!(&r, Err(TaskError::ResultDecode { message, .. }) if message.contains("refused")),
        "{r:?}"
    );
    assert_eq!(BAD_DROPS[2].load(Ordering::SeqCst), 0);
    assert_eq!(
        (
            MADE[2].load(Ordering::SeqCst),
            DROPPED[2].load(Ordering::SeqCst)
        ),
        (50, 50)
    );
}
