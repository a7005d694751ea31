//! The pool's chunk payloads between real processes: fixed-width columns
//! of one scalar, the switch to postcard at the first value of another
//! shape, handles beside them, zero-sized items, and the message buffers
//! a map reuses. Each test states what the pool promises.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use common::{TempDir, socket_fds, watchdog};
use mpkit::pool::TaskError;
use mpkit::{Connection, Pool};
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

fn kill_self() {
    // SAFETY: kill(2) on our own pid with a valid signal.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

/// How many values of [`Quota`] this process has read.
static QUOTA_READS: AtomicU32 = AtomicU32::new(0);

/// A number whose `Deserialize` refuses the second value a process reads,
/// before reading it (as any type does that checks something first: a
/// quota, a context, a version): that item does not decode, and only it.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
#[serde(transparent)]
struct Quota(u64);

impl<'de> Deserialize<'de> for Quota {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Quota, D::Error> {
        if QUOTA_READS.fetch_add(1, Ordering::SeqCst) == 1 {
            return Err(D::Error::custom("over quota"));
        }
        u64::deserialize(d).map(Quota)
    }
}

/// As [`Quota`], panicking instead of refusing.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
#[serde(transparent)]
struct PanicsOnce(u64);

static PANICS_READS: AtomicU32 = AtomicU32::new(0);

impl<'de> Deserialize<'de> for PanicsOnce {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PanicsOnce, D::Error> {
        assert!(
            PANICS_READS.fetch_add(1, Ordering::SeqCst) != 1,
            "read twice"
        );
        u64::deserialize(d).map(PanicsOnce)
    }
}

/// One fresh worker runs one chunk of 10, 20, 30, 40: the second item
/// does not decode, and fails alone (`chunk.rs`: "each that does not
/// decode fails alone"); the third and fourth items must still get 30
/// and 40. The fixed-width path reads the column as a stream, so an item
/// whose `Deserialize` stops before taking its value leaves it for the
/// next item: items 3 and 4 run on 20 and 30, silently.
#[test]

fn an_item_that_fails_before_reading_its_value_shifts_no_other_item() {
    let _w = watchdog(30);
    let pool = Pool::new(1).unwrap();
    let outcomes = pool.map_outcomes_chunked(|q: Quota| q.0, [10, 20, 30, 40].map(Quota), 4);
    assert!(
        matches!(&outcomes[1], Err(TaskError::ArgsDecode { message, .. }) if message.contains("over quota")),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[0], Ok(10), "{outcomes:?}");
    assert_eq!(
        (&outcomes[2], &outcomes[3]),
        (&Ok(30), &Ok(40)),
        "later items ran on another item's value"
    );
    // A panic in the `Deserialize` before it reads: the same.
    let pool = Pool::new(1).unwrap();
    let outcomes =
        pool.map_outcomes_chunked(|q: PanicsOnce| q.0, [10, 20, 30, 40].map(PanicsOnce), 4);
    assert!(
        matches!(&outcomes[1], Err(TaskError::Panicked { .. })),
        "{outcomes:?}"
    );
    assert_eq!(
        (&outcomes[0], &outcomes[2], &outcomes[3]),
        (&Ok(10), &Ok(30), &Ok(40)),
        "later items ran on another item's value"
    );
}

/// Raises this process's descriptor limit to its hard limit (the test
/// holds a few hundred at once).
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid resource and pointer.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

/// A connection in a newtype.
#[derive(Serialize, Deserialize)]
struct Wrapped(Connection);

/// A handle and nothing else: a pipe's write end serializes as its
/// descriptor's index alone.
#[derive(Serialize, Deserialize)]
struct Writer(mpkit::os::PipeWriter);

/// The most descriptors one message carries (`SCM_MAX_FD`).
const MAX_FDS: usize = 253;

/// A chunk of 253 handles fits one message, as before the fixed-width
/// columns. The first item of every chunk is serialized twice (once by
/// the probe, then in postcard), and a handle takes its descriptor in
/// its `Serialize`, before the probe refuses it: when the item is a bare
/// handle (a pipe end; not a `Connection`, a struct), the chunk carries
/// 254, and fails with `TooManyHandles(254)`.
#[test]

fn a_chunk_of_as_many_handles_as_a_message_carries_still_goes() {
    use std::io::{Read, Write};
    let _w = watchdog(60);
    raise_fd_limit();
    let pool = Pool::new(1).unwrap();
    let mut readers = Vec::new();
    let mut items = Vec::new();
    for _ in 0..MAX_FDS {
        let (r, w) = mpkit::os::pipe().unwrap();
        items.push(w);
        readers.push(r);
    }
    let wrote = pool.map_chunked(
        |mut w: mpkit::os::PipeWriter| w.write(&[7]).is_ok(),
        items,
        MAX_FDS,
    );
    assert_eq!(wrote, Ok(vec![true; MAX_FDS]));
    for r in &mut readers {
        let mut byte = [0u8];
        r.read_exact(&mut byte).unwrap();
        assert_eq!(byte, [7]);
    }
    // In a newtype: the same.
    let mut items = Vec::new();
    for _ in 0..MAX_FDS {
        let (r, w) = mpkit::os::pipe().unwrap();
        items.push(Writer(w));
        readers.push(r);
    }
    let wrote = pool.map_chunked(|mut w: Writer| w.0.write(&[7]).is_ok(), items, MAX_FDS);
    assert_eq!(wrote, Ok(vec![true; MAX_FDS]));
}

/// Handles in arguments (bare, in a newtype, after numbers) and in
/// results go through, each to its own item and in order.
#[test]
fn handles_in_arguments_and_results_keep_their_items() {
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    // Each item's connection comes back as its result: the peer kept
    // here must be the one it talks to.
    let mut peers = Vec::new();
    let mut items = Vec::new();
    for i in 0..40u32 {
        let (a, b) = mpkit::pipe(true).unwrap();
        items.push((i, Wrapped(a)));
        peers.push(b);
    }
    let back = pool
        .map_chunked(
            |(i, mut c): (u32, Wrapped)| {
                c.0.send(&i).unwrap();
                c
            },
            items,
            7,
        )
        .unwrap();
    for (i, (mut peer, mut c)) in peers.into_iter().zip(back).enumerate() {
        assert_eq!(peer.recv::<u32>().unwrap(), i as u32);
        c.0.send(&(i as u32 * 2)).unwrap();
        assert_eq!(peer.recv::<u32>().unwrap(), i as u32 * 2);
    }
    // Results that are handles, made in the worker, a full reply's worth
    // (the worker writes results outside any descriptor list first).
    let made = pool
        .map_chunked(
            |i: u32| {
                let (mut a, b) = mpkit::pipe(true).unwrap();
                a.send(&i).unwrap();
                Wrapped(b)
            },
            0..MAX_FDS as u32,
            MAX_FDS,
        )
        .unwrap();
    for (i, mut c) in made.into_iter().enumerate() {
        assert_eq!(c.0.recv::<u32>().unwrap(), i as u32);
    }
}

/// A number that serializes as the narrowest of `u32` and `u64` that
/// holds it, and reads back from either (as postcard's varints allow):
/// its values change shape in the middle of a column. 13 refuses to
/// serialize.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Narrow(u64);

impl Serialize for Narrow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match u32::try_from(self.0) {
            _ if self.0 == 13 => Err(S::Error::custom("thirteen")),
            Ok(small) => s.serialize_u32(small),
            Err(_) => s.serialize_u64(self.0),
        }
    }
}

