//! System V and POSIX message queues, with a C program (compiled by the
//! test) as the peer that is not mpkit. Every queue is removed on drop.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::watchdog;
use mpkit::Process;
use mpkit::msgq::{MsgError, PosixQueue, Selector, SysvQueue};

const PEER_C: &str = r#"
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/msg.h>
struct msg { long mtype; char text[256]; };
int main(int argc, char **argv) {
    if (!strcmp(argv[1], "sysv-send")) {
        int id = atoi(argv[2]);
        long types[] = {3, 1, 2, 2};
        for (int i = 0; i < 4; i++) {
            struct msg m = { types[i] };
            int n = snprintf(m.text, sizeof m.text, "from C, type %ld #%d", types[i], i);
            if (msgsnd(id, &m, n, 0)) { perror("msgsnd"); return 1; }
        }
    } else if (!strcmp(argv[1], "sysv-recv")) {
        int id = atoi(argv[2]);
        struct msg m;
        ssize_t n = msgrcv(id, &m, sizeof m.text, atol(argv[3]), 0);
        if (n < 0) { perror("msgrcv"); return 1; }
        printf("type=%ld text=%.*s\n", m.mtype, (int)n, m.text);
    } else if (!strcmp(argv[1], "mq-recv")) {
        mqd_t q = mq_open(argv[2], O_RDONLY);
        if (q == (mqd_t)-1) { perror("mq_open"); return 1; }
        char buf[8192]; unsigned prio;
        for (int i = 0; i < 2; i++) {
            ssize_t n = mq_receive(q, buf, sizeof buf, &prio);
            if (n < 0) { perror("mq_receive"); return 1; }
            printf("prio=%u text=%.*s\n", prio, (int)n, buf);
        }
    }
    return 0;
}
"#;

/// The C peer, compiled once per test binary; `None` (and a printed
/// reason) when no C compiler is available.
fn peer() -> Option<&'static PathBuf> {
    static PEER: OnceLock<Option<PathBuf>> = OnceLock::new();
    PEER.get_or_init(|| {
        // Built under target/ (Cargo's scratch space for tests): nothing to
        // clean up, and shared safely by the tests running in parallel.
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("msgq-peer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let src = dir.join("peer.c");
        let exe = dir.join("peer");
        std::fs::write(&src, PEER_C).ok()?;
        let compiled = common::require_peer(
            "a C compiler (cc) to build the non-mpkit peer",
            Command::new("cc").arg(&src).arg("-o").arg(&exe).arg("-lrt"),
        );
        if !compiled {
            return None;
        }
        Some(exe)
    })
    .as_ref()
}

/// A System V queue removed on drop, even if the test fails.
struct Sysv(SysvQueue);
impl Drop for Sysv {
    fn drop(&mut self) {
        let _ = self.0.remove();
    }
}

fn peer_run(args: &[&str]) -> String {
    let out = Command::new(peer().unwrap()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn sysv_typed_messages_from_c_selected_by_type() {
    let _w = watchdog(30);
    let Some(_) = peer() else { return };
    let q = Sysv(SysvQueue::private(0o600).unwrap());
    let id = q.0.id().to_string();
    peer_run(&["sysv-send", &id]);
    assert_eq!(q.0.stat().unwrap().messages, 4);
    // Only type 2, in order.
    assert_eq!(
        q.0.recv(Selector::Type(2)).unwrap(),
        (2, b"from C, type 2 #2".to_vec())
    );
    // The lowest type up to 3 first.
    assert_eq!(q.0.recv(Selector::UpTo(3)).unwrap().0, 1);
    // Anything but 2.
    assert_eq!(q.0.recv(Selector::Except(2)).unwrap().0, 3);
    assert_eq!(
        q.0.recv(Selector::Any).unwrap(),
        (2, b"from C, type 2 #3".to_vec())
    );
    assert!(matches!(q.0.try_recv(Selector::Any), Err(MsgError::Empty)));
    // The queue shows in ipcs.
    if let Ok(out) = Command::new("ipcs").arg("-q").output() {
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!(" {} ", q.0.id())));
    }
}

#[test]
fn sysv_messages_from_mpkit_read_by_c() {
    let _w = watchdog(30);
    let Some(_) = peer() else { return };
    let q = Sysv(SysvQueue::private(0o600).unwrap());
    q.0.send(5, b"five").unwrap();
    q.0.send(2, b"two, for C").unwrap();
    let out = peer_run(&["sysv-recv", &q.0.id().to_string(), "2"]);
    assert_eq!(out.trim(), "type=2 text=two, for C");
    assert_eq!(q.0.stat().unwrap().messages, 1);
}

