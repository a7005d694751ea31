//! `Semaphore` and `BoundedSemaphore`: a counting futex word in shared
//! memory, and a table of who holds [`Permit`]s.
//!
//! # Layout
//! After the 64-byte segment header:
//!
//! | offset | what |
//! |---|---|
//! | 64 | `value: u32` (futex word), `waiters: u32`, `max: u32` (0 = unbounded) |
//! | 128 | holder table: [`HOLDER_SLOTS`] (32) slots of 16 bytes |
//!
//! A holder slot is `owner: u64`, the process that holds permits through
//! it (its pid in bits 0-21, its start time in clock ticks after boot in
//! bits 22-63; 0: free), and `state: u64`, the number of permits it holds
//! (bits 0-31) and a generation (bits 32-63) that every reclaim moves on.
//! How permits come back from the dead is told in `sync`'s "Semaphores
//! and crashes" and in ARCHITECTURE.md.

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::sleep::{Slept, WaitError, sleep_on};
use super::spin_while;
use crate::base::segment::{
    Elem, HEADER_SIZE, Header, ObjectKind, Segment, ShmError, Spec, TRUNCATED, segment_object,
};
use crate::sys::{self, Deadline};

/// Processes that can hold permits of one semaphore at once.
pub const HOLDER_SLOTS: usize = 32;
/// How often a waiter looks for dead holders while permits are held.
pub const RECHECK: Duration = Duration::from_millis(100);
/// Where the holder table starts.
const TABLE: usize = 128;
const COUNT_MASK: u64 = u32::MAX as u64;
const GENERATION: u64 = 1 << 32;

#[repr(C)]
struct SemState {
    value: AtomicU32,
    waiters: AtomicU32,
    max: u32,
}

/// One process's permits (see the module docs).
#[repr(C)]
struct HolderSlot {
    owner: AtomicU64,
    state: AtomicU64,
}

const _: () = assert!(HEADER_SIZE + std::mem::size_of::<SemState>() <= TABLE);
const _: () = assert!(std::mem::size_of::<HolderSlot>() == 16);

fn sem_spec(kind: ObjectKind) -> Spec {
    Spec {
        kind,
        elem: Elem::NONE,
        len: 0,
        size: TABLE + HOLDER_SLOTS * std::mem::size_of::<HolderSlot>(),
        cells: &[],
    }
}

fn create_sem(
    kind: ObjectKind,
    name: Option<&str>,
    value: u32,
    max: u32,
) -> Result<Segment, ShmError> {
    Segment::create(sem_spec(kind), name, 0o600, |base| {
        // SAFETY: fresh (zeroed) segment with room for SemState at
        // HEADER_SIZE; a zeroed holder table is all free slots.
        unsafe {
            base.as_ptr()
                .add(HEADER_SIZE)
                .cast::<SemState>()
                .write(SemState {
                    value: AtomicU32::new(value),
                    waiters: AtomicU32::new(0),
                    max,
                });
        }
        Ok(())
    })
}

/// A semaphore's shared state: the counter and the holder table.
#[derive(Clone, Copy)]
struct Sem<'a> {
    seg: &'a Segment,
    s: &'a SemState,
    table: &'a [HolderSlot; HOLDER_SLOTS],
}

fn sem(seg: &Segment) -> Sem<'_> {
    // SAFETY: the header check proved a semaphore layout, whose size
    // covers the table.
    unsafe {
        Sem {
            seg,
            s: seg.at::<SemState>(HEADER_SIZE).as_ref(),
            table: seg.at::<[HolderSlot; HOLDER_SLOTS]>(TABLE).as_ref(),
        }
    }
}

/// Takes the permits of `slot`, whose `owner` was found dead and whose
/// `state` was read after that, and frees the slot; how many it took (0
/// when another reclaimer was first). The caller adds them to the value.
fn reclaim_slot(slot: &HolderSlot, owner: u64, state: u64) -> u32 {
    // The slot may have been freed and claimed again since the owner was
    // read; while the owner is still the dead one, nobody but a reclaimer
    // writes `state`, and the generation tells reclaimers apart.
    if slot.owner.load(Ordering::Acquire) != owner {
        return 0;
    }
    let next = (state & !COUNT_MASK).wrapping_add(GENERATION);
    if slot
        .state
        .compare_exchange(state, next, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return 0;
    }
    let _ = slot
        .owner
        .compare_exchange(owner, 0, Ordering::AcqRel, Ordering::Relaxed);
    (state & COUNT_MASK) as u32
}

