//! `mpkit bench`, run as a user would: every mechanism measured, the three
//! output formats and the chart, and nothing left behind.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every row `mpkit bench` measures without Python.
const RUST_ROWS: [&str; 9] = [
    "spin_ring",
    "pipe",
    "queue",
    "shared_memory",
    "unix_socket",
    "fifo",
    "sysv_mq",
    "posix_mq",
    "raw_pipe",
];

/// The Python rows, measured when `python3` runs.
const PYTHON_ROWS: [&str; 4] = ["py_pipe", "py_queue", "py_shm", "py_socket"];

/// A private directory for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("mpkit-bench-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one run of `mpkit bench` left.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Fails the test, showing both outputs, unless the command exited 0.
    fn assert_ok(&self) {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
    }
}

/// Runs `mpkit ARGS` with a watchdog (killed, and the test failed, after
/// 60 s), with `TMPDIR` in `scratch` and a marker in its environment that
/// its children inherit; then checks that nothing it started or made is
/// left.
fn mpkit(args: &[&str], scratch: &Scratch) -> Run {
    let tmp = scratch.0.join("tmp");
    std::fs::create_dir_all(&tmp).expect("create TMPDIR");
    let marker = format!("{}-{:?}", std::process::id(), Instant::now());
    let mut child = Command::new(env!("CARGO_BIN_EXE_mpkit"))
        .args(args)
        .env("TMPDIR", &tmp)
        .env("MPKIT_BENCH_TEST_MARKER", &marker)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mpkit");
    let pid = child.id();
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).expect("read stdout");
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).expect("read stderr");
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            kill_marked(&marker);
            panic!("mpkit {args:?} still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    };
    // Nothing left behind: no process carrying the marker (its children,
    // mpkit's and Python's), nothing in its TMPDIR (FIFOs, sockets), no
    // System V queue it last used.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut left = marked_processes(&marker);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        left = marked_processes(&marker);
    }
    kill_marked(&marker);
    assert!(
        left.is_empty(),
        "processes left running: {left:?}\nstderr:\n{}",
        run.stderr
    );
    let files: Vec<_> = std::fs::read_dir(&tmp)
        .expect("read TMPDIR")
        .map(|e| e.map(|e| e.path()))
        .collect();
    assert!(files.is_empty(), "left in TMPDIR: {files:?}");
    assert_eq!(
        sysv_queues_of(pid),
        Vec::<String>::new(),
        "System V queues left"
    );
    run
}

/// The pids of processes whose environment holds `marker`.
fn marked_processes(marker: &str) -> Vec<u32> {
    let needle = format!("MPKIT_BENCH_TEST_MARKER={marker}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == needle.as_bytes()))
        })
        .collect()
}

fn kill_marked(marker: &str) {
    for pid in marked_processes(marker) {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
}

/// Lines of `/proc/sysvipc/msg` whose last sender or receiver was `pid`.
fn sysv_queues_of(pid: u32) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string("/proc/sysvipc/msg") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.len() > 6 && (f[5] == pid.to_string() || f[6] == pid.to_string())
        })
        .map(String::from)
        .collect()
}

