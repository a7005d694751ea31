//! Shared memory another process truncates, or that `/dev/shm` has no room
//! for: an error in this process, never `SIGBUS`.
//!
//! Without mpkit's `SIGBUS` handler these tests do not fail politely: the
//! test binary dies of `SIGBUS` at the first access past the new end.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::watchdog;
use mpkit::Process;
use mpkit::queue::{GetTimeoutError, JoinableQueue, PutError, PutTimeoutError, Queue};
use mpkit::shm::{Array, RawValue, SharedMemory, ShmError, Value};
use mpkit::sync::{
    Barrier, BarrierError, BarrierTimeoutError, Condition, Event, Lock, LockError, PermitError,
    Semaphore,
};

/// A unique name for this test run.
fn name(tag: &str) -> String {
    format!("mpkit_test_{}_{tag}", std::process::id())
}

/// Another process cuts the named object's file in `/dev/shm` to `len`
/// bytes, as any process of the same user may.
fn truncate_from_another_process(name: &str, len: u64) {
    Process::spawn(
        |(name, len): (String, u64)| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(format!("/dev/shm/{name}"))
                .unwrap()
                .set_len(len)
                .unwrap();
        },
        (name.to_string(), len),
    )
    .unwrap()
    .join()
    .unwrap();
}

fn says_truncated(why: &str) {
    assert!(why.contains("truncated"), "{why}");
}

#[test]
fn a_queue_truncated_mid_use_fails_its_operations_and_the_process_lives() {
    let _w = watchdog(30);
    let name = name("trunc_queue");
    let q: Queue<u64> = Queue::create(&name, 0, 1 << 16).unwrap();
    let other: Queue<u64> = Queue::open(&name).unwrap();
    // This thread streams through the queue while another process cuts
    // its file; the first operation that touches a page past the cut
    // fails, and every operation after it.
    let cut = AtomicBool::new(false);
    let failed = std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let mut i = 0u64;
            loop {
                match q.put_timeout(i, Duration::from_secs(5)) {
                    Ok(()) => {}
                    Err(PutTimeoutError::Corrupt { value, why }) => {
                        assert_eq!(value, i, "the value is handed back");
                        says_truncated(&why);
                        return i;
                    }
                    Err(e) => panic!("put: {e}"),
                }
                match q.get_timeout(Duration::from_secs(5)) {
                    Ok(got) => assert_eq!(got, i),
                    Err(GetTimeoutError::Corrupt(why)) => {
                        says_truncated(&why);
                        return i;
                    }
                    Err(e) => panic!("get: {e}"),
                }
                i += 1;
                assert!(
                    i < 10_000_000 || !cut.load(Ordering::SeqCst),
                    "no operation noticed the cut"
                );
            }
        });
        truncate_from_another_process(&name, 0);
        cut.store(true, Ordering::SeqCst);
        worker.join().unwrap()
    });
    assert!(cut.load(Ordering::SeqCst));
    eprintln!("failed after {failed} round trips");
    // Every later operation, on every handle, fails the same way.
    match q.put(1) {
        Err(PutError::Corrupt { value: 1, why }) => says_truncated(&why),
        other => panic!("{other:?}"),
    }
    match other.get_timeout(Duration::from_millis(10)) {
        Err(GetTimeoutError::Corrupt(why)) => says_truncated(&why),
        other => panic!("{other:?}"),
    }
    // And a process that opens it now is refused before mapping anything.
    assert!(matches!(
        Queue::<u64>::open(&name),
        Err(ShmError::Truncated { size: 0, .. })
    ));
}

