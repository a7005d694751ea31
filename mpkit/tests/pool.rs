//! Pools between real processes: order, panics, killed workers, retries,
//! timeouts, retirement, initializers, clean-up, and a chaos run.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{TempDir, pidfd, wait_exit, watchdog};
use mpkit::pool::{TaskError, WorkerExit};
use mpkit::{Connection, Pool, Process};

fn pid() -> i32 {
    std::process::id() as i32
}

fn kill_self() {
    // SAFETY: kill(2) on our own pid with a valid signal.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

/// Whether a process with this pid exists (a zombie counts).
fn exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Sends its worker's pid to whoever holds the other end: the workers
/// announce themselves, so a test learns their pids as each starts.
fn announce(mut conn: Connection) {
    conn.send(&pid()).unwrap();
}

#[test]
fn map_keeps_order_with_any_chunk_size() {
    let _w = watchdog(30);
    let pool = Pool::new(2).unwrap();
    let want: Vec<u64> = (0..1000).map(|x| x * 3).collect();
    assert_eq!(pool.map(|x: u64| x * 3, 0..1000).unwrap(), want);
    assert_eq!(pool.map_chunked(|x: u64| x * 3, 0..1000, 1).unwrap(), want);
    assert_eq!(
        pool.map_chunked(|x: u64| x * 3, 0..1000, 999).unwrap(),
        want
    );
    assert!(pool.map(|x: u64| x, Vec::new()).unwrap().is_empty());
    // The work really ran elsewhere.
    let pids: HashSet<i32> = pool
        .map_chunked(|_: u8| pid(), [0; 50], 1)
        .unwrap()
        .into_iter()
        .collect();
    assert!(!pids.contains(&pid()));
}

#[test]
fn a_panic_fails_its_task_alone_with_its_message() {
    let _w = watchdog(30);
    let pool = Pool::new(2).unwrap();
    let outcomes = pool.map_outcomes_chunked(
        |x: u32| {
            if x % 7 == 3 {
                panic!("no {x}");
            }
            x
        },
        0..30,
        4,
    );
    for (x, outcome) in (0..30u32).zip(outcomes) {
        if x % 7 == 3 {
            assert_eq!(
                outcome,
                Err(TaskError::Panicked {
                    message: format!("no {x}")
                })
            );
        } else {
            assert_eq!(outcome, Ok(x));
        }
    }
    // map stops at the first failure in order, and says which.
    let err = pool
        .map(|x: u32| if x >= 5 { panic!("at {x}") } else { x }, 0..10)
        .unwrap_err();
    assert_eq!(
        err,
        TaskError::Panicked {
            message: "at 5".into()
        }
    );
}

#[test]
fn a_worker_killed_mid_task_fails_exactly_that_task() {
    let _w = watchdog(30);
    let pool = Pool::new(2).unwrap();
    let outcomes = pool.map_outcomes_chunked(
        |x: u32| {
            if x == 5 {
                kill_self();
            }
            x + 1
        },
        0..20,
        1,
    );
    for (x, outcome) in (0..20u32).zip(outcomes) {
        match outcome {
            Err(TaskError::WorkerDied {
                how: WorkerExit::Signal(9),
                ..
            }) if x == 5 => {}
            Ok(v) if x != 5 && v == x + 1 => {}
            other => panic!("item {x}: {other:?}"),
        }
    }
    // A replacement took the dead worker's place.
    let pids: HashSet<i32> = pool
        .map_chunked(|_: u8| pid(), [0; 40], 1)
        .unwrap()
        .into_iter()
        .collect();
    assert!(!pids.is_empty() && pids.len() <= 2);
    // exit() inside a task is reported with its code.
    assert!(matches!(
        pool.apply(|c: i32| -> u8 { std::process::exit(c) }, 7),
        Err(TaskError::WorkerDied {
            how: WorkerExit::Code(7),
            ..
        })
    ));
}

#[test]
fn retries_rerun_a_task_whose_worker_died_on_another_worker() {
    let _w = watchdog(30);
    let dir = TempDir::new("retry");
    let pool = Pool::builder().processes(2).retries(1).build().unwrap();
    // The first run records its pid and dies; the rerun returns both pids.
    let (first, second) = pool
        .apply(
            |dir: PathBuf| {
                let mark = dir.join("first");
                match std::fs::read_to_string(&mark) {
                    Ok(first) => (first.parse::<i32>().unwrap(), pid()),
                    Err(_) => {
                        std::fs::write(&mark, pid().to_string()).unwrap();
                        kill_self();
                        unreachable!()
                    }
                }
            },
            dir.0.clone(),
        )
        .unwrap();
    assert_ne!(first, second);
    // A task that always kills its worker fails once the retries are used.
    let pool = Pool::builder().processes(1).retries(2).build().unwrap();
    let runs = TempDir::new("retry-count");
    let err = pool
        .apply(
            |dir: PathBuf| {
                std::fs::write(dir.join(pid().to_string()), "").unwrap();
                kill_self();
            },
            runs.0.clone(),
        )
        .unwrap_err();
    assert!(matches!(err, TaskError::WorkerDied { .. }), "{err:?}");
    assert_eq!(std::fs::read_dir(&runs.0).unwrap().count(), 3);
}

#[test]
fn a_task_past_its_timeout_is_killed_and_its_worker_replaced() {
    let _w = watchdog(30);
    let timeout = Duration::from_millis(300);
    let pool = Pool::builder()
        .processes(1)
        .task_timeout(timeout)
        .build()
        .unwrap();
    let start = Instant::now();
    let outcomes = pool.map_outcomes_chunked(
        |ms: u64| {
            std::thread::sleep(Duration::from_millis(ms));
            pid()
        },
        [0, 60_000, 0],
        1,
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(outcomes[1], Err(TaskError::TimedOut { timeout }));
    let (Ok(before), Ok(after)) = (&outcomes[0], &outcomes[2]) else {
        panic!("{outcomes:?}");
    };
    assert_ne!(before, after, "the timed-out worker was replaced");
    // Reaped before its task was reported: no zombie left.
    assert!(!exists(*before), "worker {before} is left");
}

#[test]
fn max_tasks_per_child_retires_workers() {
    let _w = watchdog(30);
    let pool = Pool::builder()
        .processes(2)
        .max_tasks_per_child(2)
        .build()
        .unwrap();
    let pids = pool.map_chunked(|_: u8| pid(), [0; 12], 1).unwrap();
    let distinct: HashSet<i32> = pids.iter().copied().collect();
    assert!(distinct.len() >= 6, "{pids:?}");
    for p in &distinct {
        // Retired after two; a worker may also run fewer when the map ends.
        assert!(pids.iter().filter(|q| *q == p).count() <= 2, "{pids:?}");
    }
}

#[test]
fn the_initializer_runs_once_in_every_worker_with_its_handles() {
    let _w = watchdog(30);
    let (mut rx, tx) = mpkit::pipe(true).unwrap();
    let pool = Pool::builder()
        .processes(3)
        .initializer(announce, tx)
        .name("counter")
        .build()
        .unwrap();
    let mut announced: Vec<i32> = (0..3).map(|_| rx.recv().unwrap()).collect();
    announced.sort();
    let names = pool
        .map_chunked(
            |_: u8| (pid(), mpkit::process::current_process().name().to_string()),
            [0; 30],
            1,
        )
        .unwrap();
    for (p, name) in names {
        assert!(announced.contains(&p), "{p} not in {announced:?}");
        assert!(name.starts_with("counter-"), "{name}");
    }
}

#[test]
fn a_failing_initializer_fails_the_tasks_instead_of_hanging() {
    let _w = watchdog(30);
    let pool = Pool::builder()
        .processes(2)
        .initializer(|_: ()| panic!("no config"), ())
        .build()
        .unwrap();
    let outcomes = pool.map_outcomes_chunked(|x: u8| x, 0..10, 1);
    for o in outcomes {
        assert_eq!(
            o,
            Err(TaskError::InitializerFailed {
                message: "no config".into()
            })
        );
    }
}

#[test]
fn handles_travel_in_arguments() {
    let _w = watchdog(30);
    let pool = Pool::new(1).unwrap();
    let (mut here, there) = mpkit::pipe(true).unwrap();
    pool.apply(|mut c: Connection| c.send("from a worker").unwrap(), there)
        .unwrap();
    assert_eq!(here.recv::<String>().unwrap(), "from a worker");
}

#[test]
fn handles_travel_in_results_each_with_its_own_result() {
    let _w = watchdog(30);
    let pool = Pool::new(2).unwrap();
    // More results in one chunk than a worker encodes at a time, with one
    // that fails among them: each handle must still come back with the
    // result it was made for.
    let outcomes = pool.map_outcomes_chunked(
        |i: u32| {
            assert!(i != 70, "seventy");
            let (rx, mut tx) = mpkit::pipe(false).unwrap();
            tx.send(&i).unwrap();
            (i, rx)
        },
        0..150,
        150,
    );
    assert_eq!(outcomes.len(), 150);
    for (i, outcome) in (0..150u32).zip(outcomes) {
        match outcome {
            Ok((n, mut rx)) => {
                assert_eq!(n, i);
                assert_eq!(rx.recv::<u32>().unwrap(), i);
            }
            Err(TaskError::Panicked { message }) if i == 70 => assert_eq!(message, "seventy"),
            other => panic!("item {i}: {other:?}"),
        }
    }
}

#[test]
fn imap_is_lazy_and_bounded() {
    let _w = watchdog(30);
    let pool = Pool::new(2).unwrap();
    let pulled = std::cell::Cell::new(0u64);
    let firsts: Vec<u64> = pool
        .imap(
            |x: u64| x + 1,
            (0..).inspect(|_| pulled.set(pulled.get() + 1)),
        )
        .take(10)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(firsts, (1..=10).collect::<Vec<_>>());
    // A window of two chunks per worker, beyond what was taken.
    assert!(pulled.get() <= 10 + 4, "{} items read", pulled.get());

    let mut all: Vec<u64> = pool
        .imap_unordered_chunked(|x: u64| x * 2, 0..500, 7)
        .collect::<Result<_, _>>()
        .unwrap();
    all.sort();
    assert_eq!(all, (0..500).map(|x| x * 2).collect::<Vec<_>>());
    let ordered: Vec<Result<u64, TaskError>> = pool
        .imap_chunked(|x: u64| if x == 3 { panic!("three") } else { x }, 0..6, 2)
        .collect();
    assert_eq!(ordered[2], Ok(2));
    assert!(matches!(ordered[3], Err(TaskError::Panicked { .. })));
    assert_eq!(ordered[5], Ok(5));
}

#[test]
fn close_join_and_terminate() {
    let _w = watchdog(30);
    let pool = Pool::new(2).unwrap();
    let quick = pool.apply_async(|x: u8| x + 1, 1);
    let bad = pool.apply_async(|_: u8| -> u8 { panic!("bad") }, 0);
    bad.wait();
    assert_eq!(bad.successful(), Some(false));
    quick.wait();
    assert_eq!(quick.successful(), Some(true));
    pool.close();
    assert_eq!(pool.apply(|x: u8| x, 1), Err(TaskError::PoolClosed));
    pool.join();
    assert_eq!(quick.get(), Ok(2));

    let pool = Pool::new(1).unwrap();
    let slow = pool.apply_async(|s: u64| std::thread::sleep(Duration::from_secs(s)), 60);
    let slow = slow.get_timeout(Duration::from_millis(20)).unwrap_err();
    assert_eq!(slow.successful(), None);
    pool.terminate();
    assert!(slow.ready());
    assert_eq!(slow.get(), Err(TaskError::PoolTerminated));
}

#[test]
fn dropping_a_pool_reaps_its_workers() {
    let _w = watchdog(30);
    let (mut rx, tx) = mpkit::pipe(true).unwrap();
    let pool = Pool::builder()
        .processes(2)
        .initializer(announce, tx)
        .build()
        .unwrap();
    let pids: Vec<i32> = (0..2).map(|_| rx.recv().unwrap()).collect();
    let busy = pool.apply_async(|s: u64| std::thread::sleep(Duration::from_secs(s)), 60);
    drop(pool);
    assert_eq!(busy.get(), Err(TaskError::PoolTerminated));
    for p in pids {
        assert!(!exists(p), "worker {p} is still there (zombie or alive)");
    }
}

/// The child of `the_parents_death_kills_the_workers`: makes a pool whose
/// workers announce themselves on `conn`, then waits to be killed.
fn pool_then_wait(conn: Connection) {
    let pool = Pool::builder()
        .processes(2)
        .initializer(announce, conn)
        .build()
        .unwrap();
    let _ = pool.apply(|s: u64| std::thread::sleep(Duration::from_secs(s)), 600);
}

#[test]
fn the_parents_death_kills_the_workers() {
    let _w = watchdog(30);
    let (mut rx, tx) = mpkit::pipe(true).unwrap();
    let parent = Process::spawn(pool_then_wait, tx).unwrap();
    let workers: Vec<_> = (0..2)
        .map(|_| pidfd(rx.recv_timeout::<i32>(Duration::from_secs(20)).unwrap()))
        .collect();
    parent.kill().unwrap();
    for w in &workers {
        assert!(
            wait_exit(w, Duration::from_secs(10)),
            "a worker outlived its pool's process"
        );
    }
    let _ = parent.join();
}

fn shm_entries() -> HashSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn chaos_random_kills_during_a_long_map() {
    let _w = watchdog(60);
    let shm_before = shm_entries();
    let (mut rx, tx) = mpkit::pipe(true).unwrap();
    let pool = Pool::builder()
        .processes(2)
        .initializer(announce, tx)
        .build()
        .unwrap();
    // Kills from outside: the killer takes each worker's pid as it starts
    // and kills some of them, each with a chunk in hand or about to get one.
    let killer = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut killed = 0;
        while let Ok(p) = rx.recv_timeout::<i32>(Duration::from_secs(5)) {
            seen.push(p);
            if seen.len() % 3 == 0 && killed < 8 {
                // SAFETY: kill(2) with a valid signal on a worker of this
                // test's pool that announced itself just now (the pool
                // reaps it only after it exits; a pid reused in between,
                // within microseconds, is the one risk a test accepts).
                unsafe { libc::kill(p, libc::SIGKILL) };
                killed += 1;
            }
        }
        seen
    });
    // Kills from inside: items whose hash says so kill their worker.
    fn task(x: u64) -> u64 {
        if x.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 499 == 0 && x > 0 {
            kill_self();
        }
        x * 2
    }
    let n = 10_000u64;
    let outcomes = pool.map_outcomes_chunked(task, 0..n, 10);
    assert_eq!(outcomes.len(), n as usize);
    let mut failed_chunks = HashSet::new();
    for (x, o) in (0..n).zip(&outcomes) {
        match o {
            Ok(v) => assert_eq!(*v, x * 2),
            Err(TaskError::WorkerDied {
                how: WorkerExit::Signal(9),
                ..
            }) => {
                failed_chunks.insert(x / 10);
            }
            Err(e) => panic!("item {x}: {e:?}"),
        }
    }
    for x in 1..n {
        if x.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 499 == 0 {
            assert!(outcomes[x as usize].is_err(), "item {x} should have died");
        }
    }
    // A chunk fails whole or not at all.
    for c in &failed_chunks {
        assert!((c * 10..c * 10 + 10).all(|x| outcomes[x as usize].is_err()));
    }
    drop(pool);
    let seen = killer.join().unwrap();
    assert!(seen.len() > 2, "{seen:?}");
    for p in seen {
        assert!(!exists(p), "worker {p} is left (zombie or alive)");
    }
    let added: Vec<_> = shm_entries().difference(&shm_before).cloned().collect();
    assert!(
        added.iter().all(|n| !n.contains(&pid().to_string())),
        "{added:?}"
    );
}

