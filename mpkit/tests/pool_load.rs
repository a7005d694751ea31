//! The pool under load and through its life, between real processes:
//! many threads mapping at once on shared and own pools (recycled reply
//! buffers never carry another reply's bytes), many submitting at once
//! (the dispatcher's eventfd wake-up loses none), terminate, close and
//! join with work in flight, and pools ended every way leaving no
//! descriptor behind.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{eventually, first_diff, watchdog};
use mpkit::Pool;
use mpkit::pool::{Executor, TaskError};

/// Results of many shapes and sizes on several pools and threads at
/// once, alternating replies through the arena (large) and the socket
/// (small), and bodies longer and shorter than the recycled buffers they
/// are copied into: every result is its own map's, exactly.
#[test]
fn concurrent_maps_never_see_another_replys_bytes() {
    let _w = watchdog(180);
    let shared = Pool::new(2).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let shared = &shared;
            s.spawn(move || {
                let own = Pool::new(1).unwrap();
                for round in 0..12u64 {
                    let pool = if round % 2 == 0 { shared } else { &own };
                    let seed = t * 1_000_003 + round * 7919;
                    match (round + t) % 4 {
                        0 => {
                            // Large, wide: 8 bytes a value through the arena.
                            let n = 20_000 + (round * 977) as usize % 30_000;
                            let items: Vec<u64> = (0..n as u64).map(|i| seed + (i << 33)).collect();
                            let got = pool
                                .map_chunked(|x: u64| x ^ 0xff, items.clone(), n)
                                .unwrap();
                            let want: Vec<u64> = items.iter().map(|x| x ^ 0xff).collect();
                            assert!(
                                got == want,
                                "thread {t} round {round}: {}",
                                first_diff(&want, &got)
                            );
                        }
                        1 => {
                            // Small numbers, short replies.
                            let n = 1 + (round as usize * 13) % 300;
                            let got = pool
                                .map_chunked(|x: u64| x % 251, seed..seed + n as u64, n)
                                .unwrap();
                            let want: Vec<u64> = (seed..seed + n as u64).map(|x| x % 251).collect();
                            assert!(
                                got == want,
                                "thread {t} round {round}: {}",
                                first_diff(&want, &got)
                            );
                        }
                        2 => {
                            // Strings of every length (postcard).
                            let n = 3000;
                            let got = pool
                                .map_chunked(
                                    |x: u64| format!("{x}-{}", "z".repeat((x % 37) as usize)),
                                    seed..seed + n,
                                    1000,
                                )
                                .unwrap();
                            for (x, g) in (seed..seed + n).zip(&got) {
                                assert_eq!(*g, format!("{x}-{}", "z".repeat((x % 37) as usize)));
                            }
                        }
                        _ => {
                            // Bytes, then narrow i64 (4 bytes a value).
                            let n = 9000u64;
                            let got = pool
                                .map_chunked(|x: u64| (x % 256) as u8, seed..seed + n, 9000)
                                .unwrap();
                            let want: Vec<u8> = (seed..seed + n).map(|x| (x % 256) as u8).collect();
                            assert!(
                                got == want,
                                "thread {t} round {round}: {}",
                                first_diff(&want, &got)
                            );
                            let got = pool
                                .map_chunked(|x: u64| -(x as i64 % 1000), seed..seed + n, 3000)
                                .unwrap();
                            let want: Vec<i64> =
                                (seed..seed + n).map(|x| -(x as i64 % 1000)).collect();
                            assert!(
                                got == want,
                                "thread {t} round {round}: {}",
                                first_diff(&want, &got)
                            );
                        }
                    }
                }
            });
        }
    });
}

/// Many threads submitting at once, each waiting for its own results: no
/// wake-up of the dispatcher is lost (a lost one hangs a caller, and the
/// watchdog fails the test).
#[test]
fn many_threads_submitting_at_once_lose_no_wake_up() {
    let _w = watchdog(120);
    let pool = Pool::new(2).unwrap();
    let start = std::sync::Barrier::new(12);
    std::thread::scope(|s| {
        for t in 0..12u64 {
            let (pool, start) = (&pool, &start);
            s.spawn(move || {
                start.wait();
                for i in 0..150u64 {
                    let x = t * 1000 + i;
                    match i % 3 {
                        0 => assert_eq!(pool.apply(|x: u64| x + 1, x), Ok(x + 1)),
                        1 => assert_eq!(pool.apply_async(|x: u64| x * 2, x).get(), Ok(x * 2)),
                        _ => assert_eq!(
                            pool.map_chunked(|x: u64| x + 3, [x, x + 1], 1),
                            Ok(vec![x + 3, x + 4])
                        ),
                    }
                }
            });
        }
    });
}

