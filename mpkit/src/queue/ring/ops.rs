//! The ring operations: putting and getting records, with the
//! single-message fast paths.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::layout::*;
use super::wait::PATIENT_BYTES;
use super::{EnterFail, GetFail, PutFail, Ring, SideId, Waiting};
use crate::base::spin::spin_until;
use crate::sys;

/// How far ahead of the record it copies a consumer asks for the lines it
/// will read next. Each record's header names where the next one starts,
/// so without this every message would wait for a cache miss of its own.
const PREFETCH_AHEAD: u64 = 512;

impl Ring {
    /// Whether a record of `size` bytes fits at `tail` as message `seq`:
    /// judged from the producers' cached view of the consumers first, then
    /// (one cache miss) from where they really are, which is cached for
    /// next time. The caller has the producers' side.
    #[inline(always)]
    pub(super) fn room(&self, tail: u64, seq: u64, size: u64) -> bool {
        let lease = self.lease(SideId::Producers);
        let cap = self.capacity as u64;
        // The first two terms hold in any sound ring, and so does the
        // third for ages (2^64 bytes); positions another process scribbled
        // read as no room, and the general path, which checks them, reports
        // the damage. They also keep the caller's `tail + size` and
        // `seq + 1` from overflowing.
        let fits = |head: u64, head_seq: u64| {
            head <= tail
                && head_seq <= seq
                && tail.checked_add(size).is_some()
                && seq < u64::MAX
                && (tail - head).saturating_add(size) <= cap
                && (self.maxsize == 0 || seq - head_seq < self.maxsize)
        };
        if fits(
            lease.cached_pos.load(Ordering::Relaxed),
            lease.cached_seq.load(Ordering::Relaxed),
        ) {
            return true;
        }
        let consumers = self.commit(SideId::Consumers);
        let head = consumers.pos.load(Ordering::Acquire);
        let head_seq = consumers.seq.load(Ordering::Acquire);
        lease.cached_pos.store(head, Ordering::Relaxed);
        lease.cached_seq.store(head_seq, Ordering::Relaxed);
        fits(head, head_seq)
    }

    /// The producers' `seq` as the consumers know it: the cached value while
    /// it is ahead of `seq`, else re-read (and cached). The caller has the
    /// consumers' side.
    #[inline(always)]
    pub(super) fn published(&self, seq: u64) -> u64 {
        let lease = self.lease(SideId::Consumers);
        let cached = lease.cached_seq.load(Ordering::Relaxed);
        if cached > seq {
            return cached;
        }
        self.reload_published().0
    }

    /// The producers' `seq`, read now, and their `pos` right after it
    /// (both cached, for [`published`](Self::published) and
    /// [`published_end`](Self::published_end)). The caller has the
    /// consumers' side.
    ///
    /// Producers store `seq` before `pos`, so the `pos` read here may lag
    /// the `seq` (a producer between its two stores) or lead it (a later
    /// commit made between the two loads): a record that ends before it
    /// is published and whole, one that ends past it is settled by
    /// [`settle_end`](Self::settle_end).
    pub(super) fn reload_published(&self) -> (u64, u64) {
        let producers = self.commit(SideId::Producers);
        let tail_seq = producers.seq.load(Ordering::Acquire);
        let tail = producers.pos.load(Ordering::Acquire);
        let lease = self.lease(SideId::Consumers);
        lease.cached_seq.store(tail_seq, Ordering::Relaxed);
        lease.cached_pos.store(tail, Ordering::Relaxed);
        (tail_seq, tail)
    }

    /// The producers' `pos` as last read by
    /// [`reload_published`](Self::reload_published): every byte before it
    /// was written by a producer, whole. The caller has the consumers' side.
    #[inline(always)]
    pub(super) fn published_end(&self) -> u64 {
        self.lease(SideId::Consumers)
            .cached_pos
            .load(Ordering::Relaxed)
    }

