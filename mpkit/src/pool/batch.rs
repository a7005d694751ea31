//! Where chunk results meet the caller: [`Batch`] (the dispatcher delivers
//! into it), [`Job`] (encodes chunks of one call), and [`AsyncResult`].

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::TaskError;
use super::chunk;
use super::dispatch::{Chunk, Shared};
use super::fixed::{ItemReader, ItemWriter, Run};
use super::spare;
use super::wire::{self, MSG_TASK};
use crate::handle;
use crate::process::child::{in_executable, offset_of};
use crate::sys;

/// A worker's reply to one chunk: its failures and results, and their
/// descriptors.
pub(crate) struct Reply {
    pub bytes: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

/// A chunk's result: the reply, or why there is none.
pub(crate) type ChunkResult = Result<Reply, TaskError>;

/// Told when a chunk's result arrives: an executor's `wait`, a result's
/// readiness flag.
pub(super) trait Watch: Send + Sync {
    /// Chunk results arrived for the watch registered with `key`.
    fn arrived(&self, key: usize);
}

/// A watch on one chunk, held weakly: a watch whose owner is gone (a
/// `wait` that timed out) is never told, and is pruned.
struct Watcher {
    seq: u64,
    watch: Weak<dyn Watch>,
    key: usize,
}

/// `Batch::progress` bits: a chunk of the batch was handed to a worker.
const STARTED: u8 = 1;
/// `Batch::progress` bits: the batch was cancelled; chunks not handed out
/// yet never will be.
const CANCELLED: u8 = 2;

/// The results of one call's chunks, numbered from 0.
pub(crate) struct Batch {
    state: Mutex<BatchState>,
    arrived: Condvar,
    /// [`STARTED`] and [`CANCELLED`]: set by the dispatcher and the
    /// caller, each with one atomic step, so that exactly one of "handed
    /// to a worker" and "cancelled before it started" happens.
    progress: AtomicU8,
    /// Whether arrival order is kept (for [`take_any`](Self::take_any)); an
    /// in-order reader never drains it, so it is kept only when asked.
    unordered: bool,
}

#[derive(Default)]
pub(super) struct BatchState {
    pub(super) done: HashMap<u64, ChunkResult>,
    /// Numbers in order of arrival (only for unordered readers).
    order: VecDeque<u64>,
    watchers: Vec<Watcher>,
}

impl Batch {
    pub(crate) fn new(unordered: bool) -> Arc<Batch> {
        Arc::new(Batch {
            state: Mutex::new(BatchState::default()),
            arrived: Condvar::new(),
            progress: AtomicU8::new(0),
            unordered,
        })
    }

    fn lock(&self) -> MutexGuard<'_, BatchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Chunk `seq`'s result. The first one stands: a chunk cancelled
    /// before it started already holds `Cancelled` when a terminating pool
    /// fails its queue.
    pub(crate) fn deliver(&self, seq: u64, result: ChunkResult) {
        let st = self.lock();
        self.deliver_locked(st, seq, result);
    }

    fn deliver_locked(&self, mut st: MutexGuard<'_, BatchState>, seq: u64, result: ChunkResult) {
        if st.done.contains_key(&seq) {
            return;
        }
        st.done.insert(seq, result);
        if self.unordered {
            st.order.push_back(seq);
        }
        let mut told = Vec::new();
        st.watchers.retain(|w| {
            let mine = w.seq == seq;
            if mine {
                told.push((w.watch.clone(), w.key));
            }
            !mine
        });
        drop(st);
        self.arrived.notify_all();
        for (watch, key) in told {
            if let Some(watch) = watch.upgrade() {
                watch.arrived(key);
            }
        }
    }

    /// Tells `watch` (with `key`) when chunk `seq`'s result arrives, or at
    /// once if it has.
    pub(super) fn watch(&self, seq: u64, watch: Weak<dyn Watch>, key: usize) {
        let mut st = self.lock();
        if st.done.contains_key(&seq) {
            drop(st);
            if let Some(watch) = watch.upgrade() {
                watch.arrived(key);
            }
            return;
        }
        st.watchers.retain(|w| w.watch.strong_count() > 0);
        st.watchers.push(Watcher { seq, watch, key });
    }

