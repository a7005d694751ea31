//! The real `mpkit` binary, run as a user would.

// mpkit's own test support: the same waits on observed process states.
#[path = "../../mpkit/tests/common/mod.rs"]
mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Runs `mpkit ARGS` with a watchdog: killed (and failed) after `secs`.
fn mpkit(args: &[&str], secs: u64) -> (i32, String, String) {
    mpkit_stdin(args, None, secs)
}

/// Like [`mpkit`], feeding `input` on standard input.
fn mpkit_stdin(args: &[&str], input: Option<&[u8]>, secs: u64) -> (i32, String, String) {
    finish(start(args, input), args, secs)
}

/// Starts `mpkit ARGS`, feeding `input` on standard input.
fn start(args: &[&str], input: Option<&[u8]>) -> Child {
    start_with(args, input, None)
}

/// Like [`start`], with `RUST_BACKTRACE` set to `backtrace` (unset when
/// `None`).
fn start_with(args: &[&str], input: Option<&[u8]>, backtrace: Option<&str>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mpkit"));
    match backtrace {
        Some(value) => command.env("RUST_BACKTRACE", value),
        None => command.env_remove("RUST_BACKTRACE"),
    };
    let mut child = command
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mpkit");
    if let Some(data) = input {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    child
}

/// Waits for a started `mpkit ARGS` with a watchdog: killed (and failed)
/// after `secs`; returns its exit code, stdout and stderr.
fn finish(mut child: Child, args: &[&str], secs: u64) -> (i32, String, String) {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    // Not reaped before the wait below, so the pid is still this child's.
    let exited = common::pidfd(child.id() as i32);
    if !common::wait_exit(&exited, Duration::from_secs(secs)) {
        child.kill().unwrap();
        child.wait().unwrap();
        panic!("mpkit {args:?} still running after {secs} s");
    }
    let status = child.wait().unwrap();
    (
        status.code().unwrap_or(-1),
        reader.join().unwrap(),
        err_reader.join().unwrap(),
    )
}

#[test]
fn tour_runs_every_mechanism_and_exits_0() {
    let (code, out, err) = mpkit(&["tour"], 60);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for expected in [
        "1. Processes",
        "returned 4",
        "join() says it panicked",
        "exitcode Some(-9)",
        "2. Pipe",
        "out pipe : 9",
        "3. Duplex Pipe",
        "child replied",
        "\"message\":\"hi over a passed connection\"",
        "4. What errors look like",
        "could not decode a message as",
        "5. Queue",
        "received all 5 values in order",
        "Full, and the value 3 is handed back",
        "get_nowait on an empty queue: the queue is empty",
        "join_timeout() returned Ok",
        "6. Shared memory",
        "parent now sees num = 3.141592653589793, arr = [1, 20, 3], \"hello from the child\"",
        "locked increments of a Value<i64>: 40000",
        "not an mpkit object",
        "7. Signals",
        "received [\"SIGUSR1\", \"SIGTERM\"]",
        "SIGSTOP: the worker is Stopped(SIGSTOP(19))",
        "SIGKILL cannot be caught",
        "8. Locks and semaphores",
        "owner_died() = true",
        "(3 done)",
        "arrival indexes [0, 1, 2]",
        "9. Named pipes",
        "read \"a line through the FIFO\"",
        "no process has",
        "10. Message queues",
        "a child taking only type 2 got [\"job A\", \"job B\"]",
        "type 1, \"alarm\"",
        "exceeds kernel.msgmax",
        "11. Sockets",
        "a child with the right key: server heard \"hello with the right key\"",
        "a child with a wrong key: the server says",
        "12. Pool",
        "results: [0, 1, 4, (died), 16, 25]",
        "item 3: the worker process",
        "died (killed by signal 9)",
        "gh-66587",
        "with retries(1): [0, 1, 4, 9, 16, 25]",
        "13. A queue on a Redis stream",
        "14. A pool across hosts on Redis",
        "tour finished",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    // The Redis section runs only where redis-server is installed (and
    // under CI it must be).
    if common::require_peer(
        "redis-server (run scripts/redis-server to install it)",
        Command::new("redis-server").arg("--version"),
    ) {
        for expected in [
            "a private redis-server",
            "was SIGKILLed before task_done; pending: 1",
            "got job 1 (delivery 2), job 2 (delivery 1), job 3 (delivery 1)",
            "join_timeout() returned Ok: every job acknowledged",
            ") stopped",
            "map(square, 1..=6) = 1 (pid ",
            "dies_once: its first worker exited mid-task; after the visibility timeout (500ms) it ran again on pid ",
            "workers stopped (SIGTERM: each finishes its task first), redis-server stopped",
        ] {
            assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
        }
    } else {
        assert!(
            out.contains("skipped: redis-server is not installed"),
            "{out}"
        );
    }
}

#[test]
fn the_tours_deliberate_child_panic_reads_as_intended() {
    // Even with backtraces asked for, the panic shown on purpose prints no
    // panic message or backtrace: only the tour's own line about it.
    let args = ["tour"];
    let (code, out, err) = finish(start_with(&args, None, Some("1")), &args, 60);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for noise in [
        "panicked at",
        "worker refused",
        "backtrace",
        "RUST_BACKTRACE",
    ] {
        assert!(!err.contains(noise), "{noise:?} on stderr:\n{err}");
    }
    assert!(
        out.contains("a child that panics on purpose")
            && out.contains("join() says it panicked: \"worker refused 7\""),
        "{out}"
    );
}

#[test]
fn unknown_subcommands_fail_with_one_clear_line() {
    let (code, out, err) = mpkit(&["frobnicate"], 10);
    assert_ne!(code, 0);
    assert!(out.is_empty());
    assert!(
        err.contains("unrecognized subcommand 'frobnicate'"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn help_lists_the_tour() {
    let (code, out, _) = mpkit(&["--help"], 10);
    assert_eq!(code, 0);
    assert!(out.contains("tour"), "{out}");
}

fn unique(tag: &str) -> String {
    format!("mpkit_cli_{}_{tag}", std::process::id())
}

/// Removes a named object when the test ends, whatever happens.
struct Named(String);
impl Drop for Named {
    fn drop(&mut self) {
        let _ = mpkit::admin::remove(&self.0);
    }
}

#[test]
fn two_mpkit_processes_exchange_through_a_named_queue() {
    let q = unique("q");
    let _cleanup = Named(q.clone());
    let (code, out, err) = mpkit(&["queue", "create", &q, "--maxsize", "2"], 20);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created queue"), "{out}");
    assert_eq!(
        mpkit(&["queue", "put", &q, "hello from one process"], 20).0,
        0
    );
    assert_eq!(
        mpkit_stdin(
            &["queue", "put", &q, "--json"],
            Some(br#"{"n": [1, 2]}"#),
            20
        )
        .0,
        0
    );
    assert_eq!(mpkit(&["queue", "len", &q], 20).1.trim(), "2");
    let (code, _, err) = mpkit(&["queue", "put", &q, "third"], 20);
    assert_eq!(code, 4, "full: {err}");
    let (code, _, err) = mpkit(&["queue", "put", &q, "third", "--timeout", "0.05"], 20);
    assert_eq!(code, 5, "timeout: {err}");
    let (_, ls, _) = mpkit(&["ls"], 20);
    let line = ls
        .lines()
        .find(|l| l.starts_with(&q))
        .unwrap_or_else(|| panic!("{ls}"));
    assert!(
        line.contains("Queue") && line.split_whitespace().nth(3) == Some("2"),
        "{line}"
    );
    assert!(line.ends_with("  [u8] (bytes)"), "{line}");
    assert_eq!(
        mpkit(&["queue", "get", &q], 20).1,
        "hello from one process\n"
    );
    assert_eq!(
        mpkit(&["queue", "get", &q, "--raw"], 20).1,
        r#"{"n": [1, 2]}"#
    );
    let (code, _, err) = mpkit(&["queue", "get", &q], 20);
    assert_eq!(code, 3, "empty: {err}");
    let (code, _, err) = mpkit(&["queue", "get", &q, "--timeout", "0.05"], 20);
    assert_eq!(code, 5, "timeout: {err}");
    // A waiting get is served by a put from another process: the put comes
    // once the get is seen asleep on the empty queue (in its main thread,
    // whose tid is its pid).
    let get_args = ["queue", "get", &q, "--timeout", "20"];
    let waiter = start(&get_args, None);
    let pid = waiter.id() as i32;
    let asleep = common::wait_until_asleep_in_futex(pid, pid, Duration::from_secs(20));
    let state = common::thread_state(pid, pid);
    assert_eq!(mpkit(&["queue", "put", &q, "late"], 20).0, 0);
    let (code, out, err) = finish(waiter, &get_args, 30);
    assert!(
        asleep,
        "mpkit queue get never waited on the empty queue: {state:?}"
    );
    assert_eq!((code, out.as_str()), (0, "late\n"), "{err}");
    assert_eq!(mpkit(&["queue", "rm", &q], 20).0, 0);
}

#[test]
fn bad_input_gets_one_clear_line_and_its_exit_code() {
    let q = unique("bad");
    let _cleanup = Named(q.clone());
    let missing = unique("missing");
    let (code, _, err) = mpkit(&["queue", "get", &missing], 20);
    assert_eq!(code, 6, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no shared memory object named"), "{err}");
    assert_eq!(
        mpkit(&["queue", "create", &q, "--capacity", "4096"], 20).0,
        0
    );
    let (code, _, err) = mpkit(&["queue", "put", &q, "--json", "{not json"], 20);
    assert_eq!(code, 1);
    assert!(err.starts_with("mpkit: malformed JSON"), "{err}");
    let big = "x".repeat(5000);
    let (code, _, err) = mpkit(&["queue", "put", &q, &big], 20);
    assert_eq!(code, 1);
    assert!(err.contains("can never fit"), "{err}");
    // ... and says how to make a queue that holds it.
    assert!(err.contains("--capacity"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // A named object of another kind.
    let v = unique("value");
    let _value = mpkit::shm::Value::create(&v, 7u32).unwrap();
    let (code, _, err) = mpkit(&["queue", "put", &v, "x"], 20);
    assert_eq!(code, 1);
    assert!(err.contains("is a Value, not a Queue"), "{err}");
    let (code, _, err) = mpkit(&["queue", "rm", &v], 20);
    assert_eq!(code, 1);
    assert!(err.contains("not a queue"), "{err}");
    // A typed queue: the error says what it holds.
    let typed = unique("typed");
    let _typed = mpkit::queue::Queue::<u32>::create(&typed, 0, 4096).unwrap();
    let (code, _, err) = mpkit(&["queue", "get", &typed], 20);
    assert_eq!(code, 1);
    assert!(
        err.contains("holds `u32 (postcard)`, not `[u8] (bytes)`"),
        "{err}"
    );
    let (_, table, _) = mpkit(&["ls"], 20);
    let line = table
        .lines()
        .find(|l| l.starts_with(&typed))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.ends_with("  u32 (postcard)"), "{line}");
    // A file in /dev/shm that is not mpkit's is never removed.
    let foreign = format!("cli_foreign_{}", std::process::id());
    let path = format!("/dev/shm/{foreign}");
    std::fs::write(&path, [0u8; 64]).unwrap();
    let _block = RemoveFile(path.clone());
    let (code, _, err) = mpkit(&["rm", &foreign], 20);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not an mpkit object"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(std::path::Path::new(&path).exists());
}

/// Removes a file when the test ends, whatever happens.
struct RemoveFile(String);
impl Drop for RemoveFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn raw_blocks_of_a_killed_creator_are_listed_and_removed_when_stale() {
    let _sweep = STALE_SWEEP.lock().unwrap_or_else(|e| e.into_inner());
    let _w = common::watchdog(60);
    let (leaked, kept, held) = (unique("raw_leaked"), unique("raw_kept"), unique("raw_held"));
    let _cleanup = [
        Named(leaked.clone()),
        Named(kept.clone()),
        Named(held.clone()),
    ];
    let child = mpkit::Process::spawn(
        |(leaked, kept, held): (String, String, String)| -> () {
            let _leaked = mpkit::shm::SharedMemory::create(&leaked, 64).unwrap();
            mpkit::shm::SharedMemory::create(&kept, 64).unwrap().keep();
            let _held = mpkit::shm::SharedMemory::create(&held, 64).unwrap();
            // SAFETY: raise(2): die without running destructors.
            unsafe { libc::raise(libc::SIGKILL) };
        },
        (leaked.clone(), kept.clone(), held.clone()),
    )
    .unwrap();
    let pid = child.pid();
    assert!(child.join().is_err());
    let _holder = mpkit::shm::SharedMemory::open(&held).unwrap();
    let (code, out, err) = mpkit(&["ls", "--json"], 20);
    assert_eq!(code, 0, "{err}");
    let all: serde_json::Value = serde_json::from_str(&out).unwrap();
    let find = |wanted: &str| {
        all.as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == wanted)
            .unwrap_or_else(|| panic!("{wanted} missing in {out}"))
            .clone()
    };
    let gone = find(&leaked);
    assert_eq!(gone["kind"], serde_json::Value::Null, "{gone}");
    assert_eq!(gone["creator_pid"], pid, "{gone}");
    assert_eq!(gone["stale"], true, "{gone}");
    assert_eq!(find(&kept)["stale"], false);
    assert_eq!(find(&kept)["kept"], true);
    assert_eq!(find(&held)["stale"], false);
    assert_eq!(find(&held)["in_use"], true);
    let (_, table, _) = mpkit(&["ls"], 20);
    let line = table
        .lines()
        .find(|l| l.starts_with(&leaked))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        line.contains("SharedMemory") && line.contains(&pid.to_string()),
        "{line}"
    );
    let (code, out, err) = mpkit(&["rm", "--stale"], 30);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("removed {leaked}")), "{out}");
    assert!(!out.contains(&kept) && !out.contains(&held), "{out}");
    assert!(!std::path::Path::new(&format!("/dev/shm/{leaked}")).exists());
    assert!(std::path::Path::new(&format!("/dev/shm/{kept}")).exists());
    assert!(std::path::Path::new(&format!("/dev/shm/{held}")).exists());
}

/// Held by the tests that run `mpkit rm --stale`, which removes every
/// stale object: each would otherwise remove the other's before it looks.
static STALE_SWEEP: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn ls_json_and_rm_stale() {
    let _sweep = STALE_SWEEP.lock().unwrap_or_else(|e| e.into_inner());
    // A creator killed without cleaning up leaves a stale object.
    let name = unique("stale");
    let _cleanup = Named(name.clone());
    let child = mpkit::Process::spawn(
        |name: String| -> () {
            let _lock = mpkit::sync::Lock::create(&name).unwrap();
            // SAFETY: raise(2): die without running destructors.
            unsafe { libc::raise(libc::SIGKILL) };
        },
        name.clone(),
    )
    .unwrap();
    assert!(child.join().is_err());
    // A live one is not stale.
    let live = unique("live");
    let _held = mpkit::sync::Event::create(&live).unwrap();
    let (code, out, err) = mpkit(&["ls", "--json"], 20);
    assert_eq!(code, 0, "{err}");
    let all: serde_json::Value = serde_json::from_str(&out).unwrap();
    let find = |wanted: &str| {
        all.as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == wanted)
            .unwrap_or_else(|| panic!("{wanted} missing in {out}"))
    };
    let me = find(&name);
    assert_eq!(me["kind"], "Lock");
    assert_eq!(me["creator_alive"], false);
    assert_eq!(me["in_use"], false);
    // The STALE column of the table is in the JSON too.
    assert_eq!(me["stale"], true, "{me}");
    assert_eq!(find(&live)["stale"], false);
    let (code, out, _) = mpkit(&["rm", "--stale"], 30);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("removed {name}")), "{out}");
    assert!(!out.contains(&live), "{out}");
    assert!(matches!(
        mpkit::admin::inspect(&name),
        Err(mpkit::shm::ShmError::NotFound(_))
    ));
}

#[test]
fn rm_prints_each_failure_once() {
    let missing = unique("rm_missing");
    let (code, out, err) = mpkit(&["rm", &missing], 20);
    assert_eq!(code, 6, "{err}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("mpkit: ") && err.contains(&missing),
        "{err}"
    );
    // Several failures and a success: each failure once, in order; the
    // exit code is the last failure's.
    let present = unique("rm_present");
    let _event = mpkit::sync::Event::create(&present).unwrap();
    let (code, out, err) = mpkit(&["rm", &missing, &present, "bad/name"], 20);
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, format!("removed {present}\n"));
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].contains(&missing), "{err}");
    assert!(lines[1].contains("bad/name"), "{err}");
}

#[test]
fn signals_lists_names_numbers_and_meanings() {
    let (code, out, _) = mpkit(&["signals"], 10);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.contains(" 9  SIGKILL") && l.contains("cannot be caught")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("17  SIGCHLD") && l.contains("ignore")),
        "{out}"
    );
}
