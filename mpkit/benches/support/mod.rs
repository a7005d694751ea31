//! What the benchmarks share (`mod support;` in each; not a target itself):
//! criterion's settings, CPU pinning, finding Python (and its optional
//! modules), the long-lived Python helper protocol, and the ratio table
//! printed after criterion from the estimates it saved.
//!
//! Each benchmark uses a different subset, so items unused by one of them
//! are marked `allow(dead_code)`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkGroup, Criterion, measurement::WallTime};

// ---------------------------------------------------------------------------
// Criterion
// ---------------------------------------------------------------------------

/// Short groups (10 samples, 0.5 s warm-up, 2 s of measurement), then
/// whatever the command line says.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .nresamples(20_000)
        .configure_from_args()
}

/// Benchmarks `id` with a state made on first use (so a filtered-out row
/// starts no process) and kept for the whole function, then dropped.
pub fn bench_with<S>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    make: impl Fn() -> S,
    run: impl Fn(&mut S, u64) -> Duration,
) {
    let mut state: Option<S> = None;
    group.bench_function(id, |b| {
        let s = state.get_or_insert_with(&make);
        b.iter_custom(|n| run(s, n));
    });
    drop(state);
}

// ---------------------------------------------------------------------------
// Optional CPU pinning
// ---------------------------------------------------------------------------

/// `(first CPU, second CPU)` from `MPKIT_BENCH_CPUS=P,C`, if set (what
/// each CPU is for is up to the benchmark).
pub fn cpus() -> Option<(usize, usize)> {
    static CPUS: OnceLock<Option<(usize, usize)>> = OnceLock::new();
    *CPUS.get_or_init(|| {
        let v = std::env::var("MPKIT_BENCH_CPUS").ok()?;
        let parsed = v
            .split_once(',')
            .and_then(|(p, c)| Some((p.trim().parse().ok()?, c.trim().parse().ok()?)));
        if parsed.is_none() {
            panic!("MPKIT_BENCH_CPUS={v:?}: expected two CPU numbers, like 0,1");
        }
        parsed
    })
}

/// Pins process (or thread) `pid` (0: the calling thread) to `cpu`.
pub fn pin(pid: i32, cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(rustix::process::Pid::from_raw(pid), &set)
        .unwrap_or_else(|e| panic!("could not pin process {pid} to CPU {cpu}: {e}"));
}

// ---------------------------------------------------------------------------
// Python
// ---------------------------------------------------------------------------

/// The venv `scripts/bench-setup` makes (with faster-fifo in it).
const BENCH_VENV_PYTHON: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../target/bench-venv/bin/python"
);

