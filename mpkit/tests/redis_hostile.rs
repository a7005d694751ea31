//! The Redis-stream queue against a hostile or failing server, a real
//! `redis-server` per test: replies lost after the server ran a command,
//! a server that accepts connections and never answers, a paused server,
//! settings at their extremes, raw commands from someone else.
#![cfg(feature = "redis")]

mod common;
#[path = "common/redis_server.rs"]
mod redis_server;
#[path = "common/tcp_proxy.rs"]
mod tcp_proxy;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::watchdog;
use mpkit::redis_queue::{RedisAckError, RedisGetError, RedisPutError, RedisQueue};
use redis_server::RedisServer;
use tcp_proxy::TcpProxy;

const LONG: Duration = Duration::from_secs(10);

fn server() -> Option<RedisServer> {
    redis_server::available().then(RedisServer::start)
}

fn proxy_to(s: &RedisServer) -> TcpProxy {
    TcpProxy::start(SocketAddr::from(([127, 0, 0, 1], s.port)))
}

/// The stream's length, read with a raw command.
fn xlen(s: &RedisServer, q: &RedisQueue<u32>) -> String {
    s.cmd(&[b"XLEN", q.stream_key().as_bytes()])
}

/// A put whose request ran on the server but whose reply never came back
/// is retried on a new connection. The docs promise that such a put never
/// reports `Ok` having added the item twice. Before the fix the retry
/// added it again and the put returned `Ok` (2 entries).
#[test]
fn a_put_whose_reply_was_lost_adds_the_item_once() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    let p = proxy_to(&s);
    let q: RedisQueue<u32> = RedisQueue::builder(&p.url(), "lost-reply")
        .io_timeout(Duration::from_millis(300))
        .retry_for(LONG)
        .open()
        .unwrap();
    q.put(1).unwrap(); // the script is loaded, the connection made
    assert_eq!(xlen(&s, &q), ":1\r\n");
    p.swallow_next_reply();
    match q.put(2) {
        Ok(()) => assert_eq!(xlen(&s, &q), ":2\r\n", "put returned Ok, item added twice"),
        Err(RedisPutError::Unavailable { value: 2, .. }) => {}
        Err(e) => panic!("{e}"),
    }
    assert_eq!(p.swallowed(), 1);
    // The same for a batch.
    p.swallow_next_reply();
    match q.put_many((3..6).collect()) {
        Ok(()) => assert_eq!(
            xlen(&s, &q),
            ":5\r\n",
            "put_many returned Ok, items added twice"
        ),
        Err(RedisPutError::Unavailable { .. }) => {}
        Err(e) => panic!("{e}"),
    }
    assert_eq!(q.get_many(100).unwrap(), (1..6).collect::<Vec<_>>());
}

/// `task_done` that failed (the server paused writes past the handle's
/// I/O timeout) must leave the item to be acknowledged by the next
/// `task_done`. Before the fix the failed call forgot the item, and the
/// retry acknowledged the *next* item taken, whose work was not done: had
/// the consumer died then, that item was lost.
#[test]
fn task_done_after_a_failed_ack_acknowledges_the_same_item() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    let q: RedisQueue<u32> = RedisQueue::builder(&s.url(), "ack-retry")
        .io_timeout(Duration::from_millis(200))
        .retry_for(Duration::ZERO)
        .open()
        .unwrap();
    q.put_many(vec![1, 2]).unwrap();
    let a = q.get_delivery_timeout(LONG).unwrap();
    let b = q.get_delivery_timeout(LONG).unwrap();
    assert_eq!((a.value, b.value), (1, 2));
    assert_eq!(s.cmd(&[b"CLIENT", b"PAUSE", b"60000", b"WRITE"]), "+OK\r\n");
    let start = Instant::now();
    let failed = q.task_done();
    let took = start.elapsed();
    assert_eq!(s.cmd(&[b"CLIENT", b"UNPAUSE"]), "+OK\r\n");
    assert!(
        matches!(failed, Err(RedisAckError::Unavailable(_))),
        "{failed:?}"
    );
    assert!(took < Duration::from_secs(3), "task_done took {took:?}");
    match q.task_done() {
        Ok(()) => {}
        Err(RedisAckError::NotPending(ids)) => assert_eq!(ids, a.id),
        Err(e) => panic!("{e}"),
    }
    // b is still pending: its work is not done.
    q.ack(&b.id).unwrap();
    assert_eq!(q.pending().unwrap(), 0);
}

