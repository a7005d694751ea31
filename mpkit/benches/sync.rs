//! Locks and other synchronisation objects: mpkit against `std::sync` and
//! against Python's `multiprocessing`.
//!
//! Run with `cargo bench -p mpkit --bench sync` (criterion's arguments pass
//! through: `-- --quick`, `-- contended`, …). After criterion, a ratio table
//! compares every row with its baselines, from the estimates criterion saved
//! in this run.
//!
//! Groups (one iteration is one operation):
//! - `lock_unlock`: uncontended lock + unlock in this process: mpkit
//!   `Lock`, `RLock` and the lock of a `Value<i64>` (`get_lock()`), against
//!   `std::sync::Mutex<()>` (the target: mpkit `Lock` within 2x of it) and
//!   Python's `Lock()`, `RLock()` and `Value('q').get_lock()`.
//! - `contended_increment`: two workers each do half of the batch's
//!   lock / increment / unlock on one shared counter; time per increment.
//!   mpkit: two `Process` children, with a `RawValue<u64>` under a `Lock`,
//!   and with a `Value<i64>` (`*v.lock()? += 1`); std: two threads and a
//!   `Mutex<u64>`; Python: two processes and a `Value('q')` under its lock.
//!   Each batch: the workers are told their counts (over a pipe, or a
//!   channel for threads) right after the clock starts; it stops at the
//!   second acknowledgement. The total is checked after every batch.
//! - `value_increment`: locked increment in this process:
//!   `*v.lock()? += 1` on a `Value<i64>`, on a `std::sync::Mutex<i64>`, and
//!   Python's `with v.get_lock(): v.value += 1`.
//! - `semaphore_event`: `Semaphore(1)` acquire + release, and `Event`
//!   set + clear (nobody waiting), against Python's.
//!
//! Python rows run `mpkit-bench/python/mp_sync_bench.py`, kept running for the
//! whole benchmark function; it reports its own elapsed time, which is what
//! criterion records (`iter_custom`). Without a working `python3` (or the
//! interpreter named by `MPKIT_BENCH_PYTHON`), those rows are skipped.
//!
//! Where the two contending workers run decides what `contended_increment`
//! measures (two CPUs: lock hand-offs between caches and futex wake-ups; one
//! CPU: mostly one worker at a time, switched by the scheduler).
//! `MPKIT_BENCH_CPUS=P,C` pins this process (so the one-process groups) to
//! CPU `P`, and the first contending worker to `P`, the second to `C` — mpkit
//! children, std threads and Python children alike. Unset, nothing is
//! pinned.

use std::hint::black_box;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, Throughput};
use mpkit::shm::{RawValue, Value};
use mpkit::sync::{Event, Lock, RLock, Semaphore};
use mpkit::{Connection, Process};
use mpkit_bench::harness::{
    self, Group, Row, Unit, bench_with, cpus, criterion_dir, fresh_mean, pin, print_ratio_table,
    row,
};
use mpkit_bench::python::{PyBench, SYNC_SCRIPT as PY_SCRIPT, find_python};

// ---------------------------------------------------------------------------
// Rows: what the ratio table prints
// ---------------------------------------------------------------------------

const LOCK_ROWS: &[Row] = &[
    row("mpkit_lock", "mpkit Lock", &["std_mutex", "py_lock"]),
    row("mpkit_rlock", "mpkit RLock", &["std_mutex", "py_rlock"]),
    row(
        "mpkit_value_lock",
        "mpkit Value<i64>.get_lock()",
        &["std_mutex", "py_value_lock"],
    ),
    row("std_mutex", "std Mutex<()>", &[]),
    row("py_lock", "python Lock()", &["std_mutex"]),
    row("py_rlock", "python RLock()", &["std_mutex"]),
    row(
        "py_value_lock",
        "python Value('q').get_lock()",
        &["std_mutex"],
    ),
];

const CONTENDED_ROWS: &[Row] = &[
    row(
        "mpkit_lock_rawvalue",
        "mpkit Lock + RawValue<u64>, 2 processes",
        &["std_mutex_threads", "py_value"],
    ),
    row(
        "mpkit_value",
        "mpkit Value<i64>, 2 processes",
        &["std_mutex_threads", "py_value"],
    ),
    row("std_mutex_threads", "std Mutex<u64>, 2 threads", &[]),
    row(
        "py_value",
        "python Value('q') + get_lock(), 2 processes",
        &["std_mutex_threads"],
    ),
];

