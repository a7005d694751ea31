//! The Redis pool between real processes against a real `redis-server`
//! (one per test, on a free loopback port). The workers are this very
//! program started in worker mode (`--mpkit-worker URL`), as a user's
//! program would be: `main` calls `worker_main` first, so this test runs
//! without libtest's harness (`harness = false`) and lists its tests
//! itself. Each test has a watchdog: a hang fails in seconds.
//!
//! Run one test: `cargo test --features redis --test redis_pool -- NAME`.

mod common;
#[path = "redis_pool/leftovers.rs"]
mod leftovers;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::eventually;
use mpkit::pool::{ReturnWhen, TaskError, as_completed, wait};
use mpkit::redis_pool::{RedisPool, RemoteFn, Worker};
use redis_server::RedisServer;

const LONG: Duration = Duration::from_secs(20);

fn double(x: u64) -> u64 {
    x * 2
}

fn panics_on_odd(x: u64) -> u64 {
    assert!(x % 2 == 0, "odd {x}");
    x
}

/// Creates the file `path` on its first run (and dies there: SIGKILL by
/// its own hand); later runs find it and return its length.
fn dies_once(path: String) -> u64 {
    if Path::new(&path).exists() {
        return 7;
    }
    std::fs::write(&path, b"ran").unwrap();
    // SAFETY: kill(2) on this very process with a valid signal.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!()
}

/// Dies every time it runs.
fn always_dies(_: ()) -> u64 {
    // SAFETY: as above.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!()
}

/// Appends a line to the file `path` (a side effect the test can see).
fn touch(path: String) -> u32 {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"ran\n").unwrap();
    1
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn takes_connection(_: mpkit::Connection) -> u8 {
    0
}

fn makes_connection(_: ()) -> mpkit::Connection {
    mpkit::pipe(true).unwrap().0
}

const DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("test.double", double);
const PANICS_ON_ODD: RemoteFn<u64, u64> = RemoteFn::new("test.panics_on_odd", panics_on_odd);
const DIES_ONCE: RemoteFn<String, u64> = RemoteFn::new("test.dies_once", dies_once);
const ALWAYS_DIES: RemoteFn<(), u64> = RemoteFn::new("test.always_dies", always_dies);
const TOUCH: RemoteFn<String, u32> = RemoteFn::new("test.touch", touch);
const SLEEP: RemoteFn<u64, u64> = RemoteFn::new("test.sleep", sleep_ms);
const TAKES_CONNECTION: RemoteFn<mpkit::Connection, u8> =
    RemoteFn::new("test.takes_connection", takes_connection);
const MAKES_CONNECTION: RemoteFn<(), mpkit::Connection> =
    RemoteFn::new("test.makes_connection", makes_connection);

/// What the workers of this program run.
const ALL: &[&dyn mpkit::redis_pool::AnyRemoteFn] = &[
    &DOUBLE,
    &PANICS_ON_ODD,
    &DIES_ONCE,
    &ALWAYS_DIES,
    &TOUCH,
    &SLEEP,
    &TAKES_CONNECTION,
];

/// Worker processes of this program (a supervisor and its children),
/// stopped with SIGTERM when dropped, and killed if they do not stop.
struct Workers {
    supervisor: Child,
}

impl Workers {
    /// `processes` workers of pool `pool`, started as a user would:
    /// `prog --mpkit-worker URL --mpkit-pool POOL`.
    fn start(url: &str, pool: &str, processes: usize) -> Workers {
        Self::start_with(url, pool, processes, Stdio::inherit())
    }

    /// [`start`](Self::start), their standard error piped here.
    fn start_logged(url: &str, pool: &str, processes: usize) -> (ChildStderr, Workers) {
        let mut w = Self::start_with(url, pool, processes, Stdio::piped());
        (w.supervisor.stderr.take().unwrap(), w)
    }

    fn start_with(url: &str, pool: &str, processes: usize, stderr: Stdio) -> Workers {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--mpkit-worker", url, "--mpkit-pool", pool])
            .env("MPKIT_WORKER_PROCESSES", processes.to_string())
            .stderr(stderr);
        // Killed with this test's thread, even by a watchdog's abort (its
        // workers then die with it, by their own PR_SET_PDEATHSIG).
        // SAFETY: prctl(2) only, async-signal-safe, between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let supervisor = cmd.spawn().unwrap();
        Workers { supervisor }
    }

