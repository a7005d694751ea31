//! Model-based property tests of the queue logic: random sequences of
//! operations are applied both to a real queue and to a model (a `VecDeque`
//! plus the ring's byte accounting), and every outcome must match exactly.
//!
//! The model follows `queue/ring.rs`: a message of `len` bytes takes a
//! record of `(16 + len)` bytes rounded up to 64; the ring holds
//! `capacity.max(64).next_power_of_two()` bytes of records and at most
//! `maxsize` messages (0: no limit); the largest message is `capacity - 16`.
//! A put checks, in order: too large, closed, room.
//!
//! Everything runs in one process (cross-process behaviour is tested in
//! `queue.rs`); several threads take turns, one operation at a time, so the
//! sides' leases are granted, used and revoked while the order of
//! operations stays deterministic.

#[path = "../common/mod.rs"]
mod common;

use std::collections::VecDeque;
use std::fmt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::watchdog;
use mpkit::codec::{Codec, Postcard};
use mpkit::queue::{
    ByteQueue, GetError, GetTimeoutError, PutError, PutTimeoutError, Queue, TryGetError,
    TryPutError,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// The timeout of `put_timeout` / `get_timeout` on a full / empty queue.
const TINY: Duration = Duration::from_millis(1);
/// How long one operation may take before the test calls it blocked (the
/// longest wait is [`TINY`]; the watchdog is the backstop).
const HUNG: Duration = Duration::from_secs(5);
const RECORD_HEADER: usize = 16;
const RECORD_ALIGN: usize = 64;

fn record_size(len: usize) -> usize {
    (RECORD_HEADER + len).next_multiple_of(RECORD_ALIGN)
}

/// The ring capacity `with_capacity` makes of a requested one.
fn ring_capacity(requested: usize) -> usize {
    requested.max(64).next_power_of_two()
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        // No regression files in the repository.
        failure_persistence: None,
        max_shrink_iters: 4096,
        // Keeps shrinking within the watchdogs.
        max_shrink_time: 60_000,
        ..Config::default()
    }
}

fn run_property<S: Strategy>(
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let start = Instant::now();
    let mut runner = TestRunner::new(config(cases));
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
    eprintln!("{cases} cases in {:?}", start.elapsed());
}

// ----- threads that run operations ------------------------------------------

/// How a worker thread reaches the queue.
enum Handle<'a, Q> {
    /// The test's own handle (queues are `Sync`).
    Shared(&'a Q),
    /// A handle of its own (`try_clone`: another mapping of the segment).
    Own(Q),
}

impl<Q> Handle<'_, Q> {
    fn get(&self) -> &Q {
        match self {
            Handle::Shared(q) => q,
            Handle::Own(q) => q,
        }
    }
}

/// Has worker `t` run a command: its outcome, or why there was none.
type Run<'a, C, O> = dyn FnMut(usize, &C) -> Result<O, String> + 'a;

/// Runs `body` with one worker thread per handle, each running the
/// commands it is sent with `exec`, one at a time. `body` gets a function
/// that has worker `t` run a command and returns its outcome, or why there
/// was none: a command still running after [`HUNG`] (a blocking operation
/// that the model says returns at once) is let out by `close` (a waiting
/// put or get then fails) and reported.
fn with_workers<Q, C, O, R>(
    handles: Vec<Handle<'_, Q>>,
    exec: fn(&Q, &C) -> O,
    close: impl Fn(),
    body: impl FnOnce(&mut Run<C, O>) -> R,
) -> R
where
    Q: Send + Sync,
    C: Clone + Send,
    O: Send,
{
    std::thread::scope(|s| {
        let mut workers = Vec::new();
        for handle in handles {
            let (cmd_tx, cmd_rx) = mpsc::channel::<C>();
            let (out_tx, out_rx) = mpsc::channel::<O>();
            s.spawn(move || {
                let q = handle.get();
                for cmd in cmd_rx {
                    if out_tx.send(exec(q, &cmd)).is_err() {
                        break;
                    }
                }
            });
            workers.push((cmd_tx, out_rx));
        }
        // Dropping `workers` (on return or unwind) ends the threads.
        let mut run = |t: usize, cmd: &C| -> Result<O, String> {
            let (tx, rx) = &workers[t];
            tx.send(cmd.clone())
                .map_err(|_| format!("worker {t} is gone"))?;
            match rx.recv_timeout(HUNG) {
                Ok(out) => Ok(out),
                Err(mpsc::RecvTimeoutError::Disconnected) => Err(format!("worker {t} panicked")),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    close();
                    let after = match rx.recv_timeout(HUNG) {
                        Ok(_) => "returned once the queue was closed",
                        Err(_) => "still blocked after close",
                    };
                    Err(format!("blocked for {HUNG:?} ({after})"))
                }
            }
        };
        body(&mut run)
    })
}

// ----- the model -------------------------------------------------------------

/// What a put returned (the value handed back is checked separately).
#[derive(Clone, Debug, PartialEq, Eq)]
enum PutOut {
    Ok,
    Full,
    Timeout,
    Closed,
    TooLarge { size: usize, max: usize },
    Other(String),
}

