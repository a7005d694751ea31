//! The Redis pool across hosts on one machine: three network namespaces
//! joined by veth pairs, Redis in one, two worker processes in each of
//! the two others. One worker host is cut off (its link set down) while
//! one of its workers is mid-task: the task is done by the other host
//! after the visibility timeout, and every result is there exactly once.
//! Needs `ip` (iproute2) and root (CAP_SYS_ADMIN, CAP_NET_ADMIN); without
//! them the test skips, except under CI, where it fails.
//!
//! The workers are this very program in worker mode (`ip netns exec NS
//! prog --mpkit-worker URL`), so it runs without libtest's harness
//! (`harness = false`): `main` calls `worker_main` first.

mod common;
#[path = "common/redis_pool_fleet.rs"]
mod fleet;
#[path = "common/hosts.rs"]
mod hosts;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::eventually;
use fleet::{Fleet, LOG_ENV, Scratch, assert_pool_clean, children_of, executions, shm_of};
use hosts::{Hosts, ip};
use mpkit::redis_pool::{AnyRemoteFn, RedisPool, RemoteFn};
use mpkit_bench::netns;
use redis_server::RedisServer;

/// Every namespace this test makes is named `PREFIX-<pid>-<n>-<role>`.
const PREFIX: &str = "mpkit-phosts";
const LONG: Duration = Duration::from_secs(30);

/// Where the hold files of a log directory are.
fn hold_dir(log: &Path) -> std::path::PathBuf {
    let mut d = log.as_os_str().to_owned();
    d.push("-hold");
    d.into()
}

/// The first item that may be held: host a does some work before.
const HOLD_FROM: u64 = 120;

/// The task: logs its run, and returns `3x` and the host it ran on. The
/// first run on host `a` of an item from [`HOLD_FROM`] on holds: it
/// creates `held` (holding its item) in the hold directory and waits
/// until the test creates `released` there (host a's link is down by
/// then).
fn tripled(x: u64) -> (u64, String) {
    fleet::record(x);
    let host = fleet::host();
    if host == "a" && x >= HOLD_FROM {
        if let Some(log) = std::env::var_os(LOG_ENV) {
            let dir = hold_dir(Path::new(&log));
            let held = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dir.join("held"));
            if let Ok(mut f) = held {
                use std::io::Write;
                f.write_all(x.to_string().as_bytes()).unwrap();
                drop(f);
                let released = eventually(LONG, || dir.join("released").exists());
                assert!(released, "never released");
            }
        }
    }
    std::hint::black_box(fleet::spin(200_000));
    (x * 3, host)
}

const TRIPLED: RemoteFn<u64, (u64, String)> = RemoteFn::new("hosts.tripled", tripled);
const ALL: &[&dyn AnyRemoteFn] = &[&TRIPLED];