impl<'a> Sem<'a> {
    /// The slot this process holds permits through, claimed if it has
    /// none (a free slot, else one whose owner died, after its permits
    /// are given back).
    fn my_slot(self) -> Result<&'a HolderSlot, PermitError> {
        let me = sys::process_token().ok_or(PermitError::Unidentified)?;
        if let Some(slot) = self
            .table
            .iter()
            .find(|t| t.owner.load(Ordering::Acquire) == me)
        {
            return Ok(slot);
        }
        for pass in 0..2 {
            for slot in self.table {
                if slot
                    .owner
                    .compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(slot);
                }
            }
            if pass == 0 {
                self.reclaim();
            }
        }
        Err(PermitError::TooManyHolders {
            slots: HOLDER_SLOTS,
        })
    }

    /// True when some slot counts permits (a holder that may die).
    fn held(&self) -> bool {
        self.table
            .iter()
            .any(|t| t.state.load(Ordering::Relaxed) & COUNT_MASK != 0)
    }

    /// Gives back the permits of every dead holder, frees their slots,
    /// and wakes waiters; the number of permits given back.
    fn reclaim(&self) -> u32 {
        let mut back = 0u32;
        for slot in self.table {
            let owner = slot.owner.load(Ordering::Acquire);
            if owner == 0 || sys::token_alive(owner) {
                continue;
            }
            let state = slot.state.load(Ordering::Acquire);
            back = back.saturating_add(reclaim_slot(slot, owner, state));
        }
        if back > 0 {
            self.give(back);
        }
        back
    }

    /// Adds `n` units reclaimed from the dead, up to the limit (only a
    /// scribbled table could claim more than were taken).
    fn give(&self, n: u32) {
        let s = self.s;
        let limit = if s.max == 0 { u32::MAX } else { s.max };
        let _ = s
            .value
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |v| {
                Some(v.saturating_add(n).min(limit.max(v)))
            });
        if s.waiters.load(Ordering::SeqCst) > 0 {
            sys::futex_wake(&s.value, n);
        }
    }

    /// Takes one unit if there is one, without waiting.
    fn try_take(&self) -> bool {
        let s = self.s;
        let mut v = s.value.load(Ordering::SeqCst);
        while v > 0 {
            match s
                .value
                .compare_exchange_weak(v, v - 1, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => v = now,
            }
        }
        false
    }

    /// Takes one unit, waiting until `deadline`; false if it passed.
    /// `Truncated` when another process cut the file (a unit found after
    /// the cut could only be one of this process's private zeros).
    fn take(&self, deadline: Deadline) -> Result<bool, WaitError> {
        let s = self.s;
        // A unit at once: taken without looking at the truncation flag (as
        // `Event::wait`: after a cut, it can only be one this process
        // released into its private zeros).
        if self.try_take() {
            return Ok(true);
        }
        loop {
            if self.try_take() {
                return self.unless_truncated(true);
            }
            spin_while(&s.value, 0, deadline);
            if s.value.load(Ordering::SeqCst) > 0 {
                continue;
            }
            // A holder that died will never release: look before sleeping,
            // and sleep no longer than RECHECK while anyone holds permits.
            let mut until = deadline;
            if self.held() {
                if self.reclaim() > 0 {
                    continue;
                }
                let recheck = Instant::now() + RECHECK;
                until = Some(deadline.map_or(recheck, |d| d.min(recheck)));
            }
            s.waiters.fetch_add(1, Ordering::SeqCst);
            // In slices even when nobody holds permits: a file truncated
            // meanwhile wakes nobody (see `sleep`).
            let r = sleep_on(self.seg, &s.value, 0, until);
            s.waiters.fetch_sub(1, Ordering::SeqCst);
            // Without a deadline there is no timeout: `acquire` returns
            // only with a unit.
            if r? == Slept::TimedOut && deadline.is_some_and(|d| Instant::now() >= d) {
                // One last try: a release may have raced with the timeout.
                let got = self.try_take();
                return self.unless_truncated(got);
            }
        }
    }

    /// `Ok(answer)`, unless the file was found truncated meanwhile.
    #[inline]
    fn unless_truncated(&self, answer: bool) -> Result<bool, WaitError> {
        if self.seg.truncated() {
            return Err(WaitError::Truncated);
        }
        Ok(answer)
    }

    fn release(&self, n: u32) -> Result<(), OverReleaseError> {
        let s = self.s;
        let limit = if s.max == 0 { u32::MAX } else { s.max };
        let mut v = s.value.load(Ordering::SeqCst);
        loop {
            let new = v.checked_add(n).filter(|&new| new <= limit);
            let Some(new) = new else {
                return Err(OverReleaseError { limit });
            };
            match s
                .value
                .compare_exchange_weak(v, new, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        if s.waiters.load(Ordering::SeqCst) > 0 {
            sys::futex_wake(&s.value, n);
        }
        Ok(())
    }

    /// The value after giving back what dead holders held.
    fn value(&self) -> u32 {
        if self.held() {
            self.reclaim();
        }
        self.s.value.load(Ordering::SeqCst)
    }

    /// Takes a unit for this process's slot, waiting until `deadline`
    /// (`wait` false: not at all).
    fn permit(self, wait: bool, deadline: Deadline) -> Result<HolderRef<'a>, PermitError> {
        let slot = self.my_slot()?;
        let got = if wait {
            match self.take(deadline) {
                Ok(got) => got,
                Err(WaitError::Truncated) => return Err(PermitError::Corrupt(TRUNCATED.into())),
                Err(WaitError::Io(e)) => return Err(PermitError::Io(e)),
            }
        } else {
            self.try_take() || (self.held() && self.reclaim() > 0 && self.try_take())
        };
        if !got {
            return Err(if wait {
                PermitError::Timeout
            } else {
                PermitError::WouldBlock
            });
        }
        slot.state.fetch_add(1, Ordering::AcqRel);
        let owner = slot.owner.load(Ordering::Relaxed);
        Ok(HolderRef {
            sem: self,
            slot,
            owner,
        })
    }
}