#[test]
fn a_queue_cut_to_half_fails_at_the_first_access_past_the_cut() {
    let _w = watchdog(30);
    let name = name("trunc_queue_half");
    let q: Queue<Vec<u8>> = Queue::create(&name, 0, 1 << 16).unwrap();
    let header_pages = 4096 * 4;
    truncate_from_another_process(&name, header_pages);
    // Messages of 4 KiB walk the ring into the pages that are gone.
    let mut result = Ok(());
    for _ in 0..64 {
        result = q.put_timeout(vec![7; 4096], Duration::from_secs(5));
        if result.is_err() {
            break;
        }
        assert_eq!(
            q.get_timeout(Duration::from_secs(5)).unwrap(),
            vec![7; 4096]
        );
    }
    match result {
        Err(PutTimeoutError::Corrupt { why, .. }) => says_truncated(&why),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_value_and_an_array_truncated_are_corrupt() {
    let _w = watchdog(30);
    let (vn, an) = (name("trunc_value"), name("trunc_array"));
    let v = Value::create(&vn, 7u64).unwrap();
    let a = Array::create(&an, &[1u32, 2, 3]).unwrap();
    assert_eq!(v.get().unwrap(), 7);
    assert_eq!(a.get(1).unwrap(), Some(2));
    truncate_from_another_process(&vn, 0);
    truncate_from_another_process(&an, 0);
    assert!(matches!(v.get(), Err(LockError::Corrupt)));
    assert!(matches!(v.set(8), Err(LockError::Corrupt)));
    assert!(matches!(a.get(1), Err(LockError::Corrupt)));
    assert!(matches!(a.to_vec(), Err(LockError::Corrupt)));
}

#[test]
fn a_value_truncated_while_locked_reads_zeros_and_is_corrupt_after() {
    let _w = watchdog(30);
    let vn = name("trunc_value_held");
    let v = Value::create(&vn, 7u64).unwrap();
    {
        let g = v.lock().unwrap();
        assert_eq!(*g, 7);
        truncate_from_another_process(&vn, 0);
        // The memory is gone: this process sees zeros, not a crash.
        assert_eq!(*g, 0);
    }
    assert!(matches!(v.get(), Err(LockError::Corrupt)));
}

#[test]
fn a_lock_truncated_while_held_fails_and_other_locks_still_work() {
    let _w = watchdog(30);
    let ln = name("trunc_lock");
    let lock = Lock::create(&ln).unwrap();
    let fine = Lock::new().unwrap();
    // Held across the cut: its mutex is on this thread's robust list, which
    // glibc and the kernel keep walking after the memory is gone.
    let held = lock.lock().unwrap();
    truncate_from_another_process(&ln, 0);
    drop(held);
    assert!(matches!(lock.lock(), Err(LockError::Corrupt)));
    assert!(matches!(
        lock.try_lock(),
        Err(mpkit::sync::TryLockError::Corrupt)
    ));
    // Other locks, taken and released on this thread after it, still work;
    // and so does a thread that held the cut lock when it exits.
    for _ in 0..3 {
        drop(fine.lock().unwrap());
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            let l2 = Lock::create(&name("trunc_lock2")).unwrap();
            let g = l2.lock().unwrap();
            truncate_from_another_process(&name("trunc_lock2"), 0);
            drop(g);
            drop(fine.lock().unwrap());
            // The handle is dropped while the cut mutex is still listed.
            drop(l2);
        })
        .join()
        .unwrap();
    });
    drop(fine.lock().unwrap());
}

#[test]
fn shared_memory_truncated_is_corrupt_on_read_and_write() {
    let _w = watchdog(30);
    let n = name("trunc_raw");
    let m = SharedMemory::create(&n, 3 * 4096).unwrap();
    m.write(0, b"hello").unwrap();
    truncate_from_another_process(&n, 4096);
    // Before the cut: still readable.
    let mut buf = [0u8; 5];
    m.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    // Past it: an error, and from then on the whole block is zeros.
    match m.read(2 * 4096, &mut buf) {
        Err(ShmError::Corrupt(why)) => says_truncated(&why),
        other => panic!("{other:?}"),
    }
    assert!(m.to_vec().iter().all(|&b| b == 0));
    assert!(matches!(m.write(0, b"x"), Err(ShmError::Corrupt(_))));
}

// ---------------------------------------------------------------------------
// Sleepers: a waiter asleep without a timeout when another process cuts the
// file is woken by nothing (no futex wake can name a page that is gone), so
// it must notice the cut by itself, within a bound.
// ---------------------------------------------------------------------------

