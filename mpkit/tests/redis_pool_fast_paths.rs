//! A review, by tests, of the Redis pool's side of the pool's faster
//! paths (`pool/remote.rs`: the worker writes results after room for the
//! reply's lead, then cuts the room off): narrowed u64/i64 columns that
//! widen at the worker's batch edges, and failures whose messages make
//! the lead anything from a few bytes to far past its room. Against a
//! real `redis-server`, with workers that are this program started in
//! worker mode (`harness = false`, as `redis_pool.rs`).
//!
//! Run one test: `cargo test --features redis --test redis_pool_fast_paths -- NAME`.

mod common;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::eventually;
use mpkit::pool::TaskError;
use mpkit::redis_pool::{RedisPool, RemoteFn};
use redis_server::RedisServer;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

fn identity(x: u64) -> u64 {
    x
}

fn negate(x: i64) -> i64 {
    x.wrapping_neg()
}

/// Arguments that panic, with a message of `x - 1_000_000` bytes.
const FAILS: std::ops::Range<u64> = 1_000_000..1_100_000;

fn panics_with_length(x: u64) -> u64 {
    if FAILS.contains(&x) {
        panic!("{}", "m".repeat((x - 1_000_000) as usize));
    }
    x * 7
}

/// Values of [`Tracked`] made by `Deserialize` and dropped, in this (the
/// calling) process.
static MADE: AtomicUsize = AtomicUsize::new(0);
static DROPPED: AtomicUsize = AtomicUsize::new(0);

/// A number with a destructor that counts itself, whose `Deserialize`
/// panics at 600.
#[derive(Debug)]
struct Tracked(u64);

