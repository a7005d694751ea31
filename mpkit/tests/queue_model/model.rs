//! The model: what a queue should hold and return, and the queue's errors
//! in the model's terms.

use std::collections::VecDeque;
use std::fmt;

use mpkit::queue::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, TryGetError, TryPutError,
};

use crate::check::Out;

const RECORD_HEADER: usize = 16;
const RECORD_ALIGN: usize = 64;

fn record_size(len: usize) -> usize {
    (RECORD_HEADER + len).next_multiple_of(RECORD_ALIGN)
}

/// The ring capacity `with_capacity` makes of a requested one.
pub fn ring_capacity(requested: usize) -> usize {
    requested.max(64).next_power_of_two()
}

/// What a put returned (the value handed back is checked separately).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutOut {
    Ok,
    Full,
    Timeout,
    Closed,
    TooLarge { size: usize, max: usize },
    Other(String),
}

/// Why a get returned no message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GetKind {
    Empty,
    Timeout,
    Closed,
    Other(String),
}

/// How long an operation may wait.
#[derive(Clone, Copy, Debug)]
pub enum Wait {
    No,
    Tiny,
    Forever,
}

/// The queue as it should be: its messages (each with its encoded length)
/// and the ring's accounting.
#[derive(Debug)]
pub struct Model<T> {
    pub capacity: usize,
    pub maxsize: usize,
    pub items: VecDeque<(T, usize)>,
    pub bytes: usize,
    pub closed: bool,
}

impl<T: Clone> Model<T> {
    pub fn new(capacity: usize, maxsize: usize) -> Self {
        Model {
            capacity,
            maxsize,
            items: VecDeque::new(),
            bytes: 0,
            closed: false,
        }
    }

    pub fn max_message(&self) -> usize {
        self.capacity - RECORD_HEADER
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when `maxsize` messages are queued (`Queue::is_full`).
    pub fn is_full(&self) -> bool {
        self.maxsize != 0 && self.len() >= self.maxsize
    }

    /// Whether `count` more messages taking `bytes` of records fit now.
    pub fn fits(&self, count: usize, bytes: usize) -> bool {
        (self.maxsize == 0 || self.len() + count <= self.maxsize)
            && self.bytes + bytes <= self.capacity
    }

    pub fn push(&mut self, item: T, len: usize) {
        self.bytes += record_size(len);
        self.items.push_back((item, len));
    }

    /// A put of one message; `None` when it would wait forever.
    pub fn put(&mut self, item: &T, len: usize, wait: Wait) -> Option<PutOut> {
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
    pub fn put_many(&mut self, items: &[(T, usize)]) -> Option<(PutOut, usize)> {
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
    pub fn peek(&self, max: usize, wait: Wait) -> Option<Result<Vec<T>, GetKind>> {
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
    pub fn take(&mut self, n: usize) {
        for (_, len) in self.items.drain(..n) {
            self.bytes -= record_size(len);
        }
    }

    /// A get of one message; `None` when it would wait forever.
    pub fn get(&mut self, wait: Wait) -> Option<Out<T>> {
        let r = self.peek(1, wait)?;
        if let Ok(got) = &r {
            self.take(got.len());
        }
        Some(Out::Got(r))
    }
}

/// What the model expects of an operation.
#[derive(Debug)]
pub enum Expect<T> {
    /// Exactly this (already applied to the model).
    Exact(Out<T>),
    /// `get_many`: exactly these messages (every one queued, up to `max`;
    /// taken from the model once seen), or this error.
    Batch(Result<Vec<T>, GetKind>),
}

/// Compares what an operation returned with what the model expects,
/// applying a batch get to the model.
pub fn check_out<T: Clone + PartialEq + fmt::Debug>(
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
pub trait PutOutcome<T> {
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

pub fn put_out<T, E: PutOutcome<T>>(r: Result<(), E>) -> (PutOut, Option<T>) {
    match r {
        Ok(()) => (PutOut::Ok, None),
        Err(e) => e.outcome(),
    }
}

/// What a get error says, in the model's terms.
pub trait GetOutcome {
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

pub fn get_kind(e: impl GetOutcome) -> GetKind {
    e.kind()
}
