//! Named objects whose memory another process rewrote: each test has
//! another process write bytes into an object's file in `/dev/shm` (as any
//! process of the user may), and checks that this one gets a value or an
//! error, never a panic or a hang.
//!
//! - `found.rs`: the damage that broke an object, replayed between
//!   processes.

#[path = "../common/mod.rs"]
mod common;

mod found;

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};

use mpkit::Process;

/// The ring's capacity in the queue cases: small, so positions wrap often.
const CAPACITY: usize = 4096;
/// Where a queue's ring starts (ARCHITECTURE.md, Queues).
const RING: u64 = 4096;

/// A name for one case's object, unique in the machine.
fn case_name(kind: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "mpkit-fuzz-{kind}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes the case's object even when the case fails.
struct Unlink(String);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm/{}", self.0));
    }
}

/// Another process writes `writes` into the object's file.
fn scribble_from_another_process(name: &str, writes: Vec<(u64, Vec<u8>)>) {
    Process::spawn(
        |(name, writes): (String, Vec<(u64, Vec<u8>)>)| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(format!("/dev/shm/{name}"))
                .unwrap();
            for (at, bytes) in writes {
                f.write_all_at(&bytes, at).unwrap();
            }
        },
        (name.to_string(), writes),
    )
    .unwrap()
    .join()
    .unwrap();
}

/// Little-endian bytes of `values`.
fn u64s(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}