/// Why a get returned no message.
#[derive(Clone, Debug, PartialEq, Eq)]
enum GetKind {
    Empty,
    Timeout,
    Closed,
    Other(String),
}

/// How long an operation may wait.
#[derive(Clone, Copy, Debug)]
enum Wait {
    No,
    Tiny,
    Forever,
}

/// The queue as it should be: its messages (each with its encoded length)
/// and the ring's accounting.
#[derive(Debug)]
struct Model<T> {
    capacity: usize,
    maxsize: usize,
    items: VecDeque<(T, usize)>,
    bytes: usize,
    closed: bool,
}

impl<T: Clone> Model<T> {
    fn new(capacity: usize, maxsize: usize) -> Self {
        Model {
            capacity,
            maxsize,
            items: VecDeque::new(),
            bytes: 0,
            closed: false,
        }
    }

    fn max_message(&self) -> usize {
        self.capacity - RECORD_HEADER
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    /// True when `maxsize` messages are queued (`Queue::is_full`).
    fn is_full(&self) -> bool {
        self.maxsize != 0 && self.len() >= self.maxsize
    }

    /// Whether `count` more messages taking `bytes` of records fit now.
    fn fits(&self, count: usize, bytes: usize) -> bool {
        (self.maxsize == 0 || self.len() + count <= self.maxsize)
            && self.bytes + bytes <= self.capacity
    }

    fn push(&mut self, item: T, len: usize) {
        self.bytes += record_size(len);
        self.items.push_back((item, len));
    }

    /// A put of one message; `None` when it would wait forever.
    fn put(&mut self, item: &T, len: usize, wait: Wait) -> Option<PutOut> {
        if len > self.max_message() {
            return Some(PutOut::TooLarge {
                size: len,
                max: self.max_message(),
            });
        }
        if self.closed {
            return Some(PutOut::Closed);
        }
        if self.fits(1, record_size(len)) {
            self.push(item.clone(), len);
            return Some(PutOut::Ok);
        }
        match wait {
            Wait::No => Some(PutOut::Full),
            Wait::Tiny => Some(PutOut::Timeout),
            Wait::Forever => None,
        }
    }

    /// `put_many` (which waits for room as needed): the outcome and how
    /// many were put; `None` when it would wait forever.
    fn put_many(&mut self, items: &[(T, usize)]) -> Option<(PutOut, usize)> {
        // Every message is checked before any is put.
        if let Some(&(_, len)) = items.iter().find(|(_, len)| *len > self.max_message()) {
            let max = self.max_message();
            return Some((PutOut::TooLarge { size: len, max }, 0));
        }
        if items.is_empty() {
            return Some((PutOut::Ok, 0));
        }
        if self.closed {
            return Some((PutOut::Closed, 0));
        }
        let bytes = items.iter().map(|&(_, len)| record_size(len)).sum();
        if !self.fits(items.len(), bytes) {
            return None;
        }
        for (item, len) in items {
            self.push(item.clone(), *len);
        }
        Some((PutOut::Ok, items.len()))
    }

    /// What a get of up to `max` (at least 1) messages may return, without
    /// taking it; `None` when it would wait forever.
    fn peek(&self, max: usize, wait: Wait) -> Option<Result<Vec<T>, GetKind>> {
        assert!(max >= 1);
        if self.items.is_empty() {
            return match (self.closed, wait) {
                (true, _) => Some(Err(GetKind::Closed)),
                (false, Wait::No) => Some(Err(GetKind::Empty)),
                (false, Wait::Tiny) => Some(Err(GetKind::Timeout)),
                (false, Wait::Forever) => None,
            };
        }
        let n = max.min(self.items.len());
        Some(Ok(self
            .items
            .iter()
            .take(n)
            .map(|(item, _)| item.clone())
            .collect()))
    }

    /// Takes the first `n` messages.
    fn take(&mut self, n: usize) {
        for (_, len) in self.items.drain(..n) {
            self.bytes -= record_size(len);
        }
    }

    /// A get of one message; `None` when it would wait forever.
    fn get(&mut self, wait: Wait) -> Option<Out<T>> {
        let r = self.peek(1, wait)?;
        if let Ok(got) = &r {
            self.take(got.len());
        }
        Some(Out::Got(r))
    }
}

/// What the model expects of an operation.
#[derive(Debug)]
enum Expect<T> {
    /// Exactly this (already applied to the model).
    Exact(Out<T>),
    /// `get_many`: exactly these messages (every one queued, up to `max`;
    /// taken from the model once seen), or this error.
    Batch(Result<Vec<T>, GetKind>),
}

/// Compares what an operation returned with what the model expects,
/// applying a batch get to the model.
fn check_out<T: Clone + PartialEq + fmt::Debug>(
    model: &mut Model<T>,
    expected: Expect<T>,
    got: &Out<T>,
) -> Result<(), String> {
    let want = match expected {
        Expect::Exact(want) => want,
        Expect::Batch(Ok(first)) => {
            return match got {
                Out::Got(Ok(v)) if *v == first => {
                    model.take(v.len());
                    Ok(())
                }
                _ => Err(format!("expected {first:?}, got {got:?}")),
            };
        }
        Expect::Batch(Err(e)) => Out::Got(Err(e)),
    };
    if *got == want {
        Ok(())
    } else {
        Err(format!("expected {want:?}, got {got:?}"))
    }
}

/// What a put error says, in the model's terms, with the value it handed
/// back.
trait PutOutcome<T> {
    fn outcome(self) -> (PutOut, Option<T>);
}

/// [`PutOutcome`] for one put error type, whose extra variant (if any)
/// the model calls `$out`.
macro_rules! put_outcome {
    ($ty:ident $(, $extra:ident => $out:expr)?) => {
        impl<T> PutOutcome<T> for $ty<T> {
            fn outcome(self) -> (PutOut, Option<T>) {
                match self {
                    $($ty::$extra(v) => ($out, Some(v)),)?
                    $ty::Closed(v) => (PutOut::Closed, Some(v)),
                    $ty::TooLarge { value, size, max } => {
                        (PutOut::TooLarge { size, max }, Some(value))
                    }
                    e => (PutOut::Other(e.to_string()), None),
                }
            }
        }
    };
}

put_outcome!(PutError);
put_outcome!(TryPutError, Full => PutOut::Full);
put_outcome!(PutTimeoutError, Timeout => PutOut::Timeout);

fn put_out<T, E: PutOutcome<T>>(r: Result<(), E>) -> (PutOut, Option<T>) {
    match r {
        Ok(()) => (PutOut::Ok, None),
        Err(e) => e.outcome(),
    }
}

/// What a get error says, in the model's terms.
trait GetOutcome {
    fn kind(self) -> GetKind;
}

/// [`GetOutcome`] for one get error type, whose extra variant (if any)
/// the model calls `$kind`.
macro_rules! get_outcome {
    ($ty:ident $(, $extra:ident => $kind:expr)?) => {
        impl GetOutcome for $ty {
            fn kind(self) -> GetKind {
                match self {
                    $($ty::$extra => $kind,)?
                    $ty::Closed => GetKind::Closed,
                    e => GetKind::Other(e.to_string()),
                }
            }
        }
    };
}

get_outcome!(GetError);
get_outcome!(TryGetError, Empty => GetKind::Empty);
get_outcome!(GetTimeoutError, Timeout => GetKind::Timeout);

fn get_kind(e: impl GetOutcome) -> GetKind {
    e.kind()
}

// ----- operations ------------------------------------------------------------

/// A message length, resolved against the queue's largest message.
#[derive(Clone, Copy, Debug)]
enum LenSpec {
    /// This many bytes (0..=64: one or two records, often many per ring).
    Small(usize),
    /// `0..=max` in proportion (`n / 65536`).
    Frac(u16),
    /// Exactly the largest message.
    Max,
    /// One byte more than the largest message.
    MaxPlusOne,
    /// `max + n`.
    Over(usize),
}

impl LenSpec {
    fn resolve(self, max: usize) -> usize {
        match self {
            LenSpec::Small(n) => n,
            LenSpec::Frac(f) => (max + 1) * f as usize / 65536,
            LenSpec::Max => max,
            LenSpec::MaxPlusOne => max + 1,
            LenSpec::Over(n) => max + n,
        }
    }
}

fn len_spec() -> BoxedStrategy<LenSpec> {
    prop_oneof![
        8 => (0usize..=64).prop_map(LenSpec::Small),
        3 => any::<u16>().prop_map(LenSpec::Frac),
        1 => Just(LenSpec::Max),
        1 => Just(LenSpec::MaxPlusOne),
        1 => (1usize..=5000).prop_map(LenSpec::Over),
    ]
    .boxed()
}

fn small_len() -> BoxedStrategy<LenSpec> {
    prop_oneof![
        6 => (0usize..=64).prop_map(LenSpec::Small),
        1 => (0u16..4096).prop_map(LenSpec::Frac),
    ]
    .boxed()
}

/// One operation on a queue, before its messages are made.
#[derive(Clone, Debug)]
enum Op {
    TryPut(LenSpec),
    PutTimeout(LenSpec),
    /// The blocking `put`, only where it returns at once.
    Put(LenSpec),
    PutMany(Vec<LenSpec>),
    TryGet,
    /// The blocking `get`, only where it returns at once.
    Get,
    GetInto,
    GetMany(usize),
    GetManyTimeout(usize),
    GetTimeout,
    Len,
    Close,
}

fn put_op(len: BoxedStrategy<LenSpec>) -> impl Strategy<Value = Op> {
    let batch_len = prop_oneof![4 => small_len(), 1 => len.clone()];
    prop_oneof![
        6 => len.clone().prop_map(Op::TryPut),
        2 => len.prop_map(Op::Put),
        2 => vec(batch_len, 0..=5).prop_map(Op::PutMany),
    ]
}

fn get_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => Just(Op::TryGet),
        2 => Just(Op::Get),
        2 => Just(Op::GetInto),
        2 => (1usize..=6).prop_map(Op::GetMany),
    ]
}

