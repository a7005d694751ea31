//! Processes: several workers with arguments and collected results, then
//! what join says about a child that panics and one that is killed.
//!
//! ```text
//! cargo run --example process
//! ```

use std::time::Duration;

use mpkit::Process;
use mpkit::process::{Builder, JoinError};

/// Counts the primes below `limit`: a little real work for each worker.
fn count_primes((worker, limit): (usize, u64)) -> (usize, u64) {
    let count = (2..limit)
        .filter(|n| (2..).take_while(|d| d * d <= *n).all(|d| n % d != 0))
        .count();
    (worker, count as u64)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let limits = [10_000u64, 20_000, 40_000, 80_000];
    let workers: Vec<_> = limits
        .iter()
        .enumerate()
        .map(|(i, &limit)| {
            Builder::new()
                .name(format!("primes-{i}"))
                .spawn(count_primes, (i, limit))
        })
        .collect::<Result<_, _>>()?;
    for w in workers {
        let (name, pid) = (w.name().to_string(), w.pid());
        let (i, count) = w.join()?;
        println!("{name} (pid {pid}): {count} primes below {}", limits[i]);
    }

    let panicky = Process::spawn(
        |x: i32| -> i32 {
            if x < 0 {
                panic!("negative input: {x}")
            } else {
                x
            }
        },
        -5,
    )?;
    match panicky.join() {
        Err(JoinError::Panicked { message, .. }) => {
            println!("a panicking child: join() = Panicked({message:?})")
        }
        other => println!("unexpected: {other:?}"),
    }

    let mut stuck = Process::spawn(
        |secs: u64| std::thread::sleep(Duration::from_secs(secs)),
        3600,
    )?;
    println!(
        "a stuck child (pid {}), alive: {}",
        stuck.pid(),
        stuck.is_alive()
    );
    stuck.kill()?;
    let result = stuck.join_timeout(Duration::from_secs(10));
    println!(
        "after kill(): join() = {result:?}, exitcode = {:?}",
        stuck.exitcode()
    );
    Ok(())
}