impl Serialize for Tracked {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Tracked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tracked, D::Error> {
        let v = u64::deserialize(d)?;
        assert!(v != 600, "tracked boom");
        MADE.fetch_add(1, Ordering::SeqCst);
        Ok(Tracked(v))
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

fn tracked(x: u64) -> Tracked {
    Tracked(x)
}

const TRACKED: RemoteFn<u64, Tracked> = RemoteFn::new("fast_paths.tracked", tracked);

const IDENTITY: RemoteFn<u64, u64> = RemoteFn::new("fast_paths.identity", identity);
const NEGATE: RemoteFn<i64, i64> = RemoteFn::new("fast_paths.negate", negate);
const PANICS_WITH_LENGTH: RemoteFn<u64, u64> =
    RemoteFn::new("fast_paths.panics_with_length", panics_with_length);

const ALL: &[&dyn mpkit::redis_pool::AnyRemoteFn] =
    &[&IDENTITY, &NEGATE, &PANICS_WITH_LENGTH, &TRACKED];

/// Worker processes of this program (a supervisor and its children),
/// stopped with SIGTERM when dropped, and killed if they do not stop.
struct Workers {
    supervisor: Child,
}

impl Workers {
    fn start(url: &str, pool: &str, processes: usize) -> Workers {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--mpkit-worker", url, "--mpkit-pool", pool])
            .env("MPKIT_WORKER_PROCESSES", processes.to_string());
        // SAFETY: prctl(2) only, async-signal-safe, between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Workers {
            supervisor: cmd.spawn().unwrap(),
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        if !matches!(self.supervisor.try_wait(), Ok(Some(_))) {
            // SAFETY: kill(2) on our unreaped child, with a valid signal.
            unsafe { libc::kill(self.supervisor.id() as i32, libc::SIGTERM) };
        }
        let stopped = eventually(Duration::from_secs(10), || {
            matches!(self.supervisor.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            let _ = self.supervisor.kill();
            let _ = self.supervisor.wait();
        }
    }
}

/// A server, two workers and a pool on it.
fn setup(name: &str) -> Option<(RedisServer, Workers, RedisPool)> {
    if !redis_server::available() {
        return None;
    }
    let s = RedisServer::start();
    let workers = Workers::start(&s.url(), name, 2);
    let pool = RedisPool::connect(&s.url(), name).unwrap();
    assert!(
        eventually(Duration::from_secs(20), || pool.workers().unwrap() >= 2),
        "workers registered"
    );
    Some((s, workers, pool))
}

/// u64 and i64 values at the edges of 32 bits, at the worker's batch
/// edges, one chunk a placement: every value comes back unchanged.
fn narrowed_values_widen_right_in_remote_workers() {
    let Some((_s, _w, pool)) = setup("narrow") else {
        return;
    };
    let len = 1024;
    let at = [0usize, 255, 256, 257, 511, 512, 1023];
    let mut u = Vec::new();
    for v in [u64::from(u32::MAX), u64::from(u32::MAX) + 1, u64::MAX] {
        for &p in &at {
            u.extend((0..len).map(|i| if i == p { v } else { 3 * i as u64 }));
        }
    }
    assert_eq!(pool.map_chunked(&IDENTITY, u.clone(), len).unwrap(), u);
    let mut s = Vec::new();
    for v in [
        -1i64,
        i64::from(i32::MIN),
        i64::from(i32::MIN) - 1,
        i64::MIN,
    ] {
        for &p in &at {
            s.extend((0..len).map(|i| if i == p { v } else { -(i as i64) }));
        }
    }
    let want: Vec<i64> = s.iter().map(|x| x.wrapping_neg()).collect();
    assert_eq!(pool.map_chunked(&NEGATE, s, len).unwrap(), want);
}

/// Failures whose messages make the reply's lead cross its room, one or
/// many, with and without results: every outcome exact and in place.
fn reply_leads_of_any_length_leave_remote_results_in_place() {
    let Some((_s, _w, pool)) = setup("lead") else {
        return;
    };
    let check = |items: &[u64], chunk: usize| {
        let outcomes = pool.map_outcomes_chunked(&PANICS_WITH_LENGTH, items.to_vec(), chunk);
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
    let mut all = Vec::new();
    for msg_len in (0..=60u64).step_by(3) {
        let mut items: Vec<u64> = (0..300u64).map(|i| i << 31).collect();
        items[(msg_len as usize * 7) % 300] = 1_000_000 + msg_len;
        all.extend(items);
        all.extend([1_000_000 + msg_len; 3]);
    }
    check(&all, 303);
    let items: Vec<u64> = (0..3000u64)
        .map(|i| {
            if i % 3 == 1 {
                1_000_000 + 200 + i % 50
            } else {
                i
            }
        })
        .collect();
    check(&items, 1000);
    let items: Vec<u64> = (0..3000).collect();
    check(&items, 3000);
}

/// A map whose result's `Deserialize` panics in the caller in the middle
/// of a chunk: the panic reaches the caller, and every value read before
/// it is dropped (not leaked: a value may hold memory or a descriptor).
fn a_result_deserialize_panicking_mid_chunk_leaks_no_value() {
    let Some((_s, _w, pool)) = setup("leak") else {
        return;
    };
    let r = catch_unwind(AssertUnwindSafe(|| {
        pool.map_chunked(&TRACKED, 0..1000u64, 1000)
    }));
    assert!(r.is_err(), "the panic reaches the caller");
    assert_eq!(
        (MADE.load(Ordering::SeqCst), DROPPED.load(Ordering::SeqCst)),
        (600, 600),
        "values made before the panic, values dropped"
    );
    assert_eq!(
        pool.map(&IDENTITY, 0..10u64).unwrap(),
        (0..10).collect::<Vec<_>>()
    );
}

const TESTS: &[(&str, fn())] = &[
    (
        "a_result_deserialize_panicking_mid_chunk_leaks_no_value",
        a_result_deserialize_panicking_mid_chunk_leaks_no_value,
    ),
    (
        "narrowed_values_widen_right_in_remote_workers",
        narrowed_values_widen_right_in_remote_workers,
    ),
    (
        "reply_leads_of_any_length_leave_remote_results_in_place",
        reply_leads_of_any_length_leave_remote_results_in_place,
    ),
];

fn main() {
    mpkit::redis_pool::worker_main(ALL);
    common::run_tests(TESTS, 90);
}
