//! The pool figures: `mpkit::Pool` against Python's `multiprocessing.Pool`
//! (trivial tasks, default chunking and chunksize 1) and against rayon
//! (CPU-bound tasks, the named peer for pools), with 1 against 2 workers;
//! and start-up: `Pool::new(4)` plus its first result against Python's
//! spawn, fork and forkserver pools doing the same.
//!
//! Each figure repeats its whole map until the mode's budget is spent (at
//! least three times) and keeps the median; mpkit's and Python's maps run
//! in turns, so that load from elsewhere weighs on both alike. The trivial
//! map is timed two ways: each map alone, right after one of Python's (the
//! pool's threads and workers asleep, caches cold: what one map costs in
//! a program that does other things between maps), and over runs of maps
//! back to back (the throughput of a program that maps and maps). Python runs
//! `mpkit-bench/python/mp_pool_bench.py` (the criterion bench's script) by
//! path, so its figures are there only where the source tree is.

use std::path::Path;
use std::time::{Duration, Instant};

use mpkit::Pool;
use mpkit_bench::python::{POOL_SCRIPT, PyBench};
use serde::Serialize;

use super::{Context, Mode, Result};

/// Everything measured, as `--json` prints it (`pools`).
#[derive(Serialize)]
pub(super) struct Pools {
    /// Trivial tasks (`x + 1`) mapped with the default chunking.
    pub(super) map_items: u64,
    /// Milliseconds per whole map, mpkit and Python, each map run alone
    /// (after the other's: the pool idle, its caches cold).
    pub(super) map_ms: f64,
    pub(super) py_map_ms: Option<f64>,
    /// Milliseconds per map over runs of maps back to back (throughput:
    /// [`RUN`] of ours, [`PY_RUN`] of Python's, in turns).
    pub(super) map_run_ms: f64,
    pub(super) py_map_run_ms: Option<f64>,
    /// Microseconds per task at chunksize 1.
    pub(super) task_us: f64,
    pub(super) py_task_us: Option<f64>,
    /// CPU-bound tasks of about `cpu_task_ms` each.
    pub(super) cpu_tasks: u64,
    pub(super) cpu_task_ms: f64,
    /// Milliseconds for all of them: mpkit with 1 and 2 workers, rayon
    /// with 2 threads.
    pub(super) cpu_1_worker_ms: f64,
    pub(super) cpu_2_workers_ms: f64,
    pub(super) rayon_2_threads_ms: f64,
    /// Milliseconds from asking for a pool of [`START_WORKERS`] to its
    /// first result: mpkit, then Python's pools by start method.
    pub(super) start_ms: f64,
    pub(super) py_start_spawn_ms: Option<f64>,
    pub(super) py_start_fork_ms: Option<f64>,
    pub(super) py_start_forkserver_ms: Option<f64>,
    pub(super) notes: Vec<String>,
}

/// Workers of the compared pools (as in `benches/pool.rs`).
const WORKERS: usize = 2;
/// Maps of ours back to back per turn for the throughput figure (a turn
/// of about 6 ms).
const RUN: u32 = 10;
/// Python's (a turn of about 40 ms).
const PY_RUN: u32 = 3;
/// Items mapped at chunksize 1.
const SMALL: u64 = 1_000;
/// Workers of the pools whose start-up is timed (Python's `Pool(4)`).
const START_WORKERS: usize = 4;
/// Python's start methods, in the order their start-up is reported.
const START_METHODS: [&str; 3] = ["spawn", "fork", "forkserver"];

fn inc(x: u64) -> u64 {
    x + 1
}

/// About `rounds` steps of a xorshift: CPU work that cannot be folded away.
fn spin(rounds: u64) -> u64 {
    let mut x = rounds | 1;
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = std::hint::black_box(x);
    }
    x
}

/// The median time of `run`, repeated until `budget` is spent (three times
/// at least).
fn median(budget: Duration, mut run: impl FnMut() -> Result<Duration>) -> Result<Duration> {
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < 3 || start.elapsed() < budget {
        times.push(run()?);
    }
    times.sort();
    Ok(times[times.len() / 2])
}

fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed(), out)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn warm(processes: usize) -> Result<Pool> {
    let pool = Pool::new(processes).ctx("Pool::new")?;
    pool.map_chunked(inc, 0..(processes as u64 * 4), 1)
        .ctx("warming the pool")?;
    Ok(pool)
}

/// Maps `inc` over `items` with `chunksize` (0: default), checked.
fn map_once(pool: &Pool, items: u64, chunksize: usize) -> Result<Duration> {
    let (t, out) = timed(|| pool.map_chunked(inc, 0..items, chunksize));
    let out = out.ctx("Pool::map")?;
    if out.len() as u64 != items || out.last() != Some(&items) {
        return Err("Pool::map returned the wrong results".into());
    }
    Ok(t)
}

