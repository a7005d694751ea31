//! `queue_throughput_64B` and `queue_throughput_4KiB`: one producer (this
//! process) and one long-lived consumer child.

use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use mpkit::Connection;
use mpkit::codec::{Codec, Postcard};
use mpkit::queue::{ByteQueue, Queue};
use mpkit::shm::SharedMemory;
use mpkit_bench::harness::{Row, bench_with, row};
use mpkit_bench::raw::{raw_pipe, unwrap_fd, wrap_fd};
use mpkit_bench::ring::SpinRing;
use serde::{Deserialize, Serialize};

use crate::{CAPACITY, GET_MANY, Python, Worker, pin_child, serve, spin_side};

pub const THROUGHPUT_64_ROWS: &[Row] = &[
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

pub const THROUGHPUT_4K_ROWS: &[Row] = &[
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

/// The typed 64-byte message.
#[derive(Clone, Serialize, Deserialize)]
pub struct Msg64 {
    id: u64,
    body: [u64; 7],
}

/// The typed 4 KiB message.
#[derive(Clone, Serialize, Deserialize)]
pub struct Msg4K {
    id: u64,
    body: Vec<u64>,
}

/// Full-range values (most take 9 or 10 bytes as postcard varints).
fn filler(i: usize) -> u64 {
    (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

pub fn msg64() -> Msg64 {
    Msg64 {
        id: 1,
        body: std::array::from_fn(filler),
    }
}

pub fn msg4k() -> Msg4K {
    Msg4K {
        id: 1,
        body: (0..512).map(filler).collect(),
    }
}

pub fn encoded_len<T: Serialize>(v: &T) -> usize {
    let mut out = Vec::new();
    Postcard::encode(v, &mut out).expect("encode");
    out.len()
}

// Child functions (they run in a re-executed copy of this binary).

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

// Parent sides.

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

pub fn bench(c: &mut Criterion, group_id: &str, size: usize, py: &Python) {
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
