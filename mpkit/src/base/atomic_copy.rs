//! Copies between private memory and shared memory that other threads of
//! this process may access at the same time — made of atomic accesses only,
//! as the byte-wise atomic `memcpy` proposed for C++ (P1478) is.
//!
//! # Why
//! `RawValue`, `RawArray` and `SharedMemory` are `Sync` and copy their
//! bytes without a lock, and `RawValue::atomic`/`RawArray::atomics` lend
//! `&AtomicU64` (and the like) over the same bytes. In Rust's memory model a
//! plain (or volatile) write racing with any other access is undefined
//! behaviour, whatever the hardware does; so is an atomic *write* racing
//! with an atomic access of a different size at the same bytes. Racing
//! atomic accesses of one size are not: each sees some value that was
//! written. Every function here therefore touches shared bytes only with
//! relaxed atomic loads, stores and compare-exchanges, with a width fixed
//! per caller so that all accesses to a given byte have the same size:
//!
//! | copy | width of every access to shared bytes |
//! |---|---|
//! | [`load`]/[`store`] of `T` (values, arrays) | [`width::<T>()`](width): `align_of::<T>()`, at most 8 — the size of `T`'s atomic view where it has one |
//! | [`copy_from_shared`]/[`copy_to_shared`] (raw blocks) | one aligned `usize` word, whatever the range: a partial word is loaded whole, and stored by compare-exchange |
//!
//! # What it does not promise
//! A copy of several words is not one atomic step: a concurrent writer can
//! leave it *torn* (some words old, some new). Every word is one that was
//! really written; the whole need not be. That is what "raw" means, as in
//! Python's `RawValue`. Relaxed accesses order nothing else either: publish
//! with a lock, or an atomic with `Release`/`Acquire`.
//!
//! Other processes are outside Rust's memory model; what they see of these
//! copies is what the hardware gives: each aligned access of at most a
//! word is single-copy atomic on the architectures Linux runs on.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize};

use bytemuck::Pod;

/// The width in bytes of every access a typed copy of `T` makes: `T`'s
/// alignment, capped at 8. For the integer types with an atomic twin this
/// is their size, so a copy and the atomic view never mix sizes.
pub(crate) const fn width<T>() -> usize {
    let align = std::mem::align_of::<T>();
    if align > 8 { 8 } else { align }
}

/// One access width: an unsigned atomic integer and its plain twin.
trait Grain {
    const SIZE: usize;

    /// Loads the grain at `p` into `out` (`SIZE` bytes).
    ///
    /// # Safety
    /// `p` is aligned to `SIZE`, valid for reads of `SIZE` bytes, and every
    /// access to those bytes that may race with this one is atomic, and of
    /// `SIZE` bytes if it writes.
    unsafe fn load(p: *const u8, out: &mut [u8]);

    /// Stores `bytes` (`SIZE` of them) into the grain at `p`.
    ///
    /// # Safety
    /// As for [`load`](Self::load), and `p` is valid for writes.
    unsafe fn store(p: *mut u8, bytes: &[u8]);
}

macro_rules! grain {
    ($($atomic:ty => $int:ty),*) => {$(
        impl Grain for $atomic {
            const SIZE: usize = std::mem::size_of::<$int>();

            #[inline(always)]
            unsafe fn load(p: *const u8, out: &mut [u8]) {
                // SAFETY: aligned and valid per the contract; an atomic may
                // be formed over memory that others access atomically.
                let a = unsafe { <$atomic>::from_ptr(p.cast_mut().cast()) };
                out.copy_from_slice(&a.load(Relaxed).to_ne_bytes());
            }

            #[inline(always)]
            unsafe fn store(p: *mut u8, bytes: &[u8]) {
                let v = <$int>::from_ne_bytes(bytes.try_into().expect("one grain"));
                // SAFETY: as in `load`.
                unsafe { <$atomic>::from_ptr(p.cast()) }.store(v, Relaxed);
            }
        }
    )*};
}

grain!(
    AtomicU8 => u8, AtomicU16 => u16, AtomicU32 => u32, AtomicU64 => u64,
    AtomicUsize => usize
);

/// Loads `dst.len()` bytes (a multiple of `G::SIZE`) from `src` grain by grain.
///
/// # Safety
/// `src` is aligned to `G::SIZE`, valid for reads of `dst.len()` bytes, and
/// every racing access to them is atomic, and `G::SIZE` wide if it writes.
#[inline(always)]
unsafe fn load_grains<G: Grain>(src: *const u8, dst: &mut [u8]) {
    for (i, out) in dst.chunks_exact_mut(G::SIZE).enumerate() {
        // SAFETY: grain `i` lies inside the range the caller vouched for
        // and keeps `src`'s alignment, since `i * SIZE` is a multiple of it.
        unsafe { G::load(src.add(i * G::SIZE), out) };
    }
}

