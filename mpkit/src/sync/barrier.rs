//! [`Barrier`]: a barrier for a fixed number of parties, and its errors.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::sleep::{Slept, WaitError, sleep_on};
use super::{LockError, LockGuard, LockTimeoutError, guard, spin_while};
use crate::base::cell::{CELL_SIZE, MutexCell, MutexType};
use crate::base::segment::{
    Elem, HEADER_SIZE, Header, ObjectKind, Segment, ShmError, Spec, segment_object,
};
use crate::sys::{self, Deadline};

/// Why [`Barrier::wait`] did not pass. It never times out.
///
/// ```
/// use mpkit::sync::{Barrier, BarrierError};
/// let barrier = Barrier::new(2)?;
/// barrier.abort()?;
/// assert!(matches!(barrier.wait(), Err(BarrierError::Broken)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BarrierError {
    /// The barrier is broken (aborted, reset while waiting, a party timed
    /// out or failed, its action panicked, or a process died inside its
    /// lock). Call [`Barrier::reset`] to use it again.
    #[error("the barrier is broken")]
    Broken,
    /// The barrier's action waited at its own barrier (it runs holding the
    /// barrier's lock).
    #[error("the barrier was waited at from inside its own action")]
    Deadlock,
    /// Another process overwrote the barrier's lock (see
    /// [`LockError::Corrupt`]; nothing changed), or truncated the barrier's
    /// file, even while this party slept in it (see
    /// [Truncated files](crate::sync#truncated-files)).
    #[error("the barrier is corrupt (another process overwrote or truncated its memory)")]
    Corrupt,
    /// The operating system refused; this party left the barrier, which is
    /// now broken for the others too (as for a timeout).
    #[error("barrier: {0}")]
    Io(#[from] io::Error),
}

/// Why [`Barrier::wait_timeout`] did not pass.
///
/// ```
/// use std::time::Duration;
/// use mpkit::sync::{Barrier, BarrierTimeoutError};
/// let barrier = Barrier::new(2)?;
/// let r = barrier.wait_timeout(Duration::from_millis(1));
/// assert!(matches!(r, Err(BarrierTimeoutError::Timeout)));
/// assert!(barrier.broken()); // as in Python
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BarrierTimeoutError {
    /// This wait timed out; the barrier is now broken for the others too.
    #[error("timed out waiting at the barrier (it is now broken)")]
    Timeout,
    /// The barrier is broken; see [`BarrierError::Broken`].
    #[error("the barrier is broken")]
    Broken,
    /// The barrier's action waited at its own barrier; see
    /// [`BarrierError::Deadlock`].
    #[error("the barrier was waited at from inside its own action")]
    Deadlock,
    /// The barrier is corrupt; see [`BarrierError::Corrupt`].
    #[error("the barrier is corrupt (another process overwrote or truncated its memory)")]
    Corrupt,
    /// The operating system refused; see [`BarrierError::Io`].
    #[error("barrier: {0}")]
    Io(#[from] io::Error),
}

impl From<BarrierError> for BarrierTimeoutError {
    fn from(e: BarrierError) -> BarrierTimeoutError {
        match e {
            BarrierError::Broken => BarrierTimeoutError::Broken,
            BarrierError::Deadlock => BarrierTimeoutError::Deadlock,
            BarrierError::Corrupt => BarrierTimeoutError::Corrupt,
            BarrierError::Io(e) => BarrierTimeoutError::Io(e),
        }
    }
}

/// The error of one way of waiting at a barrier: built from what every
/// wait can report, plus what a sleep that reached its deadline is.
trait WaitFailure: From<BarrierError> {
    /// A timeout, for the waits that have one; `None`: sleep again.
    fn timed_out() -> Option<Self>;
}

impl WaitFailure for BarrierError {
    fn timed_out() -> Option<BarrierError> {
        None
    }
}

impl WaitFailure for BarrierTimeoutError {
    fn timed_out() -> Option<BarrierTimeoutError> {
        Some(BarrierTimeoutError::Timeout)
    }
}

#[repr(C)]
struct BarrierState {
    count: AtomicU32,
    generation: AtomicU32,
    last_trip: AtomicU32,
    broken: AtomicU32,
}

fn barrier_spec(parties: u64) -> Spec {
    Spec {
        kind: ObjectKind::Barrier,
        elem: Elem::NONE,
        len: parties,
        // A header naming no parties, or more than a `u32` counts, was
        // written by another process: a size no header can match refuses it.
        size: if (1..=u32::MAX as u64).contains(&parties) {
            HEADER_SIZE + CELL_SIZE + 64
        } else {
            usize::MAX
        },
        cells: &[(HEADER_SIZE, MutexType::ErrorCheck)],
    }
}

/// A barrier for a fixed number of parties (Python's
/// `multiprocessing.Barrier`).
///
/// ```
/// use mpkit::{Process, sync::Barrier};
/// let barrier = Barrier::new(2)?;
/// let other = Process::spawn(|b: Barrier| b.wait().unwrap(), barrier.try_clone()?)?;
/// let mine = barrier.wait()?;
/// let theirs = other.join()?;
/// assert_eq!(mine + theirs, 1); // indexes 0 and 1, in arrival order
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Barrier {
    seg: Segment,
    /// Run by this process's waiter when it is the last to arrive.
    action: Option<fn()>,
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("name", &self.seg.name())
            .finish()
    }
}

