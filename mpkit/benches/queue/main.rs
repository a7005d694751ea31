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
//!   [`IDLE_GAP`], far past mpkit's 20 µs spin, so the echo child is
//!   asleep on its futex when the message comes, and this process sleeps
//!   for the answer once its own spin runs out. Two `ByteQueue`s against a
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

use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use mpkit::codec::{Codec, Postcard};
use mpkit::queue::{ByteQueue, GetError, Queue};
use mpkit::shm::SharedMemory;
use mpkit::{Connection, Process};
use mpkit_bench::harness::{
    self, Group, Row, Unit, bench_with, cpus, criterion_dir, fresh_mean, pin, print_ratio_table,
    row,
};
use mpkit_bench::python::{PyBench, QUEUE_SCRIPT as PY_SCRIPT, find_python, python_module};
use mpkit_bench::raw::{FUTEX_STOP, FutexPair, raw_pipe, unwrap_fd, wrap_fd};
use mpkit_bench::ring::{Patience, RING_BYTES, RingError, SpinRing};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The bytes every ring holds (mpkit queues, spin rings).
const CAPACITY: usize = RING_BYTES;

/// How many messages the batching consumer takes at once.
const GET_MANY: usize = 256;

// ---------------------------------------------------------------------------
// Rows: what the ratio table prints
// ---------------------------------------------------------------------------

const THROUGHPUT_64_ROWS: &[Row] = &[
    row("spin_ring", "spin-polled SPSC ring (floor)", &[]),
    row(
        "mpkit_bytequeue_get",
        "mpkit ByteQueue put / get",
        &["spin_ring", "raw_pipe", "py_mp_queue"],
    ),
    row(
        "mpkit_bytequeue_get_into",
        "mpkit ByteQueue put / get_into",
        &["spin_ring", "raw_pipe", "py_mp_queue"],
    ),
    row(
        "mpkit_bytequeue_get_many",
        "mpkit ByteQueue put / get_many(256)",
        &["spin_ring", "raw_pipe", "py_mp_queue"],
    ),
    row(
        "mpkit_bytequeue_batched",
        "mpkit ByteQueue put_many(256) / get_many(256)",
        &["spin_ring", "raw_pipe", "py_mp_queue"],
    ),
    row(
        "mpkit_queue_typed",
        "mpkit Queue<Msg64> put / get",
        &["spin_ring", "raw_pipe", "py_mp_queue"],
    ),
    row("raw_pipe", "raw pipe write / read", &["spin_ring"]),
    row(
        "py_mp_queue",
        "python multiprocessing.Queue put / get",
        &["spin_ring"],
    ),
    row(
        "py_faster_fifo",
        "python faster_fifo.Queue put / get",
        &["spin_ring"],
    ),
];

const THROUGHPUT_4K_ROWS: &[Row] = &[
    row("spin_ring", "spin-polled SPSC ring (floor)", &[]),
    row(
        "mpkit_bytequeue_get",
        "mpkit ByteQueue put / get",
        &["spin_ring", "raw_pipe", "py_mp_queue"],
    ),
    row(
        "mpkit_bytequeue_get_into",
        "mpkit ByteQueue put / get_into",
        &["spin_ring", "raw_pipe", "py_mp_queue"],
    ),
    row(
        "mpkit_bytequeue_get_many",
        "mpkit ByteQueue put / get_many(256)",
        &["spin_ring", "raw_pipe", "py_mp_queue"],
    ),
    row(
        "mpkit_bytequeue_batched",
        "mpkit ByteQueue put_many(256) / get_many(256)",
        &["spin_ring", "raw_pipe", "py_mp_queue"],
    ),
    row(
        "mpkit_queue_typed",
        "mpkit Queue<Msg4K> put / get",
        &["spin_ring", "raw_pipe", "py_mp_queue"],
    ),
    row("raw_pipe", "raw pipe write / read", &["spin_ring"]),
    row(
        "py_mp_queue",
        "python multiprocessing.Queue put / get",
        &["spin_ring"],
    ),
    row(
        "py_faster_fifo",
        "python faster_fifo.Queue put / get",
        &["spin_ring"],
    ),
];

