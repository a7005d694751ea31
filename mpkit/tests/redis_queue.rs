//! The Redis-stream queue between real processes against a real
//! `redis-server` (one per test, on a free loopback port): order, timeouts,
//! maxsize, redelivery after a consumer is killed, dead letters, malformed
//! entries, a server killed mid-get, and code generic over both queues.

mod common;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use common::watchdog;
use mpkit::Process;
use mpkit::queue::generic::GetError;
use mpkit::queue::{JoinableOps, JoinableQueue};
use mpkit::redis_queue::{RedisGetError, RedisPutError, RedisQueue};
use mpkit::sync::Event;
use redis_server::RedisServer;
use serde::Serialize;
use serde::de::DeserializeOwned;

const LONG: Duration = Duration::from_secs(10);

/// A server, or `None` when the test is to be skipped (never under CI).
fn server() -> Option<RedisServer> {
    redis_server::available().then(RedisServer::start)
}

fn queue<T: Serialize + DeserializeOwned>(s: &RedisServer, name: &str) -> RedisQueue<T> {
    RedisQueue::open(&s.url(), name).unwrap()
}

/// Takes `n` items and acknowledges each; returns them.
fn take_n((q, n): (RedisQueue<u32>, usize)) -> Vec<u32> {
    (0..n)
        .map(|_| {
            let v = q.get_timeout(LONG).unwrap();
            q.task_done().unwrap();
            v
        })
        .collect()
}

#[test]
fn items_arrive_in_order_in_another_process() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    let q: RedisQueue<u32> = queue(&s, "order");
    let child = Process::spawn(take_n, (q.try_clone().unwrap(), 300)).unwrap();
    for i in 0..100 {
        q.put(i).unwrap();
    }
    q.put_many((100..300).collect()).unwrap();
    assert_eq!(child.join().unwrap(), (0..300).collect::<Vec<_>>());
    q.join_timeout(LONG).unwrap();
    assert_eq!(q.unfinished_tasks().unwrap(), 0);
}

#[test]
fn timeouts_are_honoured() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    let q: RedisQueue<u32> = RedisQueue::builder(&s.url(), "timeouts")
        .maxsize(2)
        .open()
        .unwrap();
    let t = Duration::from_millis(300);
    let start = Instant::now();
    assert!(matches!(q.try_get(), Err(RedisGetError::Empty)));
    assert!(start.elapsed() < t, "try_get waited {:?}", start.elapsed());
    let start = Instant::now();
    assert!(matches!(q.get_timeout(t), Err(RedisGetError::Empty)));
    let took = start.elapsed();
    assert!(took >= t && took < t + Duration::from_secs(1), "{took:?}");

    q.put_many(vec![1, 2]).unwrap();
    assert!(matches!(q.try_put(3), Err(RedisPutError::Full(3))));
    let start = Instant::now();
    let e = q.put_timeout(4, t).unwrap_err();
    let took = start.elapsed();
    assert!(matches!(e, RedisPutError::Full(4)), "{e:?}");
    assert!(took >= t && took < t + Duration::from_secs(1), "{took:?}");
    assert_eq!(
        q.join_timeout(t).unwrap_err().to_string(),
        "timed out with 2 unfinished items"
    );
}

#[test]
fn maxsize_counts_queued_items_and_a_put_waits_for_room() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    let q: RedisQueue<u32> = RedisQueue::builder(&s.url(), "maxsize")
        .maxsize(3)
        .open()
        .unwrap();
    assert_eq!(q.maxsize(), 3);
    q.put_many(vec![0, 1, 2]).unwrap();
    assert!(q.try_put(9).is_err());
    assert_eq!(q.len().unwrap(), 3);
    // Another process takes one: the put waiting for room completes.
    let child = Process::spawn(take_n, (q.try_clone().unwrap(), 1)).unwrap();
    q.put_timeout(3, LONG).unwrap();
    assert_eq!(child.join().unwrap(), vec![0]);
    assert_eq!(q.len().unwrap(), 3);
    // A later handle with another maxsize uses the queue's.
    let other: RedisQueue<u32> = RedisQueue::builder(&s.url(), "maxsize")
        .maxsize(100)
        .open()
        .unwrap();
    assert_eq!(other.maxsize(), 3);
    assert!(matches!(other.try_put(9), Err(RedisPutError::Full(9))));
}

