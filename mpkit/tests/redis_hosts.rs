//! Several hosts on one machine: three network namespaces joined by veth
//! pairs, Redis in one, a consumer process in each of the two others. One
//! consumer's host is cut off (its link set down) while it holds an item:
//! the item is delivered to the other host after the visibility timeout,
//! and every item is done exactly once. The `redis_two_hosts` example's
//! producer and consumer run on two hosts too. Needs `ip` (iproute2) and root
//! (CAP_SYS_ADMIN, CAP_NET_ADMIN); without them the test skips, except
//! under CI, where it fails.

mod common;
#[path = "common/hosts.rs"]
mod hosts;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::watchdog;
use hosts::{Hosts, ip};
use mpkit::Process;
use mpkit::redis_queue::{RedisAckError, RedisGetError, RedisQueue};
use mpkit::sync::Event;
use mpkit_bench::netns;
use redis_server::RedisServer;

const LONG: Duration = Duration::from_secs(10);
/// Every namespace these tests make is named `PREFIX-<pid>-<n>-<role>`.
const PREFIX: &str = "mpkit-hosts";

/// What a consumer did: the items it acknowledged, with their delivery
/// counts, and the item it held when it was cut off, with its failed
/// acknowledgement (`Unavailable` or not, and the message).
type Outcome = (Vec<(u32, u64)>, Option<(u32, bool, String)>);

/// A consumer host: enters its namespace, opens the queue at `url`, and
/// acknowledges every item it takes until the queue is closed; with
/// `hold = Some(n)` it holds its `n+1`-th item instead, sets `holding`,
/// waits for `cut` (its link is down by then), and tries to acknowledge it.
fn consume(
    (ns, url, hold, holding, cut): (String, String, Option<usize>, Event, Event),
) -> Outcome {
    netns::enter(&ns).unwrap();
    let q: RedisQueue<u32> = RedisQueue::builder(&url, "work")
        .io_timeout(Duration::from_millis(500))
        .retry_for(Duration::from_secs(1))
        .open()
        .unwrap();
    let mut done = Vec::new();
    loop {
        let d = match q.get_delivery_timeout(LONG) {
            Ok(d) => d,
            Err(RedisGetError::Closed) => return (done, None),
            Err(e) => panic!("{ns}: {e}"),
        };
        if hold == Some(done.len()) {
            holding.set();
            assert!(cut.wait(Some(LONG)).unwrap());
            let acked = q.ack(&d.id);
            let failed = acked.err().map(|e| {
                let unavailable = matches!(e, RedisAckError::Unavailable(_));
                (d.value, unavailable, e.to_string())
            });
            let failed = failed.unwrap_or((d.value, false, "acknowledged".to_string()));
            return (done, Some(failed));
        }
        q.ack(&d.id).unwrap();
        done.push((d.value, d.deliveries));
    }
}

