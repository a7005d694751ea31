//! The operations a test applies, and the strategies that make them.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

/// A message length, resolved against the queue's largest message.
#[derive(Clone, Copy, Debug)]
pub enum LenSpec {
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
    pub fn resolve(self, max: usize) -> usize {
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

pub fn small_len() -> BoxedStrategy<LenSpec> {
    prop_oneof![
        6 => (0usize..=64).prop_map(LenSpec::Small),
        1 => (0u16..4096).prop_map(LenSpec::Frac),
    ]
    .boxed()
}

/// One operation on a queue, before its messages are made.
#[derive(Clone, Debug)]
pub enum Op {
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

pub fn put_op(len: BoxedStrategy<LenSpec>) -> impl Strategy<Value = Op> {
    let batch_len = prop_oneof![4 => small_len(), 1 => len.clone()];
    prop_oneof![
        6 => len.clone().prop_map(Op::TryPut),
        2 => len.prop_map(Op::Put),
        2 => vec(batch_len, 0..=5).prop_map(Op::PutMany),
    ]
}

pub fn get_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => Just(Op::TryGet),
        2 => Just(Op::Get),
        2 => Just(Op::GetInto),
        2 => (1usize..=6).prop_map(Op::GetMany),
    ]
}

/// Any operation but `Close` (placed separately); one in about 12 waits
/// for its timeout.
pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => put_op(len_spec()),
        9 => get_op(),
        1 => len_spec().prop_map(Op::PutTimeout),
        1 => Just(Op::GetTimeout),
        1 => Just(Op::Len),
    ]
}

/// Requested capacities: any small size, powers of two, one more than one.
pub fn capacity() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => 0usize..=4096,
        2 => (6u32..=12).prop_map(|k| 1usize << k),
        1 => (6u32..=11).prop_map(|k| (1usize << k) + 1),
    ]
}

pub fn maxsize() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0usize), 1usize..=8]
}

/// Inserts a `Close` (by `thread`) in the last quarter of `steps`, if
/// any, so that most of a sequence runs on an open queue.
pub fn with_close(mut steps: Vec<(usize, Op)>, at: Option<(Index, usize)>) -> Vec<(usize, Op)> {
    if let Some((at, thread)) = at {
        let i = steps.len() - at.index(steps.len() / 4 + 1);
        steps.insert(i, (thread, Op::Close));
    }
    steps
}
