//! A `JoinableQueue`'s unfinished tasks: who holds them, `task_done`,
//! and `join`.
//!
//! A task is unfinished from its `put` until a `task_done`. Between its
//! `get` and that `task_done` it is *held* by the process that took it,
//! its member: each process that takes from the queue claims a member slot
//! (inside the consumers' section; the table has [`MEMBER_SLOTS`]), whose
//! `taken` counts the messages it took and `done` the tasks finished. So
//! when a member dies, what it held is `taken - done`, and `join` reports
//! it instead of waiting for good: the joiner that finds the dead member
//! clears its tasks (moves `done` up to `taken` with a compare-and-swap,
//! which one joiner wins, and that one reports) and frees the slot.
//!
//! # Counting a task done
//! The tasks done are the join block's `done` (tasks no member held:
//! marked done before they were taken, or taken untracked) plus every
//! member's `done`, and they must never pass the messages put (`put`, the
//! producers' `seq`): a `task_done` beyond that is one too many. Each
//! count is judged in one step with its move, by keeping
//!
//! > join block's `done` + Σ members' `taken` ≤ `put`
//!
//! (and each member's `done ≤ taken`), which bounds the total:
//! - A `task_done` counts against a member holding a task (its own slot
//!   first, else any: a task handed on) with one compare-and-swap of that
//!   member's `done` below its `taken`: lock-free, the common case.
//! - Else, in a joinable queue, it enters the consumers' section, where
//!   `taken` and the join block's `done` hold still (only the section
//!   moves them), looks at the members again, and counts in the join
//!   block only while the sum above stays below `put` (which only grows),
//!   else refuses. So it waits, as a get does, while a consumer is
//!   inside the section. Without the section, a task counted here while
//!   its message was queued would be counted again against the member
//!   that took it.
//! - A consumer's commit does not count as held the messages it takes
//!   beyond what the sum allows: their tasks were marked done before they
//!   were taken (`taken_after` is lowered by that many, in the journal
//!   too).
//! - A queue that is not joinable has no members: the join block's `done`
//!   is the whole count, moved by a compare-and-swap against `put`.
//!
//! # Crash safety
//! - `taken` moves with the consumers' commit. Both cannot be one store, so
//!   the committing consumer first writes the journal (`seq_after`,
//!   `taken_after`, then the member), then commits `seq`, then stores
//!   `taken`, then clears the journal. A consumer killed in between dies
//!   inside its section, which the next member to enter learns of (the
//!   robust mutex, or the dead lease holder's `busy`) and repairs: if the
//!   consumers' `seq` reached `seq_after`, the member's `taken` becomes
//!   `taken_after`; either way the journal is cleared. A joiner enters the
//!   consumers' section before it clears a dead member's tasks, so the
//!   repair has run.
//! - `done` moves by one compare-and-swap per `task_done` (never above
//!   `taken`), and by one when a joiner clears a dead member's tasks; the
//!   join block's `done` by one compare-and-swap per `task_done` counted
//!   against no member. Each is the count's only store, so a process
//!   killed at any instruction has counted the task or not.
//!   Slots keep their counts when their owner changes (a new owner starts
//!   with `taken == done`), so nothing is ever reset.
//! - A process that finds the table full takes untracked: its tasks count
//!   as unfinished but held by nobody known, and `join` waits for them as
//!   before (its timeout report counts them as `untracked`).
//!
//! Messages are not kept after they are taken, so a dead member's tasks
//! cannot be put back in the queue: they are reported, and it is for the
//! caller to redo them.

use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::layout::*;
use super::{EnterFail, Ring, SideId};
use crate::base::segment::WAKE_SLICE;
use crate::sys::{self, Deadline, FutexWait};

/// How often a waiting `join` looks for dead members while tasks are held.
pub(crate) const RECHECK: Duration = Duration::from_millis(100);

/// A member's share of the unfinished tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemberTasks {
    pub(crate) pid: i32,
    pub(crate) count: u64,
}

/// What a `join` that timed out was waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) unfinished: u64,
    pub(crate) queued: u64,
    pub(crate) held: Vec<MemberTasks>,
    pub(crate) untracked: u64,
}

