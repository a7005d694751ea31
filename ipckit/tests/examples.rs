//! The examples run, and print what they promise.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::watchdog;

/// Runs a built example; `cargo test` builds examples before tests.
fn run_example(name: &str) -> String {
    run_example_with(name, &[])
}

fn run_example_with(name: &str, args: &[&str]) -> String {
    let mut path: PathBuf = std::env::current_exe().unwrap();
    path.pop(); // the test binary's name
    if path.ends_with("deps") {
        path.pop();
    }
    path.push("examples");
    path.push(name);
    let out = Command::new(&path)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {}: {e} (plain `cargo test` builds the examples first)",
                path.display()
            )
        });
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn pipe_example_prints_seed_001s_output() {
    let _w = watchdog(30);
    let out = run_example("pipe");
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("out pipe")).collect();
    let expected: Vec<String> = (0..10).map(|i| format!("out pipe : {i}")).collect();
    assert_eq!(lines, expected);
    assert!(out.lines().last().unwrap().ends_with("ended"), "{out}");
}

#[test]
fn process_example_collects_results_and_exit_statuses() {
    let _w = watchdog(60);
    let out = run_example("process");
    assert!(out.contains("primes-0 (pid"), "{out}");
    assert!(out.contains("1229 primes below 10000"), "{out}");
    assert!(out.contains("Panicked(\"negative input: -5\")"), "{out}");
    assert!(out.contains("exitcode = Some(-9)"), "{out}");
}

#[test]
fn array_example_shows_both_sides_of_seed_000() {
    let _w = watchdog(30);
    let out = run_example("array");
    assert!(out.contains("arr[1] = Some(2)"), "{out}");
    assert!(
        out.contains("child sees the string: \"hello from the parent\""),
        "{out}"
    );
    assert!(
        out.contains("parent sees: num = 3.141592653589793, arr = [-1, 20, -3]"),
        "{out}"
    );
    assert!(
        out.contains("parent sees the string: \"changed by the child\""),
        "{out}"
    );
}

#[test]
fn shared_counter_example_is_exact_under_the_lock() {
    let _w = watchdog(60);
    let out = run_example_with("shared_counter", &["3", "20000"]);
    assert!(
        out.contains("with the lock:    60000 (expected 60000)"),
        "{out}"
    );
    // Whether updates are lost without the lock depends on scheduling; the
    // line must be there and consistent.
    let line = out
        .lines()
        .find(|l| l.starts_with("without the lock:"))
        .expect("unlocked line");
    assert!(line.contains("(expected 60000;"), "{line}");
}

#[test]
fn python_peer_example_exchanges_dicts_both_ways() {
    let _w = watchdog(60);
    if Command::new("python3")
        .arg("-c")
        .arg("import multiprocessing.connection")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        println!("SKIPPED: python3 is not available");
        return;
    }
    let out = run_example("python_peer");
    assert!(
        out.contains(
            "rust listener got: Request { message: \"hello from Python\", numbers: [1, 2, 3] }"
        ),
        "{out}"
    );
    assert!(
        out.contains("python client got: {'answer': 6, 'from': 'Rust'}"),
        "{out}"
    );
    assert!(
        out.contains("rust client got: Reply { answer: 60, from: \"Python\" }"),
        "{out}"
    );
    assert!(
        out.contains("python server got: {'message': 'hello from Rust', 'numbers': [10, 20, 30]}"),
        "{out}"
    );
}

#[test]
fn chat_example_relays_between_clients() {
    let _w = watchdog(60);
    let out = run_example("chat");
    for name in ["ada", "bob", "cy"] {
        assert!(out.contains(&format!("server: {name} joined")), "{out}");
        assert!(
            out.contains(&format!("server: {name} is done talking")),
            "{out}"
        );
    }
    assert!(out.contains("server: bob says \"hi ada\""), "{out}");
}

#[test]
fn signals_example_handles_and_suspends() {
    let _w = watchdog(60);
    let out = run_example("signals");
    assert!(out.contains("got SIGUSR1"), "{out}");
    assert!(out.contains("got SIGTERM"), "{out}");
    assert!(out.contains("the child counted 1 SIGUSR1"), "{out}");
    assert!(out.contains("after SIGSTOP: Stopped(SIGSTOP(19))"), "{out}");
    assert!(out.contains("after SIGCONT: Running"), "{out}");
    assert!(out.contains(" 9) SIGKILL"), "{out}");
}

#[test]
fn fifo_example_runs_two_unrelated_processes() {
    let _w = watchdog(60);
    let out = run_example("fifo");
    assert!(out.contains(": hello through the file system"), "{out}");
    assert!(out.contains("the writer closed its end"), "{out}");
}

#[test]
fn msgqueue_example_selects_by_type() {
    let _w = watchdog(60);
    let out = run_example("msgqueue");
    assert!(
        out.contains("receiver taking only type 2 got type 2: job A"),
        "{out}"
    );
    assert!(
        out.contains("receiver taking only type 2 got type 2: job B"),
        "{out}"
    );
    let lowest: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("lowest type first"))
        .collect();
    assert_eq!(lowest.len(), 4, "{out}");
    assert!(
        lowest[0].ends_with("type 1: urgent alarm")
            && lowest[3].ends_with("type 3: another log line"),
        "{out}"
    );
    assert!(out.contains("left in the queue: 0 messages"), "{out}");
}
