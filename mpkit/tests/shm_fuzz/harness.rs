//! The harness: a watchdog per case, the timing checks, the damage and the
//! runner.

use std::fmt::Debug;
use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// The timeout every timed call gets.
pub(crate) const SHORT: Duration = Duration::from_millis(2);
/// What a call may take beyond its timeout (or in all, without one) on a
/// loaded machine before it counts as a hang.
pub(crate) const SLACK: Duration = Duration::from_millis(1500);
/// How long one case may run before the watchdog aborts the run.
const CASE_LIMIT: Duration = Duration::from_secs(30);

// ----- the watchdog ----------------------------------------------------------

/// Cases running now: (id, deadline, object name, what the case is).
static RUNNING: Mutex<Vec<(u64, Instant, String, String)>> = Mutex::new(Vec::new());
static NEXT_CASE: AtomicU64 = AtomicU64::new(0);

/// A running case; the watchdog aborts the run if it is not dropped within
/// [`CASE_LIMIT`], after removing the case's object.
pub(crate) struct Watched(u64);

pub(crate) fn watch(name: &str, what: String) -> Watched {
    static MONITOR: std::sync::Once = std::sync::Once::new();
    MONITOR.call_once(|| {
        std::thread::spawn(|| {
            loop {
                std::thread::sleep(Duration::from_millis(100));
                let running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((_, _, name, what)) = running.iter().find(|c| c.1 < Instant::now()) {
                    // Straight to stderr: the test harness captures
                    // `eprintln!`, and aborting would lose it.
                    let _ = writeln!(
                        std::io::stderr(),
                        "watchdog: a case hung for {CASE_LIMIT:?}, aborting: {what}"
                    );
                    let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
                    // The other properties' cases die with this abort too.
                    crate::common::remove_test_objects();
                    std::process::abort();
                }
            }
        });
    });
    let id = NEXT_CASE.fetch_add(1, Ordering::Relaxed);
    RUNNING.lock().unwrap_or_else(|e| e.into_inner()).push((
        id,
        Instant::now() + CASE_LIMIT,
        name.to_string(),
        what,
    ));
    Watched(id)
}

impl Drop for Watched {
    fn drop(&mut self) {
        RUNNING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|c| c.0 != self.0);
    }
}

/// What a timed call returned: its result is only looked at where a test
/// needs it (every result is a value or an error the types document).
pub(crate) struct Returned<R>(pub(crate) R);

/// Runs `f`, failing if it took longer than `limit` + [`SLACK`].
pub(crate) fn timed<R: Debug>(what: &str, limit: Duration, f: impl FnOnce() -> R) -> Returned<R> {
    let start = Instant::now();
    let r = f();
    let took = start.elapsed();
    assert!(
        took <= limit + SLACK,
        "{what} took {took:?} (its timeout: {limit:?}), returning {r:?}"
    );
    Returned(r)
}

/// Opens an object (which must not wait), for types without `Debug`.
pub(crate) fn opened<T, E: Debug>(what: &str, f: impl FnOnce() -> Result<T, E>) -> Option<T> {
    let start = Instant::now();
    let r = f();
    let took = start.elapsed();
    assert!(took <= SLACK, "{what} took {took:?}");
    r.ok()
}

/// Calls without a timeout that must not wait either.
pub(crate) fn quick<R: Debug>(what: &str, f: impl FnOnce() -> R) -> Returned<R> {
    timed(what, Duration::ZERO, f)
}

// ----- the damage ------------------------------------------------------------

/// Bytes written at an offset of an object's file.
#[derive(Clone, Debug)]
pub(crate) struct Write {
    pub(crate) at: u64,
    pub(crate) bytes: Vec<u8>,
}

/// A byte range of an object that may be rewritten.
pub(crate) type Region = (u64, u64);

/// A word: values that mean something to a layout (zero, small counts,
/// record-aligned positions, the largest values and their neighbours) as
/// often as arbitrary ones.
pub(crate) fn word() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX - 63),
        Just(u64::MAX - 127),
        Just(u32::MAX as u64),
        Just(u32::MAX as u64 - 1),
        Just(1 << 63),
        0u64..20,
        (0u64..300).prop_map(|k| k * 64),
        (1u64..8).prop_map(|k| k * 4096),
        any::<u64>(),
    ]
}

/// One write into `regions`: a word of 1, 2, 4 or 8 bytes at an offset
/// aligned to its width, or a run of arbitrary bytes; clipped to the region.
pub(crate) fn write_in(regions: Vec<Region>) -> impl Strategy<Value = Write> {
    let n = regions.len();
    (
        0..n,
        any::<prop::sample::Index>(),
        prop_oneof![
            3 => (prop::sample::select(vec![1usize, 2, 4, 8]), word())
                .prop_map(|(w, v)| v.to_le_bytes()[..w].to_vec()),
            1 => prop::collection::vec(any::<u8>(), 1..200),
        ],
    )
        .prop_map(move |(r, index, bytes)| {
            let (start, end) = regions[r];
            let width = (bytes.len() as u64).min(8).next_power_of_two();
            let slots = ((end - start) / width).max(1);
            let at = start + index.index(slots as usize) as u64 * width;
            let mut bytes = bytes;
            bytes.truncate((end - at) as usize);
            Write { at, bytes }
        })
}

/// Whether `writes` touch the lock word of the mutex of the lock cell at
/// `cell` (its first 4 bytes: 0 when free, else the holder's thread id and
/// flags). Rewritten, it may say another process holds the lock: calls
/// that wait as long as it takes then wait, as they should.
pub(crate) fn hits_lock_word(writes: &[Write], cell: u64) -> bool {
    writes
        .iter()
        .any(|w| w.at < cell + 4 && w.at + w.bytes.len() as u64 > cell)
}

/// The header fields (all but the magic, which only ever makes `open`
/// refuse at once).
pub(crate) const HEADER_FIELDS: Region = (8, 64);

/// Writes `writes` to `/dev/shm/NAME`, as any process of the user may. A
/// `ready` word left at 0 is set to 1: 0 is what a creator still
/// initialising leaves, which `open` honours by waiting 2 s (a separate,
/// deliberate wait that would only slow the properties down).
pub(crate) fn scribble(name: &str, writes: &[Write]) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    for w in writes {
        f.write_all_at(&w.bytes, w.at).unwrap();
    }
    let mut ready = [0u8; 4];
    f.read_exact_at(&mut ready, 48).unwrap();
    if ready == [0; 4] {
        f.write_all_at(&[1, 0, 0, 0], 48).unwrap();
    }
}

/// Runs `cases` cases of `strategy` through `test`, with no file of failed
/// cases left behind (a failure prints the case; `found.rs` keeps the
/// ones that were found). `PROPTEST_CASES` overrides the
/// count.
pub(crate) fn run<S: Strategy>(
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: Debug,
{
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}
