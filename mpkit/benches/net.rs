//! Authenticated connections over a Unix socket: mpkit's Listener/Client
//! against Python's own `multiprocessing.connection` pair, in one run.
//!
//! ```text
//! cargo bench -p mpkit --bench net
//! ```
//!
//! - `roundtrip_unix_64B`: 64-byte ping-pong over an authenticated
//!   connection (time per round trip);
//! - `connect_auth`: connect, run the two-way HMAC handshake, close (time
//!   per connection).

use std::time::{Duration, Instant, SystemTime};

use criterion::Criterion;
use mpkit::codec::Pickle;
use mpkit::net::{Client, Listener};
use mpkit::{Connection, Process};
use mpkit_bench::harness::{self, Group, Unit, bench_with, print_ratio_table, row};
use mpkit_bench::python::{NET_SCRIPT as PY_SCRIPT, PyBench, find_python};

const KEY: &[u8] = b"bench key";

const GROUPS: &[Group] = &[
    Group {
        id: "roundtrip_unix_64B",
        title: "64 B round trip over an authenticated Unix socket connection (time per round trip)",
        unit: Unit::RoundTrip,
        rows: &[
            row("mpkit_bytes", "mpkit send_bytes/recv_bytes", &["py_bytes"]),
            row(
                "mpkit_pickle",
                "mpkit Pickle codec send/recv",
                &["py_pickle"],
            ),
            row("py_bytes", "python Connection send_bytes/recv_bytes", &[]),
            row("py_pickle", "python Connection send/recv (pickle)", &[]),
        ],
    },
    Group {
        id: "connect_auth",
        title: "connect + two-way HMAC handshake + close, Unix socket (time per connection)",
        unit: Unit::RoundTrip,
        rows: &[
            row("mpkit_connect", "mpkit Client::connect", &["py_connect"]),
            row("py_connect", "python Client()", &[]),
        ],
    },
];

/// A private directory for the socket file, removed on drop.
struct Dir(std::path::PathBuf);

impl Dir {
    fn new() -> Dir {
        let d = std::env::temp_dir().join(format!(
            "mpkit-bench-net-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        std::fs::create_dir_all(&d).expect("temp dir");
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The child: connects and echoes every message until the parent hangs up.
fn echo((address, pickle): (String, bool)) {
    let conn = Client::connect(&address, Some(KEY)).expect("connect");
    if pickle {
        let mut c = conn.with_codec::<Pickle>();
        while let Ok(m) = c.recv::<Vec<u8>>() {
            c.send(&m).expect("echo");
        }
    } else {
        let mut c = conn;
        while let Ok(m) = c.recv_bytes() {
            c.send_bytes(&m).expect("echo");
        }
    }
}

/// Our end of the connection, with the codec the row measures.
enum End {
    Bytes(Connection),
    Pickle(Connection<Pickle>),
}

/// An echoing child connected to our listener.
struct Echo {
    end: Option<End>,
    child: Option<Process<()>>,
    _dir: Dir,
}

impl Echo {
    fn start(pickle: bool) -> Echo {
        let dir = Dir::new();
        let address = dir.0.join("s").to_string_lossy().into_owned();
        let listener = Listener::bind(&address, Some(KEY)).expect("bind");
        let child = Process::spawn(echo, (address, pickle)).expect("spawn");
        let conn = listener
            .accept_timeout(Duration::from_secs(30))
            .expect("accept");
        let end = if pickle {
            End::Pickle(conn.with_codec())
        } else {
            End::Bytes(conn)
        };
        Echo {
            end: Some(end),
            child: Some(child),
            _dir: dir,
        }
    }

    fn run(&mut self, n: u64) -> Duration {
        let msg = vec![7u8; 64];
        let start = Instant::now();
        match self.end.as_mut().expect("connected") {
            End::Bytes(c) => {
                for _ in 0..n {
                    c.send_bytes(&msg).expect("send");
                    c.recv_bytes().expect("recv");
                }
            }
            End::Pickle(c) => {
                for _ in 0..n {
                    c.send(&msg).expect("send");
                    let _: Vec<u8> = c.recv().expect("recv");
                }
            }
        }
        start.elapsed()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.end = None; // hang up: the child's loop ends
        if let Some(child) = self.child.take() {
            let _ = child.join();
        }
    }
}

/// A child that accepts and closes connections forever (until killed).
fn acceptor((address, mut ready): (String, Connection)) {
    let listener = Listener::bind(&address, Some(KEY)).expect("bind");
    ready.send(&()).expect("ready");
    loop {
        let _ = listener.accept();
    }
}

struct Connector {
    address: String,
    child: Process<()>,
    _dir: Dir,
}

impl Connector {
    fn start() -> Connector {
        let dir = Dir::new();
        let address = dir.0.join("s").to_string_lossy().into_owned();
        let (mut here, there) = mpkit::pipe(true).expect("pipe");
        let child = Process::spawn(acceptor, (address.clone(), there)).expect("spawn");
        here.recv::<()>().expect("acceptor ready");
        Connector {
            address,
            child,
            _dir: dir,
        }
    }

    fn run(&mut self, n: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            drop(Client::connect(&self.address, Some(KEY)).expect("connect"));
        }
        start.elapsed()
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn main() {
    let since = SystemTime::now();
    let python = find_python(PY_SCRIPT);
    if let Err(why) = &python {
        println!("skipping Python rows: {why}");
    }
    let mut c: Criterion = harness::criterion();
    {
        let mut g = c.benchmark_group("roundtrip_unix_64B");
        bench_with(&mut g, "mpkit_bytes", || Echo::start(false), Echo::run);
        bench_with(&mut g, "mpkit_pickle", || Echo::start(true), Echo::run);
        if let Ok(py) = &python {
            bench_with(
                &mut g,
                "py_bytes",
                || PyBench::start(py, PY_SCRIPT, &["bytes"]),
                PyBench::run,
            );
            bench_with(
                &mut g,
                "py_pickle",
                || PyBench::start(py, PY_SCRIPT, &["pickle"]),
                PyBench::run,
            );
        }
        g.finish();
    }
    {
        let mut g = c.benchmark_group("connect_auth");
        bench_with(&mut g, "mpkit_connect", Connector::start, Connector::run);
        if let Ok(py) = &python {
            bench_with(
                &mut g,
                "py_connect",
                || PyBench::start(py, PY_SCRIPT, &["connect"]),
                PyBench::run,
            );
        }
        g.finish();
    }
    c.final_summary();
    print_ratio_table("net", GROUPS, since);
}
