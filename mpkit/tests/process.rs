//! Process: children that run a function, between real processes.

mod common;

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::{eventually, pidfd, wait_exit, watchdog};
use mpkit::process::{
    Builder, JoinError, PanicStage, SpawnError, active_children, current_process, parent_process,
};
use mpkit::{Connection, Process};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

fn add((a, b): (i64, i64)) -> i64 {
    a + b
}

#[test]
fn returns_the_function_result() {
    let _w = watchdog(20);
    let child = Process::spawn(add, (40, 2)).unwrap();
    assert_ne!(child.pid(), std::process::id() as i32);
    assert_eq!(child.join().unwrap(), 42);
}

#[test]
fn many_workers_run_in_parallel_in_distinct_processes() {
    let _w = watchdog(30);
    let workers: Vec<_> = (0..6u32)
        .map(|i| Process::spawn(|i: u32| (i * 10, std::process::id()), i).unwrap())
        .collect();
    let mut pids = BTreeSet::new();
    for (i, w) in workers.into_iter().enumerate() {
        let (v, pid) = w.join().unwrap();
        assert_eq!(v, i as u32 * 10);
        assert!(pids.insert(pid));
    }
    assert!(!pids.contains(&std::process::id()));
}

#[test]
fn names_identity_and_parent() {
    let _w = watchdog(20);
    let child = Process::spawn(
        |(): ()| {
            let me = current_process();
            let parent = parent_process().expect("a child has a parent");
            (
                me.name().to_string(),
                me.pid(),
                parent.pid(),
                parent.name().to_string(),
                parent.is_alive(),
            )
        },
        (),
    )
    .unwrap();
    let name = child.name().to_string();
    let pid = child.pid();
    assert!(name.starts_with("Process-"), "{name}");
    let (cname, cpid, ppid, pname, palive) = child.join().unwrap();
    assert_eq!((cname, cpid), (name, pid));
    assert_eq!(
        (ppid, pname.as_str(), palive),
        (std::process::id() as i32, "MainProcess", true)
    );
    assert!(parent_process().is_none());

    let named = Builder::new()
        .name("worker-A")
        .spawn(|(): ()| current_process().name().to_string(), ())
        .unwrap();
    assert_eq!(named.name(), "worker-A");
    assert_eq!(named.join().unwrap(), "worker-A");
}

#[test]
fn grandchildren_get_nested_names() {
    let _w = watchdog(30);
    let child = Builder::new()
        .spawn(
            |(): ()| {
                let me = current_process().name().to_string();
                let grandchild =
                    Process::spawn(|(): ()| current_process().name().to_string(), ()).unwrap();
                (me, grandchild.join().unwrap())
            },
            (),
        )
        .unwrap();
    let (me, grand) = child.join().unwrap();
    assert_eq!(grand, format!("{me}:1"));
}

