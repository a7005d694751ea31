//! The executor between real processes: submit, cancel (only while no
//! worker took the task), as_completed, wait, map with a timeout,
//! shutdown; and one `net::wait` over a pool result, a process and a
//! connection.
//!
//! Workers are held in a task by a gate: a connection whose other end the
//! test keeps, so the test decides when each task ends.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::watchdog;
use mpkit::pool::{Executor, MapError, ReturnWhen, TaskError, as_completed, wait};
use mpkit::{Connection, Pool, Process, RecvError};

/// Long enough that only a hang reaches it.
const LONG: Duration = Duration::from_secs(30);

/// A task that says it started, then waits until the test sends it a
/// value, and returns that value.
fn gated((mut started, mut gate): (Connection, Connection)) -> u32 {
    started.send(&()).unwrap();
    gate.recv::<u32>().unwrap()
}

/// A gated task's handles: `started` receives once it runs, `release`
/// ends it.
struct Gate {
    started: Connection,
    release: Connection,
}

/// A gate, and the arguments for [`gated`].
fn gate() -> (Gate, (Connection, Connection)) {
    let (started, started_there) = mpkit::pipe(true).unwrap();
    let (release, release_there) = mpkit::pipe(true).unwrap();
    (Gate { started, release }, (started_there, release_there))
}