/// Any operation but `Close` (placed separately); one in about 12 waits
/// for its timeout.
fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => put_op(len_spec()),
        9 => get_op(),
        1 => len_spec().prop_map(Op::PutTimeout),
        1 => Just(Op::GetTimeout),
        1 => Just(Op::Len),
    ]
}

/// Requested capacities: any small size, powers of two, one more than one.
fn capacity() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => 0usize..=4096,
        2 => (6u32..=12).prop_map(|k| 1usize << k),
        1 => (6u32..=11).prop_map(|k| (1usize << k) + 1),
    ]
}

fn maxsize() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0usize), 1usize..=8]
}

/// Inserts a `Close` (by `thread`) in the last quarter of `steps`, if
/// any, so that most of a sequence runs on an open queue.
fn with_close(mut steps: Vec<(usize, Op)>, at: Option<(Index, usize)>) -> Vec<(usize, Op)> {
    if let Some((at, thread)) = at {
        let i = steps.len() - at.index(steps.len() / 4 + 1);
        steps.insert(i, (thread, Op::Close));
    }
    steps
}

// ----- byte messages ---------------------------------------------------------

/// A byte message: its first 8 bytes are its number, the rest a
/// pseudo-random fill from it, so that a swapped or torn message shows.
#[derive(Clone, PartialEq, Eq)]
struct Msg(Vec<u8>);

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Msg {
    fn new(id: u64, len: usize) -> Msg {
        let mut bytes = id.to_le_bytes().to_vec();
        bytes.resize(len.max(8), 0);
        let mut state = id;
        for chunk in bytes[8..].chunks_mut(8) {
            let r = splitmix(&mut state).to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        bytes.truncate(len);
        Msg(bytes)
    }
}

impl fmt::Debug for Msg {
    /// Number, length and a checksum, not kilobytes of bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut id = [0u8; 8];
        let n = self.0.len().min(8);
        id[..n].copy_from_slice(&self.0[..n]);
        let sum = self.0.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        write!(
            f,
            "#{}[{} B, {:04x}]",
            u64::from_le_bytes(id),
            self.0.len(),
            sum & 0xffff
        )
    }
}

