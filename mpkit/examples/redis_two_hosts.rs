//! Work shared between hosts through a Redis stream (feature `redis`): a
//! producer puts jobs and collects their results, consumers on any host
//! that reaches the server do them. Start a Redis server (7.0 or later),
//! then, in two terminals (on two machines, or one):
//!
//! ```text
//! cargo run -p mpkit --features redis --example redis_two_hosts -- consume redis://HOST:6379 squares
//! cargo run -p mpkit --features redis --example redis_two_hosts -- produce redis://HOST:6379 squares 20
//! ```
//!
//! The producer puts jobs 1..=N on the queue `squares`, prints each result
//! as it comes back on `squares-results`, waits until every job is
//! acknowledged, and closes the queue; the consumer (start several) squares
//! each job it takes and exits when the queue is closed. Kill a consumer
//! with Ctrl-C while it works: what it held is delivered to another after
//! the visibility timeout (5 s here), so every job is done, and the
//! producer counts each once. A closed queue stays closed: use a new name
//! for each run.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use mpkit::redis_queue::{RedisGetError, RedisQueue};

/// How long a job may stay unacknowledged before another consumer gets it.
const VISIBILITY: Duration = Duration::from_secs(5);
/// How long either side waits for the other before it gives up.
const PATIENCE: Duration = Duration::from_secs(60);

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A result: the job, its square, and who did it (host and pid).
type Done = (u64, u64, String);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["produce", url, name, n] => match n.parse() {
            Ok(n) => produce(url, name, n),
            Err(e) => Err(format!("N: {e}").into()),
        },
        ["consume", url, name] => consume(url, name),
        _ => {
            eprintln!("usage: redis_two_hosts produce URL NAME N | consume URL NAME");
            return ExitCode::from(2);
        }
    };
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("redis_two_hosts: {e}");
            ExitCode::FAILURE
        }
    }
}

fn open<T: serde::Serialize + serde::de::DeserializeOwned>(
    url: &str,
    name: &str,
) -> Result<RedisQueue<T>> {
    Ok(RedisQueue::builder(url, name)
        .visibility_timeout(VISIBILITY)
        .open()?)
}

fn produce(url: &str, name: &str, n: u64) -> Result {
    let jobs: RedisQueue<u64> = open(url, name)?;
    let results: RedisQueue<Done> = open(url, &format!("{name}-results"))?;
    if jobs.is_closed()? {
        return Err(format!("queue {name} was closed by an earlier run: use another name").into());
    }
    jobs.put_many((1..=n).collect())?;
    println!("producer: put {n} jobs on {name} at {url}");
    // A job done twice (its consumer was too slow to acknowledge it) comes
    // back twice: count each once.
    let mut done = BTreeMap::new();
    while done.len() < n as usize {
        let (job, square, by) = results.get_timeout(PATIENCE)?;
        results.task_done()?;
        if done.insert(job, square).is_none() {
            println!("producer: {job}² = {square} (by {by})");
        }
    }
    jobs.join_timeout(PATIENCE)?;
    jobs.close()?;
    let sum: u64 = done.values().sum();
    println!("producer: all {n} jobs done, sum of squares {sum}; queue closed");
    Ok(())
}

fn consume(url: &str, name: &str) -> Result {
    let jobs: RedisQueue<u64> = open(url, name)?;
    let results: RedisQueue<Done> = open(url, &format!("{name}-results"))?;
    let me = format!("{} pid {}", hostname(), std::process::id());
    println!("consumer {me}: taking jobs from {name} at {url}");
    let mut count = 0;
    loop {
        let job = match jobs.get_delivery_timeout(PATIENCE) {
            Ok(job) => job,
            Err(RedisGetError::Closed) => break,
            Err(e) => return Err(e.into()),
        };
        let square = job.value * job.value;
        // The result first, then the acknowledgement: a consumer killed in
        // between leaves a job that is done again, never one that is lost.
        results.put((job.value, square, me.clone()))?;
        jobs.ack(&job.id)?;
        println!(
            "consumer {me}: job {} (delivery {}) -> {square}",
            job.value, job.deliveries
        );
        count += 1;
    }
    println!("consumer {me}: the queue is closed; did {count} jobs");
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "?".to_string())
}