/// Stores `src` (a multiple of `G::SIZE` bytes) at `dst` grain by grain.
///
/// # Safety
/// As for [`load_grains`], and `dst` is valid for writes.
#[inline(always)]
unsafe fn store_grains<G: Grain>(dst: *mut u8, src: &[u8]) {
    for (i, bytes) in src.chunks_exact(G::SIZE).enumerate() {
        // SAFETY: as in `load_grains`.
        unsafe { G::store(dst.add(i * G::SIZE), bytes) };
    }
}

/// `elems` as its bytes.
fn bytes_of_mut<T: Pod>(elems: &mut [T]) -> &mut [u8] {
    // SAFETY: `T: Pod` has no padding and every bit pattern is a valid `T`,
    // so its bytes may be read and written as `u8`; same memory, same length.
    unsafe {
        std::slice::from_raw_parts_mut(elems.as_mut_ptr().cast(), std::mem::size_of_val(elems))
    }
}

/// Copies `dst.len()` elements of shared memory at `src` into `dst`, each
/// element as `size_of::<T>() / width::<T>()` relaxed atomic loads of
/// [`width::<T>()`](width) bytes. Each element may be torn between
/// concurrent writes (see the module docs); no access is undefined.
///
/// # Safety
/// `src` is aligned for `T` and valid for reads of `dst.len()` elements; in
/// this process every access to those bytes that may race with the copy is
/// atomic, and every racing write is `width::<T>()` bytes wide at a multiple
/// of it (as [`store`] and the element's atomic twin are).
#[inline]
pub(crate) unsafe fn load<T: Pod>(src: *const T, dst: &mut [T]) {
    let src = src.cast::<u8>();
    let dst = bytes_of_mut(dst);
    // SAFETY: `T`'s size is a multiple of its alignment, hence of the width,
    // and `src` is aligned to the width; the rest is the caller's contract.
    unsafe {
        match width::<T>() {
            1 => load_grains::<AtomicU8>(src, dst),
            2 => load_grains::<AtomicU16>(src, dst),
            4 => load_grains::<AtomicU32>(src, dst),
            _ => load_grains::<AtomicU64>(src, dst),
        }
    }
}

/// Copies `src` into shared memory at `dst` with relaxed atomic stores of
/// [`width::<T>()`](width) bytes (see [`load`]).
///
/// # Safety
/// As for [`load`], and `dst` is valid for writes of `src.len()` elements.
#[inline]
pub(crate) unsafe fn store<T: Pod>(dst: *mut T, src: &[T]) {
    let dst = dst.cast::<u8>();
    let src: &[u8] = bytemuck::cast_slice(src);
    // SAFETY: as in `load`.
    unsafe {
        match width::<T>() {
            1 => store_grains::<AtomicU8>(dst, src),
            2 => store_grains::<AtomicU16>(dst, src),
            4 => store_grains::<AtomicU32>(dst, src),
            _ => store_grains::<AtomicU64>(dst, src),
        }
    }
}

const WORD: usize = std::mem::size_of::<usize>();

/// How far `p` lies past the start of the aligned word that holds it.
fn offset_in_word(p: *const u8) -> usize {
    p.addr() % WORD
}

/// Copies `dst.len()` bytes of shared memory at `src` (any alignment) into
/// `dst`, loading every aligned `usize` word that overlaps the range whole,
/// with one relaxed atomic load each: the middle word by word, and the bytes
/// at the unaligned ends out of the words around them.
///
/// # Safety
/// - every aligned word that overlaps `src..src + dst.len()` is valid for
///   reads (inside a page-aligned mapping it is: mappings are whole pages);
/// - in this process every access to those words that may race with the
///   copy is atomic, and every racing write is a whole aligned word (as
///   [`copy_to_shared`] makes).
pub(crate) unsafe fn copy_from_shared(dst: &mut [u8], src: *const u8) {
    let len = dst.len();
    let mut done = 0;
    let mut word = [0u8; WORD];
    let skip = offset_in_word(src);
    if skip != 0 && len != 0 {
        done = (WORD - skip).min(len);
        // SAFETY: the word holding `src` is valid per the contract; loading
        // it whole keeps every access to it one word wide.
        unsafe { <AtomicUsize as Grain>::load(src.sub(skip), &mut word) };
        dst[..done].copy_from_slice(&word[skip..skip + done]);
    }
    let whole = (len - done) / WORD * WORD;
    // SAFETY: `src + done` is word-aligned (past the head) and the `whole`
    // bytes after it lie inside the range.
    unsafe { load_grains::<AtomicUsize>(src.add(done), &mut dst[done..done + whole]) };
    done += whole;
    if done < len {
        // SAFETY: the aligned word holding the last bytes, valid per the
        // contract, loaded whole as above.
        unsafe { <AtomicUsize as Grain>::load(src.add(done), &mut word) };
        dst[done..].copy_from_slice(&word[..len - done]);
    }
}