/// An operation with its messages (or items) made.
#[derive(Clone, Debug)]
enum Cmd<T> {
    TryPut(T),
    PutTimeout(T),
    Put(T),
    PutMany(Vec<T>),
    TryGet,
    Get,
    /// A typed queue runs it as `get`.
    GetInto,
    GetMany(usize),
    /// Generated for typed queues only.
    GetManyTimeout(usize),
    GetTimeout,
    Len,
    Close,
}

/// What an operation returned.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Out<T> {
    Put(PutOut),
    /// The outcome and how many went in.
    PutMany(PutOut, usize),
    Got(Result<Vec<T>, GetKind>),
    Len {
        len: usize,
        empty: bool,
    },
    /// `is_closed` after `close`.
    Closed(bool),
}

fn make_cmd<Q: Checked>(op: &Op, max: usize, next_id: &mut u64) -> Cmd<Q::Item> {
    let mut item = |spec: &LenSpec| {
        *next_id += 1;
        Q::make(*next_id, spec.resolve(max))
    };
    match op {
        Op::TryPut(s) => Cmd::TryPut(item(s)),
        Op::PutTimeout(s) => Cmd::PutTimeout(item(s)),
        Op::Put(s) => Cmd::Put(item(s)),
        Op::PutMany(specs) => Cmd::PutMany(specs.iter().map(item).collect()),
        Op::TryGet => Cmd::TryGet,
        Op::Get => Cmd::Get,
        Op::GetInto => Cmd::GetInto,
        Op::GetMany(n) => Cmd::GetMany(*n),
        Op::GetManyTimeout(n) => Cmd::GetManyTimeout(*n),
        Op::GetTimeout => Cmd::GetTimeout,
        Op::Len => Cmd::Len,
        Op::Close => Cmd::Close,
    }
}

/// What the model says `cmd` returns (applied to the model, but for a
/// batch get); `None` for a blocking operation that would wait forever
/// (not run).
fn expect<Q: Checked>(model: &mut Model<Q::Item>, cmd: &Cmd<Q::Item>) -> Option<Expect<Q::Item>> {
    let put = |model: &mut Model<Q::Item>, item: &Q::Item, wait| {
        model.put(item, Q::size(item), wait).map(Out::Put)
    };
    let out = match cmd {
        Cmd::TryPut(item) => put(model, item, Wait::No),
        Cmd::PutTimeout(item) => put(model, item, Wait::Tiny),
        Cmd::Put(item) => put(model, item, Wait::Forever),
        Cmd::PutMany(items) => {
            let items: Vec<(Q::Item, usize)> =
                items.iter().map(|i| (i.clone(), Q::size(i))).collect();
            model
                .put_many(&items)
                .map(|(out, done)| Out::PutMany(out, done))
        }
        Cmd::TryGet => model.get(Wait::No),
        Cmd::Get | Cmd::GetInto => model.get(Wait::Forever),
        Cmd::GetMany(max) => return model.peek(*max, Wait::Forever).map(Expect::Batch),
        Cmd::GetManyTimeout(max) => return model.peek(*max, Wait::Tiny).map(Expect::Batch),
        Cmd::GetTimeout => model.get(Wait::Tiny),
        Cmd::Len => Some(Out::Len {
            len: model.len(),
            empty: model.len() == 0,
        }),
        Cmd::Close => {
            model.closed = true;
            Some(Out::Closed(true))
        }
    };
    out.map(Expect::Exact)
}

