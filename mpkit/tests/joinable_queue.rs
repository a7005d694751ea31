//! `JoinableQueue` between real processes: unfinished tasks, `join`, and
//! the tasks of a consumer that dies before `task_done`.

mod common;

use std::time::Duration;

use common::watchdog;
use mpkit::Process;
use mpkit::process::JoinError;
use mpkit::queue::{self, JoinTimeoutError, JoinableQueue, MemberTasks, TaskDoneError};
use mpkit::shm::RawValue;
use mpkit::sync::Event;

const LONG: Duration = Duration::from_secs(10);

/// Takes two tasks, says so, and never marks them done (killed first).
fn take_two_and_hang((q, took): (JoinableQueue<u32>, Event)) {
    q.get().unwrap();
    q.get().unwrap();
    took.set();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn join_reports_the_tasks_of_a_killed_consumer() {
    let _w = watchdog(30);
    let q: JoinableQueue<u32> = JoinableQueue::new(0).unwrap();
    for i in 0..5 {
        q.put(i).unwrap();
    }
    let took = Event::new().unwrap();
    let doomed = Process::spawn(
        take_two_and_hang,
        (q.try_clone().unwrap(), took.try_clone().unwrap()),
    )
    .unwrap();
    assert!(took.wait(Some(LONG)).unwrap());
    let held = vec![MemberTasks {
        pid: doomed.pid(),
        count: 2,
    }];
    // What a timed join is waiting for: 3 queued, 2 held by the consumer.
    match q.join_timeout(Duration::from_millis(10)) {
        Err(JoinTimeoutError::Timeout(p)) => {
            assert_eq!((p.unfinished, p.queued, p.untracked), (5, 3, 0));
            assert_eq!(p.held, held);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    // This process does the 3 queued tasks.
    for _ in 0..3 {
        q.get().unwrap();
        q.task_done().unwrap();
    }
    // A joiner that is asleep when the consumer dies: nobody will call
    // task_done, so its own look for dead members must wake it.
    let tid: RawValue<i32> = RawValue::new(0).unwrap();
    let joiner = Process::spawn(
        |(q, tid): (JoinableQueue<u32>, RawValue<i32>)| {
            common::publish_tid(&tid);
            match q.join_timeout(Duration::from_secs(20)) {
                Err(JoinTimeoutError::TasksLost(lost)) => lost,
                other => panic!("expected lost tasks, got {other:?}"),
            }
        },
        (q.try_clone().unwrap(), tid.try_clone().unwrap()),
    )
    .unwrap();
    common::assert_asleep_in_futex(joiner.pid(), &tid, LONG);
    doomed.kill().unwrap();
    assert!(matches!(
        doomed.join(),
        Err(JoinError::Signaled { signal: 9 })
    ));
    assert_eq!(joiner.join().unwrap(), held, "who died holding what");
    // Cleared: the queue is whole again.
    assert_eq!(q.unfinished_tasks(), 0);
    q.join().unwrap();
    assert_eq!(q.task_done(), Err(TaskDoneError));
    q.put(9).unwrap();
    assert_eq!(q.get().unwrap(), 9);
    q.task_done().unwrap();
    q.join_timeout(LONG).unwrap();
}

#[test]
fn a_blocking_join_reports_a_killed_consumer_once() {
    let _w = watchdog(30);
    let q: JoinableQueue<u32> = JoinableQueue::new(0).unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    let took = Event::new().unwrap();
    let doomed = Process::spawn(
        take_two_and_hang,
        (q.try_clone().unwrap(), took.try_clone().unwrap()),
    )
    .unwrap();
    assert!(took.wait(Some(LONG)).unwrap());
    let pid = doomed.pid();
    // Killed and not reaped yet: a zombie holds nothing either.
    doomed.kill().unwrap();
    match q.join() {
        Err(queue::JoinError::TasksLost(lost)) => {
            assert_eq!(lost, vec![MemberTasks { pid, count: 2 }]);
        }
        other => panic!("expected lost tasks, got {other:?}"),
    }
    q.join().unwrap();
    assert!(matches!(
        doomed.join(),
        Err(JoinError::Signaled { signal: 9 })
    ));
}

#[test]
fn joinable_queue_tracks_tasks() {
    let _w = watchdog(20);
    let q: JoinableQueue<u32> = JoinableQueue::new(0).unwrap();
    assert_eq!(q.task_done(), Err(TaskDoneError));
    for i in 0..5 {
        q.put(i).unwrap();
    }
    assert_eq!(q.unfinished_tasks(), 5);
    match q.join_timeout(Duration::from_millis(10)) {
        Err(JoinTimeoutError::Timeout(p)) => {
            assert_eq!((p.unfinished, p.queued, p.untracked), (5, 5, 0));
            assert!(p.held.is_empty());
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let worker = Process::spawn(
        |q: JoinableQueue<u32>| {
            for _ in 0..5 {
                q.get().unwrap();
                q.task_done().unwrap();
            }
        },
        q.try_clone().unwrap(),
    )
    .unwrap();
    q.join_timeout(Duration::from_secs(10)).unwrap();
    worker.join().unwrap();
    assert_eq!(q.task_done(), Err(TaskDoneError), "one call too many");
    q.join().unwrap();
}

/// The join block's done count (`JOIN` in the ring's layout), which
/// counts tasks marked done that no member held.
const JOIN_DONE: u64 = 1152;

/// Another process raises the done count past the messages ever put: `join`
/// is `Corrupt` (with and without a timeout), never a return with a task
/// still unfinished.
#[test]
fn a_done_count_past_the_tasks_put_is_corrupt() {
    let _w = watchdog(30);
    let name = format!("mpkit-joinable-done-{}", std::process::id());
    let q = queue::ByteQueue::create_kind(queue::ByteQueueKind::Joinable, Some(&name), 0, 4096)
        .unwrap();
    q.put(b"one").unwrap();
    q.put(b"two").unwrap();
    q.get().unwrap();
    common::scribble_from_another_process(&name, vec![(JOIN_DONE, common::u64s(&[5]))]);
    match q.join() {
        Err(queue::JoinError::Corrupt(why)) => assert!(why.contains("5 tasks done of 2"), "{why}"),
        other => panic!("{other:?}"),
    }
    match q.join_timeout(Duration::from_millis(10)) {
        Err(JoinTimeoutError::Corrupt(_)) => {}
        other => panic!("{other:?}"),
    }
}
