//! Queues between two real processes: mpkit's `ByteQueue` and `Queue<T>`
//! against a spin-polled ring in shared memory (the hardware floor), raw OS
//! pipes, and Python's `multiprocessing.Queue` and faster-fifo.
//!
//! Run with `cargo bench -p mpkit --bench queue` (criterion's arguments
//! pass through: `-- --quick`, `-- roundtrip`, …). After criterion, a ratio
//! table compares every row with its baselines, from the estimates criterion
//! saved in this run, and `target:` lines say whether mpkit met its
//! targets. `scripts/bench-setup` makes the venv with faster-fifo that the
//! faster-fifo rows need.
//!
//! Groups (one iteration is one message, or one round trip):
//! - `queue_throughput_64B`, `queue_throughput_4KiB`: one producer (this
//!   process) and one consumer (a long-lived child). Each measured batch:
//!   the child is told the count over a control pipe, the clock starts,
//!   this process puts the batch, the clock stops at the child's
//!   acknowledgement (sent once it has taken the whole batch). Rows:
//!   - `spin_ring`, the floor: a single-producer single-consumer ring of
//!     fixed-size slots in an anonymous [`SharedMemory`] block, head and tail
//!     on cache lines of their own, both sides busy-polling, each message
//!     `memcpy`'d in and out. It has nothing mpkit must have (locks for
//!     several producers and consumers, variable lengths, sleeping and
//!     waking, crash safety), so it is what the hardware can do, not a
//!     competitor.
//!   - `mpkit_bytequeue_get`: `ByteQueue::put` / `get` (a `Vec` per
//!     message); `_get_into`: `get_into` one reused buffer; `_get_many`:
//!     `get_many(256)` (a batching consumer); `_batched`: `put_many` of 256
//!     messages at a time and `get_many(256)` (batching on both sides).
//!   - `mpkit_queue_typed`: `Queue<Msg64>::put` / `get` where `Msg64` is
//!     `{ id: u64, body: [u64; 7] }` (64 bytes in memory), and at 4 KiB
//!     `Queue<Msg4K>` with `{ id: u64, body: Vec<u64> }` of 512 elements;
//!     the producer clones a prepared message for each put (the queue takes
//!     ownership). Bodies hold full-range values, so postcard's varints
//!     make the encoded messages larger than in memory (printed at start).
//!   - `raw_pipe`: `write` / `read_exact` of the message on a `pipe2` pipe.
//!   - `py_mp_queue`, `py_faster_fifo`: `put` / `get` of a bytes object of
//!     the message size on `multiprocessing.Queue()` and on
//!     `faster_fifo.Queue` (1 MiB), between a Python process and its child.
//!
//!   Every ring holds 1 MiB: the mpkit queues (`with_capacity(0, 1 MiB)`),
//!   the spin ring (1 MiB of slots) and faster-fifo.
//! - `queue_roundtrip_64B`: ping-pong of a 64-byte message over two one-way
//!   channels: this process puts on A, a long-lived echo child takes from A
//!   and puts on B, this process takes from B. A pair of spin rings (the
//!   floor), two `ByteQueue`s (`put` / `get_into`), a raw pipe pair, and
//!   pairs of Python `multiprocessing.Queue`s and faster-fifo queues.
//! - `queue_roundtrip_idle_64B`: the same round trips with both sides
//!   asleep: before each one (off the clock) this process sleeps
//!   [`IDLE_GAP`](roundtrip::IDLE_GAP), far past mpkit's 20 µs spin, so
//!   the echo child is asleep on its futex when the message comes, and
//!   this process sleeps for the answer once its own spin runs out. Two `ByteQueue`s against a
//!   bare futex pair (the floor of a futex wake: each side bumps a shared
//!   word, wakes, and sleeps on the other word at once, no data, no spin)
//!   and a raw pipe pair (a reader blocked in `read`; the kernel wakes a
//!   pipe reader as a "sync" wake-up, on the writer's CPU).
//! - `queue_mpmc_64B`: P producer children and C consumer children on one
//!   `ByteQueue` (`put` / `get`), 1x1, 2x2 and 4x4; time per message of
//!   the total (N split evenly among the producers and among the
//!   consumers; the clock runs from before the counts are sent to the last
//!   acknowledgement). Python: `multiprocessing.Queue` 2x2.
//!
//! Python rows run `mpkit-bench/python/mp_queue_bench.py`, kept running for the
//! whole benchmark function; it reports its own elapsed time, which is what
//! criterion records (`iter_custom`). The interpreter is
//! `MPKIT_BENCH_PYTHON`, else the venv of `scripts/bench-setup`, else
//! `python3`; without a working one those rows are skipped, and without
//! `faster_fifo` importable the faster-fifo rows are.
//!
//! `MPKIT_BENCH_CPUS=P,C` pins this process (and the Python producers and
//! pingers) to CPU `P` and the consumer and echo children to CPU `C`; the
//! `queue_mpmc_64B` children are left free to run on every CPU this process
//! could use at start. Unset, nothing is pinned. (The spin rings assume the
//! two sides run on different CPUs: on one CPU they degrade to taking turns
//! through `sched_yield`.) mpkit spins before sleeping whenever the
//! machine has several CPUs online, pinned or not; the sleeping path is
//! what `queue_roundtrip_idle_64B` measures.

// One module per group, `report` for what is printed after criterion;
// the children's and the Python rows' plumbing is here.
mod mpmc;
mod report;
mod roundtrip;
mod throughput;

use std::sync::OnceLock;
use std::time::SystemTime;