/// `ack` that failed keeps the id for `task_done`.
#[test]
fn a_failed_ack_by_id_is_not_forgotten() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    let q: RedisQueue<u32> = RedisQueue::builder(&s.url(), "ack-id-retry")
        .io_timeout(Duration::from_millis(200))
        .retry_for(Duration::ZERO)
        .open()
        .unwrap();
    q.put(1).unwrap();
    let a = q.get_delivery_timeout(LONG).unwrap();
    assert_eq!(s.cmd(&[b"CLIENT", b"PAUSE", b"60000", b"WRITE"]), "+OK\r\n");
    let failed = q.ack(&a.id);
    assert_eq!(s.cmd(&[b"CLIENT", b"UNPAUSE"]), "+OK\r\n");
    assert!(
        matches!(failed, Err(RedisAckError::Unavailable(_))),
        "{failed:?}"
    );
    match q.task_done() {
        Ok(()) => {}
        Err(RedisAckError::NotPending(ids)) => assert_eq!(ids, a.id),
        Err(e) => panic!("{e}"),
    }
    assert_eq!(q.pending().unwrap(), 0);
}

/// "Never redeliver" spelled as the longest visibility timeout works.
/// Before the fix the timeout was sent to the server as 2^64-1 ms, which
/// `XAUTOCLAIM` rejects, and every get failed.
#[test]
fn the_longest_visibility_timeout_is_usable() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    let q: RedisQueue<u32> = RedisQueue::builder(&s.url(), "forever")
        .visibility_timeout(Duration::MAX)
        .max_deliveries(u64::MAX)
        .open()
        .unwrap();
    q.put(7).unwrap();
    assert_eq!(q.get_timeout(LONG).unwrap(), 7);
    q.task_done().unwrap();
    assert!(matches!(q.try_get(), Err(RedisGetError::Empty)));
}

/// Every call returns within its bound (its timeout, or `retry_for`, plus
/// the I/O timeout) against a server that accepts connections and never
/// answers.
#[test]
fn every_call_is_bounded_against_a_server_that_never_answers() {
    let _w = watchdog(120);
    let Some(s) = server() else { return };
    let p = proxy_to(&s);
    let io = Duration::from_millis(200);
    let retry = Duration::from_millis(300);
    let q: RedisQueue<u32> = RedisQueue::builder(&p.url(), "silent")
        .io_timeout(io)
        .retry_for(retry)
        .open()
        .unwrap();
    q.put_many(vec![1, 2, 3]).unwrap();
    let d = q.get_delivery_timeout(LONG).unwrap();
    p.go_silent();
    // A reconnect may take the connect timeout plus the I/O timeout.
    let bound = retry + 3 * io + Duration::from_millis(500);
    let timed = |what: &str, f: &dyn Fn() -> bool| {
        let start = Instant::now();
        assert!(f(), "{what}: not an Unavailable error");
        let took = start.elapsed();
        assert!(took < bound, "{what} took {took:?}");
    };
    use RedisGetError as G;
    timed("get_timeout", &|| {
        matches!(
            q.get_timeout(Duration::from_millis(50)),
            Err(G::Unavailable(_))
        )
    });
    timed("try_get", &|| matches!(q.try_get(), Err(G::Unavailable(_))));
    timed("get", &|| matches!(q.get(), Err(G::Unavailable(_))));
    timed("get_many", &|| {
        matches!(q.get_many(5), Err(G::Unavailable(_)))
    });
    timed("put", &|| {
        matches!(q.put(4), Err(RedisPutError::Unavailable { .. }))
    });
    timed("try_put", &|| {
        matches!(q.try_put(4), Err(RedisPutError::Unavailable { .. }))
    });
    timed("put_many", &|| {
        matches!(
            q.put_many(vec![4, 5]),
            Err(RedisPutError::Unavailable { .. })
        )
    });
    timed("ack", &|| {
        matches!(q.ack(&d.id), Err(RedisAckError::Unavailable(_)))
    });
    timed("len", &|| q.len().is_err());
    timed("join", &|| q.join().is_err());
    timed("close", &|| q.close().is_err());
    timed("is_closed", &|| q.is_closed().is_err());
    timed("dead_letters", &|| q.dead_letters(10).is_err());
    timed("try_clone", &|| q.try_clone().is_err());
    // And all is well once it answers again.
    p.pass();
    assert!(q.len().is_ok());
}

