//! What a caller leaves in Redis when it stops with tasks in flight, and
//! a pool setting overwritten by another client. Events between this
//! process's threads and the server are ordered with the server's own
//! `CLIENT PAUSE WRITE` (a write waits in the server, visible in `CLIENT
//! LIST`), and an ACL that refuses one command (visible in `ACL LOG`).

use std::io::{BufRead, BufReader};

use super::*;

/// A number that does not encode when it is 0: a `map` whose first
/// item is 0 fails at once, in this process, and stops there, cancelling
/// its other chunks.
#[derive(serde::Deserialize)]
struct Picky(u64);

impl serde::Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 0 {
            return Err(serde::ser::Error::custom("zero does not encode"));
        }
        s.serialize_u64(self.0)
    }
}

fn picky(p: Picky) -> u64 {
    p.0
}

const PICKY: RemoteFn<Picky, u64> = RemoteFn::new("test.picky", picky);

/// Whether a client of the server waits, paused, on a command `cmd`
/// (`CLIENT LIST`: its command, and the flag `b`).
fn paused_on(s: &RedisServer, cmd: &str) -> bool {
    let list = s.cmd(&[b"CLIENT", b"LIST"]);
    let field = format!("cmd={cmd}");
    list.lines().any(|l| {
        let mut fields = l.split(' ');
        let flags = l.split(' ').find_map(|f| f.strip_prefix("flags="));
        fields.any(|f| f == field) && flags.is_some_and(|f| f.contains('b'))
    })
}

/// The entries of `pool`'s task stream that name `caller`.
fn tasks_of(s: &RedisServer, pool: &str, caller: &str) -> usize {
    let key = format!("mpkit:pool:{{{pool}}}:tasks");
    s.cmd(&[b"XRANGE", key.as_bytes(), b"-", b"+"])
        .matches(caller)
        .count()
}

/// `terminate` with tasks added, one being added (held by the server)
/// and more queued behind it, and no worker: every task fails, and none
/// is left in the stream.
pub(super) fn terminate_with_tasks_in_flight_and_no_worker_leaves_none() {
    let Some(s) = server() else { return };
    let pool = RedisPool::builder(&s.url(), "inflight")
        .io_timeout(Duration::from_secs(3))
        .connect()
        .unwrap();
    let key = "mpkit:pool:{inflight}:tasks";
    let mut results: Vec<_> = (0..3).map(|i| pool.apply_async(&DOUBLE, i)).collect();
    assert!(eventually(LONG, || s.cmd(&[b"XLEN", key.as_bytes()]) == ":3\r\n"));
    // The next submission waits in the server; two more queue behind it.
    s.cmd(&[b"CLIENT", b"PAUSE", b"60000", b"WRITE"]);
    let held = pool.apply_async(&DOUBLE, 3);
    results.extend((4..6).map(|i| pool.apply_async(&DOUBLE, i)));
    assert!(eventually(LONG, || paused_on(&s, "evalsha")));
    std::thread::scope(|scope| {
        let terminating = scope.spawn(|| pool.terminate());
        // Failed by terminate, which waits for the submitter: the server
        // now adds the task held, after terminate took the ids.
        assert_eq!(
            held.get_timeout(LONG).ok().unwrap(),
            Err(TaskError::PoolTerminated)
        );
        s.cmd(&[b"CLIENT", b"UNPAUSE"]);
        terminating.join().unwrap();
    });
    for r in results {
        assert_eq!(
            r.get_timeout(LONG).ok().unwrap(),
            Err(TaskError::PoolTerminated)
        );
    }
    assert_eq!(tasks_added(&s, "inflight"), 4, "the task held was added");
    assert_eq!(tasks_of(&s, "inflight", pool.caller()), 0);
    assert_eq!(
        keys(&s),
        ["mpkit:pool:{inflight}:meta", "mpkit:pool:{inflight}:tasks"]
    );
}