/// Takes one item, says so, and hangs holding it (killed first).
fn take_and_hang((q, took): (RedisQueue<String>, Event)) {
    let d = q.get_delivery_timeout(LONG).unwrap();
    assert_eq!(d.deliveries, 1);
    took.set();
    std::thread::sleep(Duration::from_secs(600));
}

/// Takes one item and returns it with its delivery count, acknowledging
/// it when `ack`.
fn take_one((q, ack): (RedisQueue<String>, bool)) -> Option<(String, u64)> {
    match q.get_delivery_timeout(LONG) {
        Ok(d) => {
            if ack {
                q.ack(&d.id).unwrap();
            }
            Some((d.value, d.deliveries))
        }
        Err(RedisGetError::Empty) => None,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn an_item_held_by_a_killed_consumer_is_delivered_again() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    let vt = Duration::from_millis(500);
    let q: RedisQueue<String> = RedisQueue::builder(&s.url(), "redeliver")
        .visibility_timeout(vt)
        .open()
        .unwrap();
    q.put("job".to_string()).unwrap();
    let took = Event::new().unwrap();
    let doomed = Process::spawn(
        take_and_hang,
        (q.try_clone().unwrap(), took.try_clone().unwrap()),
    )
    .unwrap();
    assert!(took.wait(Some(LONG)).unwrap());
    let taken_at = Instant::now();
    assert_eq!(q.pending().unwrap(), 1);
    doomed.kill().unwrap();
    let other = Process::spawn(take_one, (q.try_clone().unwrap(), true)).unwrap();
    assert_eq!(other.join().unwrap(), Some(("job".to_string(), 2)));
    assert!(taken_at.elapsed() >= vt - Duration::from_millis(50));
    q.join_timeout(LONG).unwrap();
    assert!(q.dead_letters(10).unwrap().is_empty());
}

#[test]
fn an_item_goes_to_dead_letters_after_max_deliveries() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    let q: RedisQueue<String> = RedisQueue::builder(&s.url(), "dead")
        .visibility_timeout(Duration::from_millis(200))
        .max_deliveries(2)
        .open()
        .unwrap();
    q.put("poison".to_string()).unwrap();
    // Two consumers in turn take it and exit without acknowledging it.
    for n in 1..=2 {
        let c = Process::spawn(take_one, (q.try_clone().unwrap(), false)).unwrap();
        assert_eq!(c.join().unwrap(), Some(("poison".to_string(), n)));
    }
    // The third delivery would pass max_deliveries: dead-lettered instead.
    assert!(matches!(
        q.get_timeout(Duration::from_secs(1)),
        Err(RedisGetError::Empty)
    ));
    let dead = q.dead_letters(10).unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].deliveries, 3);
    let payload = dead[0].payload.as_deref().unwrap();
    let v: String = <mpkit::codec::Postcard as mpkit::codec::Codec>::decode(payload).unwrap();
    assert_eq!(v, "poison");
    assert_eq!(q.unfinished_tasks().unwrap(), 0);
    q.join_timeout(LONG).unwrap();
}