use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;
use mpkit::shm::SharedMemory;
use mpkit::{Connection, Process};
use mpkit_bench::harness::{self, bench_with, cpus, pin, print_ratio_table};
use mpkit_bench::python::{PyBench, QUEUE_SCRIPT as PY_SCRIPT, find_python, python_module};
use mpkit_bench::ring::{Patience, RING_BYTES, SpinRing};
use serde::Serialize;
use serde::de::DeserializeOwned;

use report::{GROUPS, print_targets};
use throughput::{encoded_len, msg4k, msg64};

/// The bytes every ring holds (mpkit queues, spin rings).
const CAPACITY: usize = RING_BYTES;

/// How many messages the batching consumer takes at once.
const GET_MANY: usize = 256;

/// This process's side of a spin ring (the floor) of `slot`-byte slots,
/// waiting as long as it takes: a consumer waits between batches for as
/// long as criterion takes, and an echo child is ended with `stop`.
fn spin_side(shm: SharedMemory, slot: usize) -> SpinRing {
    SpinRing::attach(shm, slot, Patience::ENDLESS).expect("a slot size that divides the ring")
}

/// This process's CPUs at start, before any pinning.
static START_CPUS: OnceLock<rustix::thread::CpuSet> = OnceLock::new();

/// Pins a long-lived consumer or echo child to the child CPU, when pinning
/// is asked for.
fn pin_child(pid: i32) {
    if let Some((_, cpu)) = cpus() {
        pin(pid, cpu);
    }
}

/// Lets an `mpmc` child run on every CPU this process could use at start
/// (it inherited this process's pinning, if any).
fn unpin_child(pid: i32) {
    if cpus().is_some() {
        if let Some(set) = START_CPUS.get() {
            rustix::thread::sched_setaffinity(rustix::process::Pid::from_raw(pid), set)
                .expect("sched_setaffinity");
        }
    }
}

/// Serves batches: each count that comes over `ctl` is handed to `batch`,
/// and goes back when it returns.
fn serve(mut ctl: Connection, mut batch: impl FnMut(u64)) {
    while let Ok(n) = ctl.recv::<u64>() {
        batch(n);
        ctl.send(&n).expect("ack");
    }
}

/// A long-lived child served over a control pipe (see [`serve`]).
struct Worker {
    ctl: Option<Connection>,
    child: Option<Process<()>>,
}

impl Worker {
    /// Starts `f(args(its end of the control pipe))`.
    fn spawn<A>(f: fn(A), args: impl FnOnce(Connection) -> A) -> Worker
    where
        A: Serialize + DeserializeOwned,
    {
        let (mine, theirs) = mpkit::pipe(true).expect("pipe");
        let child = Process::spawn(f, args(theirs)).expect("spawn");
        Worker {
            ctl: Some(mine),
            child: Some(child),
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").pid()
    }

    fn start(&mut self, n: u64) {
        self.ctl.as_mut().expect("open").send(&n).expect("count");
    }

    fn wait(&mut self) -> u64 {
        self.ctl.as_mut().expect("open").recv().expect("ack")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.ctl = None; // the child's next recv is end of file: it returns
        if let Some(Err(e)) = self.child.take().map(Process::join) {
            eprintln!("benchmark child failed: {e}");
        }
    }
}

/// The Python rows that can run: the interpreter, and whether faster-fifo
/// imports in it.
struct Python {
    python: Option<String>,
    faster_fifo: bool,
}

impl Python {
    fn find() -> Python {
        let python = match find_python(PY_SCRIPT) {
            Ok(p) => Some(p),
            Err(why) => {
                println!("skipping Python rows: {why}");
                None
            }
        };
        let faster_fifo = match &python {
            Some(py) => match python_module(py, "faster_fifo") {
                Ok(version) => {
                    println!("faster-fifo rows: faster_fifo {version}");
                    true
                }
                Err(why) => {
                    println!(
                        "skipping faster-fifo rows: {why} (scripts/bench-setup installs it in a venv)"
                    );
                    false
                }
            },
            None => false,
        };
        Python {
            python,
            faster_fifo,
        }
    }

    /// Adds row `id` running `mp_queue_bench.py args… --queue mp|ff`, when
    /// that queue is available.
    fn row(&self, g: &mut BenchmarkGroup<'_, WallTime>, id: &str, queue: &str, args: &[&str]) {
        let Some(py) = &self.python else { return };
        if queue == "ff" && !self.faster_fifo {
            return;
        }
        let cpu = cpus().map(|(_, cpu)| cpu.to_string());
        let mut args = args.to_vec();
        args.extend(["--queue", queue]);
        if let Some(cpu) = &cpu {
            // The script itself inherits this process's CPU; it pins its
            // children to the child CPU (mpmc: frees them).
            args.extend(["--child-cpu", cpu]);
        }
        bench_with(g, id, || PyBench::start(py, PY_SCRIPT, &args), PyBench::run);
    }
}

fn main() {
    let since = SystemTime::now();
    if let Ok(set) = rustix::thread::sched_getaffinity(None) {
        let _ = START_CPUS.set(set);
    }
    if let Some((parent, child)) = cpus() {
        pin(0, parent);
        println!(
            "pinned: this process (and Python producers) to CPU {parent}, consumer and echo children to CPU {child}"
        );
    }
    println!(
        "typed messages: Msg64 encodes to {} bytes, Msg4K to {} bytes (postcard)",
        encoded_len(&msg64()),
        encoded_len(&msg4k())
    );
    let py = Python::find();
    let mut c = harness::criterion();
    throughput::bench(&mut c, "queue_throughput_64B", 64, &py);
    throughput::bench(&mut c, "queue_throughput_4KiB", 4096, &py);
    roundtrip::bench(&mut c, &py);
    mpmc::bench(&mut c, &py);
    c.final_summary();
    print_ratio_table("queue", GROUPS, since);
    print_targets(since);
}
