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
fn pipe_example_prints_what_pythons_pipe_example_prints() {
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
fn array_example_shows_both_sides_of_the_shared_array_and_string() {
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
    if !common::require_peer(
        "python3 with multiprocessing.connection",
        Command::new("python3").args(["-c", "import multiprocessing.connection"]),
    ) {
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

/// The value at the end of each line that starts with `prefix`.
fn values_after<'a>(out: &'a str, prefix: &str) -> Vec<&'a str> {
    out.lines().filter_map(|l| l.strip_prefix(prefix)).collect()
}

#[test]
fn queue_example_gets_what_the_putter_puts_in_order() {
    let _w = watchdog(60);
    let out = run_example("queue");
    let put = values_after(&out, "subprocess putter : put value ");
    let got = values_after(&out, "subprocess getter : get value ");
    assert_eq!(put.len(), 5, "{out}");
    assert_eq!(got, put, "{out}");
    for v in &put {
        let v: f64 = v.parse().unwrap_or_else(|e| panic!("{v:?}: {e}\n{out}"));
        assert!((0.0..=1.0).contains(&v), "{out}");
    }
    let lines: Vec<&str> = out.lines().collect();
    let empty = lines
        .iter()
        .position(|l| *l == "subprocess getter : queue empty for 1 s, getter quits")
        .unwrap_or_else(|| panic!("no empty line: {out}"));
    let last_get = lines
        .iter()
        .rposition(|l| l.starts_with("subprocess getter : get value "))
        .unwrap();
    assert!(empty > last_get, "{out}");
    assert!(
        lines
            .last()
            .unwrap()
            .ends_with("done: the getter got all 5 values, in the order they were put"),
        "{out}"
    );
}

#[test]
fn json_work_example_receives_all_21_messages() {
    let _w = watchdog(60);
    let out = run_example("json_work");
    let received: Vec<&str> = out.lines().filter(|l| l.starts_with("received")).collect();
    assert_eq!(received.len(), 21, "{out}");
    let numbered: Vec<&str> = values_after(&out, "received: ");
    let expected: Vec<String> = (0..20)
        .map(|i| format!("loop {i}, the message sent is: {i}"))
        .collect();
    assert_eq!(numbered, expected, "{out}");
    assert_eq!(
        values_after(&out, "received JSON: "),
        [r#"{"message":"this is a test message"}"#],
        "{out}"
    );
    assert_eq!(
        out.lines().last().unwrap(),
        "all 21 messages received; receiver terminated \
         (the child process was killed by signal 15)",
        "{out}"
    );
}

#[test]
fn nowait_example_handles_full_and_empty() {
    let _w = watchdog(30);
    let out = run_example("nowait");
    let expected = [
        "parent: put 1",
        "parent: put 2",
        "parent: put 3",
        "parent: is_full() = true",
        "parent: try_put(4): the queue is full; 4 handed back",
        "child: get() = 1",
        "child: get() = 2",
        "child: get() = 3",
        "child: is_empty() = true",
        "child: try_get(): the queue is empty",
        "parent: the child got [1, 2, 3]; is_empty() = true",
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), expected, "{out}");
}

#[test]
fn pool_example_counts_the_words_of_each_file() {
    let _w = watchdog(30);
    let dir = std::env::temp_dir().join(format!("mpkit-pool-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(dir.clone());
    let a = dir.join("a.txt");
    let b = dir.join("b.txt");
    std::fs::write(&a, "one two three").unwrap();
    std::fs::write(&b, "four\nfive").unwrap();
    let missing = dir.join("missing.txt");
    let out = run_example_with(
        "pool",
        &[
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            missing.to_str().unwrap(),
        ],
    );
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines[0], format!("3 {}", a.display()), "{out}");
    assert_eq!(lines[1], format!("2 {}", b.display()), "{out}");
    assert!(
        lines[2].starts_with("error") && lines[2].contains("missing.txt"),
        "{out}"
    );
    assert_eq!(lines[3], "5 words in 3 files", "{out}");
}

#[test]
fn pool_progress_example_counts_every_item_once_and_finishes_the_bar() {
    let _w = watchdog(30);
    let out = run_example_with("pool_progress", &["12"]);
    let frames: Vec<&str> = out.split(['\r', '\n']).filter(|l| !l.is_empty()).collect();
    let counts: Vec<String> = frames
        .iter()
        .filter_map(|f| f.split("] ").nth(1))
        .map(str::to_string)
        .collect();
    let expected: Vec<String> = (0..=12).map(|i| format!("{i}/12")).collect();
    assert_eq!(counts, expected, "{out:?}");
    assert!(
        frames.contains(&"[########################] 12/12"),
        "{out:?}"
    );
    // Σ π(1000·n) for n = 1..=12, each item's result kept once.
    let total: usize = [
        168, 303, 430, 550, 669, 783, 900, 1007, 1117, 1229, 1335, 1438,
    ]
    .iter()
    .sum();
    assert_eq!(
        frames.last().copied(),
        Some(format!("primes below 1000, 2000, …, 12000: {total} in all").as_str()),
        "{out:?}"
    );
}