    /// Sends SIGTERM; true if the supervisor (after its workers) exited
    /// within `timeout`.
    fn stop(&mut self, timeout: Duration) -> bool {
        if matches!(self.supervisor.try_wait(), Ok(Some(_))) {
            // Reaped: its pid may be another process's now.
            return true;
        }
        // SAFETY: kill(2) on our unreaped child, with a valid signal.
        unsafe { libc::kill(self.supervisor.id() as i32, libc::SIGTERM) };
        eventually(timeout, || {
            matches!(self.supervisor.try_wait(), Ok(Some(_)))
        })
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        if !self.stop(Duration::from_secs(10)) {
            let _ = self.supervisor.kill();
            let _ = self.supervisor.wait();
        }
    }
}

fn server() -> Option<RedisServer> {
    redis_server::available().then(RedisServer::start)
}

/// Waits until `n` workers are registered.
fn await_workers(pool: &RedisPool, n: usize) {
    assert!(
        eventually(LONG, || pool.workers().unwrap() >= n),
        "{} of {n} workers registered",
        pool.workers().unwrap()
    );
}

/// The keys on the server, sorted.
fn keys(s: &RedisServer) -> Vec<String> {
    let reply = s.cmd(&[b"KEYS", b"*"]);
    let mut keys: Vec<String> = reply
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with('*') && !l.starts_with('$'))
        .map(str::to_string)
        .collect();
    keys.sort();
    keys
}

/// A fresh directory for files tasks write.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mpkit-redis-pool-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn map_over_two_worker_processes() {
    let Some(s) = server() else { return };
    let _workers = Workers::start(&s.url(), "default", 2);
    let pool = RedisPool::connect(&s.url(), "default").unwrap();
    await_workers(&pool, 2);
    assert_eq!(
        pool.map(&DOUBLE, 0..1000).unwrap(),
        (0..1000).map(|x| x * 2).collect::<Vec<_>>()
    );
    assert_eq!(
        pool.map_chunked(&DOUBLE, 0..10, 1).unwrap(),
        (0..10).map(|x| x * 2).collect::<Vec<_>>()
    );
    assert_eq!(pool.apply(&DOUBLE, 21).unwrap(), 42);
    assert_eq!(
        pool.map(&DOUBLE, Vec::<u64>::new()).unwrap(),
        Vec::<u64>::new()
    );
}

fn imap_reads_its_input_lazily_and_unordered_gets_all() {
    let Some(s) = server() else { return };
    let _workers = Workers::start(&s.url(), "default", 2);
    let pool = RedisPool::builder(&s.url(), "default")
        .max_in_flight(4)
        .connect()
        .unwrap();
    await_workers(&pool, 2);
    // An endless input: only a window is ever in Redis.
    let firsts: Vec<u64> = pool
        .imap(&DOUBLE, 0..)
        .take(50)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(firsts, (0..50).map(|x| x * 2).collect::<Vec<_>>());
    let mut all: Vec<u64> = pool
        .imap_unordered_chunked(&DOUBLE, 0..100, 7)
        .collect::<Result<_, _>>()
        .unwrap();
    all.sort();
    assert_eq!(all, (0..100).map(|x| x * 2).collect::<Vec<_>>());
    // The dropped imap's tasks are gone from the stream.
    drop(pool);
    let tasks = s.cmd(&[b"XLEN", b"mpkit:pool:{default}:tasks"]);
    assert!(
        eventually(LONG, || s.cmd(&[b"XLEN", b"mpkit:pool:{default}:tasks"])
            == ":0\r\n"),
        "tasks left: {tasks}"
    );
}