struct HolderRef<'a> {
    sem: Sem<'a>,
    slot: &'a HolderSlot,
    /// The process holding it.
    owner: u64,
}

/// One unit of a [`Semaphore`] or [`BoundedSemaphore`] held by this
/// process and recorded in the semaphore's holder table: dropping it gives
/// it back, and so does the process's death (the next process that waits,
/// or reads the value, reclaims it; see
/// [Semaphores and crashes](crate::sync#semaphores-and-crashes)). A copy
/// of it in a child forked without exec is the parent's: dropping it there
/// gives nothing back.
///
/// ```
/// use mpkit::sync::Semaphore;
/// let s = Semaphore::new(1)?;
/// let p = s.permit()?;
/// assert_eq!(s.value(), 0);
/// drop(p);
/// assert_eq!(s.value(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "the permit is given back when dropped"]
pub struct Permit<'a> {
    held: HolderRef<'a>,
}

impl std::fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        // A copy in a child forked without exec: the permit is the
        // parent's, to give back once.
        if sys::process_token() != Some(self.held.owner) {
            return;
        }
        // Uncount first: dying between the two loses the unit, while the
        // other order could give it back twice.
        let _ = self
            .held
            .slot
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |st| {
                (st & COUNT_MASK != 0).then(|| st - 1)
            });
        let _ = self.held.sem.release(1);
    }
}

