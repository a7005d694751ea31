//! The floor: a spin-polled single-producer single-consumer ring of
//! fixed-size slots in shared memory.
//!
//! Both sides busy-poll and each message is `memcpy`'d in and out. The ring
//! has nothing mpkit must have (several producers and consumers, variable
//! lengths, sleeping and waking, crash safety), so it is what the hardware
//! can do, not a competitor.
//!
//! # Layout
//!
//! | offset | bytes | what |
//! |---|---|---|
//! | [`HEAD`] = 0 | 8 | the consumer's position (messages taken) |
//! | [`TAIL`] = 128 | 8 | the producer's position (messages put) |
//! | [`STOP`] = 256 | 4 | nonzero: a consumer waiting on an empty ring gives up |
//! | [`DATA`] = 384 | [`RING_BYTES`] | the slots |
//!
//! Each control word has 128 bytes of its own (a cache line and its
//! prefetch pair), so the two sides never write the same line.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mpkit::shm::{SharedMemory, ShmError};

/// The bytes of slots in every ring (the size of every queue the benchmarks
/// compare it with).
pub const RING_BYTES: usize = 1 << 20;
/// Where the consumer's position lives.
pub const HEAD: usize = 0;
/// Where the producer's position lives.
pub const TAIL: usize = 128;
/// Where the stop flag lives.
pub const STOP: usize = 256;
/// Where the slots start.
pub const DATA: usize = 384;

/// How a side waits while the ring is full (producer) or empty (consumer).
#[derive(Clone, Copy, Debug)]
pub struct Patience {
    /// One `sched_yield` every this many spins (the others are a spin
    /// hint), so two spinners sharing one CPU still make progress; a power
    /// of two.
    yield_every: u32,
    /// Give up after this long (counted from the first yield); `None`:
    /// wait until [`SpinRing::stop`].
    timeout: Option<Duration>,
    /// Spin once after every read of the other side's position, even when
    /// it moved (how `mpkit bench`'s ring has always waited; the criterion
    /// benchmarks' ring never did, and their recorded ratios assume that).
    settle: bool,
}

impl Patience {
    /// A yield every 128th spin, so two sides on one CPU take turns within
    /// microseconds, and an error after 10 s: for sides that only spin
    /// while a message is due (`mpkit bench`).
    pub const BOUNDED: Patience = Patience {
        yield_every: 128,
        timeout: Some(Duration::from_secs(10)),
        settle: true,
    };

    /// A yield every 1024th spin and no time limit: for a consumer that
    /// waits between batches for as long as criterion takes, and is ended
    /// with [`SpinRing::stop`] (the criterion benchmarks).
    pub const ENDLESS: Patience = Patience {
        yield_every: 1024,
        timeout: None,
        settle: false,
    };
}

/// Why a push or a pop did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// The message (or the buffer) is larger than a slot.
    TooLarge,
    /// The other side made no progress within the [`Patience`]'s time limit.
    TimedOut,
    /// The ring was empty and [`SpinRing::stop`] had been called.
    Stopped,
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RingError::TooLarge => "a message larger than the ring's slots",
            RingError::TimedOut => "the other side of the spin ring stopped",
            RingError::Stopped => "the spin ring was stopped",
        })
    }
}

impl std::error::Error for RingError {}

/// One side of a ring. Each side keeps its own position and a cached copy
/// of the other's, and reads the other's shared position only when the
/// cached one says the ring is full (producer) or empty (consumer).
pub struct SpinRing {
    shm: SharedMemory,
    slot: usize,
    slots: u64,
    patience: Patience,
    /// This side's position (messages put, or taken).
    pos: u64,
    /// The other side's position, as last read.
    other: u64,
}

impl SpinRing {
    /// A new, empty ring's block (attach each side with
    /// [`attach`](Self::attach)).
    pub fn create() -> Result<SharedMemory, ShmError> {
        SharedMemory::anonymous(DATA + RING_BYTES)
    }

    /// This process's side of the still empty ring in `shm`, of
    /// `slot`-byte slots (`slot` divides [`RING_BYTES`] into a power of
    /// two); `None` if `shm` is too small or `slot` does not fit.
    pub fn attach(shm: SharedMemory, slot: usize, patience: Patience) -> Option<SpinRing> {
        if shm.size() < DATA + RING_BYTES
            || slot == 0
            || RING_BYTES % slot != 0
            || !(RING_BYTES / slot).is_power_of_two()
        {
            return None;
        }
        Some(SpinRing {
            shm,
            slot,
            slots: (RING_BYTES / slot) as u64,
            patience,
            pos: 0,
            other: 0,
        })
    }

