//! What the pool's arena tests share: its sizes, a lock to run them one at
//! a time, and ways for a task to find, map and watch its worker's arena.
#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The bytes of an arena's half (`pool::wire::ARENA_HALF`).
pub const HALF: usize = 2 << 20;
/// The smallest payload or body that goes into the arena (`ARENA_MIN`).
pub const MIN: usize = 4 << 10;

pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `len` bytes that differ with `len` and position: a copy cut short,
/// shifted or taken from another item shows.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ len.wrapping_mul(7) ^ (i >> 9)) as u8)
        .collect()
}

/// Lengths around `edge`, wide enough to cross it for payloads and reply
/// bodies whatever their few bytes of framing.
pub fn around(edge: usize) -> impl Iterator<Item = usize> {
    edge - 24..edge + 6
}

/// Descriptors and mappings of anonymous mpkit blocks in this process
/// (`/memfd:mpkit`): arenas, while no other test runs.
pub fn mpkit_memfds() -> (usize, usize) {
    let fds = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|t| t.to_string_lossy().starts_with("/memfd:mpkit"))
        })
        .count();
    let maps = std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("/memfd:mpkit"))
        .count();
    (fds, maps)
}

/// In a worker: the descriptor of its arena (an anonymous mpkit block of
/// two halves), if it has one.
pub fn arena_fd() -> Option<i32> {
    for e in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        if !target.to_string_lossy().starts_with("/memfd:mpkit") {
            continue;
        }
        let Ok(fd) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let meta = std::fs::metadata(format!("/proc/self/fd/{fd}"));
        if meta.is_ok_and(|m| m.len() == 2 * HALF as u64) {
            return Some(fd);
        }
    }
    None
}

/// In a worker: its arena mapped again (shared, read-only), to watch what
/// the worker writes there.
pub fn map_arena(fd: i32) -> &'static [u8] {
    // SAFETY: a fresh shared read-only mapping of the whole file; it is
    // never unmapped (the process is a worker's forked child that exits).
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            2 * HALF,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    // SAFETY: mapped above for 2 * HALF bytes; other processes write it,
    // and only single bytes are read, through volatile reads.
    unsafe { std::slice::from_raw_parts(p.cast::<u8>(), 2 * HALF) }
}

/// Spins (up to 10 s) until `byte` of `arena` is `want`.
pub fn wait_byte(arena: &[u8], byte: usize, want: u8) -> bool {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < end {
        // SAFETY: in bounds; a volatile read of shared memory.
        if unsafe { std::ptr::read_volatile(&arena[byte]) } == want {
            return true;
        }
        std::hint::spin_loop();
    }
    false
}