/// Why a [`Permit`] was not taken. Nothing is held.
#[derive(Debug, thiserror::Error)]
pub enum PermitError {
    /// `try_permit`: no unit was free.
    #[error("no permit free")]
    WouldBlock,
    /// `permit_timeout`: none came free in time.
    #[error("timed out waiting for a permit")]
    Timeout,
    /// Every slot of the holder table belongs to another live process
    /// that has taken permits of this semaphore.
    #[error("{slots} other live processes hold permits of this semaphore already")]
    TooManyHolders {
        /// The table's size ([`HOLDER_SLOTS`]).
        slots: usize,
    },
    /// This process's start time could not be read from `/proc`, so a
    /// permit held by it could not be told from one held by a later
    /// process with the same pid.
    #[error(
        "this process cannot be identified (its start time is unreadable), so it cannot hold permits"
    )]
    Unidentified,
    /// Another process truncated the semaphore's file (its memory is
    /// gone; see [Truncated files](crate::sync#truncated-files)).
    #[error("corrupt semaphore: {0}")]
    Corrupt(String),
    /// The OS refused the futex sleep.
    #[error("waiting for a permit: {0}")]
    Io(#[from] io::Error),
}

/// Why a semaphore's [`release`](Semaphore::release) was refused: the
/// value would have passed its limit (a [`BoundedSemaphore`]'s initial
/// value, or `u32::MAX` for a [`Semaphore`]). Nothing changed. Python's
/// `BoundedSemaphore.release` raises `ValueError` here.
///
/// ```
/// use mpkit::sync::{BoundedSemaphore, OverReleaseError};
/// let s = BoundedSemaphore::new(2)?;
/// assert_eq!(s.release(), Err(OverReleaseError { limit: 2 }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
#[error("semaphore released too many times (its value would pass its limit, {limit})")]
pub struct OverReleaseError {
    /// The largest value the semaphore may hold.
    pub limit: u32,
}

/// The semaphore methods shared by `Semaphore` and `BoundedSemaphore`.
macro_rules! semaphore_methods {
    () => {
        /// P: takes one unit, waiting while there is none. The unit is
        /// nobody's: if this process dies, it is not given back (use
        /// [`permit`](Self::permit) for that).
        ///
        /// An error when the OS refused the sleep, or when another
        /// process truncated the semaphore's file
        /// ([`io::ErrorKind::InvalidData`] around [`ShmError::Corrupt`];
        /// see [Truncated files](crate::sync#truncated-files)).
        pub fn acquire(&self) -> io::Result<()> {
            sem(&self.seg)
                .take(None)
                .map(|_| ())
                .map_err(io::Error::from)
        }

        /// Takes one unit if there is one; false otherwise. It never
        /// sleeps; when the value is 0 while permits are held, it looks
        /// for dead holders first (reading `/proc`).
        pub fn try_acquire(&self) -> bool {
            let s = sem(&self.seg);
            s.try_take() || (s.held() && s.reclaim() > 0 && s.try_take())
        }

        /// Takes one unit, waiting at most `timeout`; false if it passed.
        /// Errors as for [`acquire`](Self::acquire).
        pub fn acquire_timeout(&self, timeout: Duration) -> io::Result<bool> {
            sem(&self.seg)
                .take(sys::deadline_after(Some(timeout)))
                .map_err(io::Error::from)
        }

        /// Takes one unit as a [`Permit`] recorded for this process,
        /// waiting while there is none: dropping the permit gives it
        /// back, and so does this process's death (SIGKILL included; see
        /// [Semaphores and crashes](crate::sync#semaphores-and-crashes)).
        pub fn permit(&self) -> Result<Permit<'_>, PermitError> {
            sem(&self.seg)
                .permit(true, None)
                .map(|held| Permit { held })
        }

        /// [`permit`](Self::permit) without waiting:
        /// [`PermitError::WouldBlock`] when no unit is free.
        pub fn try_permit(&self) -> Result<Permit<'_>, PermitError> {
            sem(&self.seg)
                .permit(false, None)
                .map(|held| Permit { held })
        }

        /// [`permit`](Self::permit), waiting at most `timeout`
        /// ([`PermitError::Timeout`]).
        pub fn permit_timeout(&self, timeout: Duration) -> Result<Permit<'_>, PermitError> {
            sem(&self.seg)
                .permit(true, sys::deadline_after(Some(timeout)))
                .map(|held| Permit { held })
        }

        /// The current value (Python's `get_value()`), after giving back
        /// the permits of holders that died (which reads `/proc` for each
        /// process holding permits).
        pub fn value(&self) -> u32 {
            sem(&self.seg).value()
        }
    };
}

