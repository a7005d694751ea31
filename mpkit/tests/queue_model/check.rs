//! Commands, their outcomes, and the check of a queue against the model.

use std::fmt;

use mpkit::queue::TryGetError;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::model::{Expect, GetKind, Model, PutOut, Wait, check_out, get_kind, ring_capacity};
use crate::ops::{LenSpec, Op};
use crate::workers::Run;

/// An operation with its messages (or items) made.
#[derive(Clone, Debug)]
pub enum Cmd<T> {
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
pub enum Out<T> {
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
pub trait Checked {
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
/// Applies `steps` (thread, operation) to the model and, through `run`, to
/// the queue `q`, comparing every outcome and, after each, `len`,
/// `is_empty`, `is_full` (where there is one) and `is_closed` (read
/// through `q`); then drains `q` and compares what is left.
pub fn check<Q: Checked>(
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