#[test]
fn a_panic_is_reported_with_its_message() {
    let _w = watchdog(20);
    let mut child = Process::spawn(|n: u32| -> u32 { panic!("bad input {n}") }, 9).unwrap();
    match child.join_timeout(Duration::from_secs(15)) {
        Err(JoinError::Panicked { message, stage }) => {
            assert_eq!(
                (message.as_str(), stage),
                ("bad input 9", PanicStage::Function)
            )
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(child.exitcode(), Some(1));
}

#[test]
fn exit_codes_and_signals() {
    let _w = watchdog(20);
    let mut exits = Process::spawn(|c: i32| -> () { std::process::exit(c) }, 7).unwrap();
    assert!(matches!(
        exits.join_timeout(Duration::from_secs(15)),
        Err(JoinError::Exited { code: 7 })
    ));
    assert_eq!(exits.exitcode(), Some(7));

    let block = |(): ()| std::thread::sleep(Duration::from_secs(600));
    let mut killed = Process::spawn(block, ()).unwrap();
    assert!(killed.is_alive());
    assert_eq!(killed.exitcode(), None);
    killed.kill().unwrap();
    assert!(matches!(
        killed.join_timeout(Duration::from_secs(15)),
        Err(JoinError::Signaled { signal: 9 })
    ));
    assert_eq!(killed.exitcode(), Some(-9));
    assert!(!killed.is_alive());
    killed.kill().unwrap(); // killing a finished child is harmless

    let mut termed = Process::spawn(block, ()).unwrap();
    termed.terminate().unwrap();
    assert!(matches!(
        termed.join_timeout(Duration::from_secs(15)),
        Err(JoinError::Signaled { signal: 15 })
    ));
    assert_eq!(termed.exitcode(), Some(-15));
}

#[test]
fn join_timeout_leaves_the_child_running() {
    let _w = watchdog(20);
    let (mut here, there) = mpkit::pipe(true).unwrap();
    let mut child =
        Process::spawn(|mut c: Connection| c.recv::<u32>().unwrap() + 1, there).unwrap();
    assert!(matches!(
        child.join_timeout(Duration::from_millis(20)),
        Err(JoinError::Timeout)
    ));
    assert!(child.is_alive());
    here.send(&41u32).unwrap();
    assert_eq!(child.join_timeout(Duration::from_secs(15)).unwrap(), 42);
    assert!(matches!(
        child.join_timeout(Duration::from_secs(1)),
        Err(JoinError::AlreadyJoined)
    ));
    assert_eq!(child.exitcode(), Some(0));
}

/// Serializes or deserializes only when told to: for codec failures.
#[derive(Debug)]
struct Picky {
    fail_ser: bool,
    fail_de: bool,
}

impl Serialize for Picky {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.fail_ser {
            return Err(serde::ser::Error::custom("refusing to serialize"));
        }
        (self.fail_ser, self.fail_de).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Picky {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (fail_ser, fail_de) = <(bool, bool)>::deserialize(d)?;
        if fail_de {
            return Err(serde::de::Error::custom("refusing to deserialize"));
        }
        Ok(Picky { fail_ser, fail_de })
    }
}

#[test]
fn unencodable_arguments_fail_in_the_parent_naming_the_type() {
    let _w = watchdog(20);
    let before = active_children().len();
    let err = Process::spawn(
        |p: Picky| p.fail_de,
        Picky {
            fail_ser: true,
            fail_de: false,
        },
    )
    .unwrap_err();
    assert!(matches!(err, SpawnError::ArgsEncode { .. }));
    assert!(err.to_string().contains("Picky"), "{err}");
    assert_eq!(active_children().len(), before, "no child may be started");
}

#[test]
fn undecodable_arguments_and_results_name_their_type() {
    let _w = watchdog(30);
    let args = Process::spawn(
        |p: Picky| p.fail_ser,
        Picky {
            fail_ser: false,
            fail_de: true,
        },
    )
    .unwrap();
    match args.join() {
        Err(JoinError::ArgsDecode { type_name, .. }) => {
            assert!(type_name.contains("Picky"), "{type_name}")
        }
        other => panic!("unexpected {other:?}"),
    }
    let result_enc = Process::spawn(
        |(): ()| Picky {
            fail_ser: true,
            fail_de: false,
        },
        (),
    )
    .unwrap();
    match result_enc.join() {
        Err(e @ JoinError::ResultEncode { .. }) => assert!(e.to_string().contains("Picky"), "{e}"),
        other => panic!("unexpected {other:?}"),
    }
    let result_dec = Process::spawn(
        |(): ()| Picky {
            fail_ser: false,
            fail_de: true,
        },
        (),
    )
    .unwrap();
    match result_dec.join() {
        Err(e @ JoinError::ResultDecode { .. }) => assert!(e.to_string().contains("Picky"), "{e}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn the_child_inherits_only_what_its_handles_need() {
    let _w = watchdog(20);
    // A descriptor without close-on-exec, as careless code might leave one.
    // SAFETY: dup(2) of stderr; the copy is closed below.
    let leaked = unsafe { libc::dup(2) };
    assert!(leaked > 2);
    let (_here, there) = mpkit::pipe(true).unwrap();
    let child = Process::spawn(
        |c: Connection| {
            let fds: Vec<(i32, String)> = std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|e| {
                    let e = e.ok()?;
                    let link = std::fs::read_link(e.path()).ok()?;
                    Some((
                        e.file_name().to_str()?.parse().ok()?,
                        link.to_string_lossy().into_owned(),
                    ))
                })
                .collect();
            (fds, c.as_raw_fd())
        },
        there,
    )
    .unwrap();
    let (fds, conn_fd) = child.join().unwrap();
    // SAFETY: closing the descriptor dup'ed above.
    unsafe { libc::close(leaked) };
    let link = |fd: i32| fds.iter().find(|(n, _)| *n == fd).map(|(_, l)| l.as_str());
    assert_eq!(link(0), Some("/dev/null"), "stdin comes from /dev/null");
    let extra: Vec<&(i32, String)> = fds.iter().filter(|(n, _)| *n > 2).collect();
    // The bootstrap socket, the Connection, a pidfd of the parent (for
    // parent_process().is_alive()), and the directory read_dir had open.
    assert_eq!(extra.len(), 4, "{fds:?}");
    assert!(fds.iter().any(|(n, _)| *n == conn_fd));
    assert_eq!(
        extra.iter().filter(|(_, l)| l.contains("socket:")).count(),
        2,
        "{fds:?}"
    );
    assert_eq!(
        extra.iter().filter(|(_, l)| l.contains("pidfd")).count(),
        1,
        "{fds:?}"
    );
    assert_eq!(
        extra
            .iter()
            .filter(|(_, l)| l.starts_with("/proc/"))
            .count(),
        1,
        "{fds:?}"
    );
}

#[test]
fn handles_come_back_in_results() {
    let _w = watchdog(20);
    let child = Process::spawn(
        |(): ()| {
            let (mut a, b) = mpkit::pipe(true).unwrap();
            // The child keeps `a` only until it returns: the message is
            // buffered in the socket and reaches the parent through `b`.
            a.send(&"made in the child").unwrap();
            b
        },
        (),
    )
    .unwrap();
    let mut b: Connection = child.join().unwrap();
    assert_eq!(b.recv::<String>().unwrap(), "made in the child");
    assert!(b.recv::<String>().unwrap_err().is_eof());
}

#[test]
fn large_arguments_and_results() {
    let _w = watchdog(30);
    let big: Vec<u8> = (0..16 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let child = Process::spawn(
        |v: Vec<u8>| v.iter().rev().copied().collect::<Vec<u8>>(),
        big.clone(),
    )
    .unwrap();
    let back = child.join().unwrap();
    assert_eq!(back.len(), big.len());
    assert!(back.iter().rev().eq(big.iter()));
}

#[test]
fn active_children_lists_the_running_ones() {
    let _w = watchdog(20);
    let (mut here, there) = mpkit::pipe(true).unwrap();
    let child = Builder::new()
        .name("listed")
        .spawn(|mut c: Connection| c.recv::<()>().is_ok(), there)
        .unwrap();
    assert!(
        active_children()
            .iter()
            .any(|c| c.pid() == child.pid() && c.name() == "listed")
    );
    here.send(&()).unwrap();
    let pid = child.pid();
    assert!(child.join().unwrap());
    assert!(!active_children().iter().any(|c| c.pid() == pid));
}

fn is_zombie_or_gone(pid: i32) -> (bool, bool) {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => (false, true),
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .to_string();
            (state == "Z", false)
        }
    }
}

#[test]
fn dropping_an_unjoined_child_leaves_no_zombie() {
    let _w = watchdog(20);
    let (mut here, there) = mpkit::pipe(true).unwrap();
    let child = Process::spawn(|mut c: Connection| c.recv::<()>().is_ok(), there).unwrap();
    let pid = child.pid();
    drop(child); // still running: handed to a reaper thread
    here.send(&()).unwrap();
    // The child exits now; with nobody reaping it would stay a zombie.
    assert!(
        eventually(Duration::from_secs(10), || is_zombie_or_gone(pid).1),
        "child {pid} was not reaped: {:?}",
        is_zombie_or_gone(pid)
    );
}

#[test]
fn a_daemon_dies_with_its_parent_even_on_sigkill() {
    let _w = watchdog(30);
    let (mut here, there) = mpkit::pipe(true).unwrap();
    // The middle process starts a daemon grandchild, reports its pid, and
    // waits to be killed.
    let middle = Process::spawn(
        |mut c: Connection| {
            let daemon = Builder::new()
                .daemon(true)
                .spawn(|(): ()| std::thread::sleep(Duration::from_secs(600)), ())
                .unwrap();
            c.send(&daemon.pid()).unwrap();
            std::thread::sleep(Duration::from_secs(600));
        },
        there,
    )
    .unwrap();
    let daemon_pid: i32 = here.recv().unwrap();
    let daemon = pidfd(daemon_pid);
    assert!(
        !wait_exit(&daemon, Duration::ZERO),
        "the daemon must be running"
    );
    middle.kill().unwrap();
    assert!(
        wait_exit(&daemon, Duration::from_secs(10)),
        "the daemon outlived its SIGKILLed parent"
    );
    assert!(matches!(
        middle.join(),
        Err(JoinError::Signaled { signal: 9 })
    ));
}

#[test]
fn a_non_daemon_child_outlives_its_killed_parent() {
    let _w = watchdog(30);
    let (mut here, there) = mpkit::pipe(true).unwrap();
    let middle = Process::spawn(
        |mut c: Connection| {
            let (mine, theirs) = mpkit::pipe(true).unwrap();
            let orphan =
                Process::spawn(|mut c: Connection| c.recv::<u8>().is_ok(), theirs).unwrap();
            c.send(&(orphan.pid(), &mine)).unwrap();
            std::thread::sleep(Duration::from_secs(600));
        },
        there,
    )
    .unwrap();
    let (orphan_pid, mut tell): (i32, Connection) = here.recv().unwrap();
    let orphan = pidfd(orphan_pid);
    middle.kill().unwrap();
    assert!(matches!(
        middle.join(),
        Err(JoinError::Signaled { signal: 9 })
    ));
    assert!(
        !wait_exit(&orphan, Duration::ZERO),
        "a non-daemon child survives its parent"
    );
    // It ends on its own once told to.
    tell.send(&0u8).unwrap();
    assert!(wait_exit(&orphan, Duration::from_secs(10)));
}

#[test]
fn a_child_whose_parent_exits_before_it_starts_still_runs() {
    let _w = watchdog(30);
    let (mut here, there) = mpkit::pipe(true).unwrap();
    // The middle process returns as soon as `spawn` does, long before the
    // grandchild has exec'd: the grandchild finds itself re-parented when it
    // checks who sent its bootstrap.
    let middle = Process::spawn(
        |c: Connection| {
            Process::spawn(
                |mut c: Connection| c.send(&current_process().pid()).is_ok(),
                c,
            )
            .unwrap()
            .pid()
        },
        there,
    )
    .unwrap();
    let orphan_pid = middle.join().unwrap();
    let reported: i32 = here
        .recv_timeout(Duration::from_secs(20))
        .expect("the orphaned child ran its function");
    assert_eq!(reported, orphan_pid);
}

/// A value whose serde code or destructor panics, as told by its flags.
/// Only the flags travel, so the copy decoded on the other side carries them.
#[derive(Debug)]
struct Explosive(u8);

impl Explosive {
    const SERIALIZE: u8 = 1;
    const DESERIALIZE: u8 = 2;
    const DROP: u8 = 4;
}

impl Serialize for Explosive {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 & Explosive::SERIALIZE != 0 {
            panic!("Serialize exploded");
        }
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Explosive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let flags = u8::deserialize(d)?;
        if flags & Explosive::DESERIALIZE != 0 {
            panic!("Deserialize exploded");
        }
        Ok(Explosive(flags))
    }
}

impl Drop for Explosive {
    fn drop(&mut self) {
        if self.0 & Explosive::DROP != 0 && !std::thread::panicking() {
            panic!("Drop exploded");
        }
    }
}

/// The message of a caught panic.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// The children of the calling process that are not reaped yet (running or
/// zombies), from every thread's `children` list.
fn my_children() -> Vec<i32> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let list = std::fs::read_to_string(task.unwrap().path().join("children"));
        pids.extend(
            list.unwrap_or_default()
                .split_whitespace()
                .map(|p| p.parse::<i32>().unwrap()),
        );
    }
    pids
}

