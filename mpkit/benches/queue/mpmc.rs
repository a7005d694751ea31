//! `queue_mpmc_64B`: producer and consumer children on one `ByteQueue`.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use mpkit::Connection;
use mpkit::queue::ByteQueue;
use mpkit_bench::harness::{Row, bench_with, row};

use crate::{CAPACITY, Python, Worker, serve, unpin_child};

pub const MPMC_ROWS: &[Row] = &[
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

// Child functions (they run in a re-executed copy of this binary).

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

// Parent sides.

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

pub fn bench(c: &mut Criterion, py: &Python) {
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