/// A value that refuses to be encoded when it is 13.
#[derive(Debug, PartialEq, serde::Deserialize)]
struct Picky(u32);

impl serde::Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            return Err(serde::ser::Error::custom("13 is unlucky"));
        }
        s.serialize_u32(self.0)
    }
}

#[test]
fn an_item_or_result_that_cannot_be_encoded_fails_alone() {
    let _w = watchdog(30);
    let pool = Pool::new(2).unwrap();
    // An argument: caught here, before it goes anywhere.
    let outcomes = pool.map_outcomes_chunked(|p: Picky| p.0, (10..16).map(Picky), 3);
    for (x, o) in (10..16u32).zip(outcomes) {
        match o {
            Err(TaskError::ArgsEncode { message, .. }) if x == 13 => {
                assert!(message.contains("unlucky"), "{message}")
            }
            Ok(v) if x != 13 && v == x => {}
            other => panic!("item {x}: {other:?}"),
        }
    }
    // A result: caught in the worker.
    let outcomes = pool.map_outcomes_chunked(Picky, 10..16, 3);
    for (x, o) in (10..16u32).zip(outcomes) {
        match o {
            Err(TaskError::ResultEncode { message, .. }) if x == 13 => {
                assert!(message.contains("unlucky"), "{message}")
            }
            Ok(v) if x != 13 && v == Picky(x) => {}
            other => panic!("item {x}: {other:?}"),
        }
    }
}