const INCREMENT_ROWS: &[Row] = &[
    row(
        "mpkit_value",
        "mpkit *v.lock()? += 1 (Value<i64>)",
        &["std_mutex", "py_value"],
    ),
    row("std_mutex", "std *m.lock()? += 1 (Mutex<i64>)", &[]),
    row(
        "py_value",
        "python with v.get_lock(): v.value += 1",
        &["std_mutex"],
    ),
];

const SEM_EVENT_ROWS: &[Row] = &[
    row(
        "mpkit_semaphore",
        "mpkit Semaphore acquire+release",
        &["py_semaphore"],
    ),
    row("py_semaphore", "python Semaphore acquire+release", &[]),
    row("mpkit_event", "mpkit Event set+clear", &["py_event"]),
    row("py_event", "python Event set+clear", &[]),
];

const GROUPS: &[Group] = &[
    Group {
        id: "lock_unlock",
        title: "uncontended lock + unlock, one process (time per pair)",
        unit: Unit::Operation,
        rows: LOCK_ROWS,
    },
    Group {
        id: "contended_increment",
        title: "two workers, lock / increment / unlock of one counter (time per increment)",
        unit: Unit::Operation,
        rows: CONTENDED_ROWS,
    },
    Group {
        id: "value_increment",
        title: "locked increment of a shared i64, one process (time per increment)",
        unit: Unit::Operation,
        rows: INCREMENT_ROWS,
    },
    Group {
        id: "semaphore_event",
        title: "semaphore and event, one process, uncontended (time per pair)",
        unit: Unit::Operation,
        rows: SEM_EVENT_ROWS,
    },
];

/// The target: mpkit `Lock` within this factor of `std::sync::Mutex`.
const LOCK_TARGET: f64 = 2.0;

// ---------------------------------------------------------------------------
// Contending workers
// ---------------------------------------------------------------------------

/// The CPU of contending worker `i` (0 or 1), when pinning is asked for.
fn worker_cpu(i: usize) -> Option<usize> {
    cpus().map(|(p, c)| if i == 0 { p } else { c })
}

/// A child's loop: each count that comes over `ctl` is a batch of
/// `increment` calls, acknowledged with the count when done.
fn serve(mut ctl: Connection, mut increment: impl FnMut()) {
    while let Ok(n) = ctl.recv::<u64>() {
        for _ in 0..n {
            increment();
        }
        ctl.send(&n).expect("ack");
    }
}

/// Child: increments a `RawValue<u64>` under an mpkit `Lock`.
fn lock_rawvalue_worker((lock, counter, ctl): (Lock, RawValue<u64>, Connection)) {
    serve(ctl, || {
        let _held = lock.lock().expect("lock");
        counter.set(counter.get() + 1);
    });
}

/// Child: increments a `Value<i64>` under its own lock.
fn value_worker((value, ctl): (Value<i64>, Connection)) {
    serve(ctl, || *value.lock().expect("lock") += 1);
}

/// One of two contending workers, and how to hand it a batch.
#[expect(clippy::large_enum_variant, reason = "two per benchmark function")]
enum Worker {
    Child {
        ctl: Option<Connection>,
        child: Option<Process<()>>,
    },
    Thread {
        go: Option<mpsc::Sender<u64>>,
        done: mpsc::Receiver<u64>,
        thread: Option<JoinHandle<()>>,
    },
}

impl Worker {
    /// A child started with [`serve`] on the other end of `ctl`.
    fn child(child: Process<()>, ctl: Connection, i: usize) -> Worker {
        if let Some(cpu) = worker_cpu(i) {
            pin(child.pid(), cpu);
        }
        Worker::Child {
            ctl: Some(ctl),
            child: Some(child),
        }
    }

    /// A thread incrementing `counter` under its mutex.
    fn thread(counter: Arc<Mutex<u64>>, i: usize) -> Worker {
        let (go, batches) = mpsc::channel::<u64>();
        let (acks, done) = mpsc::channel();
        let cpu = worker_cpu(i);
        let thread = std::thread::spawn(move || {
            if let Some(cpu) = cpu {
                pin(0, cpu);
            }
            for n in batches {
                for _ in 0..n {
                    *counter.lock().expect("lock") += 1;
                }
                if acks.send(n).is_err() {
                    return;
                }
            }
        });
        Worker::Thread {
            go: Some(go),
            done,
            thread: Some(thread),
        }
    }

