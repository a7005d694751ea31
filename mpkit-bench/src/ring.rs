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
//!
//! # Waiting
//!
//! Each side reads the other's position only when its cached copy says the
//! ring is full (producer) or empty (consumer), so in a steady stream the
//! two sides share nothing but the slots. Every read of the other side's
//! line takes it away from its writer, whose next store then waits for it
//! to come back; a side that re-reads once per message makes both sides
//! pay a cache-line round trip per message. So:
//! - a producer facing a full ring waits, while it spins, for room for a
//!   batch ([`BATCH_BYTES`], at most a quarter of the ring), not for one
//!   slot, and looks only every few spins; once it has yielded (the
//!   consumer is not keeping up, or waits for something else), one free
//!   slot is enough. mpkit's queue producers wait for a batch too, so the
//!   floor is held to no stricter rule than what is compared with it;
//! - a consumer facing an empty ring takes whatever is there: waiting for a
//!   batch would add latency.
//!
//! The waits are out of line and the rest of [`SpinRing::push`] and
//! [`SpinRing::pop`] is inlined into the caller, across the crate boundary:
//! a few nanoseconds of call overhead on one side per message decide which
//! side is the slower, and so which side waits.

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
/// How much room a producer facing a full ring waits for (in whole slots,
/// at least one, at most a quarter of the ring), while it spins.
pub const BATCH_BYTES: usize = 64 * 1024;
/// While a producer waits for a batch, it looks at the consumer's position
/// once every this many spins (fewer than any [`Patience`]'s yield
/// interval).
const BATCH_LOOK_EVERY: u32 = 8;

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
    /// The free slots a producer facing a full ring waits for while it
    /// spins (see the module docs).
    batch: u64,
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
        let slots = (RING_BYTES / slot) as u64;
        Some(SpinRing {
            shm,
            slot,
            slots,
            batch: ((BATCH_BYTES / slot) as u64).min(slots / 4).max(1),
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
        if self.pos - self.other >= self.slots {
            self.wait_for_room()?;
        }
        // SAFETY: the slot at `pos` is free (the consumer is past it, read
        // with acquire in `wait_for_room`), only this producer writes it,
        // and `msg` fits.
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
        if self.pos == self.other {
            self.wait_for_message()?;
        }
        // SAFETY: the slot at `pos` is published (the producer is past it,
        // read with acquire in `wait_for_message`), and the producer does
        // not write it until our release store below.
        unsafe {
            std::ptr::copy_nonoverlapping(self.slot_ptr(self.pos), out.as_mut_ptr(), out.len())
        };
        self.pos += 1;
        self.word(HEAD).store(self.pos, Ordering::Release);
        Ok(())
    }

    /// Producer, the ring full as last seen: re-reads the consumer's
    /// position until `batch` slots are free, or, once the wait has
    /// yielded, until one is. While it waits for a batch it looks only every
    /// [`BATCH_LOOK_EVERY`]th spin: each look takes the consumer's line away
    /// from it, and the consumer's next store waits for it to come back.
    #[cold]
    #[inline(never)]
    fn wait_for_room(&mut self) -> Result<(), RingError> {
        let mut wait = SpinWait::new(self.patience);
        loop {
            self.other = self.word(HEAD).load(Ordering::Acquire);
            let free = self.slots - (self.pos - self.other);
            let batch = wait.spinning();
            if free >= if batch { self.batch } else { 1 } {
                if self.patience.settle {
                    wait.step()?;
                }
                return Ok(());
            }
            for _ in 0..if batch { BATCH_LOOK_EVERY } else { 1 } {
                wait.step()?;
            }
        }
    }

    /// Consumer, the ring empty as last seen: re-reads the producer's
    /// position until a message is there (or the stop flag is set).
    #[cold]
    #[inline(never)]
    fn wait_for_message(&mut self) -> Result<(), RingError> {
        let mut wait = SpinWait::new(self.patience);
        loop {
            self.other = self.word(TAIL).load(Ordering::Acquire);
            if self.pos != self.other {
                if self.patience.settle {
                    wait.step()?;
                }
                return Ok(());
            }
            if self.stop_flag().load(Ordering::Relaxed) != 0 {
                return Err(RingError::Stopped);
            }
            wait.step()?;
        }
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
    yielded: bool,
    since: Option<Instant>,
}

impl SpinWait {
    #[inline]
    fn new(patience: Patience) -> SpinWait {
        SpinWait {
            patience,
            spins: 0,
            yielded: false,
            since: None,
        }
    }

    /// Whether no `sched_yield` has happened yet (the wait is still short).
    #[inline]
    fn spinning(&self) -> bool {
        !self.yielded
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
        self.yielded = true;
        if let Some(timeout) = self.patience.timeout {
            if self.since.get_or_insert_with(Instant::now).elapsed() > timeout {
                return Err(RingError::TimedOut);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mpkit::process::{JoinError, Process};
    use mpkit::{Connection, pipe};

    use super::*;

    /// Like [`Patience::BOUNDED`], but a stuck side gives up within
    /// seconds, so a hang fails the test.
    const TEST: Patience = Patience {
        yield_every: 128,
        timeout: Some(Duration::from_secs(3)),
        settle: true,
    };
    /// The slot size of every test ring.
    const SLOT: usize = 64;
    /// The slots of every test ring.
    const SLOTS: u64 = (RING_BYTES / SLOT) as u64;

    fn message(n: u64) -> [u8; SLOT] {
        let mut m = [0u8; SLOT];
        m[..8].copy_from_slice(&n.to_le_bytes());
        m[SLOT - 8..].copy_from_slice(&(!n).to_le_bytes());
        m
    }

    /// Pops `count` messages, expecting the numbers `from..from + count`.
    fn expect_messages(ring: &mut SpinRing, from: u64, count: u64) -> Result<(), String> {
        let mut buf = [0u8; SLOT];
        for n in from..from + count {
            ring.pop(&mut buf).map_err(|e| format!("pop {n}: {e}"))?;
            if buf != message(n) {
                return Err(format!("message {n} arrived as {:?}", &buf[..8]));
            }
        }
        Ok(())
    }

    /// Joins `child` within a few seconds (killing it otherwise).
    fn join(mut child: Process<Result<(), String>>) -> Result<(), String> {
        match child.join_timeout(Duration::from_secs(10)) {
            Ok(r) => r,
            Err(JoinError::Timeout) => {
                let _ = child.kill();
                let _ = child.join();
                Err("the consumer did not finish".into())
            }
            Err(e) => Err(format!("the consumer: {e}")),
        }
    }

    /// Child: takes `count` numbered messages.
    fn consume((shm, count): (SharedMemory, u64)) -> Result<(), String> {
        let mut ring = SpinRing::attach(shm, SLOT, TEST).ok_or("attach")?;
        expect_messages(&mut ring, 0, count)
    }

    #[test]
    fn messages_arrive_in_order_over_several_laps() {
        let shm = SpinRing::create().expect("create");
        let count = 3 * SLOTS + 5;
        let child =
            Process::spawn(consume, (shm.try_clone().expect("clone"), count)).expect("spawn");
        let mut ring = SpinRing::attach(shm, SLOT, TEST).expect("attach");
        for n in 0..count {
            ring.push(&message(n)).expect("push");
        }
        join(child).expect("the consumer");
    }

    /// Child: takes one message, waits for word from the producer, then
    /// takes the rest.
    fn take_one_then_wait((shm, mut ctl): (SharedMemory, Connection)) -> Result<(), String> {
        let mut ring = SpinRing::attach(shm, SLOT, TEST).ok_or("attach")?;
        expect_messages(&mut ring, 0, 1)?;
        let rest: u64 = ctl.recv().map_err(|e| format!("control: {e}"))?;
        expect_messages(&mut ring, 1, rest)
    }

    /// A producer facing a full ring waits for a batch of room only while
    /// it spins: a consumer that takes one message and then waits for the
    /// producer gets its next message.
    #[test]
    fn a_full_ring_takes_one_more_message_after_one_is_taken() {
        let shm = SpinRing::create().expect("create");
        let (mut ctl, theirs) = pipe(true).expect("pipe");
        let args = (shm.try_clone().expect("clone"), theirs);
        let child = Process::spawn(take_one_then_wait, args).expect("spawn");
        let mut ring = SpinRing::attach(shm, SLOT, TEST).expect("attach");
        assert!(ring.batch > 1, "the ring waits for batches");
        // One slot's worth more than the ring holds: the last push finds one
        // free slot, never a batch.
        for n in 0..=SLOTS {
            ring.push(&message(n)).expect("push");
        }
        ctl.send(&SLOTS).expect("control");
        join(child).expect("the consumer");
    }

    #[test]
    fn messages_larger_than_a_slot_are_refused() {
        let mut ring =
            SpinRing::attach(SpinRing::create().expect("create"), SLOT, TEST).expect("attach");
        assert_eq!(ring.push(&[0; SLOT + 1]), Err(RingError::TooLarge));
        assert_eq!(ring.pop(&mut [0; SLOT + 1]), Err(RingError::TooLarge));
    }
}