segment_object!(Barrier, |h: &Header| barrier_spec(h.len));

impl Barrier {
    fn from_segment(seg: Segment) -> Self {
        Barrier { seg, action: None }
    }

    fn create_segment(name: Option<&str>, parties: u32) -> Result<Segment, ShmError> {
        if parties == 0 {
            return Err(ShmError::NoParties);
        }
        Segment::create(barrier_spec(parties as u64), name, 0o600, |base| {
            // SAFETY: fresh segment sized for a cell and a BarrierState.
            unsafe {
                MutexCell::init(base.as_ptr().add(HEADER_SIZE).cast(), MutexType::ErrorCheck)?;
                base.as_ptr()
                    .add(HEADER_SIZE + CELL_SIZE)
                    .cast::<BarrierState>()
                    .write(BarrierState {
                        count: AtomicU32::new(0),
                        generation: AtomicU32::new(0),
                        last_trip: AtomicU32::new(u32::MAX),
                        broken: AtomicU32::new(0),
                    });
            }
            Ok(())
        })
    }

    /// A new anonymous barrier for `parties` parties.
    pub fn new(parties: u32) -> Result<Barrier, ShmError> {
        Barrier::create_segment(None, parties).map(Barrier::from_segment)
    }

    /// A new named barrier.
    pub fn create(name: &str, parties: u32) -> Result<Barrier, ShmError> {
        Barrier::create_segment(Some(name), parties).map(Barrier::from_segment)
    }

    /// Attaches to a named barrier.
    pub fn open(name: &str) -> Result<Barrier, ShmError> {
        Segment::open(name, |h| barrier_spec(h.len)).map(Barrier::from_segment)
    }

    /// Sets the action run by the last party to arrive, when that party
    /// waits through this handle (a function pointer cannot cross processes,
    /// so each process sets its own). If it panics the barrier breaks.
    pub fn with_action(mut self, action: fn()) -> Barrier {
        self.action = Some(action);
        self
    }

    fn cell(&self) -> &MutexCell {
        // SAFETY: the header check proved a Barrier layout.
        unsafe { self.seg.at::<MutexCell>(HEADER_SIZE).as_ref() }
    }

    fn state(&self) -> &BarrierState {
        // SAFETY: as above.
        unsafe {
            self.seg
                .at::<BarrierState>(HEADER_SIZE + CELL_SIZE)
                .as_ref()
        }
    }

    /// The number of parties.
    pub fn parties(&self) -> u32 {
        self.seg.object_len() as u32
    }

    /// How many parties are waiting now.
    pub fn n_waiting(&self) -> u32 {
        self.state().count.load(Ordering::SeqCst)
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.state().broken.load(Ordering::SeqCst) != 0
    }