/// `terminate` while maps run on other threads: every map returns (with
/// its results, or `PoolTerminated`), `join` returns, later maps fail
/// with `PoolTerminated`.
#[test]
fn terminate_and_join_while_maps_are_in_flight() {
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    let done = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (pool, done, stop) = (&pool, &done, &stop);
            s.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match pool.map_chunked(|x: u64| x + 1, 0..20_000u64, 500) {
                        Ok(v) => assert_eq!(v.len(), 20_000),
                        Err(TaskError::PoolTerminated) => return,
                        Err(e) => panic!("a map in flight at terminate: {e:?}"),
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        assert!(eventually(Duration::from_secs(30), || done
            .load(Ordering::SeqCst)
            >= 8));
        pool.terminate();
        pool.join();
        stop.store(true, Ordering::SeqCst);
    });
    assert_eq!(pool.apply(|x: u64| x, 1), Err(TaskError::PoolTerminated));
}

fn spin(x: u64) -> u64 {
    // Some work, so that tasks are still queued at the close.
    let mut h = x;
    for _ in 0..200_000 {
        h = h.wrapping_mul(6364136223846793005).wrapping_add(1);
    }
    std::hint::black_box(h);
    x + 1
}

/// `close` with tasks queued and running, then `join`: every task
/// submitted before the close finishes with its result, later ones fail
/// with `PoolClosed`, and `join` returns.
#[test]
fn close_and_join_finish_every_task_submitted_before() {
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    let pending: Vec<_> = (0..60u64).map(|x| pool.apply_async(spin, x)).collect();
    pool.close();
    assert_eq!(pool.apply(|x: u64| x, 1), Err(TaskError::PoolClosed));
    pool.join();
    for (x, r) in pending.into_iter().enumerate() {
        assert_eq!(r.get(), Ok(x as u64 + 1));
    }
}

/// This process's descriptors: all, and the eventfds among them.
fn descriptors() -> (usize, usize) {
    let mut all = 0;
    let mut eventfds = 0;
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        all += 1;
        if std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("eventfd")) {
            eventfds += 1;
        }
    }
    (all, eventfds)
}

/// Makes and ends pools every way (dropped idle, after close and join,
/// after terminate, with an `apply_async` left pending): their
/// descriptors before and after, `(all, eventfds)`.
fn pools_made_and_ended(rounds: u32) -> ((usize, usize), (usize, usize)) {
    // One pool first: whatever is made once a process (not per pool) is
    // in the count before.
    drop(Pool::new(1).unwrap());
    let before = descriptors();
    for round in 0..rounds {
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.map(|x: u64| x + 1, 0..100u64).unwrap().len(), 100);
        // The count sees a live pool's wake-up.
        assert!(descriptors().1 > before.1, "a live pool's eventfd");
        match round % 4 {
            0 => {}
            1 => {
                pool.close();
                pool.join();
            }
            2 => {
                pool.terminate();
                pool.join();
            }
            _ => {
                let pending = pool.apply_async(|x: u64| x, 3);
                drop(pool);
                assert!(matches!(
                    pending.get(),
                    Ok(3) | Err(TaskError::PoolTerminated)
                ));
            }
        }
    }
    (before, descriptors())
}

/// A pool's wake-up (now an eventfd) and everything else it opened are
/// closed when it ends, whichever way: checked in a process of its own,
/// where no other test opens descriptors meanwhile.
#[test]
fn ended_pools_leave_no_descriptor_behind() {
    let _w = watchdog(120);
    let (before, after) = mpkit::Process::spawn(pools_made_and_ended, 12)
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(
        after, before,
        "descriptors (all, eventfds) before and after 12 pools"
    );
}

/// Tasks submitted from several threads at once, then `shutdown` with
/// `cancel_pending`: each task ends (its result, or `Cancelled`), and
/// `shutdown(wait)` returns.
#[test]
fn executor_shutdown_with_tasks_from_many_threads_ends_every_task() {
    let _w = watchdog(60);
    let ex = Executor::new(2).unwrap();
    let tasks = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6u64)
            .map(|t| {
                let ex = &ex;
                s.spawn(move || {
                    (0..40u64)
                        .map(|i| (t * 100 + i, ex.submit(spin, t * 100 + i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    ex.shutdown(true, true);
    for (x, t) in tasks {
        assert!(t.done());
        match t.result() {
            Ok(r) => assert_eq!(r, x + 1),
            Err(TaskError::Cancelled) => {}
            Err(e) => panic!("task {x}: {e:?}"),
        }
    }
}
