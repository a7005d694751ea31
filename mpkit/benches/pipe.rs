//! Pipes between two real processes: mpkit against raw OS pipes and Unix
//! socket pairs, and against Python's `multiprocessing`.
//!
//! Run with `cargo bench -p mpkit --bench pipe` (criterion's arguments pass
//! through: `-- --quick`, `-- throughput_64B`, …). After criterion, a ratio
//! table compares every row with its baselines, from the estimates criterion
//! saved in this run.
//!
//! Groups (one iteration is one message, one round trip or one child):
//! - `throughput_64B`, `throughput_4KiB`: one-way messages from this process
//!   to a long-lived child. Each measured batch: the child is told the count
//!   over a control connection, the clock starts, the batch is sent, the
//!   clock stops at the child's acknowledgement.
//! - `latency_64B`: ping-pong of a 64-byte message with a long-lived echo
//!   child.
//! - `spawn_join`: start a child that runs an empty function, and join it.
//!
//! Python rows run `mpkit-bench/python/mp_bench.py`, kept running for the whole
//! benchmark function; it reports its own elapsed time, which is what
//! criterion records (`iter_custom`). Without a working `python3` (or the
//! interpreter named by `MPKIT_BENCH_PYTHON`), those rows are skipped.
//!
//! Where the two processes run matters a lot for latency (on some VMs a
//! wake-up across CPUs costs tens of µs, a switch on one CPU a few), and the
//! scheduler decides it differently from run to run. `MPKIT_BENCH_CPUS=P,C`
//! pins this process (and the Python sender/pinger) to CPU `P` and every
//! long-lived child to CPU `C` (`0,0`: same CPU, `0,1`: two CPUs), for
//! reproducible comparisons. Unset, nothing is pinned.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, SamplingMode, Throughput};
use mpkit::{Connection, Process};
use mpkit_bench::harness::{self, Group, Row, Unit, bench_with, cpus, pin, print_ratio_table, row};
use mpkit_bench::python::{PIPE_SCRIPT as PY_SCRIPT, PyBench, find_python};
use mpkit_bench::raw::{raw_pipe, unwrap_fd, wrap_fd};

// ---------------------------------------------------------------------------
// Rows: what the ratio table prints
// ---------------------------------------------------------------------------

const THROUGHPUT_ROWS: &[Row] = &[
    row(
        "mpkit_pipe_false_bytes",
        "mpkit pipe(false) send_bytes",
        &["raw_pipe", "py_pipe_oneway_bytes"],
    ),
    row(
        "mpkit_pipe_false_typed",
        "mpkit pipe(false) send(&Vec<u8>)",
        &["raw_pipe", "py_pipe_oneway_obj"],
    ),
    row(
        "mpkit_pipe_true_bytes",
        "mpkit pipe(true) send_bytes",
        &["raw_socketpair", "py_pipe_duplex_bytes"],
    ),
    row(
        "mpkit_pipe_true_typed",
        "mpkit pipe(true) send(&Vec<u8>)",
        &["raw_socketpair", "py_pipe_duplex_obj"],
    ),
    row("raw_pipe", "raw pipe", &[]),
    row("raw_socketpair", "raw socketpair", &[]),
    row(
        "py_pipe_oneway_bytes",
        "python Pipe(duplex=False) send_bytes",
        &["raw_pipe"],
    ),
    row(
        "py_pipe_oneway_obj",
        "python Pipe(duplex=False) send(bytes)",
        &["raw_pipe"],
    ),
    row(
        "py_pipe_duplex_bytes",
        "python Pipe() send_bytes",
        &["raw_socketpair"],
    ),
    row(
        "py_pipe_duplex_obj",
        "python Pipe() send(bytes)",
        &["raw_socketpair"],
    ),
];

