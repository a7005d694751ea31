//! Word counts on workers on any host, through Redis: the README's
//! two-terminal example.
//!
//! ```text
//! # Terminal 1, on each worker host (any number of them):
//! cargo run -p mpkit --features redis --example redis_pool -- --mpkit-worker redis://10.0.0.3:6379
//! # Terminal 2, the caller:
//! cargo run -p mpkit --features redis --example redis_pool -- redis://10.0.0.3:6379
//! ```
//!
//! Both terminals run the same program: `worker_main` at the top of
//! `main` makes the first one a supervisor of worker processes (one per
//! CPU, or `MPKIT_WORKER_PROCESSES`), which serve until Ctrl-C.

use std::error::Error;
use std::time::{Duration, Instant};

use mpkit::redis_pool::{RedisPool, RemoteFn};

/// The task: how many words a text has.
fn count(text: String) -> usize {
    text.split_whitespace().count()
}

/// Its name, stable across builds: what workers look it up by.
const COUNT: RemoteFn<String, usize> = RemoteFn::new("wordcount.count", count);

fn main() -> Result<(), Box<dyn Error>> {
    // In worker mode (`--mpkit-worker URL`), serves until SIGTERM or
    // SIGINT and exits; otherwise returns at once.
    mpkit::redis_pool::worker_main(&[&COUNT]);

    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_string());
    let pool = RedisPool::connect(&url, "default")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while pool.workers()? == 0 {
        if Instant::now() > deadline {
            return Err(
                "no worker registered in a minute: start one with --mpkit-worker URL".into(),
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("worker processes registered: {}", pool.workers()?);
    let texts: Vec<String> = (1..=1000).map(|n| "word ".repeat(n % 17)).collect();
    let t0 = Instant::now();
    let counts = pool.map(&COUNT, texts)?;
    println!(
        "{} texts, {} words in {:?}",
        counts.len(),
        counts.iter().sum::<usize>(),
        t0.elapsed()
    );
    Ok(())
}