/// A queue under test: how its items are made and sized for the model,
/// and what `check` reads from it besides the operations' outcomes.
trait Checked {
    type Item: Clone + PartialEq + fmt::Debug;
    /// Item number `id` whose stored size is `len` bytes.
    fn make(id: u64, len: usize) -> Self::Item;
    /// The bytes an item takes in the queue (its encoding).
    fn size(item: &Self::Item) -> usize;
    fn try_take(&self) -> Result<Self::Item, TryGetError>;
    fn capacity(&self) -> usize;
    fn maxsize(&self) -> usize;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool;
    fn is_closed(&self) -> bool;
    /// `is_full`, where the queue has it.
    fn is_full(&self) -> Option<bool>;
}

impl Checked for ByteQueue {
    type Item = Msg;
    fn make(id: u64, len: usize) -> Msg {
        Msg::new(id, len)
    }
    fn size(m: &Msg) -> usize {
        m.0.len()
    }
    fn try_take(&self) -> Result<Msg, TryGetError> {
        self.try_get().map(Msg)
    }
    fn capacity(&self) -> usize {
        ByteQueue::capacity(self)
    }
    fn maxsize(&self) -> usize {
        ByteQueue::maxsize(self)
    }
    fn len(&self) -> usize {
        ByteQueue::len(self)
    }
    fn is_empty(&self) -> bool {
        ByteQueue::is_empty(self)
    }
    fn is_closed(&self) -> bool {
        ByteQueue::is_closed(self)
    }
    fn is_full(&self) -> Option<bool> {
        None
    }
}

fn got_one(r: Result<Vec<u8>, impl GetOutcome>) -> Out<Msg> {
    Out::Got(r.map(|m| vec![Msg(m)]).map_err(get_kind))
}

/// Runs `cmd` on the real queue.
fn exec(q: &ByteQueue, cmd: &Cmd<Msg>) -> Out<Msg> {
    match cmd {
        Cmd::TryPut(m) => Out::Put(put_out(q.try_put(&m.0)).0),
        Cmd::PutTimeout(m) => Out::Put(put_out(q.put_timeout(&m.0, TINY)).0),
        Cmd::Put(m) => Out::Put(put_out(q.put(&m.0)).0),
        Cmd::PutMany(ms) => {
            let slices: Vec<&[u8]> = ms.iter().map(|m| m.0.as_slice()).collect();
            match put_out(q.put_many(&slices)) {
                (PutOut::Ok, _) => Out::PutMany(PutOut::Ok, ms.len()),
                (out, done) => Out::PutMany(out, done.unwrap_or(usize::MAX)),
            }
        }
        Cmd::TryGet => got_one(q.try_get()),
        Cmd::Get => got_one(q.get()),
        Cmd::GetTimeout => got_one(q.get_timeout(TINY)),
        Cmd::GetInto => {
            let mut buf = b"stale bytes".to_vec();
            match q.get_into(&mut buf) {
                Ok(()) => Out::Got(Ok(vec![Msg(buf)])),
                Err(e) if buf.is_empty() => Out::Got(Err(get_kind(e))),
                Err(e) => Out::Got(Err(GetKind::Other(format!(
                    "{e}, and the buffer was not cleared: {buf:?}"
                )))),
            }
        }
        Cmd::GetMany(max) => Out::Got(
            q.get_many(*max)
                .map(|v| v.into_iter().map(Msg).collect())
                .map_err(get_kind),
        ),
        Cmd::GetManyTimeout(_) => unreachable!("generated for typed queues only"),
        Cmd::Len => Out::Len {
            len: q.len(),
            empty: q.is_empty(),
        },
        Cmd::Close => {
            q.close();
            Out::Closed(q.is_closed())
        }
    }
}