impl<'de> Deserialize<'de> for Narrow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Narrow, D::Error> {
        u64::deserialize(d).map(Narrow)
    }
}

/// Results (and arguments) whose shape changes mid-chunk, with panics and
/// values that do not encode among them: every other item's result is
/// right and in order, whatever the chunk size.
#[test]
fn values_that_change_shape_mid_chunk_stay_right_and_in_order() {
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    let big = 1u64 << 40;
    let xs: Vec<u64> = (0..200)
        .map(|i| match i % 17 {
            5 => big + i,
            11 => 13,
            _ => i,
        })
        .collect();
    let expect = |x: u64| -> Result<Narrow, &'static str> {
        match x {
            7 | 100 => Err("panicked"),
            13 => Err("encode"),
            x => Ok(Narrow(x)),
        }
    };
    for chunk in [1, 3, 16, 64, 200] {
        // Numbers in, narrow numbers out.
        let outcomes = pool.map_outcomes_chunked(
            |x: u64| {
                assert!(x != 7 && x != 100, "no {x}");
                Narrow(x)
            },
            xs.clone(),
            chunk,
        );
        for (x, o) in xs.iter().zip(&outcomes) {
            match (expect(*x), o) {
                (Ok(want), Ok(got)) => assert_eq!(want, *got, "chunk {chunk}"),
                (Err("panicked"), Err(TaskError::Panicked { .. })) => {}
                (Err("encode"), Err(TaskError::ResultEncode { message, .. })) => {
                    assert!(message.contains("thirteen"), "{message}")
                }
                (want, got) => panic!("chunk {chunk}, item {x}: {want:?}, got {got:?}"),
            }
        }
        // Narrow numbers in: 13 does not encode and fails alone.
        let outcomes =
            pool.map_outcomes_chunked(|n: Narrow| n.0, xs.iter().map(|&x| Narrow(x)), chunk);
        for (x, o) in xs.iter().zip(&outcomes) {
            match o {
                Ok(got) => assert_eq!(got, x, "chunk {chunk}"),
                Err(TaskError::ArgsEncode { message, .. }) if *x == 13 => {
                    assert!(message.contains("thirteen"), "{message}")
                }
                other => panic!("chunk {chunk}, item {x}: {other:?}"),
            }
        }
    }
    // The same through imap, imap_unordered and apply.
    let want: Vec<Narrow> = (0..100)
        .map(|i| Narrow(if i % 9 == 4 { big + i } else { i }))
        .collect();
    let got: Vec<Narrow> = pool
        .imap_chunked(|n: Narrow| n, want.clone(), 8)
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, want);
    let mut got: Vec<u64> = pool
        .imap_unordered_chunked(|n: Narrow| n, want.clone(), 8)
        .map(|r| r.unwrap().0)
        .collect();
    got.sort_unstable();
    let mut sorted: Vec<u64> = want.iter().map(|n| n.0).collect();
    sorted.sort_unstable();
    assert_eq!(got, sorted);
    assert_eq!(pool.apply(|n: Narrow| n, Narrow(big)), Ok(Narrow(big)));
    assert_eq!(pool.apply(|n: Narrow| n, Narrow(3)), Ok(Narrow(3)));
}