/// Why `join` returned without every task done.
#[derive(Debug)]
pub(crate) enum JoinFail {
    TimedOut(Pending),
    Lost(Vec<MemberTasks>),
    /// The counts contradict each other (written by another process).
    Corrupt(String),
    Io(io::Error),
}

/// The member taking messages in the current consumers' section.
pub(super) struct Taker<'a> {
    member: &'a Member,
    index: u32,
    taken: u64,
}

/// Counts one task done against `m` if its `done` is below `taken`: one
/// compare-and-swap.
fn count_below(m: &Member, taken: u64) -> bool {
    let mut done = m.done.load(Ordering::SeqCst);
    while done < taken {
        match m
            .done
            .compare_exchange_weak(done, done + 1, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => return true,
            Err(now) => done = now,
        }
    }
    false
}

impl Ring {
    fn member(&self, index: usize) -> &Member {
        self.at(MEMBERS + (index % MEMBER_SLOTS) * std::mem::size_of::<Member>())
    }

    fn journal(&self) -> &TaskJournal {
        self.at(JOURNAL)
    }

    fn members(&self) -> impl Iterator<Item = &Member> {
        (0..MEMBER_SLOTS).map(|i| self.member(i))
    }

    /// This process's member slot, for the consumers' section the caller
    /// is in; `None` when the queue is not joinable or this process takes
    /// untracked.
    #[inline]
    pub(super) fn taker(&self) -> Option<Taker<'_>> {
        if !self.joinable {
            return None;
        }
        self.taker_slow()
    }

    fn taker_slow(&self) -> Option<Taker<'_>> {
        let me = sys::process_token()?;
        let hint = self.member_hint.load(Ordering::Relaxed);
        let index = match hint {
            // The table was full: take a slot that came free since (a
            // joiner freed a dead member's), without asking /proc again.
            u32::MAX => {
                let free = (0..MEMBER_SLOTS)
                    .find(|&i| self.member(i).owner.load(Ordering::Acquire) == 0)?;
                self.member(free).owner.store(me, Ordering::Release);
                free
            }
            1.. if self.member(hint as usize - 1).owner.load(Ordering::Relaxed) == me => {
                hint as usize - 1
            }
            _ => match self.claim_member(me) {
                Some(i) => i,
                None => {
                    self.member_hint.store(u32::MAX, Ordering::Relaxed);
                    return None;
                }
            },
        };
        self.member_hint.store(index as u32 + 1, Ordering::Relaxed);
        let member = self.member(index);
        Some(Taker {
            member,
            index: index as u32,
            taken: member.taken.load(Ordering::Relaxed),
        })
    }

    /// Finds or claims `me`'s slot (the caller is in the consumers'
    /// section, so no other claim runs): its own, else a free one, else
    /// one whose owner died holding no task.
    fn claim_member(&self, me: u64) -> Option<usize> {
        if let Some(i) =
            (0..MEMBER_SLOTS).find(|&i| self.member(i).owner.load(Ordering::Acquire) == me)
        {
            return Some(i);
        }
        let free = |i: &usize| {
            let m = self.member(*i);
            let owner = m.owner.load(Ordering::Acquire);
            owner == 0
                || (m.taken.load(Ordering::Acquire) <= m.done.load(Ordering::Acquire)
                    && !sys::token_alive(owner))
        };
        let i = (0..MEMBER_SLOTS).find(|&i| self.member(i).owner.load(Ordering::Acquire) == 0);
        let i = i.or_else(|| (0..MEMBER_SLOTS).find(free))?;
        self.member(i).owner.store(me, Ordering::Release);
        Some(i)
    }

    /// The consumers' commit of messages up to `seq` (`from` before), the
    /// ring free up to byte `pos`; for a joinable queue, with the taking
    /// member's count, journalled (see the module docs).
    #[inline(always)]
    pub(super) fn commit_taken(
        &self,
        taker: &mut Option<Taker<'_>>,
        from: u64,
        seq: u64,
        pos: u64,
    ) {
        let commit = self.commit(SideId::Consumers);
        match taker {
            None => commit.seq.store(seq, Ordering::Release),
            Some(t) => {
                let took = seq.saturating_sub(from);
                let after = t
                    .taken
                    .saturating_add(took - self.done_before_taken(seq, took));
                let journal = self.journal();
                journal.seq_after.store(seq, Ordering::Relaxed);
                journal.taken_after.store(after, Ordering::Relaxed);
                journal.member.store(t.index + 1, Ordering::Release);
                commit.seq.store(seq, Ordering::Release);
                t.member.taken.store(after, Ordering::Release);
                journal.member.store(0, Ordering::Release);
                t.taken = after;
            }
        }
        commit.pos.store(pos, Ordering::Release);
    }

    /// After a consumer died inside its section (the caller is in it now):
    /// finishes or drops the member count it was moving.
    pub(super) fn repair_tasks(&self) {
        let journal = self.journal();
        let slot = journal.member.load(Ordering::Acquire) as usize;
        if slot == 0 {
            return;
        }
        if slot <= MEMBER_SLOTS
            && self.commit(SideId::Consumers).seq.load(Ordering::Acquire)
                >= journal.seq_after.load(Ordering::Acquire)
        {
            let member = self.member(slot - 1);
            let after = journal.taken_after.load(Ordering::Acquire);
            member.taken.fetch_max(after, Ordering::AcqRel);
        }
        journal.member.store(0, Ordering::Release);
    }

    /// Tasks marked done (or cleared) in all.
    fn done_total(&self) -> u64 {
        self.members()
            .fold(self.join_block().done.load(Ordering::SeqCst), |sum, m| {
                sum.saturating_add(m.done.load(Ordering::SeqCst))
            })
    }

    /// Unfinished tasks, as [`unfinished`](Self::unfinished), or why the
    /// counts cannot be: more tasks done than messages were ever put,
    /// which only another process writing the counts can make (a
    /// `task_done` moves them only while some task is unfinished). The
    /// done count is read first: every task is put before it is marked
    /// done, so a count read after it covers it.
    fn unfinished_checked(&self) -> Result<u64, String> {
        let done = self.done_total();
        let put = self.commit(SideId::Producers).seq.load(Ordering::SeqCst);
        put.checked_sub(done).ok_or_else(|| {
            format!(
                "the queue counts {done} tasks done of {put} ever put: its shared memory was \
                 overwritten"
            )
        })
    }

    /// Unfinished tasks: messages ever put minus tasks done.
    pub(crate) fn unfinished(&self) -> u64 {
        self.commit(SideId::Producers)
            .seq
            .load(Ordering::SeqCst)
            .saturating_sub(self.done_total())
    }

    /// Marks one task done; false if there was none unfinished. The task
    /// is counted against this process's slot when it holds one, else
    /// against any member holding one (a task handed on to another
    /// process), else against none (a task marked done before it was
    /// taken, or taken untracked). Each judgement is one step with its
    /// count (see the module docs), so racing calls never count more
    /// tasks done than were put.
    pub(crate) fn task_done(&self) -> bool {
        let counted = self.count_held()
            || if self.joinable {
                self.count_unheld_in_section()
            } else {
                self.count_unheld()
            };
        if counted {
            self.wake_joiners();
        }
        counted
    }

    /// Counts one task done against a member holding one (this process's
    /// slot first): a compare-and-swap of its `done` below its `taken`.
    /// False if no member holds one.
    fn count_held(&self) -> bool {
        let me = sys::process_token().unwrap_or(0);
        // This process's slot, as its gets found it (checked: the hint
        // is only this handle's memory).
        let hint = self.member_hint.load(Ordering::Relaxed) as usize;
        let is_mine = |m: &&Member| me != 0 && m.owner.load(Ordering::Relaxed) == me;
        let mine = (1..=MEMBER_SLOTS)
            .contains(&hint)
            .then(|| self.member(hint - 1))
            .filter(is_mine)
            // Another handle of this process may have taken the task.
            .or_else(|| self.members().find(is_mine));
        mine.into_iter()
            .chain(self.members())
            .any(|m| count_below(m, m.taken.load(Ordering::SeqCst)))
    }

    /// Counts one task done against no member, if any is unfinished: one
    /// compare-and-swap of the join block's `done` against the total it
    /// read. Exact where no member takes (a queue that is not joinable):
    /// the join block's `done` is then the whole done count, and `put`
    /// only grows.
    fn count_unheld(&self) -> bool {
        let ctl = self.join_block();
        let mut done = ctl.done.load(Ordering::SeqCst);
        loop {
            if self.unfinished() == 0 {
                return false;
            }
            match ctl
                .done
                .compare_exchange_weak(done, done + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(now) => done = now,
            }
        }
    }

    /// [`count_unheld`](Self::count_unheld) for a joinable queue, inside
    /// the consumers' section, where every member's `taken` and the join
    /// block's `done` hold still: the task is counted only while the join
    /// block's `done` plus every `taken` stays below the messages put,
    /// the invariant that keeps a task from being counted both here and
    /// against the member that takes its message.
    #[cold]
    fn count_unheld_in_section(&self) -> bool {
        let _section = match self.enter(SideId::Consumers, None) {
            Ok(section) => section,
            // The side's lock was overwritten (`Corrupt`, or an error from
            // the kernel), or this thread is inside a get: the lock-free
            // judgement, exact unless a consumer commits meanwhile; the
            // queue's next get, put or join reports a broken lock.
            Err(_) => return self.count_unheld(),
        };
        // One more look at the members (a task taken since the look
        // outside the section), summing their `taken` on the way.
        let mut taken = 0u64;
        for m in self.members() {
            let held = m.taken.load(Ordering::SeqCst);
            if count_below(m, held) {
                return true;
            }
            taken = taken.saturating_add(held);
        }
        let ctl = self.join_block();
        let mut done = ctl.done.load(Ordering::SeqCst);
        loop {
            // Read last: every member was seen with `done == taken`, so a
            // refusal is right as of this read.
            let put = self.commit(SideId::Producers).seq.load(Ordering::SeqCst);
            if done.saturating_add(taken) >= put {
                return false;
            }
            match ctl
                .done
                .compare_exchange(done, done + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                // Only a process outside this protocol moves it meanwhile.
                Err(now) => done = now,
            }
        }
    }

    /// Of `took` messages being committed (the consumers' `seq` to become
    /// `seq`), those whose tasks were marked done before they were taken:
    /// the taker does not hold them. They are what the join block's
    /// `done` plus every member's `taken` would exceed the messages put
    /// by (see the module docs). Called inside the consumers' section.
    #[inline(always)]
    fn done_before_taken(&self, seq: u64, took: u64) -> u64 {
        match self.join_block().done.load(Ordering::Acquire) {
            0 => 0,
            done => self.done_before_taken_slow(done, seq, took),
        }
    }

    #[cold]
    fn done_before_taken_slow(&self, done: u64, seq: u64, took: u64) -> u64 {
        let put = self.commit(SideId::Producers).seq.load(Ordering::Acquire);
        // Members took no more than the messages taken before these: no
        // excess while `done` fits in what stays queued.
        if done <= put.saturating_sub(seq) {
            return 0;
        }
        let taken = self.members().fold(0u64, |sum, m| {
            sum.saturating_add(m.taken.load(Ordering::Acquire))
        });
        done.saturating_add(taken)
            .saturating_add(took)
            .saturating_sub(put)
            .min(took)
    }

    fn wake_joiners(&self) {
        let ctl = self.join_block();
        // Both loads follow the caller's SeqCst update, and a joiner counts
        // itself before its last look: either order sees a sleeper.
        if ctl.waiters.load(Ordering::SeqCst) > 0 && self.unfinished() == 0 {
            ctl.epoch.fetch_add(1, Ordering::SeqCst);
            sys::futex_wake(&ctl.epoch, u32::MAX);
        }
    }

    /// Members holding tasks, with their owner and count.
    fn holders(&self) -> impl Iterator<Item = (&Member, u64, u64)> {
        self.members().filter_map(|m| {
            let owner = m.owner.load(Ordering::Acquire);
            let held = m
                .taken
                .load(Ordering::Acquire)
                .saturating_sub(m.done.load(Ordering::Acquire));
            (owner != 0 && held > 0).then_some((m, owner, held))
        })
    }

    /// What `join` is waiting for.
    pub(crate) fn pending(&self) -> Pending {
        let unfinished = self.unfinished();
        let queued = self.len() as u64;
        let held: Vec<MemberTasks> = self
            .holders()
            .map(|(_, owner, count)| MemberTasks {
                pid: sys::token_pid(owner),
                count,
            })
            .collect();
        let known = held.iter().fold(queued, |s, h| s.saturating_add(h.count));
        Pending {
            unfinished,
            queued,
            held,
            untracked: unfinished.saturating_sub(known),
        }
    }

    /// Clears the tasks of members that died holding some, and frees
    /// their slots; what was cleared. Waits for the consumers' section
    /// until `deadline` (nothing cleared if it stays busy).
    fn clear_dead(&self, deadline: Deadline) -> Result<Vec<MemberTasks>, JoinFail> {
        // The section: a consumer that died moving a member's count is
        // repaired on the way in, and no claim runs meanwhile.
        let section = match self.enter(SideId::Consumers, deadline) {
            Ok(section) => section,
            Err(EnterFail::Busy | EnterFail::Reentered) => return Ok(Vec::new()),
            Err(EnterFail::Io(e)) => return Err(JoinFail::Io(e)),
            Err(EnterFail::Corrupt(why)) => return Err(JoinFail::Corrupt(why)),
        };
        let mut lost = Vec::new();
        for m in self.members() {
            let owner = m.owner.load(Ordering::Acquire);
            let taken = m.taken.load(Ordering::Acquire);
            if owner == 0 || m.done.load(Ordering::Acquire) >= taken || sys::token_alive(owner) {
                continue;
            }
            // Racing with a task_done for this member's task (by another
            // process) or another joiner: one compare-and-swap wins.
            let mut done = m.done.load(Ordering::Acquire);
            while done < taken {
                match m
                    .done
                    .compare_exchange(done, taken, Ordering::SeqCst, Ordering::SeqCst)
                {
                    Ok(_) => {
                        lost.push(MemberTasks {
                            pid: sys::token_pid(owner),
                            count: taken - done,
                        });
                        break;
                    }
                    Err(now) => done = now,
                }
            }
            m.owner.store(0, Ordering::Release);
        }
        drop(section);
        if !lost.is_empty() {
            self.wake_joiners();
        }
        Ok(lost)
    }

    /// Waits until every task put so far is done. A member found dead
    /// holding tasks has them cleared and reported ([`JoinFail::Lost`]);
    /// at `deadline`, what is still unfinished ([`JoinFail::TimedOut`]);
    /// more done than put, [`JoinFail::Corrupt`] (never a `join` that
    /// returns with tasks unfinished).
    pub(crate) fn join(&self, deadline: Deadline) -> Result<(), JoinFail> {
        let ctl = self.join_block();
        loop {
            let epoch = ctl.epoch.load(Ordering::SeqCst);
            if self.unfinished_checked().map_err(JoinFail::Corrupt)? == 0 {
                // Zeros where a cut file was read are not "all done".
                if let Some(truncated) = self.truncated() {
                    return Err(JoinFail::Corrupt(truncated));
                }
                return Ok(());
            }
            // A member that died will never call task_done: look before
            // sleeping, and sleep no longer than RECHECK while tasks are
            // held.
            // In slices, as every sleeper on a segment (`WAKE_SLICE`).
            let slice = Instant::now() + WAKE_SLICE;
            let mut until = Some(deadline.map_or(slice, |d| d.min(slice)));
            if self.holders().next().is_some() {
                if self.holders().any(|(_, owner, _)| !sys::token_alive(owner)) {
                    let lost = self.clear_dead(deadline)?;
                    if !lost.is_empty() {
                        return Err(JoinFail::Lost(lost));
                    }
                }
                let recheck = Instant::now() + RECHECK;
                until = until.map(|u| u.min(recheck));
            }
            ctl.waiters.fetch_add(1, Ordering::SeqCst);
            let r = if self.unfinished() == 0 {
                Ok(FutexWait::Woken)
            } else {
                sys::futex_wait(&ctl.epoch, epoch, until)
            };
            ctl.waiters.fetch_sub(1, Ordering::SeqCst);
            if r.map_err(JoinFail::Io)? == FutexWait::TimedOut
                && deadline.is_some_and(|d| Instant::now() >= d)
            {
                return match self.unfinished_checked().map_err(JoinFail::Corrupt)? {
                    0 if self.truncated().is_none() => Ok(()),
                    0 => Err(JoinFail::Corrupt(self.truncated().unwrap_or_default())),
                    _ => Err(JoinFail::TimedOut(self.pending())),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::segment::ObjectKind;

    fn ring() -> Ring {
        Ring::create(
            ObjectKind::JoinableQueue,
            crate::queue::bytes_elem(),
            None,
            0,
            4096,
        )
        .unwrap()
    }

    fn put(ring: &Ring, n: usize) {
        for _ in 0..n {
            ring.put_one(b"task", super::super::Forever).unwrap();
        }
    }

    /// A process that died long ago: our pid with another start time.
    fn ghost() -> u64 {
        sys::process_token().unwrap() + (1 << sys::TOKEN_PID_BITS)
    }

    /// A consumer killed after its commit, before it moved its member's
    /// `taken`: the repair moves it, and a join then reports the tasks.
    #[test]
    fn a_consumer_killed_between_its_commit_and_its_count_is_repaired() {
        let ring = ring();
        put(&ring, 3);
        let mut got = 0;
        ring.get(2, super::super::Forever, &mut |_| {
            got += 1;
            true
        })
        .unwrap();
        assert_eq!(got, 2);
        // Replay the dead consumer: slot 3 is a dead process's, which
        // committed the 2 messages (the consumers' seq is 2) but died
        // before storing taken = 2.
        let mine = ring.member(0);
        mine.owner.store(0, Ordering::SeqCst);
        mine.taken.store(0, Ordering::SeqCst);
        let dead = ring.member(3);
        dead.owner.store(ghost(), Ordering::SeqCst);
        let journal = ring.journal();
        journal.seq_after.store(2, Ordering::SeqCst);
        journal.taken_after.store(2, Ordering::SeqCst);
        journal.member.store(4, Ordering::SeqCst);
        ring.repair(SideId::Consumers);
        assert_eq!(dead.taken.load(Ordering::SeqCst), 2);
        assert_eq!(journal.member.load(Ordering::SeqCst), 0);
        // Had it died before its commit, its count would stay.
        journal.seq_after.store(3, Ordering::SeqCst);
        journal.taken_after.store(3, Ordering::SeqCst);
        journal.member.store(4, Ordering::SeqCst);
        ring.repair(SideId::Consumers);
        assert_eq!(dead.taken.load(Ordering::SeqCst), 2);
        // 2 lost with the dead member, 1 queued.
        assert_eq!(ring.unfinished(), 3);
        match ring.join(None) {
            Err(JoinFail::Lost(lost)) => assert_eq!(
                lost,
                vec![MemberTasks {
                    pid: sys::getpid(),
                    count: 2
                }]
            ),
            other => panic!("expected lost tasks, got {other:?}"),
        }
        assert_eq!(dead.owner.load(Ordering::SeqCst), 0, "slot freed");
        assert_eq!(ring.unfinished(), 1);
    }

    #[test]
    fn task_done_counts_against_the_takers_slot() {
        let ring = ring();
        put(&ring, 2);
        ring.get_one(super::super::Forever, |_| {}).unwrap();
        let me = sys::process_token().unwrap();
        let slot = (0..MEMBER_SLOTS)
            .find(|&i| ring.member(i).owner.load(Ordering::SeqCst) == me)
            .expect("a member slot");
        assert_eq!(ring.member(slot).taken.load(Ordering::SeqCst), 1);
        assert!(ring.task_done());
        assert_eq!(ring.member(slot).done.load(Ordering::SeqCst), 1);
        // Done before it was taken: counted against nobody.
        assert!(ring.task_done());
        assert_eq!(ring.member(slot).done.load(Ordering::SeqCst), 1);
        assert!(!ring.task_done(), "one too many");
        assert_eq!(ring.unfinished(), 0);
    }

    /// Python's count: a task marked done before it was taken is not held
    /// by the member that takes it, so that member's `task_done` for it
    /// is one too many (it was counted twice, and `join` found the counts
    /// corrupt).
    #[test]
    fn a_task_done_before_its_take_is_not_held_by_the_taker() {
        let ring = ring();
        put(&ring, 2);
        assert!(ring.task_done(), "done while queued");
        assert_eq!(ring.join_block().done.load(Ordering::SeqCst), 1);
        // One batch of both: one of them was done already.
        let mut got = 0;
        ring.get(2, super::super::Forever, &mut |_| {
            got += 1;
            true
        })
        .unwrap();
        assert_eq!(got, 2);
        let me = sys::process_token().unwrap();
        let mine = ring
            .members()
            .find(|m| m.owner.load(Ordering::SeqCst) == me)
            .expect("a member slot");
        assert_eq!(mine.taken.load(Ordering::SeqCst), 1);
        assert_eq!(ring.pending().held[0].count, 1);
        assert!(ring.task_done());
        assert!(!ring.task_done(), "one too many");
        assert!(ring.join(None).is_ok());
        // Tasks are counts: done ahead of a message still queued, it is
        // the one not held (its taker's count stays).
        put(&ring, 2);
        assert!(ring.task_done());
        ring.get_one(super::super::Forever, |_| {}).unwrap();
        assert_eq!(mine.taken.load(Ordering::SeqCst), 2);
        assert!(ring.task_done());
        ring.get_one(super::super::Forever, |_| {}).unwrap();
        assert_eq!(mine.taken.load(Ordering::SeqCst), 2);
        assert!(!ring.task_done(), "one too many");
        assert_eq!(ring.unfinished_checked(), Ok(0));
    }

    /// A task done against no member waits for the consumers' section: a
    /// consumer committing meanwhile moves its member's `taken` first, and
    /// the task is then counted against that member, never against the
    /// join block as well.
    #[test]
    fn a_task_done_against_no_member_waits_for_a_commit_in_progress() {
        let ring = ring();
        put(&ring, 1);
        let section = ring.enter(SideId::Consumers, None).unwrap();
        let tid = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            let done = s.spawn(|| {
                tid.store(sys::gettid(), Ordering::SeqCst);
                ring.task_done()
            });
            // Until it has returned, or sleeps (in the section's wait).
            let end = Instant::now() + Duration::from_secs(10);
            let asleep = || {
                let stat = format!("/proc/self/task/{}/stat", tid.load(Ordering::SeqCst));
                std::fs::read_to_string(stat).is_ok_and(|st| {
                    st.rfind(')')
                        .is_some_and(|at| st[at + 1..].trim_start().starts_with('S'))
                })
            };
            while !done.is_finished() && !asleep() && Instant::now() < end {
                std::thread::yield_now();
            }
            // A consumer's commit of the message, as `take` makes it.
            let mut taker = ring.taker();
            assert!(taker.is_some());
            ring.commit_taken(&mut taker, 0, 1, RECORD_ALIGN as u64);
            drop(section);
            assert!(done.join().unwrap());
        });
        let me = sys::process_token().unwrap();
        let mine = ring
            .members()
            .find(|m| m.owner.load(Ordering::SeqCst) == me)
            .unwrap();
        // Counted once, against the member: it counts in the join block
        // only inside the section, after the commit.
        let counted = (
            ring.join_block().done.load(Ordering::SeqCst),
            mine.taken.load(Ordering::SeqCst),
            mine.done.load(Ordering::SeqCst),
        );
        assert_eq!(
            counted,
            (0, 1, 1),
            "join block done, member taken, member done"
        );
        assert!(!ring.task_done(), "one too many");
        assert_eq!(ring.unfinished_checked(), Ok(0));
    }

    #[test]
    fn a_full_member_table_takes_untracked_until_a_slot_is_free() {
        let ring = ring();
        put(&ring, 2);
        // Every slot held by a live process: this test's parent.
        let ppid = sys::getppid();
        let (_, start) = sys::proc_stat(ppid).expect("the parent's /proc entry");
        let live = start.max(1) << sys::TOKEN_PID_BITS | ppid as u64;
        for m in ring.members() {
            m.owner.store(live, Ordering::SeqCst);
        }
        ring.get_one(super::super::Forever, |_| {}).unwrap();
        assert!(ring.members().all(|m| m.taken.load(Ordering::SeqCst) == 0));
        let p = ring.pending();
        assert_eq!((p.unfinished, p.queued, p.untracked), (2, 1, 1));
        ring.member(7).owner.store(0, Ordering::SeqCst);
        ring.get_one(super::super::Forever, |_| {}).unwrap();
        assert_eq!(ring.member(7).taken.load(Ordering::SeqCst), 1);
        assert_eq!(
            ring.member(7).owner.load(Ordering::SeqCst),
            sys::process_token().unwrap()
        );
    }
}
