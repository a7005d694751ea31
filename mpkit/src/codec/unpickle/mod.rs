//! A bounded pickle reader: the opcode stream is run on an explicit stack
//! (no recursion), memo references stay references until a value is
//! decoded, and decoding walks the result by reference with a depth limit
//! and a size budget. So a hostile pickle is an error, never a stack
//! overflow, an exponential blow-up, or an allocation sized by the sender.
//!
//! The mapping onto serde's data model is serde-pickle's (which writes
//! what [`Pickle`](super::Pickle) sends), so the two agree: `None` is unit
//! or `None`, lists, tuples and sets are sequences, dicts are maps, an enum
//! is a variant name, a `{name: data}` dict or a `(name, data)` tuple,
//! strings written by Python 2 (`STRING`) are bytes, and class instances
//! arrive as empty dicts. Differences, all on input serde-pickle rejects or
//! misreads: integers up to `u64::MAX` and `i128` decode (serde-pickle
//! stops at `i64`), a memo reference is resolved before `None` is told
//! from `Some`, and an enum tuple that is neither one nor two long is an
//! error.

use std::fmt;

use serde::de;

use super::{CodecError, CodecErrorKind};

mod machine;
mod walk;

/// The deepest nesting of lists, tuples, dicts and sets (memo references
/// followed) a pickle may decode to.
pub(super) const MAX_DEPTH: usize = 256;
/// The size budget, before the part proportional to the message.
pub(super) const BASE_BUDGET: u64 = 64 << 20;
/// What each value counts towards the budget, besides its bytes.
pub(super) const ITEM_COST: u64 = 16;

/// What reading a pickle can fail with.
#[derive(Debug)]
pub(super) enum Error {
    /// Not a pickle this reader understands.
    Invalid(String),
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Larger than the budget once memo references are expanded.
    TooLarge(u64),
    /// The value does not fit the type asked for.
    Type(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(m) | Error::Type(m) => f.write_str(m),
            Error::TooDeep => write!(
                f,
                "the pickle nests more than {MAX_DEPTH} levels deep (a hostile or runaway message)"
            ),
            Error::TooLarge(limit) => write!(
                f,
                "the pickle decodes to more than {limit} bytes once its memo references are \
                 expanded (a hostile or runaway message)"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::Type(msg.to_string())
    }
}

impl From<Error> for CodecError {
    fn from(e: Error) -> CodecError {
        let kind = match e {
            Error::TooDeep => CodecErrorKind::TooDeep { limit: MAX_DEPTH },
            Error::TooLarge(limit) => CodecErrorKind::TooLarge { limit },
            Error::Invalid(_) | Error::Type(_) => CodecErrorKind::Invalid,
        };
        CodecError::with_kind("pickle", kind, e)
    }
}

fn invalid<T>(at: usize, what: impl fmt::Display) -> Result<T, Error> {
    Err(Error::Invalid(format!("{what} at byte {at}")))
}

/// A decoded value. Containers are boxed with their nesting depth and
/// their weight (what copying them costs), kept current as they grow; a
/// memo reference is an id, looked up when the value is decoded.
#[derive(Clone, Debug)]
enum V {
    None,
    Bool(bool),
    Int(i128),
    /// An integer outside `i128`: an error if decoded.
    Huge,
    Float(f64),
    Bytes(Vec<u8>),
    Str(String),
    Ref(u32),
    Global(Global),
    C(Box<Container>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    List,
    Tuple,
    Set,
    FrozenSet,
    /// Keys and values alternate in `items`.
    Dict,
}

#[derive(Clone, Debug)]
struct Container {
    kind: Kind,
    items: Vec<V>,
    depth: usize,
    weight: u64,
}

/// The module globals a pickle may name that mean data (how protocols
/// 0-3 write sets, bytes and bytearrays); anything else is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Global {
    Set,
    FrozenSet,
    /// `bytes()`: how protocols 0-2 write `b''`.
    Bytes,
    Bytearray,
    List,
    Int,
    Encode,
    Reconstructor,
    Other,
}

impl V {
    fn depth(&self) -> usize {
        match self {
            V::C(c) => c.depth,
            _ => 0,
        }
    }

    fn weight(&self) -> u64 {
        match self {
            V::C(c) => c.weight,
            V::Bytes(b) => ITEM_COST + b.len() as u64,
            V::Str(s) => ITEM_COST + s.len() as u64,
            _ => ITEM_COST,
        }
    }

    fn container(kind: Kind, items: Vec<V>) -> Result<V, Error> {
        let mut c = Container {
            kind,
            items: Vec::new(),
            depth: 1,
            weight: ITEM_COST,
        };
        c.extend(items)?;
        Ok(V::C(Box::new(c)))
    }
}

impl Container {
    fn extend(&mut self, items: impl IntoIterator<Item = V>) -> Result<(), Error> {
        for item in items {
            self.depth = self.depth.max(item.depth() + 1);
            self.weight = self.weight.saturating_add(item.weight());
            self.items.push(item);
        }
        if self.depth > MAX_DEPTH {
            return Err(Error::TooDeep);
        }
        Ok(())
    }
}

fn describe(v: &V) -> &'static str {
    match v {
        V::None => "None",
        V::Bool(_) => "a bool",
        V::Int(_) | V::Huge => "an integer",
        V::Float(_) => "a float",
        V::Bytes(_) => "bytes",
        V::Str(_) => "a string",
        V::Ref(_) => "a memo reference",
        V::Global(_) => "a global",
        V::C(c) => match c.kind {
            Kind::List => "a list",
            Kind::Tuple => "a tuple",
            Kind::Set | Kind::FrozenSet => "a set",
            Kind::Dict => "a dict",
        },
    }
}

/// Decodes a whole pickle as a `T`.
pub(super) fn from_slice<T: de::DeserializeOwned>(input: &[u8]) -> Result<T, Error> {
    let budget = BASE_BUDGET.saturating_add(ITEM_COST.saturating_mul(input.len() as u64));
    let (root, memo) = machine::run(input, budget)?;
    walk::decode(&root, &memo, budget)
}
