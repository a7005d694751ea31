//! Process-shared synchronisation between real processes, including
//! processes killed while holding or waiting.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::watchdog;
use mpkit::Process;
use mpkit::process::JoinError;
use mpkit::shm::RawValue;
use mpkit::sync::{
    Barrier, BarrierError, BarrierTimeoutError, BoundedSemaphore, Condition, Event, Lock,
    LockError, LockTimeoutError, OverReleaseError, PermitError, RLock, ReleaseError, Semaphore,
    TryLockError,
};

const LONG: Duration = Duration::from_secs(10);

fn name(tag: &str) -> String {
    format!("mpkit_test_{}_{tag}", std::process::id())
}

/// Increments a plain (non-atomic) shared counter under a lock: any lost
/// update means the lock failed to exclude.
fn locked_increments((lock, counter, n): (Lock, RawValue<u64>, u32)) {
    for _ in 0..n {
        let _g = lock.lock().unwrap();
        counter.set(counter.get() + 1);
    }
}

#[test]
fn a_lock_excludes_across_processes() {
    let _w = watchdog(60);
    let lock = Lock::new().unwrap();
    let counter = RawValue::new(0u64).unwrap();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            Process::spawn(
                locked_increments,
                (
                    lock.try_clone().unwrap(),
                    counter.try_clone().unwrap(),
                    5_000,
                ),
            )
            .unwrap()
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(counter.get(), 20_000);
}