/// Replaces bytes `at..at + part.len()` of the aligned word `word` with
/// `part`, leaving its other bytes as they are at that moment.
///
/// # Safety
/// `word` is aligned, valid for reads and writes of one word, and every
/// racing access to it in this process is a whole-word atomic.
unsafe fn store_part(word: *mut u8, at: usize, part: &[u8]) {
    // SAFETY: per the contract.
    let a = unsafe { AtomicUsize::from_ptr(word.cast()) };
    // A compare-exchange loop, not a load and a store: a concurrent write
    // of the word's other bytes between the two would be undone.
    let _ = a.fetch_update(Relaxed, Relaxed, |old| {
        let mut bytes = old.to_ne_bytes();
        bytes[at..at + part.len()].copy_from_slice(part);
        Some(usize::from_ne_bytes(bytes))
    });
}

/// Copies `src` into shared memory at `dst` (any alignment). Whole aligned
/// words in the range get one relaxed atomic store each; a word the range
/// covers only partly (at its ends) is updated by a compare-exchange loop
/// that replaces just the range's bytes, so a concurrent writer of the
/// word's other bytes is never overwritten with stale values.
///
/// # Safety
/// As for [`copy_from_shared`], with the words also valid for writes.
pub(crate) unsafe fn copy_to_shared(dst: *mut u8, src: &[u8]) {
    let len = src.len();
    let mut done = 0;
    let skip = offset_in_word(dst);
    if skip != 0 && len != 0 {
        done = (WORD - skip).min(len);
        // SAFETY: the word holding `dst`, valid per the contract.
        unsafe { store_part(dst.sub(skip), skip, &src[..done]) };
    }
    let whole = (len - done) / WORD * WORD;
    // SAFETY: as in `copy_from_shared`.
    unsafe { store_grains::<AtomicUsize>(dst.add(done), &src[done..done + whole]) };
    done += whole;
    if done < len {
        // SAFETY: the aligned word holding the last bytes, valid per the
        // contract.
        unsafe { store_part(dst.add(done), 0, &src[done..]) };
    }
}

// These run under Miri, which checks that no access races non-atomically
// or with a mixed size: `cargo +nightly miri test -p mpkit --lib atomic_copy`.
#[cfg(test)]
mod tests {
    use super::*;

    /// Rounds for the concurrent tests: Miri interprets every step.
    const ROUNDS: u64 = if cfg!(miri) { 40 } else { 20_000 };

    /// A typed round trip through shared-like memory equals a plain copy.
    fn round_trip<T: Pod + PartialEq + std::fmt::Debug>(values: &[T]) {
        let mut shared = values.to_vec();
        let fresh: Vec<T> = values.iter().rev().copied().collect();
        // SAFETY: `shared` is aligned for T, holds `len` elements, and only
        // this thread uses it.
        unsafe { store(shared.as_mut_ptr(), &fresh) };
        assert_eq!(shared, fresh);
        let mut out = vec![T::zeroed(); values.len()];
        // SAFETY: as above.
        unsafe { load(shared.as_ptr(), &mut out) };
        assert_eq!(out, fresh);
    }

    #[test]
    fn typed_copies_equal_plain_copies_for_every_width() {
        assert_eq!(
            (
                width::<u8>(),
                width::<u16>(),
                width::<u32>(),
                width::<u64>()
            ),
            (1, 2, 4, 8)
        );
        assert_eq!(width::<u128>(), 8, "capped at the widest atomic");
        assert_eq!(width::<[u8; 3]>(), 1);
        round_trip(&[1u8, 2, 3, 4, 5]);
        round_trip(&[1u16, 0xfffe, 7]);
        round_trip(&[1u32, u32::MAX, 9]);
        round_trip(&[1u64, u64::MAX - 1, 3]);
        round_trip(&[u128::MAX - 5, 1 << 100]);
        round_trip(&[[1u8, 2, 3], [4, 5, 6]]);
        round_trip(&[[1u32, 2, 3], [4, 5, 6]]);
        round_trip(&[1.5f64, -0.25]);
        round_trip::<u64>(&[]);
        round_trip(&[(), ()]);
    }

    /// A word-aligned buffer of `n` words, numbered bytes.
    fn words(n: usize, salt: u8) -> Vec<u64> {
        (0..n)
            .map(|w| {
                let mut b = [0u8; 8];
                for (i, x) in b.iter_mut().enumerate() {
                    *x = ((w * 8 + i) as u8).wrapping_mul(3).wrapping_add(salt);
                }
                u64::from_ne_bytes(b)
            })
            .collect()
    }