/// An entry someone else wrote with thousands of fields is reported as
/// malformed, then dead-lettered like any other; it must not wedge the
/// take script.
#[test]
fn an_entry_with_thousands_of_fields_is_dead_lettered() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    let q: RedisQueue<u32> = RedisQueue::builder(&s.url(), "many-fields")
        .visibility_timeout(Duration::from_millis(1))
        .max_deliveries(1)
        .open()
        .unwrap();
    let mut args: Vec<Vec<u8>> = vec![b"XADD".to_vec(), q.stream_key().into(), b"*".to_vec()];
    for i in 0..5000 {
        args.push(format!("f{i}").into_bytes());
        args.push(b"x".to_vec());
    }
    let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
    assert!(s.cmd(&refs).starts_with('$'));
    q.put(1).unwrap();
    match q.get_timeout(LONG) {
        Err(RedisGetError::Malformed { .. }) => {}
        other => panic!("expected Malformed, got {other:?}"),
    }
    // Delivered once, so the next look dead-letters it.
    assert_eq!(q.get_timeout(LONG).unwrap(), 1);
    q.task_done().unwrap();
    let dead = q.dead_letters(10).unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].payload, None);
    assert_eq!(q.unfinished_tasks().unwrap(), 0);
}

/// An item larger than the server takes (`proto-max-bulk-len`) is an
/// error soon, the item handed back, and the queue still works.
#[test]
fn an_item_larger_than_the_server_takes_is_an_error() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    assert_eq!(
        s.cmd(&[b"CONFIG", b"SET", b"proto-max-bulk-len", b"1mb"]),
        "+OK\r\n"
    );
    let q: RedisQueue<Vec<u8>> = RedisQueue::builder(&s.url(), "huge")
        .io_timeout(Duration::from_secs(1))
        .retry_for(Duration::from_secs(2))
        .open()
        .unwrap();
    let start = Instant::now();
    match q.put(vec![7u8; 2 << 20]) {
        Err(RedisPutError::Redis { value, .. }) => assert_eq!(value.len(), 2 << 20),
        other => panic!("expected a Redis error, got {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    q.put(vec![1]).unwrap();
    assert_eq!(q.get_timeout(LONG).unwrap(), vec![1]);
}

/// Keys of the wrong type, a group deleted underneath: clear errors.
#[test]
fn keys_of_the_wrong_type_are_errors() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    // The stream key is a string before the queue is opened.
    assert_eq!(s.cmd(&[b"SET", b"mpkit:{str}:stream", b"x"]), "+OK\r\n");
    let e = RedisQueue::<u32>::open(&s.url(), "str").unwrap_err();
    assert!(e.to_string().contains("WRONGTYPE"), "{e}");
    // The dead-letter key is a list when an item is to be dead-lettered.
    let q: RedisQueue<u32> = RedisQueue::builder(&s.url(), "deadlist")
        .visibility_timeout(Duration::from_millis(1))
        .max_deliveries(1)
        .open()
        .unwrap();
    assert_eq!(
        s.cmd(&[b"RPUSH", q.dead_letter_key().as_bytes(), b"x"]),
        ":1\r\n"
    );
    q.put(1).unwrap();
    assert_eq!(q.get_timeout(LONG).unwrap(), 1);
    let e = q.get_timeout(Duration::from_millis(500));
    assert!(matches!(e, Err(RedisGetError::Redis(_))), "{e:?}");
    // The group deleted underneath.
    let g: RedisQueue<u32> = RedisQueue::open(&s.url(), "nogroup").unwrap();
    g.put(1).unwrap();
    assert_eq!(
        s.cmd(&[b"XGROUP", b"DESTROY", g.stream_key().as_bytes(), b"mpkit"]),
        ":1\r\n"
    );
    let e = g.get_timeout(Duration::from_millis(500));
    assert!(matches!(e, Err(RedisGetError::Redis(_))), "{e:?}");
    assert!(g.len().is_err());
}

/// Every handle is a consumer of the group, and the group keeps them: a
/// put to a bounded queue, `len` and `join` must not cost more as they
/// add up. Before the fix each of them ran the summary form of
/// `XPENDING`, which walks every consumer: 100 000 of them made a put
/// some 10 times slower (about 1.3 ms each).
#[test]
fn a_bounded_put_does_not_slow_down_with_many_past_consumers() {
    let _w = watchdog(120);
    let Some(s) = server() else { return };
    let q: RedisQueue<u32> = RedisQueue::builder(&s.url(), "consumers")
        .maxsize(1_000_000)
        .open()
        .unwrap();
    let puts_and_lens = || {
        let start = Instant::now();
        for i in 0..200 {
            q.put(i).unwrap();
            q.len().unwrap();
        }
        start.elapsed()
    };
    puts_and_lens(); // warm: scripts loaded, connection made
    q.get_timeout(LONG).unwrap(); // one pending (an empty group is quick)
    let few = puts_and_lens();
    let made = s.cmd(&[
        b"EVAL",
        b"for i = 1, 100000 do redis.call('XGROUP', 'CREATECONSUMER', KEYS[1], 'mpkit', 'gone-' .. i) end return 1",
        b"1",
        q.stream_key().as_bytes(),
    ]);
    assert_eq!(made, ":1\r\n");
    let many = puts_and_lens();
    assert!(
        many < few * 4 + Duration::from_millis(50),
        "with 100 000 past consumers {many:?}, with one {few:?}"
    );
}

