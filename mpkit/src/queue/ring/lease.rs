//! Exclusion: each side of the queue is one critical section at a time,
//! entered through a lease or through the side's robust mutex.
//!
//! Each side (producers, consumers) is one critical section at a time.
//! The common case, one thread doing all of a side's work, pays no atomic
//! read-modify-write and no fence: the side is *leased* (biased) to that
//! thread, which enters by storing `busy = 1` in its slot, re-reading
//! `holder` and `revoke`, and leaves by storing `busy = 0`. Any other thread takes the
//! side's robust mutex instead; if the side is leased to someone else, it
//! revokes the lease: it stores `revoke = 1`, runs the heavy half of an
//! asymmetric barrier (`membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, which
//! makes every running thread of every registered process execute a full
//! fence), then waits for the holder's `busy == 0` and clears `holder`.
//! Either the holder's `busy = 1` is visible to the revoker after the
//! barrier (it waits for the section to end), or the holder's re-read sees
//! `revoke` (it steps out and takes the mutex too): the classic Dekker
//! pair, with the fence moved from the hot side to the rare one. A thread
//! that takes the mutex for the same side many times in a row (64, doubling
//! with every revocation, up to 64 Ki) is given the lease, and a slot: the
//! one it already owns, else a free one or one whose thread is gone (with
//! all 16 owned by live threads, it stays on the mutex).
//!
//! Each thread has a `busy` flag of its own because a thread may act on a
//! stale `holder`: it read its own token, was preempted, and meanwhile the
//! lease was revoked and granted to another thread. Its `busy = 1` and the
//! `busy = 0` of its step-out then land late; on one shared flag they
//! would clear the new holder's, and that holder's revoker would go in
//! beside it. In its own slot they touch nothing anyone else reads. Where `membarrier` is not
//! available, the queue is created in symmetric mode and both halves are
//! `SeqCst` fences (slower, same protocol).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::layout::*;
use super::{EnterFail, Ring, SideId};
use crate::base::cell::LockTimeoutError;
use crate::base::spin::{Poll, Spin};
use crate::sys;
use crate::sys::Deadline;

/// Consecutive mutex entries by one thread that earn it the lease.
pub(super) const LEASE_STREAK: u32 = 64;

/// Exclusive access to one side, by lease or by mutex; left on drop
/// (also when a sink panics).
pub(super) enum Section<'a> {
    Leased(#[allow(dead_code)] Busy<'a>),
    Locked(#[allow(dead_code)] Locked<'a>),
}

/// A section entered through the side's mutex.
pub(super) struct Locked<'a> {
    ring: &'a Ring,
    side: SideId,
    me: u64,
}

/// A leased section: leaving it is one store.
pub(super) struct Busy<'a>(&'a AtomicU32);

impl Drop for Busy<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.ring.maybe_lease(self.side, self.me);
        let _ = self.ring.cell(self.side).release(SIDE_LOCK);
    }
}

/// How long a try (`try_put`, `try_get`) waits for a member that is inside
/// its section: long enough for any ordinary section, short enough to
/// count as not blocking. A side held longer (by a stopped member) reads
/// as full (puts) or empty (gets), as in Python when `put_nowait` or
/// `get_nowait` finds the queue's lock taken.
pub(super) const TRY_ENTER: Duration = Duration::from_millis(1);

impl Ring {
    // ----- exclusion ---------------------------------------------------------