#[test]
fn imap_unordered_yields_what_finished_while_an_earlier_task_still_runs() {
    let _w = watchdog(30);
    let pool = Pool::new(2).unwrap();
    // Item 0 waits for a message the test sends only after it has taken
    // the other items' results: in order, this would never finish.
    let (mut go, gate) = mpkit::pipe(true).unwrap();
    let items = std::iter::once((0u32, Some(gate))).chain((1..5).map(|i| (i, None)));
    let mut results = pool.imap_unordered(
        |(i, gate): (u32, Option<Connection>)| {
            if let Some(mut gate) = gate {
                gate.recv::<()>().unwrap();
            }
            i
        },
        items,
    );
    let mut early: Vec<u32> = (0..4).map(|_| results.next().unwrap().unwrap()).collect();
    early.sort();
    assert_eq!(early, [1, 2, 3, 4]);
    go.send(&()).unwrap();
    assert_eq!(results.next().unwrap(), Ok(0));
    assert!(results.next().is_none());
}

/// An initializer that never returns (until its connection closes).
fn stuck(mut conn: Connection) {
    let _ = conn.recv::<()>();
}

#[test]
fn a_worker_stuck_in_its_initializer_never_blocks_the_pool() {
    let _w = watchdog(30);
    let (_keep, gate) = mpkit::pipe(true).unwrap();
    let pool = Pool::builder()
        .processes(1)
        .initializer(stuck, gate)
        .build()
        .unwrap();
    // More than a socket buffer holds: sent to a worker that is not
    // reading, it would block the pool's thread, and with it terminate.
    let big = pool.apply_async(|v: Vec<u8>| v.len(), vec![7u8; 8 << 20]);
    let big = big.get_timeout(Duration::from_millis(50)).unwrap_err();
    drop(pool);
    assert_eq!(big.get(), Err(TaskError::PoolTerminated));
}