    fn start(&mut self, n: u64) {
        match self {
            Worker::Child { ctl, .. } => ctl.as_mut().expect("open").send(&n).expect("count"),
            Worker::Thread { go, .. } => go.as_ref().expect("open").send(n).expect("count"),
        }
    }

    fn wait(&mut self) -> u64 {
        match self {
            Worker::Child { ctl, .. } => ctl.as_mut().expect("open").recv().expect("ack"),
            Worker::Thread { done, .. } => done.recv().expect("ack"),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        match self {
            Worker::Child { ctl, child } => {
                *ctl = None; // the child's next recv is end of file: it returns
                if let Some(Err(e)) = child.take().map(Process::join) {
                    eprintln!("benchmark child failed: {e}");
                }
            }
            Worker::Thread { go, thread, .. } => {
                *go = None;
                if let Some(Err(_)) = thread.take().map(JoinHandle::join) {
                    eprintln!("benchmark thread panicked");
                }
            }
        }
    }
}

/// Two workers incrementing one shared counter.
struct Contenders {
    workers: [Worker; 2],
    /// Reads the shared counter.
    count: Box<dyn Fn() -> u64>,
    expected: u64,
}

impl Contenders {
    fn mpkit_lock_rawvalue() -> Contenders {
        let lock = Lock::new().expect("Lock");
        let counter = RawValue::new(0u64).expect("RawValue");
        let workers = [0, 1].map(|i| {
            let (mine, theirs) = mpkit::pipe(true).expect("pipe");
            let args = (
                lock.try_clone().expect("clone"),
                counter.try_clone().expect("clone"),
                theirs,
            );
            let child = Process::spawn(lock_rawvalue_worker, args).expect("spawn");
            Worker::child(child, mine, i)
        });
        Contenders::started(workers, Box::new(move || counter.get()))
    }

    fn mpkit_value() -> Contenders {
        let value = Value::new(0i64).expect("Value");
        let workers = [0, 1].map(|i| {
            let (mine, theirs) = mpkit::pipe(true).expect("pipe");
            let args = (value.try_clone().expect("clone"), theirs);
            let child = Process::spawn(value_worker, args).expect("spawn");
            Worker::child(child, mine, i)
        });
        Contenders::started(
            workers,
            Box::new(move || u64::try_from(value.get().expect("lock")).expect("count")),
        )
    }

    fn std_threads() -> Contenders {
        let counter = Arc::new(Mutex::new(0u64));
        let workers = [0, 1].map(|i| Worker::thread(Arc::clone(&counter), i));
        Contenders::started(workers, Box::new(move || *counter.lock().expect("lock")))
    }

    fn started(workers: [Worker; 2], count: Box<dyn Fn() -> u64>) -> Contenders {
        let mut c = Contenders {
            workers,
            count,
            expected: 0,
        };
        c.run(2); // wait until both workers are up
        c
    }

    /// `n` increments, half by each worker; the time until both are done.
    fn run(&mut self, n: u64) -> Duration {
        let half = n / 2;
        let start = Instant::now();
        self.workers[0].start(half);
        self.workers[1].start(n - half);
        let acks = self.workers[0].wait() + self.workers[1].wait();
        let elapsed = start.elapsed();
        assert_eq!(acks, n);
        self.expected += n;
        assert_eq!((self.count)(), self.expected, "lost increments");
        elapsed
    }
}

// ---------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------

/// Runs `op` `n` times; the time it took.
fn timed(n: u64, mut op: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        op();
    }
    start.elapsed()
}

/// Adds the Python rows `(id, args of mp_sync_bench.py)`, when there is a
/// Python.
fn python_rows(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    python: &Result<String, String>,
    rows: &[(&str, &[&str])],
) {
    if let Ok(py) = python {
        for (id, args) in rows {
            bench_with(g, id, || PyBench::start(py, PY_SCRIPT, args), PyBench::run);
        }
    }
}

