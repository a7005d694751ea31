//! Synchronisation objects when another member misbehaves: stopped
//! (SIGSTOP, a debugger, a frozen cgroup) while it holds an object's
//! internal lock. Every call with a timeout returns within it (plus
//! scheduling slack), whatever the others do.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{eventually, watchdog};
use mpkit::Process;
use mpkit::process::ProcessState;
use mpkit::sync::{Barrier, BarrierTimeoutError, Condition, ConditionTimeoutError};

/// What a call may take past its timeout on a loaded CI machine.
const SLACK: Duration = Duration::from_millis(1000);

/// A barrier action that stops its own process: it runs holding the
/// barrier's internal lock, so the process stops holding it.
fn stop_self() {
    // SAFETY: raise(3) with a valid signal number.
    unsafe { libc::raise(libc::SIGSTOP) };
}

/// Waits until `member` is stopped; fails the test if it never is.
fn assert_stopped<R>(member: &Process<R>) {
    let stop = mpkit::signal::Signal::STOP;
    assert!(
        eventually(Duration::from_secs(20), || member.state()
            == ProcessState::Stopped(stop)),
        "the member did not stop inside the barrier's lock"
    );
}

/// Runs `call`, resuming `pid` after `rescue` if it has not returned by
/// then (so a call that hangs is reported with how long it took instead of
/// hanging the test); returns what it returned and how long it took.
fn timed<T>(pid: i32, rescue: Duration, call: impl FnOnce() -> T) -> (T, Duration) {
    let (done, waited) = mpsc::channel::<()>();
    let rescuer = std::thread::spawn(move || {
        if waited.recv_timeout(rescue).is_err() {
            // SAFETY: kill(2) with a pid this test spawned and a valid signal.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
    });
    let t = Instant::now();
    let r = call();
    let took = t.elapsed();
    let _ = done.send(());
    rescuer.join().unwrap();
    (r, took)
}

/// A party stopped while it holds the barrier's lock (inside its action)
/// does not stretch another party's `wait_timeout(50 ms)` that has not got
/// in yet: it times out, and the barrier is broken.
#[test]
fn a_party_stopped_inside_the_barrier_lock_never_stretches_a_timed_arrival() {
    let _w = watchdog(60);
    let barrier = Barrier::new(1).unwrap();
    let member = Process::spawn(
        |b: Barrier| b.with_action(stop_self).wait().is_ok(),
        barrier.try_clone().unwrap(),
    )
    .unwrap();
    assert_stopped(&member);
    let timeout = Duration::from_millis(50);
    let (r, took) = timed(member.pid(), Duration::from_secs(5), || {
        barrier.wait_timeout(timeout)
    });
    member.resume().unwrap();
    let mut member = member;
    assert!(member.join_timeout(Duration::from_secs(20)).unwrap());
    assert!(
        took < timeout + SLACK,
        "wait_timeout(50 ms) took {took:?} with a party stopped inside the lock"
    );
    assert!(matches!(r, Err(BarrierTimeoutError::Timeout)), "{r:?}");
    assert!(barrier.broken());
}

/// A party stopped inside the barrier's lock while another party sleeps in
/// `wait_timeout`: when the sleeper's timeout passes it cannot take the lock
/// to break the barrier, and still returns in time.
#[test]
fn a_party_stopped_inside_the_barrier_lock_never_stretches_a_timed_sleeper() {
    let _w = watchdog(60);
    let barrier = Barrier::new(2).unwrap();
    let member = Process::spawn(
        |b: Barrier| {
            // Arrive last, so that this party runs the action.
            assert!(eventually(Duration::from_secs(20), || b.n_waiting() == 1));
            b.with_action(stop_self).wait().is_ok()
        },
        barrier.try_clone().unwrap(),
    )
    .unwrap();
    let timeout = Duration::from_secs(2);
    let (r, took) = timed(member.pid(), Duration::from_secs(6), || {
        barrier.wait_timeout(timeout)
    });
    // Whether the member arrived and stopped inside the lock (had the
    // barrier broken before it arrived, it would never have run the action).
    let stop = mpkit::signal::Signal::STOP;
    let stopped = eventually(Duration::from_secs(20), || {
        member.state() == ProcessState::Stopped(stop)
    });
    member.resume().unwrap();
    let mut member = member;
    let _ = member.join_timeout(Duration::from_secs(20)).unwrap();
    assert!(
        took < timeout + SLACK,
        "wait_timeout(2 s) took {took:?} with a party stopped inside the lock"
    );
    assert!(stopped, "the member did not stop inside the barrier's lock");
    assert!(matches!(r, Err(BarrierTimeoutError::Timeout)), "{r:?}");
    assert!(barrier.broken());
}

/// Takes the condition's lock (once the parent waits, which releases it),
/// notifies, and stops holding it.
fn notify_and_stop(cond: Condition) {
    let mut g = cond.lock().unwrap();
    g.notify_all();
    stop_self();
    drop(g);
}

/// A member stopped holding a condition's lock does not stretch
/// `wait_timeout`: woken by that member's notify, the waiter cannot take
/// the lock again, and returns `Timeout` in time without it.
#[test]
fn a_member_stopped_holding_a_condition_lock_never_stretches_wait_timeout() {
    let _w = watchdog(60);
    let cond = Condition::new().unwrap();
    let g = cond.lock().unwrap();
    let member = Process::spawn(notify_and_stop, cond.try_clone().unwrap()).unwrap();
    let timeout = Duration::from_secs(2);
    let (r, took) = timed(member.pid(), Duration::from_secs(6), || {
        g.wait_timeout(timeout).map(|(_g, notified)| notified)
    });
    let stop = mpkit::signal::Signal::STOP;
    let stopped = eventually(Duration::from_secs(20), || {
        member.state() == ProcessState::Stopped(stop)
    });
    member.resume().unwrap();
    let mut member = member;
    member.join_timeout(Duration::from_secs(20)).unwrap();
    assert!(
        took < timeout + SLACK,
        "wait_timeout(2 s) took {took:?} with the lock's holder stopped"
    );
    assert!(stopped, "the member did not stop holding the lock");
    assert!(matches!(r, Err(ConditionTimeoutError::Timeout)), "{r:?}");
    // The lock was not left held by this thread: it can be taken again
    // now that the member is gone.
    drop(cond.lock_timeout(Duration::from_secs(5)).unwrap());
}