impl Gate {
    fn wait_started(&mut self) {
        self.started.recv_timeout::<()>(LONG).unwrap();
    }
    fn release(&mut self, value: u32) {
        self.release.send(&value).unwrap();
    }
    /// Whether the task ever ran: it said so, before its end of the
    /// connection closed (the test waits for that close first).
    fn ran(&mut self) -> bool {
        match self.started.recv_timeout::<()>(LONG) {
            Ok(()) => true,
            Err(RecvError::Eof) => false,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn submit_returns_results_and_failures() {
    let _w = watchdog(30);
    let ex = Executor::new(2).unwrap();
    let tasks: Vec<_> = (0..20u64).map(|i| ex.submit(|x: u64| x * x, i)).collect();
    let results: Vec<u64> = tasks.into_iter().map(|t| t.result().unwrap()).collect();
    assert_eq!(results, (0..20u64).map(|i| i * i).collect::<Vec<_>>());
    let bad = ex.submit(|_: ()| -> u8 { panic!("boom") }, ());
    assert_eq!(
        bad.result(),
        Err(TaskError::Panicked {
            message: "boom".into()
        })
    );
    let died = ex.submit(|_: ()| -> u8 { std::process::exit(7) }, ());
    assert!(matches!(died.result(), Err(TaskError::WorkerDied { .. })));
    // The executor carries on with a replacement.
    assert_eq!(ex.submit(|x: u8| x + 1, 1).result(), Ok(2));
}

#[test]
fn cancel_succeeds_only_while_no_worker_took_the_task() {
    let _w = watchdog(30);
    let ex = Executor::new(1).unwrap();
    let (mut g1, args1) = gate();
    let first = ex.submit(gated, args1);
    g1.wait_started();
    // A worker holds `first`: it cannot be cancelled.
    assert!(first.running());
    assert!(!first.cancel());
    assert!(!first.cancelled());

    // The only worker is busy: `second` waits in the queue.
    let (mut g2, args2) = gate();
    let second = ex.submit(gated, args2);
    assert!(!second.running());
    assert!(second.cancel());
    assert!(second.cancel(), "cancelling again says it is cancelled");
    assert!(second.cancelled());
    assert!(second.done());
    assert!(!second.running());
    assert_eq!(second.result(), Err(TaskError::Cancelled));

    g1.release(5);
    assert_eq!(first.result(), Ok(5));
    assert!(!ex.submit(|x: u8| x, 1).cancelled());
    ex.shutdown(true, false);
    // Every worker has exited and the cancelled chunk was dropped: its
    // end of the gate is closed, and it never said it started.
    assert!(!g2.ran());
}

#[test]
fn a_finished_task_cannot_be_cancelled() {
    let _w = watchdog(30);
    let ex = Executor::new(1).unwrap();
    let task = ex.submit(|x: u8| x * 2, 4);
    assert!(task.wait(Some(LONG)));
    assert!(!task.cancel());
    assert!(!task.cancelled());
    assert_eq!(task.result(), Ok(8));
}

/// Each task that runs leaves a file named after it.
fn mark((dir, i): (PathBuf, u32)) -> u32 {
    std::fs::write(dir.join(i.to_string()), b"").unwrap();
    i
}

#[test]
fn every_task_is_either_cancelled_and_never_run_or_run_once() {
    let _w = watchdog(60);
    let dir = std::env::temp_dir().join(format!("mpkit-executor-cancel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _remove = Remove(dir.clone());
    let ex = Executor::new(2).unwrap();
    // Both workers held while everything is queued, then let go. A
    // quarter of the tasks are cancelled at once (they wait in the queue);
    // another quarter each just after the task before it finished, when a
    // worker most likely holds it already. Each cancel must land on one
    // side of the dispatcher handing its task out.
    let (mut g1, args1) = gate();
    let (mut g2, args2) = gate();
    let held = [ex.submit(gated, args1), ex.submit(gated, args2)];
    g1.wait_started();
    g2.wait_started();
    let mut tasks: Vec<_> = (0..300u32)
        .map(|i| (i, ex.submit(mark, (dir.clone(), i)), false))
        .collect();
    for (i, task, cancelled) in tasks.iter_mut() {
        *cancelled = *i % 4 == 3 && task.cancel();
    }
    g1.release(0);
    g2.release(0);
    for i in (1..tasks.len()).step_by(4) {
        assert!(tasks[i - 1].1.wait(Some(LONG)));
        tasks[i].2 = tasks[i].1.cancel();
    }
    ex.shutdown(true, false);
    for task in held {
        assert_eq!(task.result(), Ok(0));
    }
    let mut both = 0;
    for (i, task, cancelled) in tasks {
        let ran = dir.join(i.to_string()).exists();
        assert_eq!(task.cancelled(), cancelled, "task {i}");
        if cancelled {
            assert!(!ran, "task {i} was cancelled but ran");
            assert_eq!(task.result(), Err(TaskError::Cancelled));
        } else {
            assert!(ran, "task {i} was not cancelled and did not run");
            assert_eq!(task.result(), Ok(i));
            both += 1;
        }
    }
    assert!(both >= 150, "every even task runs");
    assert!(
        both < 300,
        "some cancels came before a worker took the task"
    );
}

#[test]
fn shutdown_cancels_pending_tasks_and_lets_running_ones_finish() {
    let _w = watchdog(30);
    let ex = Executor::new(1).unwrap();
    let (mut g1, args1) = gate();
    let running = ex.submit(gated, args1);
    g1.wait_started();
    let mut gates = Vec::new();
    let pending: Vec<_> = (0..3)
        .map(|_| {
            let (g, args) = gate();
            gates.push(g);
            ex.submit(gated, args)
        })
        .collect();
    ex.shutdown(false, true);
    for task in &pending {
        assert!(task.cancelled());
    }
    assert!(!running.cancelled());
    assert_eq!(ex.submit(|x: u8| x, 1).result(), Err(TaskError::PoolClosed));
    g1.release(9);
    assert_eq!(running.result(), Ok(9));
    for task in pending {
        assert_eq!(task.result(), Err(TaskError::Cancelled));
    }
    drop(ex);
    for mut g in gates {
        assert!(!g.ran());
    }
}

#[test]
fn dropping_the_executor_waits_for_submitted_tasks() {
    let _w = watchdog(30);
    let (mut here, there) = mpkit::pipe(true).unwrap();
    let ex = Executor::new(1).unwrap();
    // Queued behind nothing, but dropped at once: the drop must wait for
    // it, not kill it.
    let task = ex.submit(
        |mut c: Connection| {
            c.send(&"finished").unwrap();
        },
        there,
    );
    drop(ex);
    assert!(task.done());
    assert_eq!(task.result(), Ok(()));
    assert!(here.poll(Some(Duration::ZERO)).unwrap());
    assert_eq!(here.recv::<String>().unwrap(), "finished");
}

#[test]
fn as_completed_yields_tasks_in_the_order_they_finish() {
    let _w = watchdog(30);
    let ex = Executor::new(2).unwrap();
    let (mut ga, args_a) = gate();
    let (mut gb, args_b) = gate();
    let a = ex.submit(gated, args_a);
    let b = ex.submit(gated, args_b);
    ga.wait_started();
    gb.wait_started();
    let mut done = as_completed([a, b], None);
    // B is released first, while A is still held: B comes first.
    gb.release(2);
    assert_eq!(done.next().unwrap().unwrap().result(), Ok(2));
    ga.release(1);
    assert_eq!(done.next().unwrap().unwrap().result(), Ok(1));
    assert!(done.next().is_none());
}

#[test]
fn as_completed_gives_the_unfinished_tasks_back_at_its_timeout() {
    let _w = watchdog(30);
    let ex = Executor::new(2).unwrap();
    let (mut g, args) = gate();
    let held = ex.submit(gated, args);
    let quick = ex.submit(|x: u32| x, 3);
    g.wait_started();
    let start = Instant::now();
    let timeout = Duration::from_millis(200);
    let mut done = as_completed([held, quick], Some(timeout));
    assert_eq!(done.next().unwrap().unwrap().result(), Ok(3));
    let pending = done.next().unwrap().unwrap_err().into_pending();
    assert!(start.elapsed() >= timeout);
    assert!(start.elapsed() < LONG);
    assert!(done.next().is_none());
    assert_eq!(pending.len(), 1);
    let held = pending.into_iter().next().unwrap();
    assert!(!held.done());
    g.release(4);
    assert_eq!(held.result(), Ok(4));
}

#[test]
fn wait_returns_when_its_condition_holds() {
    let _w = watchdog(30);
    let ex = Executor::new(2).unwrap();

    // FIRST_COMPLETED: the quick one, while the held one is still held.
    let (mut g, args) = gate();
    let held = ex.submit(gated, args);
    let quick = ex.submit(|x: u32| x, 1);
    let (done, not_done) = wait([held, quick], None, ReturnWhen::FirstCompleted);
    assert_eq!(done.len(), 1);
    assert_eq!(not_done.len(), 1);
    let held = not_done.into_iter().next().unwrap();

    // FIRST_EXCEPTION: a failure ends the wait with the held one unfinished.
    let bad = ex.submit(|_: u32| -> u32 { panic!("bad") }, 0);
    let (done, not_done) = wait([held, bad], None, ReturnWhen::FirstException);
    assert_eq!(done.len(), 1);
    assert!(matches!(
        done.into_iter().next().unwrap().result(),
        Err(TaskError::Panicked { .. })
    ));
    let held = not_done.into_iter().next().unwrap();

    // FIRST_EXCEPTION with no failure waits for all, as ALL_COMPLETED:
    // both wait out their timeout while a task is held, and hand it back.
    let mut held = held;
    for when in [ReturnWhen::FirstException, ReturnWhen::AllCompleted] {
        let ok = ex.submit(|x: u32| x, 2);
        let timeout = Duration::from_millis(100);
        let start = Instant::now();
        let (done, not_done) = wait([ok, held], Some(timeout), when);
        assert!(start.elapsed() >= timeout);
        assert_eq!(done.len(), 1);
        assert_eq!(done.into_iter().next().unwrap().result(), Ok(2));
        held = not_done.into_iter().next().unwrap();
    }
    let (done, not_done) = wait(
        Vec::<mpkit::pool::Task<u32>>::new(),
        None,
        ReturnWhen::AllCompleted,
    );
    assert!(done.is_empty() && not_done.is_empty());
    g.release(6);
    let (done, not_done) = wait([held], None, ReturnWhen::AllCompleted);
    assert!(not_done.is_empty());
    assert_eq!(done.into_iter().next().unwrap().result(), Ok(6));
}

#[test]
fn map_times_out_and_cancels_what_has_not_started() {
    let _w = watchdog(30);
    let ex = Executor::new(1).unwrap();
    let (mut g1, args1) = gate();
    let (mut g2, args2) = gate();
    let (mut g3, args3) = gate();
    let timeout = Duration::from_millis(200);
    let start = Instant::now();
    let mut outcomes = ex.map(gated, [args1, args2, args3], Some(timeout));
    g1.wait_started();
    assert_eq!(outcomes.next(), Some(Err(MapError::Timeout)));
    assert!(start.elapsed() >= timeout);
    assert_eq!(outcomes.next(), None);
    // The first task was running and finishes; the others never start.
    g1.release(1);
    drop(ex);
    assert!(!g2.ran());
    assert!(!g3.ran());
}

#[test]
fn map_without_timeout_yields_every_outcome_in_order() {
    let _w = watchdog(30);
    let ex = Executor::new(2).unwrap();
    let out: Vec<_> = ex.map(|x: i32| 12 / x, [1, 0, 3, 4], None).collect();
    assert_eq!(out[0], Ok(12));
    assert!(matches!(
        out[1],
        Err(MapError::Task(TaskError::Panicked { .. }))
    ));
    assert_eq!(out[2..], [Ok(4), Ok(3)]);
}

/// A child that exits once it receives anything.
fn exit_when_told(mut conn: Connection) {
    let _ = conn.recv::<()>();
}

#[test]
fn one_wait_over_a_result_a_process_and_a_connection() {
    let _w = watchdog(30);
    let pool = Pool::new(1).unwrap();
    let (mut g, args) = gate();
    let result = pool.apply_async(gated, args);
    g.wait_started();
    let (mut tell_child, child_end) = mpkit::pipe(true).unwrap();
    let child = Process::spawn(exit_when_told, child_end).unwrap();
    let (mut to_conn, mut conn) = mpkit::pipe(true).unwrap();

    let none = mpkit::net::wait(&[&result, &child, &conn], Some(Duration::ZERO)).unwrap();
    assert!(none.is_empty());

    // A message wakes it.
    to_conn.send(&1u8).unwrap();
    let ready = mpkit::net::wait(&[&result, &child, &conn], Some(LONG)).unwrap();
    assert_eq!(ready, [2]);
    assert_eq!(conn.recv::<u8>().unwrap(), 1);

    // A process exiting wakes it.
    tell_child.send(&()).unwrap();
    let ready = mpkit::net::wait(&[&result, &child, &conn], Some(LONG)).unwrap();
    assert_eq!(ready, [1]);
    child.join().unwrap();

    // A result arriving wakes it (the descriptor was made before).
    g.release(3);
    let ready = mpkit::net::wait(&[&result, &conn], Some(LONG)).unwrap();
    assert_eq!(ready, [0]);
    assert_eq!(result.get(), Ok(3));
}

#[test]
fn an_executor_task_wakes_a_wait_and_a_finished_one_is_readable_at_once() {
    use mpkit::net::Waitable;
    use std::os::fd::AsRawFd;

    let _w = watchdog(30);
    let ex = Executor::new(1).unwrap();
    let (mut g, args) = gate();
    let task = ex.submit(gated, args);
    let (_keep, conn) = mpkit::pipe(true).unwrap();
    g.wait_started();
    assert!(
        mpkit::net::wait(&[&conn, &task], Some(Duration::ZERO))
            .unwrap()
            .is_empty()
    );
    g.release(8);
    assert_eq!(mpkit::net::wait(&[&conn, &task], Some(LONG)).unwrap(), [1]);

    // A descriptor first asked for after the result arrived is readable.
    let done = ex.submit(|x: u8| x, 1);
    assert!(done.wait(Some(LONG)));
    let fd = done.ready_fd().unwrap();
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    assert_eq!(n, 1);
    assert_eq!(task.result(), Ok(8));
    assert_eq!(done.result(), Ok(1));
}