    /// Takes the internal lock, waiting until `deadline`; `Ok(None)` when
    /// it passed first. A process that died inside it breaks the barrier
    /// (its state may be half-updated).
    fn locked(&self, deadline: Deadline) -> Result<Option<LockGuard<'_>>, BarrierError> {
        let owner_died = match self.cell().lock_until(MutexType::ErrorCheck, deadline) {
            Ok(died) => died,
            Err(LockTimeoutError::Timeout) => return Ok(None),
            Err(LockTimeoutError::Deadlock) => return Err(BarrierError::Deadlock),
            Err(LockTimeoutError::Corrupt) => return Err(BarrierError::Corrupt),
            Err(LockTimeoutError::Io(e)) => return Err(BarrierError::Io(e)),
        };
        if owner_died {
            self.break_locked();
        }
        Ok(Some(LockGuard::new(
            self.cell(),
            MutexType::ErrorCheck,
            owner_died,
        )))
    }

    /// Breaks the barrier without its lock, for a timed wait whose deadline
    /// passed while another process held the lock (stopped inside it, or
    /// slow): that party may never let go, and the others must learn that
    /// this one left. `broken` is stored before `generation` moves, so a
    /// party that read the new generation under the lock also sees
    /// `broken` before it sleeps (see `wait_until`). `count` is left as it
    /// is: [`reset`](Self::reset) clears it.
    fn break_unlocked(&self) {
        let s = self.state();
        s.broken.store(1, Ordering::SeqCst);
        s.generation.fetch_add(1, Ordering::SeqCst);
        sys::futex_wake(&s.generation, u32::MAX);
    }

    /// Breaks the barrier and releases every waiter. Lock held.
    fn break_locked(&self) {
        let s = self.state();
        s.broken.store(1, Ordering::SeqCst);
        s.count.store(0, Ordering::SeqCst);
        s.generation.fetch_add(1, Ordering::SeqCst);
        sys::futex_wake(&s.generation, u32::MAX);
    }

    /// Waits until all parties have called `wait`; returns this party's
    /// arrival index (0 for the first).
    pub fn wait(&self) -> Result<u32, BarrierError> {
        self.wait_until(None)
    }

    /// Like [`wait`](Self::wait), giving up after `timeout` — which breaks
    /// the barrier, as in Python. The timeout bounds taking the barrier's
    /// internal lock too: a party stopped while holding it (SIGSTOP, a
    /// debugger) or running a slow action cannot stretch it.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32, BarrierTimeoutError> {
        self.wait_until(sys::deadline_after(Some(timeout)))
    }

    fn wait_until<E: WaitFailure>(&self, deadline: Deadline) -> Result<u32, E> {
        let s = self.state();
        let Some(held) = self.locked(deadline)? else {
            // Only a wait with a deadline gets here: `None` waits forever.
            self.break_unlocked();
            return Err(E::timed_out().unwrap_or_else(|| BarrierError::Broken.into()));
        };
        if s.broken.load(Ordering::SeqCst) != 0 {
            return Err(BarrierError::Broken.into());
        }
        let round = s.generation.load(Ordering::SeqCst);
        let index = s.count.fetch_add(1, Ordering::SeqCst);
        // Saturating: another process may have written any count; one at
        // or past the parties trips the barrier.
        if index.saturating_add(1) >= self.parties() {
            if let Some(action) = self.action {
                if let Err(panic) = catch_unwind(AssertUnwindSafe(action)) {
                    self.break_locked();
                    drop(held);
                    resume_unwind(panic);
                }
            }
            s.count.store(0, Ordering::SeqCst);
            s.last_trip.store(round, Ordering::SeqCst);
            s.generation.store(round.wrapping_add(1), Ordering::SeqCst);
            sys::futex_wake(&s.generation, u32::MAX);
            if self.seg.truncated() {
                return Err(BarrierError::Corrupt.into());
            }
            return Ok(index.min(self.parties() - 1));
        }
        drop(held);
        while s.generation.load(Ordering::SeqCst) == round {
            // Broken without the lock by a party whose deadline passed
            // while another held it (`break_unlocked`), after this party
            // read the generation.
            if s.broken.load(Ordering::SeqCst) != 0 {
                return Err(BarrierError::Broken.into());
            }
            spin_while(&s.generation, round, deadline);
            // A party that stops waiting (its timeout, or a sleep the OS
            // refused) breaks the barrier for the others, as in Python;
            // unless the barrier tripped meanwhile.
            // In slices: a file truncated meanwhile wakes nobody (`sleep`).
            let failure = match sleep_on(&self.seg, &s.generation, round, deadline) {
                Ok(Slept::Woken | Slept::Slice) => continue,
                Ok(Slept::TimedOut) => match E::timed_out() {
                    Some(timeout) => timeout,
                    None => continue,
                },
                Err(WaitError::Truncated) => return Err(BarrierError::Corrupt.into()),
                Err(WaitError::Io(e)) => BarrierError::Io(e).into(),
            };
            // Bounded by the same deadline: a party stopped inside the
            // lock must not stretch this one's timeout.
            let Some(_held) = self.locked(deadline)? else {
                if s.generation.load(Ordering::SeqCst) == round {
                    self.break_unlocked();
                    return Err(failure);
                }
                break;
            };
            if s.generation.load(Ordering::SeqCst) == round {
                self.break_locked();
                return Err(failure);
            }
        }
        // The generation read zero from a truncated file's private zeros.
        if self.seg.truncated() {
            return Err(BarrierError::Corrupt.into());
        }
        if s.last_trip.load(Ordering::SeqCst) == round {
            Ok(index)
        } else {
            Err(BarrierError::Broken.into())
        }
    }

    /// Breaks the barrier: current and future waiters get `Broken` until
    /// [`reset`](Self::reset). An error only when its lock could not be
    /// taken ([`LockError::Deadlock`] from inside the barrier's action).
    pub fn abort(&self) -> Result<(), LockError> {
        let _held = guard(self.cell(), MutexType::ErrorCheck)?;
        self.break_locked();
        Ok(())
    }

    /// Returns the barrier to its empty, unbroken state; parties waiting now
    /// get `Broken`. An error only when its lock could not be taken
    /// ([`LockError::Deadlock`] from inside the barrier's action); then
    /// nothing changed.
    pub fn reset(&self) -> Result<(), LockError> {
        let s = self.state();
        let _held = guard(self.cell(), MutexType::ErrorCheck)?;
        if s.count.load(Ordering::SeqCst) > 0 {
            self.break_locked();
        }
        s.count.store(0, Ordering::SeqCst);
        s.broken.store(0, Ordering::SeqCst);
        Ok(())
    }
}