/// Python's pool mapping `items` (`map` or `map1` mode), started and
/// answering, or why none.
fn python_pool(python: &str, mode: &str, items: u64, workers: usize) -> Result<PyBench> {
    if !Path::new(POOL_SCRIPT).exists() {
        return Err(format!("{POOL_SCRIPT} is not here (the source tree)"));
    }
    Ok(PyBench::start(
        python,
        POOL_SCRIPT,
        &[mode, &items.to_string(), &workers.to_string()],
    ))
}

/// The median times of `ours` and of `theirs`, run in turns (so that what
/// else the machine does weighs on both alike) until `budget` is spent,
/// three times each at least.
fn medians_in_turn(
    budget: Duration,
    mut ours: impl FnMut() -> Result<Duration>,
    mut theirs: impl FnMut() -> Duration,
) -> Result<(Duration, Duration)> {
    let start = Instant::now();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    while a.len() < 3 || start.elapsed() < budget {
        a.push(ours()?);
        b.push(theirs());
    }
    a.sort();
    b.sort();
    Ok((a[a.len() / 2], b[b.len() / 2]))
}

/// One start-up of ours: `Pool::new` and the first result of `apply`
/// (the pool's shutdown is not timed, as in Python's figure).
fn start_once() -> Result<Duration> {
    let start = Instant::now();
    let pool = Pool::new(START_WORKERS).ctx("Pool::new")?;
    let first = pool.apply(inc, 1).ctx("Pool::apply")?;
    let t = start.elapsed();
    if first != 2 {
        return Err("Pool::apply returned the wrong result".into());
    }
    drop(pool);
    Ok(t)
}

