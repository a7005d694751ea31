//! `mpkit bench`: how fast every mechanism moves messages between two real
//! processes on this machine, against a spin-polled shared-memory ring (the
//! hardware floor) and against Python's `multiprocessing`.
//!
//! # What is measured
//! Each mechanism gets one long-lived child process and two one-way
//! channels: A (this process to the child) and B (back). A control
//! connection tells the child what comes next ([`Cmd`]) and carries its
//! acknowledgement.
//! - **Throughput** (64 B and 4 KiB): this process sends a batch of N
//!   messages on A; the clock runs from the first send to the child's
//!   acknowledgement that it received all N. Figure: the median of the
//!   batches' messages per second.
//! - **Round trip** (64 B): this process sends a message on A, the child
//!   sends it back on B; each round trip is timed on its own. Figure: the
//!   median (the mean is in the JSON).
//!
//! Before measuring, batches grow until one takes an eighth of the time
//! budget (warm-up and calibration); then batches run until the budget is
//! spent (at least three).
//!
//! Python rows run an embedded script (`bench_mp.py`) with the same
//! protocol over its standard input and output.
//!
//! # Cleaning up
//! Everything a mechanism creates is released when its bench ends, however
//! it ends: children are daemons (killed if this process dies) and are
//! killed if they do not stop; FIFOs, the Unix socket and POSIX queue names
//! are removed as soon as both sides have them open; System V queues are
//! removed by a guard; the temporary directory is removed at the end. On
//! SIGINT, SIGTERM or SIGHUP a watcher thread removes whatever is left and
//! kills the Python helpers before exiting.

//! # Where things are
//! - `mod.rs`: the command line and the run, start to finish;
//! - [`rows`]: the rows (mechanisms) and what each is compared with;
//! - [`channels`]: one way of sending and receiving per mechanism;
//! - [`worker`]: the children and this process's side of a mechanism;
//! - [`mechanisms`]: starting each mechanism;
//! - [`python`]: the Python rows;
//! - [`pools`]: the pool figures (against Python's Pool and rayon);
//! - [`redis_pool`]: the Redis pool against the local pool (`--only redis-pool`);
//! - [`measure`]: how each figure is measured;
//! - [`report`], [`text`], [`chart`]: the results as JSON, text and SVG;
//! - [`cpus`]: where the processes run; [`cleanup`]: what a signal removes.
//!
//! The spin-polled ring and the Python script are shared with the
//! criterion benchmarks, in the `mpkit-bench` crate.

mod channels;
mod chart;
mod cleanup;
mod cpus;
mod measure;
mod mechanisms;
mod pools;
mod python;
mod redis_pool;
mod report;
mod rows;
mod text;
mod worker;

use std::fmt::Display;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use crate::objects::{CliError, code};
use chart::PlotFile;
use cleanup::{TempDir, watch_signals};
use cpus::{allowed_cpus, placement, set_affinity};
use measure::{FIGURES, Measured, Progress, measure_row};
use mechanisms::Ctx;
use python::find_python;
use report::{Report, Row};
use rows::{SPECS, Spec, Start};

pub(crate) use redis_pool::TASKS as REDIS_POOL_TASKS;

/// Errors are one line of text for the user.
type Result<T = ()> = std::result::Result<T, String>;

/// Adds what was being done to an error.
trait Context<T> {
    fn ctx(self, what: impl Display) -> Result<T>;
}