    /// Nobody will read the remaining results: queued chunks are dropped
    /// instead of run.
    pub(crate) fn cancel(&self) {
        self.progress.fetch_or(CANCELLED, Ordering::AcqRel);
    }

    /// Called by the dispatcher as it hands one of the batch's chunks to a
    /// worker: false if the batch is cancelled, and the chunk is then
    /// dropped instead.
    pub(super) fn start(&self) -> bool {
        self.progress
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                (p & CANCELLED == 0).then_some(p | STARTED)
            })
            .is_ok()
    }

    /// Cancels a batch none of whose chunks was handed to a worker, giving
    /// chunk `seq` the result `Cancelled` (Python's `Future.cancel`):
    /// whether the batch is cancelled now (or was already). False once a
    /// chunk started, or once chunk `seq` has a result.
    pub(super) fn cancel_unstarted(&self, seq: u64) -> bool {
        let st = self.lock();
        if st.done.contains_key(&seq) {
            return self.cancelled();
        }
        match self
            .progress
            .compare_exchange(0, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                self.deliver_locked(st, seq, Err(TaskError::Cancelled));
                true
            }
            Err(p) => p == CANCELLED,
        }
    }

    /// Whether the batch was cancelled.
    pub(crate) fn cancelled(&self) -> bool {
        self.progress.load(Ordering::Acquire) & CANCELLED != 0
    }

    /// Whether a chunk of the batch was handed to a worker.
    pub(super) fn started(&self) -> bool {
        self.progress.load(Ordering::Acquire) & STARTED != 0
    }

    /// Waits until `ready` holds for the state, or `deadline` passes.
    pub(super) fn wait_for(
        &self,
        deadline: Option<Instant>,
        mut ready: impl FnMut(&BatchState) -> bool,
    ) -> Option<MutexGuard<'_, BatchState>> {
        let mut st = self.lock();
        while !ready(&st) {
            match deadline {
                None => st = self.arrived.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.checked_duration_since(Instant::now())?;
                    st = self
                        .arrived
                        .wait_timeout(st, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        Some(st)
    }

    /// Whether chunk `seq`'s result is in, after waiting up to `deadline`.
    pub(super) fn wait_done(&self, seq: u64, deadline: Option<Instant>) -> bool {
        self.wait_for(deadline, |st| st.done.contains_key(&seq))
            .is_some()
    }

    /// Takes chunk `seq`'s result, waiting up to `deadline` for it.
    pub(crate) fn take(&self, seq: u64, deadline: Option<Instant>) -> Option<ChunkResult> {
        self.wait_for(deadline, |st| st.done.contains_key(&seq))?
            .done
            .remove(&seq)
    }

    /// Takes the earliest-arrived result not yet taken.
    pub(super) fn take_any(&self, deadline: Option<Instant>) -> Option<(u64, ChunkResult)> {
        let mut st = self.wait_for(deadline, |st| !st.order.is_empty())?;
        let seq = st.order.pop_front()?;
        st.done.remove(&seq).map(|r| (seq, r))
    }
}

/// Which items of a chunk went to the worker, in order: each item sent, or
/// the error that kept it here.
pub(crate) struct Plan {
    pub seq: u64,
    slots: Slots,
}

/// A chunk's items as [`Plan`] keeps them: one word for the usual chunk
/// whose every item went, a slot per item otherwise.
enum Slots {
    /// This many items, every one sent.
    Sent(usize),
    /// `None` for each item sent, or the error that kept it here.
    Each(Vec<Option<TaskError>>),
}

/// [`Slots`] item by item.
enum SlotIter {
    Sent(std::ops::Range<usize>),
    Each(std::vec::IntoIter<Option<TaskError>>),
}

impl Iterator for SlotIter {
    type Item = Option<TaskError>;

    #[inline]
    fn next(&mut self) -> Option<Option<TaskError>> {
        match self {
            SlotIter::Sent(range) => range.next().map(|_| None),
            SlotIter::Each(slots) => slots.next(),
        }
    }
}

impl Plan {
    /// How many items the chunk has.
    pub(super) fn len(&self) -> usize {
        match &self.slots {
            Slots::Sent(n) => *n,
            Slots::Each(slots) => slots.len(),
        }
    }

    /// How many of them went to the worker.
    fn sent(&self) -> usize {
        match &self.slots {
            Slots::Sent(n) => *n,
            Slots::Each(slots) => slots.iter().filter(|s| s.is_none()).count(),
        }
    }

    /// Whether the first item failed before it was sent.
    pub(super) fn first_failed(&self) -> bool {
        matches!(&self.slots, Slots::Each(slots) if slots.first().is_some_and(Option::is_some))
    }

    fn into_slots(self) -> SlotIter {
        match self.slots {
            Slots::Sent(n) => SlotIter::Sent(0..n),
            Slots::Each(slots) => SlotIter::Each(slots.into_iter()),
        }
    }

    /// Turns the chunk's result into one outcome per item, in order.
    pub(crate) fn decode<R: DeserializeOwned>(
        self,
        result: ChunkResult,
        emit: impl FnMut(Result<R, TaskError>),
    ) {
        self.decode_split(result, None, emit)
    }

    /// As [`decode`](Self::decode), but the values go onto the end of
    /// `values` and only the failures to `failed` (a map's: its order
    /// among the values no longer matters once one failed). The usual
    /// chunk is then read straight into `values`' spare room.
    pub(crate) fn decode_values<R: DeserializeOwned>(
        self,
        result: ChunkResult,
        values: &mut Vec<R>,
        mut failed: impl FnMut(TaskError),
    ) {
        self.decode_split(result, Some(values), |r| {
            if let Err(e) = r {
                failed(e)
            }
        })
    }

    /// [`decode`](Self::decode), with values going to `values` when
    /// given, and everything else to `emit`.
    fn decode_split<R: DeserializeOwned>(
        self,
        result: ChunkResult,
        mut values_out: Option<&mut Vec<R>>,
        mut emit_any: impl FnMut(Result<R, TaskError>),
    ) {
        let reply = match result {
            Ok(reply) => reply,
            Err(e) => {
                for slot in self.into_slots() {
                    emit_any(Err(slot.unwrap_or_else(|| e.clone())));
                }
                return;
            }
        };
        let sent = self.sent() as u64;
        // Read as a stream, one outcome per item, straight to `emit`.
        let _ = handle::provide(reply.fds, || {
            let mut de = postcard::Deserializer::from_bytes(&reply.bytes);
            // The failures, then the count of results: together, the
            // items sent; positions in order and among them.
            let head = Vec::<wire::WireFailure>::deserialize(&mut de)
                .and_then(|failures| Ok((failures, u64::deserialize(&mut de)?)));
            let head = head.map_err(|e| result_decode::<R>(e)).and_then(|head| {
                let values = de.finalize().map_err(|e| result_decode::<R>(e))?;
                let values = ItemReader::new(values).map_err(|e| result_decode::<R>(e))?;
                Ok((head, values))
            });
            let (failures, returned, values, mut broken) = match head {
                Ok(((failures, returned), values))
                    if failures.len() as u64 + returned == sent
                        && failures.windows(2).all(|w| w[0].0 < w[1].0)
                        && failures.last().is_none_or(|f| f.0 < sent)
                        && values.fixed_exactly(returned).is_none_or(|r| r.is_ok()) =>
                {
                    (failures, returned as usize, Some(values), None)
                }
                Ok(_) => (Vec::new(), 0, None, Some(wire::malformed::<R>())),
                Err(e) => (Vec::new(), 0, None, Some(e)),
            };
            // Every value is read before any goes out (`read_into`: a
            // column whose values do not end where its bytes do fails
            // whole), the reader by value (behind a reference, its state
            // takes a store and a load per value).
            if let (Slots::Sent(n), true, Some(out)) = (
                &self.slots,
                failures.is_empty() && values.is_some(),
                values_out.as_deref_mut(),
            ) {
                // The usual chunk of a map: straight into its vector.
                let n = *n;
                if let Some(reader) = values {
                    if let (read, Some(e)) = reader.read_into(n, out) {
                        let e = result_decode::<R>(e);
                        (read..n).for_each(|_| emit_any(Err(e.clone())));
                    }
                }
                return Ok(());
            }
            let mut read = Vec::new();
            let mut error = None;
            if let Some(reader) = values {
                error = reader.read_into(returned, &mut read).1;
            }
            let mut read = read.into_iter();
            let mut emit = |r: Result<R, TaskError>| match (r, values_out.as_deref_mut()) {
                (Ok(v), Some(out)) => out.push(v),
                (r, _) => emit_any(r),
            };
            let mut failures = failures.into_iter().peekable();
            let mut at = 0u64;
            for slot in self.into_slots() {
                emit(match (slot, &broken) {
                    (Some(e), _) => Err(e),
                    (None, Some(e)) => Err(e.clone()),
                    (None, None) => {
                        at += 1;
                        match failures.next_if(|f| f.0 == at - 1) {
                            Some(failure) => Err(wire::failure_error::<R>(failure)),
                            None => match read.next() {
                                Some(v) => Ok(v),
                                None => {
                                    // The rest cannot be found past the
                                    // bad one.
                                    let e = match error.take() {
                                        Some(e) => result_decode::<R>(e),
                                        None => wire::malformed::<R>(),
                                    };
                                    broken = Some(e.clone());
                                    Err(e)
                                }
                            },
                        }
                    }
                });
            }
            Ok(())
        });
        spare::recycle(reply.bytes);
    }
}

fn result_decode<R>(e: impl fmt::Display) -> TaskError {
    TaskError::ResultDecode {
        type_name: std::any::type_name::<R>(),
        message: e.to_string(),
    }
}

/// Where a remote pool takes a call's chunks (`redis_pool`): the seam
/// between the chunks a [`Job`] encodes and a transport other than the
/// local dispatcher. A chunk sent through it gets its result from
/// [`Batch::deliver`], in the reply format of `wire.rs`.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) trait ChunkSink: Send + Sync {
    /// Queues chunk `seq` of `batch`: `message` is the item count (`u64`,
    /// little-endian) and the items' postcard encodings back to back, the
    /// payload a worker's `run_chunk` takes. Must deliver the chunk's
    /// result, or an error, to `batch` in the end.
    fn submit(&self, batch: &Arc<Batch>, seq: u64, message: Vec<u8>);

    /// How many chunks an `imap` keeps queued or running at once.
    fn window(&self) -> usize;
}

