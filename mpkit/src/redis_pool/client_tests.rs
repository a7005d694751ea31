//! The caller's bookkeeping, without a server: where the id of a task
//! whose submission is under way ends up, whatever point of `terminate`
//! it is recorded at.

use std::sync::Arc;
use std::time::Duration;

use super::{Chunk, Inner, Phase, record};
use crate::pool::{Batch, TaskError};
use crate::redis_pool::Keys;
use crate::redis_queue::conn::Conn;

/// A caller whose threads never run: the test plays the submitter.
fn inner() -> Arc<Inner> {
    // Nothing listens there, and nothing here connects but `record`
    // after `leave` (which then fails at once, as a lost server would).
    let client = redis::Client::open("redis://127.0.0.1:1/").unwrap();
    let conn = Conn::new(client, Duration::from_millis(50), Duration::ZERO);
    Arc::new(Inner::new(
        conn,
        "redis://127.0.0.1:1/".into(),
        Keys::new("t"),
        "caller".into(),
        Duration::from_secs(10),
        Duration::from_secs(60),
        2,
        8,
    ))
}

/// Queues one chunk of a background call, and takes it as the submitter
/// does before sending it: its call number and chunk number.
fn queued(inner: &Arc<Inner>, batch: &Arc<Batch>) -> (u64, u64) {
    let sink = inner.call("t.f", "v1 u64 -> u64".into(), true);
    sink.submit(batch, 0, vec![1]);
    let chunk: Chunk = inner.lock().queue.pop_front().unwrap();
    (chunk.call, chunk.seq)
}

/// `terminate`'s steps on the caller's side, with the submitter recording
/// its entry at step `at` (0: before the drain, 1: between the drain and
/// `leave`): the ids terminate deletes.
fn terminate_recording_at(at: usize) -> Vec<String> {
    let inner = inner();
    let batch = Batch::new(false);
    let chunk = queued(&inner, &batch);
    let added = |inner: &Inner| {
        let conn = &inner.conn;
        record(inner, conn, chunk, &batch, Duration::ZERO, Ok("7-0".into()));
    };
    if at == 0 {
        added(&inner);
    }
    inner.lock().phase = Phase::Terminated;
    let mut ids = inner.fail_all(&TaskError::PoolTerminated);
    if at == 1 {
        added(&inner);
    }
    ids.extend(inner.leave());
    assert!(matches!(
        batch.take(0, None),
        Some(Err(TaskError::PoolTerminated))
    ));
    ids
}

/// The race this replays: `terminate` collected the ids of the tasks
/// added so far, then (in a second step under the lock) failed and forgot
/// the chunks; a submission whose entry id was recorded between the two
/// was in neither list, and its entry stayed in the stream. Now the ids
/// are taken with the chunks, in one step.
#[test]
fn a_task_recorded_at_any_point_of_terminate_is_deleted() {
    for at in 0..2 {
        assert_eq!(terminate_recording_at(at), ["7-0"], "recorded at step {at}");
    }
}

/// A collector that stops while deletions of its own are pending (its
/// last pipeline failed) hands them back: `terminate` deletes them.
#[test]
fn ids_handed_back_and_failed_chunks_are_deleted_by_terminate() {
    let inner = inner();
    inner.lock().orphans.push("1-0".into());
    let batch = Batch::new(false);
    let chunk = queued(&inner, &batch);
    record(
        &inner,
        &inner.conn,
        chunk,
        &batch,
        Duration::ZERO,
        Ok("2-0".into()),
    );
    let mut ids = inner.fail_all(&TaskError::PoolTerminated);
    ids.sort();
    assert_eq!(ids, ["1-0", "2-0"]);
    assert!(inner.leave().is_empty());
    // After `leave`, a late entry is not kept for a terminate that has
    // run already (the thread that added it deletes it).
    let batch = Batch::new(false);
    record(
        &inner,
        &inner.conn,
        (99, 0),
        &batch,
        Duration::ZERO,
        Ok("3-0".into()),
    );
    assert!(inner.lock().orphans.is_empty());
}