/// The server's state letter in /proc (`T` when stopped).
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

/// Sends `sig` to the test's own server, and waits until it is in the
/// state that signal makes.
fn signal_server(s: &RedisServer, sig: i32, stopped: bool) {
    let pid = s.pid().unwrap();
    // SAFETY: kill(2) with the pid of the server this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
    let want = |c: Option<char>| (c == Some('T')) == stopped;
    assert!(common::eventually(LONG, || want(proc_state(pid))));
}

/// A server stopped (SIGSTOP) mid-put: the put gives up within its bound
/// and hands the item back; whatever of its attempts the server runs once
/// it continues adds the item at most once. A get is bounded the same.
#[test]
fn a_put_to_a_stopped_server_is_bounded_and_adds_at_most_once() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    let io = Duration::from_millis(100);
    let q: RedisQueue<u32> = RedisQueue::builder(&s.url(), "stopped")
        .io_timeout(io)
        .retry_for(Duration::from_millis(500))
        .open()
        .unwrap();
    q.put(1).unwrap();
    q.get_timeout(LONG).unwrap();
    q.task_done().unwrap();
    signal_server(&s, libc::SIGSTOP, true);
    let start = Instant::now();
    let put = q.put(2);
    let took = start.elapsed();
    let get = q.get_timeout(Duration::from_millis(50));
    signal_server(&s, libc::SIGCONT, false);
    assert!(
        matches!(put, Err(RedisPutError::Unavailable { value: 2, .. })),
        "{put:?}"
    );
    assert!(took < Duration::from_secs(2), "put took {took:?}");
    assert!(matches!(get, Err(RedisGetError::Unavailable(_))), "{get:?}");
    // Every connection the handle dropped is read and closed by the
    // server: only the one asking is left.
    assert!(common::eventually(LONG, || s
        .cmd(&[b"INFO", b"clients"])
        .contains("connected_clients:1\r\n")));
    let len = xlen(&s, &q);
    assert!(len == ":0\r\n" || len == ":1\r\n", "XLEN {len}");
}

/// Puts into a bounded queue from one process, all at once with its
/// siblings, until it is full; returns how many it put.
fn fill((q, start): (RedisQueue<u32>, mpkit::sync::Barrier)) -> u32 {
    start.wait_timeout(LONG).unwrap();
    let mut put = 0;
    for i in 0..1000 {
        match q.try_put(i) {
            Ok(()) => put += 1,
            Err(RedisPutError::Full(_)) => break,
            Err(e) => panic!("{e}"),
        }
    }
    put
}

/// `maxsize` holds exactly with producers in several processes racing to
/// fill the queue.
#[test]
fn maxsize_is_exact_with_producers_in_several_processes() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    let q: RedisQueue<u32> = RedisQueue::builder(&s.url(), "race")
        .maxsize(301)
        .open()
        .unwrap();
    let start = mpkit::sync::Barrier::new(4).unwrap();
    let producers: Vec<_> = (0..4)
        .map(|_| {
            let args = (q.try_clone().unwrap(), start.try_clone().unwrap());
            mpkit::Process::spawn(fill, args).unwrap()
        })
        .collect();
    let total: u32 = producers.into_iter().map(|p| p.join().unwrap()).sum();
    assert_eq!(total, 301);
    assert_eq!(xlen(&s, &q), ":301\r\n");
    assert_eq!(q.len().unwrap(), 301);
    assert!(matches!(q.try_put(0), Err(RedisPutError::Full(0))));
}

/// Names are bytes to Redis: spaces, braces, newlines and non-ASCII work,
/// and two such names are two queues.
#[test]
fn odd_names_are_distinct_working_queues() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    let names = ["a b", "a}b{c", "жёлтый 🚚", "line\nbreak", "", "a}:meta"];
    let queues: Vec<RedisQueue<String>> = names
        .iter()
        .map(|n| {
            RedisQueue::builder(&s.url(), n)
                .visibility_timeout(Duration::from_millis(1))
                .max_deliveries(1)
                .open()
                .unwrap()
        })
        .collect();
    for (q, n) in queues.iter().zip(names) {
        q.put(n.to_string()).unwrap();
    }
    for (q, n) in queues.iter().zip(names) {
        assert_eq!(q.unfinished_tasks().unwrap(), 1, "{n:?}");
        assert_eq!(q.get_timeout(LONG).unwrap(), n);
        q.task_done().unwrap();
        assert_eq!(q.unfinished_tasks().unwrap(), 0, "{n:?}");
        assert!(q.dead_letters(10).unwrap().is_empty());
    }
}