#[test]
fn sysv_errors_limits_and_timeouts() {
    let _w = watchdog(30);
    let q = Sysv(SysvQueue::private(0o640).unwrap());
    assert_eq!(q.0.stat().unwrap().mode, 0o640);
    assert!(matches!(q.0.send(0, b"x"), Err(MsgError::InvalidType(0))));
    let max = SysvQueue::max_message_size();
    match q.0.send(1, &vec![0; max + 1]) {
        Err(e @ MsgError::TooLarge { .. }) => {
            assert!(e.to_string().contains("kernel.msgmax"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    let start = Instant::now();
    assert!(matches!(
        q.0.recv_timeout(Selector::Any, Duration::from_millis(50)),
        Err(MsgError::Timeout)
    ));
    assert!(start.elapsed() < Duration::from_secs(2));
    // A message arriving during a timed receive is taken: the sender sends
    // once the receiving thread is asleep between two of its polls (System
    // V has no timed msgrcv).
    // SAFETY: gettid(2) has no preconditions.
    let receiver = (std::process::id() as i32, unsafe { libc::gettid() });
    let sender = Process::spawn(
        |(q, (pid, tid)): (SysvQueue, (i32, i32))| {
            let asleep = common::eventually(Duration::from_secs(10), || {
                matches!(
                    common::thread_state(pid, tid),
                    Some(('S', wchan)) if wchan.as_deref().is_none_or(|w| w.contains("sleep"))
                )
            });
            assert!(asleep, "the receiver never waited");
            q.send(7, b"late").unwrap();
        },
        (q.0, receiver),
    )
    .unwrap();
    assert_eq!(
        q.0.recv_timeout(Selector::Type(7), Duration::from_secs(10))
            .unwrap()
            .1,
        b"late"
    );
    sender.join().unwrap();
    // Keys: exclusive create, open, ftok.
    let key = SysvQueue::key_from_path("/", (std::process::id() % 250) as u8 + 1).unwrap();
    let made = Sysv(SysvQueue::create(key, 0o600).unwrap());
    assert!(matches!(
        SysvQueue::create(key, 0o600),
        Err(MsgError::Exists(_))
    ));
    assert_eq!(SysvQueue::open(key).unwrap().id(), made.0.id());
    drop(made);
    assert!(matches!(SysvQueue::open(key), Err(MsgError::NotFound(_))));
}

#[test]
fn sysv_json_between_processes() {
    let _w = watchdog(30);
    let q = Sysv(SysvQueue::private(0o600).unwrap());
    let child = Process::spawn(
        |q: SysvQueue| {
            let (t, v): (i64, serde_json::Value) = q.recv_json(Selector::Type(2)).unwrap();
            (t, v["n"].as_i64().unwrap())
        },
        q.0,
    )
    .unwrap();
    q.0.send_json(1, &serde_json::json!({"n": 1})).unwrap();
    q.0.send_json(2, &serde_json::json!({"n": 2})).unwrap();
    assert_eq!(child.join().unwrap(), (2, 2));
    assert_eq!(
        q.0.recv_json::<serde_json::Value>(Selector::Any).unwrap().1["n"],
        1
    );
}

fn mq_name(tag: &str) -> String {
    format!("/mpkit-test-{}-{tag}", std::process::id())
}

#[test]
fn posix_priorities_timeouts_and_limits() {
    let _w = watchdog(30);
    let q = PosixQueue::builder()
        .max_messages(2)
        .max_size(64)
        .create(&mq_name("prio"))
        .unwrap();
    q.send(b"low", 1).unwrap();
    q.send(b"high", 7).unwrap();
    assert!(matches!(q.try_send(b"third", 1), Err(MsgError::Full)));
    assert!(matches!(
        q.send_timeout(b"third", 1, Duration::from_millis(20)),
        Err(MsgError::Timeout)
    ));
    assert_eq!(q.recv().unwrap(), (b"high".to_vec(), 7));
    assert_eq!(q.recv().unwrap(), (b"low".to_vec(), 1));
    assert!(matches!(q.try_recv(), Err(MsgError::Empty)));
    assert!(matches!(
        q.recv_timeout(Duration::from_millis(20)),
        Err(MsgError::Timeout)
    ));
    match q.send(&[0; 65], 0) {
        Err(
            e @ MsgError::TooLarge {
                size: 65,
                limit: 64,
                ..
            },
        ) => assert!(e.to_string().contains("mq_msgsize"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        PosixQueue::builder().create(&mq_name("prio")),
        Err(MsgError::Exists(_))
    ));
    assert!(matches!(
        PosixQueue::builder()
            .max_messages(1 << 30)
            .max_size(64)
            .create(&mq_name("huge")),
        Err(MsgError::OutsideLimits {
            max_messages: 1_073_741_824,
            max_size: 64,
            ..
        })
    ));
    for bad in ["/", "a/b", "/a\0b"] {
        assert!(matches!(
            PosixQueue::builder().create(bad),
            Err(MsgError::InvalidName(_))
        ));
    }
    let name = q.name().to_string();
    drop(q);
    assert!(matches!(
        PosixQueue::open(&name),
        Err(MsgError::NotFound(_))
    ));
}

#[test]
fn posix_queue_with_children_and_c() {
    let _w = watchdog(30);
    let q = PosixQueue::builder()
        .max_messages(4)
        .max_size(128)
        .create(&mq_name("peer"))
        .unwrap();
    let child = Process::spawn(
        |q: PosixQueue| {
            q.send(b"from an mpkit child", 3).unwrap();
            q.send(b"urgent from the child", 9).unwrap();
        },
        PosixQueue::open(q.name()).unwrap(),
    )
    .unwrap();
    child.join().unwrap();
    if peer().is_some() {
        let out = peer_run(&["mq-recv", q.name()]);
        assert_eq!(
            out,
            "prio=9 text=urgent from the child\nprio=3 text=from an mpkit child\n"
        );
    } else {
        assert_eq!(q.recv().unwrap().1, 9);
    }
}
