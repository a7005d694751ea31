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

/// Python's count: a `task_done` before any `get` counts one task done, so
/// the `task_done` of the consumer that later takes it is one too many.
/// (It was counted twice: once in the join block, once against the
/// consumer's own slot, and `join` then reported the counts corrupt.)
#[test]
fn a_task_done_before_its_get_leaves_one_too_many() {
    let _w = watchdog(30);
    let q: JoinableQueue<u32> = JoinableQueue::new(0).unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    q.task_done().unwrap();
    let consumer = Process::spawn(
        |q: JoinableQueue<u32>| {
            let got = [q.get().unwrap(), q.get().unwrap()];
            (got, [q.task_done().is_ok(), q.task_done().is_ok()])
        },
        q.try_clone().unwrap(),
    )
    .unwrap();
    let (got, done) = consumer.join().unwrap();
    assert_eq!(got, [1, 2]);
    assert_eq!(done, [true, false], "the second call is one too many");
    assert_eq!(q.unfinished_tasks(), 0);
    q.join_timeout(LONG).unwrap();
}

/// Messages each racing consumer process takes (with `THREADS` threads).
const SHARE: u32 = 400;
const THREADS: u32 = 2;
/// Surplus `task_done` calls of each consumer thread, after its share.
const THREAD_SURPLUS: u32 = 10;
/// `task_done` calls of each bystander process (it takes nothing): all
/// surplus, made while the consumers take.
const BYSTANDER_CALLS: u32 = 40;

/// What one process's `task_done` calls returned: (ok, too many).
type Outcomes = (u32, u32);

fn count(outcomes: &mut Outcomes, r: Result<(), TaskDoneError>) {
    match r {
        Ok(()) => outcomes.0 += 1,
        Err(TaskDoneError) => outcomes.1 += 1,
    }
}

/// Takes `SHARE` messages over `THREADS` threads, marks each done, then
/// makes `THREAD_SURPLUS` more calls in each thread.
fn racing_consumer((q, start): (JoinableQueue<u32>, mpkit::sync::Barrier)) -> Outcomes {
    start.wait().unwrap();
    let mut total = (0, 0);
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let q = &q;
                s.spawn(move || {
                    let mut out = (0, 0);
                    for _ in 0..SHARE / THREADS {
                        q.get_timeout(LONG).unwrap();
                        count(&mut out, q.task_done());
                    }
                    for _ in 0..THREAD_SURPLUS {
                        count(&mut out, q.task_done());
                    }
                    out
                })
            })
            .collect();
        for t in threads {
            let (ok, err) = t.join().unwrap();
            total = (total.0 + ok, total.1 + err);
        }
    });
    total
}

/// Makes `BYSTANDER_CALLS` calls spread over the consumers' progress (one
/// each time the queue has shrunk by another step).
fn racing_bystander((q, start, put): (JoinableQueue<u32>, mpkit::sync::Barrier, u32)) -> Outcomes {
    start.wait().unwrap();
    let mut out = (0, 0);
    let step = put as usize / (BYSTANDER_CALLS as usize + 1);
    for i in 0..BYSTANDER_CALLS as usize {
        let below = (put as usize).saturating_sub(i * step);
        while q.len() > below {
            std::thread::yield_now();
        }
        count(&mut out, q.task_done());
    }
    out
}

