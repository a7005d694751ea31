//! What the benchmark prints after criterion: the groups of the ratio
//! table and whether mpkit met its targets.

use std::time::SystemTime;

use mpkit_bench::harness::{Group, Unit, criterion_dir, fresh_mean};

use crate::mpmc::MPMC_ROWS;
use crate::roundtrip::{IDLE_ROWS, ROUNDTRIP_ROWS};
use crate::throughput::{THROUGHPUT_4K_ROWS, THROUGHPUT_64_ROWS};

pub const GROUPS: &[Group] = &[
    Group {
        id: "queue_throughput_64B",
        title: "throughput, 64 B messages, 1 producer -> 1 consumer (time per message)",
        unit: Unit::Message,
        rows: THROUGHPUT_64_ROWS,
    },
    Group {
        id: "queue_throughput_4KiB",
        title: "throughput, 4 KiB messages, 1 producer -> 1 consumer (time per message)",
        unit: Unit::Message,
        rows: THROUGHPUT_4K_ROWS,
    },
    Group {
        id: "queue_roundtrip_64B",
        title: "round trip, 64 B over two one-way channels (time per round trip)",
        unit: Unit::RoundTrip,
        rows: ROUNDTRIP_ROWS,
    },
    Group {
        id: "queue_roundtrip_idle_64B",
        title: "round trip, 64 B, both sides asleep before each (time per round trip)",
        unit: Unit::RoundTrip,
        rows: IDLE_ROWS,
    },
    Group {
        id: "queue_mpmc_64B",
        title: "many producers x many consumers, 64 B, one queue (time per message, all together)",
        unit: Unit::Message,
        rows: MPMC_ROWS,
    },
];

/// Targets: mpkit `ByteQueue` throughput (`put` / `get_into`) at least
/// this fraction of the spin ring's (64 B, 4 KiB); at 64 B, `put` / `get` at
/// least this many times Python `multiprocessing.Queue`'s; and a busy round
/// trip within this many ns.
const TARGET_64: f64 = 0.5;
const TARGET_4K: f64 = 0.3;
const TARGET_VS_PYTHON: f64 = 40.0;
const TARGET_ROUNDTRIP_NS: f64 = 1000.0;

/// Prints whether mpkit met its targets, from this run's estimates.
pub fn print_targets(since: SystemTime) {
    let dir = criterion_dir();
    let mean = |group, id| fresh_mean(&dir, group, id, since);
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!();
    for (group, label, fraction) in [
        ("queue_throughput_64B", "64 B", TARGET_64),
        ("queue_throughput_4KiB", "4 KiB", TARGET_4K),
    ] {
        let Some(floor) = mean(group, "spin_ring") else {
            continue;
        };
        // Like for like: the ring copies each message into one reused
        // buffer, as `get_into` does (`get` also allocates a `Vec` each).
        let Some(ns) = mean(group, "mpkit_bytequeue_get_into") else {
            continue;
        };
        let limit = 1.0 / fraction;
        let ratio = ns / floor;
        let others: Vec<String> = [
            ("mpkit_bytequeue_get", "put/get"),
            ("mpkit_bytequeue_get_many", "get_many(256)"),
            ("mpkit_bytequeue_batched", "put_many/get_many"),
        ]
        .iter()
        .filter_map(|(id, name)| Some(format!("{name} {:.2}x", mean(group, id)? / floor)))
        .collect();
        println!(
            "target: 1P1C {label} mpkit ByteQueue put/get_into throughput >= {fraction}x the spin ring's \
             (time ratio <= {limit:.2}): {ratio:.2}x its time ({:.2}x its throughput), {}{}",
            floor / ns,
            verdict(ratio <= limit),
            if others.is_empty() {
                String::new()
            } else {
                format!("  [also: {}]", others.join(", "))
            },
        );
    }
    // The equivalent in Python terms: >= 40x multiprocessing.Queue's
    // throughput, with the plain put/get (a new `Vec` per message).
    let group = "queue_throughput_64B";
    if let (Some(ns), Some(py)) = (
        mean(group, "mpkit_bytequeue_get"),
        mean(group, "py_mp_queue"),
    ) {
        println!(
            "target: 1P1C 64 B mpkit ByteQueue put/get throughput >= {TARGET_VS_PYTHON}x Python \
             multiprocessing.Queue's: {:.0}x, {}",
            py / ns,
            verdict(py / ns >= TARGET_VS_PYTHON),
        );
    }
    let group = "queue_roundtrip_idle_64B";
    if let (Some(ns), Some(futex)) = (mean(group, "mpkit_bytequeue"), mean(group, "futex_pair")) {
        println!(
            "target: idle round trip (both sides asleep) no worse than a bare futex pair's: \
             {:.1} µs vs {:.1} µs ({:.2}x), {}",
            ns / 1e3,
            futex / 1e3,
            ns / futex,
            // Within the noise of two wake-ups on these VMs.
            verdict(ns <= futex * 1.1),
        );
    }
    if let Some(ns) = mean("queue_roundtrip_64B", "mpkit_bytequeue") {
        println!(
            "target: busy round trip (64 B, 2x mpkit ByteQueue) <= {:.1} µs: {:.2} µs, {}",
            TARGET_ROUNDTRIP_NS / 1e3,
            ns / 1e3,
            verdict(ns <= TARGET_ROUNDTRIP_NS),
        );
    }
}