/// A counting semaphore (Python's `multiprocessing.Semaphore`): P is
/// [`acquire`](Self::acquire), V is [`release`](Self::release).
///
/// Units taken with `acquire` are nobody's (any process may release them,
/// and one taken by a process that dies is gone); a [`Permit`]
/// ([`permit`](Self::permit)) is this process's and comes back if it dies.
/// See [Semaphores and crashes](crate::sync#semaphores-and-crashes).
///
/// ```
/// use mpkit::sync::Semaphore;
/// let s = Semaphore::new(2)?;
/// s.acquire()?;
/// assert!(s.try_acquire());
/// assert!(!s.try_acquire());
/// s.release()?;
/// assert_eq!(s.value(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Semaphore {
    seg: Segment,
}

segment_object!(Semaphore, |_: &Header| sem_spec(ObjectKind::Semaphore));

impl Semaphore {
    fn from_segment(seg: Segment) -> Self {
        Semaphore { seg }
    }

    /// A new anonymous semaphore with `value` units.
    pub fn new(value: u32) -> Result<Semaphore, ShmError> {
        create_sem(ObjectKind::Semaphore, None, value, 0).map(Semaphore::from_segment)
    }

    /// A new named semaphore.
    pub fn create(name: &str, value: u32) -> Result<Semaphore, ShmError> {
        create_sem(ObjectKind::Semaphore, Some(name), value, 0).map(Semaphore::from_segment)
    }

    /// Attaches to a named semaphore.
    pub fn open(name: &str) -> Result<Semaphore, ShmError> {
        Segment::open(name, |_| sem_spec(ObjectKind::Semaphore)).map(Semaphore::from_segment)
    }

    semaphore_methods!();

    /// V: returns one unit, waking a waiter if any; an error (nothing
    /// changed) if the value would pass `u32::MAX`.
    pub fn release(&self) -> Result<(), OverReleaseError> {
        sem(&self.seg).release(1)
    }
}

/// A semaphore that may not be released above its initial value (Python's
/// `BoundedSemaphore`): over-release is an [`OverReleaseError`].
/// Its [`permit`](Self::permit)s come back when their process dies, as a
/// [`Semaphore`]'s do.
///
/// ```
/// use mpkit::sync::{BoundedSemaphore, OverReleaseError};
/// let s = BoundedSemaphore::new(1)?;
/// assert_eq!(s.release(), Err(OverReleaseError { limit: 1 }));
/// s.acquire()?;
/// assert_eq!(s.release(), Ok(()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct BoundedSemaphore {
    seg: Segment,
}

segment_object!(BoundedSemaphore, |_: &Header| sem_spec(
    ObjectKind::BoundedSemaphore
));

impl BoundedSemaphore {
    fn from_segment(seg: Segment) -> Self {
        BoundedSemaphore { seg }
    }

    /// A new anonymous bounded semaphore with `value` units (at least 1).
    pub fn new(value: u32) -> Result<BoundedSemaphore, ShmError> {
        create_sem(ObjectKind::BoundedSemaphore, None, value, value.max(1))
            .map(BoundedSemaphore::from_segment)
    }

    /// A new named bounded semaphore.
    pub fn create(name: &str, value: u32) -> Result<BoundedSemaphore, ShmError> {
        create_sem(
            ObjectKind::BoundedSemaphore,
            Some(name),
            value,
            value.max(1),
        )
        .map(BoundedSemaphore::from_segment)
    }

    /// Attaches to a named bounded semaphore.
    pub fn open(name: &str) -> Result<BoundedSemaphore, ShmError> {
        Segment::open(name, |_| sem_spec(ObjectKind::BoundedSemaphore))
            .map(BoundedSemaphore::from_segment)
    }

    semaphore_methods!();