#[test]
fn terminate_ends_a_join_that_waits_on_a_stuck_worker() {
    let _w = watchdog(30);
    let (_keep, gate) = mpkit::pipe(true).unwrap();
    let pool = std::sync::Arc::new(
        Pool::builder()
            .processes(1)
            .initializer(stuck, gate)
            .build()
            .unwrap(),
    );
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let joiner = {
        let pool = std::sync::Arc::clone(&pool);
        std::thread::spawn(move || {
            // SAFETY: gettid(2) has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            pool.join()
        })
    };
    // The join is waiting (for the dispatcher, which waits for the stuck
    // worker): terminate from here must end both.
    let tid = tid_rx.recv().unwrap();
    assert!(common::wait_until_asleep_in_futex(
        pid(),
        tid,
        Duration::from_secs(10)
    ));
    pool.terminate();
    joiner.join().unwrap();
}

/// Serializes as its number; refuses odd numbers when read back.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, PartialEq, Debug)]
#[serde(try_from = "u64", into = "u64")]
struct Even(u64);

impl TryFrom<u64> for Even {
    type Error = String;
    fn try_from(x: u64) -> Result<Even, String> {
        if x % 2 == 0 {
            Ok(Even(x))
        } else {
            Err(format!("{x} is odd"))
        }
    }
}