/// Zero-sized values: units and unit structs, as arguments and results,
/// in chunks larger than a million items (they take no room at all).
#[test]
fn zero_sized_results_over_huge_chunks() {
    let _w = watchdog(120);
    let pool = Pool::new(1).unwrap();
    let n = 3 << 20;
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Nothing;
    let out = pool
        .map_chunked(|x: u8| assert!(x < 251), (0..n).map(|i| (i % 251) as u8), n)
        .unwrap();
    assert_eq!(out.len(), n);
    let out = pool
        .map_chunked(|_: u8| Nothing, (0..n).map(|i| (i % 251) as u8), n)
        .unwrap();
    assert_eq!(out.len(), n);
    assert!(out.iter().all(|u| *u == Nothing));
}

/// A chunk of more than 2^20 zero-sized items runs like any other: the
/// pool made the chunk itself (here by the default chunk size, a quarter
/// of the items per worker). The worker's guard against forged counts
/// (`count > body.len() + 2^20` is refused) refuses it instead, and its
/// error reply lists only 2^20 failures, so the caller sees "the worker's
/// reply is malformed" for every item.
#[test]

fn a_chunk_of_more_than_a_million_units_runs() {
    let _w = watchdog(120);
    let pool = Pool::new(1).unwrap();
    let n = (1 << 20) + 2;
    let out = pool.map_chunked(|(): ()| 1u8, (0..n).map(|_| ()), n);
    assert_eq!(out.map(|v| v.len()), Ok(n));
    // The default chunk size reaches it with 4 Mi + 8 items on one worker.
    let n = (4 << 20) + 8;
    let out = pool.map(|(): ()| 1u8, (0..n).map(|_| ()));
    assert_eq!(out.map(|v| v.len()), Ok(n));
}