/// Applies `steps` (thread, operation) to the model and, through `run`, to
/// the queue `q`, comparing every outcome and, after each, `len`,
/// `is_empty`, `is_full` (where there is one) and `is_closed` (read
/// through `q`); then drains `q` and compares what is left.
fn check<Q: Checked>(
    q: &Q,
    requested: usize,
    maxsize: usize,
    steps: &[(usize, Op)],
    run: &mut Run<Cmd<Q::Item>, Out<Q::Item>>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(q.capacity(), ring_capacity(requested));
    prop_assert_eq!(q.maxsize(), maxsize);
    let mut model = Model::new(q.capacity(), maxsize);
    let mut next_id = 0;
    for (i, (thread, op)) in steps.iter().enumerate() {
        let cmd = make_cmd::<Q>(op, model.max_message(), &mut next_id);
        let Some(expected) = expect::<Q>(&mut model, &cmd) else {
            continue; // would block forever
        };
        let got = run(*thread, &cmd).map_err(|why| {
            TestCaseError::fail(format!("step {i} by thread {thread}: {cmd:?}: {why}"))
        })?;
        if let Err(why) = check_out(&mut model, expected, &got) {
            return Err(TestCaseError::fail(format!(
                "step {i} by thread {thread}: {cmd:?}: {why} (model after: {} messages, {} bytes)",
                model.len(),
                model.bytes
            )));
        }
        prop_assert_eq!(q.len(), model.len(), "len after step {}: {:?}", i, cmd);
        prop_assert_eq!(q.is_empty(), model.len() == 0, "is_empty after step {}", i);
        if let Some(full) = q.is_full() {
            prop_assert_eq!(full, model.is_full(), "is_full after step {}", i);
        }
        prop_assert_eq!(q.is_closed(), model.closed, "is_closed after step {}", i);
    }
    check_drained(&model, || q.try_take())
}

/// Drains the queue through `try_get`: what is left must be what the model
/// holds, in order, and the last `try_get` must fail as the model says.
fn check_drained<T: Clone + PartialEq + fmt::Debug>(
    model: &Model<T>,
    mut try_get: impl FnMut() -> Result<T, TryGetError>,
) -> Result<(), TestCaseError> {
    let mut left = Vec::new();
    let end = loop {
        match try_get() {
            Ok(item) => left.push(item),
            Err(e) => break get_kind(e),
        }
    };
    let want: Vec<T> = model.items.iter().map(|(item, _)| item.clone()).collect();
    prop_assert_eq!(left, want, "left in the queue at the end");
    let want_end = if model.closed {
        GetKind::Closed
    } else {
        GetKind::Empty
    };
    prop_assert_eq!(end, want_end);
    Ok(())
}

/// Random operations on a byte queue of a random small capacity and
/// maxsize, from one thread, against the model.
#[test]
fn byte_queue_matches_the_model() {
    let _w = watchdog(120);
    let strategy = (
        capacity(),
        maxsize(),
        vec(op(), 1..=300),
        proptest::option::weighted(0.4, (any::<Index>(), Just(0usize))),
    );
    run_property(256, strategy, |(requested, maxsize, ops, close)| {
        let q = ByteQueue::with_capacity(maxsize, requested).unwrap();
        let steps = with_close(ops.into_iter().map(|op| (0, op)).collect(), close);
        with_workers(
            vec![Handle::Shared(&q)],
            exec,
            || q.close(),
            |run| check(&q, requested, maxsize, &steps, run),
        )
    });
}

/// Worker threads to issue operations from; the queue's sides follow them.
const THREADS: usize = 3;

/// A run of operations: long runs by one thread (a side is leased to a
/// thread after 64 consecutive entries, twice as many after each
/// revocation), quick alternation, and one thread putting while another
/// gets (each side leased to a different thread).
fn segment() -> impl Strategy<Value = Vec<(usize, Op)>> {
    let run = |t: usize, ops: Vec<Op>| ops.into_iter().map(|op| (t, op)).collect::<Vec<_>>();
    prop_oneof![
        3 => (0..THREADS, vec(op(), 1..=200)).prop_map(move |(t, ops)| run(t, ops)),
        1 => (0..THREADS, vec(prop_oneof![put_op(small_len()), get_op()], 64..=300))
            .prop_map(move |(t, ops)| run(t, ops)),
        3 => vec((0..THREADS, op()), 1..=12),
        2 => (0..THREADS, 1..THREADS, vec((put_op(small_len()), get_op()), 10..=150)).prop_map(
            |(p, d, rounds)| {
                let c = (p + d) % THREADS;
                rounds
                    .into_iter()
                    .flat_map(|(put, get)| [(p, put), (c, get)])
                    .collect()
            }
        ),
    ]
}

/// The same against operations issued by several threads in turn, each
/// through a handle of its own (`try_clone`) or all through one shared
/// handle.
#[test]
fn byte_queue_from_threads_in_turn_matches_the_model() {
    let _w = watchdog(120);
    let strategy = (
        capacity(),
        maxsize(),
        any::<bool>(),
        vec(segment(), 1..=6).prop_map(|segs| segs.concat()),
        proptest::option::weighted(0.3, (any::<Index>(), 0..THREADS)),
    );
    run_property(
        96,
        strategy,
        |(requested, maxsize, shared, steps, close)| {
            let q = ByteQueue::with_capacity(maxsize, requested).unwrap();
            let steps = with_close(steps, close);
            let handles = (0..THREADS)
                .map(|_| match shared {
                    true => Handle::Shared(&q),
                    false => Handle::Own(q.try_clone().unwrap()),
                })
                .collect();
            with_workers(
                handles,
                exec,
                || q.close(),
                |run| check(&q, requested, maxsize, &steps, run),
            )
        },
    );
}

// ----- a typed queue ---------------------------------------------------------

type Item = Vec<u32>;

fn encoded_len(item: &Item) -> usize {
    let mut buf = Vec::new();
    Postcard::encode(item, &mut buf).unwrap();
    buf.len()
}