/// Takes one item from a fresh handle and acknowledges it.
fn take_and_ack(q: RedisQueue<u32>) {
    q.get_timeout(LONG).unwrap();
    q.task_done().unwrap();
}

/// Every handle that takes is a consumer of the group. Before the fix
/// nothing ever removed one: a server serving short-lived worker
/// processes kept a consumer (name, its own radix tree) per process
/// forever. Now a handle leaves the group when dropped if it holds
/// nothing (`XGROUP DELCONSUMER` would drop what it holds), and takes
/// sweep idle consumers that hold nothing.
#[test]
fn consumers_of_finished_handles_do_not_pile_up() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    let q: RedisQueue<u32> = RedisQueue::open(&s.url(), "churn").unwrap();
    q.put_many((0..20).collect()).unwrap();
    for _ in 0..20 {
        let child = mpkit::Process::spawn(take_and_ack, q.try_clone().unwrap()).unwrap();
        child.join().unwrap();
    }
    let info = s.cmd(&[b"XINFO", b"GROUPS", q.stream_key().as_bytes()]);
    let consumers = info
        .split("consumers\r\n:")
        .nth(1)
        .and_then(|r| r.split("\r\n").next())
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap();
    assert!(consumers <= 2, "{consumers} consumers left in the group");
}

/// An item whose consumer is gone is delivered again once it has been
/// idle for the visibility timeout, even while older items cycle through
/// redelivery. Before the fix every take started its `XAUTOCLAIM` scan at
/// the oldest pending entry and looked at 10 entries per item asked for,
/// so 10 older entries just redelivered hid the 11th: it stayed pending
/// for as long as they kept being taken.
#[test]
fn a_timed_out_item_behind_ten_busy_ones_is_delivered_again() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    let v = Duration::from_millis(400);
    let q: RedisQueue<u32> = RedisQueue::builder(&s.url(), "behind")
        .visibility_timeout(v)
        .max_deliveries(100)
        .open()
        .unwrap();
    q.put_many((1..=11).collect()).unwrap();
    let first = q.try_clone().unwrap();
    assert_eq!(first.get_many(10).unwrap(), (1..=10).collect::<Vec<_>>());
    let gone = q.try_clone().unwrap();
    assert_eq!(gone.get_timeout(LONG).unwrap(), 11);
    drop(gone);
    // After the timeout all eleven come back, each once, before any of
    // them comes a third time.
    let mut again: Vec<(u32, u64)> = (0..11)
        .map(|_| {
            let d = q.get_delivery_timeout(LONG).unwrap();
            (d.value, d.deliveries)
        })
        .collect();
    again.sort();
    let want: Vec<(u32, u64)> = (1..=11).map(|v| (v, 2)).collect();
    assert_eq!(again, want, "item 11 not delivered again in turn");
}

/// A delivery count someone else set to the largest a stream keeps
/// (`XCLAIM … RETRYCOUNT`): the item is dead-lettered, and the dead
/// letters stay readable.
#[test]
fn a_huge_delivery_count_is_dead_lettered_and_readable() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    let q: RedisQueue<u32> = RedisQueue::builder(&s.url(), "count")
        .visibility_timeout(Duration::from_millis(1))
        .max_deliveries(5)
        .open()
        .unwrap();
    q.put(1).unwrap();
    let d = q.get_delivery_timeout(LONG).unwrap();
    let claim = s.cmd(&[
        b"XCLAIM",
        q.stream_key().as_bytes(),
        b"mpkit",
        q.consumer().as_bytes(),
        b"0",
        d.id.as_bytes(),
        b"RETRYCOUNT",
        b"9223372036854775807",
    ]);
    assert!(claim.starts_with('*'), "{claim}");
    // A look once it is idle finds it past max_deliveries.
    let got = q.get_timeout(Duration::from_millis(300));
    assert!(matches!(got, Err(RedisGetError::Empty)), "{got:?}");
    let dead = q.dead_letters(10).unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].id, d.id);
    assert!(dead[0].deliveries > 5, "{dead:?}");
}