#[test]
fn a_malformed_entry_is_reported_not_dropped() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    let q: RedisQueue<u32> = queue(&s, "malformed");
    let key = q.stream_key().as_bytes().to_vec();
    q.put(1).unwrap();
    // Not a postcard u32: 0xff continues a varint that never ends.
    let bad = s.cmd(&[b"XADD", &key, b"*", b"v", b"\xff\xff\xff\xff\xff\xff"]);
    let bad_id = bad.lines().nth(1).unwrap().to_string();
    let odd = s.cmd(&[b"XADD", &key, b"*", b"x", b"1"]);
    let odd_id = odd.lines().nth(1).unwrap().to_string();
    q.put(2).unwrap();

    // The batch ends before the bad entry, which the next get reports.
    assert_eq!(q.get_many(10).unwrap(), vec![1]);
    match q.get_timeout(LONG) {
        Err(RedisGetError::Decode { id, type_name, .. }) => {
            assert_eq!(id, bad_id);
            assert_eq!(type_name, "u32");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    match q.get_timeout(LONG) {
        Err(RedisGetError::Malformed { id, why }) => {
            assert_eq!(id, odd_id);
            assert!(why.contains("`x`"), "{why}");
        }
        other => panic!("expected a malformed entry, got {other:?}"),
    }
    assert_eq!(q.get_timeout(LONG).unwrap(), 2);
    // Both bad entries are still pending, not dropped; acknowledging them
    // by id finishes them.
    assert_eq!(q.pending().unwrap(), 4);
    q.task_done().unwrap();
    q.task_done().unwrap();
    assert_eq!(q.pending().unwrap(), 2);
    q.ack(&bad_id).unwrap();
    q.ack(&odd_id).unwrap();
    q.join_timeout(LONG).unwrap();
}

/// Blocks in a get until the server dies; returns the error.
fn get_until_error(q: RedisQueue<u32>) -> String {
    match q.get_timeout(Duration::from_secs(60)) {
        Err(e @ RedisGetError::Unavailable(_)) => format!("unavailable: {e}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[test]
fn a_server_killed_mid_get_is_an_error_within_the_deadline() {
    let _w = watchdog(60);
    let Some(mut s) = server() else { return };
    let retry = Duration::from_secs(1);
    let q: RedisQueue<u32> = RedisQueue::builder(&s.url(), "killed")
        .retry_for(retry)
        .io_timeout(Duration::from_secs(1))
        .open()
        .unwrap();
    let mut child = Process::spawn(get_until_error, q.try_clone().unwrap()).unwrap();
    // The child is blocked in XREADGROUP when the server shows it so.
    assert!(
        common::eventually(LONG, || s
            .cmd(&[b"CLIENT", b"LIST"])
            .contains("cmd=xreadgroup")),
        "the child never blocked in XREADGROUP"
    );
    s.kill();
    let killed_at = Instant::now();
    let got = child.join_timeout(LONG).unwrap();
    assert!(got.starts_with("unavailable"), "{got}");
    let took = killed_at.elapsed();
    assert!(took < retry + Duration::from_secs(2), "took {took:?}");
    // This handle too: an error within its retry period, not a hang.
    let start = Instant::now();
    assert!(matches!(q.try_get(), Err(RedisGetError::Unavailable(_))));
    assert!(start.elapsed() < retry + Duration::from_secs(2));
}

#[test]
fn what_was_put_survives_a_restart_with_aof() {
    let _w = watchdog(60);
    if !redis_server::available() {
        return;
    }
    let mut s = RedisServer::start_with_aof();
    let q: RedisQueue<u32> = queue(&s, "aof");
    q.put_many((0..50).collect()).unwrap();
    s.restart();
    // The same handle reconnects.
    assert_eq!(q.get_many(100).unwrap(), (0..50).collect::<Vec<_>>());
}

/// Generic over the queue: sums items until the queue closes, marking
/// each done.
fn sum_until_closed<Q: JoinableOps<u64>>(q: Q) -> u64 {
    let mut sum = 0;
    loop {
        match q.get_timeout(Some(LONG)) {
            Ok(v) => {
                sum += v;
                q.task_done().unwrap();
            }
            Err(GetError::Closed) => return sum,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Generic over the queue: a child consumer, then put, join, close.
fn produce_and_join<Q>(q: Q, clone: Q) -> u64
where
    Q: JoinableOps<u64> + Serialize + DeserializeOwned,
{
    let child = Process::spawn(sum_until_closed::<Q>, clone).unwrap();
    q.put_many((1..=100).collect()).unwrap();
    q.put(1000).unwrap();
    q.join_timeout(Some(LONG)).unwrap();
    assert_eq!(q.len().unwrap(), 0);
    q.close().unwrap();
    assert!(matches!(
        q.try_put(1),
        Err(mpkit::queue::generic::PutError::Closed(1))
    ));
    child.join().unwrap()
}

#[test]
fn generic_code_runs_on_both_queues() {
    let _w = watchdog(60);
    let shm: JoinableQueue<u64> = JoinableQueue::new(0).unwrap();
    let clone = shm.try_clone().unwrap();
    assert_eq!(produce_and_join(shm, clone), 6050);
    let Some(s) = server() else { return };
    let q: RedisQueue<u64> = RedisQueue::open(&s.url(), "generic").unwrap();
    let clone = q.try_clone().unwrap();
    assert_eq!(produce_and_join(q, clone), 6050);
}

#[test]
fn a_batch_is_acknowledged_in_one_call() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    let q: RedisQueue<u32> = queue(&s, "batch");
    q.put_many((0..50).collect()).unwrap();
    let first = q.get_delivery_timeout(LONG).unwrap();
    assert_eq!(q.get_many(100).unwrap(), (1..50).collect::<Vec<_>>());
    assert!(matches!(
        q.task_done_many(51),
        Err(mpkit::redis_queue::RedisAckError::NothingTaken)
    ));
    assert_eq!(q.pending().unwrap(), 50);
    q.task_done_many(50).unwrap();
    q.join_timeout(LONG).unwrap();
    match q.ack(&first.id) {
        Err(mpkit::redis_queue::RedisAckError::NotPending(ids)) => assert_eq!(ids, first.id),
        other => panic!("expected NotPending, got {other:?}"),
    }
}

#[test]
fn a_server_that_lost_its_data_is_an_error_not_an_empty_queue() {
    let _w = watchdog(60);
    let Some(mut s) = server() else { return };
    let q: RedisQueue<u32> = queue(&s, "lost");
    q.put(1).unwrap();
    s.restart(); // no persistence: the queue is gone
    match q.put(2) {
        Err(RedisPutError::Redis { value: 2, source }) => {
            assert_eq!(source.code(), Some("NOQUEUE"), "{source}")
        }
        other => panic!("expected NOQUEUE, got {other:?}"),
    }
    match q.get_timeout(LONG) {
        Err(RedisGetError::Redis(e)) => assert_eq!(e.code(), Some("NOQUEUE"), "{e}"),
        other => panic!("expected NOQUEUE, got {other:?}"),
    }
    // Opening it again makes it anew.
    let again: RedisQueue<u32> = queue(&s, "lost");
    again.put(3).unwrap();
    assert_eq!(q.get_timeout(LONG).unwrap(), 3);
}

/// Takes one item and holds it until `release` is set, then acknowledges
/// it; returns its delivery count and whether the ack found it pending.
fn take_slowly((q, took, release): (RedisQueue<String>, Event, Event)) -> (u64, bool) {
    let d = q.get_delivery_timeout(LONG).unwrap();
    took.set();
    assert!(release.wait(Some(LONG)).unwrap());
    match q.ack(&d.id) {
        Ok(()) => (d.deliveries, true),
        Err(mpkit::redis_queue::RedisAckError::NotPending(_)) => (d.deliveries, false),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn an_item_held_past_the_visibility_timeout_goes_to_another_consumer() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    let q: RedisQueue<String> = RedisQueue::builder(&s.url(), "slow")
        .visibility_timeout(Duration::from_millis(300))
        .open()
        .unwrap();
    q.put("job".to_string()).unwrap();
    let (took, release) = (Event::new().unwrap(), Event::new().unwrap());
    let slow = Process::spawn(
        take_slowly,
        (
            q.try_clone().unwrap(),
            took.try_clone().unwrap(),
            release.try_clone().unwrap(),
        ),
    )
    .unwrap();
    assert!(took.wait(Some(LONG)).unwrap());
    // The slow consumer is alive and still holds it: delivered again, and
    // the first acknowledgement wins; the late one is told.
    let fast = Process::spawn(take_one, (q.try_clone().unwrap(), true)).unwrap();
    assert_eq!(fast.join().unwrap(), Some(("job".to_string(), 2)));
    release.set();
    assert_eq!(slow.join().unwrap(), (1, false));
    q.join_timeout(LONG).unwrap();
}

#[test]
fn the_json_codec_writes_json_entries() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    let q: RedisQueue<(u32, String), mpkit::codec::Json> =
        RedisQueue::open(&s.url(), "json").unwrap();
    q.put((7, "seven".to_string())).unwrap();
    let key = q.stream_key().as_bytes().to_vec();
    // Another language reads the entry as JSON text.
    let raw = s.cmd(&[b"XRANGE", &key, b"-", b"+"]);
    assert!(raw.contains(r#"[7,"seven"]"#), "{raw}");
    // And writes one the queue reads.
    s.cmd(&[b"XADD", &key, b"*", b"v", br#"[8,"eight"]"#]);
    assert_eq!(q.get_timeout(LONG).unwrap(), (7, "seven".to_string()));
    assert_eq!(q.get_timeout(LONG).unwrap(), (8, "eight".to_string()));
}

#[test]
fn get_many_of_any_size_is_served() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    let q: RedisQueue<u32> = queue(&s, "huge");
    q.put_many((0..3).collect()).unwrap();
    assert_eq!(q.get_many(usize::MAX).unwrap(), vec![0, 1, 2]);
    assert!(q.get_many(0).unwrap().is_empty());
}

/// Works until the queue closes: counts each item in `done` (shared
/// memory, so that the count survives this process being killed), then
/// acknowledges it. `took` is set after the first item is counted.
fn count_items((q, done, took): (RedisQueue<u32>, mpkit::shm::RawArray<u32>, Event)) {
    use std::sync::atomic::Ordering;
    loop {
        match q.get_many(5) {
            Ok(items) => {
                for &v in &items {
                    done.atomics()[v as usize].fetch_add(1, Ordering::SeqCst);
                }
                took.set();
                q.task_done_many(items.len()).unwrap();
            }
            Err(RedisGetError::Closed) => return,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Takes a batch, counts it in `done`, says so, and hangs before its
/// acknowledgement (killed first): its items were worked on, never acked.
fn count_and_hang((q, done, took): (RedisQueue<u32>, mpkit::shm::RawArray<u32>, Event)) {
    use std::sync::atomic::Ordering;
    for v in q.get_many(5).unwrap() {
        done.atomics()[v as usize].fetch_add(1, Ordering::SeqCst);
    }
    took.set();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn every_item_is_done_though_a_consumer_is_killed_mid_stream() {
    let _w = watchdog(60);
    let Some(s) = server() else { return };
    const N: usize = 500;
    // Long enough that a live worker, even descheduled on a loaded
    // machine, acknowledges its batch in time.
    let q: RedisQueue<u32> = RedisQueue::builder(&s.url(), "chaos")
        .visibility_timeout(Duration::from_secs(1))
        .open()
        .unwrap();
    let done = mpkit::shm::RawArray::<u32>::zeroed(N).unwrap();
    let start = |f: fn((RedisQueue<u32>, mpkit::shm::RawArray<u32>, Event)), took: &Event| {
        Process::spawn(
            f,
            (
                q.try_clone().unwrap(),
                done.try_clone().unwrap(),
                took.try_clone().unwrap(),
            ),
        )
        .unwrap()
    };
    let (doomed_took, took) = (Event::new().unwrap(), Event::new().unwrap());
    q.put_many((0..N as u32).collect()).unwrap();
    let doomed = start(count_and_hang, &doomed_took);
    // Killed between working on its batch and acknowledging it.
    assert!(doomed_took.wait(Some(LONG)).unwrap());
    let workers = [start(count_items, &took), start(count_items, &took)];
    doomed.kill().unwrap();
    q.join_timeout(LONG).unwrap();
    q.close().unwrap();
    for w in workers {
        w.join().unwrap();
    }
    let counts = done.to_vec();
    let missing: Vec<usize> = (0..N).filter(|&i| counts[i] == 0).collect();
    assert!(missing.is_empty(), "items never done: {missing:?}");
    // What the killed consumer held was done again, and nothing else.
    let twice = counts.iter().filter(|&&c| c > 1).count();
    assert!(
        (1..=5).contains(&twice),
        "{twice} items done more than once"
    );
    assert!(q.dead_letters(10).unwrap().is_empty());
}