fn varint_len(v: u32) -> usize {
    match v {
        0..0x80 => 1,
        0x80..0x4000 => 2,
        0x4000..0x20_0000 => 3,
        0x20_0000..0x1000_0000 => 4,
        _ => 5,
    }
}

/// An item numbered `id` (its first element) whose postcard encoding is
/// `size` bytes (or the nearest possible), its other elements of mixed
/// widths (1 to 5 bytes) so that the fill tells items apart.
fn typed_item(id: u64, size: usize) -> Item {
    let first = id as u32;
    let mut state = id;
    let target = size.saturating_sub(varint_len(first));
    let mut widths: Vec<usize> = Vec::new();
    let mut sum = 0;
    loop {
        let count = widths.len() as u32 + 1;
        let left = target.saturating_sub(varint_len(count) + sum);
        if left == 0 {
            break;
        }
        // One more element may lengthen the count's varint.
        let grow = varint_len(count + 1) - varint_len(count);
        if left <= grow {
            // No element fits: widen one instead.
            if let Some(w) = widths.iter_mut().find(|w| **w + left <= 5) {
                *w += left;
            }
            break;
        }
        let w = (1 + splitmix(&mut state) as usize % 5).min(left - grow);
        widths.push(w);
        sum += w;
    }
    let mut item = vec![first];
    for w in widths {
        // An element of exactly `w` bytes.
        let low = if w == 1 { 0 } else { 1u64 << (7 * (w - 1)) };
        let high = if w == 5 { 1u64 << 32 } else { 1u64 << (7 * w) };
        item.push((low + splitmix(&mut state) % (high - low)) as u32);
    }
    item
}

impl Checked for Queue<Item> {
    type Item = Item;
    fn make(id: u64, len: usize) -> Item {
        typed_item(id, len)
    }
    fn size(item: &Item) -> usize {
        encoded_len(item)
    }
    fn try_take(&self) -> Result<Item, TryGetError> {
        self.try_get()
    }
    fn capacity(&self) -> usize {
        Queue::capacity(self)
    }
    fn maxsize(&self) -> usize {
        Queue::maxsize(self)
    }
    fn len(&self) -> usize {
        Queue::len(self)
    }
    fn is_empty(&self) -> bool {
        Queue::is_empty(self)
    }
    fn is_closed(&self) -> bool {
        Queue::is_closed(self)
    }
    fn is_full(&self) -> Option<bool> {
        Some(Queue::is_full(self))
    }
}

/// A single put's outcome, checking that a refused item is handed back.
fn typed_put(item: &Item, r: Result<(), impl PutOutcome<Item>>) -> Out<Item> {
    match put_out(r) {
        (out, None) => Out::Put(out),
        (out, Some(back)) if back == *item => Out::Put(out),
        (out, Some(back)) => Out::Put(PutOut::Other(format!(
            "{out:?} handed back {back:?} instead of {item:?}"
        ))),
    }
}

fn typed_one(r: Result<Item, impl GetOutcome>) -> Out<Item> {
    Out::Got(r.map(|v| vec![v]).map_err(get_kind))
}

fn texec(q: &Queue<Item>, cmd: &Cmd<Item>) -> Out<Item> {
    match cmd {
        Cmd::TryPut(item) => typed_put(item, q.try_put(item.clone())),
        Cmd::PutTimeout(item) => typed_put(item, q.put_timeout(item.clone(), TINY)),
        Cmd::Put(item) => typed_put(item, q.put(item.clone())),
        Cmd::PutMany(items) => match put_out(q.put_many(items.clone())) {
            (PutOut::Ok, _) => Out::PutMany(PutOut::Ok, items.len()),
            (out, None) => Out::PutMany(out, usize::MAX),
            // The items not put are handed back: they are the tail.
            (out, Some(rest)) if items.ends_with(&rest) => {
                Out::PutMany(out, items.len() - rest.len())
            }
            (out, Some(rest)) => Out::PutMany(
                PutOut::Other(format!("{out:?} handed back {rest:?} of {items:?}")),
                usize::MAX,
            ),
        },
        Cmd::TryGet => typed_one(q.try_get()),
        Cmd::Get | Cmd::GetInto => typed_one(q.get()),
        Cmd::GetTimeout => typed_one(q.get_timeout(TINY)),
        Cmd::GetMany(max) => Out::Got(q.get_many(*max).map_err(get_kind)),
        Cmd::GetManyTimeout(max) => Out::Got(q.get_many_timeout(*max, TINY).map_err(get_kind)),
        Cmd::Len => Out::Len {
            len: q.len(),
            empty: q.is_empty(),
        },
        Cmd::Close => {
            q.close();
            Out::Closed(q.is_closed())
        }
    }
}

fn typed_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => op(),
        1 => (1usize..=6).prop_map(Op::GetManyTimeout),
    ]
}