/// Consumers and bystanders in several processes race `task_done` calls,
/// some of them one too many, while the consumers take: exactly the
/// surplus calls are refused, the done count never passes the messages
/// put, and `join` (waiting meanwhile in this process) returns normally.
/// The judgement and the count used to be two steps, and a call counted
/// against no member (the join block) could be counted again against the
/// member that took the message.
#[test]
fn racing_surplus_task_done_calls_are_refused_exactly() {
    const CONSUMERS: u32 = 3;
    let _w = watchdog(60);
    // Consumers alone first (their last calls race each other's), then
    // with bystanders.
    for (round, bystanders) in [0, 0, 2, 2].into_iter().enumerate() {
        let q: JoinableQueue<u32> = JoinableQueue::new(0).unwrap();
        let put = CONSUMERS * SHARE;
        for i in 0..put {
            q.put(i).unwrap();
        }
        let start = mpkit::sync::Barrier::new(CONSUMERS + bystanders).unwrap();
        let mut procs = Vec::new();
        for _ in 0..CONSUMERS {
            procs.push(
                Process::spawn(
                    racing_consumer,
                    (q.try_clone().unwrap(), start.try_clone().unwrap()),
                )
                .unwrap(),
            );
        }
        for _ in 0..bystanders {
            procs.push(
                Process::spawn(
                    racing_bystander,
                    (q.try_clone().unwrap(), start.try_clone().unwrap(), put),
                )
                .unwrap(),
            );
        }
        // Waits while the calls race: every task is done before the last
        // call, and a count past the messages put would be `Corrupt`.
        let joined = q.join_timeout(Duration::from_secs(30));
        let (mut ok, mut refused) = (0, 0);
        for p in procs {
            let (o, r) = p.join().unwrap();
            ok += o;
            refused += r;
        }
        let surplus = CONSUMERS * THREADS * THREAD_SURPLUS + bystanders * BYSTANDER_CALLS;
        assert!(
            joined.is_ok(),
            "round {round}: join while racing: {joined:?}"
        );
        assert_eq!(
            (ok, refused),
            (put, surplus),
            "round {round}: (counted, refused) of {put} tasks"
        );
        assert_eq!(q.unfinished_tasks(), 0);
        q.join_timeout(LONG).unwrap();
        assert_eq!(q.task_done(), Err(TaskDoneError));
    }
}

/// Takes and marks done, one call too many each time, until killed.
fn consume_until_killed(q: JoinableQueue<u32>) {
    loop {
        if q.get_timeout(LONG).is_ok() {
            let _ = q.task_done();
            let _ = q.task_done();
        }
    }
}

/// Marks done without taking (in the consumers' section, mostly
/// refused), until killed.
fn mark_done_until_killed(q: JoinableQueue<u32>) {
    loop {
        let _ = q.task_done();
    }
}

/// Processes racing `task_done` are SIGKILLed at any point (the
/// bystanders' calls spend most of their time inside the consumers'
/// section): the counts stay whole. What is left is done by this process,
/// `join` returns (after reporting what the dead consumers held), the
/// done count never passes the messages put, and the queue works on.
#[test]
fn processes_killed_while_racing_task_done_leave_whole_counts() {
    let _w = watchdog(60);
    const PUT: u32 = 12_000;
    for round in 0..3 {
        let q: JoinableQueue<u32> = JoinableQueue::new(0).unwrap();
        for i in 0..PUT {
            q.put(i).unwrap();
        }
        let spawn = |f: fn(JoinableQueue<u32>)| Process::spawn(f, q.try_clone().unwrap()).unwrap();
        let mut procs: Vec<_> = (0..6).map(|_| spawn(mark_done_until_killed)).collect();
        procs.push(spawn(consume_until_killed));
        procs.push(spawn(consume_until_killed));
        // Each killed once the consumers have taken another share.
        for (i, p) in procs.iter().enumerate() {
            let below = PUT as usize * (procs.len() - i) / (procs.len() + 1);
            assert!(
                common::eventually(LONG, || q.len() <= below),
                "round {round}: the consumers stopped taking at {} queued",
                q.len()
            );
            p.kill().unwrap();
        }
        for p in procs {
            assert!(matches!(p.join(), Err(JoinError::Signaled { signal: 9 })));
        }
        // This process does what is left.
        while q.try_get().is_ok() {
            let _ = q.task_done();
        }
        while q.task_done().is_ok() {}
        assert_eq!(q.unfinished_tasks(), 0, "round {round}");
        // Whatever the dead held was counted done by the calls above, or
        // is reported once, and then `join` returns.
        match q.join_timeout(LONG) {
            Ok(()) | Err(JoinTimeoutError::TasksLost(_)) => {}
            other => panic!("round {round}: {other:?}"),
        }
        q.join_timeout(LONG).unwrap();
        q.put(7).unwrap();
        assert_eq!(q.get_timeout(LONG).unwrap(), 7);
        q.task_done().unwrap();
        assert_eq!(q.task_done(), Err(TaskDoneError));
        q.join_timeout(LONG).unwrap();
    }
}
