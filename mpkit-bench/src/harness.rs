//! The criterion harness of the benchmarks in `mpkit/benches` (feature
//! `criterion`): criterion's settings, benchmarks with a long-lived state,
//! CPU pinning from `MPKIT_BENCH_CPUS`, and the ratio table printed after
//! criterion from the estimates it saved.

use std::path::{Path, PathBuf};
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
// The ratio table
// ---------------------------------------------------------------------------

/// How a group's time per iteration is shown.
#[derive(Clone, Copy)]
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
    /// What the group measures, as the table's heading says it.
    pub title: &'static str,
    /// How its times are shown.
    pub unit: Unit,
    /// Its rows, in the table's order.
    pub rows: &'static [Row],
}

/// One benchmark of a group.
pub struct Row {
    /// Criterion's benchmark id inside the group (also its directory name).
    pub id: &'static str,
    /// The row's name in the table.
    pub label: &'static str,
    /// Ids of the rows (in the same group) this one is compared with.
    pub vs: &'static [&'static str],
}

/// A [`Row`].
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

/// `ns` per iteration as the table shows it: the time, and the rate.
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