/// How long a sleeper may take to report the cut: its waits sleep in 100 ms
/// slices; the rest is slack for a loaded machine.
const BOUND: Duration = Duration::from_secs(5);

/// What a sleeper reports: `Ok` with the error's text when its wait failed
/// as corrupt, `Err` saying what it got instead.
type Outcome = Result<String, String>;

/// An `io::Error` a sync object reports for a truncated file:
/// `InvalidData` around `ShmError::Corrupt`.
fn truncated_io(e: std::io::Error) -> Outcome {
    let corrupt = e.kind() == std::io::ErrorKind::InvalidData
        && matches!(
            e.get_ref().and_then(|i| i.downcast_ref::<ShmError>()),
            Some(ShmError::Corrupt(_))
        );
    if corrupt {
        Ok(e.to_string())
    } else {
        Err(format!("not a corrupt error: {e:?}"))
    }
}

/// The calling thread's id, for `/proc`.
fn gettid() -> i32 {
    // SAFETY: gettid(2) has no preconditions.
    unsafe { libc::gettid() }
}

/// Waits (observing `/proc`, never sleeping a guessed time) until thread
/// `tid` of process `pid` is asleep in a futex wait.
fn until_asleep(pid: i32, tid: i32) {
    let path = format!("/proc/{pid}/task/{tid}/syscall");
    let futex = format!("{} ", libc::SYS_futex);
    let start = Instant::now();
    loop {
        let now = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        if now.starts_with(&futex) {
            return;
        }
        assert!(
            start.elapsed() < BOUND,
            "{path} never showed a futex wait: {now}"
        );
        std::thread::yield_now();
    }
}

/// Runs `wait` on a thread of this process, and returns once that thread is
/// asleep in it; the receiver gets its outcome.
fn sleeper_thread(wait: impl FnOnce() -> Outcome + Send + 'static) -> mpsc::Receiver<Outcome> {
    let (tid_tx, tid_rx) = mpsc::channel();
    let (tx, rx) = mpsc::channel();
    // Not joined: without the fix it would sleep for ever, and the test
    // fails on the bound instead of hanging with it.
    std::thread::spawn(move || {
        tid_tx.send(gettid()).unwrap();
        let _ = tx.send(wait());
    });
    until_asleep(std::process::id() as i32, tid_rx.recv().unwrap());
    rx
}

/// A sleeping child, killed (by its pid, through its handle) when the
/// test fails before it has reported.
struct Sleeper(Process<Outcome>);

impl Drop for Sleeper {
    fn drop(&mut self) {
        if self.0.is_alive() {
            let _ = self.0.kill();
            let _ = self.0.join_timeout(BOUND);
        }
    }
}

/// Spawns `f` in a child, which stores its thread id in the cell it is
/// given before it waits, and returns once that thread is asleep.
fn sleeper_process(f: fn((String, RawValue<i32>)) -> Outcome, name: &str) -> Sleeper {
    let tid = RawValue::new(0i32).unwrap();
    let child = Sleeper(Process::spawn(f, (name.to_string(), tid.try_clone().unwrap())).unwrap());
    let start = Instant::now();
    while tid.get() == 0 {
        assert!(start.elapsed() < BOUND, "the child never started waiting");
        std::thread::yield_now();
    }
    until_asleep(child.0.pid(), tid.get());
    child
}

/// Both sleepers report the cut within [`BOUND`] of it; returns their texts.
fn both_fail(thread: mpsc::Receiver<Outcome>, mut child: Sleeper) -> [String; 2] {
    let cut = Instant::now();
    let mine = thread
        .recv_timeout(BOUND)
        .unwrap_or_else(|_| panic!("the thread still sleeps {BOUND:?} after the cut"))
        .unwrap_or_else(|e| panic!("thread: {e}"));
    let left = BOUND.saturating_sub(cut.elapsed());
    let theirs = child
        .0
        .join_timeout(left)
        .unwrap_or_else(|e| panic!("the child, {BOUND:?} after the cut: {e}"))
        .unwrap_or_else(|e| panic!("child: {e}"));
    eprintln!("both sleepers failed within {:?} of the cut", cut.elapsed());
    [mine, theirs]
}