/// Where a [`Job`]'s chunks go.
enum Target {
    /// The local dispatcher, with the task message header (kind and
    /// offsets); `None` when the function is not in the executable.
    Local {
        shared: Arc<Shared>,
        header: Option<Vec<u8>>,
    },
    /// A remote pool: items may not carry handles.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Remote(Arc<dyn ChunkSink>),
}

/// One call's way of sending chunks of `fn(A) -> R` tasks.
pub(crate) struct Job<A, R> {
    pub batch: Arc<Batch>,
    target: Target,
    next_seq: u64,
    /// Bytes per item the last chunk's encodings took (0: none yet).
    per_item: usize,
    _types: PhantomData<fn(A) -> R>,
}

/// The most a chunk's message reserves before its items are encoded
/// (a hint from their count and size; the message grows past it as it
/// needs).
const RESERVE_MAX: usize = 1 << 20;

/// Cancels a batch when dropped still holding it: during a panic (it is
/// emptied otherwise).
struct CancelOnUnwind(Option<Arc<Batch>>);

impl Drop for CancelOnUnwind {
    fn drop(&mut self) {
        if let Some(batch) = &self.0 {
            batch.cancel();
        }
    }
}

/// Collects items without trusting their size hint: `collect` reserves
/// the hint's lower bound first, and a lower bound past memory made it
/// panic or abort before the first item.
pub(crate) fn collect_items<T>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut all = Vec::new();
    for item in items {
        all.push(item);
    }
    all
}