#[test]
fn a_panic_decoding_the_arguments_is_a_panic_not_an_abort() {
    let _w = watchdog(20);
    let mut child = Process::spawn(|e: Explosive| e.0, Explosive(Explosive::DESERIALIZE)).unwrap();
    match child.join_timeout(Duration::from_secs(15)) {
        Err(e @ JoinError::Panicked { .. }) => {
            assert!(
                e.to_string().contains("while decoding its arguments"),
                "{e}"
            );
            let JoinError::Panicked { message, stage } = e else {
                unreachable!()
            };
            assert_eq!(
                (message.as_str(), stage),
                ("Deserialize exploded", PanicStage::Arguments)
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(child.exitcode(), Some(1));
}

#[test]
fn a_panic_encoding_or_dropping_the_result_is_a_panic_not_an_abort() {
    let _w = watchdog(20);
    for (flags, expected) in [
        (Explosive::SERIALIZE, "Serialize exploded"),
        (Explosive::DROP, "Drop exploded"),
    ] {
        let mut child = Process::spawn(Explosive, flags).unwrap();
        match child.join_timeout(Duration::from_secs(15)) {
            Err(JoinError::Panicked { message, stage }) => {
                assert_eq!((message.as_str(), stage), (expected, PanicStage::Result))
            }
            other => panic!("flags {flags}: unexpected {other:?}"),
        }
        assert_eq!(child.exitcode(), Some(1));
    }
}

#[test]
fn a_panic_serializing_the_arguments_reaches_the_caller_and_starts_nothing() {
    let _w = watchdog(30);
    // Run in a child of its own, where no other test starts processes, so
    // that "no child" can be checked exactly.
    let probe = Process::spawn(
        |(): ()| {
            let caught = std::panic::catch_unwind(|| {
                Process::spawn(|e: Explosive| e.0, Explosive(Explosive::SERIALIZE))
            });
            let message = caught.err().map(panic_message);
            (message, my_children(), active_children().len())
        },
        (),
    )
    .unwrap();
    let (message, children, active) = probe.join().unwrap();
    assert_eq!(message.as_deref(), Some("Serialize exploded"));
    assert_eq!((children, active), (vec![], 0));
}

#[test]
fn a_panic_dropping_the_arguments_reaches_the_caller_and_leaves_no_child() {
    let _w = watchdog(30);
    let probe = Process::spawn(
        |(): ()| {
            let (_here, there) = mpkit::pipe(true).unwrap();
            // The child would wait for a message that never comes: if spawn
            // left it behind, it would still be running below.
            let caught = std::panic::catch_unwind(move || {
                Process::spawn(
                    |(mut c, _e): (Connection, Explosive)| c.recv::<()>().is_ok(),
                    (there, Explosive(Explosive::DROP)),
                )
            });
            let message = caught.err().map(panic_message);
            (message, my_children(), active_children().len())
        },
        (),
    )
    .unwrap();
    let (message, children, active) = probe.join().unwrap();
    assert_eq!(message.as_deref(), Some("Drop exploded"));
    assert_eq!((children, active), (vec![], 0));
}

#[test]
fn a_panic_deserializing_the_result_reaches_the_caller_and_leaves_no_zombie() {
    let _w = watchdog(20);
    let mut child = Process::spawn(Explosive, Explosive::DESERIALIZE).unwrap();
    let pid = child.pid();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        child.join_timeout(Duration::from_secs(15))
    }));
    assert_eq!(
        caught.err().map(panic_message).as_deref(),
        Some("Deserialize exploded")
    );
    // Reaped before the result was decoded: neither running nor a zombie.
    assert_eq!(is_zombie_or_gone(pid), (false, true));
    assert!(!active_children().iter().any(|c| c.pid() == pid));
    assert!(matches!(
        child.join_timeout(Duration::from_secs(1)),
        Err(JoinError::AlreadyJoined)
    ));
    assert_eq!(child.exitcode(), Some(0));
}