fn python_runs() -> bool {
    Command::new("python3")
        .args(["-c", "import multiprocessing"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn positive(row: &serde_json::Value, key: &str) -> f64 {
    let v = row[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {row}"));
    assert!(v > 0.0 && v.is_finite(), "{key} = {v} in {row}");
    v
}

#[test]
fn json_has_every_mechanism_with_positive_figures() {
    let scratch = Scratch::new("json");
    let run = mpkit(&["bench", "--tiny", "--json"], &scratch);
    run.assert_ok();
    let report: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", run.stdout));
    let rows = report["rows"].as_array().expect("rows");
    let ids: Vec<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
    let mut expected: Vec<&str> = RUST_ROWS.to_vec();
    if python_runs() {
        expected.extend(PYTHON_ROWS);
    }
    assert_eq!(ids, expected);
    let ring = &rows[0];
    for row in rows {
        assert!(row["error"].is_null(), "{row}");
        for key in [
            "msgs_per_sec_64b",
            "msgs_per_sec_4kib",
            "roundtrip_us_median",
            "roundtrip_us_mean",
            "vs_spin_ring_64b",
            "vs_spin_ring_4kib",
        ] {
            positive(row, key);
        }
        let ratio = row["vs_spin_ring_64b"].as_f64().unwrap_or_default();
        let expected_ratio = positive(row, "msgs_per_sec_64b") / positive(ring, "msgs_per_sec_64b");
        assert!((ratio - expected_ratio).abs() <= 1e-9 * expected_ratio.max(1.0));
        if python_runs() && !row["id"].as_str().unwrap_or_default().starts_with("py_") {
            assert!(row["python_counterpart"].is_string(), "{row}");
            for key in ["vs_python_64b", "vs_python_4kib", "vs_python_roundtrip"] {
                positive(row, key);
            }
        }
    }
    // The pools: every figure positive; Python's where Python runs.
    let pools = &report["pools"];
    for key in [
        "map_ms",
        "map_run_ms",
        "task_us",
        "cpu_task_ms",
        "cpu_1_worker_ms",
        "cpu_2_workers_ms",
        "rayon_2_threads_ms",
        "start_ms",
    ] {
        positive(pools, key);
    }
    if python_runs() {
        positive(pools, "py_map_ms");
        positive(pools, "py_map_run_ms");
        positive(pools, "py_task_us");
        for method in ["spawn", "fork", "forkserver"] {
            positive(pools, &format!("py_start_{method}_ms"));
        }
    }
    // The measured ranking: the three mechanisms, fastest first.
    let grades = report["rating"]["mpkit"].as_array().expect("three grades");
    let mut names: Vec<&str> = grades
        .iter()
        .filter_map(|g| g["mechanism"].as_str())
        .collect();
    let scores: Vec<f64> = grades.iter().map(|g| positive(g, "score")).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    names.sort_unstable();
    assert_eq!(names, ["pipe", "queue", "shared memory"]);
    for g in grades {
        let r = g["rating"].as_str().unwrap_or_default();
        assert!(["lower", "ordinary", "higher"].contains(&r), "{g}");
    }
    assert_eq!(report["mode"], "tiny");
    assert!(report["machine"]["cpus"].as_u64().unwrap_or(0) >= 1);
}

#[test]
fn markdown_table_and_svg_chart() {
    let scratch = Scratch::new("markdown");
    let chart = scratch.0.join("chart.svg");
    let chart_arg = chart.to_str().expect("UTF-8 path");
    let run = mpkit(
        &["bench", "--tiny", "--markdown", "--plot", chart_arg],
        &scratch,
    );
    run.assert_ok();
    // The mechanisms' table is the first one; the pools' table follows.
    let table: Vec<&str> = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(table.len() >= 2 + RUST_ROWS.len(), "{}", run.stdout);
    assert!(
        run.stdout.contains("\n| pool work | time | ratio |\n"),
        "{}",
        run.stdout
    );
    assert!(table[0].contains("| mechanism |"), "{}", table[0]);
    assert!(table[1].starts_with("|---|"), "{}", table[1]);
    let columns = table[0].matches('|').count();
    for line in &table {
        assert_eq!(line.matches('|').count(), columns, "{line}");
    }
    for name in ["spin-polled shm ring", "System V message queue", "FIFO"] {
        assert!(table.iter().any(|l| l.contains(name)), "no {name} row");
    }
    assert!(
        run.stdout
            .contains("measured ranking, fastest first, mpkit:"),
        "{}",
        run.stdout
    );
    let svg = std::fs::read_to_string(&chart).expect("the chart was written");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("<rect") && svg.contains("System V message queue"));
    assert_well_formed(&svg);
}

#[test]
fn only_pools_measures_the_pools_table_alone() {
    let scratch = Scratch::new("only_pools");
    let run = mpkit(&["bench", "--tiny", "--only", "pools", "--json"], &scratch);
    run.assert_ok();
    let report: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", run.stdout));
    assert_eq!(report["rows"].as_array().map(Vec::len), Some(0), "{report}");
    let pools = &report["pools"];
    positive(pools, "map_ms");
    positive(pools, "map_run_ms");
    positive(pools, "task_us");
    positive(pools, "start_ms");
    if python_runs() {
        positive(pools, "py_map_ms");
        positive(pools, "py_map_run_ms");
        positive(pools, "py_task_us");
        positive(pools, "py_start_spawn_ms");
    }
    // An unknown id is refused, and the refusal names `pools` among the ids.
    let run = mpkit(&["bench", "--tiny", "--only", "poolz"], &scratch);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("pools"), "{}", run.stderr);
}

#[test]
fn human_table_without_python_and_bad_plot_name() {
    let scratch = Scratch::new("human");
    let run = mpkit(&["bench", "--tiny", "--no-python"], &scratch);
    run.assert_ok();
    assert!(run.stdout.contains("mechanism"), "{}", run.stdout);
    assert!(run.stdout.contains("Python rows skipped"), "{}", run.stdout);
    assert!(!run.stdout.contains("Python Pipe"), "{}", run.stdout);
    assert!(
        run.stdout.contains("the same, rayon with 2 threads")
            && !run.stdout.contains("vs Python Pool"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("measured ranking, fastest first, mpkit:"),
        "{}",
        run.stdout
    );

    // A chart name that is not .svg is refused before anything runs.
    let png = scratch.0.join("chart.png");
    let run = mpkit(
        &["bench", "--tiny", "--plot", png.to_str().expect("UTF-8")],
        &scratch,
    );
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, "");
    let err: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(err.len(), 1, "{}", run.stderr);
    assert!(err[0].starts_with("mpkit: bench: --plot"), "{}", run.stderr);
    assert!(!Path::new(&png).exists());
}

/// Every tag opened in `svg` is closed, in order.
fn assert_well_formed(svg: &str) {
    let mut open: Vec<&str> = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').expect("unclosed <") + start;
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop(), Some(name.trim()), "mismatched </{name}>");
        } else if !tag.ends_with('/') && !tag.starts_with('?') && !tag.starts_with('!') {
            open.push(tag.split_whitespace().next().unwrap_or_default());
        }
    }
    assert!(open.is_empty(), "unclosed: {open:?}");
}