impl<T, E: Display> Context<T> for std::result::Result<T, E> {
    fn ctx(self, what: impl Display) -> Result<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// The `--only` id of the pools table.
const POOLS: &str = "pools";
/// The `--only` id of the Redis pool's table (measured only when named).
const REDIS_POOL: &str = "redis-pool";

/// What `mpkit bench --help` says after the options.
const LONG_HELP: &str = "\
Rows: the spin-polled shared-memory ring (the floor: both sides busy-poll, \
nothing sleeps), mpkit's Pipe, Queue (ByteQueue), shared Array with \
Semaphores, Unix socket Connection, FIFO, System V and POSIX message \
queues and raw pipe, and (when python3 runs) Python's Pipe, \
multiprocessing.Queue, Array with Semaphores and Listener/Client.

Each row: messages per second one way at 64 B and 4 KiB (one producer \
process, one consumer process), and the median round trip of a 64 B \
message. Ratios are speed-ups (higher is faster): the share of the ring's \
throughput, and the speed against the row's Python counterpart.

Then the pools (under --only, only if it names `pools`): Pool::map of x + 1 over 100 000 \
ints and the cost per task at chunksize 1, against Python's Pool.map; \
CPU-bound tasks of about 1 ms on 1 and 2 workers, and on rayon.

Only when --only names `redis-pool` (it needs redis-server): the Redis pool \
against the local pool, 2 worker processes each, CPU-bound tasks of about \
1 ms and the cost per trivial task, both at chunksize 1.

The figures depend on the machine and on what else runs on it; a full run \
takes about a minute, --quick under 20 seconds. The progress bar goes to \
standard error (only on a terminal); results go to standard output.";

/// Options of `mpkit bench`.
#[derive(Args, Debug)]
#[command(after_long_help = LONG_HELP)]
pub struct BenchArgs {
    /// Measure each figure for a quarter of the time: under 20 seconds in
    /// all, with rougher figures.
    #[arg(long, conflicts_with = "tiny")]
    quick: bool,
    /// For tests: the shortest run that still exercises every mechanism
    /// (a few seconds; the figures are only indicative).
    #[arg(long)]
    tiny: bool,
    /// Print the results as JSON: one object with a row per mechanism.
    #[arg(long, conflicts_with = "markdown")]
    json: bool,
    /// Print the results as a Markdown table.
    #[arg(long)]
    markdown: bool,
    /// Also write a bar chart of the results to FILE (SVG).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// The Python interpreter for the Python rows.
    #[arg(long, value_name = "PATH", default_value = "python3")]
    python: String,
    /// Leave out the Python rows.
    #[arg(long)]
    no_python: bool,
    /// Where to run: `P,C` puts this process on CPU P and the children on
    /// CPU C (`0,0`: both on one CPU); `any` leaves it to the scheduler.
    /// Default: the first two CPUs this process may use, when it may use
    /// two.
    #[arg(long, value_name = "P,C|any")]
    cpus: Option<String>,
    /// Measure only these rows (comma-separated ids, as in the JSON:
    /// spin_ring, pipe, queue, shared_memory, unix_socket, fifo, sysv_mq,
    /// posix_mq, raw_pipe, py_pipe, py_queue, py_shm, py_socket; `pools`
    /// for the pools table; `redis-pool` for the Redis pool's, measured
    /// only when named).
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    only: Vec<String>,
}

/// How long each figure is measured for.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Full,
    Quick,
    Tiny,
}

impl Mode {
    fn budget(self) -> Duration {
        match self {
            Mode::Full => Duration::from_millis(1000),
            Mode::Quick => Duration::from_millis(250),
            Mode::Tiny => Duration::from_millis(10),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Full => "full run",
            Mode::Quick => "quick run",
            Mode::Tiny => "tiny run (for tests; rough figures)",
        }
    }
}

/// `mpkit bench`: measures every mechanism and prints the results.
pub fn run(args: BenchArgs) -> std::result::Result<(), CliError> {
    bench(args).map_err(|message| CliError {
        message: format!("bench: {message}"),
        code: code::ERROR,
    })
}