fn event_sleeper((name, tid): (String, RawValue<i32>)) -> Outcome {
    let e = Event::open(&name).map_err(|e| e.to_string())?;
    tid.set(gettid());
    match e.wait(None) {
        Ok(set) => Err(format!("wait returned {set}")),
        Err(e) => truncated_io(e),
    }
}

#[test]
fn an_event_cut_under_sleeping_waiters_wakes_them_with_an_error() {
    let _w = watchdog(30);
    let n = name("trunc_event");
    let e = Event::create(&n).unwrap();
    let thread = sleeper_thread({
        let n = n.clone();
        move || event_sleeper((n, RawValue::new(0).unwrap()))
    });
    let child = sleeper_process(event_sleeper, &n);
    truncate_from_another_process(&n, 0);
    for why in both_fail(thread, child) {
        says_truncated(&why);
    }
    // A wait with a timeout is an error too, not "timed out".
    truncated_io(e.wait(Some(Duration::from_millis(10))).unwrap_err()).unwrap();
}

fn semaphore_sleeper((name, tid): (String, RawValue<i32>)) -> Outcome {
    let s = Semaphore::open(&name).map_err(|e| e.to_string())?;
    tid.set(gettid());
    match s.permit() {
        Ok(_) => Err("got a permit".into()),
        Err(PermitError::Corrupt(why)) => Ok(why),
        Err(e) => Err(format!("{e:?}")),
    }
}

#[test]
fn a_semaphore_cut_under_sleeping_waiters_wakes_them_with_an_error() {
    let _w = watchdog(30);
    let n = name("trunc_sem");
    let s = Semaphore::create(&n, 0).unwrap();
    let thread = sleeper_thread({
        let n = n.clone();
        move || {
            let s = Semaphore::open(&n).map_err(|e| e.to_string())?;
            match s.acquire() {
                Ok(()) => Err("acquired".into()),
                Err(e) => truncated_io(e),
            }
        }
    });
    let child = sleeper_process(semaphore_sleeper, &n);
    truncate_from_another_process(&n, 0);
    for why in both_fail(thread, child) {
        says_truncated(&why);
    }
    truncated_io(s.acquire_timeout(Duration::from_millis(10)).unwrap_err()).unwrap();
    assert!(matches!(
        s.permit_timeout(Duration::from_millis(10)),
        Err(PermitError::Corrupt(_))
    ));
}

fn condition_sleeper((name, tid): (String, RawValue<i32>)) -> Outcome {
    let c = Condition::open(&name).map_err(|e| e.to_string())?;
    let mut g = c.lock().map_err(|e| e.to_string())?;
    tid.set(gettid());
    match g.wait(None) {
        Err(LockError::Corrupt) => Ok(LockError::Corrupt.to_string()),
        other => Err(format!("{other:?}")),
    }
}

#[test]
fn a_condition_cut_under_sleeping_waiters_wakes_them_with_an_error() {
    let _w = watchdog(30);
    let n = name("trunc_cond");
    let c = Condition::create(&n).unwrap();
    let thread = sleeper_thread({
        let n = n.clone();
        move || condition_sleeper((n, RawValue::new(0).unwrap()))
    });
    let child = sleeper_process(condition_sleeper, &n);
    truncate_from_another_process(&n, 0);
    both_fail(thread, child);
    assert!(matches!(c.lock(), Err(LockError::Corrupt)));
}

fn barrier_sleeper((name, tid): (String, RawValue<i32>)) -> Outcome {
    let b = Barrier::open(&name).map_err(|e| e.to_string())?;
    tid.set(gettid());
    match b.wait() {
        Err(BarrierError::Corrupt) => Ok(BarrierError::Corrupt.to_string()),
        other => Err(format!("{other:?}")),
    }
}

