//! Named objects whose memory another process rewrote: every kind is
//! created, its file in `/dev/shm` overwritten with arbitrary bytes (header
//! fields, ring positions, record headers, lease words, counts), and then
//! used through the handle made before and through a new `open`. Every call
//! returns (a value or an error), none panics, and none with a timeout
//! outlasts it; a watchdog aborts the run, naming the case, if one hangs.
//!
//! The bytes are written in this process, through the file: the pages are
//! the ones every process maps, so this is what a hostile process sees and
//! does. `found.rs` replays, between processes, the damage the properties
//! found.
//!
//! The lock cells (a robust pthread mutex and its bookkeeping) are written
//! too, while no process holds or sleeps in them (a rewrite then is beyond
//! any check: see `base/cell.rs`). A lock word rewritten to say "held" is
//! a lock another process holds, so a case that writes it makes only the
//! timed calls on that object.
//!
//! - `harness.rs`: the watchdog, the timing checks, the damage (what bytes
//!   are written where) and the runner;
//! - `queues.rs`: every flavour of queue;
//! - `objects.rs`: values, arrays, `SharedMemory`, the synchronisation
//!   objects, and files of any length and bytes;
//! - `found.rs`: what the properties found, replayed between processes.
//!
//! Under AddressSanitizer (nightly; `--target` keeps the build scripts and
//! proc macros uninstrumented; `PROPTEST_CASES` for more cases):
//!
//! ```text
//! RUSTFLAGS=-Zsanitizer=address ASAN_OPTIONS=detect_leaks=0 cargo +nightly test \
//!     -p mpkit --test shm_fuzz --target x86_64-unknown-linux-gnu
//! ```
//!
//! Miri cannot run it: every object is a shared mapping of a `memfd` or
//! `/dev/shm` file, which Miri does not emulate.

#[path = "../common/mod.rs"]
mod common;

mod found;
mod harness;
mod objects;
mod queues;

use std::sync::atomic::{AtomicU64, Ordering};

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

use common::{scribble_from_another_process, u64s};