/// Start-up medians: ours and Python's by [`START_METHODS`] (`None` where
/// Python is not here), all in turns after one untimed round (which starts
/// Python's forkserver, once per program as in Python, and warms the
/// caches for everyone).
fn start_up(
    budget: Duration,
    python: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<(Duration, [Option<Duration>; 3])> {
    let mut pys: Vec<PyBench> = Vec::new();
    if let Some(py) = python {
        for method in START_METHODS {
            match python_pool(py, &format!("start-{method}"), 0, START_WORKERS) {
                Ok(p) => pys.push(p),
                Err(e) => {
                    notes.push(format!("Python start-up figures skipped: {e}"));
                    pys.clear();
                    break;
                }
            }
        }
    }
    start_once()?;
    for p in &mut pys {
        p.run(1);
    }
    let start = Instant::now();
    let mut ours = Vec::new();
    let mut theirs = vec![Vec::new(); pys.len()];
    while ours.len() < 3 || start.elapsed() < budget {
        ours.push(start_once()?);
        for (p, times) in pys.iter_mut().zip(&mut theirs) {
            times.push(p.run(1));
        }
    }
    let mid = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let mut py = [None; 3];
    for (slot, times) in py.iter_mut().zip(theirs) {
        *slot = Some(mid(times));
    }
    Ok((mid(ours), py))
}

/// Rounds of [`spin`] that take about `target` here.
fn calibrate(target: Duration) -> u64 {
    let mut rounds = 1_000;
    loop {
        let (t, _) = timed(|| spin(rounds));
        if t >= target / 4 {
            return (rounds as f64 * target.as_secs_f64() / t.as_secs_f64()) as u64;
        }
        rounds *= 2;
    }
}

pub(super) fn measure(mode: Mode, python: Option<&str>) -> Result<Pools> {
    let budget = mode.budget();
    let (map_items, cpu_tasks) = match mode {
        Mode::Tiny => (10_000, 8),
        _ => (100_000, 32),
    };
    let mut notes = Vec::new();
    let pool = warm(WORKERS)?;
    let ours = |items, chunksize| map_once(&pool, items, chunksize);
    let (mut map, mut task, mut map_run) = (None, None, None);
    let (mut py_map, mut py_task, mut py_map_run) = (None, None, None);
    let run_of_ours = || -> Result<Duration> {
        let mut total = Duration::ZERO;
        for _ in 0..RUN {
            total += ours(map_items, 0)?;
        }
        Ok(total / RUN)
    };
    let (start, [spawn, fork, forkserver]) = start_up(budget, python, &mut notes)?;
    let python = python.map(|py| python_pool(py, "map", map_items, WORKERS).map(|p| (py, p)));
    match python {
        Some(Ok((py, mut py_pool))) => {
            let (m, p) = medians_in_turn(budget, || ours(map_items, 0), || py_pool.run(1))?;
            (map, py_map) = (Some(m), Some(ms(p)));
            let (m, p) =
                medians_in_turn(budget, run_of_ours, || py_pool.run(PY_RUN.into()) / PY_RUN)?;
            (map_run, py_map_run) = (Some(m), Some(ms(p)));
            drop(py_pool);
            let mut py_pool = python_pool(py, "map1", SMALL, WORKERS)?;
            let (t, p) = medians_in_turn(budget, || ours(SMALL, 1), || py_pool.run(1))?;
            task = Some(t);
            py_task = Some(p.as_secs_f64() * 1e6 / SMALL as f64);
        }
        Some(Err(e)) => notes.push(format!("Python pool figures skipped: {e}")),
        None => {}
    }
    let map = match map {
        Some(m) => m,
        None => median(budget, || ours(map_items, 0))?,
    };
    let map_run = match map_run {
        Some(m) => m,
        None => median(budget, run_of_ours)?,
    };
    let task = match task {
        Some(t) => t,
        None => median(budget, || ours(SMALL, 1))?,
    } / SMALL as u32;

    let rounds = calibrate(Duration::from_millis(1));
    let task_ms = ms(timed(|| spin(rounds)).0);
    let work = vec![rounds; cpu_tasks as usize];
    let cpu = |pool: &Pool| {
        median(budget, || {
            let (t, out) = timed(|| pool.map_chunked(spin, work.clone(), 1));
            out.ctx("Pool::map")?;
            Ok(t)
        })
    };
    let one = cpu(&warm(1)?)?;
    let two = cpu(&pool)?;
    let rayon = rayon::ThreadPoolBuilder::new()
        .num_threads(WORKERS)
        .build()
        .ctx("rayon pool")?;
    let par = median(budget, || {
        use rayon::prelude::*;
        Ok(timed(|| {
            rayon.install(|| {
                work.par_iter()
                    .map(|&r| spin(r))
                    .reduce(|| 0, u64::wrapping_add)
            })
        })
        .0)
    })?;
    Ok(Pools {
        map_items,
        map_ms: ms(map),
        py_map_ms: py_map,
        map_run_ms: ms(map_run),
        py_map_run_ms: py_map_run,
        task_us: task.as_secs_f64() * 1e6,
        py_task_us: py_task,
        cpu_tasks,
        cpu_task_ms: task_ms,
        cpu_1_worker_ms: ms(one),
        cpu_2_workers_ms: ms(two),
        rayon_2_threads_ms: ms(par),
        start_ms: ms(start),
        py_start_spawn_ms: spawn.map(ms),
        py_start_fork_ms: fork.map(ms),
        py_start_forkserver_ms: forkserver.map(ms),
        notes,
    })
}

impl Pools {
    /// `(what, figure, ratio)` lines; ratios are speed-ups (higher is
    /// faster for mpkit).
    fn lines(&self) -> Vec<[String; 3]> {
        // No ratio (no Python) says nothing.
        let x = |r: Option<f64>, vs: &str| r.map_or(String::new(), |r| format!("x{r:.2} {vs}"));
        let start_vs = [
            ("spawn", self.py_start_spawn_ms),
            ("fork", self.py_start_fork_ms),
            ("forkserver", self.py_start_forkserver_ms),
        ]
        .iter()
        .filter_map(|(method, py)| {
            py.map(|py| format!("x{:.2} vs {method} ({py:.1} ms)", py / self.start_ms))
        })
        .collect::<Vec<_>>()
        .join(", ");
        let start_vs = if start_vs.is_empty() {
            start_vs
        } else {
            format!("{start_vs}: Python Pool({START_WORKERS})")
        };
        vec![
            [
                format!(
                    "Pool::map(x + 1) over {} ints, 2 workers, default chunking",
                    self.map_items
                ),
                format!("{:.2} ms", self.map_ms),
                x(
                    self.py_map_ms.map(|p| p / self.map_ms),
                    "vs Python Pool.map (each map alone, after Python's)",
                ),
            ],
            [
                "the same, maps back to back (throughput)".to_string(),
                format!("{:.2} ms", self.map_run_ms),
                x(
                    self.py_map_run_ms.map(|p| p / self.map_run_ms),
                    "vs Python Pool.map (back to back)",
                ),
            ],
            [
                "per task at chunksize 1 (1 000 tasks)".to_string(),
                format!("{:.1} µs", self.task_us),
                x(
                    self.py_task_us.map(|p| p / self.task_us),
                    "vs Python Pool.map(chunksize=1)",
                ),
            ],
            [
                format!(
                    "{} CPU-bound tasks of {:.1} ms, 1 worker",
                    self.cpu_tasks, self.cpu_task_ms
                ),
                format!("{:.1} ms", self.cpu_1_worker_ms),
                String::new(),
            ],
            [
                "the same, 2 workers".to_string(),
                format!("{:.1} ms", self.cpu_2_workers_ms),
                x(
                    Some(self.cpu_1_worker_ms / self.cpu_2_workers_ms),
                    "vs 1 worker",
                ),
            ],
            [
                "the same, rayon with 2 threads".to_string(),
                format!("{:.1} ms", self.rayon_2_threads_ms),
                x(
                    Some(self.rayon_2_threads_ms / self.cpu_2_workers_ms),
                    "for mpkit vs rayon",
                ),
            ],
            [
                format!("Pool::new({START_WORKERS}) plus its first result (start-up)"),
                format!("{:.1} ms", self.start_ms),
                start_vs,
            ],
        ]
    }

    pub(super) fn human(&self) -> String {
        let title = "Pools (time per whole map; ratios: higher is faster for mpkit)";
        super::text::figures_human(title, &self.lines(), &self.notes)
    }

    pub(super) fn markdown(&self) -> String {
        super::text::figures_markdown("pool work", &self.lines(), &self.notes)
    }
}
