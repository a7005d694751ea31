//! The tour's last section: a pool whose workers could be on any host,
//! through Redis, with a worker killed mid-task (when `redis-server` is
//! installed).

use std::error::Error;
use std::path::Path;
use std::time::{Duration, Instant};

use mpkit::Process;
use mpkit::redis_pool::{RedisPool, RemoteFn, Worker};
use mpkit_bench::redis_server::{self, RedisServer};

type Result<T = ()> = std::result::Result<T, Box<dyn Error>>;

/// Squares its argument and says which process did it.
fn square(x: u64) -> (i32, u64) {
    (std::process::id() as i32, x * x)
}

/// Dies the first time it runs (the marker file does not exist yet: it
/// makes it, then exits as if the OOM killer came); returns its pid the
/// next time.
fn dies_once(marker: String) -> i32 {
    if !Path::new(&marker).exists() {
        let _ = std::fs::write(&marker, b"died here");
        std::process::exit(137);
    }
    std::process::id() as i32
}

const SQUARE: RemoteFn<u64, (i32, u64)> = RemoteFn::new("tour.square", square);
const DIES_ONCE: RemoteFn<String, i32> = RemoteFn::new("tour.dies_once", dies_once);

/// A worker process: serves the pool's tasks until SIGTERM.
fn serve((url, pool): (String, String)) {
    let worker = Worker::builder(&url, &pool)
        .task(&SQUARE)
        .task(&DIES_ONCE)
        .connect()
        .expect("the tour's redis-server is running");
    worker.run().expect("serving the pool");
}

pub fn redis_pool() -> Result {
    println!("== 14. A pool across hosts on Redis (a worker killed mid-task)");
    if !redis_server::installed() {
        println!("  skipped: redis-server is not installed (scripts/redis-server installs it)\n");
        return Ok(());
    }
    let server = RedisServer::try_start()?;
    let url = server.url();
    println!("  a private redis-server at {url}: workers on any host that reaches it would do");
    let mut workers = Vec::new();
    for _ in 0..2 {
        workers.push(Process::spawn(serve, (url.clone(), "tour".to_string()))?);
    }
    let vt = Duration::from_millis(500);
    let pool = RedisPool::builder(&url, "tour")
        .visibility_timeout(vt)
        .connect()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.workers()? < 2 {
        if Instant::now() > deadline {
            return Err("the tour's Redis workers did not register".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let pids: Vec<i32> = workers.iter().map(|w| w.pid()).collect();
    println!(
        "  2 worker processes (pids {pids:?}) serve the tasks `tour.square` and `tour.dies_once`"
    );
    let squares = pool.map_chunked(&SQUARE, 1..=6, 1)?;
    let shown: Vec<String> = squares
        .iter()
        .map(|(pid, sq)| format!("{sq} (pid {pid})"))
        .collect();
    println!("  map(square, 1..=6) = {}", shown.join(", "));
    let marker = server.dir.join("dies-once");
    let t0 = Instant::now();
    let survivor = pool.apply(&DIES_ONCE, marker.to_string_lossy().into_owned())?;
    println!(
        "  dies_once: its first worker exited mid-task; after the visibility timeout ({vt:?}) \
         it ran again on pid {survivor}, {:?} after it was sent",
        t0.elapsed()
    );
    drop(pool);
    for mut w in workers {
        let _ = w.terminate();
        let _ = w.join_timeout(Duration::from_secs(10));
    }
    drop(server);
    println!("  workers stopped (SIGTERM: each finishes its task first), redis-server stopped");
    println!();
    Ok(())
}
