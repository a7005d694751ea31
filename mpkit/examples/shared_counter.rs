//! N processes each add 1 to a shared `Value<i64>` M times.
//!
//! Under the value's lock the total is exactly N×M. Without it (a
//! `RawValue`, read then write), increments from different processes
//! overwrite each other and updates are lost.
//!
//! ```text
//! cargo run --release --example shared_counter -- [N] [M]
//! ```

use std::sync::atomic::Ordering;

use mpkit::Process;
use mpkit::shm::{RawValue, Value};

/// Starts every worker at once: each checks in, then spins until all have.
/// (Sleeping at a barrier would let the scheduler queue the woken workers
/// on one CPU, one after the other, and they would never overlap.)
fn start_together(ready: &RawValue<u32>, n: u32) {
    ready.atomic().fetch_add(1, Ordering::SeqCst);
    while ready.atomic().load(Ordering::SeqCst) < n {
        std::hint::spin_loop();
    }
}

fn locked((v, m, ready, n): (Value<i64>, u64, RawValue<u32>, u32)) {
    start_together(&ready, n);
    for _ in 0..m {
        *v.lock().expect("lock") += 1;
    }
}

fn unlocked((v, m, ready, n): (RawValue<i64>, u64, RawValue<u32>, u32)) {
    start_together(&ready, n);
    for _ in 0..m {
        // Read, then write: another process may write in between.
        let seen = v.get();
        v.set(seen + 1);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u32>());
    let n = args.next().transpose()?.unwrap_or(4);
    let m = args.next().transpose()?.unwrap_or(1_000_000) as u64;
    let expected = n as u64 * m;

    let counter = Value::new(0i64)?;
    let ready = RawValue::new(0u32)?;
    let workers = (0..n)
        .map(|_| {
            Process::spawn(locked, (counter.try_clone()?, m, ready.try_clone()?, n))
                .map_err(Into::into)
        })
        .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()?;
    for w in workers {
        w.join()?;
    }
    println!("with the lock:    {} (expected {expected})", counter.get()?);

    let racy = RawValue::new(0i64)?;
    let ready = RawValue::new(0u32)?;
    let workers = (0..n)
        .map(|_| {
            Process::spawn(unlocked, (racy.try_clone()?, m, ready.try_clone()?, n))
                .map_err(Into::into)
        })
        .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()?;
    for w in workers {
        w.join()?;
    }
    let total = racy.get();
    println!(
        "without the lock: {total} (expected {expected}; {} updates lost)",
        expected as i64 - total
    );
    Ok(())
}