/// The Python interpreter to use to run `script`, or why there is none:
/// `MPKIT_BENCH_PYTHON` if set, else the venv of `scripts/bench-setup`
/// (`target/bench-venv`) if there is one, else `python3`. Prints which.
pub fn find_python(script: &str) -> Result<String, String> {
    let (python, why) = match std::env::var("MPKIT_BENCH_PYTHON") {
        Ok(p) => (p, "MPKIT_BENCH_PYTHON"),
        Err(_) if Path::new(BENCH_VENV_PYTHON).is_file() => {
            let venv = Path::new(BENCH_VENV_PYTHON);
            // Shown without the `mpkit/..` detour.
            let shown = venv
                .parent()
                .and_then(Path::parent)
                .and_then(Path::parent)
                .and_then(|target| std::fs::canonicalize(target).ok())
                .map_or_else(|| venv.to_path_buf(), |t| t.join("bench-venv/bin/python"));
            (
                shown.to_string_lossy().into_owned(),
                "the venv of scripts/bench-setup",
            )
        }
        Err(_) => (
            "python3".to_string(),
            "no MPKIT_BENCH_PYTHON, no target/bench-venv",
        ),
    };
    let out = Command::new(&python)
        .args([
            "-c",
            "import multiprocessing, sys; print(sys.version.split()[0])",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{python}` could not be run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{python}` cannot import multiprocessing: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if !Path::new(script).is_file() {
        return Err(format!("{script} is missing"));
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    println!("Python rows: `{python}` (Python {version}; {why}), {script}");
    Ok(python)
}

/// The version of Python module `module` (its distribution's, else its
/// `__version__`, else `?`) if `python` can import it, or why not.
#[allow(dead_code, reason = "only some benchmarks have optional modules")]
pub fn python_module(python: &str, module: &str) -> Result<String, String> {
    let code = format!(
        "import importlib, importlib.metadata as md\n\
         m = importlib.import_module({module:?})\n\
         try:\n    v = md.version({dist:?})\n\
         except Exception:\n    v = getattr(m, '__version__', '?')\n\
         print(v)",
        dist = module.replace('_', "-"),
    );
    let out = Command::new(python)
        .args(["-c", &code])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{python}` could not be run: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "`{python}` cannot import {module}: {}",
            err.trim().lines().last().unwrap_or("(no message)")
        ))
    }
}

/// A running Python benchmark script (see `python/bench_protocol.py`): it
/// prints `ready`, then for each line in (iterations) one line out
/// (nanoseconds it measured); end of input makes it clean up and exit.
pub struct PyBench {
    /// The script's file name, for messages.
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    line: String,
}

impl PyBench {
    /// Starts `python script args…` and waits for its `ready`.
    pub fn start(python: &str, script: &str, args: &[&str]) -> PyBench {
        let name = Path::new(script)
            .file_name()
            .map_or_else(|| script.into(), |n| n.to_string_lossy().into_owned());
        let mut child = Command::new(python)
            .arg(script)
            .args(args)
            // No __pycache__ beside the scripts.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {python} {script}: {e}"));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut py = PyBench {
            name,
            child,
            stdin,
            stdout,
            line: String::new(),
        };
        let ready = py.read_line();
        assert_eq!(ready, "ready", "{} {args:?} did not start", py.name);
        py
    }

    fn read_line(&mut self) -> String {
        self.line.clear();
        let n = self
            .stdout
            .read_line(&mut self.line)
            .unwrap_or_else(|e| panic!("read from {}: {e}", self.name));
        assert!(n > 0, "{} exited early (see its error above)", self.name);
        self.line.trim().to_string()
    }

    /// Has the script run `n` iterations; the time it measured.
    pub fn run(&mut self, n: u64) -> Duration {
        let stdin = self.stdin.as_mut().expect("open");
        writeln!(stdin, "{n}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("write to {}: {e}", self.name));
        let reply = self.read_line();
        let ns: u64 = reply
            .parse()
            .unwrap_or_else(|_| panic!("{} replied {reply:?}", self.name));
        Duration::from_nanos(ns)
    }
}

impl Drop for PyBench {
    fn drop(&mut self) {
        self.stdin = None; // end of input: the script cleans up and exits
        match self.child.wait() {
            Ok(s) if s.success() => {}
            Ok(s) => eprintln!("{} ended with {s}", self.name),
            Err(e) => eprintln!("waiting for {}: {e}", self.name),
        }
    }
}

// ---------------------------------------------------------------------------
// The ratio table
// ---------------------------------------------------------------------------

/// How a group's time per iteration is shown.
#[derive(Clone, Copy)]
#[allow(dead_code, reason = "each benchmark uses some of the units")]
pub enum Unit {
    /// One message: ns, and millions of messages per second.
    Message,
    /// One round trip: µs, and thousands of round trips per second.
    RoundTrip,
    /// One child process: ms.
    Child,
    /// One operation (a lock and unlock, an increment…): ns, and millions
    /// of operations per second.
    Operation,
}

/// A criterion group as the ratio table shows it.
pub struct Group {
    /// Criterion's group id (also its directory name).
    pub id: &'static str,
    pub title: &'static str,
    pub unit: Unit,
    pub rows: &'static [Row],
}

/// One benchmark of a group.
pub struct Row {
    /// Criterion's benchmark id inside the group (also its directory name).
    pub id: &'static str,
    pub label: &'static str,
    /// Ids of the rows (in the same group) this one is compared with.
    pub vs: &'static [&'static str],
}

pub const fn row(id: &'static str, label: &'static str, vs: &'static [&'static str]) -> Row {
    Row { id, label, vs }
}

/// Criterion's output directory, found as criterion finds it.
pub fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    // The bench binary is <target>/[<triple>/]<profile>/deps/<bench>-<hash>.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(t) = exe
            .ancestors()
            .find(|p| p.file_name().is_some_and(|n| n == "target"))
        {
            return t.join("criterion");
        }
        if let Some(t) = exe
            .ancestors()
            .skip(1)
            .find(|p| p.join("criterion").is_dir())
        {
            return t.join("criterion");
        }
    }
    PathBuf::from("target/criterion")
}

/// Mean time per iteration (ns) of a benchmark, if this run saved it.
pub fn fresh_mean(dir: &Path, group: &str, id: &str, since: SystemTime) -> Option<f64> {
    let path = dir.join(group).join(id).join("new").join("estimates.json");
    let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
    if modified < since {
        return None; // left over from an earlier run (filtered out now)
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

pub fn format_time(ns: f64, unit: Unit) -> String {
    match unit {
        Unit::Message => format!("{ns:9.1} ns  {:7.3} M msg/s", 1e3 / ns),
        Unit::RoundTrip => format!("{:8.2} µs  {:7.1} k rt/s", ns / 1e3, 1e6 / ns),
        Unit::Child => format!("{:8.3} ms  {:7.1} /s", ns / 1e6, 1e9 / ns),
        Unit::Operation => format!("{ns:9.1} ns  {:7.2} M op/s", 1e3 / ns),
    }
}

/// Prints every row of `groups` that this run measured (since `since`),
/// with its ratios to its baselines; `bench` names the benchmark.
pub fn print_ratio_table(bench: &str, groups: &[Group], since: SystemTime) {
    let dir = criterion_dir();
    let mut out = String::new();
    for group in groups {
        let means: Vec<(&Row, f64)> = group
            .rows
            .iter()
            .filter_map(|r| Some((r, fresh_mean(&dir, group.id, r.id, since)?)))
            .collect();
        if means.is_empty() {
            continue;
        }
        let width = means
            .iter()
            .map(|(r, _)| r.label.chars().count())
            .max()
            .unwrap_or(0);
        out.push_str(&format!("\n{} [{}]\n", group.title, group.id));
        for (r, ns) in &means {
            let ratios: Vec<String> =
                r.vs.iter()
                    .filter_map(|b| {
                        let (base, base_ns) = means.iter().find(|(x, _)| x.id == *b)?;
                        Some(format!("{:.2}x {} time", ns / base_ns, base.label))
                    })
                    .collect();
            let pad = width - r.label.chars().count();
            out.push_str(&format!(
                "  {}{:pad$}  {}{}{}\n",
                r.label,
                "",
                format_time(*ns, group.unit),
                if ratios.is_empty() { "" } else { "   " },
                ratios.join(", "),
            ));
        }
    }
    if out.is_empty() {
        println!(
            "\n(no ratio table: criterion saved no estimates in this run under {})",
            dir.display()
        );
    } else {
        println!(
            "\n=== mpkit {bench} benchmark: mean time per iteration, ratios of times (lower is faster) ==={out}"
        );
    }
}