fn a_task_held_by_a_host_cut_off_is_done_by_the_other() {
    if !redis_server::available() {
        return;
    }
    let Some(hosts) = Hosts::build(PREFIX) else {
        return;
    };
    let s = RedisServer::start_in_netns(&hosts.server).unwrap();
    // This thread (only it, and the pool's collector it starts) works on
    // the server's host.
    netns::enter(&hosts.server).unwrap();
    let log = Scratch::new("hosts");
    let hold = hold_dir(&log.0);
    std::fs::create_dir_all(&hold).unwrap();
    struct RemoveHold<'a>(&'a Path);
    impl Drop for RemoveHold<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0);
        }
    }
    let _hold = RemoveHold(&hold);

    const N: u64 = 400;
    const CHUNK: usize = 4;
    const RETRIES: u32 = 2;
    let vt = Duration::from_secs(1);
    let pool = RedisPool::builder(&s.url(), "hosts")
        .visibility_timeout(vt)
        .retries(RETRIES)
        .connect()
        .unwrap();
    let port = s.port;
    let url_a = format!("redis://10.91.1.1:{port}");
    let url_b = format!("redis://10.91.2.1:{port}");
    let mut a = Fleet::start_on(&url_a, "hosts", &log.0, 2, Some((&hosts.a, "a")));
    let mut b = Fleet::start_on(&url_b, "hosts", &log.0, 2, Some((&hosts.b, "b")));
    fleet::await_workers(&pool, 4);

    let t0 = Instant::now();
    let (outcomes, held, cut_at) = std::thread::scope(|scope| {
        let map = scope.spawn(|| pool.map_outcomes_chunked(&TRIPLED, 0..N, CHUNK));
        // A worker of host a is mid-task: host a goes off the network.
        assert!(
            eventually(LONG, || hold.join("held").exists()),
            "host a took no task"
        );
        ip(&["-n", &hosts.a, "link", "set", "eth0", "down"]).unwrap();
        let cut_at = Instant::now();
        std::fs::write(hold.join("released"), b"").unwrap();
        let outcomes = map.join().unwrap();
        let held: u64 = std::fs::read_to_string(hold.join("held"))
            .unwrap()
            .parse()
            .unwrap();
        (outcomes, held, cut_at)
    });
    let took = t0.elapsed();
    let done_after_cut = cut_at.elapsed();

    // Every result, once, right; the held task's by host b.
    assert_eq!(outcomes.len() as u64, N);
    let mut by = [0usize; 2];
    for (x, o) in outcomes.iter().enumerate() {
        let (v, host) = o.as_ref().unwrap_or_else(|e| panic!("item {x}: {e:?}"));
        assert_eq!(*v, 3 * x as u64);
        by[usize::from(host == "b")] += 1;
    }
    assert_eq!(outcomes[held as usize].as_ref().unwrap().1, "b");
    assert!(by[0] > 0, "host a did no task before it was cut off");
    // Taken shortly before the cut, it stayed with host a for the
    // visibility timeout (less what passed before the cut).
    assert!(
        done_after_cut >= vt / 2,
        "the held task was done {done_after_cut:?} after the cut, before the visibility timeout"
    );
    // It ran on both hosts; no task ran more than retries + 1 times.
    let runs = executions(&log.0);
    let on = |pids: &[u32], x: u64| {
        let pids: BTreeSet<String> = pids.iter().map(u32::to_string).collect();
        runs.get(&x)
            .map_or(0, |r| r.iter().filter(|p| pids.contains(*p)).count())
    };
    assert!(
        on(&a.pids, held) >= 1 && on(&b.pids, held) >= 1,
        "{:?}",
        runs.get(&held)
    );
    for x in 0..N {
        let n = runs.get(&x).map_or(0, Vec::len);
        assert!(
            (1..=RETRIES as usize + 1).contains(&n),
            "item {x} ran {n} times"
        );
    }
    println!(
        "  {N} tasks in {took:.1?}: {} by host a, {} by host b; the held task {held} done by b {done_after_cut:.1?} after the cut",
        by[0], by[1]
    );

    // Host a comes back: its late results are not delivered again, and
    // the pool goes on.
    ip(&["-n", &hosts.a, "link", "set", "eth0", "up"]).unwrap();
    let again = pool.map(&TRIPLED, 0..40).unwrap();
    assert_eq!(again.len(), 40);
    assert!(again.iter().enumerate().all(|(x, r)| r.0 == 3 * x as u64));
    assert_eq!(pool.malformed_results(), 0);

    assert!(a.stop(LONG), "a worker of host a did not stop");
    assert!(b.stop(LONG), "a worker of host b did not stop");
    drop(pool);
    assert_pool_clean(&s, "hosts");
    let me = std::process::id();
    assert!(
        eventually(Duration::from_secs(10), || children_of(me)
            .iter()
            .all(|&(pid, _)| Some(pid) == s.pid())),
        "children left: {:?}",
        children_of(me)
    );
    let mut pids = a.pids.clone();
    pids.extend(&b.pids);
    pids.push(me);
    assert_eq!(shm_of(&pids), Vec::<String>::new());
    drop(s);
}

const TESTS: &[(&str, fn())] = &[(
    "a_task_held_by_a_host_cut_off_is_done_by_the_other",
    a_task_held_by_a_host_cut_off_is_done_by_the_other,
)];

fn main() {
    mpkit::redis_pool::worker_main(ALL);
    common::run_tests(TESTS, 90);
}