const ROUNDTRIP_ROWS: &[Row] = &[
    row("spin_ring_pair", "spin-polled SPSC ring pair (floor)", &[]),
    row(
        "mpkit_bytequeue",
        "mpkit 2x ByteQueue put / get_into",
        &["spin_ring_pair", "raw_pipe_pair", "py_mp_queue"],
    ),
    row("raw_pipe_pair", "raw pipe pair", &["spin_ring_pair"]),
    row(
        "py_mp_queue",
        "python 2x multiprocessing.Queue",
        &["spin_ring_pair"],
    ),
    row(
        "py_faster_fifo",
        "python 2x faster_fifo.Queue",
        &["spin_ring_pair"],
    ),
];

const IDLE_ROWS: &[Row] = &[
    row(
        "mpkit_bytequeue",
        "mpkit 2x ByteQueue put / get_into",
        &["futex_pair", "raw_pipe_pair"],
    ),
    row(
        "futex_pair",
        "bare futex pair (sleep at once, no data)",
        &[],
    ),
    row("raw_pipe_pair", "raw pipe pair", &["futex_pair"]),
];

/// How long both sides of an idle round trip are left alone before it.
const IDLE_GAP: Duration = Duration::from_micros(300);

const MPMC_ROWS: &[Row] = &[
    row("mpkit_1x1", "mpkit ByteQueue, 1 producer x 1 consumer", &[]),
    row(
        "mpkit_2x2",
        "mpkit ByteQueue, 2 producers x 2 consumers",
        &["mpkit_1x1"],
    ),
    row(
        "mpkit_4x4",
        "mpkit ByteQueue, 4 producers x 4 consumers",
        &["mpkit_1x1"],
    ),
    row(
        "py_mp_queue_2x2",
        "python multiprocessing.Queue, 2 x 2",
        &["mpkit_2x2"],
    ),
];

const GROUPS: &[Group] = &[
    Group {
        id: "queue_throughput_64B",
        title: "throughput, 64 B messages, 1 producer -> 1 consumer (time per message)",
        unit: Unit::Message,
        rows: THROUGHPUT_64_ROWS,
    },
    Group {
        id: "queue_throughput_4KiB",
        title: "throughput, 4 KiB messages, 1 producer -> 1 consumer (time per message)",
        unit: Unit::Message,
        rows: THROUGHPUT_4K_ROWS,
    },
    Group {
        id: "queue_roundtrip_64B",
        title: "round trip, 64 B over two one-way channels (time per round trip)",
        unit: Unit::RoundTrip,
        rows: ROUNDTRIP_ROWS,
    },
    Group {
        id: "queue_roundtrip_idle_64B",
        title: "round trip, 64 B, both sides asleep before each (time per round trip)",
        unit: Unit::RoundTrip,
        rows: IDLE_ROWS,
    },
    Group {
        id: "queue_mpmc_64B",
        title: "many producers x many consumers, 64 B, one queue (time per message, all together)",
        unit: Unit::Message,
        rows: MPMC_ROWS,
    },
];

/// Targets: mpkit `ByteQueue` throughput (`put` / `get_into`) at least
/// this fraction of the spin ring's (64 B, 4 KiB); at 64 B, `put` / `get` at
/// least this many times Python `multiprocessing.Queue`'s; and a busy round
/// trip within this many ns.
const TARGET_64: f64 = 0.5;
const TARGET_4K: f64 = 0.3;
const TARGET_VS_PYTHON: f64 = 40.0;
const TARGET_ROUNDTRIP_NS: f64 = 1000.0;

// ---------------------------------------------------------------------------
// Typed messages
// ---------------------------------------------------------------------------

/// The typed 64-byte message.
#[derive(Clone, Serialize, Deserialize)]
struct Msg64 {
    id: u64,
    body: [u64; 7],
}

/// The typed 4 KiB message.
#[derive(Clone, Serialize, Deserialize)]
struct Msg4K {
    id: u64,
    body: Vec<u64>,
}