impl From<Even> for u64 {
    fn from(e: Even) -> u64 {
        e.0
    }
}

#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, PartialEq, Debug)]
struct Metres(f64);

#[test]
fn scalars_of_every_kind_and_their_mixtures_cross_the_pool() {
    let _w = watchdog(30);
    let pool = Pool::new(2).unwrap();
    // Numbers in, text out, and back.
    let texts = pool
        .map_chunked(|x: u64| x.to_string(), 0..300, 64)
        .unwrap();
    assert_eq!(texts, (0..300).map(|x| x.to_string()).collect::<Vec<_>>());
    let lens = pool
        .map_chunked(|s: String| s.len() as u8, texts, 64)
        .unwrap();
    assert_eq!(
        lens,
        (0..300)
            .map(|x: u64| x.to_string().len() as u8)
            .collect::<Vec<_>>()
    );
    // Each kind of scalar, at its extremes.
    let negated = pool
        .map(|x: i128| x.wrapping_neg(), [i128::MIN, -1, 0, i128::MAX])
        .unwrap();
    assert_eq!(negated, [i128::MIN, 1, 0, -i128::MAX]);
    let next = pool
        .map(
            |c: char| char::from_u32(c as u32 + 1).unwrap_or('?'),
            ['a', 'é', '\u{10FFFF}'],
        )
        .unwrap();
    assert_eq!(next, ['b', 'ê', '?']);
    assert_eq!(
        pool.map(|b: bool| !b, [true, false]).unwrap(),
        [false, true]
    );
    let halves = pool
        .map(|m: Metres| Metres(m.0 / 2.0), [Metres(3.0), Metres(-0.5)])
        .unwrap();
    assert_eq!(halves, [Metres(1.5), Metres(-0.25)]);
    assert_eq!(
        pool.map(|x: u8| assert!(x < 200), 0..100u8).unwrap().len(),
        100
    );
    // A value that reads back wrong fails alone; the rest of its chunk runs.
    let outcomes = pool.map_outcomes_chunked(|e: Even| e.0 / 2, (0..8).map(Even), 8);
    for (x, o) in (0..8u64).zip(outcomes) {
        match o {
            Ok(half) if x % 2 == 0 => assert_eq!(half, x / 2),
            Err(TaskError::ArgsDecode { message, .. }) if x % 2 == 1 => {
                assert!(message.contains("is odd"), "{message}")
            }
            other => panic!("item {x}: {other:?}"),
        }
    }
}
