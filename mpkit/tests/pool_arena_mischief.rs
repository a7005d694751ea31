//! Tasks that turn on their worker's arena (find its memfd, cut it, fork
//! and carry on as the worker over it), between real processes: a task's
//! mischief may fail its own chunk, never crash the pool, hang it, leak
//! its memory, or change another chunk's result.

#[path = "common/arena.rs"]
mod arena;
mod common;

use arena::*;
use common::watchdog;
use mpkit::Pool;
use mpkit::pool::TaskError;

/// The arena's size is sealed: a task that finds its worker's arena
/// cannot cut it (`ftruncate` is refused), so nobody's mapping of it can
/// fault past its end.
#[test]
fn a_task_cannot_cut_its_workers_arena() {
    let _s = serial();
    let _w = watchdog(60);
    let pool = Pool::new(1).unwrap();
    let errno = pool
        .apply(
            |()| {
                let fd = arena_fd().expect("the worker has an arena");
                // SAFETY: ftruncate on a descriptor of this process.
                match unsafe { libc::ftruncate(fd, 0) } {
                    0 => 0,
                    _ => std::io::Error::last_os_error().raw_os_error().unwrap_or(-1),
                }
            },
            (),
        )
        .unwrap();
    assert_eq!(errno, libc::EPERM, "the arena could be cut");
}

/// A task that cuts its worker's arena (ftruncate to 0, as any code in
/// the worker may): no SIGBUS kills the pool, and every result is right
/// (that worker's later chunks and replies go through its socket).
#[test]
fn a_task_that_cuts_its_arena_breaks_nothing() {
    let _s = serial();
    let _w = watchdog(60);
    let pool = Pool::new(1).unwrap();
    let items: Vec<(u32, Vec<u8>)> = (0..12)
        .map(|i| (i, pattern(MIN * 3 + i as usize)))
        .collect();
    let out = pool.map_outcomes_chunked(
        |(i, v): (u32, Vec<u8>)| {
            if i == 3 {
                let fd = arena_fd().expect("a worker has an arena");
                // SAFETY: ftruncate on a descriptor of this process (a
                // pool that seals its arenas refuses it: fine too).
                unsafe { libc::ftruncate(fd, 0) };
            }
            v
        },
        items.clone(),
        1,
    );
    for ((_, v), o) in items.iter().zip(&out) {
        assert_eq!(o.as_ref().ok(), Some(v));
    }
    // The pool (and this process) carry on.
    assert_eq!(pool.map(|x: u8| x + 1, [1, 2]).unwrap(), [2, 3]);
}

/// A task that cuts its arena and makes it whole again (its pages are
/// zeros, no SIGBUS anywhere): every result is still right.
#[test]
fn a_task_that_cuts_and_regrows_its_arena_breaks_nothing() {
    let _s = serial();
    let _w = watchdog(60);
    let pool = Pool::new(1).unwrap();
    let items: Vec<(u32, Vec<u8>)> = (0..12)
        .map(|i| (i, pattern(MIN * 5 + i as usize)))
        .collect();
    let out = pool
        .map_chunked(
            |(i, v): (u32, Vec<u8>)| {
                if i % 4 == 1 {
                    let fd = arena_fd().expect("a worker has an arena");
                    // SAFETY: ftruncate on a descriptor of this process
                    // (refused where the pool seals its arenas).
                    unsafe {
                        libc::ftruncate(fd, 0);
                        libc::ftruncate(fd, 2 * HALF as libc::off_t);
                    }
                }
                v
            },
            items.clone(),
            1,
        )
        .unwrap();
    assert!(out.iter().zip(&items).all(|(o, (_, v))| o == v));
}

/// A forked child of a task cuts the arena just as the worker's next reply
/// body lands there (it watches for it), racing the pool's copy. The
/// pool must not die; that chunk's result is right, or it fails with an
/// error that says what happened (the worker's shared memory was cut),
/// not "N bytes that are no reply"; every other result is right.
#[test]
fn an_arena_cut_while_the_pool_reads_a_reply_says_so() {
    let _s = serial();
    let _w = watchdog(120);
    const N: usize = HALF - 64;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let pool = Pool::new(1).unwrap();
        let out = pool.map_outcomes_chunked(
            |i: u8| {
                if i == 1 {
                    // SAFETY: the child only watches, truncates and exits.
                    if unsafe { libc::fork() } == 0 {
                        let fd = arena_fd().unwrap();
                        let arena = map_arena(fd);
                        if wait_byte(arena, HALF + N - 16, 2) {
                            // SAFETY: ftruncate on our descriptor, then _exit.
                            unsafe { libc::ftruncate(fd, 0) };
                        }
                        // SAFETY: leaving the forked child at once.
                        unsafe { libc::_exit(0) };
                    }
                }
                vec![i; N]
            },
            0..5u8,
            1,
        );
        for (i, o) in out.iter().enumerate() {
            match o {
                Ok(v) => assert!(*v == vec![i as u8; N], "item {i}: wrong result"),
                Err(e) if i == 2 => seen.push(e.to_string()),
                Err(e) => panic!("item {i} failed: {e:?}"),
            }
        }
        assert_eq!(pool.map(|x: u8| x + 1, [1, 2]).unwrap(), [2, 3]);
    }
    for e in &seen {
        assert!(
            ["shared memory", "arena", "truncat", "cut"]
                .iter()
                .any(|w| e.contains(w)),
            "a reply lost to a cut arena fails with an unclear error: {e}"
        );
    }
}

