//! The Redis pool under fire, between real processes and a real
//! `redis-server`: a 10 000-task map while a killer thread SIGKILLs random
//! worker processes every few tens of milliseconds (and starts others in
//! their place), and a map across a Redis restart (AOF, fsync always).
//! Each checks every result is there once and right, that each task ran
//! at least once and at most `retries + 1` times (the documented bound on
//! side effects: every execution is logged by the worker that runs it),
//! and that nothing is left behind: no child, no zombie, nothing in
//! `/dev/shm`, no Redis key beyond the documented ones.
//!
//! The workers are this very program in worker mode, so it runs without
//! libtest's harness (`harness = false`): `main` calls `worker_main` first.
//! Run one test: `cargo test -p mpkit --features redis --test
//! redis_pool_chaos -- NAME`.

mod common;
#[path = "common/redis_pool_fleet.rs"]
mod fleet;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use common::eventually;
use fleet::{Fleet, Rng, Scratch, assert_pool_clean, children_of, executions, logged, shm_of};
use mpkit::pool::TaskError;
use mpkit::redis_pool::{AnyRemoteFn, RedisPool, RemoteFn};
use redis_server::RedisServer;

/// xorshift rounds per task: some tens of microseconds.
const ROUNDS: u64 = 300_000;

/// The task: logs its run, works a little, returns `x² + 1`.
fn square(x: u64) -> u64 {
    fleet::record(x);
    std::hint::black_box(fleet::spin(ROUNDS));
    x * x + 1
}

const SQUARE: RemoteFn<u64, u64> = RemoteFn::new("chaos.square", square);
const ALL: &[&dyn AnyRemoteFn] = &[&SQUARE];

/// What the killer thread did.
struct Havoc {
    kills: usize,
    pids: Vec<u32>,
    graceful: bool,
}

/// Checks the outcomes of a map of `square` over `0..n` and the logged
/// executions: every result once and right, each task run at least once
/// and at most `max_runs` times, and no other task run but `0..n` and
/// `others`. Returns how many tasks ran more than once.
fn check_outcomes(
    outcomes: &[Result<u64, TaskError>],
    n: u64,
    others: &[u64],
    dir: &std::path::Path,
    max_runs: usize,
) -> usize {
    assert_eq!(outcomes.len() as u64, n);
    for (x, o) in outcomes.iter().enumerate() {
        let x = x as u64;
        assert_eq!(o, &Ok(x * x + 1), "item {x}");
    }
    let runs = executions(dir);
    let mut again = 0;
    for x in 0..n {
        let times = runs.get(&x).map_or(0, Vec::len);
        assert!(
            (1..=max_runs).contains(&times),
            "item {x} ran {times} times (by {:?})",
            runs.get(&x)
        );
        if times > 1 {
            again += 1;
        }
    }
    assert_eq!(
        runs.keys()
            .filter(|&&x| x >= n && !others.contains(&x))
            .count(),
        0,
        "items that were never submitted ran"
    );
    again
}

/// Checks nothing this test started is left: no child but the Redis
/// server, no zombie, no `/dev/shm` file of this process or a worker.
fn assert_nothing_left(s: &RedisServer, workers: &[u32]) {
    let me = std::process::id();
    let server = s.pid();
    assert!(
        eventually(Duration::from_secs(10), || children_of(me)
            .iter()
            .all(|&(pid, _)| Some(pid) == server)),
        "children left: {:?} (server {server:?})",
        children_of(me)
    );
    let mut pids = workers.to_vec();
    pids.push(me);
    assert_eq!(shm_of(&pids), Vec::<String>::new(), "left in /dev/shm");
}

fn a_map_survives_workers_killed_at_random() {
    if !redis_server::available() {
        return;
    }
    let s = RedisServer::start();
    let log = Scratch::new("chaos");
    const N: u64 = 10_000;
    const CHUNK: usize = 10;
    const RETRIES: u32 = 10;
    const WORKERS: usize = 4;
    let pool = RedisPool::builder(&s.url(), "chaos")
        .visibility_timeout(Duration::from_millis(400))
        .retries(RETRIES)
        .connect()
        .unwrap();
    let fleet = Fleet::start(&s.url(), "chaos", &log.0, WORKERS);
    fleet::await_workers(&pool, WORKERS);
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let (outcomes, havoc) = std::thread::scope(|scope| {
        // The killer owns the fleet: the workers it starts die with it
        // (their parent-death signal belongs to the thread that started
        // them), so it stops them itself before it returns.
        let killer = scope.spawn(|| {
            let mut fleet = fleet;
            let mut rng = Rng::new();
            let mut kills = 0;
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(20 + rng.below(40)));
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let i = rng.below(WORKERS as u64) as usize;
                fleet.kill_and_replace(i);
                kills += 1;
            }
            let graceful = fleet.stop(Duration::from_secs(15));
            Havoc {
                kills,
                pids: fleet.pids.clone(),
                graceful,
            }
        });
        let outcomes = pool.map_outcomes_chunked(&SQUARE, 0..N, CHUNK);
        stop.store(true, Ordering::Release);
        (outcomes, killer.join().unwrap())
    });
    let took = t0.elapsed();
    let again = check_outcomes(&outcomes, N, &[], &log.0, RETRIES as usize + 1);
    println!(
        "  {N} tasks in {took:.1?}: {} workers killed, {} started in all, {again} tasks ran more than once, {} executions",
        havoc.kills,
        havoc.pids.len(),
        logged(&log.0)
    );
    assert!(havoc.kills >= 10, "only {} kills: no chaos", havoc.kills);
    assert!(again > 0, "no kill hit a running task: no chaos");
    assert!(havoc.graceful, "a worker did not stop on SIGTERM");
    assert_eq!(pool.malformed_results(), 0);
    drop(pool);
    assert_pool_clean(&s, "chaos");
    assert_nothing_left(&s, &havoc.pids);
}

