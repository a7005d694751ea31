//! Sleeping and waking: the wait words, and the spin before a sleep.
//!
//! Waking works the same way: a sleeper reads the wait word's `epoch`,
//! *arms* the word (`armed = epoch + 1`), runs the heavy barrier, checks
//! once more, then sleeps on `epoch`. A side that commits reads `armed`
//! after a light barrier and, only when it equals `epoch + 1`, moves the
//! epoch on (compare-and-swap) and wakes the futex. A wake thus disarms the
//! word: commits made while woken sleepers are still on their way skip the
//! system call, and a late wake for an old commit cannot swallow a newer
//! sleeper's (it moves the epoch, and that sleeper looks again).

use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Ring;
use super::layout::*;
use crate::base::segment::WAKE_SLICE;
use crate::base::spin::spin_until;
use crate::sys::{self, Deadline, FutexWait};

/// How long a producer facing a full ring first waits for room for a batch
/// (see [`Ring::sleep`]), and how much room that is: [`PATIENT_BYTES`] (at
/// most a quarter of the ring) and a quarter of `maxsize` messages. The wait
/// ends early on a deadline and never outlasts `PATIENCE`, so a put still
/// goes in once one message fits.
const PATIENCE: Duration = Duration::from_micros(10);
/// The batch a patient producer waits for room for, in bytes.
pub(super) const PATIENT_BYTES: u64 = 64 << 10;
/// How often a patient wait polls.
const PATIENT_POLL: Duration = Duration::from_micros(1);
thread_local! {
    /// Whether this thread has woken a peer or slept since its last spin
    /// began (see [`Ring::sleep`]).
    static SWITCHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Ring {
    // ----- sleeping and waking -----------------------------------------------

    /// Wakes the sleepers of `word`, if there are any (a syscall only then).
    #[inline]
    pub(super) fn wake(&self, word: &WaitWord) {
        self.light_barrier();
        // Only a sleeper that read the current epoch can block on it: wake
        // when one has armed the word at this epoch. Moving the epoch on
        // disarms it, so until a sleeper arms again later commits skip the
        // system call (a woken process may take tens of µs to run on these
        // VMs).
        let armed = word.armed.load(Ordering::Acquire);
        let epoch = word.epoch.load(Ordering::Relaxed);
        if armed == epoch.wrapping_add(1)
            && word
                .epoch
                .compare_exchange(
                    epoch,
                    epoch.wrapping_add(1),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            sys::futex_wake(&word.epoch, u32::MAX);
            SWITCHED.set(true);
        }
    }

    /// Waits until `ready()` (or a wake on `word`): first a short spin (the
    /// policy of [`spin`](crate::base::spin)), then a futex sleep of at
    /// most [`WAKE_SLICE`]. False when `ready()` is still false after it:
    /// the caller checks its own deadline, and tries again.
    ///
    /// With `patient`, a stronger condition than `ready`, the spin starts
    /// with up to [`PATIENCE`] of waiting for `patient()`, polled once every
    /// [`PATIENT_POLL`]: a producer facing a full ring waits for room for a
    /// batch. Polling for room for one message, it would take the
    /// consumers' commit line away after every message they take, and each
    /// of their commits would wait for the line to come back.
    pub(super) fn sleep(
        &self,
        word: &WaitWord,
        deadline: Deadline,
        ready: impl Fn() -> bool,
        patient: Option<&dyn Fn() -> bool>,
    ) -> io::Result<bool> {
        if sys::several_cpus() {
            // The CPU is offered away first when this thread has just woken
            // a peer or been woken: the peer it woke, or the one whose wake
            // brought it here, may be queued on this CPU (waking it on
            // another costs a cross-CPU wake-up). Without a wake there is no
            // one to make way for, and a first yield would only slow a busy
            // stream down.
            if SWITCHED.replace(false) {
                sys::yield_now();
            }
            if let Some(patient) = patient {
                let patience = Instant::now() + PATIENCE;
                let until = deadline.map_or(patience, |d| d.min(patience));
                while !patient() {
                    let next = Instant::now() + PATIENT_POLL;
                    if next > until {
                        break;
                    }
                    while Instant::now() < next {
                        std::hint::spin_loop();
                    }
                }
            }
            if spin_until(deadline, &ready) {
                return Ok(true);
            }
        }
        let epoch = word.epoch.load(Ordering::SeqCst);
        // Arm the word at this epoch (never back: another sleeper may have
        // armed it at a later one), then check once more after the heavy
        // barrier: a commit we do not see is followed by its committer
        // seeing the arming, and moving the epoch past the value we sleep on.
        let want = epoch.wrapping_add(1);
        let mut armed = word.armed.load(Ordering::Relaxed);
        while (want.wrapping_sub(armed) as i32) > 0 {
            match word
                .armed
                .compare_exchange_weak(armed, want, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => armed = now,
            }
        }
        self.heavy_barrier()?;
        if ready() {
            return Ok(true);
        }
        if self.seg.truncated() {
            // Private zeros now: no other process would ever wake us.
            return Err(io::Error::other(crate::base::segment::TRUNCATED));
        }
        // In slices: a file truncated under this sleeper wakes nobody, so
        // it wakes itself to look (the caller's next attempt reads the
        // ring, and a read of a cut page raises the segment's flag).
        let slice = Instant::now() + WAKE_SLICE;
        let until = deadline.map_or(slice, |d| d.min(slice));
        let woken = sys::futex_wait(&word.epoch, epoch, Some(until))?;
        SWITCHED.set(true);
        match woken {
            FutexWait::Woken => Ok(true),
            FutexWait::TimedOut => Ok(ready()),
        }
    }
}
