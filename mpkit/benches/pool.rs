//! Process pools: mpkit's `Pool::map` against Python's
//! `multiprocessing.Pool.map`, same machine, same run.
//!
//! ```text
//! cargo bench -p mpkit --bench pool
//! ```
//!
//! - `map_100k_trivial`: `x + 1` over 100 000 integers with two workers and
//!   each side's default chunking (Python's: `len / (4 × workers)`, which
//!   mpkit copies), time per whole map;
//! - `map_1k_chunksize_1`: the same over 1 000 integers with one item per
//!   chunk: the per-task overhead.
//!
//! Both pools are made once per row and kept; only the maps are timed.

use std::time::{Duration, Instant, SystemTime};

use criterion::Criterion;
use mpkit::Pool;
use mpkit_bench::harness::{self, Group, Unit, bench_with, print_ratio_table, row};
use mpkit_bench::python::{POOL_SCRIPT as PY_SCRIPT, PyBench, find_python};

const WORKERS: usize = 2;
const BIG: u64 = 100_000;
const SMALL: u64 = 1_000;

const GROUPS: &[Group] = &[
    Group {
        id: "map_100k_trivial",
        title: "Pool.map(x + 1) over 100 000 ints, 2 workers, default chunking (time per map)",
        unit: Unit::Child,
        rows: &[
            row("mpkit_map", "mpkit Pool::map", &["py_map"]),
            row("py_map", "python Pool.map", &[]),
        ],
    },
    Group {
        id: "map_1k_chunksize_1",
        title: "Pool.map(x + 1) over 1 000 ints, 2 workers, chunksize 1 (time per map)",
        unit: Unit::Child,
        rows: &[
            row("mpkit_map1", "mpkit Pool::map_chunked(.., 1)", &["py_map1"]),
            row("py_map1", "python Pool.map(chunksize=1)", &[]),
        ],
    },
];

fn inc(x: u64) -> u64 {
    x + 1
}

/// A pool with its workers started and answering.
fn warm_pool() -> Pool {
    let pool = Pool::new(WORKERS).expect("pool");
    pool.map_chunked(inc, 0..(WORKERS as u64 * 4), 1)
        .expect("warm-up");
    pool
}

fn run_map(pool: &mut Pool, n: u64, items: u64, chunksize: usize) -> Duration {
    let start = Instant::now();
    let mut last = 0;
    for _ in 0..n {
        let out = pool.map_chunked(inc, 0..items, chunksize).expect("map");
        last = out[out.len() - 1];
    }
    let elapsed = start.elapsed();
    assert_eq!(last, items);
    elapsed
}

fn main() {
    let since = SystemTime::now();
    let python = find_python(PY_SCRIPT);
    if let Err(why) = &python {
        println!("skipping Python rows: {why}");
    }
    let workers = WORKERS.to_string();
    let mut c: Criterion = harness::criterion();
    {
        let mut g = c.benchmark_group("map_100k_trivial");
        bench_with(&mut g, "mpkit_map", warm_pool, |p, n| run_map(p, n, BIG, 0));
        if let Ok(py) = &python {
            let big = BIG.to_string();
            bench_with(
                &mut g,
                "py_map",
                || PyBench::start(py, PY_SCRIPT, &["map", &big, &workers]),
                PyBench::run,
            );
        }
        g.finish();
    }
    {
        let mut g = c.benchmark_group("map_1k_chunksize_1");
        bench_with(&mut g, "mpkit_map1", warm_pool, |p, n| {
            run_map(p, n, SMALL, 1)
        });
        if let Ok(py) = &python {
            let small = SMALL.to_string();
            bench_with(
                &mut g,
                "py_map1",
                || PyBench::start(py, PY_SCRIPT, &["map1", &small, &workers]),
                PyBench::run,
            );
        }
        g.finish();
    }
    c.final_summary();
    print_ratio_table("pool", GROUPS, since);
}