    /// Enters `side`'s critical section: through the lease when this thread
    /// holds it, else through the mutex, waiting until `deadline` for a
    /// member that is inside (a try waits at most [`TRY_ENTER`]).
    #[inline]
    pub(super) fn enter(&self, side: SideId, deadline: Deadline) -> Result<Section<'_>, EnterFail> {
        match self.enter_leased(side) {
            Some(busy) => Ok(Section::Leased(busy)),
            None => self.enter_locked(side, deadline).map(Section::Locked),
        }
    }

    #[cold]
    pub(super) fn enter_locked(
        &self,
        side: SideId,
        deadline: Deadline,
    ) -> Result<Locked<'_>, EnterFail> {
        let me = sys::thread_token();
        let owner_died = self
            .cell(side)
            .lock_until(SIDE_LOCK, deadline)
            .map_err(|e| match e {
                LockTimeoutError::Timeout => EnterFail::Busy,
                LockTimeoutError::Io(e) => EnterFail::Io(e),
                // The side's mutex is error-checking: this thread holds it
                // already, inside one of the queue's own operations.
                LockTimeoutError::Deadlock => EnterFail::Reentered,
                corrupt @ LockTimeoutError::Corrupt => EnterFail::Corrupt(format!(
                    "the {} side's lock: {corrupt}",
                    match side {
                        SideId::Producers => "producers'",
                        SideId::Consumers => "consumers'",
                    }
                )),
            })?;
        // From here on, dropping the section releases the mutex.
        let section = Locked {
            ring: self,
            side,
            me,
        };
        let lease = self.lease(side);
        let holder = lease.holder.load(Ordering::Acquire);
        if holder & !SLOT_MASK == me
            && slot_of(holder).is_some_and(|i| self.slot(side, i).busy.load(Ordering::Relaxed) != 0)
        {
            // This thread is inside a leased section of this side already:
            // a sink (a decoder) used the queue it is being called from.
            return Err(EnterFail::Reentered);
        }
        let mut holder_died = false;
        if holder != 0 && holder & !SLOT_MASK != me {
            holder_died = self.revoke(side, holder, deadline)?;
        } else if lease.revoke.load(Ordering::Relaxed) != 0 {
            // A revoker died halfway (the mutex was robust): finish for it.
            lease.revoke.store(0, Ordering::Relaxed);
        }
        // Only a member that died inside its section can leave a commit
        // halfway.
        if owner_died || holder_died {
            self.repair(side);
        }
        Ok(section)
    }

    /// Takes the lease back from its holder, named by the lease word
    /// `holder` (the caller holds the mutex). True when the holder had died
    /// inside its section.
    ///
    /// A holder that stays inside past `deadline` (stopped by a signal or a
    /// debugger, or a lease word a hostile process wrote naming some live
    /// thread) keeps its lease: the revocation is called off and the caller
    /// gets [`EnterFail::Busy`]. Taking over from a holder that lives
    /// would let two members write the same commit once it resumes.
    #[cold]
    pub(super) fn revoke(
        &self,
        side: SideId,
        holder: u64,
        deadline: Deadline,
    ) -> Result<bool, EnterFail> {
        let lease = self.lease(side);
        lease.revoke.store(1, Ordering::SeqCst);
        if let Err(e) = self.heavy_barrier() {
            lease.revoke.store(0, Ordering::SeqCst);
            return Err(EnterFail::Io(e));
        }
        let mut died = false;
        // A word without a valid slot was never written by a grant: there
        // is no section to wait for.
        if let Some(slot) = slot_of(holder).map(|i| self.slot(side, i)) {
            // A slot of this very thread is inside no section: the thread
            // is here, revoking (a re-entry was reported before), so its
            // `busy` was written by another process and only this thread
            // would ever clear it. Clearing it also lets a later grant of
            // the same slot enter.
            if slot.owner.load(Ordering::Relaxed) == sys::thread_token() {
                slot.busy.store(0, Ordering::Relaxed);
            }
            // The holder is inside a section: usually for nanoseconds.
            let mut spin = Spin::new(Poll::Load, deadline);
            let mut nap = Duration::from_micros(20);
            while slot.busy.load(Ordering::Acquire) != 0 {
                if spin.pause() {
                    continue;
                }
                let pid = slot.pid.load(Ordering::Relaxed) as i32;
                let started = slot.start.load(Ordering::Relaxed);
                let tid = slot.owner.load(Ordering::Relaxed) as u32 as i32;
                if !sys::thread_alive(pid, started, tid) {
                    died = true; // killed inside its section: nothing to wait for
                    break;
                }
                let now = Instant::now();
                if let Some(left) = deadline.map(|d| d.saturating_duration_since(now)) {
                    if left.is_zero() {
                        // Called off: the holder keeps the side (see above).
                        lease.revoke.store(0, Ordering::SeqCst);
                        return Err(EnterFail::Busy);
                    }
                    nap = nap.min(left);
                }
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(1));
            }
        }
        lease.holder.store(0, Ordering::Release);
        lease.revoke.store(0, Ordering::Release);
        let r = lease.revocations.load(Ordering::Relaxed);
        lease
            .revocations
            .store(r.saturating_add(1), Ordering::Relaxed);
        lease.streak.store(0, Ordering::Relaxed);
        Ok(died)
    }

    /// Counts a mutex entry by `me`, leasing `side` to it after a long
    /// enough streak (the caller still holds the mutex).
    pub(super) fn maybe_lease(&self, side: SideId, me: u64) {
        let lease = self.lease(side);
        let holder = lease.holder.load(Ordering::Relaxed);
        if holder & !SLOT_MASK == me {
            return;
        }
        let streak = if lease.streak_tid.load(Ordering::Relaxed) == me {
            lease.streak.load(Ordering::Relaxed).saturating_add(1)
        } else {
            lease.streak_tid.store(me, Ordering::Relaxed);
            1
        };
        lease.streak.store(streak, Ordering::Relaxed);
        let needed = LEASE_STREAK << lease.revocations.load(Ordering::Relaxed).min(10);
        // A thread id too large to leave room for the slot number (Linux
        // keeps them below 2^22) just never gets the lease.
        if streak < needed || holder != 0 || me & SLOT_MASK != 0 {
            return;
        }
        // Revokers must be able to tell whether we died mid-section.
        let Some(started) = sys::self_start_time() else {
            return;
        };
        let Some(index) = self.claim_slot(side, me, started) else {
            // Every slot belongs to a live thread: stay on the mutex, and
            // look again only after another full streak (a look reads
            // /proc for each slot).
            lease.streak.store(0, Ordering::Relaxed);
            return;
        };
        lease
            .holder
            .store(me | ((index as u64 + 1) << SLOT_SHIFT), Ordering::Release);
    }

    /// The lease slot of thread `me` (started at `started`): the one it
    /// already owns, else a free one or one whose owner is gone, made its
    /// own. The caller holds `side`'s mutex, so it is the only one writing
    /// slot owners; a thread that is gone writes nothing more.
    pub(super) fn claim_slot(&self, side: SideId, me: u64, started: u64) -> Option<usize> {
        if let Some(i) =
            (0..SLOTS).find(|&i| self.slot(side, i).owner.load(Ordering::Relaxed) == me)
        {
            return Some(i);
        }
        let free = (0..SLOTS).find(|&i| {
            let slot = self.slot(side, i);
            let owner = slot.owner.load(Ordering::Acquire);
            owner == 0
                || !sys::thread_alive(
                    slot.pid.load(Ordering::Relaxed) as i32,
                    slot.start.load(Ordering::Relaxed),
                    owner as u32 as i32,
                )
        })?;
        let slot = self.slot(side, free);
        // The owner last: a claimant killed halfway leaves a free slot or
        // one whose owner is gone.
        slot.busy.store(0, Ordering::Relaxed);
        slot.pid.store(sys::getpid() as u32, Ordering::Relaxed);
        slot.start.store(started, Ordering::Relaxed);
        slot.owner.store(me, Ordering::Release);
        Some(free)
    }

    /// Finishes a commit a dead member of `side` left halfway: `seq` stored,
    /// `pos` not yet, and for consumers the member count that moves with
    /// it (the caller has the side to itself). The records the commit
    /// covers lie whole from `pos` on, naming the messages up to `seq - 1`
    /// one after another: `pos` moves past them. Anything else (the header
    /// at `pos` names `seq` or later, or an older lap) is a whole commit,
    /// left as it is.
    pub(super) fn repair(&self, side: SideId) {
        if side == SideId::Consumers {
            self.repair_tasks();
        }
        let commit = self.commit(side);
        let seq = commit.seq.load(Ordering::Acquire);
        let pos = commit.pos.load(Ordering::Acquire);
        if pos % RECORD_ALIGN as u64 != 0 {
            // Written by another process: left for the checks that report it.
            return;
        }
        let (_, _, first) = self.header_at(pos);
        // A batch is at most a ring of the smallest records.
        if first >= seq || seq - first > (self.capacity / RECORD_ALIGN) as u64 {
            return;
        }
        let mut end = pos;
        for message in first..seq {
            let (len, t, s) = self.header_at(end);
            // A position that would pass 2^64, or a batch longer than the
            // ring, was written by another process: left for the checks
            // that report it.
            let next = end.checked_add(record_size(len));
            if s != message || t != tag(end) || len > self.max_message() {
                return;
            }
            match next {
                Some(next) if next - pos <= self.capacity as u64 => end = next,
                _ => return,
            }
        }
        commit.pos.store(end, Ordering::Release);
    }

    /// The record header at `pos`: `(len, tag, seq)`. A `pos` off a record
    /// boundary (written by another process) reads the header of the record
    /// it falls in, never outside the ring; callers check the alignment.
    pub(super) fn header_at(&self, pos: u64) -> (usize, u32, u64) {
        let off = (pos as usize) & (self.capacity - 1) & !(RECORD_ALIGN - 1);
        // SAFETY: `off` is a multiple of 64 below the capacity (itself a
        // multiple of 64), so the 16-byte header lies inside the ring,
        // 8-aligned; it is read atomically because a producer may be writing
        // it (then it names a newer message).
        unsafe {
            let p = self.data().add(off);
            let len = (*p.cast::<AtomicU32>()).load(Ordering::Relaxed);
            let t = (*p.add(4).cast::<AtomicU32>()).load(Ordering::Relaxed);
            let s = (*p.add(8).cast::<AtomicU64>()).load(Ordering::Relaxed);
            (len as usize, t, s)
        }
    }

    #[inline(always)]
    pub(super) fn enter_leased(&self, side: SideId) -> Option<Busy<'_>> {
        let lease = self.lease(side);
        let me = sys::thread_token();
        let word = lease.holder.load(Ordering::Relaxed);
        if word & !SLOT_MASK != me {
            return None;
        }
        // A word naming this thread names its own slot (grants write no
        // other), and the slot stays its own while it lives: even if the
        // word is stale by now, this store touches no one else's flag.
        self.enter_as(side, word)
    }

    /// The rest of [`enter_leased`](Self::enter_leased), once `word` (this
    /// thread's token and slot) has been read from the lease.
    #[inline(always)]
    pub(super) fn enter_as(&self, side: SideId, word: u64) -> Option<Busy<'_>> {
        let lease = self.lease(side);
        let slot = self.slot(side, slot_of(word)?);
        if slot.busy.load(Ordering::Relaxed) != 0 {
            // Already inside (a decoder that uses the same queue): the
            // inner exit would end the outer section early.
            // `enter_locked` reports the re-entry instead.
            return None;
        }
        slot.busy.store(1, Ordering::Relaxed);
        let busy = Busy(&slot.busy);
        self.light_barrier();
        (lease.revoke.load(Ordering::Acquire) == 0 && lease.holder.load(Ordering::Acquire) == word)
            .then_some(busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::segment::ObjectKind;
    use std::sync::mpsc;

    fn ring() -> Ring {
        Ring::create(ObjectKind::Queue, crate::queue::bytes_elem(), None, 0, 4096).unwrap()
    }

    /// Takes `side`'s mutex until this thread is granted the lease (the
    /// streak a busy thread builds up); the lease word, if it was granted.
    fn try_lease(ring: &Ring, side: SideId) -> Option<u64> {
        let me = sys::thread_token();
        for _ in 0..=LEASE_STREAK {
            let section = ring.enter_locked(side, None).unwrap();
            // Streaks of 64, not 64 Ki after many handovers.
            ring.lease(side).revocations.store(0, Ordering::Relaxed);
            drop(section);
            let word = ring.lease(side).holder.load(Ordering::Relaxed);
            if word & !SLOT_MASK == me {
                return Some(word);
            }
        }
        None
    }

    fn lease_to_me(ring: &Ring, side: SideId) -> u64 {
        try_lease(ring, side).expect("a lease after a full streak")
    }

    fn busy(ring: &Ring, side: SideId, word: u64) -> u32 {
        ring.slot(side, slot_of(word).unwrap())
            .busy
            .load(Ordering::SeqCst)
    }

    /// A thread reads its own token from the lease and is preempted; its
    /// lease is revoked and granted to B, who enters. The stale thread's
    /// `busy = 1` and step-out `busy = 0` land now: they must not clear
    /// B's flag, and a revoker must still wait for B to leave. (With one
    /// `busy` per side they did, and the revoker went in beside B.)
    #[test]
    fn a_stale_lease_check_leaves_the_new_holders_flag_alone() {
        let ring = &ring();
        let side = SideId::Producers;
        std::thread::scope(|s| {
            let (to_a, a_hears) = mpsc::channel::<()>();
            let (to_b, b_hears) = mpsc::channel::<u64>();
            let a = s.spawn(move || {
                let stale = lease_to_me(ring, side);
                to_b.send(stale).unwrap();
                a_hears.recv().unwrap(); // B holds the lease and is inside
                assert!(
                    ring.enter_as(side, stale).is_none(),
                    "a revoked lease let A in"
                );
                to_b.send(0).unwrap();
                // A as a revoker: it may only get in once B is out.
                let section = ring.enter_locked(side, None).unwrap();
                to_b.send(1).unwrap();
                drop(section);
            });
            let stale = b_hears.recv().unwrap();
            let word = lease_to_me(ring, side);
            assert_ne!(slot_of(word), slot_of(stale), "two threads share a slot");
            let inside = ring.enter_leased(side).expect("B holds the lease");
            assert_eq!(busy(ring, side, word), 1);
            to_a.send(()).unwrap();
            assert_eq!(b_hears.recv().unwrap(), 0);
            assert_eq!(busy(ring, side, word), 1, "A's step-out cleared B's flag");
            // The revoker is waiting for B (it cannot have got in: B's flag
            // is set and B is alive); B leaves and it goes in.
            assert!(b_hears.try_recv().is_err(), "A got in beside B");
            drop(inside);
            assert_eq!(b_hears.recv().unwrap(), 1);
            a.join().unwrap();
        });
    }

    /// A thread inside its leased section that enters the same side again
    /// (a decoder using its own queue) gets an error, not a second section.
    #[test]
    fn reentering_a_side_is_an_error() {
        let ring = ring();
        let side = SideId::Consumers;
        lease_to_me(&ring, side);
        let outer = ring.enter_leased(side).expect("the holder enters");
        assert!(ring.enter_leased(side).is_none());
        let inner = ring.enter(side, None).map(|_| ());
        assert!(matches!(inner, Err(EnterFail::Reentered)));
        drop(outer);
        assert!(ring.enter_leased(side).is_some());
    }

    /// A thread keeps its slot from one grant to the next, and the slots of
    /// threads that are gone are handed out again, so threads that come and
    /// go never run the table out.
    #[test]
    fn lease_slots_are_kept_and_reclaimed() {
        let ring = ring();
        let side = SideId::Consumers;
        let first = lease_to_me(&ring, side);
        std::thread::scope(|s| {
            s.spawn(|| lease_to_me(&ring, side)).join().unwrap();
        });
        assert_eq!(slot_of(lease_to_me(&ring, side)), slot_of(first));
        // Threads that each take the lease and exit: more than there are
        // slots, each one finds a slot.
        for _ in 0..2 * SLOTS {
            let tid = std::thread::scope(|s| {
                s.spawn(|| {
                    lease_to_me(&ring, side);
                    sys::gettid()
                })
                .join()
                .unwrap()
            });
            // `join` returns a little before the kernel removes the thread
            // from /proc, which is what reclaiming its slot looks at.
            let task = format!("/proc/self/task/{tid}");
            while std::path::Path::new(&task).exists() {
                std::thread::yield_now();
            }
        }
        // Live threads holding slots: with ours and 15 more, the table is
        // full, and the next thread stays on the mutex (no lease, and no
        // one else's slot).
        std::thread::scope(|s| {
            let mut holders = Vec::new();
            let mut words = vec![lease_to_me(&ring, side)];
            for _ in 1..SLOTS {
                let (release, wait) = mpsc::channel::<()>();
                let (tell, word) = mpsc::channel::<u64>();
                let ring = &ring;
                holders.push((
                    release,
                    s.spawn(move || {
                        tell.send(lease_to_me(ring, side)).unwrap();
                        let _ = wait.recv();
                    }),
                ));
                words.push(word.recv().unwrap());
            }
            let mut slots: Vec<_> = words.iter().map(|&w| slot_of(w).unwrap()).collect();
            slots.sort_unstable();
            slots.dedup();
            assert_eq!(slots.len(), SLOTS, "live threads share a slot");
            let left_over = s.spawn(|| {
                let word = try_lease(&ring, side);
                // It still gets in, through the mutex.
                drop(ring.enter(side, None).unwrap());
                word
            });
            assert_eq!(left_over.join().unwrap(), None);
            for (release, h) in holders {
                drop(release);
                h.join().unwrap();
            }
        });
    }

    /// A member killed between the `seq` and the `pos` store of a batch
    /// commit: the repair moves `pos` past every record of the batch (not
    /// just one), on both sides, and leaves a whole commit as it is.
    #[test]
    fn a_batch_committed_halfway_is_repaired() {
        let ring = ring();
        let wide = [7u8; 100];
        // Records of 64, 128 and 64 bytes.
        assert_eq!(
            ring.put(&[b"a", &wide, b"c"], super::super::Forever)
                .unwrap(),
            3
        );
        let producers = ring.commit(SideId::Producers);
        assert_eq!(producers.pos.load(Ordering::Relaxed), 256);
        ring.repair(SideId::Producers);
        assert_eq!(producers.pos.load(Ordering::Relaxed), 256, "a whole commit");
        producers.pos.store(0, Ordering::Relaxed);
        ring.repair(SideId::Producers);
        assert_eq!(producers.pos.load(Ordering::Relaxed), 256);

        let mut got = Vec::new();
        let taken = ring.get(2, super::super::Forever, &mut |b| {
            got.push(b.to_vec());
            true
        });
        assert_eq!(taken.unwrap(), 2);
        assert_eq!(got, [b"a".to_vec(), wide.to_vec()]);
        let consumers = ring.commit(SideId::Consumers);
        assert_eq!(consumers.pos.load(Ordering::Relaxed), 192);
        consumers.pos.store(0, Ordering::Relaxed);
        ring.repair(SideId::Consumers);
        assert_eq!(consumers.pos.load(Ordering::Relaxed), 192);
        ring.repair(SideId::Consumers);
        assert_eq!(consumers.pos.load(Ordering::Relaxed), 192, "a whole commit");
        let mut last = Vec::new();
        ring.get_one(super::super::Forever, |b| last = b.to_vec())
            .unwrap();
        assert_eq!(last, b"c");
    }
}
