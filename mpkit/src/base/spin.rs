//! The one spin-then-sleep policy every mpkit wait follows.
//!
//! A waiter whose condition is false does not go to sleep in the kernel at
//! once: waking a sleeper on another CPU costs 20-30 µs on the virtual
//! machines mpkit is measured on, while a peer that is running usually
//! acts within a few microseconds. So a waiter first *spins*: it polls its
//! condition for at most [`SPIN_LIMIT`] (never past its deadline), and only
//! then sleeps (a futex, a robust mutex, a blocking read).
//!
//! | threshold | value | why |
//! |---|---|---|
//! | [`SPIN_LIMIT`] | 20 µs | about one cross-CPU wake-up: spinning longer costs more than the sleep it saves |
//! | [`POLLS_PER_CHECK`] | 64 | cheap polls between two clock reads (a clock read can cost more than a poll) |
//! | [`BACKOFF_SHIFT_MAX`] | 6 | a contending poll waits at most 2^6 pause instructions before the next |
//! | [`CONTEND_POLLS`] | 12 | contending polls before sleeping (about 450 pauses in all) |
//!
//! Three kinds of poll share these thresholds ([`Poll`]):
//! - [`Poll::Load`]: the poll is a load of a shared word. One `pause`
//!   between polls; every [`POLLS_PER_CHECK`] polls the clock is read and
//!   the CPU offered to another thread (`sched_yield`): the peer may be
//!   queued on this very CPU, and two spinners may share one.
//! - [`Poll::Contend`]: the poll writes (a trylock's compare-and-swap), and
//!   would take the holder's cache line away if repeated at full speed: the
//!   pause between polls doubles up to 2^[`BACKOFF_SHIFT_MAX`] `pause`s, and
//!   after [`CONTEND_POLLS`] polls the waiter sleeps. A lock is held for a
//!   short copy at most, and a waiter that keeps writing to the lock's line
//!   slows its holder down, so the count is small and fixed rather than a
//!   time.
//! - [`Poll::Syscall`]: the poll is a system call (a non-blocking read):
//!   the CPU is offered before every poll, and the clock read every time.
//!
//! On a machine with a single online CPU nobody spins: the peer being
//! waited for cannot run while the waiter holds the CPU.
//!
//! Callers that adapt the spin to what they observe (a connection learns
//! how long its peer usually takes) pass their own limit to
//! [`Spin::with_limit`]; everything else uses [`SPIN_LIMIT`].

use std::time::{Duration, Instant};

use crate::sys::{self, Deadline};

/// The longest a waiter spins before sleeping (see the module docs).
pub(crate) const SPIN_LIMIT: Duration = Duration::from_micros(20);

/// Cheap polls between two reads of the clock (and offers of the CPU).
pub(crate) const POLLS_PER_CHECK: u32 = 64;

/// A contending poll's pause grows to at most `1 << BACKOFF_SHIFT_MAX`
/// `pause` instructions.
pub(crate) const BACKOFF_SHIFT_MAX: u32 = 6;

/// Contending polls before the waiter sleeps.
pub(crate) const CONTEND_POLLS: u32 = 12;

/// What one poll costs, which decides what happens between two polls (see
/// the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Poll {
    /// A load of a shared word.
    Load,
    /// A write to a contended word (a trylock).
    Contend,
    /// A system call.
    Syscall,
}

/// One waiter's spin: call [`Spin::pause`] between polls until it returns
/// false, then sleep.
#[derive(Debug)]
pub(crate) struct Spin {
    poll: Poll,
    limit: Duration,
    deadline: Deadline,
    /// When the spin ends; set at the first clock read, so a condition that
    /// turns true within the first few polls never reads the clock.
    until: Option<Instant>,
    polls: u32,
    over: bool,
}

impl Spin {
    /// A spin of at most [`SPIN_LIMIT`], ending at `deadline` if sooner.
    #[inline]
    pub(crate) fn new(poll: Poll, deadline: Deadline) -> Spin {
        Spin::with_limit(poll, SPIN_LIMIT, deadline)
    }

    /// A spin of at most `limit` (an adaptive caller's own budget).
    #[inline]
    pub(crate) fn with_limit(poll: Poll, limit: Duration, deadline: Deadline) -> Spin {
        Spin {
            poll,
            limit,
            deadline,
            until: None,
            polls: 0,
            over: limit.is_zero() || !sys::several_cpus(),
        }
    }

    /// Waits between two polls. False when the spin is over: stop polling
    /// and sleep.
    #[inline]
    pub(crate) fn pause(&mut self) -> bool {
        if self.over {
            return false;
        }
        self.polls = self.polls.wrapping_add(1);
        match self.poll {
            Poll::Contend => {
                if self.polls > CONTEND_POLLS {
                    self.over = true;
                    return false;
                }
                for _ in 0..1u32 << (self.polls - 1).min(BACKOFF_SHIFT_MAX) {
                    std::hint::spin_loop();
                }
                true
            }
            Poll::Load if self.polls % POLLS_PER_CHECK != 0 => {
                std::hint::spin_loop();
                true
            }
            Poll::Load | Poll::Syscall => self.check_clock(),
        }
    }

    #[cold]
    fn check_clock(&mut self) -> bool {
        let now = Instant::now();
        let (limit, deadline) = (self.limit, self.deadline);
        let until = *self.until.get_or_insert_with(|| {
            let spin = now + limit;
            deadline.map_or(spin, |d| d.min(spin))
        });
        if now >= until {
            self.over = true;
            return false;
        }
        sys::yield_now();
        true
    }
}

/// Polls `ready` (a load) until it is true or the spin is over; returns the
/// last answer.
#[inline]
pub(crate) fn spin_until(deadline: Deadline, mut ready: impl FnMut() -> bool) -> bool {
    let mut spin = Spin::new(Poll::Load, deadline);
    loop {
        if ready() {
            return true;
        }
        if !spin.pause() {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spin_ends_by_its_limit_or_deadline() {
        for poll in [Poll::Load, Poll::Syscall] {
            let start = Instant::now();
            let mut spin = Spin::with_limit(poll, Duration::from_millis(2), None);
            while spin.pause() {}
            let took = start.elapsed();
            if sys::several_cpus() {
                assert!(
                    took >= Duration::from_millis(2),
                    "{poll:?} ended early: {took:?}"
                );
            }
            // Once over, it stays over.
            assert!(!spin.pause());

            let start = Instant::now();
            let deadline = Some(start + Duration::from_millis(1));
            let mut spin = Spin::with_limit(poll, Duration::from_secs(10), deadline);
            while spin.pause() {}
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{poll:?} ignored the deadline"
            );
        }
    }

    #[test]
    fn contending_polls_are_counted() {
        let mut spin = Spin::new(Poll::Contend, None);
        let mut polls = 0;
        while spin.pause() {
            polls += 1;
        }
        let expected = if sys::several_cpus() {
            CONTEND_POLLS
        } else {
            0
        };
        assert_eq!(polls, expected);
        assert!(!spin.pause());
    }

    #[test]
    fn spin_until_stops_at_the_condition() {
        let mut n = 0;
        assert!(spin_until(None, || {
            n += 1;
            n == 3 || !sys::several_cpus()
        }));
        assert!(!spin_until(None, || false));
        let past = Some(Instant::now());
        assert!(!spin_until(past, || false));
    }

    #[test]
    fn a_zero_limit_never_spins() {
        let mut spin = Spin::with_limit(Poll::Syscall, Duration::ZERO, None);
        assert!(!spin.pause());
    }
}
