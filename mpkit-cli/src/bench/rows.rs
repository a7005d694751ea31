//! The rows of the table: each mechanism, how it starts, and the rows it
//! is compared with.

use super::Result;
use super::mechanisms::{
    Ctx, start_fifo, start_pipe, start_posix, start_queue, start_raw_pipe, start_ring, start_shm,
    start_socket, start_sysv,
};
use super::worker::Bench;

/// How a row's mechanism starts.
pub(super) enum Start {
    Rust(fn(&Ctx) -> Result<Box<dyn Bench>>),
    /// The mechanism's name in `bench_mp.py`.
    Python(&'static str),
}

/// One row of the table.
pub(super) struct Spec {
    pub(super) id: &'static str,
    pub(super) mechanism: &'static str,
    /// `floor`, `mpkit`, `os` (kernel objects through mpkit) or `python`.
    pub(super) family: &'static str,
    /// How a message travels.
    pub(super) how: &'static str,
    /// The Python row this one is compared with.
    pub(super) counterpart: Option<&'static str>,
    pub(super) start: Start,
}

pub(super) const SPECS: &[Spec] = &[
    Spec {
        id: "spin_ring",
        mechanism: "spin-polled shm ring (floor)",
        family: "floor",
        how: "SPSC ring of fixed slots in SharedMemory, both sides busy-polling (1 MiB per ring)",
        counterpart: Some("py_shm"),
        start: Start::Rust(start_ring),
    },
    Spec {
        id: "pipe",
        mechanism: "Pipe (mpkit::pipe)",
        family: "mpkit",
        how: "two pipe(false) Connections: send_bytes / recv_bytes_into",
        counterpart: Some("py_pipe"),
        start: Start::Rust(start_pipe),
    },
    Spec {
        id: "queue",
        mechanism: "Queue (ByteQueue)",
        family: "mpkit",
        how: "two ByteQueue::with_capacity(0, 1 MiB): put / get_into",
        counterpart: Some("py_queue"),
        start: Start::Rust(start_queue),
    },
    Spec {
        id: "shared_memory",
        mechanism: "shared Array + Semaphores",
        family: "mpkit",
        how: "16 slots in a shm Array<u8>, copied under its lock; Semaphores count free and filled slots",
        counterpart: Some("py_shm"),
        start: Start::Rust(start_shm),
    },
    Spec {
        id: "unix_socket",
        mechanism: "Unix socket Connection",
        family: "mpkit",
        how: "net::Listener / Client on a socket file: send_bytes / recv_bytes_into",
        counterpart: Some("py_socket"),
        start: Start::Rust(start_socket),
    },
    Spec {
        id: "fifo",
        mechanism: "FIFO (os::Fifo)",
        family: "os",
        how: "two named pipes: write_all / read_exact of the fixed size",
        counterpart: Some("py_pipe"),
        start: Start::Rust(start_fifo),
    },
    Spec {
        id: "sysv_mq",
        mechanism: "System V message queue",
        family: "os",
        how: "two private msgq::SysvQueue: send(1, …) / recv(Selector::Any)",
        counterpart: Some("py_queue"),
        start: Start::Rust(start_sysv),
    },
    Spec {
        id: "posix_mq",
        mechanism: "POSIX message queue",
        family: "os",
        how: "two msgq::PosixQueue (10 x 4 KiB): send / recv",
        counterpart: Some("py_queue"),
        start: Start::Rust(start_posix),
    },
    Spec {
        id: "raw_pipe",
        mechanism: "raw pipe (os::pipe)",
        family: "os",
        how: "two os::pipe(): write_all / read_exact of the fixed size, no framing",
        counterpart: Some("py_pipe"),
        start: Start::Rust(start_raw_pipe),
    },
    Spec {
        id: "py_pipe",
        mechanism: "Python Pipe(duplex=False)",
        family: "python",
        how: "two multiprocessing.Pipe(duplex=False): send_bytes / recv_bytes",
        counterpart: None,
        start: Start::Python("pipe"),
    },
    Spec {
        id: "py_queue",
        mechanism: "Python multiprocessing.Queue",
        family: "python",
        how: "two multiprocessing.Queue: put / get of bytes",
        counterpart: None,
        start: Start::Python("queue"),
    },
    Spec {
        id: "py_shm",
        mechanism: "Python Array + Semaphores",
        family: "python",
        how: "16 slots in an Array('B'), copied under its lock; Semaphores count free and filled slots",
        counterpart: None,
        start: Start::Python("shm"),
    },
    Spec {
        id: "py_socket",
        mechanism: "Python Listener/Client (AF_UNIX)",
        family: "python",
        how: "multiprocessing.connection Listener / Client: send_bytes / recv_bytes",
        counterpart: None,
        start: Start::Python("socket"),
    },
];

/// The three mechanisms ranked against each other (once mpkit's, once
/// Python's): (label, mpkit row, Python row).
pub(super) const RANKED: [(&str, &str, &str); 3] = [
    ("pipe", "pipe", "py_pipe"),
    ("queue", "queue", "py_queue"),
    ("shared memory", "shared_memory", "py_shm"),
];
