//! The results: every figure and ratio, as `--json` prints them, and the
//! measured ranking of pipe, queue and shared memory.

use std::time::Duration;

use serde::Serialize;

use super::Mode;
use super::cpus::Placement;
use super::measure::Measured;
use super::rows::RANKED;

/// Everything `--json` prints.
#[derive(Serialize)]
pub(super) struct Report {
    pub(super) mode: Mode,
    pub(super) machine: Machine,
    /// How long the run took, in seconds.
    pub(super) seconds: f64,
    /// What the figures mean.
    pub(super) legend: Legend,
    pub(super) rows: Vec<Row>,
    pub(super) rating: Ratings,
    pub(super) notes: Vec<String>,
    /// The pool figures (absent under `--only`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) pools: Option<super::pools::Pools>,
    /// The Redis pool's figures (only under `--only redis-pool`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) redis_pool: Option<super::redis_pool::RedisPoolFigures>,
}

#[derive(Serialize)]
pub(super) struct Machine {
    pub(super) cpus: usize,
    /// Where the processes ran (`null`: where the scheduler put them).
    pub(super) placement: Option<Placement>,
    pub(super) cpu: Option<String>,
    pub(super) kernel: Option<String>,
    pub(super) python: Option<String>,
}

#[derive(Serialize)]
pub(super) struct Legend {
    pub(super) msgs_per_sec: &'static str,
    pub(super) roundtrip_us: &'static str,
    pub(super) vs_spin_ring: &'static str,
    pub(super) vs_python: &'static str,
}

/// The legend in the JSON.
pub(super) const LEGEND: Legend = Legend {
    msgs_per_sec: "messages per second, one way, one producer process to one consumer process (median over batches)",
    roundtrip_us: "64-byte message there and back between two processes, microseconds",
    vs_spin_ring: "this row's throughput divided by the spin-polled ring's (the hardware floor)",
    vs_python: "how many times as fast as the Python counterpart: throughput divided by its, its round trip divided by this one",
};

/// One row of the results.
#[derive(Serialize)]
pub(super) struct Row {
    pub(super) id: &'static str,
    pub(super) mechanism: &'static str,
    pub(super) family: &'static str,
    pub(super) how: &'static str,
    pub(super) msgs_per_sec_64b: Option<f64>,
    pub(super) msgs_per_sec_4kib: Option<f64>,
    pub(super) roundtrip_us_median: Option<f64>,
    pub(super) roundtrip_us_mean: Option<f64>,
    pub(super) vs_spin_ring_64b: Option<f64>,
    pub(super) vs_spin_ring_4kib: Option<f64>,
    pub(super) python_counterpart: Option<&'static str>,
    pub(super) vs_python_64b: Option<f64>,
    pub(super) vs_python_4kib: Option<f64>,
    pub(super) vs_python_roundtrip: Option<f64>,
    pub(super) error: Option<String>,
}

/// The measured ranking of pipe, queue and shared memory, mpkit's and
/// Python's, each fastest first.
#[derive(Serialize)]
pub(super) struct Ratings {
    pub(super) rule: &'static str,
    pub(super) mpkit: Option<[Grade; 3]>,
    pub(super) python: Option<[Grade; 3]>,
}

/// One mechanism's place in the ranking.
#[derive(Serialize)]
pub(super) struct Grade {
    pub(super) mechanism: &'static str,
    /// `higher`, `ordinary` or `lower`, by [`RATING_RULE`].
    pub(super) rating: &'static str,
    /// The row's speed against the three rows' geometric mean.
    pub(super) score: f64,
}

/// How the three mechanisms are rated.
pub(super) const RATING_RULE: &str = "each rated by the geometric mean of its 64 B msg/s, 4 KiB msg/s and round trips/s, against the three's: higher from 1.5x, lower up to 0.67x";