/// Full-range values (most take 9 or 10 bytes as postcard varints).
fn filler(i: usize) -> u64 {
    (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn msg64() -> Msg64 {
    Msg64 {
        id: 1,
        body: std::array::from_fn(filler),
    }
}

fn msg4k() -> Msg4K {
    Msg4K {
        id: 1,
        body: (0..512).map(filler).collect(),
    }
}

fn encoded_len<T: Serialize>(v: &T) -> usize {
    let mut out = Vec::new();
    Postcard::encode(v, &mut out).expect("encode");
    out.len()
}

/// This process's side of a spin ring (the floor) of `slot`-byte slots,
/// waiting as long as it takes: a consumer waits between batches for as
/// long as criterion takes, and an echo child is ended with `stop`.
fn spin_side(shm: SharedMemory, slot: usize) -> SpinRing {
    SpinRing::attach(shm, slot, Patience::ENDLESS).expect("a slot size that divides the ring")
}

// ---------------------------------------------------------------------------
// CPUs
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Child functions (they run in a re-executed copy of this binary)
// ---------------------------------------------------------------------------

/// Serves batches: each count that comes over `ctl` is handed to `batch`,
/// and goes back when it returns.
fn serve(mut ctl: Connection, mut batch: impl FnMut(u64)) {
    while let Ok(n) = ctl.recv::<u64>() {
        batch(n);
        ctl.send(&n).expect("ack");
    }
}

/// How a `ByteQueue` consumer takes its messages.
#[derive(Clone, Copy, Serialize, Deserialize)]
enum Take {
    Get,
    GetInto,
    GetMany,
}

fn spin_consumer((shm, ctl, size): (SharedMemory, Connection, usize)) {
    let mut ring = spin_side(shm, size);
    let mut buf = vec![0u8; size];
    serve(ctl, |n| {
        for _ in 0..n {
            ring.pop(&mut buf).expect("pop");
            black_box(&mut buf);
        }
    });
}

fn bytes_consumer((q, ctl, size, take): (ByteQueue, Connection, usize, Take)) {
    let mut buf = Vec::with_capacity(size);
    serve(ctl, |n| match take {
        Take::Get => {
            for _ in 0..n {
                let m = q.get().expect("get");
                assert_eq!(m.len(), size);
            }
        }
        Take::GetInto => {
            for _ in 0..n {
                q.get_into(&mut buf).expect("get_into");
                assert_eq!(buf.len(), size);
            }
        }
        Take::GetMany => {
            let mut got = 0;
            while got < n {
                let max = GET_MANY.min((n - got) as usize);
                let ms = q.get_many(max).expect("get_many");
                assert!(ms.iter().all(|m| m.len() == size));
                got += ms.len() as u64;
            }
        }
    });
}

fn typed64_consumer((q, ctl): (Queue<Msg64>, Connection)) {
    serve(ctl, |n| {
        for _ in 0..n {
            let m = q.get().expect("get");
            black_box(m.body[6]);
        }
    });
}

fn typed4k_consumer((q, ctl): (Queue<Msg4K>, Connection)) {
    serve(ctl, |n| {
        for _ in 0..n {
            let m = q.get().expect("get");
            assert_eq!(m.body.len(), 512);
        }
    });
}

fn pipe_consumer((r, ctl, size): (Connection, Connection, usize)) {
    let mut r = File::from(unwrap_fd(r));
    let mut buf = vec![0u8; size];
    serve(ctl, |n| {
        for _ in 0..n {
            r.read_exact(&mut buf).expect("read_exact");
        }
    });
}

/// Echoes 64-byte messages from ring A to ring B until stopped.
fn spin_echo((a, b): (SharedMemory, SharedMemory)) {
    let mut a = spin_side(a, 64);
    let mut b = spin_side(b, 64);
    let mut buf = [0u8; 64];
    loop {
        match a.pop(&mut buf) {
            Ok(()) => b.push(&buf).expect("push"),
            Err(RingError::Stopped) => return,
            Err(e) => panic!("echo pop: {e}"),
        }
    }
}

/// Echoes messages from queue A to queue B until A is closed.
fn bytes_echo((a, b): (ByteQueue, ByteQueue)) {
    let mut buf = Vec::with_capacity(64);
    loop {
        match a.get_into(&mut buf) {
            Ok(()) => b.put(&buf).expect("put"),
            Err(GetError::Closed) => return,
            Err(e) => panic!("echo get: {e}"),
        }
    }
}

/// Echoes the futex pair's sequence from word 0 to word 64 until stopped.
fn futex_echo(shm: SharedMemory) {
    let pair = FutexPair::new(shm);
    let mut seen = 0;
    loop {
        seen = pair.recv(0, seen);
        if seen == FUTEX_STOP {
            return;
        }
        pair.send(64, seen);
    }
}

/// Echoes 64-byte messages from pipe A to pipe B until end of file.
fn pipe_echo((a, b): (Connection, Connection)) {
    let (mut a, mut b) = (File::from(unwrap_fd(a)), File::from(unwrap_fd(b)));
    let mut buf = [0u8; 64];
    loop {
        match a.read_exact(&mut buf) {
            Ok(()) => b.write_all(&buf).expect("echo write"),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return,
            Err(e) => panic!("echo read: {e}"),
        }
    }
}

fn mpmc_producer((q, ctl, size): (ByteQueue, Connection, usize)) {
    let payload = vec![0x5au8; size];
    serve(ctl, |n| {
        for _ in 0..n {
            q.put(&payload).expect("put");
        }
    });
}

fn mpmc_consumer((q, ctl, size): (ByteQueue, Connection, usize)) {
    serve(ctl, |n| {
        for _ in 0..n {
            let m = q.get().expect("get");
            assert_eq!(m.len(), size);
        }
    });
}

// ---------------------------------------------------------------------------
// Parent sides
// ---------------------------------------------------------------------------

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

/// What this process puts messages into.
enum Producer {
    Spin(SpinRing),
    Bytes(ByteQueue),
    /// `put_many` of up to [`GET_MANY`] messages at a time.
    BytesBatched(ByteQueue),
    Typed64(Queue<Msg64>),
    Typed4K(Queue<Msg4K>),
    Pipe(File),
}

/// One producer (this process) and one consumer child.
struct Stream {
    // Dropped first: a consumer waiting on its queue is between batches,
    // blocked on its control pipe, so closing the pipe ends it.
    worker: Worker,
    producer: Producer,
    payload: Vec<u8>,
}

impl Stream {
    fn spin(size: usize) -> Stream {
        let shm = SpinRing::create().expect("SharedMemory");
        let theirs = shm.try_clone().expect("clone");
        let worker = Worker::spawn(spin_consumer, |ctl| (theirs, ctl, size));
        Stream::started(worker, Producer::Spin(spin_side(shm, size)), size)
    }

    fn bytes(size: usize, take: Take, batched: bool) -> Stream {
        let q = ByteQueue::with_capacity(0, CAPACITY).expect("ByteQueue");
        let theirs = q.try_clone().expect("clone");
        let worker = Worker::spawn(bytes_consumer, |ctl| (theirs, ctl, size, take));
        let producer = if batched {
            Producer::BytesBatched(q)
        } else {
            Producer::Bytes(q)
        };
        Stream::started(worker, producer, size)
    }

    fn typed64() -> Stream {
        let q = Queue::<Msg64>::with_capacity(0, CAPACITY).expect("Queue");
        let theirs = q.try_clone().expect("clone");
        let worker = Worker::spawn(typed64_consumer, |ctl| (theirs, ctl));
        Stream::started(worker, Producer::Typed64(q), 64)
    }

    fn typed4k() -> Stream {
        let q = Queue::<Msg4K>::with_capacity(0, CAPACITY).expect("Queue");
        let theirs = q.try_clone().expect("clone");
        let worker = Worker::spawn(typed4k_consumer, |ctl| (theirs, ctl));
        Stream::started(worker, Producer::Typed4K(q), 4096)
    }

    fn pipe(size: usize) -> Stream {
        let (r, w) = raw_pipe();
        let theirs = wrap_fd(r.into());
        let worker = Worker::spawn(pipe_consumer, |ctl| (theirs, ctl, size));
        Stream::started(worker, Producer::Pipe(w), size)
    }

    fn started(worker: Worker, producer: Producer, size: usize) -> Stream {
        pin_child(worker.pid());
        let mut s = Stream {
            worker,
            producer,
            payload: vec![0x5a; size],
        };
        s.run(1); // wait until the child is up
        s
    }

    /// Puts `n` messages; the time until the child has taken them all.
    fn run(&mut self, n: u64) -> Duration {
        let payload = &self.payload;
        self.worker.start(n);
        let start = Instant::now();
        match &mut self.producer {
            Producer::Spin(ring) => {
                for _ in 0..n {
                    ring.push(payload).expect("push");
                }
            }
            Producer::Bytes(q) => {
                for _ in 0..n {
                    q.put(payload).expect("put");
                }
            }
            Producer::BytesBatched(q) => {
                let batch = vec![payload.as_slice(); GET_MANY];
                let mut left = n;
                while left > 0 {
                    let k = left.min(GET_MANY as u64);
                    q.put_many(&batch[..k as usize]).expect("put_many");
                    left -= k;
                }
            }
            Producer::Typed64(q) => {
                let m = msg64();
                for i in 0..n {
                    q.put(Msg64 { id: i, ..m.clone() }).expect("put");
                }
            }
            Producer::Typed4K(q) => {
                let m = msg4k();
                for _ in 0..n {
                    q.put(m.clone()).expect("put");
                }
            }
            Producer::Pipe(w) => {
                for _ in 0..n {
                    w.write_all(payload).expect("write");
                }
            }
        }
        let ack = self.worker.wait();
        let elapsed = start.elapsed();
        assert_eq!(ack, n);
        elapsed
    }
}

/// This process's ends of a ping-pong.
enum PingEnds {
    Spin { a: SpinRing, b: SpinRing },
    Bytes { a: ByteQueue, b: ByteQueue },
    Pipe { a: File, b: File },
    Futex { pair: FutexPair, seq: u32 },
}

/// A long-lived echo child and this process's ends.
struct PingPong {
    ends: Option<PingEnds>,
    child: Option<Process<()>>,
}

impl PingPong {
    fn spin() -> PingPong {
        let (a, b) = (
            SpinRing::create().expect("SharedMemory"),
            SpinRing::create().expect("SharedMemory"),
        );
        let args = (a.try_clone().expect("clone"), b.try_clone().expect("clone"));
        let child = Process::spawn(spin_echo, args).expect("spawn");
        let ends = PingEnds::Spin {
            a: spin_side(a, 64),
            b: spin_side(b, 64),
        };
        PingPong::started(ends, child)
    }

    fn bytes() -> PingPong {
        let a = ByteQueue::with_capacity(0, CAPACITY).expect("ByteQueue");
        let b = ByteQueue::with_capacity(0, CAPACITY).expect("ByteQueue");
        let args = (a.try_clone().expect("clone"), b.try_clone().expect("clone"));
        let child = Process::spawn(bytes_echo, args).expect("spawn");
        PingPong::started(PingEnds::Bytes { a, b }, child)
    }

    fn pipe() -> PingPong {
        let (child_r, a) = raw_pipe();
        let (b, child_w) = raw_pipe();
        let args = (wrap_fd(child_r.into()), wrap_fd(child_w.into()));
        let child = Process::spawn(pipe_echo, args).expect("spawn");
        PingPong::started(PingEnds::Pipe { a, b }, child)
    }

    fn futex() -> PingPong {
        let shm = FutexPair::create().expect("SharedMemory");
        let child = Process::spawn(futex_echo, shm.try_clone().expect("clone")).expect("spawn");
        let ends = PingEnds::Futex {
            pair: FutexPair::new(shm),
            seq: 0,
        };
        PingPong::started(ends, child)
    }

    fn started(ends: PingEnds, child: Process<()>) -> PingPong {
        pin_child(child.pid());
        let mut p = PingPong {
            ends: Some(ends),
            child: Some(child),
        };
        p.run(1); // wait until the child is up
        p
    }

    /// `n` round trips of a 64-byte message.
    fn run(&mut self, n: u64) -> Duration {
        self.trips(n)
    }

    /// `n` round trips, each after [`IDLE_GAP`] of quiet; the time of the
    /// round trips only.
    fn run_idle(&mut self, n: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..n {
            std::thread::sleep(IDLE_GAP);
            total += self.trips(1);
        }
        total
    }

    fn trips(&mut self, n: u64) -> Duration {
        let msg = [0x5au8; 64];
        let start = Instant::now();
        match self.ends.as_mut().expect("open") {
            PingEnds::Spin { a, b } => {
                let mut buf = [0u8; 64];
                for _ in 0..n {
                    a.push(&msg).expect("push");
                    b.pop(&mut buf).expect("pop");
                }
            }
            PingEnds::Bytes { a, b } => {
                let mut buf = Vec::with_capacity(64);
                for _ in 0..n {
                    a.put(&msg).expect("put");
                    b.get_into(&mut buf).expect("get_into");
                }
                assert_eq!(buf.len(), 64);
            }
            PingEnds::Pipe { a, b } => {
                let mut buf = [0u8; 64];
                for _ in 0..n {
                    a.write_all(&msg).expect("write");
                    b.read_exact(&mut buf).expect("read");
                }
            }
            PingEnds::Futex { pair, seq } => {
                for _ in 0..n {
                    let old = *seq;
                    *seq = if old + 1 == FUTEX_STOP { 1 } else { old + 1 };
                    pair.send(0, *seq);
                    pair.recv(64, old);
                }
            }
        }
        start.elapsed()
    }
}

impl Drop for PingPong {
    fn drop(&mut self) {
        // Tell the child to stop: the stop flag, closing queue A, or end of
        // file on pipe A once our ends are dropped.
        match &self.ends {
            Some(PingEnds::Spin { a, .. }) => a.stop(),
            Some(PingEnds::Bytes { a, .. }) => a.close(),
            Some(PingEnds::Futex { pair, .. }) => pair.send(0, FUTEX_STOP),
            _ => {}
        }
        self.ends = None;
        if let Some(Err(e)) = self.child.take().map(Process::join) {
            eprintln!("benchmark child failed: {e}");
        }
    }
}

/// Producer and consumer children on one `ByteQueue`.
struct Mpmc {
    producers: Vec<Worker>,
    consumers: Vec<Worker>,
}

impl Mpmc {
    fn new(producers: usize, consumers: usize, size: usize) -> Mpmc {
        let q = ByteQueue::with_capacity(0, CAPACITY).expect("ByteQueue");
        let spawn = |f: fn((ByteQueue, Connection, usize))| {
            let theirs = q.try_clone().expect("clone");
            let w = Worker::spawn(f, |ctl| (theirs, ctl, size));
            unpin_child(w.pid());
            w
        };
        let mut m = Mpmc {
            producers: (0..producers).map(|_| spawn(mpmc_producer)).collect(),
            consumers: (0..consumers).map(|_| spawn(mpmc_consumer)).collect(),
        };
        m.run((producers * consumers) as u64); // wait until every child is up
        m
    }

    /// `n` messages, split among the producers and among the consumers; the
    /// time until every consumer has its share.
    fn run(&mut self, n: u64) -> Duration {
        let start = Instant::now();
        for side in [&mut self.producers, &mut self.consumers] {
            let k = side.len() as u64;
            for (i, w) in side.iter_mut().enumerate() {
                w.start(n / k + u64::from((i as u64) < n % k));
            }
        }
        let mut acks = 0;
        for w in self.producers.iter_mut().chain(&mut self.consumers) {
            acks += w.wait();
        }
        let elapsed = start.elapsed();
        assert_eq!(acks, 2 * n);
        elapsed
    }
}

// ---------------------------------------------------------------------------
// Python
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------

fn throughput(c: &mut Criterion, group_id: &str, size: usize, py: &Python) {
    let mut g = c.benchmark_group(group_id);
    g.throughput(Throughput::Elements(1));
    bench_with(&mut g, "spin_ring", || Stream::spin(size), Stream::run);
    for (id, take, batched) in [
        ("mpkit_bytequeue_get", Take::Get, false),
        ("mpkit_bytequeue_get_into", Take::GetInto, false),
        ("mpkit_bytequeue_get_many", Take::GetMany, false),
        ("mpkit_bytequeue_batched", Take::GetMany, true),
    ] {
        let make = || Stream::bytes(size, take, batched);
        bench_with(&mut g, id, make, Stream::run);
    }
    let typed = if size == 64 {
        Stream::typed64
    } else {
        Stream::typed4k
    };
    bench_with(&mut g, "mpkit_queue_typed", typed, Stream::run);
    bench_with(&mut g, "raw_pipe", || Stream::pipe(size), Stream::run);
    let size = size.to_string();
    let args = ["throughput", "--size", &size];
    py.row(&mut g, "py_mp_queue", "mp", &args);
    py.row(&mut g, "py_faster_fifo", "ff", &args);
    g.finish();
}

fn roundtrip(c: &mut Criterion, py: &Python) {
    let mut g = c.benchmark_group("queue_roundtrip_64B");
    g.throughput(Throughput::Elements(1));
    bench_with(&mut g, "spin_ring_pair", PingPong::spin, PingPong::run);
    bench_with(&mut g, "mpkit_bytequeue", PingPong::bytes, PingPong::run);
    bench_with(&mut g, "raw_pipe_pair", PingPong::pipe, PingPong::run);
    py.row(&mut g, "py_mp_queue", "mp", &["latency"]);
    py.row(&mut g, "py_faster_fifo", "ff", &["latency"]);
    g.finish();
    let mut g = c.benchmark_group("queue_roundtrip_idle_64B");
    g.throughput(Throughput::Elements(1));
    bench_with(
        &mut g,
        "mpkit_bytequeue",
        PingPong::bytes,
        PingPong::run_idle,
    );
    bench_with(&mut g, "raw_pipe_pair", PingPong::pipe, PingPong::run_idle);
    bench_with(&mut g, "futex_pair", PingPong::futex, PingPong::run_idle);
    g.finish();
}

fn mpmc(c: &mut Criterion, py: &Python) {
    let mut g = c.benchmark_group("queue_mpmc_64B");
    g.throughput(Throughput::Elements(1));
    for (id, k) in [("mpkit_1x1", 1), ("mpkit_2x2", 2), ("mpkit_4x4", 4)] {
        bench_with(&mut g, id, || Mpmc::new(k, k, 64), Mpmc::run);
    }
    let args = [
        "mpmc",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--size",
        "64",
    ];
    py.row(&mut g, "py_mp_queue_2x2", "mp", &args);
    g.finish();
}

/// Prints whether mpkit met its targets, from this run's estimates.
fn print_targets(since: SystemTime) {
    let dir = criterion_dir();
    let mean = |group, id| fresh_mean(&dir, group, id, since);
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!();
    for (group, label, fraction) in [
        ("queue_throughput_64B", "64 B", TARGET_64),
        ("queue_throughput_4KiB", "4 KiB", TARGET_4K),
    ] {
        let Some(floor) = mean(group, "spin_ring") else {
            continue;
        };
        // Like for like: the ring copies each message into one reused
        // buffer, as `get_into` does (`get` also allocates a `Vec` each).
        let Some(ns) = mean(group, "mpkit_bytequeue_get_into") else {
            continue;
        };
        let limit = 1.0 / fraction;
        let ratio = ns / floor;
        let others: Vec<String> = [
            ("mpkit_bytequeue_get", "put/get"),
            ("mpkit_bytequeue_get_many", "get_many(256)"),
            ("mpkit_bytequeue_batched", "put_many/get_many"),
        ]
        .iter()
        .filter_map(|(id, name)| Some(format!("{name} {:.2}x", mean(group, id)? / floor)))
        .collect();
        println!(
            "target: 1P1C {label} mpkit ByteQueue put/get_into throughput >= {fraction}x the spin ring's \
             (time ratio <= {limit:.2}): {ratio:.2}x its time ({:.2}x its throughput), {}{}",
            floor / ns,
            verdict(ratio <= limit),
            if others.is_empty() {
                String::new()
            } else {
                format!("  [also: {}]", others.join(", "))
            },
        );
    }
    // The equivalent in Python terms: >= 40x multiprocessing.Queue's
    // throughput, with the plain put/get (a new `Vec` per message).
    let group = "queue_throughput_64B";
    if let (Some(ns), Some(py)) = (
        mean(group, "mpkit_bytequeue_get"),
        mean(group, "py_mp_queue"),
    ) {
        println!(
            "target: 1P1C 64 B mpkit ByteQueue put/get throughput >= {TARGET_VS_PYTHON}x Python \
             multiprocessing.Queue's: {:.0}x, {}",
            py / ns,
            verdict(py / ns >= TARGET_VS_PYTHON),
        );
    }
    let group = "queue_roundtrip_idle_64B";
    if let (Some(ns), Some(futex)) = (mean(group, "mpkit_bytequeue"), mean(group, "futex_pair")) {
        println!(
            "target: idle round trip (both sides asleep) no worse than a bare futex pair's: \
             {:.1} µs vs {:.1} µs ({:.2}x), {}",
            ns / 1e3,
            futex / 1e3,
            ns / futex,
            // Within the noise of two wake-ups on these VMs.
            verdict(ns <= futex * 1.1),
        );
    }
    if let Some(ns) = mean("queue_roundtrip_64B", "mpkit_bytequeue") {
        println!(
            "target: busy round trip (64 B, 2x mpkit ByteQueue) <= {:.1} µs: {:.2} µs, {}",
            TARGET_ROUNDTRIP_NS / 1e3,
            ns / 1e3,
            verdict(ns <= TARGET_ROUNDTRIP_NS),
        );
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
    throughput(&mut c, "queue_throughput_64B", 64, &py);
    throughput(&mut c, "queue_throughput_4KiB", 4096, &py);
    roundtrip(&mut c, &py);
    mpmc(&mut c, &py);
    c.final_summary();
    print_ratio_table("queue", GROUPS, since);
    print_targets(since);
}