#[test]
fn an_item_held_by_a_host_cut_off_is_done_by_another_host() {
    let _w = watchdog(60);
    if !redis_server::available() {
        return;
    }
    let Some(hosts) = Hosts::build(PREFIX) else {
        return;
    };
    let server = RedisServer::start_in_netns(&hosts.server).unwrap();
    // This thread (only it) works on the server's host.
    netns::enter(&hosts.server).unwrap();
    let vt = Duration::from_secs(1);
    let q: RedisQueue<u32> = RedisQueue::builder(&server.url(), "work")
        .visibility_timeout(vt)
        .open()
        .unwrap();
    let port = server.port;

    // Host a acknowledges items 0, 1 and 2, then holds item 3.
    q.put_many((0..4).collect()).unwrap();
    let (holding, cut) = (Event::new().unwrap(), Event::new().unwrap());
    let consumer = |ns: &str, net: &str, hold| {
        let url = format!("redis://{net}.1:{port}");
        let args = (ns.to_string(), url, hold, holding.try_clone().unwrap());
        Process::spawn(
            consume,
            (args.0, args.1, args.2, args.3, cut.try_clone().unwrap()),
        )
        .unwrap()
    };
    let a = consumer(&hosts.a, "10.91.1", Some(3));
    assert!(holding.wait(Some(LONG)).unwrap());
    let held_at = Instant::now();
    assert_eq!(q.pending().unwrap(), 1);

    // Host a's link goes down; host b comes up and works through the rest.
    ip(&["-n", &hosts.a, "link", "set", "eth0", "down"]).unwrap();
    cut.set();
    q.put_many((4..20).collect()).unwrap();
    let b = consumer(&hosts.b, "10.91.2", None);
    q.join_timeout(LONG).unwrap();
    assert!(
        held_at.elapsed() >= vt - Duration::from_millis(50),
        "redelivered before the visibility timeout"
    );
    q.close().unwrap();
    let (a_done, a_held) = a.join().unwrap();
    let (b_done, b_held) = b.join().unwrap();

    assert_eq!(a_done, vec![(0, 1), (1, 1), (2, 1)]);
    let (held, unavailable, why) = a_held.unwrap();
    assert_eq!(held, 3);
    assert!(unavailable, "host a's acknowledgement: {why}");
    assert_eq!(b_held, None);
    assert!(b_done.contains(&(3, 2)), "{b_done:?}");
    assert!(b_done.iter().all(|&(v, n)| n == 1 || v == 3), "{b_done:?}");
    // Every item done exactly once, on one host or the other.
    let mut times = BTreeMap::new();
    for (v, _) in a_done.iter().chain(&b_done) {
        *times.entry(*v).or_insert(0) += 1;
    }
    assert_eq!(
        times,
        (0..20).map(|v| (v, 1)).collect::<BTreeMap<u32, i32>>()
    );
    assert_eq!(q.pending().unwrap(), 0);
    assert_eq!(q.unfinished_tasks().unwrap(), 0);
    assert!(q.dead_letters(10).unwrap().is_empty());
    drop(server);
}

/// A program started on a host (`ip netns exec`), killed by its pid if the
/// test fails before it ends.
struct OnHost(Option<Child>);

impl OnHost {
    fn spawn(ns: &str, program: &PathBuf, args: &[&str]) -> OnHost {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        OnHost(Some(child))
    }

    /// Its exit, stdout and stderr.
    fn finish(mut self) -> (bool, String, String) {
        let out = self.0.take().unwrap().wait_with_output().unwrap();
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        (out.status.success(), text(out.stdout), text(out.stderr))
    }
}

impl Drop for OnHost {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn the_two_hosts_example_shares_work_between_hosts() {
    let _w = watchdog(60);
    if !redis_server::available() {
        return;
    }
    let Some(hosts) = Hosts::build(PREFIX) else {
        return;
    };
    let server = RedisServer::start_in_netns(&hosts.server).unwrap();
    let port = server.port;
    // `cargo test` builds the examples first, next to the test binaries.
    let mut example = std::env::current_exe().unwrap();
    example.pop();
    if example.ends_with("deps") {
        example.pop();
    }
    example.push("examples/redis_two_hosts");
    let on_b = format!("redis://10.91.2.1:{port}");
    let on_a = format!("redis://10.91.1.1:{port}");
    let consumer = OnHost::spawn(&hosts.b, &example, &["consume", &on_b, "squares"]);
    let producer = OnHost::spawn(&hosts.a, &example, &["produce", &on_a, "squares", "10"]);
    let (ok, out, err) = producer.finish();
    assert!(ok, "producer: {out}{err}");
    assert!(
        out.contains("all 10 jobs done, sum of squares 385; queue closed"),
        "{out}"
    );
    assert!(out.contains("producer: 7² = 49 (by "), "{out}");
    let (ok, out, err) = consumer.finish();
    assert!(ok, "consumer: {out}{err}");
    assert!(out.contains("job 7 (delivery 1) -> 49"), "{out}");
    assert!(out.contains("the queue is closed; did 10 jobs"), "{out}");
    drop(server);
}