const LATENCY_ROWS: &[Row] = &[
    row(
        "mpkit_pipe_true",
        "mpkit pipe(true)",
        &["raw_socketpair", "py_pipe_duplex"],
    ),
    row(
        "mpkit_two_pipe_false",
        "mpkit 2x pipe(false)",
        &["raw_pipe_pair", "py_two_pipe_oneway"],
    ),
    row("raw_pipe_pair", "raw pipe pair", &[]),
    row("raw_socketpair", "raw socketpair", &[]),
    row("py_pipe_duplex", "python Pipe()", &["raw_socketpair"]),
    row(
        "py_two_pipe_oneway",
        "python 2x Pipe(duplex=False)",
        &["raw_pipe_pair"],
    ),
];

const SPAWN_ROWS: &[Row] = &[
    row(
        "mpkit_process",
        "mpkit Process::spawn + join",
        &["py_spawn", "py_fork"],
    ),
    row("py_spawn", "python Process 'spawn' start+join", &[]),
    row("py_fork", "python Process 'fork' start+join", &[]),
];

const GROUPS: &[Group] = &[
    Group {
        id: "throughput_64B",
        title: "throughput, 64 B messages, one-way (time per message)",
        unit: Unit::Message,
        rows: THROUGHPUT_ROWS,
    },
    Group {
        id: "throughput_4KiB",
        title: "throughput, 4 KiB messages, one-way (time per message)",
        unit: Unit::Message,
        rows: THROUGHPUT_ROWS,
    },
    Group {
        id: "latency_64B",
        title: "latency, 64 B ping-pong (time per round trip)",
        unit: Unit::RoundTrip,
        rows: LATENCY_ROWS,
    },
    Group {
        id: "spawn_join",
        title: "spawn + join of an empty function (time per child)",
        unit: Unit::Child,
        rows: SPAWN_ROWS,
    },
];

// ---------------------------------------------------------------------------
// Optional CPU pinning
// ---------------------------------------------------------------------------

/// Pins a long-lived child to the child CPU, when pinning is asked for.
fn pin_child(pid: i32) {
    if let Some((_, cpu)) = cpus() {
        pin(pid, cpu);
    }
}

// ---------------------------------------------------------------------------
// Child functions (they run in a re-executed copy of this binary)
// ---------------------------------------------------------------------------

/// Receives batches of `size`-byte messages; each batch's count comes over
/// `ctl`, and the count goes back when the batch has arrived.
fn mpkit_sink((mut data, mut ctl, size, typed): (Connection, Connection, usize, bool)) {
    let mut buf = vec![0u8; size];
    while let Ok(n) = ctl.recv::<u64>() {
        for _ in 0..n {
            if typed {
                let v: Vec<u8> = data.recv().expect("typed recv");
                assert_eq!(v.len(), size);
            } else {
                let len = data.recv_bytes_into(&mut buf).expect("recv_bytes_into");
                assert_eq!(len, size);
            }
        }
        ctl.send(&n).expect("ack");
    }
}

/// Like [`mpkit_sink`] over a raw descriptor: `read_exact` of `size` bytes
/// per message.
fn raw_sink((data, mut ctl, size, socket): (Connection, Connection, usize, bool)) {
    let fd = unwrap_fd(data);
    let mut reader: Box<dyn Read> = if socket {
        Box::new(UnixStream::from(fd))
    } else {
        Box::new(File::from(fd))
    };
    let mut buf = vec![0u8; size];
    while let Ok(n) = ctl.recv::<u64>() {
        for _ in 0..n {
            reader.read_exact(&mut buf).expect("read_exact");
        }
        ctl.send(&n).expect("ack");
    }
}

/// Sends every message back (over `tx`, or over `rx` when it is duplex)
/// until end of file.
fn mpkit_echo((mut rx, mut tx): (Connection, Option<Connection>)) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match rx.recv_bytes_into(&mut buf) {
            Ok(n) => n,
            Err(e) if e.is_eof() => return,
            Err(e) => panic!("echo recv: {e}"),
        };
        match tx.as_mut() {
            Some(tx) => tx.send_bytes(&buf[..n]),
            None => rx.send_bytes(&buf[..n]),
        }
        .expect("echo send");
    }
}

