//! The pool's arenas (each local worker's anonymous shared-memory block,
//! two 2 MiB halves: chunk payloads in the first, reply bodies in the
//! second, from 4 KiB) under fire, between real processes: sizes at both
//! limits on both sides, handles, retries, retirements, timeouts, terminate, many pools
//! (tasks that cut or fork over their worker's arena are in
//! `pool_arena_mischief.rs`). Results must be right and in order.
//!
//! The tests run one at a time (`SERIAL`): some count this process's
//! descriptors and mappings.

#[path = "common/arena.rs"]
mod arena;
mod common;

use std::sync::Arc;
use std::time::Duration;

use arena::*;
use common::{open_fds, use_up_fds, watchdog};
use mpkit::Pool;
use mpkit::pool::TaskError;

/// Chunk payloads and reply bodies just under, at and over 4 KiB and
/// 2 MiB, one item per chunk: every result right and in order.
#[test]
fn one_item_chunks_across_both_limits() {
    let _s = serial();
    let _w = watchdog(180);
    let pool = Pool::new(2).unwrap();
    let lens: Vec<usize> = around(MIN).chain(around(HALF)).collect();
    // Payload and body of the same size.
    let items: Vec<Vec<u8>> = lens.iter().map(|&n| pattern(n)).collect();
    let out = pool.map_chunked(|v: Vec<u8>| v, items.clone(), 1).unwrap();
    assert!(
        out == items,
        "an identity map of {} items came back wrong",
        items.len()
    );
    // A small payload, a body at the limits.
    let out = pool.map_chunked(pattern, lens.clone(), 1).unwrap();
    assert!(out.iter().zip(&lens).all(|(v, &n)| *v == pattern(n)));
    // A payload at the limits, a small body.
    let sums = pool
        .map_chunked(
            |v: Vec<u8>| (v.len(), v.iter().map(|&b| u64::from(b)).sum::<u64>()),
            items.clone(),
            1,
        )
        .unwrap();
    for (v, s) in items.iter().zip(&sums) {
        assert_eq!(*s, (v.len(), v.iter().map(|&b| u64::from(b)).sum::<u64>()));
    }
}

/// Chunks of several items whose payload (and body) cross 2 MiB as a
/// whole, some at a worker, some through its socket, in turn.
#[test]
fn many_item_chunks_across_the_upper_limit() {
    let _s = serial();
    let _w = watchdog(180);
    let pool = Pool::new(2).unwrap();
    for per in [HALF / 3 - 40, HALF / 3 - 4, HALF / 3, HALF / 3 + 8] {
        let items: Vec<Vec<u8>> = (0..9).map(|i| pattern(per + i)).collect();
        let out = pool.map_chunked(|v: Vec<u8>| v, items.clone(), 3).unwrap();
        assert!(
            out == items,
            "chunks of 3 items of ~{per} bytes came back wrong"
        );
    }
    // Strings, and small results in the thousands next to big ones.
    let strings: Vec<String> = (0..3000)
        .map(|i| "x".repeat(if i % 500 == 0 { HALF - 64 } else { i % 50 }))
        .collect();
    let out = pool
        .map_chunked(|s: String| s, strings.clone(), 97)
        .unwrap();
    assert!(out == strings);
    let out = pool.imap_chunked(|s: String| s.len(), strings.clone(), 7);
    let lens: Vec<usize> = out.map(Result::unwrap).collect();
    assert_eq!(lens, strings.iter().map(String::len).collect::<Vec<_>>());
}

/// Big payloads and bodies that carry a handle go through the socket with
/// it: the handle works on the other side, the bytes are right.
#[test]
fn big_chunks_and_replies_with_handles() {
    let _s = serial();
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    let mut rxs = Vec::new();
    let mut items = Vec::new();
    for i in 0..6usize {
        let (rx, tx) = mpkit::pipe(true).unwrap();
        rxs.push(rx);
        items.push((tx, pattern(MIN + 100 * i)));
    }
    let out = pool
        .map_chunked(
            |(mut tx, v): (mpkit::Connection, Vec<u8>)| {
                tx.send(&v.len()).unwrap();
                let (back, there) = mpkit::pipe(true).unwrap();
                (v, back, there)
            },
            items,
            2,
        )
        .unwrap();
    for (i, (mut rx, (v, mut back, mut there))) in rxs.into_iter().zip(out).enumerate() {
        assert_eq!(rx.recv::<usize>().unwrap(), MIN + 100 * i);
        assert!(v == pattern(MIN + 100 * i));
        there.send(&i).unwrap();
        assert_eq!(back.recv::<usize>().unwrap(), i);
    }
}