#[test]
fn a_barrier_cut_under_sleeping_parties_wakes_them_with_an_error() {
    let _w = watchdog(30);
    let n = name("trunc_barrier");
    let b = Barrier::create(&n, 3).unwrap();
    let thread = sleeper_thread({
        let n = n.clone();
        move || barrier_sleeper((n, RawValue::new(0).unwrap()))
    });
    let child = sleeper_process(barrier_sleeper, &n);
    assert_eq!(b.n_waiting(), 2);
    truncate_from_another_process(&n, 0);
    for why in both_fail(thread, child) {
        says_truncated(&why);
    }
    assert!(matches!(
        b.wait_timeout(Duration::from_millis(10)),
        Err(BarrierTimeoutError::Corrupt)
    ));
}

#[test]
fn a_fault_outside_mpkit_memory_still_kills_with_sigbus() {
    let _w = watchdog(30);
    // A mapping of a file of our own, truncated: not mpkit's, so the
    // handler hands the fault on and the process dies as it always did.
    let child = Process::spawn(
        |()| {
            let _keep = SharedMemory::anonymous(4096).unwrap(); // installs the handler
            let f = tempfile_in_dev_shm();
            f.set_len(4096).unwrap();
            use std::os::fd::AsRawFd;
            // SAFETY: a fresh shared mapping of our file, read once below.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    f.as_raw_fd(),
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED);
            f.set_len(0).unwrap();
            // SAFETY: mapped; the read faults (SIGBUS), which is the test.
            unsafe { std::ptr::read_volatile(p.cast::<u8>()) }
        },
        (),
    )
    .unwrap();
    let err = child.join().unwrap_err().to_string();
    assert!(err.contains("SIGBUS") || err.contains("signal 7"), "{err}");
}

/// An unlinked file in `/dev/shm` (tmpfs, like mpkit's objects).
fn tempfile_in_dev_shm() -> std::fs::File {
    let path = format!("/dev/shm/mpkit_test_{}_plain", std::process::id());
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    f
}

/// A queue's `get` without a timeout, asleep on an empty queue: `Ok` with
/// the error's text when it failed as corrupt.
fn queue_get(q: &Queue<u64>) -> Outcome {
    match q.get() {
        Ok(v) => Err(format!("got {v}")),
        Err(e) if format!("{e:?}").contains("Corrupt") => Ok(e.to_string()),
        Err(e) => Err(format!("not a corrupt error: {e:?}")),
    }
}

fn queue_sleeper((name, tid): (String, RawValue<i32>)) -> Outcome {
    let q: Queue<u64> = Queue::open(&name).map_err(|e| e.to_string())?;
    tid.set(gettid());
    queue_get(&q)
}

#[test]
fn a_queue_cut_under_sleeping_consumers_wakes_them_with_an_error() {
    let _w = watchdog(30);
    let n = name("trunc_queue_sleep");
    let _q: Queue<u64> = Queue::create(&n, 0, 1 << 16).unwrap();
    let thread = sleeper_thread({
        let n = n.clone();
        move || queue_get(&Queue::open(&n).map_err(|e| e.to_string())?)
    });
    let child = sleeper_process(queue_sleeper, &n);
    truncate_from_another_process(&n, 0);
    for why in both_fail(thread, child) {
        says_truncated(&why);
    }
}

#[test]
fn a_joinable_queue_cut_under_join_is_corrupt_not_all_done() {
    let _w = watchdog(30);
    let n = name("trunc_join");
    let q: JoinableQueue<u64> = JoinableQueue::create(&n, 0, 1 << 16).unwrap();
    q.put(7).unwrap();
    let joiner = sleeper_thread({
        let n = n.clone();
        move || {
            let q: JoinableQueue<u64> = JoinableQueue::open(&n).map_err(|e| e.to_string())?;
            match q.join() {
                // Zeros where the counts were would say "nothing unfinished".
                Ok(()) => Err("join returned as if every task were done".into()),
                Err(e) if format!("{e:?}").contains("Corrupt") => Ok(e.to_string()),
                Err(e) => Err(format!("not a corrupt error: {e:?}")),
            }
        }
    });
    truncate_from_another_process(&n, 0);
    let why = joiner
        .recv_timeout(BOUND)
        .unwrap_or_else(|_| panic!("join still sleeps {BOUND:?} after the cut"))
        .unwrap_or_else(|e| panic!("join: {e}"));
    says_truncated(&why);
}