fn lock_unlock(c: &mut Criterion, python: &Result<String, String>) {
    let mut g = c.benchmark_group("lock_unlock");
    g.throughput(Throughput::Elements(1));
    bench_with(
        &mut g,
        "mpkit_lock",
        || Lock::new().expect("Lock"),
        |l, n| timed(n, || drop(l.lock().expect("lock"))),
    );
    bench_with(
        &mut g,
        "mpkit_rlock",
        || RLock::new().expect("RLock"),
        |l, n| timed(n, || drop(l.lock().expect("lock"))),
    );
    bench_with(
        &mut g,
        "mpkit_value_lock",
        || Value::new(0i64).expect("Value"),
        |v, n| timed(n, || drop(v.get_lock().lock().expect("lock"))),
    );
    bench_with(
        &mut g,
        "std_mutex",
        || Mutex::new(()),
        |m, n| timed(n, || drop(black_box(&*m).lock().expect("lock"))),
    );
    python_rows(
        &mut g,
        python,
        &[
            ("py_lock", &["lock", "--kind", "lock"]),
            ("py_rlock", &["lock", "--kind", "rlock"]),
            ("py_value_lock", &["lock", "--kind", "value"]),
        ],
    );
    g.finish();
}

fn contended_increment(c: &mut Criterion, python: &Result<String, String>) {
    let mut g = c.benchmark_group("contended_increment");
    g.throughput(Throughput::Elements(1));
    bench_with(
        &mut g,
        "mpkit_lock_rawvalue",
        Contenders::mpkit_lock_rawvalue,
        Contenders::run,
    );
    bench_with(
        &mut g,
        "mpkit_value",
        Contenders::mpkit_value,
        Contenders::run,
    );
    bench_with(
        &mut g,
        "std_mutex_threads",
        Contenders::std_threads,
        Contenders::run,
    );
    let cpus = cpus().map(|(p, c)| format!("{p},{c}"));
    let mut args = vec!["contended"];
    if let Some(cpus) = &cpus {
        args.extend(["--cpus", cpus]);
    }
    python_rows(&mut g, python, &[("py_value", args.as_slice())]);
    g.finish();
}

fn value_increment(c: &mut Criterion, python: &Result<String, String>) {
    let mut g = c.benchmark_group("value_increment");
    g.throughput(Throughput::Elements(1));
    bench_with(
        &mut g,
        "mpkit_value",
        || Value::new(0i64).expect("Value"),
        |v, n| timed(n, || *v.lock().expect("lock") += 1),
    );
    bench_with(
        &mut g,
        "std_mutex",
        || Mutex::new(0i64),
        |m, n| timed(n, || *black_box(&*m).lock().expect("lock") += 1),
    );
    python_rows(&mut g, python, &[("py_value", &["increment"])]);
    g.finish();
}

fn semaphore_event(c: &mut Criterion, python: &Result<String, String>) {
    let mut g = c.benchmark_group("semaphore_event");
    g.throughput(Throughput::Elements(1));
    bench_with(
        &mut g,
        "mpkit_semaphore",
        || Semaphore::new(1).expect("Semaphore"),
        |s, n| {
            timed(n, || {
                s.acquire().expect("acquire");
                s.release().expect("release");
            })
        },
    );
    bench_with(
        &mut g,
        "mpkit_event",
        || Event::new().expect("Event"),
        |e, n| {
            timed(n, || {
                e.set();
                e.clear();
            })
        },
    );
    python_rows(
        &mut g,
        python,
        &[("py_semaphore", &["semaphore"]), ("py_event", &["event"])],
    );
    g.finish();
}

/// Says whether mpkit `Lock` met its target against `std::sync::Mutex`.
fn print_lock_target(since: SystemTime) {
    let dir = criterion_dir();
    let mean = |id| fresh_mean(&dir, "lock_unlock", id, since);
    if let (Some(lock), Some(std)) = (mean("mpkit_lock"), mean("std_mutex")) {
        let ratio = lock / std;
        println!(
            "\ntarget: mpkit Lock within {LOCK_TARGET}x of std Mutex<()> (uncontended): {ratio:.2}x, {}",
            if ratio <= LOCK_TARGET {
                "met"
            } else {
                "NOT met"
            }
        );
    }
}

fn main() {
    let since = SystemTime::now();
    if let Some((p, c)) = cpus() {
        pin(0, p);
        println!("pinned: this process to CPU {p}; contending workers to CPUs {p} and {c}");
    }
    let python = find_python(PY_SCRIPT);
    if let Err(why) = &python {
        println!("skipping Python rows: {why}");
    }
    let mut c = harness::criterion();
    lock_unlock(&mut c, &python);
    contended_increment(&mut c, &python);
    value_increment(&mut c, &python);
    semaphore_event(&mut c, &python);
    c.final_summary();
    print_ratio_table("sync", GROUPS, since);
    print_lock_target(since);
}