/// Echoes fixed 64-byte messages over raw descriptors until end of file.
fn raw_echo((rx, tx, socket): (Connection, Option<Connection>, bool)) {
    let rx = unwrap_fd(rx);
    let (mut r, mut w): (Box<dyn Read>, Box<dyn Write>) = match (socket, tx) {
        (true, _) => {
            let s = UnixStream::from(rx);
            (Box::new(s.try_clone().expect("clone")), Box::new(s))
        }
        (false, Some(tx)) => (
            Box::new(File::from(rx)),
            Box::new(File::from(unwrap_fd(tx))),
        ),
        (false, None) => panic!("a raw pipe echo needs two pipes"),
    };
    let mut buf = [0u8; 64];
    loop {
        match r.read_exact(&mut buf) {
            Ok(()) => w.write_all(&buf).expect("echo write"),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return,
            Err(e) => panic!("echo read: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Parent sides
// ---------------------------------------------------------------------------

/// What the parent writes messages into.
enum Sender {
    Mpkit { conn: Connection, typed: bool },
    Raw(Box<dyn Write>),
}

/// A long-lived child receiving batches, and how to feed it.
struct Sink {
    data: Option<Sender>,
    ctl: Option<Connection>,
    child: Option<Process<()>>,
    payload: Vec<u8>,
}

impl Sink {
    fn mpkit(duplex: bool, size: usize, typed: bool) -> Sink {
        let (theirs, mine) = if duplex {
            mpkit::pipe(true).expect("pipe")
        } else {
            mpkit::pipe(false).expect("pipe") // (receiving end, sending end)
        };
        let (ctl, ctl_child) = mpkit::pipe(true).expect("pipe");
        let child = Process::spawn(mpkit_sink, (theirs, ctl_child, size, typed)).expect("spawn");
        Sink::started(Sender::Mpkit { conn: mine, typed }, ctl, child, size)
    }

    fn raw(socket: bool, size: usize) -> Sink {
        let (theirs, mine): (OwnedFd, Box<dyn Write>) = if socket {
            let (a, b) = UnixStream::pair().expect("socketpair");
            (b.into(), Box::new(a))
        } else {
            let (r, w) = raw_pipe();
            (r.into(), Box::new(w))
        };
        let (ctl, ctl_child) = mpkit::pipe(true).expect("pipe");
        let child =
            Process::spawn(raw_sink, (wrap_fd(theirs), ctl_child, size, socket)).expect("spawn");
        Sink::started(Sender::Raw(mine), ctl, child, size)
    }

    fn started(data: Sender, ctl: Connection, child: Process<()>, size: usize) -> Sink {
        pin_child(child.pid());
        let mut sink = Sink {
            data: Some(data),
            ctl: Some(ctl),
            child: Some(child),
            payload: vec![0x5a; size],
        };
        sink.run(1); // wait until the child is up
        sink
    }

    /// Sends `n` messages; the time until the child has them all.
    fn run(&mut self, n: u64) -> Duration {
        let ctl = self.ctl.as_mut().expect("open");
        let payload = &self.payload;
        ctl.send(&n).expect("count");
        let start = Instant::now();
        match self.data.as_mut().expect("open") {
            Sender::Mpkit { conn, typed: false } => {
                for _ in 0..n {
                    conn.send_bytes(payload).expect("send_bytes");
                }
            }
            Sender::Mpkit { conn, typed: true } => {
                for _ in 0..n {
                    conn.send(payload).expect("send");
                }
            }
            Sender::Raw(w) => {
                for _ in 0..n {
                    w.write_all(payload).expect("write");
                }
            }
        }
        let ack: u64 = ctl.recv().expect("ack");
        let elapsed = start.elapsed();
        assert_eq!(ack, n);
        elapsed
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.ctl = None; // the child's next recv is end of file: it returns
        self.data = None;
        if let Some(child) = self.child.take() {
            if let Err(e) = child.join() {
                eprintln!("benchmark child failed: {e}");
            }
        }
    }
}

/// The parent's ends of a ping-pong.
#[expect(
    clippy::large_enum_variant,
    reason = "one value per benchmark function"
)]
enum Pinger {
    Mpkit {
        rx: Connection,
        tx: Option<Connection>,
    },
    Raw {
        r: Box<dyn Read>,
        w: Box<dyn Write>,
    },
}

/// A long-lived echo child.
struct Echo {
    ends: Option<Pinger>,
    child: Option<Process<()>>,
}

impl Echo {
    fn mpkit_duplex() -> Echo {
        let (mine, theirs) = mpkit::pipe(true).expect("pipe");
        let child = Process::spawn(mpkit_echo, (theirs, None)).expect("spawn");
        Echo::started(Pinger::Mpkit { rx: mine, tx: None }, child)
    }

    fn mpkit_two_oneway() -> Echo {
        let (child_rx, tx) = mpkit::pipe(false).expect("pipe");
        let (rx, child_tx) = mpkit::pipe(false).expect("pipe");
        let child = Process::spawn(mpkit_echo, (child_rx, Some(child_tx))).expect("spawn");
        Echo::started(Pinger::Mpkit { rx, tx: Some(tx) }, child)
    }

    fn raw_socketpair() -> Echo {
        let (mine, theirs) = UnixStream::pair().expect("socketpair");
        let child = Process::spawn(raw_echo, (wrap_fd(theirs.into()), None, true)).expect("spawn");
        let r = mine.try_clone().expect("clone");
        Echo::started(
            Pinger::Raw {
                r: Box::new(r),
                w: Box::new(mine),
            },
            child,
        )
    }

    fn raw_pipe_pair() -> Echo {
        let (child_r, w) = raw_pipe();
        let (r, child_w) = raw_pipe();
        let args = (
            wrap_fd(child_r.into()),
            Some(wrap_fd(child_w.into())),
            false,
        );
        let child = Process::spawn(raw_echo, args).expect("spawn");
        Echo::started(
            Pinger::Raw {
                r: Box::new(r),
                w: Box::new(w),
            },
            child,
        )
    }

    fn started(ends: Pinger, child: Process<()>) -> Echo {
        pin_child(child.pid());
        let mut echo = Echo {
            ends: Some(ends),
            child: Some(child),
        };
        echo.run(1); // wait until the child is up
        echo
    }

    /// `n` round trips of a 64-byte message.
    fn run(&mut self, n: u64) -> Duration {
        let msg = [0x5au8; 64];
        let mut buf = [0u8; 64];
        let start = Instant::now();
        match self.ends.as_mut().expect("open") {
            Pinger::Mpkit { rx, tx } => {
                for _ in 0..n {
                    match tx.as_mut() {
                        Some(tx) => tx.send_bytes(&msg),
                        None => rx.send_bytes(&msg),
                    }
                    .expect("send");
                    let len = rx.recv_bytes_into(&mut buf).expect("recv");
                    assert_eq!(len, 64);
                }
            }
            Pinger::Raw { r, w } => {
                for _ in 0..n {
                    w.write_all(&msg).expect("write");
                    r.read_exact(&mut buf).expect("read");
                }
            }
        }
        start.elapsed()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.ends = None; // end of file for the child
        if let Some(child) = self.child.take() {
            if let Err(e) = child.join() {
                eprintln!("benchmark child failed: {e}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Python
// ---------------------------------------------------------------------------

/// Starts `mp_bench.py` with `args` (and the child CPU, when pinning).
fn py_bench(python: &str, args: &[&str]) -> PyBench {
    let cpu = cpus().map(|(_, cpu)| cpu.to_string());
    let mut args = args.to_vec();
    if let Some(cpu) = &cpu {
        // The script itself inherits this process's CPU; it pins its
        // children to the child CPU.
        args.extend(["--child-cpu", cpu]);
    }
    PyBench::start(python, PY_SCRIPT, &args)
}

// ---------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------

fn throughput(c: &mut Criterion, group_id: &str, size: usize, python: &Result<String, String>) {
    let mut g = c.benchmark_group(group_id);
    g.throughput(Throughput::Elements(1));
    for (id, duplex, typed) in [
        ("mpkit_pipe_false_bytes", false, false),
        ("mpkit_pipe_false_typed", false, true),
        ("mpkit_pipe_true_bytes", true, false),
        ("mpkit_pipe_true_typed", true, true),
    ] {
        bench_with(&mut g, id, || Sink::mpkit(duplex, size, typed), Sink::run);
    }
    bench_with(&mut g, "raw_pipe", || Sink::raw(false, size), Sink::run);
    bench_with(
        &mut g,
        "raw_socketpair",
        || Sink::raw(true, size),
        Sink::run,
    );
    if let Ok(py) = python {
        let size = size.to_string();
        for (id, duplex, api) in [
            ("py_pipe_oneway_bytes", "0", "bytes"),
            ("py_pipe_oneway_obj", "0", "obj"),
            ("py_pipe_duplex_bytes", "1", "bytes"),
            ("py_pipe_duplex_obj", "1", "obj"),
        ] {
            let args = [
                "throughput",
                "--duplex",
                duplex,
                "--size",
                &size,
                "--api",
                api,
            ];
            bench_with(&mut g, id, || py_bench(py, &args), PyBench::run);
        }
    }
    g.finish();
}

fn latency(c: &mut Criterion, python: &Result<String, String>) {
    let mut g = c.benchmark_group("latency_64B");
    g.throughput(Throughput::Elements(1));
    bench_with(&mut g, "mpkit_pipe_true", Echo::mpkit_duplex, Echo::run);
    bench_with(
        &mut g,
        "mpkit_two_pipe_false",
        Echo::mpkit_two_oneway,
        Echo::run,
    );
    bench_with(&mut g, "raw_pipe_pair", Echo::raw_pipe_pair, Echo::run);
    bench_with(&mut g, "raw_socketpair", Echo::raw_socketpair, Echo::run);
    if let Ok(py) = python {
        for (id, duplex) in [("py_pipe_duplex", "1"), ("py_two_pipe_oneway", "0")] {
            let args = ["latency", "--duplex", duplex, "--size", "64"];
            bench_with(&mut g, id, || py_bench(py, &args), PyBench::run);
        }
    }
    g.finish();
}

fn spawn_join(c: &mut Criterion, python: &Result<String, String>) {
    let mut g = c.benchmark_group("spawn_join");
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("mpkit_process", |b| {
        b.iter_custom(|n| {
            let start = Instant::now();
            for _ in 0..n {
                Process::spawn(|(): ()| (), ())
                    .expect("spawn")
                    .join()
                    .expect("join");
            }
            start.elapsed()
        });
    });
    if let Ok(py) = python {
        for (id, method) in [("py_spawn", "spawn"), ("py_fork", "fork")] {
            let args = ["spawn", "--method", method];
            bench_with(&mut g, id, || py_bench(py, &args), PyBench::run);
        }
    }
    g.finish();
}

fn main() {
    let since = SystemTime::now();
    if let Some((parent, child)) = cpus() {
        pin(0, parent);
        println!(
            "pinned: this process (and Python senders) to CPU {parent}, long-lived children to CPU {child}"
        );
    }
    let python = find_python(PY_SCRIPT);
    if let Err(why) = &python {
        println!("skipping Python rows: {why}");
    }
    let mut c = harness::criterion();
    throughput(&mut c, "throughput_64B", 64, &python);
    throughput(&mut c, "throughput_4KiB", 4096, &python);
    latency(&mut c, &python);
    spawn_join(&mut c, &python);
    c.final_summary();
    print_ratio_table("pipe", GROUPS, since);
}