    /// V: returns one unit; an error (nothing changed) if that would
    /// exceed the initial value (Python's `ValueError`).
    pub fn release(&self) -> Result<(), OverReleaseError> {
        sem(&self.seg).release(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process that lives as long as the test: this one's parent.
    fn live_owner() -> u64 {
        let ppid = sys::getppid();
        let (_, start) = sys::proc_stat(ppid).expect("the parent's /proc entry");
        start.max(1) << sys::TOKEN_PID_BITS | ppid as u64
    }

    #[test]
    fn a_reused_pid_does_not_keep_a_dead_holders_permits() {
        let s = Semaphore::new(1).unwrap();
        let t = sem(&s.seg);
        // Our own pid with another start time: a holder that died and
        // whose pid this process now uses.
        let ghost = sys::process_token().unwrap() + (1 << sys::TOKEN_PID_BITS);
        t.table[5].owner.store(ghost, Ordering::SeqCst);
        t.table[5]
            .state
            .store(3 | (7 * GENERATION), Ordering::SeqCst);
        assert_eq!(s.value(), 4, "the three permits came back");
        assert_eq!(t.table[5].owner.load(Ordering::SeqCst), 0, "slot freed");
        assert_eq!(t.table[5].state.load(Ordering::SeqCst), 8 * GENERATION);
        assert_eq!(s.value(), 4, "and only once");
    }

    #[test]
    fn a_full_holder_table_is_an_error_not_a_lost_permit() {
        let s = BoundedSemaphore::new(2).unwrap();
        let t = sem(&s.seg);
        let live = live_owner();
        for slot in t.table {
            slot.owner.store(live, Ordering::SeqCst);
        }
        assert!(matches!(
            s.try_permit(),
            Err(PermitError::TooManyHolders { slots: 32 })
        ));
        assert_eq!(s.value(), 2, "nothing was taken");
        t.table[31].owner.store(0, Ordering::SeqCst);
        let p = s.try_permit().unwrap();
        assert_eq!(
            t.table[31].owner.load(Ordering::SeqCst),
            sys::process_token().unwrap()
        );
        assert_eq!(t.table[31].state.load(Ordering::SeqCst) & COUNT_MASK, 1);
        drop(p);
        assert_eq!(t.table[31].state.load(Ordering::SeqCst) & COUNT_MASK, 0);
        assert_eq!(s.value(), 2);
    }

    /// Two reclaimers of one dead holder, one late: the late one takes
    /// nothing, neither when the first is halfway (its generation move
    /// wins) nor when the slot has a new owner since (the owner check).
    #[test]
    fn a_late_reclaimer_takes_nothing() {
        let s = Semaphore::new(0).unwrap();
        let t = sem(&s.seg);
        let slot = &t.table[2];
        let ghost = sys::process_token().unwrap() + (1 << sys::TOKEN_PID_BITS);
        slot.owner.store(ghost, Ordering::SeqCst);
        slot.state.store(2, Ordering::SeqCst);
        // Both found the owner dead and read the state.
        let (late_owner, late_state) = (ghost, slot.state.load(Ordering::SeqCst));
        assert_eq!(reclaim_slot(slot, ghost, 2), 2, "the first takes both");
        assert_eq!(reclaim_slot(slot, late_owner, late_state), 0);
        // Freed, and claimed by a live process holding one permit.
        assert_eq!(slot.owner.load(Ordering::SeqCst), 0);
        let p = s.try_permit();
        assert!(matches!(p, Err(PermitError::WouldBlock)));
        s.release().unwrap();
        let p = s.try_permit().unwrap();
        let mine = t
            .table
            .iter()
            .find(|x| x.owner.load(Ordering::SeqCst) == sys::process_token().unwrap())
            .unwrap();
        assert!(std::ptr::eq(mine, &t.table[0]), "the first free slot");
        // A reclaimer that read the ghost and a state before all that.
        slot.owner
            .store(sys::process_token().unwrap(), Ordering::SeqCst);
        slot.state.store(GENERATION | 1, Ordering::SeqCst);
        assert_eq!(reclaim_slot(slot, late_owner, GENERATION | 1), 0);
        assert_eq!(slot.state.load(Ordering::SeqCst), GENERATION | 1);
        slot.owner.store(0, Ordering::SeqCst);
        slot.state.store(0, Ordering::SeqCst);
        drop(p);
        assert_eq!(s.value(), 1);
    }
}