/// A worker killed mid-chunk (its task aborts the first time) with
/// `retries(1)`: the big chunk is sent again, into another worker's
/// arena, and its result is right.
#[test]
fn a_big_chunk_retried_after_its_worker_died() {
    let _s = serial();
    let _w = watchdog(60);
    let dir = std::env::temp_dir().join(format!("mpkit-arena-retry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let pool = Pool::builder().processes(2).retries(1).build().unwrap();
    let items: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| {
            (
                dir.join(format!("{i}")).display().to_string(),
                pattern(MIN * 8 + i),
            )
        })
        .collect();
    let out = pool.map_outcomes_chunked(
        |(marker, v): (String, Vec<u8>)| {
            // Each item's first run dies with its worker.
            if v.len() % 3 == 0 && std::fs::File::create_new(&marker).is_ok() {
                std::process::abort();
            }
            v
        },
        items.clone(),
        1,
    );
    let _ = std::fs::remove_dir_all(&dir);
    for ((_, v), o) in items.iter().zip(&out) {
        assert_eq!(o.as_ref().ok(), Some(v));
    }
}

/// Every worker retired after each big chunk: each new worker's arena is
/// right, and none is left behind in this process afterwards.
#[test]
fn workers_retired_after_every_big_chunk_leave_no_arena() {
    let _s = serial();
    let _w = watchdog(120);
    let before = (open_fds(), mpkit_memfds());
    let pool = Pool::builder()
        .processes(2)
        .max_tasks_per_child(1)
        .build()
        .unwrap();
    let items: Vec<Vec<u8>> = (0..40).map(|i| pattern(MIN * 4 + 999 * i)).collect();
    let out = pool
        .map_chunked(|v: Vec<u8>| (std::process::id(), v), items.clone(), 1)
        .unwrap();
    let pids: std::collections::HashSet<_> = out.iter().map(|(p, _)| *p).collect();
    assert_eq!(pids.len(), 40);
    assert!(out.iter().zip(&items).all(|((_, o), v)| o == v));
    drop(pool);
    assert_eq!(
        (open_fds(), mpkit_memfds()),
        before,
        "(descriptors, (arena descriptors, arena mappings)) after the pool"
    );
}

/// A big chunk that times out fails alone; the others are right.
#[test]
fn a_big_chunk_that_times_out_fails_alone() {
    let _s = serial();
    let _w = watchdog(60);
    let pool = Pool::builder()
        .processes(2)
        .task_timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let items: Vec<Vec<u8>> = (0..8).map(|i| pattern(MIN * 16 + i)).collect();
    let out = pool.map_outcomes_chunked(
        |v: Vec<u8>| {
            if v.len() == MIN * 16 + 5 {
                loop {
                    std::thread::park();
                }
            }
            v
        },
        items.clone(),
        1,
    );
    for (i, (v, o)) in items.iter().zip(&out).enumerate() {
        if i == 5 {
            assert!(matches!(o, Err(TaskError::TimedOut { .. })), "{o:?}");
        } else {
            assert_eq!(o.as_ref().ok(), Some(v));
        }
    }
}

/// Terminate while big chunks are in every worker's arena: the map ends,
/// and dropping the pool leaves no descriptor or arena behind.
#[test]
fn terminate_mid_map_of_big_chunks() {
    let _s = serial();
    let _w = watchdog(60);
    let before = (open_fds(), mpkit_memfds());
    let pool = Arc::new(Pool::new(3).unwrap());
    let (mut rx2, tx2) = mpkit::pipe(true).unwrap();
    let mapper = {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || {
            let items: Vec<(Option<mpkit::Connection>, Vec<u8>)> =
                std::iter::once((Some(tx2), pattern(MIN)))
                    .chain((1..30).map(|i| (None, pattern(HALF / 2 + i))))
                    .collect();
            pool.map_outcomes_chunked(
                |(tx, v): (Option<mpkit::Connection>, Vec<u8>)| {
                    if let Some(mut tx) = tx {
                        tx.send(&1u8).unwrap();
                    }
                    // Item 0, and every item from 10 on, waits there.
                    if v.len() == MIN || v.len() >= HALF / 2 + 10 {
                        loop {
                            std::thread::park();
                        }
                    }
                    v
                },
                items,
                1,
            )
        })
    };
    assert_eq!(rx2.recv::<u8>().unwrap(), 1);
    pool.terminate();
    let out = mapper.join().unwrap();
    assert!(
        out.iter()
            .any(|o| matches!(o, Err(TaskError::PoolTerminated)))
    );
    for (i, o) in out.iter().enumerate().skip(1) {
        assert!(o.as_ref().map_or(true, |v| *v == pattern(HALF / 2 + i)));
    }
    drop(pool);
    drop(rx2);
    assert_eq!((open_fds(), mpkit_memfds()), before);
}

