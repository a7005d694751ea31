//! The Redis-stream queue against `redis-benchmark`'s raw rate on the same
//! server, and against the shared-memory queue, in one run (items of
//! 64 bytes; batches of 1000 for mpkit):
//!
//! ```text
//! scripts/redis-server && cargo bench -p mpkit --features redis --bench redis_queue
//! ```
//!
//! - raw `XADD`: `redis-benchmark` with 64 commands pipelined (its best
//!   case: no consumer group, no script);
//! - raw `XREADGROUP COUNT 1`: the same, one entry a call;
//! - mpkit `put_many`: batches of 1000 (one Lua script each);
//! - mpkit `get_many` + `task_done_many`: batches of 1000 (a take script
//!   and an ack script each);
//! - the shared-memory `JoinableQueue`'s `put_many` and
//!   `get_many` + `task_done`, same items.
//!
//! Starts its own `redis-server` (no persistence) on a free loopback port
//! and stops it at the end.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mpkit::queue::JoinableQueue;
use mpkit::redis_queue::RedisQueue;

const ITEMS: usize = 200_000;
const BATCH: usize = 1000;
const PAYLOAD: [u8; 64] = [b'x'; 64];

struct Server(std::process::Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server() -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--logfile", ""])
        .arg("--dir")
        .arg(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (run scripts/redis-server to install it)");
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = out.lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("Ready to accept connections") {
            break;
        }
    }
    // Keep draining the log so the server never blocks on it.
    std::thread::spawn(move || lines.for_each(drop));
    Server(child, port)
}

/// `redis-benchmark`'s requests per second for one command.
fn redis_benchmark(port: u16, args: &[&str]) -> f64 {
    let out = Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-q", "-n", &ITEMS.to_string()])
        .args(["-P", "64", "-c", "1"])
        .args(args)
        .output()
        .expect("redis-benchmark (from the redis-tools package)");
    let text = String::from_utf8_lossy(&out.stdout);
    // "XADD ...: 123456.79 requests per second, p50=..."; the progress
    // lines before it end in '\r'.
    let last = text.rsplit('\r').next().unwrap_or("");
    last.split(": ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("could not read redis-benchmark's output: {text:?}"))
}

fn rate(items: usize, took: Duration) -> f64 {
    items as f64 / took.as_secs_f64()
}

fn main() {
    // `cargo test --benches` runs this with `--bench` absent: do nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let server = start_server();
    let url = format!("redis://127.0.0.1:{}", server.1);
    let payload = String::from_utf8(PAYLOAD.to_vec()).unwrap();

    let raw_xadd = redis_benchmark(server.1, &["XADD", "bench:raw", "*", "v", &payload]);
    let raw_read = {
        let q: RedisQueue<Vec<u8>> = RedisQueue::open(&url, "rawread").unwrap();
        let items: Vec<Vec<u8>> = (0..ITEMS).map(|_| PAYLOAD.to_vec()).collect();
        q.put_many(items).unwrap();
        let stream = q.stream_key().to_string();
        redis_benchmark(
            server.1,
            &[
                "XREADGROUP",
                "GROUP",
                "mpkit",
                "bench",
                "COUNT",
                "1",
                "STREAMS",
                &stream,
                ">",
            ],
        )
    };

    let q: RedisQueue<Vec<u8>> = RedisQueue::open(&url, "bench").unwrap();
    let items = || (0..BATCH).map(|_| PAYLOAD.to_vec()).collect::<Vec<_>>();
    let start = Instant::now();
    for _ in 0..ITEMS / BATCH {
        q.put_many(items()).unwrap();
    }
    let put = rate(ITEMS, start.elapsed());
    let start = Instant::now();
    let mut got = 0;
    while got < ITEMS {
        let batch = q.get_many(BATCH).unwrap();
        q.task_done_many(batch.len()).unwrap();
        got += batch.len();
    }
    let get = rate(ITEMS, start.elapsed());
    q.join_timeout(Duration::from_secs(10)).unwrap();

    let shm: JoinableQueue<Vec<u8>> = JoinableQueue::with_capacity(0, 1 << 26).unwrap();
    let start = Instant::now();
    for _ in 0..ITEMS / BATCH {
        shm.put_many(items()).unwrap();
    }
    let shm_put = rate(ITEMS, start.elapsed());
    let start = Instant::now();
    let mut got = 0;
    while got < ITEMS {
        let batch = shm.get_many(BATCH).unwrap();
        for _ in 0..batch.len() {
            shm.task_done().unwrap();
        }
        got += batch.len();
    }
    let shm_get = rate(ITEMS, start.elapsed());

    println!(
        "Redis queue, {ITEMS} items of 64 B, batches of {BATCH} (items/s; ratio to the baseline)"
    );
    println!("| what | items/s | ratio |");
    println!("|---|---|---|");
    println!("| redis-benchmark XADD, 64 pipelined | {raw_xadd:.0} | baseline |");
    println!("| redis-benchmark XREADGROUP COUNT 1, 64 pipelined | {raw_read:.0} | baseline |");
    println!(
        "| RedisQueue put_many | {put:.0} | {:.2}x raw XADD, {:.4}x shm put_many |",
        put / raw_xadd,
        put / shm_put
    );
    println!(
        "| RedisQueue get_many + task_done_many | {get:.0} | {:.2}x raw XREADGROUP, {:.4}x shm get_many |",
        get / raw_read,
        get / shm_get
    );
    println!("| shm JoinableQueue put_many | {shm_put:.0} | |");
    println!("| shm JoinableQueue get_many + task_done | {shm_get:.0} | |");
}