    fn bytes(words: &[u64]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }

    #[test]
    fn byte_copies_equal_plain_copies_at_every_alignment_and_length() {
        let max_len = if cfg!(miri) { 20 } else { 40 };
        for start in 0..=2 * WORD {
            for len in 0..=max_len {
                let mut shared = words(8, 0);
                let before = bytes(&shared);
                let mut out = vec![0xAAu8; len];
                // SAFETY: the whole buffer is word-aligned and covers every
                // word the range touches; only this thread uses it.
                unsafe { copy_from_shared(&mut out, shared.as_ptr().cast::<u8>().add(start)) };
                assert_eq!(out, before[start..start + len], "read {start}+{len}");

                let data = bytes(&words(8, 100));
                let data = &data[..len];
                // SAFETY: as above.
                unsafe { copy_to_shared(shared.as_mut_ptr().cast::<u8>().add(start), data) };
                let mut expected = before.clone();
                expected[start..start + len].copy_from_slice(data);
                assert_eq!(bytes(&shared), expected, "write {start}+{len}");
            }
        }
    }

    /// The view `RawValue::atomic` lends, counting, while typed copies read
    /// and write its neighbour: every value read was written, in order.
    #[test]
    fn typed_copies_race_an_atomic_view_without_undefined_behaviour() {
        let cells = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
        // Raw pointers are not `Send`: each thread takes its own.
        let base = || cells.as_ptr().cast::<u64>().cast_mut();
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..ROUNDS {
                    cells[0].fetch_add(1, Relaxed);
                    cells[2].fetch_add(1, Relaxed);
                }
            });
            s.spawn(|| {
                for i in 1..=ROUNDS {
                    // SAFETY: cells[1] is accessed by 8-byte atomics only.
                    unsafe { store(base().wrapping_add(1), &[i]) };
                }
            });
            let mut last = [0u64; 3];
            for _ in 0..ROUNDS {
                let mut seen = [0u64; 3];
                // SAFETY: the cells are aligned u64s, and every racing
                // access to them is an 8-byte atomic.
                unsafe { load(base().cast_const(), &mut seen) };
                for (now, before) in seen.iter().zip(&last) {
                    assert!(now >= before && *now <= ROUNDS, "{seen:?} after {last:?}");
                }
                last = seen;
            }
        });
        assert_eq!(cells.map(|c| c.into_inner()), [ROUNDS; 3]);
    }

    /// Two writers of disjoint parts of the same words (the ends of their
    /// ranges share a word) and a reader: no write undoes the other's
    /// bytes, and the reader only ever sees bytes someone wrote.
    #[test]
    fn byte_copies_of_overlapping_words_race_without_losing_bytes() {
        let cells: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(0)).collect();
        let base = || cells.as_ptr().cast::<u8>().cast_mut();
        let rounds = ROUNDS.min(5_000) as usize;
        // Writer A owns bytes 3..13, writer B bytes 13..29.
        let (a, b) = ((3, 13), (13, 29));
        let write = |(from, to): (usize, usize), tag: u8| {
            for r in 0..rounds {
                let data = vec![tag | (r as u8 & 0x3F); to - from];
                // SAFETY: 32 word-aligned bytes, every access to them here is
                // a whole-word atomic made by this module.
                unsafe { copy_to_shared(base().wrapping_add(from), &data) };
            }
        };
        std::thread::scope(|s| {
            s.spawn(|| write(a, 0x40));
            s.spawn(|| write(b, 0x80));
            for _ in 0..rounds {
                let mut seen = [0u8; 29];
                // SAFETY: as above.
                unsafe { copy_from_shared(&mut seen, base()) };
                assert!(seen[..3].iter().all(|&x| x == 0), "{seen:?}");
                assert!(
                    seen[3..13].iter().all(|&x| x == 0 || x & 0xC0 == 0x40),
                    "{seen:?}"
                );
                assert!(
                    seen[13..].iter().all(|&x| x == 0 || x & 0xC0 == 0x80),
                    "{seen:?}"
                );
            }
        });
        let last = (rounds - 1) as u8 & 0x3F;
        let all = bytes(&cells.iter().map(|c| c.load(Relaxed)).collect::<Vec<_>>());
        assert!(all[..3].iter().chain(&all[29..]).all(|&x| x == 0));
        assert!(all[3..13].iter().all(|&x| x == 0x40 | last), "{all:?}");
        assert!(all[13..29].iter().all(|&x| x == 0x80 | last), "{all:?}");
    }
}
