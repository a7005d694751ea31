//! A lock whose mutex word another process rewrote to name a holder: taken
//! over (as after a crashed holder) when that thread does not exist, still
//! waited for when it does.

mod common;

use std::time::{Duration, Instant};

use common::watchdog;
use mpkit::shm::Value;
use mpkit::sync::{Lock, LockTimeoutError, RLock};

/// A unique name for this test run.
fn name(tag: &str) -> String {
    format!("mpkit_test_{}_{tag}", std::process::id())
}

/// The robust mutex's futex word: first in the lock cell, at offset 64.
const LOCK_WORD: u64 = 64;

/// A thread id no thread can have: above Linux's `PID_MAX_LIMIT` (2^22),
/// inside the word's 30 bits of thread id.
const NO_SUCH_THREAD: u32 = 0x3fff_0000;

/// Another process writes `tid` as the mutex's owner, as any process of
/// the user may.
fn name_owner_from_another_process(name: &str, tid: u32) {
    common::scribble_from_another_process(name, vec![(LOCK_WORD, tid.to_le_bytes().to_vec())]);
}

#[test]
fn a_lock_held_by_no_thread_is_taken_with_owner_died() {
    let _w = watchdog(30);
    let n = name("ghost_lock");
    let lock = Lock::create(&n).unwrap();
    name_owner_from_another_process(&n, NO_SUCH_THREAD);
    assert!(matches!(
        lock.try_lock(),
        Err(mpkit::sync::TryLockError::WouldBlock)
    ));
    let began = Instant::now();
    let held = lock.lock_timeout(Duration::from_secs(10)).unwrap();
    assert!(held.owner_died(), "taken over as after a crashed holder");
    eprintln!("taken over after {:?}", began.elapsed());
    drop(held);
    // Then an ordinary lock again.
    let again = lock.lock().unwrap();
    assert!(!again.owner_died());
}

#[test]
fn a_blocking_lock_held_by_no_thread_returns() {
    // Without a timeout too: the watchdog fails a hang.
    let _w = watchdog(30);
    let n = name("ghost_rlock");
    let lock = RLock::create(&n).unwrap();
    name_owner_from_another_process(&n, NO_SUCH_THREAD);
    assert!(lock.lock().unwrap().owner_died());
    let v = Value::create(&name("ghost_value"), 5u64).unwrap();
    name_owner_from_another_process(&name("ghost_value"), NO_SUCH_THREAD);
    let g = v.lock().unwrap();
    assert!(g.owner_died());
    assert_eq!(*g, 5);
}

#[test]
fn a_lock_held_by_a_live_thread_is_still_waited_for() {
    let _w = watchdog(30);
    let n = name("live_owner_lock");
    let lock = Lock::create(&n).unwrap();
    // Thread 1 (init) always exists: its name in the word is trusted, and
    // the wait times out rather than take a lock a live thread may hold.
    name_owner_from_another_process(&n, 1);
    assert!(matches!(
        lock.lock_timeout(Duration::from_millis(300)),
        Err(LockTimeoutError::Timeout)
    ));
    // Its word is left as it was.
    name_owner_from_another_process(&n, 0);
    assert!(!lock.lock().unwrap().owner_died());
}