/// A `Queue<Vec<u32>>` against the model, sizes being postcard encodings
/// (items of exactly the largest size, one byte more, and so on), checking
/// also `is_full` (`maxsize` items queued) and that refused items are
/// handed back.
#[test]
fn typed_queue_matches_the_model() {
    let _w = watchdog(120);
    let strategy = (
        capacity(),
        maxsize(),
        vec(typed_op(), 1..=200),
        proptest::option::weighted(0.4, (any::<Index>(), Just(0usize))),
    );
    run_property(128, strategy, |(requested, maxsize, ops, close)| {
        let q: Queue<Item> = Queue::with_capacity(maxsize, requested).unwrap();
        let steps = with_close(ops.into_iter().map(|op| (0, op)).collect(), close);
        with_workers(
            vec![Handle::Shared(&q)],
            texec,
            || q.close(),
            |run| check(&q, requested, maxsize, &steps, run),
        )
    });
}

#[test]
fn typed_items_have_the_sizes_asked_for() {
    for id in [1u64, 100, 127, 128, 300, 20_000, 1 << 40] {
        let first = varint_len(id as u32);
        for size in 1 + first..3000 {
            let item = typed_item(id, size);
            assert_eq!(item[0], id as u32);
            assert_eq!(encoded_len(&item), size, "id {id}, item {item:?}");
        }
    }
}

// ----- fixed sequences -------------------------------------------------------

/// Closing a queue that holds messages: puts fail at once (a too-large
/// message is still `TooLarge`), gets drain in order, then fail with
/// `Closed`, whatever their wait.
#[test]
fn close_while_nonempty_drains_then_refuses() {
    let _w = watchdog(30);
    let q = ByteQueue::with_capacity(2, 256).unwrap();
    let a = Msg::new(1, 100);
    let b = Msg::new(2, 0);
    q.put(&a.0).unwrap();
    q.put(&b.0).unwrap();
    assert!(matches!(q.try_put(b"x"), Err(TryPutError::Full(()))));
    q.close();
    q.close(); // twice is fine
    assert!(q.is_closed());
    assert!(matches!(q.try_put(b"x"), Err(TryPutError::Closed(()))));
    assert!(matches!(q.put(b"x"), Err(PutError::Closed(()))));
    assert!(matches!(
        q.put_timeout(&[0; 241], TINY),
        Err(PutTimeoutError::TooLarge {
            size: 241,
            max: 240,
            ..
        })
    ));
    assert!(matches!(q.put_many(&[b"x"]), Err(PutError::Closed(0))));
    assert_eq!(q.len(), 2);
    assert_eq!(Msg(q.get().unwrap()), a);
    assert_eq!(q.get_many(5).unwrap(), vec![b.0]);
    assert!(matches!(q.try_get(), Err(TryGetError::Closed)));
    assert!(matches!(q.get(), Err(GetError::Closed)));
    assert!(matches!(q.get_timeout(TINY), Err(GetTimeoutError::Closed)));
    assert!(matches!(q.get_many(3), Err(GetError::Closed)));
    let mut buf = vec![1, 2, 3];
    assert!(matches!(q.get_into(&mut buf), Err(GetError::Closed)));
    assert!(buf.is_empty());
}

/// Runs `f` on a thread of its own: its result, or `None` if it has not
/// returned within 2 s, after which `unblock` is called to let it out.
fn within_2s<R: Send>(f: impl FnOnce() -> R + Send, unblock: impl Fn()) -> Option<R> {
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(move || {
            let _ = tx.send(f());
        });
        let r = rx.recv_timeout(Duration::from_secs(2)).ok();
        if r.is_none() {
            unblock();
        }
        r
    })
}

/// `get_many(0)` (and `get_many_timeout(0, _)`) must return an empty batch
/// at once and leave the queued message where it is. (It once took nothing,
/// found the queue not empty, "waited" for a message, which returned at
/// once, and tried again forever at 100% CPU, deadline or not.)
#[test]
fn get_many_zero_returns_at_once() {
    let _w = watchdog(30);
    let mut failures = Vec::new();

    let q = ByteQueue::with_capacity(0, 1024).unwrap();
    q.put(b"x").unwrap();
    // Closed and empty, a stuck call fails `Closed` and returns.
    let unblock = || {
        q.close();
        while q.try_get().is_ok() {}
    };
    match within_2s(|| q.get_many(0), unblock) {
        Some(r) => {
            assert!(r.is_ok_and(|v| v.is_empty()));
            assert_eq!(q.try_get().unwrap(), b"x");
        }
        None => failures.push("ByteQueue::get_many(0) on a queue of one message"),
    }

    let t: Queue<u32> = Queue::with_capacity(0, 1024).unwrap();
    t.put(7).unwrap();
    let unblock = || {
        t.close();
        while t.try_get().is_ok() {}
    };
    match within_2s(|| t.get_many_timeout(0, Duration::from_millis(10)), unblock) {
        Some(r) => {
            assert!(r.is_ok_and(|v| v.is_empty()));
            assert_eq!(t.try_get().unwrap(), 7);
        }
        None => failures.push("Queue::get_many_timeout(0, 10 ms) on a queue of one item"),
    }
    assert!(failures.is_empty(), "still running after 2 s: {failures:?}");
}
