//! The real `ipckit` binary, run as a user would.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `ipckit ARGS` with a watchdog: killed (and failed) after `secs`.
fn ipckit(args: &[&str], secs: u64) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ipckit"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ipckit");
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
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("ipckit {args:?} still running after {secs} s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (
        status.code().unwrap_or(-1),
        reader.join().unwrap(),
        err_reader.join().unwrap(),
    )
}

#[test]
fn tour_runs_every_mechanism_and_exits_0() {
    let (code, out, err) = ipckit(&["tour"], 60);
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
        "join() returned true",
        "6. Shared memory",
        "parent now sees num = 3.141592653589793, arr = [1, 20, 3], \"hello from the child\"",
        "locked increments of a Value<i64>: 40000",
        "not an ipckit object",
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
        "tour finished",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
}

#[test]
fn unknown_subcommands_fail_with_one_clear_line() {
    let (code, out, err) = ipckit(&["frobnicate"], 10);
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
    let (code, out, _) = ipckit(&["--help"], 10);
    assert_eq!(code, 0);
    assert!(out.contains("tour"), "{out}");
}
