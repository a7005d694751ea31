//! `queue_roundtrip_64B` and `queue_roundtrip_idle_64B`: ping-pong with a
//! long-lived echo child over two one-way channels.

use std::fs::File;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use mpkit::queue::{ByteQueue, GetError};
use mpkit::shm::SharedMemory;
use mpkit::{Connection, Process};
use mpkit_bench::harness::{Row, bench_with, row};
use mpkit_bench::raw::{FUTEX_STOP, FutexPair, raw_pipe, unwrap_fd, wrap_fd};
use mpkit_bench::ring::{RingError, SpinRing};

use crate::{CAPACITY, Python, pin_child, spin_side};

pub const ROUNDTRIP_ROWS: &[Row] = &[
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

pub const IDLE_ROWS: &[Row] = &[
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
pub const IDLE_GAP: Duration = Duration::from_micros(300);

// Child functions (they run in a re-executed copy of this binary).

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

// Parent sides.

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

pub fn bench(c: &mut Criterion, py: &Python) {
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