impl Row {
    pub(super) fn new(m: &Measured) -> Row {
        let (f, error) = match &m.figures {
            Ok(f) => (Some(f), None),
            Err(e) => (None, Some(e.clone())),
        };
        Row {
            id: m.spec.id,
            mechanism: m.spec.mechanism,
            family: m.spec.family,
            how: m.spec.how,
            msgs_per_sec_64b: f.map(|f| f.small),
            msgs_per_sec_4kib: f.map(|f| f.large),
            roundtrip_us_median: f.map(|f| f.rt_median_us),
            roundtrip_us_mean: f.map(|f| f.rt_mean_us),
            vs_spin_ring_64b: None,
            vs_spin_ring_4kib: None,
            python_counterpart: None,
            vs_python_64b: None,
            vs_python_4kib: None,
            vs_python_roundtrip: None,
            error,
        }
    }

    /// (64 B, 4 KiB, round trip), if measured.
    pub(super) fn figures(&self) -> Option<(f64, f64, f64)> {
        Some((
            self.msgs_per_sec_64b?,
            self.msgs_per_sec_4kib?,
            self.roundtrip_us_median?,
        ))
    }
}

/// `a / b`, when both are there and positive.
pub(super) fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
        _ => None,
    }
}

impl Report {
    pub(super) fn new(
        mode: Mode,
        took: Duration,
        python: Option<String>,
        placement: Option<Placement>,
        measured: Vec<Measured>,
        notes: Vec<String>,
    ) -> Report {
        let mut rows: Vec<Row> = measured.iter().map(Row::new).collect();
        let find = |rows: &[Row], id: &str| {
            rows.iter()
                .find(|r| r.id == id)
                .and_then(|r| r.figures().map(|f| (f, r.id)))
        };
        let ring = find(&rows, "spin_ring").map(|(f, _)| f);
        for i in 0..rows.len() {
            let mine = rows[i].figures();
            let counterpart = measured[i].spec.counterpart.and_then(|id| find(&rows, id));
            let row = &mut rows[i];
            row.vs_spin_ring_64b = ratio(mine.map(|f| f.0), ring.map(|f| f.0));
            row.vs_spin_ring_4kib = ratio(mine.map(|f| f.1), ring.map(|f| f.1));
            if let Some((py, id)) = counterpart {
                row.python_counterpart = Some(id);
                row.vs_python_64b = ratio(mine.map(|f| f.0), Some(py.0));
                row.vs_python_4kib = ratio(mine.map(|f| f.1), Some(py.1));
                row.vs_python_roundtrip = ratio(Some(py.2), mine.map(|f| f.2));
            }
        }
        let rating = Ratings {
            rule: RATING_RULE,
            mpkit: rate(&rows, |i| RANKED[i].1),
            python: rate(&rows, |i| RANKED[i].2),
        };
        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        Report {
            mode,
            machine: Machine {
                cpus: available,
                placement,
                cpu: cpu_model(),
                kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .ok()
                    .map(|s| s.trim().to_string()),
                python,
            },
            seconds: (took.as_secs_f64() * 10.0).round() / 10.0,
            legend: LEGEND,
            rows,
            rating,
            notes,
            pools: None,
            redis_pool: None,
        }
    }
}

/// The three mechanisms of [`RANKED`] rated from rows `id(0..3)`, fastest
/// first, if all three were measured.
pub(super) fn rate(rows: &[Row], id: impl Fn(usize) -> &'static str) -> Option<[Grade; 3]> {
    let mut scores = [0.0; 3];
    for (i, score) in scores.iter_mut().enumerate() {
        let (small, large, rt) = rows.iter().find(|r| r.id == id(i))?.figures()?;
        *score = (small * large * (1e6 / rt)).cbrt();
    }
    let mean = (scores[0] * scores[1] * scores[2]).cbrt();
    let mut grades: [Grade; 3] = std::array::from_fn(|i| {
        let score = scores[i] / mean;
        Grade {
            mechanism: RANKED[i].0,
            rating: if score >= 1.5 {
                "higher"
            } else if score <= 1.0 / 1.5 {
                "lower"
            } else {
                "ordinary"
            },
            score: (score * 100.0).round() / 100.0,
        }
    });
    grades.sort_by(|a, b| b.score.total_cmp(&a.score));
    Some(grades)
}

/// The CPU's model name, from `/proc/cpuinfo`.
pub(super) fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
}