/// A `map` stopped by a failure cancels its other chunks; the collector
/// deletes their tasks, but here the server refuses (an ACL without
/// `XDEL`) until the pool is terminated: the collector, stopping, hands
/// their ids to `terminate`, which deletes them. (They were lost, and the
/// tasks stayed in the stream for ever with no worker to skip them.)
pub(super) fn a_stopping_collector_hands_its_deletions_to_terminate() {
    let Some(s) = server() else { return };
    let pool = RedisPool::builder(&s.url(), "handback")
        .io_timeout(Duration::from_secs(3))
        .retry_for(LONG * 3)
        .connect()
        .unwrap();
    let key = "mpkit:pool:{handback}:tasks";
    s.cmd(&[b"ACL", b"SETUSER", b"default", b"-xdel"]);
    let out = pool.map_chunked(&PICKY, [Picky(0), Picky(1), Picky(2)], 1);
    assert!(matches!(out, Err(TaskError::ArgsEncode { .. })), "{out:?}");
    assert_eq!(s.cmd(&[b"XLEN", key.as_bytes()]), ":2\r\n");
    // The collector has taken their ids, and cannot delete them.
    assert!(eventually(LONG, || s
        .cmd(&[b"ACL", b"LOG"])
        .contains("xdel")));
    // Every write waits from now on; `XDEL` is allowed again, for
    // terminate's leave-caller script, once the collector has stopped.
    s.cmd(&[b"CLIENT", b"PAUSE", b"60000", b"WRITE"]);
    s.cmd(&[b"ACL", b"SETUSER", b"default", b"+xdel"]);
    std::thread::scope(|scope| {
        let terminating = scope.spawn(|| pool.terminate());
        // The leave-caller script, sent once the collector stopped.
        assert!(eventually(LONG, || paused_on(&s, "evalsha")));
        s.cmd(&[b"CLIENT", b"UNPAUSE"]);
        terminating.join().unwrap();
    });
    assert_eq!(tasks_of(&s, "handback", pool.caller()), 0);
    assert_eq!(s.cmd(&[b"XLEN", key.as_bytes()]), ":0\r\n");
}

/// Another client overwrites the pool's `visibility_ms` with a value that
/// is not a number of milliseconds: the task waiting fails naming it,
/// new ones are refused, a worker says so (and keeps trying); a caller
/// that connects records its own, and tasks run again.
pub(super) fn a_visibility_overwritten_by_another_client_fails_tasks_until_repaired() {
    let Some(s) = server() else { return };
    let pool = RedisPool::connect(&s.url(), "badmeta").unwrap();
    let (tasks, meta) = ("mpkit:pool:{badmeta}:tasks", "mpkit:pool:{badmeta}:meta");
    // No worker yet: the task waits in the stream.
    let waiting = pool.apply_async(&DOUBLE, 1);
    assert!(eventually(LONG, || s.cmd(&[b"XLEN", tasks.as_bytes()]) == ":1\r\n"));
    s.cmd(&[b"HSET", meta.as_bytes(), b"visibility_ms", b"1.5"]);
    let named = |m: &str| m.contains("visibility_ms") && m.contains("\"1.5\"") && m.contains(meta);
    match waiting.get_timeout(LONG).ok().unwrap() {
        Err(TaskError::Unavailable { message }) if named(&message) => {}
        other => panic!("{other:?}"),
    }
    // Its task is deleted: no worker runs it once the setting is right.
    assert!(eventually(LONG, || s.cmd(&[b"XLEN", tasks.as_bytes()]) == ":0\r\n"));
    match pool.apply(&DOUBLE, 2) {
        Err(TaskError::Unavailable { message })
            if named(&message) && message.contains("BADMETA") => {}
        other => panic!("{other:?}"),
    }
    // A worker cannot take a task, and says why.
    // (Its stderr read to the end of the test: a worker that writes to a
    // closed pipe would fail.)
    let (mut log, _workers) = Workers::start_logged(&s.url(), "badmeta", 1);
    let said = BufReader::new(&mut log)
        .lines()
        .map(Result::unwrap)
        .find(|l| named(l))
        .unwrap();
    assert!(said.contains("cannot take tasks"), "{said}");
    // A caller that connects records its own, and tasks run again.
    let other = RedisPool::builder(&s.url(), "badmeta")
        .visibility_timeout(Duration::from_secs(30))
        .connect()
        .unwrap();
    assert_eq!(other.visibility_timeout(), Duration::from_secs(30));
    assert_eq!(
        s.cmd(&[b"HGET", meta.as_bytes(), b"visibility_ms"]),
        "$5\r\n30000\r\n"
    );
    assert_eq!(pool.apply(&DOUBLE, 3), Ok(6));
    assert_eq!(other.apply(&DOUBLE, 4), Ok(8));
}