#[test]
fn only_redis_pool_measures_the_redis_pool_against_the_local_pool() {
    // It needs redis-server: absent, the run fails with a clear error.
    let installed = Command::new("redis-server")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let scratch = Scratch::new("only_redis_pool");
    if !installed {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(!ci, "redis-server is needed by this test under CI");
        let run = mpkit(&["bench", "--tiny", "--only", "redis-pool"], &scratch);
        assert_eq!(run.code, 1);
        assert!(run.stderr.contains("redis-server"), "{}", run.stderr);
        return;
    }
    let run = mpkit(
        &["bench", "--tiny", "--only", "redis-pool", "--json"],
        &scratch,
    );
    run.assert_ok();
    let report: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", run.stdout));
    assert_eq!(report["rows"].as_array().map(Vec::len), Some(0), "{report}");
    assert!(report["pools"].is_null(), "{report}");
    let r = &report["redis_pool"];
    for key in [
        "local_cpu_ms",
        "redis_cpu_ms",
        "local_task_us",
        "redis_task_us",
    ] {
        positive(r, key);
    }
    // The table in text, and the worker mode gone with the run (checked
    // by `mpkit`: no process of it is left).
    let run = mpkit(&["bench", "--tiny", "--only", "redis-pool"], &scratch);
    run.assert_ok();
    assert!(
        run.stdout
            .contains("the same, RedisPool (workers through Redis)"),
        "{}",
        run.stdout
    );
}