/// The children of the supervisor `sup` now (its worker processes).
fn workers_of(sup: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{sup}/task/{sup}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The same chaos under the worker-mode supervisor (`prog --mpkit-worker
/// URL` with `MPKIT_WORKER_PROCESSES=3`), as a deployment runs: its worker
/// processes are SIGKILLed at random and the supervisor starts others
/// (pausing longer while they keep dying); the map completes, every
/// result once and right, and SIGTERM to the supervisor stops it all.
fn a_map_survives_the_supervisors_workers_killed_at_random() {
    if !redis_server::available() {
        return;
    }
    let s = RedisServer::start();
    let log = Scratch::new("supervised");
    const N: u64 = 4_000;
    // The supervisor pauses longer each time a worker dies young (up to
    // 5 s): a bounded number of kills keeps its pauses, and the test,
    // short.
    const KILLS: usize = 12;
    const CHUNK: usize = 5;
    const RETRIES: u32 = 10;
    const WORKERS: usize = 3;
    let pool = RedisPool::builder(&s.url(), "supervised")
        .visibility_timeout(Duration::from_millis(400))
        .retries(RETRIES)
        .connect()
        .unwrap();
    // Killed (its workers then get SIGTERM) if the test fails.
    struct Supervisor(std::process::Child);
    impl Drop for Supervisor {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut supervisor = Supervisor(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--mpkit-worker", &s.url(), "--mpkit-pool", "supervised"])
            .env("MPKIT_WORKER_PROCESSES", WORKERS.to_string())
            .env(fleet::LOG_ENV, &log.0)
            .spawn()
            .unwrap(),
    );
    let sup = supervisor.0.id();
    fleet::await_workers(&pool, WORKERS);
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let (outcomes, (kills, seen)) = std::thread::scope(|scope| {
        let killer = scope.spawn(|| {
            let mut rng = Rng::new();
            let (mut kills, mut seen) = (0, std::collections::BTreeSet::new());
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(100 + rng.below(200)));
                let running = workers_of(sup);
                seen.extend(running.iter().copied());
                if stop.load(Ordering::Acquire) || running.is_empty() || kills == KILLS {
                    continue;
                }
                let victim = running[rng.below(running.len() as u64) as usize];
                // SAFETY: kill(2) with a valid signal on a child of our
                // supervisor, read just now from its list of children: it
                // cannot have been reaped (and its pid reused) unless it
                // died since, which only our kills do.
                unsafe { libc::kill(victim as i32, libc::SIGKILL) };
                kills += 1;
            }
            (kills, seen)
        });
        let outcomes = pool.map_outcomes_chunked(&SQUARE, 0..N, CHUNK);
        stop.store(true, Ordering::Release);
        (outcomes, killer.join().unwrap())
    });
    let took = t0.elapsed();
    let again = check_outcomes(&outcomes, N, &[], &log.0, RETRIES as usize + 1);
    println!(
        "  {N} tasks in {took:.1?}: {kills} workers killed, {} seen, {again} tasks ran more than once",
        seen.len()
    );
    assert!(kills >= 3, "only {kills} kills: no chaos");
    assert!(
        seen.len() > WORKERS,
        "the supervisor started no worker again"
    );
    // SIGTERM: each worker finishes its task, then the supervisor exits.
    // SAFETY: kill(2) on our unreaped child, with a valid signal.
    unsafe { libc::kill(sup as i32, libc::SIGTERM) };
    assert!(
        eventually(Duration::from_secs(15), || matches!(
            supervisor.0.try_wait(),
            Ok(Some(_))
        )),
        "the supervisor did not stop on SIGTERM"
    );
    drop(supervisor);
    let mut pids: Vec<u32> = seen.into_iter().collect();
    pids.push(sup);
    drop(pool);
    assert_pool_clean(&s, "supervised");
    assert_nothing_left(&s, &pids);
}