    /// Whether a record ending at `end` lies within what the producers
    /// published, when the cached and the re-read `pos` both say it ends
    /// past them: after a spin for their `pos` to reach it, decided with
    /// the producers' side entered (so no producer is between its `seq` and
    /// `pos` stores, and one that died there is repaired on the way in). A record that ends past their `pos` then
    /// has a length another process enlarged: its bytes past the message
    /// were never put, so it is reported (and the consumers moved on, see
    /// [`resync`](Self::resync)) instead of delivered. The caller has the
    /// consumers' side and took nothing yet in this section. Returns the
    /// producers' `seq` and `pos`.
    #[cold]
    fn settle_end<W: Waiting>(
        &self,
        seq: u64,
        head: u64,
        end: u64,
        wait: W,
    ) -> Result<(u64, u64), GetFail<W::GaveUp>> {
        // A producer between its two stores (preempted there) usually
        // finishes within the spin; entering its side would revoke its
        // lease.
        let producers = self.commit(SideId::Producers);
        if spin_until(wait.enter_deadline(), || {
            producers.pos.load(Ordering::Acquire) >= end
        }) {
            return Ok(self.reload_published());
        }
        let section = match self.enter(SideId::Producers, wait.enter_deadline()) {
            Ok(section) => section,
            // A producer stopped inside its section: as if the message were
            // not there yet.
            Err(EnterFail::Busy) => {
                return Err(match wait.timed_out() {
                    Some(gave_up) => GetFail::GaveUp(gave_up),
                    None => GetFail::Io(std::io::ErrorKind::TimedOut.into()),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let (tail_seq, tail) = self.reload_published();
        if end <= tail {
            return Ok((tail_seq, tail));
        }
        let why = format!(
            "message {seq} at byte {head} runs to byte {end}, past the producers' position \
             {tail}"
        );
        // Still in the producers' section: their position is whole.
        let why = self.resync(seq, head, why);
        drop(section);
        Err(GetFail::Corrupt(why))
    }

    /// Puts one message, waiting per `wait` while it does not fit. The
    /// common case (this thread holds the producers' lease, the message
    /// fits without wrapping) is a handful of loads and stores and one copy.
    #[inline]
    pub(crate) fn put_one<W: Waiting>(
        &self,
        msg: &[u8],
        wait: W,
    ) -> Result<(), PutFail<W::GaveUp>> {
        if self.try_put_leased(msg) {
            return self
                .truncated()
                .map_or(Ok(()), |why| Err(PutFail::Corrupt(why)));
        }
        self.put(&[msg], wait).map(|_| ())
    }

    #[inline(always)]
    pub(super) fn try_put_leased(&self, msg: &[u8]) -> bool {
        if msg.len() > self.max_message() {
            return false;
        }
        let Some(busy) = self.enter_leased(SideId::Producers) else {
            return false;
        };
        if self.is_closed() {
            return false;
        }
        let commit = self.commit(SideId::Producers);
        let size = record_size(msg.len());
        let seq = commit.seq.load(Ordering::Relaxed);
        let tail = commit.pos.load(Ordering::Relaxed);
        if tail % RECORD_ALIGN as u64 != 0 || !self.room(tail, seq, size) {
            return false;
        }
        // SAFETY: we have the producers' side (leased, `busy` set and the
        // lease re-checked after the barrier) and the space is free.
        unsafe { self.write_record(tail, seq, msg) };
        // The commit point.
        commit.seq.store(seq + 1, Ordering::Release);
        commit.pos.store(tail + size, Ordering::Release);
        drop(busy);
        self.wake(self.not_empty());
        true
    }

    /// Takes one message, passing it to `sink`, waiting per `wait`; the
    /// counterpart of [`put_one`](Self::put_one).
    #[inline]
    pub(crate) fn get_one<W: Waiting>(
        &self,
        wait: W,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(), GetFail<W::GaveUp>> {
        if self.try_get_leased(&mut sink) {
            return self
                .truncated()
                .map_or(Ok(()), |why| Err(GetFail::Corrupt(why)));
        }
        self.get(1, wait, &mut |bytes| {
            sink(bytes);
            true
        })
        .map(|_| ())
    }

    #[inline(always)]
    pub(super) fn try_get_leased(&self, sink: &mut impl FnMut(&[u8])) -> bool {
        let Some(busy) = self.enter_leased(SideId::Consumers) else {
            return false;
        };
        let commit = self.commit(SideId::Consumers);
        let seq = commit.seq.load(Ordering::Relaxed);
        if self.published(seq) <= seq {
            return false;
        }
        let head = commit.pos.load(Ordering::Relaxed);
        if head % RECORD_ALIGN as u64 != 0 {
            // Scribbled: the general path reports it.
            return false;
        }
        let (len, t, s) = self.header_at(head);
        let cap = self.capacity;
        let off = (head as usize + RECORD_HEADER) & (cap - 1);
        let size = record_size(len);
        if s != seq
            || t != tag(head)
            || off + len > cap
            || head
                .checked_add(size)
                .is_none_or(|end| end > self.published_end())
        {
            // A wrapped body, a bad header, or a record ending past the
            // producers' position as last read: the general path deals.
            return false;
        }
        self.prefetch_after(head, size);
        // SAFETY: published (before the producers' `seq`, read with
        // acquire), in bounds (checked), and stable while we have the side.
        sink(unsafe { std::slice::from_raw_parts(self.data().add(off), len) });
        // The commit point.
        self.commit_taken(&mut self.taker(), seq, seq + 1, head + size);
        drop(busy);
        self.wake(self.not_full());
        true
    }

    /// Asks for the lines that the records after the one at `head` (of
    /// `size` bytes) will use, [`PREFETCH_AHEAD`] bytes on: one line per
    /// line of this record, up to two (longer runs are sequential enough
    /// for the hardware prefetcher).
    #[inline(always)]
    pub(super) fn prefetch_after(&self, head: u64, size: u64) {
        let mask = self.capacity - 1;
        // Wrapping: `head` is another process's word, and only its offset in
        // the ring matters.
        let at = head.wrapping_add(PREFETCH_AHEAD) as usize;
        // SAFETY: the offset is masked into the ring.
        sys::prefetch(unsafe { self.data().add(at & mask) });
        if size > RECORD_ALIGN as u64 {
            // SAFETY: as above.
            sys::prefetch(unsafe { self.data().add(at.wrapping_add(RECORD_ALIGN) & mask) });
        }
    }

    // ----- putting -----------------------------------------------------------

    /// Puts messages, in order, as many as fit at once; waits (per `wait`)
    /// while not even the first fits. Returns how many were put.
    #[inline]
    pub(crate) fn put<W: Waiting>(
        &self,
        messages: &[&[u8]],
        wait: W,
    ) -> Result<usize, PutFail<W::GaveUp>> {
        let put = self.put_untruncated(messages, wait);
        self.truncated()
            .map_or(put, |why| Err(PutFail::Corrupt(why)))
    }

    #[inline(always)]
    fn put_untruncated<W: Waiting>(
        &self,
        messages: &[&[u8]],
        wait: W,
    ) -> Result<usize, PutFail<W::GaveUp>> {
        let max = self.max_message();
        if let Some(big) = messages.iter().find(|m| m.len() > max) {
            return Err(PutFail::TooLarge {
                size: big.len(),
                max,
            });
        }
        if messages.is_empty() {
            return Ok(0);
        }
        loop {
            if self.is_closed() {
                return Err(PutFail::Closed);
            }
            let Some(put) = self.try_put(messages, wait)? else {
                // A member stayed inside the producers' side past the
                // deadline (never without one).
                match wait.timed_out() {
                    Some(gave_up) => return Err(PutFail::GaveUp(gave_up)),
                    None => continue,
                }
            };
            if put > 0 {
                return Ok(put);
            }
            let deadline = wait.deadline().map_err(PutFail::GaveUp)?;
            // Patient: room for a batch, not just for this message (see
            // `PATIENCE`).
            let size = record_size(messages[0].len());
            let (bytes, items) = (
                size.max(PATIENT_BYTES.min(self.capacity as u64 / 4)),
                (self.maxsize / 4).max(1),
            );
            if !self.sleep(
                self.not_full(),
                deadline,
                || self.is_closed() || self.has_room(size, 1),
                Some(&|| self.is_closed() || self.has_room(bytes, items)),
            )? {
                if let Some(gave_up) = wait.timed_out() {
                    return Err(PutFail::GaveUp(gave_up));
                }
            }
        }
    }

    /// One attempt with the producers' side entered; `None` when the side
    /// stayed busy past what `wait` allows.
    #[inline]
    pub(super) fn try_put<W: Waiting>(
        &self,
        messages: &[&[u8]],
        wait: W,
    ) -> Result<Option<usize>, PutFail<W::GaveUp>> {
        let section = match self.enter(SideId::Producers, wait.enter_deadline()) {
            Ok(section) => section,
            Err(EnterFail::Busy) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let commit = self.commit(SideId::Producers);
        let start_seq = commit.seq.load(Ordering::Relaxed);
        let mut seq = start_seq;
        let mut tail = commit.pos.load(Ordering::Relaxed);
        let consumers = self.commit(SideId::Consumers);
        self.check_positions(
            consumers.pos.load(Ordering::Acquire),
            consumers.seq.load(Ordering::Acquire),
            tail,
            seq,
        )
        .map_err(PutFail::Corrupt)?;
        for m in messages {
            let size = record_size(m.len());
            if !self.room(tail, seq, size) {
                break;
            }
            // SAFETY: we have the producers' side and `tail..tail + size` is
            // free (checked against the consumers' position just above).
            unsafe { self.write_record(tail, seq, m) };
            tail += size;
            seq += 1;
        }
        if seq != start_seq {
            // The commit point: the records become visible, whole.
            commit.seq.store(seq, Ordering::Release);
            commit.pos.store(tail, Ordering::Release);
        }
        drop(section);
        if seq != start_seq {
            self.wake(self.not_empty());
        }
        Ok(Some((seq - start_seq) as usize))
    }

    /// Writes the record of message `seq` at `pos`.
    ///
    /// # Safety
    /// The caller has the producers' side and `pos..pos + record_size` is
    /// free space (beyond the published records, before `head + capacity`).
    #[inline]
    unsafe fn write_record(&self, pos: u64, seq: u64, msg: &[u8]) {
        debug_assert!(pos % RECORD_ALIGN as u64 == 0, "checked by every caller");
        let cap = self.capacity;
        let off = (pos as usize) & (cap - 1);
        // SAFETY: the header lies inside the ring, 8-aligned (records start
        // on 64-byte boundaries); consumers may read it (atomically) while
        // it is unpublished, never the body.
        unsafe {
            let p = self.data().add(off);
            (*p.cast::<AtomicU32>()).store(msg.len() as u32, Ordering::Relaxed);
            (*p.add(4).cast::<AtomicU32>()).store(tag(pos), Ordering::Relaxed);
            (*p.add(8).cast::<AtomicU64>()).store(seq, Ordering::Relaxed);
            let body = off + RECORD_HEADER;
            if body + msg.len() <= cap {
                std::ptr::copy_nonoverlapping(msg.as_ptr(), self.data().add(body), msg.len());
            } else {
                let first = cap - body;
                std::ptr::copy_nonoverlapping(msg.as_ptr(), self.data().add(body), first);
                std::ptr::copy_nonoverlapping(
                    msg.as_ptr().add(first),
                    self.data(),
                    msg.len() - first,
                );
            }
        }
    }

    // ----- getting -----------------------------------------------------------

    /// Takes up to `max` messages (at least one, waiting per `wait`), passing
    /// each to `sink` in order, with the consumers' side entered (the sink
    /// copies or decodes; it must not block). Returns how many were taken.
    ///
    /// `sink` returns false to end the batch before the message it was
    /// shown, which then stays first in the queue; the first message of a
    /// batch is taken whatever it returns (so a batch is never empty).
    #[inline]
    pub(crate) fn get<W: Waiting>(
        &self,
        max: usize,
        wait: W,
        sink: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<usize, GetFail<W::GaveUp>> {
        let got = self.get_untruncated(max, wait, sink);
        self.truncated()
            .map_or(got, |why| Err(GetFail::Corrupt(why)))
    }

    #[inline(always)]
    fn get_untruncated<W: Waiting>(
        &self,
        max: usize,
        wait: W,
        sink: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<usize, GetFail<W::GaveUp>> {
        if max == 0 {
            // Nothing asked for: nothing to wait for.
            return Ok(0);
        }
        loop {
            let Some(got) = self.try_get(max, wait, sink)? else {
                // A member stayed inside the consumers' side past the
                // deadline (never without one).
                match wait.timed_out() {
                    Some(gave_up) => return Err(GetFail::GaveUp(gave_up)),
                    None => continue,
                }
            };
            if got > 0 {
                return Ok(got);
            }
            if self.is_closed() && self.len() == 0 {
                return Err(GetFail::Closed);
            }
            let deadline = wait.deadline().map_err(GetFail::GaveUp)?;
            if !self.sleep(
                self.not_empty(),
                deadline,
                || self.len() > 0 || self.is_closed(),
                None,
            )? {
                if let Some(gave_up) = wait.timed_out() {
                    return Err(GetFail::GaveUp(gave_up));
                }
            }
        }
    }

    /// One attempt with the consumers' side entered; `None` when the side
    /// stayed busy past what `wait` allows.
    #[inline]
    pub(super) fn try_get<W: Waiting>(
        &self,
        max: usize,
        wait: W,
        sink: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<Option<usize>, GetFail<W::GaveUp>> {
        let section = match self.enter(SideId::Consumers, wait.enter_deadline()) {
            Ok(section) => section,
            Err(EnterFail::Busy) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let result = self.take(max, wait, sink);
        drop(section);
        if matches!(result, Ok(n) if n > 0) {
            self.wake(self.not_full());
        }
        result.map(Some)
    }

    #[inline]
    pub(super) fn take<W: Waiting>(
        &self,
        max: usize,
        wait: W,
        sink: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<usize, GetFail<W::GaveUp>> {
        let commit = self.commit(SideId::Consumers);
        let mut seq = commit.seq.load(Ordering::Relaxed);
        let mut head = commit.pos.load(Ordering::Relaxed);
        // The cached count and end first: the loop re-reads the real ones
        // when they run out.
        let lease = self.lease(SideId::Consumers);
        let mut tail_seq = lease.cached_seq.load(Ordering::Relaxed);
        let mut tail = lease.cached_pos.load(Ordering::Relaxed);
        let cap = self.capacity;
        let mut taken = 0;
        let mut buf = Vec::new();
        // A long batch frees its space as it goes, so producers can refill
        // the ring while it is drained.
        let commit_every = (cap / 4) as u64;
        let mut committed = head;
        let mut committed_seq = seq;
        let mut taker = self.taker();
        while taken < max {
            if seq >= tail_seq {
                // The cached count ran out: messages put since count too.
                (tail_seq, tail) = self.reload_published();
                if seq >= tail_seq {
                    break;
                }
            }
            let bad = if head % RECORD_ALIGN as u64 != 0 {
                Some(format!(
                    "message {seq} starts at byte {head}, inside a record"
                ))
            } else {
                let (len, t, s) = self.header_at(head);
                let bad_header = s != seq || t != tag(head) || len > self.max_message();
                if bad_header {
                    Some(format!(
                        "message {seq} at byte {head} has a bad header (seq {s}, tag {t}, {len} \
                         bytes)"
                    ))
                } else if head.checked_add(record_size(len)).is_none() {
                    Some(format!("message {seq} at byte {head} ends past byte 2^64"))
                } else {
                    None
                }
            };
            if let Some(why) = bad {
                if taken > 0 {
                    // Deliver what was good; the next get reports the rest.
                    break;
                }
                return Err(GetFail::Corrupt(self.resync(seq, head, why)));
            }
            let (len, _, _) = self.header_at(head);
            let size = record_size(len);
            // Checked above.
            let end = head + size;
            if end > tail {
                // The cached end ran out, or a producer is between its
                // `seq` and `pos` stores, or the length was enlarged by
                // another process.
                (tail_seq, tail) = self.reload_published();
                if end > tail {
                    if taken > 0 {
                        // Deliver what was good; the next get settles it.
                        break;
                    }
                    (tail_seq, tail) = self.settle_end(seq, head, end, wait)?;
                }
            }
            self.prefetch_after(head, size);
            let off = (head as usize + RECORD_HEADER) & (cap - 1);
            if off + len <= cap {
                // Contiguous: hand the ring's own bytes to the sink. They are
                // published (before the producers' `seq`, read with acquire)
                // and no producer writes them until our commit.
                // SAFETY: in bounds (checked); stable while we have the side.
                let bytes = unsafe { std::slice::from_raw_parts(self.data().add(off), len) };
                if !sink(bytes) && taken > 0 {
                    break;
                }
            } else {
                buf.resize(len, 0);
                let first = cap - off;
                // SAFETY: as above; both pieces are inside the ring.
                unsafe {
                    std::ptr::copy_nonoverlapping(self.data().add(off), buf.as_mut_ptr(), first);
                    std::ptr::copy_nonoverlapping(
                        self.data(),
                        buf.as_mut_ptr().add(first),
                        len - first,
                    );
                }
                if !sink(&buf) && taken > 0 {
                    break;
                }
            }
            head += size;
            seq += 1;
            taken += 1;
            if head - committed >= commit_every {
                self.commit_taken(&mut taker, committed_seq, seq, head);
                committed = head;
                committed_seq = seq;
                self.wake(self.not_full());
            }
        }
        if seq > committed_seq {
            // The commit point: the records are consumed.
            self.commit_taken(&mut taker, committed_seq, seq, head);
        }
        Ok(taken)
    }

    /// Checks that the consumers' position (`head`, message `head_seq`) and
    /// the producers' (`tail`, `tail_seq`) describe a ring: both on record
    /// boundaries, the consumers behind the producers by at most the ring,
    /// no more messages between them than records fit, and room for a ring
    /// more of both before 2^64 (which honest counts never come near).
    /// Anything else was written by another process, and acting on it would
    /// write outside the ring, put messages no consumer can see, or
    /// overflow a count.
    pub(super) fn check_positions(
        &self,
        head: u64,
        head_seq: u64,
        tail: u64,
        tail_seq: u64,
    ) -> Result<(), String> {
        let align = RECORD_ALIGN as u64;
        if head % align != 0 || tail % align != 0 {
            return Err(format!(
                "positions {head} (consumers) and {tail} (producers) are not on record boundaries"
            ));
        }
        if head > tail || tail - head > self.capacity as u64 {
            return Err(format!(
                "the consumers are at byte {head} and the producers at byte {tail} of a \
                 {}-byte ring",
                self.capacity
            ));
        }
        if tail.checked_add(2 * self.capacity as u64).is_none()
            || tail_seq.checked_add(self.capacity as u64).is_none()
        {
            return Err(format!(
                "the producers are at byte {tail}, message {tail_seq}: no ring can get there"
            ));
        }
        if head_seq > tail_seq || tail_seq - head_seq > (tail - head) / align {
            return Err(format!(
                "{} messages between message {head_seq} (consumers) and {tail_seq} (producers) \
                 cannot fit in {} bytes",
                tail_seq.wrapping_sub(head_seq),
                tail - head
            ));
        }
        Ok(())
    }

    /// After a bad record at `head` (message `seq`; the caller has the
    /// consumers' side and took nothing yet): moves the consumers past
    /// every published message, so the queue works again from the next
    /// put, and says what was lost. When the producers' position is itself
    /// unusable the consumers stay, and every get reports the damage.
    #[cold]
    fn resync(&self, seq: u64, head: u64, why: String) -> String {
        let producers = self.commit(SideId::Producers);
        let tail_seq = producers.seq.load(Ordering::Acquire);
        let tail = producers.pos.load(Ordering::Acquire);
        if tail % RECORD_ALIGN as u64 != 0 || tail_seq < seq || tail < head {
            return format!("{why}; the producers' position is damaged too");
        }
        let commit = self.commit(SideId::Consumers);
        commit.seq.store(tail_seq, Ordering::Release);
        commit.pos.store(tail, Ordering::Release);
        let lease = self.lease(SideId::Consumers);
        lease.cached_seq.store(tail_seq, Ordering::Relaxed);
        lease.cached_pos.store(tail, Ordering::Relaxed);
        self.wake(self.not_full());
        format!(
            "{why}; messages {seq} to {} were discarded so that the queue works again",
            tail_seq.saturating_sub(1)
        )
    }
}
