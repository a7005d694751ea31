//! Python's `Pool(4).map(count, files)`: a word count spread over four
//! worker processes.
//!
//! ```python
//! def count(path):
//!     return len(open(path).read().split())
//!
//! with Pool(4) as pool:
//!     counts = pool.map(count, files)
//! ```
//!
//! ```text
//! cargo run --example pool [FILE…]   # default: the pool module's own sources
//! ```
//!
//! `count` returns a `Result`, so a file that cannot be read is that
//! file's error, not the map's: `map` fails only when a task itself fails
//! (a panic, a killed worker); `map_outcomes` would give each item's
//! `Result<_, TaskError>` instead.

use std::path::PathBuf;

use mpkit::Pool;

fn count(path: PathBuf) -> Result<usize, String> {
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text.split_whitespace().count())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut files: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if files.is_empty() {
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src/pool");
        for entry in std::fs::read_dir(src)? {
            files.push(entry?.path());
        }
        files.sort();
    }

    let pool = Pool::new(4)?;
    let counts = pool.map(count, files.clone())?;

    let mut total = 0;
    for (file, n) in files.iter().zip(counts) {
        match n {
            Ok(n) => {
                println!("{n:>8} {}", file.display());
                total += n;
            }
            Err(e) => println!("   error {e}"),
        }
    }
    println!("{total:>8} words in {} files", files.len());
    Ok(())
}