    #[inline]
    fn word(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: `offset` is HEAD or TAIL, 8-aligned and inside the
        // page-aligned mapping (its size checked in `attach`), which lives
        // as long as `self.shm`; the word is only ever accessed atomically.
        unsafe { &*self.shm.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    #[inline]
    fn stop_flag(&self) -> &AtomicU32 {
        // SAFETY: as in `word`: STOP is 4-aligned, inside the mapping.
        unsafe { &*self.shm.as_ptr().add(STOP).cast::<AtomicU32>() }
    }

    #[inline]
    fn slot_ptr(&self, pos: u64) -> *mut u8 {
        let index = (pos & (self.slots - 1)) as usize;
        // SAFETY: `index < slots`, so the slot lies inside the mapping.
        unsafe { self.shm.as_ptr().add(DATA + index * self.slot) }
    }

    /// Producer: copies `msg` (at most a slot) into the next slot, waiting
    /// while the ring is full.
    #[inline]
    pub fn push(&mut self, msg: &[u8]) -> Result<(), RingError> {
        if msg.len() > self.slot {
            return Err(RingError::TooLarge);
        }
        let mut wait = SpinWait::new(self.patience);
        while self.pos - self.other >= self.slots {
            self.other = self.word(HEAD).load(Ordering::Acquire);
            if self.patience.settle || self.pos - self.other >= self.slots {
                wait.step()?;
            }
        }
        // SAFETY: the slot at `pos` is free (the consumer is past it, read
        // with acquire above), only this producer writes it, and `msg` fits.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), self.slot_ptr(self.pos), msg.len()) };
        self.pos += 1;
        self.word(TAIL).store(self.pos, Ordering::Release);
        Ok(())
    }

    /// Consumer: copies the next slot's first `out.len()` bytes into `out`,
    /// waiting while the ring is empty; [`RingError::Stopped`] (nothing
    /// copied) once the stop flag is set while it is empty.
    #[inline]
    pub fn pop(&mut self, out: &mut [u8]) -> Result<(), RingError> {
        if out.len() > self.slot {
            return Err(RingError::TooLarge);
        }
        let mut wait = SpinWait::new(self.patience);
        while self.pos == self.other {
            self.other = self.word(TAIL).load(Ordering::Acquire);
            if self.pos == self.other {
                if self.stop_flag().load(Ordering::Relaxed) != 0 {
                    return Err(RingError::Stopped);
                }
                wait.step()?;
            } else if self.patience.settle {
                wait.step()?;
            }
        }
        // SAFETY: the slot at `pos` is published (the producer is past it,
        // read with acquire above), and the producer does not write it
        // until our release store below.
        unsafe {
            std::ptr::copy_nonoverlapping(self.slot_ptr(self.pos), out.as_mut_ptr(), out.len())
        };
        self.pos += 1;
        self.word(HEAD).store(self.pos, Ordering::Release);
        Ok(())
    }

    /// Tells a consumer waiting on the empty ring in [`pop`](Self::pop) to
    /// give up.
    pub fn stop(&self) {
        self.stop_flag().store(1, Ordering::Relaxed);
    }
}

/// A busy wait: a spin hint, and every `yield_every`th step a
/// `sched_yield` and, with a timeout, a look at the clock.
struct SpinWait {
    patience: Patience,
    spins: u32,
    since: Option<Instant>,
}

impl SpinWait {
    #[inline]
    fn new(patience: Patience) -> SpinWait {
        SpinWait {
            patience,
            spins: 0,
            since: None,
        }
    }

    #[inline]
    fn step(&mut self) -> Result<(), RingError> {
        self.spins = self.spins.wrapping_add(1);
        // A mask, not `%`: a division in the spin would cost more than the
        // wait it measures.
        if self.spins & (self.patience.yield_every - 1) != 0 {
            std::hint::spin_loop();
            return Ok(());
        }
        std::thread::yield_now();
        if let Some(timeout) = self.patience.timeout {
            if self.since.get_or_insert_with(Instant::now).elapsed() > timeout {
                return Err(RingError::TimedOut);
            }
        }
        Ok(())
    }
}