/// Panics on the third value it serializes in this process, after
/// writing its number.
#[derive(Deserialize, Debug, Clone, Copy)]
struct PanicsThird(u64);

static SERIALIZED: AtomicU32 = AtomicU32::new(0);

impl Serialize for PanicsThird {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ok = s.serialize_u64(self.0);
        assert!(SERIALIZED.fetch_add(1, Ordering::SeqCst) != 2, "third");
        ok
    }
}

/// An argument whose `Serialize` panics after writing: the panic goes up
/// to the caller, as before; the pool then runs the next map right, with
/// nothing of the abandoned message in any later one.
#[test]
fn a_panic_serializing_an_argument_reaches_the_caller_and_leaves_nothing() {
    let _w = watchdog(30);
    let pool = Pool::new(2).unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| {
        pool.map_chunked(|p: PanicsThird| p.0, (0..10).map(PanicsThird), 10)
    }));
    assert!(r.is_err());
    let got = pool
        .map_chunked(|p: PanicsThird| p.0 * 2, (0..10).map(PanicsThird), 10)
        .unwrap();
    assert_eq!(got, (0..10).map(|x| x * 2).collect::<Vec<_>>());
}

/// Maps of different shapes on several pools at once, while chunks are
/// retried after their worker dies: every message buffer is reused, and
/// none carries another map's bytes or is reused while its chunk may
/// still be resent.
#[test]
fn reused_buffers_never_mix_maps_or_retries() {
    let _w = watchdog(120);
    let dir = TempDir::new("retry");
    std::thread::scope(|s| {
        // Each chunk's first run kills its worker; the rerun returns.
        let retried = s.spawn(|| {
            let pool = Pool::builder().processes(2).retries(1).build().unwrap();
            for round in 0..4u64 {
                let items: Vec<(PathBuf, u64)> =
                    (0..64).map(|i| (dir.0.clone(), round * 1024 + i)).collect();
                let got = pool
                    .map_chunked(
                        |(dir, x): (PathBuf, u64)| {
                            let mark = dir.join(format!("{}", x - x % 16));
                            if std::fs::OpenOptions::new()
                                .write(true)
                                .create_new(true)
                                .open(&mark)
                                .is_ok()
                            {
                                kill_self();
                            }
                            x * 3
                        },
                        items,
                        16,
                    )
                    .unwrap();
                let want: Vec<u64> = (0..64).map(|i| (round * 1024 + i) * 3).collect();
                assert_eq!(got, want, "round {round}");
            }
        });
        let strings = s.spawn(|| {
            let pool = Pool::new(2).unwrap();
            for round in 0..20usize {
                let items: Vec<String> =
                    (0..300).map(|i| "x".repeat((i * 7 + round) % 97)).collect();
                let got = pool
                    .map_chunked(|s: String| s.len(), items.clone(), 32)
                    .unwrap();
                assert_eq!(got, items.iter().map(String::len).collect::<Vec<_>>());
            }
        });
        let numbers = s.spawn(|| {
            let pool = Pool::new(2).unwrap();
            for round in 0..20u64 {
                let got = pool
                    .map_chunked(
                        |x: u8| u64::from(x) + 1,
                        (0..250u8).rev(),
                        1 + round as usize,
                    )
                    .unwrap();
                assert_eq!(got, (1..=250u64).rev().collect::<Vec<_>>());
                let got = pool
                    .map_chunked(|x: i16| x == -1, [-1i16, 0, -1], 2)
                    .unwrap();
                assert_eq!(got, [true, false, true]);
            }
        });
        for t in [retried, strings, numbers] {
            t.join().unwrap();
        }
    });
    // Every chunk of the retried maps killed its first worker: 4 rounds
    // of 4 chunks.
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 16);
}