/// How many entries were ever added to pool `pool`'s task stream.
fn tasks_added(s: &RedisServer, pool: &str) -> u64 {
    let key = format!("mpkit:pool:{{{pool}}}:tasks");
    let reply = s.cmd(&[b"XINFO", b"STREAM", key.as_bytes()]);
    let mut lines = reply.split("\r\n");
    lines
        .by_ref()
        .find(|l| *l == "entries-added")
        .unwrap_or_else(|| panic!("{reply}"));
    lines
        .next()
        .and_then(|l| l.strip_prefix(':'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{reply}"))
}

fn imap_keeps_at_most_max_in_flight_chunks_in_redis() {
    let Some(s) = server() else { return };
    let pool = RedisPool::builder(&s.url(), "window")
        .max_in_flight(4)
        .connect()
        .unwrap();
    // No worker yet: an imap over an endless input adds its window of
    // chunks, then waits for a result before it reads any further.
    let taker = std::thread::spawn(move || {
        let mut it = pool.imap(&DOUBLE, 0..);
        let first = it.next();
        (first, it.take(99).filter(|r| r.is_ok()).count())
    });
    assert!(eventually(LONG, || tasks_added(&s, "window") == 4));
    let _workers = Workers::start(&s.url(), "window", 2);
    let (first, rest) = taker.join().unwrap();
    assert_eq!(first, Some(Ok(0)));
    assert_eq!(rest, 99);
    // 100 taken: at most the window more were ever added.
    let added = tasks_added(&s, "window");
    assert!((100..=104).contains(&added), "{added}");
}

fn apply_async_and_the_executor_calls() {
    let Some(s) = server() else { return };
    let _workers = Workers::start(&s.url(), "default", 2);
    let pool = RedisPool::connect(&s.url(), "default").unwrap();
    await_workers(&pool, 2);
    let r = pool.apply_async(&DOUBLE, 5);
    assert_eq!(r.get_timeout(LONG).ok().unwrap(), Ok(10));
    let tasks: Vec<_> = (1..=5).map(|i| pool.submit(&DOUBLE, i)).collect();
    let mut got: Vec<u64> = as_completed(tasks, Some(LONG))
        .map(|t| t.unwrap().result().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, [2, 4, 6, 8, 10]);
    let slow = pool.submit(&SLEEP, 2_000);
    let quick = pool.submit(&DOUBLE, 1);
    assert!(!slow.cancel(), "a task handed to Redis cannot be cancelled");
    let (done, not_done) = wait([quick, slow], Some(LONG), ReturnWhen::FirstCompleted);
    assert_eq!((done.len(), not_done.len()), (1, 1));
    // A timeout is honoured while the task runs.
    let t0 = Instant::now();
    let slow = pool.apply_async(&SLEEP, 2_000);
    assert!(slow.get_timeout(Duration::from_millis(200)).is_err());
    assert!(t0.elapsed() < Duration::from_secs(5));
}

fn a_panicking_task_fails_alone() {
    let Some(s) = server() else { return };
    let _workers = Workers::start(&s.url(), "default", 2);
    let pool = RedisPool::connect(&s.url(), "default").unwrap();
    await_workers(&pool, 2);
    let out = pool.map_outcomes_chunked(&PANICS_ON_ODD, 0..6, 2);
    for (i, o) in out.iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(o, &Ok(i as u64));
        } else {
            assert_eq!(
                o,
                &Err(TaskError::Panicked {
                    message: format!("odd {i}")
                })
            );
        }
    }
    // The workers go on.
    assert_eq!(pool.apply(&DOUBLE, 4).unwrap(), 8);
}

fn unknown_and_incompatible_tasks_fail_naming_both_sides() {
    let Some(s) = server() else { return };
    // A worker in this process that has `test.double` at version 2 only.
    const DOUBLE_V2: RemoteFn<u64, u64> = RemoteFn::new("test.double", double).version(2);
    let stop = Arc::new(AtomicBool::new(false));
    let worker = Worker::builder(&s.url(), "compat")
        .task(&DOUBLE_V2)
        .task(&MAKES_CONNECTION)
        .connect()
        .unwrap();
    let stop_w = Arc::clone(&stop);
    let thread = std::thread::spawn(move || worker.run_until(&stop_w));
    let pool = RedisPool::connect(&s.url(), "compat").unwrap();
    match pool.apply(&DOUBLE, 1) {
        Err(TaskError::Incompatible {
            task,
            caller,
            worker,
        }) => {
            assert_eq!(task, "test.double");
            assert_eq!(caller, "v1 u64 -> u64");
            assert_eq!(worker.as_deref(), Some("v2 u64 -> u64"));
        }
        other => panic!("{other:?}"),
    }
    match pool.apply(&TOUCH, "x".into()) {
        Err(TaskError::Incompatible { worker: None, .. }) => {}
        other => panic!("{other:?}"),
    }
    let (tx, _rx) = mpkit::pipe(true).unwrap();
    assert_eq!(
        pool.apply(&TAKES_CONNECTION, tx),
        Err(TaskError::HandleAcrossHosts)
    );
    match pool.apply(&MAKES_CONNECTION, ()) {
        Err(TaskError::ResultEncode { message, .. }) => {
            assert!(message.contains("cannot go to another host"), "{message}")
        }
        other => panic!("{:?}", other.map(|_| "a connection")),
    }
    stop.store(true, Ordering::Release);
    thread.join().unwrap().unwrap();
}