/// Many pools at once, many workers each: every worker sees one arena
/// (its own: none of another worker's leaks into it), this process holds
/// one descriptor and one mapping per worker, and all go with the pools.
#[test]
fn many_pools_at_once_hold_one_arena_per_worker() {
    let _s = serial();
    let _w = watchdog(120);
    let before = (open_fds(), mpkit_memfds());
    let pools: Vec<Pool> = (0..8).map(|_| Pool::new(6).unwrap()).collect();
    let during = mpkit_memfds();
    assert_eq!(
        (during.0 - before.1.0, during.1 - before.1.1),
        (48, 48),
        "arena (descriptors, mappings) for 48 workers"
    );
    let threads: Vec<_> = pools
        .into_iter()
        .map(|pool| {
            std::thread::spawn(move || {
                let items: Vec<Vec<u8>> = (0..24).map(|i| pattern(MIN * 9 + i)).collect();
                let out = pool
                    .map_chunked(
                        |v: Vec<u8>| {
                            let memfds = std::fs::read_dir("/proc/self/fd")
                                .unwrap()
                                .flatten()
                                .filter(|e| {
                                    std::fs::read_link(e.path()).is_ok_and(|t| {
                                        t.to_string_lossy().starts_with("/memfd:mpkit")
                                    })
                                })
                                .count();
                            (memfds, v)
                        },
                        items.clone(),
                        1,
                    )
                    .unwrap();
                for ((n, o), v) in out.iter().zip(&items) {
                    assert_eq!(*n, 1, "a worker holds {n} anonymous blocks");
                    assert!(o == v);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!((open_fds(), mpkit_memfds()), before);
}

/// A pool of many workers starts, and each of them takes big chunks.
#[test]
fn a_pool_of_many_workers_with_big_chunks() {
    let _s = serial();
    let _w = watchdog(120);
    let pool = Pool::new(64).unwrap();
    let items: Vec<Vec<u8>> = (0..256).map(|i| pattern(MIN * 2 + i)).collect();
    let out = pool.map_chunked(|v: Vec<u8>| v, items.clone(), 1).unwrap();
    assert!(out == items);
}

/// In a child process, one worker: for k = 1..=24, descriptors used up
/// but k, the worker killed, and big chunks mapped. Its replacement may
/// start with an arena, without one (the memfd or its copy failed), or
/// not at all: results are right or `WorkerStart` errors, never wrong.
/// One line per k. (Measured at 93999da: a start needs 11 free
/// descriptors, the arena's two among them; with 9 or 10 the arena takes
/// two and the spawn fails, so a worker never starts without an arena.)
fn big_chunks_with_few_descriptors(_: ()) -> String {
    let pool = Pool::builder()
        .processes(1)
        .worker_start_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let items: Vec<Vec<u8>> = (0..4).map(|i| pattern(MIN * 6 + i)).collect();
    assert!(pool.map_chunked(|v: Vec<u8>| v, items.clone(), 1).unwrap() == items);
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a local rlimit.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) };
    let lim = libc::rlimit {
        rlim_cur: open_fds() as u64 + 32,
        rlim_max: old.rlim_max,
    };
    // SAFETY: lowering this (child) process's soft limit.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    let mut lines = Vec::new();
    let mut hold = Vec::new();
    for k in 1..=24 {
        use_up_fds(&mut hold);
        let _ = pool.apply(|(): ()| -> u8 { std::process::exit(3) }, ());
        use_up_fds(&mut hold);
        hold.truncate(hold.len().saturating_sub(k));
        let out = pool.map_outcomes_chunked(|v: Vec<u8>| v, items.clone(), 1);
        let (mut ok, mut start) = (0, 0);
        for (o, v) in out.iter().zip(&items) {
            match o {
                Ok(r) if r == v => ok += 1,
                Err(TaskError::WorkerStart { .. }) => start += 1,
                other => panic!("k={k}: {other:?}"),
            }
        }
        lines.push(format!("k={k} ok={ok} start_failed={start}"));
        hold.clear();
    }
    let back = pool.map_chunked(|v: Vec<u8>| v, items.clone(), 1);
    lines.push(format!("recovered={}", back.is_ok_and(|b| b == items)));
    lines.join("\n")
}

/// Big chunks while the pool's process is all but out of descriptors: no
/// wrong result, no hang, and the pool recovers.
#[test]
fn big_chunks_while_descriptors_run_out() {
    let _s = serial();
    let _w = watchdog(120);
    let child = mpkit::Process::spawn(big_chunks_with_few_descriptors, ()).unwrap();
    let got = child.join().unwrap();
    eprintln!("{got}");
    assert!(got.ends_with("recovered=true"), "{got}");
    assert!(
        got.lines().any(|l| l.contains(" ok=4 ")),
        "no k left room for a worker: {got}"
    );
}

/// A worker stopped (SIGSTOP) while idle is sent chunks that fit its
/// arena: the task timeout still fires, the next worker gets them right,
/// and dropping the pool returns.
#[test]
fn a_stopped_worker_sent_arena_sized_chunks_times_out() {
    let _s = serial();
    let _w = watchdog(60);
    let pool = Pool::builder()
        .processes(1)
        .task_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let wpid = pool.apply(|(): ()| std::process::id() as i32, ()).unwrap();
    // SAFETY: kill(2) on the worker this test's pool started.
    unsafe { libc::kill(wpid, libc::SIGSTOP) };
    assert!(
        common::eventually(Duration::from_secs(10), || {
            std::fs::read_to_string(format!("/proc/{wpid}/stat"))
                .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('T')))
        }),
        "the worker never stopped"
    );
    let first = pool.apply_async(|v: Vec<u8>| v, pattern(HALF - 100));
    let second = pool.apply_async(|v: Vec<u8>| v, pattern(HALF / 2));
    let outcome = first.get_timeout(Duration::from_secs(10));
    // SAFETY: as above (it is dead by now, or this ends it).
    unsafe { libc::kill(wpid, libc::SIGKILL) };
    let outcome = outcome.unwrap_or_else(|_| panic!("no outcome 10 s after a 0.5 s timeout"));
    assert!(
        matches!(outcome, Err(TaskError::TimedOut { .. })),
        "{outcome:?}"
    );
    let second = second.get_timeout(Duration::from_secs(10)).unwrap();
    assert!(second.is_ok_and(|v| v == pattern(HALF / 2)));
    drop(pool);
}

/// An initializer with an argument over 4 KiB (it goes through the
/// socket), then big chunks into the arena.
#[test]
fn an_initializer_with_a_big_argument_then_big_chunks() {
    let _s = serial();
    let _w = watchdog(60);
    static SEEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    fn init(v: Vec<u8>) {
        assert!(v == pattern(HALF + 5));
        SEEN.store(v.len(), std::sync::atomic::Ordering::SeqCst);
    }
    let pool = Pool::builder()
        .processes(2)
        .initializer(init, pattern(HALF + 5))
        .build()
        .unwrap();
    let items: Vec<Vec<u8>> = (0..8).map(|i| pattern(MIN * 40 + i)).collect();
    let out = pool
        .map_chunked(
            |v: Vec<u8>| (SEEN.load(std::sync::atomic::Ordering::SeqCst), v),
            items.clone(),
            1,
        )
        .unwrap();
    for ((seen, o), v) in out.iter().zip(&items) {
        assert_eq!(*seen, HALF + 5);
        assert!(o == v);
    }
}