/// A map runs while the server is killed and started again (AOF with
/// fsync always): it completes, every result once and right, nothing
/// acknowledged lost; a wait with a timeout honours it while the server
/// is down, and a submission made while it is down goes through once it
/// is back.
fn a_map_survives_a_redis_restart() {
    if !redis_server::available() {
        return;
    }
    let mut s = RedisServer::start_with_aof();
    let log = Scratch::new("restart");
    const N: u64 = 3_000;
    const CHUNK: usize = 5;
    const RETRIES: u32 = 3;
    const WORKERS: usize = 3;
    let pool = RedisPool::builder(&s.url(), "restart")
        .visibility_timeout(Duration::from_secs(1))
        .retries(RETRIES)
        .io_timeout(Duration::from_millis(500))
        .retry_for(Duration::from_secs(20))
        .connect()
        .unwrap();
    let mut fleet = Fleet::start(&s.url(), "restart", &log.0, WORKERS);
    fleet::await_workers(&pool, WORKERS);
    let t0 = Instant::now();
    let tid = AtomicI32::new(0);
    let (outcomes, _) = std::thread::scope(|scope| {
        let map = scope.spawn(|| pool.map_outcomes_chunked(&SQUARE, 0..N, CHUNK));
        // A third of the tasks ran: the server goes away.
        assert!(
            eventually(Duration::from_secs(30), || logged(&log.0) >= N as usize / 3),
            "the map made no progress: {} runs",
            logged(&log.0)
        );
        let before = pool.apply_async(&SQUARE, N + 1);
        s.kill();
        let down = Instant::now();
        // A wait with a timeout honours it while the server is down.
        let waited = Instant::now();
        let before = match before.get_timeout(Duration::from_millis(300)) {
            Ok(r) => {
                assert_eq!(r, Ok((N + 1) * (N + 1) + 1));
                None
            }
            Err(r) => Some(r),
        };
        assert!(
            waited.elapsed() < Duration::from_secs(2),
            "get_timeout(300 ms) took {:?} with the server down",
            waited.elapsed()
        );
        // A submission while the server is down waits for it (retry_for).
        let tid = &tid;
        let during = scope.spawn(|| {
            // SAFETY: gettid(2) has no preconditions.
            tid.store(unsafe { libc::gettid() }, Ordering::Release);
            let t = Instant::now();
            let r = pool.apply(&SQUARE, N + 2);
            (r, t.elapsed())
        });
        // It is waiting (asleep: retrying, or behind the map's own
        // submission, which retries too): the server comes back with its
        // data. (A failed check is reported after the restart, so that
        // the map ends.)
        let me = std::process::id() as i32;
        let waiting = eventually(Duration::from_secs(10), || {
            let t = tid.load(Ordering::Acquire);
            t != 0 && matches!(common::thread_state(me, t), Some(('S', _)))
        });
        s.restart();
        let downtime = down.elapsed();
        assert!(waiting, "the submission did not wait for the server");
        let outcomes = map.join().unwrap();
        let (r, blocked) = during.join().unwrap();
        assert_eq!(r, Ok((N + 2) * (N + 2) + 1));
        if let Some(before) = before {
            assert_eq!(
                before.get_timeout(Duration::from_secs(20)).ok(),
                Some(Ok((N + 1) * (N + 1) + 1))
            );
        }
        println!("  server down {downtime:.1?}; a submission made then took {blocked:.1?}");
        (outcomes, blocked)
    });
    let took = t0.elapsed();
    // A submission whose reply the restart lost is sent again, and both
    // entries run: up to twice `retries + 1` (the docs).
    let again = check_outcomes(
        &outcomes,
        N,
        &[N + 1, N + 2],
        &log.0,
        2 * (RETRIES as usize + 1),
    );
    println!("  {N} tasks in {took:.1?} across the restart; {again} tasks ran more than once");
    assert_eq!(pool.malformed_results(), 0);
    assert!(fleet.stop(Duration::from_secs(15)), "a worker did not stop");
    drop(pool);
    assert_pool_clean(&s, "restart");
    assert_nothing_left(&s, &fleet.pids);
}

const TESTS: &[(&str, fn())] = &[
    (
        "a_map_survives_workers_killed_at_random",
        a_map_survives_workers_killed_at_random,
    ),
    (
        "a_map_survives_the_supervisors_workers_killed_at_random",
        a_map_survives_the_supervisors_workers_killed_at_random,
    ),
    (
        "a_map_survives_a_redis_restart",
        a_map_survives_a_redis_restart,
    ),
];

fn main() {
    mpkit::redis_pool::worker_main(ALL);
    common::run_tests(TESTS, 90);
}