fn a_killed_worker_costs_its_task_one_delivery() {
    let Some(s) = server() else { return };
    let dir = scratch("killed");
    let _workers = Workers::start(&s.url(), "default", 2);
    let pool = RedisPool::builder(&s.url(), "default")
        .visibility_timeout(Duration::from_millis(500))
        .retries(2)
        .connect()
        .unwrap();
    await_workers(&pool, 2);
    let marker = dir.join("m").to_string_lossy().into_owned();
    // Its first worker dies; the supervisor starts another; the task is
    // delivered again after the visibility timeout and returns.
    assert_eq!(pool.apply(&DIES_ONCE, marker).unwrap(), 7);
    // Every delivery dies: it fails, never hangs.
    assert_eq!(
        pool.apply(&ALWAYS_DIES, ()),
        Err(TaskError::WorkerLost { attempts: 3 })
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn a_caller_that_goes_away_leaves_nothing() {
    let Some(s) = server() else { return };
    let dir = scratch("gone");
    // A caller process submits tasks while no worker runs, then dies
    // (SIGKILL: no destructor runs).
    let status = Command::new(std::env::current_exe().unwrap())
        .env("REDIS_POOL_TEST_CALLER", s.url())
        .env("REDIS_POOL_TEST_DIR", &dir)
        .status()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    assert!(
        keys(&s).iter().any(|k| k.contains(":caller:")),
        "{:?}",
        keys(&s)
    );
    // Its lease expires; workers then skip its tasks.
    assert!(eventually(LONG, || !keys(&s)
        .iter()
        .any(|k| k.contains(":caller:"))));
    let _workers = Workers::start(&s.url(), "gone", 2);
    assert!(
        eventually(LONG, || s.cmd(&[b"XLEN", b"mpkit:pool:{gone}:tasks"])
            == ":0\r\n"),
        "tasks left"
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "a task of the gone caller ran"
    );
    assert!(
        eventually(LONG, || keys(&s)
            == [
                "mpkit:pool:{gone}:meta",
                "mpkit:pool:{gone}:tasks",
                "mpkit:pool:{gone}:workers"
            ]),
        "{:?}",
        keys(&s)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The caller of `a_caller_that_goes_away_leaves_nothing`, in its own
/// process.
fn caller_that_dies(url: &str, dir: &str) -> ! {
    let pool = RedisPool::builder(url, "gone")
        .lease(Duration::from_millis(300))
        .connect()
        .unwrap();
    let results: Vec<_> = (0..5)
        .map(|i| pool.apply_async(&TOUCH, format!("{dir}/{i}")))
        .collect();
    std::mem::forget(results);
    std::mem::forget(pool);
    // SAFETY: kill(2) on this very process with a valid signal.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!()
}

fn a_caller_stopped_past_its_lease_gets_an_error_not_a_hang() {
    use std::io::{BufRead, BufReader};
    let Some(s) = server() else { return };
    let mut caller = Command::new(std::env::current_exe().unwrap())
        .env("REDIS_POOL_TEST_STOPPED_CALLER", s.url())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(caller.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "submitted\n");
    // Added in the background: stopped once its task is in the stream.
    assert!(eventually(LONG, || s
        .cmd(&[b"XLEN", b"mpkit:pool:{stopped-caller}:tasks"])
        == ":1\r\n"));
    // SAFETY: kill(2) on our unreaped child, with a valid signal.
    unsafe { libc::kill(caller.id() as i32, libc::SIGSTOP) };
    assert!(eventually(LONG, || !keys(&s)
        .iter()
        .any(|k| k.contains(":caller:"))));
    // Its lease is gone: a worker skips its task.
    let _workers = Workers::start(&s.url(), "stopped-caller", 1);
    assert!(eventually(LONG, || s
        .cmd(&[b"XLEN", b"mpkit:pool:{stopped-caller}:tasks"])
        == ":0\r\n"));
    // SAFETY: as above.
    unsafe { libc::kill(caller.id() as i32, libc::SIGCONT) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(caller.wait().unwrap().success());
    assert!(rest.starts_with("Ok(Err(Unavailable {"), "{rest}");
    assert!(rest.contains("lease"), "{rest}");
}

/// The caller of `a_caller_stopped_past_its_lease_gets_an_error_not_a_hang`.
fn caller_to_be_stopped(url: &str) -> ! {
    let pool = RedisPool::builder(url, "stopped-caller")
        .lease(Duration::from_millis(500))
        .connect()
        .unwrap();
    let r = pool.apply_async(&DOUBLE, 1);
    println!("submitted");
    let outcome = r.get_timeout(LONG).map_err(|_| "still waiting");
    println!("{outcome:?}");
    std::process::exit(0)
}

fn a_stopped_server_is_a_timeout_honoured_then_an_error() {
    let Some(mut s) = server() else { return };
    let pool = RedisPool::builder(&s.url(), "stopped")
        .retry_for(Duration::from_secs(1))
        .io_timeout(Duration::from_millis(500))
        .connect()
        .unwrap();
    // No worker: the task waits in the stream.
    let r = pool.apply_async(&DOUBLE, 1);
    s.kill();
    let t0 = Instant::now();
    let r = r.get_timeout(Duration::from_millis(300)).unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    // The collector gives up after retry_for: the task fails, not hangs.
    match r.get_timeout(Duration::from_secs(10)) {
        Ok(Err(TaskError::Unavailable { .. })) => {}
        other => panic!("{:?}", other.map_err(|_| "still waiting")),
    }
    // A submission retries for retry_for, then fails its task.
    let t0 = Instant::now();
    match pool.apply(&DOUBLE, 2) {
        Err(TaskError::Unavailable { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    // A map of many chunks fails within about one retry period, not one
    // per chunk.
    let t0 = Instant::now();
    let out = pool.map_outcomes_chunked(&DOUBLE, 0..20, 1);
    assert!(
        out.iter()
            .all(|o| matches!(o, Err(TaskError::Unavailable { .. }))),
        "{out:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    // Dropping it is bounded too.
    let t0 = Instant::now();
    drop(pool);
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
}

/// `apply_async` and `submit` return at once while the server is down
/// (their chunks are added by the pool's submitter thread, which retries
/// for `retry_for`), so a wait with a timeout is honoured; the tasks then
/// fail with `Unavailable`, not hang.
fn apply_async_returns_at_once_while_the_server_is_down() {
    let Some(mut s) = server() else { return };
    let pool = RedisPool::builder(&s.url(), "down")
        .io_timeout(Duration::from_millis(500))
        .retry_for(Duration::from_secs(3))
        .connect()
        .unwrap();
    s.kill();
    let t0 = Instant::now();
    let r = pool.apply_async(&DOUBLE, 3);
    let task = pool.submit(&DOUBLE, 4);
    let returned = t0.elapsed();
    assert!(
        returned < Duration::from_millis(200),
        "apply_async and submit returned after {returned:?} with the server down"
    );
    let r = r.get_timeout(Duration::from_millis(300)).unwrap_err();
    let waited = t0.elapsed();
    assert!(
        waited < Duration::from_secs(1),
        "get_timeout(300 ms) returned after {waited:?}"
    );
    match r.get_timeout(Duration::from_secs(10)) {
        Ok(Err(TaskError::Unavailable { .. })) => {}
        other => panic!("{:?}", other.map_err(|_| "still waiting")),
    }
    match task.result_timeout(Duration::from_secs(10)) {
        Ok(Err(TaskError::Unavailable { .. })) => {}
        other => panic!("{:?}", other.map_err(|_| "still waiting")),
    }
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    // Dropping the pool while a submission retries is bounded too.
    let _r = pool.apply_async(&DOUBLE, 5);
    let t0 = Instant::now();
    drop(pool);
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
}

/// How many tasks of `pool` workers hold (delivered, not finished).
fn pending(s: &RedisServer, pool: &str) -> u64 {
    let key = format!("mpkit:pool:{{{pool}}}:tasks");
    let reply = s.cmd(&[b"XPENDING", key.as_bytes(), b"mpkit"]);
    // `*4\r\n:N\r\n...`: the count first.
    reply
        .split("\r\n")
        .nth(1)
        .and_then(|l| l.strip_prefix(':'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{reply:?}"))
}

fn sigterm_lets_workers_finish_their_task_and_a_second_stops_at_once() {
    let Some(s) = server() else { return };
    let mut workers = Workers::start(&s.url(), "default", 1);
    let pool = RedisPool::connect(&s.url(), "default").unwrap();
    await_workers(&pool, 1);
    let r = pool.apply_async(&SLEEP, 1500);
    assert!(eventually(LONG, || pending(&s, "default") == 1));
    // SIGTERM while the task runs: it finishes, its result comes, then
    // the worker and the supervisor exit.
    // SAFETY: kill(2) on our unreaped child, with a valid signal.
    unsafe { libc::kill(workers.supervisor.id() as i32, libc::SIGTERM) };
    assert_eq!(r.get_timeout(LONG).ok().unwrap(), Ok(1500));
    let mut status = None;
    assert!(eventually(LONG, || {
        status = workers.supervisor.try_wait().unwrap();
        status.is_some()
    }));
    assert_eq!(status.unwrap().code(), Some(0));
    assert!(eventually(LONG, || pool.workers().unwrap() == 0));
    // A second signal does not wait for a long task.
    let mut workers = Workers::start(&s.url(), "default", 1);
    await_workers(&pool, 1);
    let _r = pool.apply_async(&SLEEP, 600_000);
    assert!(eventually(LONG, || pending(&s, "default") == 1));
    let t0 = Instant::now();
    // Two signals of different numbers: the kernel does not merge them
    // into one as it may two pending SIGTERMs.
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: as above.
        unsafe { libc::kill(workers.supervisor.id() as i32, sig) };
    }
    assert!(eventually(LONG, || matches!(
        workers.supervisor.try_wait(),
        Ok(Some(_))
    )));
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

/// A service manager (systemd's default `KillMode=control-group`) sends
/// SIGTERM to the supervisor and its workers at once, and the supervisor
/// passes one on: the running task still finishes and its result comes.
fn sigterm_to_the_supervisor_and_its_workers_together_lets_the_task_finish() {
    let Some(s) = server() else { return };
    let mut workers = Workers::start(&s.url(), "default", 1);
    let pool = RedisPool::connect(&s.url(), "default").unwrap();
    await_workers(&pool, 1);
    let r = pool.apply_async(&SLEEP, 1500);
    assert!(eventually(LONG, || pending(&s, "default") == 1));
    let sup = workers.supervisor.id();
    let children = std::fs::read_to_string(format!("/proc/{sup}/task/{sup}/children")).unwrap();
    let mut group: Vec<i32> = children
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(group.len(), 1, "one worker process: {children:?}");
    group.push(sup as i32);
    for pid in group {
        // SAFETY: kill(2) with a valid signal, on the supervisor (our
        // unreaped child) and its worker (its unreaped child: the
        // supervisor reaps it only after it exits).
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    assert_eq!(r.get_timeout(LONG).ok().unwrap(), Ok(1500));
    assert!(eventually(LONG, || matches!(
        workers.supervisor.try_wait(),
        Ok(Some(_))
    )));
}

/// Python's `apply_async(...)` without keeping its result, then `join()`:
/// the task still runs, and `join` waits for it.
fn a_dropped_apply_async_still_runs_before_join_returns() {
    let Some(s) = server() else { return };
    let _workers = Workers::start(&s.url(), "default", 1);
    let pool = RedisPool::connect(&s.url(), "default").unwrap();
    await_workers(&pool, 1);
    let dir = scratch("dropped");
    let file = dir.join("ran");
    // The worker is busy first, so the dropped task waits in the stream
    // (added there by the submitter) while the collector looks for calls
    // nobody can read any more.
    // Busy with another caller's task: this caller has no result to wait
    // for but the dropped one's.
    let other = RedisPool::connect(&s.url(), "default").unwrap();
    let busy = other.apply_async(&SLEEP, 3000);
    assert!(eventually(LONG, || pending(&s, "default") == 1));
    drop(pool.apply_async(&TOUCH, file.to_string_lossy().into_owned()));
    let key = "mpkit:pool:{default}:tasks";
    assert!(eventually(LONG, || s.cmd(&[b"XLEN", key.as_bytes()]) == ":2\r\n"));
    pool.join();
    assert!(file.exists(), "join returned before the dropped task ran");
    assert_eq!(busy.get_timeout(LONG).ok().unwrap(), Ok(3000));
    let _ = std::fs::remove_dir_all(&dir);
}

const TESTS: &[(&str, fn())] = &[
    (
        "sigterm_to_the_supervisor_and_its_workers_together_lets_the_task_finish",
        sigterm_to_the_supervisor_and_its_workers_together_lets_the_task_finish,
    ),
    (
        "a_dropped_apply_async_still_runs_before_join_returns",
        a_dropped_apply_async_still_runs_before_join_returns,
    ),
    (
        "sigterm_lets_workers_finish_their_task_and_a_second_stops_at_once",
        sigterm_lets_workers_finish_their_task_and_a_second_stops_at_once,
    ),
    (
        "imap_keeps_at_most_max_in_flight_chunks_in_redis",
        imap_keeps_at_most_max_in_flight_chunks_in_redis,
    ),
    (
        "map_over_two_worker_processes",
        map_over_two_worker_processes,
    ),
    (
        "imap_reads_its_input_lazily_and_unordered_gets_all",
        imap_reads_its_input_lazily_and_unordered_gets_all,
    ),
    (
        "apply_async_and_the_executor_calls",
        apply_async_and_the_executor_calls,
    ),
    ("a_panicking_task_fails_alone", a_panicking_task_fails_alone),
    (
        "unknown_and_incompatible_tasks_fail_naming_both_sides",
        unknown_and_incompatible_tasks_fail_naming_both_sides,
    ),
    (
        "a_killed_worker_costs_its_task_one_delivery",
        a_killed_worker_costs_its_task_one_delivery,
    ),
    (
        "a_caller_that_goes_away_leaves_nothing",
        a_caller_that_goes_away_leaves_nothing,
    ),
    (
        "a_caller_stopped_past_its_lease_gets_an_error_not_a_hang",
        a_caller_stopped_past_its_lease_gets_an_error_not_a_hang,
    ),
    (
        "a_stopped_server_is_a_timeout_honoured_then_an_error",
        a_stopped_server_is_a_timeout_honoured_then_an_error,
    ),
    (
        "apply_async_returns_at_once_while_the_server_is_down",
        apply_async_returns_at_once_while_the_server_is_down,
    ),
    (
        "terminate_with_tasks_in_flight_and_no_worker_leaves_none",
        leftovers::terminate_with_tasks_in_flight_and_no_worker_leaves_none,
    ),
    (
        "a_stopping_collector_hands_its_deletions_to_terminate",
        leftovers::a_stopping_collector_hands_its_deletions_to_terminate,
    ),
    (
        "a_visibility_overwritten_by_another_client_fails_tasks_until_repaired",
        leftovers::a_visibility_overwritten_by_another_client_fails_tasks_until_repaired,
    ),
];

fn main() {
    mpkit::redis_pool::worker_main(ALL);
    if let Ok(url) = std::env::var("REDIS_POOL_TEST_STOPPED_CALLER") {
        caller_to_be_stopped(&url);
    }
    if let (Ok(url), Ok(dir)) = (
        std::env::var("REDIS_POOL_TEST_CALLER"),
        std::env::var("REDIS_POOL_TEST_DIR"),
    ) {
        caller_that_dies(&url, &dir);
    }
    common::run_tests(TESTS, 90);
}