/// The most items in one chunk: a larger chunk size is cut to this. A
/// worker refuses a chunk whose count is this far past its bytes (only
/// zero-sized items take none), as a forged count; and a chunk this large
/// already spreads its fixed cost over a million items.
pub(crate) const MAX_CHUNK: usize = 1 << 20;

impl<A, R> Job<A, R>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    /// A job whose results are read in order, or (`unordered`) as they
    /// arrive.
    pub(super) fn new(shared: Arc<Shared>, f: fn(A) -> R, unordered: bool) -> Job<A, R> {
        let runner: wire::TaskRunner = chunk::run_chunk::<A, R>;
        let header = (in_executable(f as usize) && in_executable(runner as usize))
            .then(|| wire::header(MSG_TASK, offset_of(runner as usize), offset_of(f as usize)));
        Job {
            batch: Batch::new(unordered),
            target: Target::Local { shared, header },
            next_seq: 0,
            per_item: 0,
            _types: PhantomData,
        }
    }

    /// A job whose chunks go to `sink` (a remote pool). Its batch counts
    /// as started at once: a chunk handed to another host cannot be
    /// taken back, so an executor's `cancel` says no.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn remote(sink: Arc<dyn ChunkSink>, batch: Arc<Batch>) -> Job<A, R> {
        batch.start();
        Job {
            batch,
            target: Target::Remote(sink),
            next_seq: 0,
            per_item: 0,
            _types: PhantomData,
        }
    }

    /// How many chunks an `imap` keeps in flight: two per local worker,
    /// or what the remote pool says.
    pub(crate) fn window(&self) -> usize {
        match &self.target {
            Target::Local { shared, .. } => 2 * shared.config.processes.max(1),
            Target::Remote(sink) => sink.window().max(1),
        }
    }

    /// Sends `items` as chunks of `size` items (a map's). Their plans, and
    /// how many items there were: counted, not trusted from `len_hint`
    /// (which only sizes the list of plans).
    pub(crate) fn send_chunks(
        &mut self,
        items: impl Iterator<Item = A>,
        size: usize,
        len_hint: usize,
    ) -> (Vec<Plan>, usize) {
        // If the iterator panics, the chunks already queued are cancelled
        // (those not started never run) and the panic goes on up.
        let mut cancel = CancelOnUnwind(Some(Arc::clone(&self.batch)));
        let size = size.clamp(1, MAX_CHUNK);
        let mut plans = Vec::with_capacity(len_hint.div_ceil(size).min(1 << 16));
        let mut taken = 0;
        // Each item goes from the iterator straight into its chunk's
        // message. The items end at the first `None`, whatever the
        // iterator gives after it.
        let mut items = items.fuse().peekable();
        while items.peek().is_some() {
            // The iterator goes in and comes back by value: behind a
            // reference, its state would take a store and a load per item.
            let (plan, rest) = self.send_taking(items, size);
            items = rest;
            taken += plan.len();
            plans.push(plan);
        }
        cancel.0 = None;
        (plans, taken)
    }

    /// Waits for the chunks of `plans` in order: every item's outcome (a
    /// map's `map_outcomes`).
    pub(crate) fn outcomes(&self, plans: Vec<Plan>, len: usize) -> Vec<Result<R, TaskError>> {
        let mut out = Vec::with_capacity(len);
        for plan in plans {
            let result = self
                .batch
                .take(plan.seq, None)
                .expect("waiting without a deadline returns the result");
            plan.decode(result, |r| out.push(r));
        }
        out
    }

    /// Waits for the chunks of `plans` in order: the results, or the first
    /// item's failure, after which the chunks not started are cancelled (a
    /// map's `map`).
    pub(crate) fn results(&self, plans: Vec<Plan>, len: usize) -> Result<Vec<R>, TaskError> {
        let mut out = Vec::with_capacity(len);
        let mut failed = None;
        for plan in plans {
            let result = self
                .batch
                .take(plan.seq, None)
                .expect("waiting without a deadline returns the result");
            plan.decode_values(result, &mut out, |e| {
                failed.get_or_insert(e);
            });
            if let Some(e) = failed {
                self.batch.cancel();
                return Err(e);
            }
        }
        Ok(out)
    }

    /// Encodes `items` as the next chunk and queues it. Each item is
    /// encoded straight into the message and dropped; one that does not
    /// encode is left out and fails alone.
    pub(crate) fn send(&mut self, items: impl IntoIterator<Item = A>) -> Plan {
        self.send_taking(items.into_iter(), usize::MAX).0
    }

    /// [`send`](Self::send) of the next `limit` items of `items` (fewer if
    /// it ends first); gives back the rest.
    pub(crate) fn send_taking<I: Iterator<Item = A>>(
        &mut self,
        mut items: I,
        limit: usize,
    ) -> (Plan, I) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let (header, count_at): (&[u8], _) = match &self.target {
            Target::Local { header: None, .. } => {
                let slots = items
                    .by_ref()
                    .take(limit)
                    .map(|_| Some(TaskError::ForeignFunction))
                    .collect();
                self.batch.deliver(seq, Ok(Reply::empty()));
                let plan = Plan {
                    seq,
                    slots: Slots::Each(slots),
                };
                return (plan, items);
            }
            Target::Local {
                header: Some(header),
                ..
            } => (header, wire::COUNT_AT),
            // The payload alone: the remote pool sends the task's name.
            Target::Remote(_) => (&[], 0..8),
        };
        // Room for what the last chunk took per item, a quarter more; for
        // the first, the items' size in memory (postcard rarely makes a
        // value larger). One allocation instead of a series of doublings,
        // and not three times what is used: that kept glibc's heap high
        // enough that it gave the pages back and faulted them in again
        // at every map (~150 faults of a 100 000-item map).
        let per_item = match self.per_item {
            0 => size_of::<A>().max(1),
            n => n + n.div_ceil(4),
        };
        let hint = items.size_hint().0.min(limit).saturating_mul(per_item);
        let mut message = spare::buffer(count_at.end + hint.min(RESERVE_MAX));
        message.extend_from_slice(header);
        message.extend_from_slice(&0u64.to_le_bytes());
        let (mut len, mut sent) = (0, 0);
        // Slots are kept one by one only from the first item that failed.
        let mut failed: Option<Vec<Option<TaskError>>> = None;
        // One collect for the whole chunk: handles index its list.
        let (items, fds) = handle::collect(|| {
            let mut encoder = ItemWriter::new(&mut message);
            let mut rest = items;
            let mut left = limit;
            let mut items = std::iter::from_fn(|| {
                left = left.checked_sub(1)?;
                rest.next()
            });
            loop {
                // The usual chunk, a run of the same scalar, goes in
                // without a look at each item's slot.
                let (ran, item) = match encoder.extend_fixed(&mut items) {
                    Run::NotFixed => (0, items.next()),
                    Run::Done(n) => (n, None),
                    Run::Stopped(n, item) => (n, Some(item)),
                    Run::Panicked(..) => unreachable!("extend_fixed lets a panic go on up"),
                };
                sent += ran;
                len += ran;
                if let Some(failed) = &mut failed {
                    failed.resize(len, None);
                }
                let Some(item) = item else {
                    break;
                };
                let slot = match encoder.push(&item) {
                    Ok(()) => {
                        sent += 1;
                        None
                    }
                    Err(message) => Some(TaskError::ArgsEncode {
                        type_name: std::any::type_name::<A>(),
                        message,
                    }),
                };
                if slot.is_some() || failed.is_some() {
                    failed.get_or_insert_with(|| vec![None; len]).push(slot);
                }
                len += 1;
            }
            rest
        });
        if sent > 0 {
            self.per_item = (message.len() - count_at.end - 1).div_ceil(sent);
        }
        let mut slots = failed.map_or(Slots::Sent(len), Slots::Each);
        let refused = match &self.target {
            Target::Remote(_) if !fds.is_empty() => Some(TaskError::HandleAcrossHosts),
            _ if fds.len() > sys::MAX_FDS_PER_MESSAGE => Some(TaskError::TooManyHandles(fds.len())),
            _ => None,
        };
        if let Some(e) = refused {
            slots = Slots::Each(vec![Some(e); len]);
            sent = 0;
        }
        if sent == 0 {
            self.batch.deliver(seq, Ok(Reply::empty()));
            return (Plan { seq, slots }, items);
        }
        message[count_at].copy_from_slice(&(sent as u64).to_le_bytes());
        match &self.target {
            Target::Local { shared, .. } => shared.submit([Chunk {
                message,
                fds,
                items: sent,
                batch: Arc::clone(&self.batch),
                seq,
                retries: shared.config.retries,
            }]),
            Target::Remote(sink) => sink.submit(&self.batch, seq, message),
        }
        (Plan { seq, slots }, items)
    }
}

impl Reply {
    pub(crate) fn empty() -> Reply {
        Reply {
            bytes: Vec::new(),
            fds: Vec::new(),
        }
    }
}
