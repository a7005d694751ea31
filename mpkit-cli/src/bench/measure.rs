//! How each figure is measured: batches that grow until one takes an
//! eighth of the budget, then batches until the budget is spent.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Result;
use super::channels::{LARGE, SMALL};
use super::mechanisms::Ctx;
use super::python::PyBench;
use super::rows::{Spec, Start};
use super::worker::Bench;

/// Figures per row: two throughputs and a round trip.
pub(super) const FIGURES: u64 = 3;
/// At least this many measured batches per figure.
pub(super) const MIN_BATCHES: usize = 3;
/// At most this many round-trip samples are kept per figure.
pub(super) const MAX_SAMPLES: usize = 1 << 21;
/// The largest batch of messages or round trips.
pub(super) const MAX_BATCH: u64 = 1 << 24;

/// A row's figures.
pub(super) struct Figures {
    pub(super) small: f64,
    pub(super) large: f64,
    pub(super) rt_median_us: f64,
    pub(super) rt_mean_us: f64,
}

/// A row as measured: its figures, or why it failed.
pub(super) struct Measured {
    pub(super) spec: &'static Spec,
    pub(super) figures: Result<Figures>,
}

/// The progress bar (standard error, shown only on a terminal).
pub(super) struct Progress(ProgressBar);

impl Progress {
    pub(super) fn new(len: u64) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let style =
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {elapsed:>3} {wide_msg}")
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix("mpkit bench");
        Progress(bar)
    }

    pub(super) fn step(&self, what: String) {
        self.0.set_message(what);
    }

    pub(super) fn done(&self) {
        self.0.finish_and_clear();
    }
}

/// Starts a row's mechanism, measures its three figures, and stops it.
pub(super) fn measure_row(
    spec: &'static Spec,
    ctx: &Ctx,
    budget: Duration,
    progress: &Progress,
) -> Measured {
    let before = progress.0.position();
    progress.step(format!("{}: starting", spec.mechanism));
    let figures = (|| {
        let bench = match &spec.start {
            Start::Rust(start) => start(ctx)?,
            Start::Python(name) => {
                let python = ctx.python.as_deref().unwrap_or("python3");
                Box::new(PyBench::start(python, name, ctx)?)
            }
        };
        let mut bench = bench;
        progress.step(format!("{}: 64 B throughput", spec.mechanism));
        let small = throughput(bench.as_mut(), SMALL, budget)?;
        progress.0.inc(1);
        progress.step(format!("{}: 4 KiB throughput", spec.mechanism));
        let large = throughput(bench.as_mut(), LARGE, budget)?;
        progress.0.inc(1);
        progress.step(format!("{}: round trip", spec.mechanism));
        let (rt_median_us, rt_mean_us) = roundtrip(bench.as_mut(), budget)?;
        progress.0.inc(1);
        bench.finish()?;
        Ok(Figures {
            small,
            large,
            rt_median_us,
            rt_mean_us,
        })
    })();
    progress.0.set_position(before + FIGURES);
    Measured { spec, figures }
}

/// Messages per second: the median over batches of at least an eighth of
/// `budget` each, after batches grow to that size (warm-up).
pub(super) fn throughput(bench: &mut dyn Bench, size: usize, budget: Duration) -> Result<f64> {
    let target = budget / 8;
    let mut n = 8u64;
    loop {
        let t = bench.throughput(n, size)?;
        if t >= target || n >= MAX_BATCH {
            break;
        }
        n = grow(n, t, target);
    }
    let start = Instant::now();
    let mut rates = Vec::new();
    while rates.len() < MIN_BATCHES || start.elapsed() < budget {
        let t = bench.throughput(n, size)?;
        rates.push(n as f64 / t.as_secs_f64().max(1e-9));
    }
    Ok(median_f64(&mut rates))
}

/// The median and mean round trip in µs, over every round trip of batches
/// run for `budget`, after a warm-up like [`throughput`]'s.
pub(super) fn roundtrip(bench: &mut dyn Bench, budget: Duration) -> Result<(f64, f64)> {
    let target = budget / 8;
    let mut n = 8u64;
    let mut samples = Vec::new();
    loop {
        samples.clear();
        let start = Instant::now();
        bench.roundtrip(n, &mut samples)?;
        let t = start.elapsed();
        if t >= target || n >= MAX_BATCH {
            break;
        }
        n = grow(n, t, target);
    }
    samples.clear();
    let start = Instant::now();
    let mut batches = 0;
    while batches < MIN_BATCHES
        || (start.elapsed() < budget && samples.len() + n as usize <= MAX_SAMPLES)
    {
        bench.roundtrip(n, &mut samples)?;
        batches += 1;
    }
    if samples.is_empty() {
        return Err("no round trips were measured".into());
    }
    let mean = samples.iter().map(|&s| f64::from(s)).sum::<f64>() / samples.len() as f64;
    let mid = samples.len() / 2;
    let (_, median, _) = samples.select_nth_unstable(mid);
    Ok((f64::from(*median) / 1e3, mean / 1e3))
}

/// The next batch size: scaled towards `target` (at least doubled, at most
/// times 16).
pub(super) fn grow(n: u64, took: Duration, target: Duration) -> u64 {
    let factor = if took.is_zero() {
        16.0
    } else {
        (target.as_secs_f64() / took.as_secs_f64() * 1.2).clamp(2.0, 16.0)
    };
    ((n as f64 * factor) as u64).min(MAX_BATCH)
}

/// The median (the upper one of an even count).
pub(super) fn median_f64(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