/// A task whose forked child carries on as the worker (returns from the
/// task too), as in `pool_hostile`, with replies big enough for the
/// arena: the child's late reply body to item 1 must never be taken as
/// item 2's. The child waits (watching the arena) until item 2's body is
/// there, then returns, writing its own over it before the pool copies
/// it (or over a later chunk's). Each item is right, or (from item 2 on:
/// the one the worker holds when the late reply comes) fails with
/// `BadReply`; never carries item 1's bytes.
#[test]
fn a_fork_returning_twice_never_gives_its_reply_to_another_chunk() {
    let _s = serial();
    let _w = watchdog(120);
    const N: usize = 64 << 10;
    for attempt in 0..30 {
        let pool = Pool::new(1).unwrap();
        let out = pool.map_outcomes_chunked(
            |i: u8| {
                if i == 1 {
                    // SAFETY: fork in a single-purpose worker; both return.
                    if unsafe { libc::fork() } == 0 {
                        let arena = map_arena(arena_fd().unwrap());
                        wait_byte(arena, HALF + N - 16, 2);
                    }
                }
                vec![i; N]
            },
            0..6u8,
            1,
        );
        for (i, o) in out.iter().enumerate() {
            match o {
                Ok(v) => assert!(
                    v.len() == N && v.iter().all(|&b| b == i as u8),
                    "attempt {attempt}: item {i} came back with another chunk's bytes \
                     ({} of its {} bytes are not {i})",
                    v.iter().filter(|&&b| b != i as u8).count(),
                    v.len()
                ),
                // The chunk the worker holds when the late reply comes;
                // or, when it comes between chunks, the next one, handed
                // to the worker the pool has just killed for it.
                Err(TaskError::BadReply { .. } | TaskError::WorkerDied { .. }) if i >= 2 => {}
                Err(e) => panic!("attempt {attempt}: item {i}: {e:?}"),
            }
        }
    }
}

/// This process's `VmSize` and `VmRSS`, in KiB.
fn vm_kib() -> (i64, i64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> i64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("VmSize:"), field("VmRSS:"))
}

/// In a child process: 20 workers in turn (each retired after 2 chunks of
/// 1 MiB), each of which has its arena cut by its first task when `cut`;
/// returns the growth of (`VmSize`, `VmRSS`) in KiB over the pool's life.
fn memory_after_workers_with_cut_arenas(cut: bool) -> (i64, i64) {
    let run = |cut: bool| {
        let pool = Pool::builder()
            .processes(1)
            .max_tasks_per_child(2)
            .build()
            .unwrap();
        let items: Vec<(bool, Vec<u8>)> = (0..40)
            .map(|i| (cut && i % 2 == 0, vec![i as u8; 1 << 20]))
            .collect();
        let out = pool
            .map_chunked(
                |(cut, v): (bool, Vec<u8>)| {
                    if cut {
                        let fd = arena_fd().expect("a worker has an arena");
                        // SAFETY: ftruncate on a descriptor of this process
                        // (refused where the pool seals its arenas).
                        unsafe { libc::ftruncate(fd, 0) };
                    }
                    v.len()
                },
                items,
                1,
            )
            .unwrap();
        assert_eq!(out, vec![1 << 20; 40]);
    };
    // Once without measuring: allocator and thread caches warm up.
    run(false);
    let before = vm_kib();
    run(cut);
    let after = vm_kib();
    (after.0 - before.0, after.1 - before.1)
}

/// Workers whose tasks cut their arenas leave nothing behind in the pool's
/// process once they are gone: no mapping, no memory. (At 93999da the
/// pool writes the next payload into its cut mapping, which its SIGBUS
/// handler has replaced with private zeros, and never unmaps it: about
/// 4 MiB of address space and the payload's bytes per such worker.)
#[test]
fn workers_with_cut_arenas_leave_no_memory_behind() {
    let _s = serial();
    let _w = watchdog(120);
    let clean = mpkit::Process::spawn(memory_after_workers_with_cut_arenas, false)
        .unwrap()
        .join()
        .unwrap();
    let cut = mpkit::Process::spawn(memory_after_workers_with_cut_arenas, true)
        .unwrap()
        .join()
        .unwrap();
    eprintln!("growth (VmSize, VmRSS) KiB: clean {clean:?}, cut {cut:?}");
    assert!(
        cut.0 - clean.0 < 16 << 10 && cut.1 - clean.1 < 8 << 10,
        "20 workers with cut arenas left (VmSize, VmRSS) KiB {cut:?} against {clean:?} without"
    );
}