/// Runs a chunk of three `u64` items on a fresh one-worker pool whose
/// first item sends, on the worker's own socket and before the worker
/// does, a well-framed reply to task 1 (the pool's first) that says all
/// three returned, with `column` (a format byte and the values) as their
/// results: a hostile worker.
fn forged_reply_outcomes(column: Vec<u8>) -> Vec<Result<u64, TaskError>> {
    let pool = Pool::new(1).unwrap();
    let items = [(column, 0u64), (Vec::new(), 1), (Vec::new(), 2)];
    pool.map_outcomes_chunked(
        |(column, x): (Vec<u8>, u64)| {
            if !column.is_empty() {
                let mut reply = 1u64.to_le_bytes().to_vec();
                reply.push(5); // a chunk's results
                reply.push(0); // no failures
                reply.push(3); // three results
                reply.extend_from_slice(&column);
                for fd in socket_fds() {
                    // SAFETY: dup(2) of a descriptor this process holds.
                    let dup = unsafe { libc::dup(fd) };
                    // SAFETY: `dup` is a new descriptor owned here alone.
                    let stream = unsafe {
                        <std::os::unix::net::UnixStream as std::os::fd::FromRawFd>::from_raw_fd(dup)
                    };
                    let mut conn: Connection = Connection::from(stream);
                    let _ = conn.send_bytes(&reply);
                }
            }
            x
        },
        items,
        3,
    )
}

/// The fixed-width column of `u64`s with these values, format byte first.
fn u64_column(values: &[u64]) -> Vec<u8> {
    let mut column = vec![6u8]; // Kind::U64
    for v in values {
        column.extend_from_slice(&v.to_le_bytes());
    }
    column
}

/// A forged reply whose column is malformed fails the items it cannot
/// give a value, with an error, never a panic or a hang; one that is well
/// formed is taken (the worker computes what it likes).
#[test]
fn forged_replies_with_bad_columns_are_errors() {
    let _w = watchdog(60);
    let decode_error = |o: &Result<u64, TaskError>| {
        matches!(
            o,
            Err(TaskError::ResultDecode { .. } | TaskError::BadReply { .. })
        )
    };
    // A well-formed column: taken as the results.
    assert_eq!(
        forged_reply_outcomes(u64_column(&[100, 101, 102])),
        [Ok(100), Ok(101), Ok(102)]
    );
    // Not a format; a unit column for numbers; a bool that is neither.
    for column in [vec![16u8], vec![255], vec![1], vec![2, 0, 1, 2]] {
        let out = forged_reply_outcomes(column.clone());
        assert!(out.iter().all(decode_error), "{column:?}: {out:?}");
    }
    // A column cut short is no reply: every item fails.
    let mut short = u64_column(&[100, 101, 102]);
    short.pop();
    let out = forged_reply_outcomes(short);
    assert!(out.iter().all(decode_error), "{out:?}");
    // Values as wide as the reader's type, read as its own.
    let mut u8s = vec![3u8]; // Kind::U8
    u8s.extend_from_slice(&[7, 8, 9]);
    assert_eq!(forged_reply_outcomes(u8s), [Ok(7), Ok(8), Ok(9)]);
}

/// A reply with bytes after its last result is malformed (the module
/// docs of `pool/fixed.rs`: "trailing bytes ... are errors, as in
/// postcard"), and fails: `Plan::decode` reads the results it expects and
/// never checks that the column ended, so the bytes go unnoticed.
#[test]

fn a_forged_reply_with_trailing_bytes_is_refused() {
    let _w = watchdog(60);
    let mut trailing = u64_column(&[100, 101, 102]);
    trailing.extend_from_slice(&[0xAA; 5]);
    let out = forged_reply_outcomes(trailing);
    assert!(out.iter().all(Result::is_err), "{out:?}");
}