/// Holds `lock` until killed, after setting `held`.
fn hold_forever((lock, held): (Lock, Event)) {
    let _g = lock.lock().unwrap();
    held.set();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_killed_holder_does_not_deadlock_the_others() {
    let _w = watchdog(30);
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    let holder = Process::spawn(
        hold_forever,
        (lock.try_clone().unwrap(), held.try_clone().unwrap()),
    )
    .unwrap();
    assert!(held.wait(Some(LONG)).unwrap());
    // A waiter that is already blocked when the holder dies.
    let tid: RawValue<i32> = RawValue::new(0).unwrap();
    let waiter = Process::spawn(
        |(lock, tid): (Lock, RawValue<i32>)| {
            common::publish_tid(&tid);
            let g = lock.lock_timeout(Duration::from_secs(20)).unwrap();
            g.owner_died()
        },
        (lock.try_clone().unwrap(), tid.try_clone().unwrap()),
    )
    .unwrap();
    assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
    assert!(matches!(lock.release(), Err(ReleaseError::NotOwner)));
    common::assert_asleep_in_futex(waiter.pid(), &tid, LONG);
    holder.kill().unwrap();
    assert!(matches!(
        holder.join(),
        Err(JoinError::Signaled { signal: 9 })
    ));
    assert!(
        waiter.join().unwrap(),
        "the waiter must be told the holder died"
    );
    // After that, the lock is healthy.
    let g = lock.lock_timeout(LONG).unwrap();
    assert!(!g.owner_died());
}

#[test]
fn lock_errors() {
    let _w = watchdog(20);
    let lock = Lock::new().unwrap();
    assert_eq!(lock.release(), Err(ReleaseError::NotLocked));
    let g = lock.lock().unwrap();
    assert!(matches!(lock.lock(), Err(LockError::Deadlock)));
    assert!(lock.is_held_by_me());
    let child = Process::spawn(
        |lock: Lock| {
            let timed_out = matches!(
                lock.lock_timeout(Duration::from_millis(20)),
                Err(LockTimeoutError::Timeout)
            );
            let not_owner = lock.release() == Err(ReleaseError::NotOwner);
            (timed_out, not_owner)
        },
        lock.try_clone().unwrap(),
    )
    .unwrap();
    assert_eq!(child.join().unwrap(), (true, true));
    drop(g);
    assert!(lock.acquire(Some(Duration::ZERO)).unwrap());
    lock.release().unwrap();
}

#[test]
fn named_locks_for_unrelated_processes() {
    let _w = watchdog(20);
    let n = name("lock");
    let lock = Lock::create(&n).unwrap();
    let g = lock.lock().unwrap();
    let child = Process::spawn(
        |n: String| {
            let lock = Lock::open(&n).unwrap();
            lock.lock_timeout(LONG).map(|g| g.owner_died()).is_ok()
        },
        n.clone(),
    )
    .unwrap();
    drop(g);
    assert!(child.join().unwrap());
}

#[test]
fn an_rlock_belongs_to_one_thread_of_one_process() {
    let _w = watchdog(20);
    let r = RLock::new().unwrap();
    assert!(r.acquire(None).unwrap());
    assert!(r.acquire(None).unwrap());
    let child = Process::spawn(
        |r: RLock| {
            (
                r.release() == Err(ReleaseError::NotOwner),
                matches!(r.try_lock(), Err(TryLockError::WouldBlock)),
            )
        },
        r.try_clone().unwrap(),
    )
    .unwrap();
    assert_eq!(child.join().unwrap(), (true, true));
    let other_thread = std::thread::scope(|s| s.spawn(|| r.release()).join().unwrap());
    assert_eq!(other_thread, Err(ReleaseError::NotOwner));
    r.release().unwrap();
    r.release().unwrap();
    assert_eq!(r.release(), Err(ReleaseError::NotLocked));
}

#[test]
fn a_killed_rlock_holder_is_reported() {
    let _w = watchdog(20);
    let r = RLock::new().unwrap();
    let child = Process::spawn(
        |r: RLock| -> () {
            let _a = r.lock().unwrap();
            let _b = r.lock().unwrap();
            // SAFETY: raise(2): die holding the lock twice.
            unsafe { libc::raise(libc::SIGKILL) };
        },
        r.try_clone().unwrap(),
    )
    .unwrap();
    assert!(child.join().is_err());
    let g = r.lock_timeout(LONG).unwrap();
    assert!(g.owner_died());
    drop(g);
    assert_eq!(
        r.release(),
        Err(ReleaseError::NotLocked),
        "the dead owner's depth is forgotten"
    );
}

#[test]
fn semaphore_p_and_v_across_processes() {
    let _w = watchdog(30);
    let sem = Semaphore::new(0).unwrap();
    assert!(!sem.acquire_timeout(Duration::from_millis(10)).unwrap());
    let child = Process::spawn(
        |sem: Semaphore| {
            for _ in 0..3 {
                sem.acquire().unwrap();
            }
            sem.value()
        },
        sem.try_clone().unwrap(),
    )
    .unwrap();
    for _ in 0..5 {
        sem.release().unwrap();
    }
    assert!(child.join().unwrap() <= 2);
    assert_eq!(sem.value(), 2, "the child took 3 of the 5");
}

#[test]
fn a_semaphore_limits_concurrency() {
    let _w = watchdog(60);
    let sem = Semaphore::new(2).unwrap();
    let inside = RawValue::new(0u32).unwrap();
    let peak = RawValue::new(0u32).unwrap();
    use std::sync::atomic::Ordering;
    let workers: Vec<_> = (0..5)
        .map(|_| {
            Process::spawn(
                |(sem, inside, peak): (Semaphore, RawValue<u32>, RawValue<u32>)| {
                    for _ in 0..200 {
                        sem.acquire().unwrap();
                        let now = inside.atomic().fetch_add(1, Ordering::SeqCst) + 1;
                        peak.atomic().fetch_max(now, Ordering::SeqCst);
                        std::hint::spin_loop();
                        inside.atomic().fetch_sub(1, Ordering::SeqCst);
                        sem.release().unwrap();
                    }
                },
                (
                    sem.try_clone().unwrap(),
                    inside.try_clone().unwrap(),
                    peak.try_clone().unwrap(),
                ),
            )
            .unwrap()
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert!(peak.get() <= 2, "peak {}", peak.get());
    assert_eq!(sem.value(), 2);
}

#[test]
fn bounded_semaphores_refuse_over_release() {
    let s = BoundedSemaphore::new(2).unwrap();
    assert_eq!(s.release(), Err(OverReleaseError { limit: 2 }));
    s.acquire().unwrap();
    s.release().unwrap();
    assert_eq!(s.value(), 2);
    let n = name("bsem");
    let _b = BoundedSemaphore::create(&n, 1).unwrap();
    assert!(
        Semaphore::open(&n).is_err(),
        "a bounded semaphore is not a plain one"
    );
}

/// Takes two permits, says so, and holds them until killed.
fn hold_two_permits((sem, held): (BoundedSemaphore, Event)) {
    let _a = sem.permit().unwrap();
    let _b = sem.permit().unwrap();
    held.set();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn permits_of_a_killed_holder_come_back() {
    let _w = watchdog(30);
    let sem = BoundedSemaphore::new(2).unwrap();
    let held = Event::new().unwrap();
    let holder = Process::spawn(
        hold_two_permits,
        (sem.try_clone().unwrap(), held.try_clone().unwrap()),
    )
    .unwrap();
    assert!(held.wait(Some(LONG)).unwrap());
    assert_eq!(sem.value(), 0);
    assert!(matches!(sem.try_permit(), Err(PermitError::WouldBlock)));
    // A waiter that is asleep when the holder dies: nobody wakes it but
    // its own look for dead holders.
    let tid: RawValue<i32> = RawValue::new(0).unwrap();
    let waiter = Process::spawn(
        |(sem, tid): (BoundedSemaphore, RawValue<i32>)| {
            common::publish_tid(&tid);
            let p = sem.permit_timeout(Duration::from_secs(20));
            p.is_ok()
        },
        (sem.try_clone().unwrap(), tid.try_clone().unwrap()),
    )
    .unwrap();
    common::assert_asleep_in_futex(waiter.pid(), &tid, LONG);
    holder.kill().unwrap();
    assert!(matches!(
        holder.join(),
        Err(JoinError::Signaled { signal: 9 })
    ));
    assert!(
        waiter.join().unwrap(),
        "the dead holder's permits came back"
    );
    // Both units are free again (the waiter dropped the one it took), and
    // neither came back twice: the bound holds.
    assert_eq!(sem.value(), 2);
    let _a = sem.try_permit().unwrap();
    let _b = sem.try_permit().unwrap();
    assert!(matches!(sem.try_permit(), Err(PermitError::WouldBlock)));
    assert_eq!(sem.value(), 0);
}

#[test]
fn a_permit_of_a_killed_unreaped_holder_comes_back_to_a_timed_wait() {
    let _w = watchdog(30);
    let sem = Semaphore::new(1).unwrap();
    let held = Event::new().unwrap();
    let holder = Process::spawn(
        |(sem, held): (Semaphore, Event)| {
            let _p = sem.permit().unwrap();
            held.set();
            std::thread::sleep(Duration::from_secs(600));
        },
        (sem.try_clone().unwrap(), held.try_clone().unwrap()),
    )
    .unwrap();
    assert!(held.wait(Some(LONG)).unwrap());
    assert!(matches!(
        sem.permit_timeout(Duration::from_millis(20)),
        Err(PermitError::Timeout)
    ));
    holder.kill().unwrap();
    // Not reaped yet: a zombie holds nothing.
    let p = sem.permit_timeout(LONG).unwrap();
    drop(p);
    assert_eq!(sem.value(), 1);
    assert!(matches!(
        holder.join(),
        Err(JoinError::Signaled { signal: 9 })
    ));
}

#[test]
fn permits_of_several_killed_holders_come_back_exactly_once() {
    let _w = watchdog(60);
    // Unbounded, so a permit given back twice would show in the value.
    let sem = Semaphore::new(4).unwrap();
    let held = Semaphore::new(0).unwrap();
    let holders: Vec<_> = (0..4)
        .map(|_| {
            Process::spawn(
                |(sem, held): (Semaphore, Semaphore)| {
                    let _p = sem.permit().unwrap();
                    held.release().unwrap();
                    std::thread::sleep(Duration::from_secs(600));
                },
                (sem.try_clone().unwrap(), held.try_clone().unwrap()),
            )
            .unwrap()
        })
        .collect();
    for _ in 0..4 {
        assert!(held.acquire_timeout(LONG).unwrap());
    }
    assert_eq!(sem.value(), 0);
    // Reclaimers racing each other: each reads the value (which reclaims)
    // until it sees every permit back.
    let go = Event::new().unwrap();
    let racers: Vec<_> = (0..3)
        .map(|_| {
            Process::spawn(
                |(sem, go): (Semaphore, Event)| {
                    assert!(go.wait(Some(Duration::from_secs(20))).unwrap());
                    let end = std::time::Instant::now() + Duration::from_secs(20);
                    while sem.value() < 4 && std::time::Instant::now() < end {
                        std::hint::spin_loop();
                    }
                    sem.value()
                },
                (sem.try_clone().unwrap(), go.try_clone().unwrap()),
            )
            .unwrap()
        })
        .collect();
    for h in holders {
        h.kill().unwrap();
        assert!(matches!(h.join(), Err(JoinError::Signaled { signal: 9 })));
    }
    go.set();
    for r in racers {
        assert_eq!(r.join().unwrap(), 4);
    }
    assert_eq!(sem.value(), 4, "each permit came back once");
}

#[test]
fn a_plain_acquire_is_nobodys_and_does_not_come_back() {
    let _w = watchdog(30);
    let sem = Semaphore::new(1).unwrap();
    let held = Event::new().unwrap();
    let taker = Process::spawn(
        |(sem, held): (Semaphore, Event)| {
            sem.acquire().unwrap();
            held.set();
            std::thread::sleep(Duration::from_secs(600));
        },
        (sem.try_clone().unwrap(), held.try_clone().unwrap()),
    )
    .unwrap();
    assert!(held.wait(Some(LONG)).unwrap());
    taker.kill().unwrap();
    assert!(matches!(
        taker.join(),
        Err(JoinError::Signaled { signal: 9 })
    ));
    // A consumed signal is not handed back: releasing is anyone's job.
    assert_eq!(sem.value(), 0);
    assert!(!sem.acquire_timeout(Duration::from_millis(10)).unwrap());
}

#[test]
fn events_wake_waiters_in_other_processes() {
    let _w = watchdog(20);
    let go = Event::new().unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let tid: RawValue<i32> = RawValue::new(0).unwrap();
            let waiter = Process::spawn(
                |(e, tid): (Event, RawValue<i32>)| {
                    common::publish_tid(&tid);
                    e.wait(Some(Duration::from_secs(20))).unwrap()
                },
                (go.try_clone().unwrap(), tid.try_clone().unwrap()),
            )
            .unwrap();
            (waiter, tid)
        })
        .collect();
    assert!(!go.is_set());
    // Set only once every waiter is asleep on the event, so that set has
    // to wake them (an early set would let them return without waiting).
    for (waiter, tid) in &waiters {
        common::assert_asleep_in_futex(waiter.pid(), tid, LONG);
    }
    let waiters = waiters.into_iter().map(|(waiter, _)| waiter);
    go.set();
    for w in waiters {
        assert!(w.join().unwrap());
    }
    go.clear();
    assert!(!go.wait(Some(Duration::from_millis(10))).unwrap());
}

#[test]
fn condition_producer_consumer() {
    let _w = watchdog(30);
    let cond = Condition::new().unwrap();
    let items = RawValue::new(0u32).unwrap();
    let consumer = Process::spawn(
        |(cond, items): (Condition, RawValue<u32>)| {
            let mut taken = 0;
            let mut g = cond.lock().unwrap();
            while taken < 100 {
                assert!(
                    g.wait_for(|| items.get() > 0, Some(Duration::from_secs(20)))
                        .unwrap()
                );
                items.set(items.get() - 1);
                taken += 1;
                g.notify_all();
            }
            taken
        },
        (cond.try_clone().unwrap(), items.try_clone().unwrap()),
    )
    .unwrap();
    for _ in 0..100 {
        let mut g = cond.lock().unwrap();
        assert!(
            g.wait_for(|| items.get() < 5, Some(Duration::from_secs(20)))
                .unwrap()
        );
        items.set(items.get() + 1);
        g.notify(1);
    }
    assert_eq!(consumer.join().unwrap(), 100);
    assert_eq!(items.get(), 0);
}

#[test]
fn condition_survives_a_killed_waiter_and_a_killed_holder() {
    let _w = watchdog(30);
    let cond = Condition::new().unwrap();
    let waiting = Event::new().unwrap();
    // Killed while waiting: nothing is left held.
    let waiter = Process::spawn(
        |(cond, waiting): (Condition, Event)| {
            let mut g = cond.lock().unwrap();
            waiting.set();
            let _ = g.wait(None);
        },
        (cond.try_clone().unwrap(), waiting.try_clone().unwrap()),
    )
    .unwrap();
    assert!(waiting.wait(Some(LONG)).unwrap());
    // The waiter released the lock to wait, so we can take it.
    let mut g = cond.lock_timeout(LONG).unwrap();
    waiter.kill().unwrap();
    assert!(waiter.join().is_err());
    g.notify_all();
    assert!(!g.wait(Some(Duration::from_millis(10))).unwrap());
    drop(g);
    // Killed while holding the lock: the next holder is told.
    let holder = Process::spawn(
        |cond: Condition| -> () {
            let _g = cond.lock().unwrap();
            // SAFETY: raise(2): die holding the condition's lock.
            unsafe { libc::raise(libc::SIGKILL) };
        },
        cond.try_clone().unwrap(),
    )
    .unwrap();
    assert!(holder.join().is_err());
    assert!(cond.lock_timeout(LONG).unwrap().owner_died());
}

static ACTION_RAN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn mark_action() {
    ACTION_RAN.store(true, std::sync::atomic::Ordering::SeqCst);
}

fn barrier_party(b: Barrier) -> (u32, bool) {
    let b = b.with_action(mark_action);
    let index = b.wait_timeout(Duration::from_secs(20)).unwrap();
    (index, ACTION_RAN.load(std::sync::atomic::Ordering::SeqCst))
}

#[test]
fn a_barrier_releases_all_parties_with_distinct_indexes() {
    let _w = watchdog(30);
    let barrier = Barrier::new(4).unwrap();
    let parties: Vec<_> = (0..4)
        .map(|_| Process::spawn(barrier_party, barrier.try_clone().unwrap()).unwrap())
        .collect();
    let results: Vec<(u32, bool)> = parties.into_iter().map(|p| p.join().unwrap()).collect();
    let indexes: BTreeSet<u32> = results.iter().map(|r| r.0).collect();
    assert_eq!(indexes, (0..4).collect());
    assert_eq!(
        results.iter().filter(|r| r.1).count(),
        1,
        "the action runs once, in the last to arrive"
    );
    assert!(results.iter().any(|r| r.0 == 3 && r.1));
    assert_eq!(barrier.n_waiting(), 0);
}

/// A barrier wait in a child, its error as text (an error that may carry
/// an `io::Error` does not cross processes).
fn wait_in_child(b: Barrier) -> Result<u32, String> {
    b.wait_timeout(Duration::from_secs(20))
        .map_err(|e| e.to_string())
}

#[test]
fn a_barrier_timeout_breaks_it_for_everyone_until_reset() {
    let _w = watchdog(30);
    let barrier = Barrier::new(3).unwrap();
    let other = Process::spawn(wait_in_child, barrier.try_clone().unwrap()).unwrap();
    // Wait until the other party is inside, then time out.
    while barrier.n_waiting() == 0 {
        std::thread::yield_now();
    }
    assert!(matches!(
        barrier.wait_timeout(Duration::from_millis(20)),
        Err(BarrierTimeoutError::Timeout)
    ));
    assert_eq!(
        other.join().unwrap(),
        Err(BarrierTimeoutError::Broken.to_string())
    );
    assert!(barrier.broken());
    assert!(matches!(barrier.wait(), Err(BarrierError::Broken)));
    barrier.reset().unwrap();
    assert!(!barrier.broken());
    let two = Barrier::new(1).unwrap();
    assert_eq!(two.wait().unwrap(), 0);
    barrier.abort().unwrap();
    assert!(matches!(barrier.wait(), Err(BarrierError::Broken)));
}

static WAITED_INSIDE: std::sync::Mutex<Option<Barrier>> = std::sync::Mutex::new(None);

/// An action that waits at its own barrier.
fn wait_inside() {
    let inner = WAITED_INSIDE.lock().unwrap();
    let b = inner.as_ref().unwrap();
    assert!(matches!(b.wait(), Err(BarrierError::Deadlock)));
    assert!(matches!(b.abort(), Err(LockError::Deadlock)));
}

#[test]
fn a_barrier_needs_a_party() {
    assert!(matches!(
        Barrier::new(0),
        Err(mpkit::shm::ShmError::NoParties)
    ));
}

#[test]
fn a_barrier_action_that_uses_its_barrier_gets_an_error() {
    let barrier = Barrier::new(1).unwrap();
    *WAITED_INSIDE.lock().unwrap() = Some(barrier.try_clone().unwrap());
    let barrier = barrier.with_action(wait_inside);
    assert_eq!(barrier.wait().unwrap(), 0);
    assert!(!barrier.broken());
}

#[test]
fn a_killed_barrier_party_does_not_deadlock_the_others() {
    let _w = watchdog(30);
    let barrier = Barrier::new(3).unwrap();
    // One party arrives and is killed while waiting.
    let doomed = Process::spawn(wait_in_child, barrier.try_clone().unwrap()).unwrap();
    while barrier.n_waiting() == 0 {
        std::thread::yield_now();
    }
    doomed.kill().unwrap();
    assert!(matches!(
        doomed.join(),
        Err(JoinError::Signaled { signal: 9 })
    ));
    // It had arrived, so the remaining two complete the barrier.
    let other = Process::spawn(wait_in_child, barrier.try_clone().unwrap()).unwrap();
    let mine = barrier.wait_timeout(Duration::from_secs(20)).unwrap();
    let theirs = other.join().unwrap().unwrap();
    assert_eq!(BTreeSet::from([mine, theirs]), BTreeSet::from([1, 2]));
    // And the barrier is ready for the next round.
    assert_eq!(barrier.n_waiting(), 0);
    assert!(!barrier.broken());
}

/// glibc's `__kind` word sits 16 bytes into a `pthread_mutex_t` (x86-64 and
/// aarch64); the lock cell of a lock, condition or barrier starts at 64.
const KIND_AT: u64 = 64 + 16;
/// What mpkit writes there for an error-checking lock: type 2, robust 16,
/// process-shared 128.
const ERRORCHECK_KIND: i32 = 2 | 16 | 128;

/// Kind words another process might write: each is refused.
const HOSTILE_KINDS: [(&str, i32); 5] = [
    ("private", ERRORCHECK_KIND & !128),
    ("not robust", ERRORCHECK_KIND & !16),
    ("private and not robust", 2),
    ("recursive", 1 | 16 | 128),
    ("garbage", -1),
];

/// Writes `kind` at byte `at` of the named object, as another process
/// scribbling on `/dev/shm/NAME` would.
fn rewrite_kind((name, at, kind): (String, u64, i32)) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .expect("open the object's file");
    f.write_all_at(&kind.to_le_bytes(), at)
        .expect("rewrite the kind");
}

fn rewrite_in_child(name: &str, at: u64, kind: i32) {
    Process::spawn(rewrite_kind, (name.to_string(), at, kind))
        .expect("spawn the scribbler")
        .join()
        .expect("the scribbler ran");
}

/// Another process rewrites a lock's mutex as private (its wake-ups would
/// never reach another process), not robust (a dead holder would block
/// everyone for good), of another type, or garbage: opening it is
/// refused, and every lock operation on a handle opened before reports
/// `Corrupt` without handing the mutex to glibc.
#[test]
fn a_lock_whose_mutex_another_process_rewrote_is_refused() {
    let _w = watchdog(60);
    for (what, kind) in HOSTILE_KINDS {
        let n = name("rewritten");
        let lock = Lock::create(&n).unwrap();
        rewrite_in_child(&n, KIND_AT, kind);
        match Lock::open(&n) {
            Err(mpkit::shm::ShmError::Corrupt(why)) => assert!(why.contains("lock"), "{why}"),
            other => panic!("{what}: open gave {other:?}"),
        }
        assert!(matches!(lock.lock(), Err(LockError::Corrupt)), "{what}");
        assert!(
            matches!(lock.try_lock(), Err(TryLockError::Corrupt)),
            "{what}"
        );
        assert!(
            matches!(lock.lock_timeout(LONG), Err(LockTimeoutError::Corrupt)),
            "{what}"
        );
        assert!(
            matches!(lock.acquire(None), Err(LockError::Corrupt)),
            "{what}"
        );
        assert!(!lock.is_held_by_me(), "{what}");
    }
}

/// The same for the locks inside a condition and a barrier.
#[test]
fn a_condition_or_barrier_whose_mutex_was_rewritten_is_refused() {
    let _w = watchdog(60);
    let (what, kind) = HOSTILE_KINDS[0];
    let n = name("cond-rewritten");
    let cond = Condition::create(&n).unwrap();
    rewrite_in_child(&n, KIND_AT, kind);
    assert!(
        matches!(Condition::open(&n), Err(mpkit::shm::ShmError::Corrupt(_))),
        "{what}"
    );
    assert!(matches!(cond.lock(), Err(LockError::Corrupt)));
    assert!(matches!(
        cond.lock_timeout(LONG),
        Err(LockTimeoutError::Corrupt)
    ));
    let n = name("barrier-rewritten");
    let barrier = Barrier::create(&n, 1).unwrap();
    rewrite_in_child(&n, KIND_AT, kind);
    assert!(matches!(
        Barrier::open(&n),
        Err(mpkit::shm::ShmError::Corrupt(_))
    ));
    assert!(matches!(barrier.wait(), Err(BarrierError::Corrupt)));
    assert!(matches!(
        barrier.wait_timeout(LONG),
        Err(BarrierTimeoutError::Corrupt)
    ));
    assert!(matches!(barrier.abort(), Err(LockError::Corrupt)));
}

/// A process rewrites the kind while this one holds the lock: releasing
/// writes it back, so glibc unlocks the way it locked and the lock stays
/// usable by every process.
#[test]
fn a_holder_puts_back_a_kind_rewritten_while_it_held_the_lock() {
    let _w = watchdog(60);
    let n = name("rewritten-held");
    let lock = Lock::create(&n).unwrap();
    let held = lock.lock().unwrap();
    rewrite_in_child(&n, KIND_AT, HOSTILE_KINDS[0].1);
    drop(held);
    let child = Process::spawn(
        |n: String| {
            let lock = Lock::open(&n).map_err(|e| e.to_string())?;
            let g = lock.lock_timeout(LONG).map_err(|e| e.to_string())?;
            Ok::<bool, String>(g.owner_died())
        },
        n.clone(),
    )
    .unwrap();
    assert_eq!(child.join().unwrap(), Ok(false));
    assert!(!lock.lock().unwrap().owner_died());
}