/// The whole run: measure, print, chart; the error if a row failed.
fn bench(args: BenchArgs) -> Result {
    let mode = if args.tiny {
        Mode::Tiny
    } else if args.quick {
        Mode::Quick
    } else {
        Mode::Full
    };
    if let Some(unknown) = args
        .only
        .iter()
        .find(|id| *id != POOLS && *id != REDIS_POOL && !SPECS.iter().any(|s| s.id == *id))
    {
        let ids: Vec<&str> = SPECS
            .iter()
            .map(|s| s.id)
            .chain([POOLS, REDIS_POOL])
            .collect();
        return Err(format!(
            "--only: no row {unknown:?} (the rows: {})",
            ids.join(", ")
        ));
    }
    let allowed = allowed_cpus()?;
    let placement = placement(args.cpus.as_deref(), &allowed)?;
    watch_signals();
    // Refuse a chart file that cannot be written before spending a minute.
    let mut plot = args.plot.as_deref().map(PlotFile::create).transpose()?;
    let started = Instant::now();
    let python = if args.no_python {
        Err("left out (--no-python)".to_string())
    } else {
        find_python(&args.python)
    };
    let rows = {
        let dir = TempDir::new()?;
        let ctx = Ctx {
            dir: dir.path.clone(),
            python: python.as_ref().ok().map(|p| p.path.clone()),
            placement,
        };
        if let Some(p) = placement {
            // This thread: the children and Python helpers it starts
            // inherit it (until they are moved).
            set_affinity(0, &[p.parent_cpu])?;
        }
        let specs: Vec<&Spec> = SPECS
            .iter()
            .filter(|s| !matches!(s.start, Start::Python(_)) || ctx.python.is_some())
            .filter(|s| args.only.is_empty() || args.only.iter().any(|id| id == s.id))
            .collect();
        let progress = Progress::new(specs.len() as u64 * FIGURES);
        let rows: Vec<Measured> = specs
            .into_iter()
            .map(|spec| measure_row(spec, &ctx, mode.budget(), &progress))
            .collect();
        progress.done();
        if placement.is_some() {
            set_affinity(0, &allowed)?;
        }
        rows
        // `dir` is removed here, before anything is printed (a closed
        // standard output ends the process).
    };
    // The pools are measured on their own, with no placement: each has
    // two workers of its own.
    let pools = if args.only.is_empty() || args.only.iter().any(|id| id == POOLS) {
        Some(pools::measure(
            mode,
            python.as_ref().ok().map(|p| p.path.as_str()),
        )?)
    } else {
        None
    };
    let redis_pool = if args.only.iter().any(|id| id == REDIS_POOL) {
        Some(redis_pool::measure(mode)?)
    } else {
        None
    };
    let mut notes = Vec::new();
    if let Err(why) = &python {
        notes.push(format!("Python rows skipped: {why}"));
    }
    let mut report = Report::new(
        mode,
        started.elapsed(),
        python.ok().map(|p| p.version),
        placement,
        rows,
        notes,
    );
    report.pools = pools;
    report.redis_pool = redis_pool;
    let text = if args.json {
        serde_json::to_string_pretty(&report).ctx("JSON")? + "\n"
    } else if args.markdown {
        report.markdown()
            + &report
                .pools
                .as_ref()
                .map_or(String::new(), |p| p.markdown())
            + &report
                .redis_pool
                .as_ref()
                .map_or(String::new(), |p| p.markdown())
    } else {
        report.human()
            + &report.pools.as_ref().map_or(String::new(), |p| p.human())
            + &report
                .redis_pool
                .as_ref()
                .map_or(String::new(), |p| p.human())
    };
    // The chart first: a closed standard output ends the process.
    if let Some(plot) = &mut plot {
        plot.write(&report.svg())?;
    }
    print!("{text}");
    if let Some(plot) = plot.as_ref().filter(|_| !args.json) {
        println!("chart: {}", plot.path.display());
    }
    std::io::stdout().flush().ctx("standard output")?;
    let failed: Vec<&Row> = report.rows.iter().filter(|r| r.error.is_some()).collect();
    match failed.as_slice() {
        [] => Ok(()),
        [one] => Err(format!(
            "{} failed: {}",
            one.mechanism,
            one.error.as_deref().unwrap_or_default()
        )),
        [first, ..] => Err(format!(
            "{} mechanisms failed; {}: {}",
            failed.len(),
            first.mechanism,
            first.error.as_deref().unwrap_or_default()
        )),
    }
}
