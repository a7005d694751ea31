//! A progress bar over `imap_unordered`: Python's
//! `tqdm(pool.imap_unordered(f, items), total=len(items))`.
//!
//! ```python
//! with Pool(4) as pool:
//!     for n, primes in tqdm(pool.imap_unordered(count_primes, range(1, 33)), total=32):
//!         found[n] = primes
//! ```
//!
//! ```text
//! cargo run --example pool_progress [ITEMS]   # default: 32
//! ```
//!
//! Results arrive in the order they finish, so each carries its item
//! (`n`) back with it. The bar is plain text (`\r` redraws it in a
//! terminal), to need no progress-bar crate.

use std::io::Write;

use mpkit::Pool;

/// The number of primes below `n × 1000`, by trial division (work enough
/// to see the bar move).
fn count_primes(n: u64) -> (u64, usize) {
    let limit = n * 1000;
    let is_prime = |k: u64| k >= 2 && (2..).take_while(|d| d * d <= k).all(|d| k % d != 0);
    (n, (0..limit).filter(|&k| is_prime(k)).count())
}

/// `[########................] 12/32`
fn bar(done: usize, total: usize) -> String {
    const WIDTH: usize = 24;
    let filled = done * WIDTH / total.max(1);
    format!(
        "[{}{}] {done}/{total}",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled)
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let items: u64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 32,
    };
    let total = items as usize;
    let pool = Pool::new(4)?;
    let mut found = vec![0; total];
    let mut out = std::io::stdout().lock();
    write!(out, "{}", bar(0, total))?;
    out.flush()?;
    for (done, outcome) in pool.imap_unordered(count_primes, 1..=items).enumerate() {
        let (n, primes) = outcome?;
        found[n as usize - 1] = primes;
        write!(out, "\r{}", bar(done + 1, total))?;
        out.flush()?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "primes below 1000, 2000, …, {}: {} in all",
        items * 1000,
        found.iter().sum::<usize>()
    )?;
    Ok(())
}