/// An argument's `Serialize` runs once, so a value that can be serialized
/// only once (a one-shot stream) crosses: the first value of a chunk is
/// written in postcard while `pool/fixed.rs`'s recorder watches, not
/// probed and written again.
#[test]
fn an_argument_is_serialized_once() {
    let _w = watchdog(30);
    let pool = Pool::new(1).unwrap();
    let items = (0..6u32).map(|i| Taken(std::cell::RefCell::new(Some(vec![i; 3]))));
    let sums = pool.map_outcomes_chunked(
        |t: Taken| t.0.into_inner().unwrap_or_default().iter().sum::<u32>(),
        items,
        3,
    );
    assert_eq!(sums, (0..6).map(|i| Ok(3 * i)).collect::<Vec<_>>());
}

/// A value that can be serialized once: its numbers are taken out as it
/// is (as a serializer of a one-shot iterator does).
#[derive(Debug)]
struct Taken(std::cell::RefCell<Option<Vec<u32>>>);

impl Serialize for Taken {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.borrow_mut().take() {
            Some(numbers) => s.collect_seq(numbers),
            None => Err(S::Error::custom("serialized twice")),
        }
    }
}

impl<'de> Deserialize<'de> for Taken {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Taken, D::Error> {
        Vec::deserialize(d).map(|v| Taken(std::cell::RefCell::new(Some(v))))
    }
}

/// A number or a text, told apart by what was written (`deserialize_any`,
/// which postcard does not support: it has no self-describing form).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
enum NumOrText {
    Num(u64),
    Text(String),
}

/// An item's outcome does not depend on its neighbours: the same values
/// give the same outcomes whatever the chunk size. A type read with
/// `deserialize_any` (an untagged enum) reads back from a fixed-width
/// column (the reader answers `any` with the column's scalar) but not from
/// postcard, which refuses `any`: chunks of numbers alone work, and any
/// chunk with a text in it fails whole, numbers included. Before the
/// fixed-width columns every chunk failed alike.
#[test]

fn an_items_outcome_does_not_depend_on_its_chunk() {
    let _w = watchdog(30);
    let pool = Pool::new(2).unwrap();
    let items = vec![
        NumOrText::Num(1),
        NumOrText::Num(2),
        NumOrText::Text("x".into()),
        NumOrText::Num(3),
    ];
    // As arguments.
    let ok = |o: &Result<u8, TaskError>| o.is_ok();
    let alone: Vec<bool> = pool
        .map_outcomes_chunked(|_: NumOrText| 0u8, items.clone(), 1)
        .iter()
        .map(ok)
        .collect();
    let together: Vec<bool> = pool
        .map_outcomes_chunked(|_: NumOrText| 0u8, items.clone(), 4)
        .iter()
        .map(ok)
        .collect();
    assert_eq!(alone, together, "arguments: outcomes by chunk of 1, of 4");
    // As results.
    let ok = |o: &Result<NumOrText, TaskError>| o.is_ok();
    let alone: Vec<bool> = pool
        .map_outcomes_chunked(|n: u64| n_or_text(n), 0..4u64, 1)
        .iter()
        .map(ok)
        .collect();
    let together: Vec<bool> = pool
        .map_outcomes_chunked(|n: u64| n_or_text(n), 0..4u64, 4)
        .iter()
        .map(ok)
        .collect();
    assert_eq!(alone, together, "results: outcomes by chunk of 1, of 4");
}

/// 2 is a text, the rest numbers.
fn n_or_text(n: u64) -> NumOrText {
    match n {
        2 => NumOrText::Text("two".into()),
        n => NumOrText::Num(n),
    }
}

/// How many values of [`Picky3`] this process has read.
static PICKY_READS: AtomicU32 = AtomicU32::new(0);

/// A number whose `Deserialize` refuses the values a process reads 4th,
/// 257th and 601st, before reading them.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
#[serde(transparent)]
struct Picky3(u64);

impl<'de> Deserialize<'de> for Picky3 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Picky3, D::Error> {
        if matches!(PICKY_READS.fetch_add(1, Ordering::SeqCst), 3 | 256 | 600) {
            return Err(D::Error::custom("picky"));
        }
        u64::deserialize(d).map(Picky3)
    }
}

/// A result whose `Serialize` panics for numbers ending in 300 or 999.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq)]
struct Touchy(u64);

impl Serialize for Touchy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        assert!(!matches!(self.0 % 1000, 300 | 999), "touchy {}", self.0);
        s.serialize_u64(self.0)
    }
}

/// The worker runs a fixed-width chunk in batches of 256 results: items
/// that panic, do not decode or whose result panics while being written,
/// on either side of a batch's edge, at the chunk's first and last item,
/// each fail alone, and every other item keeps its own result in order.
#[test]
fn failures_across_the_workers_batches_fail_alone_and_in_place() {
    let _w = watchdog(30);
    let pool = Pool::new(1).unwrap();
    // The one worker reads each argument once, in order: items 3, 256 and
    // 600 do not decode.
    let outcomes = pool.map_outcomes_chunked(
        |q: Picky3| {
            assert!(!matches!(q.0, 0 | 255 | 511 | 700), "panics {}", q.0);
            Touchy(q.0)
        },
        (0..1000).map(Picky3),
        1000,
    );
    assert_eq!(outcomes.len(), 1000);
    for (x, outcome) in (0..1000u64).zip(outcomes) {
        match outcome {
            Err(TaskError::ArgsDecode { message, .. }) if matches!(x, 3 | 256 | 600) => {
                assert!(message.contains("picky"), "{message}")
            }
            Err(TaskError::Panicked { message }) if matches!(x, 0 | 255 | 511 | 700) => {
                assert_eq!(message, format!("panics {x}"))
            }
            Err(TaskError::Panicked { message }) if matches!(x, 300 | 999) => {
                assert_eq!(message, format!("touchy {x}"))
            }
            Ok(Touchy(v))
                if v == x && !matches!(x, 0 | 3 | 255 | 256 | 300 | 511 | 600 | 700 | 999) => {}
            other => panic!("item {x}: {other:?}"),
        }
    }
    // The worker carries on with the next chunk.
    assert_eq!(
        pool.map_chunked(|x: u64| Touchy(x + 1), 0..299, 299)
            .unwrap(),
        (1..300).map(Touchy).collect::<Vec<_>>()
    );
}

/// 64-bit numbers travel 4 bytes each while they fit 32 bits; one past
/// that widens its column (in the caller for arguments, in the worker for
/// results, inside a batch of the worker's run) and every value stays
/// itself.
#[test]
fn numbers_past_32_bits_mid_chunk_widen_and_stay_right() {
    let _w = watchdog(30);
    let pool = Pool::new(2).unwrap();
    let items: Vec<u64> = (0..3000)
        .map(|i| if i % 1000 == 700 { u64::MAX - i } else { i })
        .collect();
    let got = pool
        .map_chunked(|x: u64| x.wrapping_add(1), items.clone(), 1500)
        .unwrap();
    let expected: Vec<u64> = items.iter().map(|x| x.wrapping_add(1)).collect();
    assert_eq!(got, expected);
    // Results widen where the arguments stay narrow.
    let got = pool
        .map_chunked(
            |x: u32| if x == 900 { u64::MAX } else { u64::from(x) },
            0..2000u32,
            2000,
        )
        .unwrap();
    assert_eq!(got[900], u64::MAX);
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, &v)| i == 900 || v == i as u64)
    );
    // Signed, both ways.
    let got = pool
        .map_chunked(|x: i64| -x * (1 << 20), -1000..1000i64, 2000)
        .unwrap();
    assert_eq!(
        got,
        (-1000..1000i64).map(|x| -x * (1 << 20)).collect::<Vec<_>>()
    );
}
