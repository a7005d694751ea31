//! Codecs: how typed values become the bytes of a message.
//!
//! A [`Connection`](crate::Connection) is generic over its codec, so the
//! choice is made once, in the type, and costs nothing per message:
//!
//! | codec | format | use it for |
//! |---|---|---|
//! | [`Postcard`] (default) | [postcard](https://docs.rs/postcard), compact, not self-describing | mpkit to mpkit |
//! | [`Json`] | JSON text (serde_json) | other languages, debugging, JSON messages as Python programs send them |
//! | [`Pickle`] | Python's pickle (reads protocols 0-5 with bounded depth and size, writes 3 with serde-pickle) | Python's `Connection.send`/`recv` |
//! | [`Checked<C>`](Checked) | a fingerprint of the value's shape, then `C` | mpkit to mpkit, when a type mix-up must be an error |
//!
//! # What decoding checks, and what it does not
//!
//! Every codec decodes into the type the receiver names, never runs code
//! chosen by the sender (unlike Python's pickle), never panics, and
//! reports bad input as a [`CodecError`] (the connection stays usable). A
//! message is accepted when its bytes *are a valid encoding of the
//! receiver's type*, which is not the same as *was sent as that type*:
//!
//! | | a valid encoding of the type | trailing bytes | sent as the same type |
//! |---|---|---|---|
//! | [`Postcard`] | checked | an error | **not checked**: `7u32` read as `i32` is `-4`, `(1u8, 2u8)` read as `String` is `"\u{2}"`, two structs with the same field types read as each other |
//! | [`Json`] | checked (names of fields, kinds of values) | an error | partly: field names must match, but `7` fits every integer type and extra fields are ignored unless the type denies them |
//! | [`Pickle`] | checked, with limits on depth and size ([`CodecErrorKind::TooDeep`], [`CodecErrorKind::TooLarge`]) | an error | partly, as JSON (Python has no integer widths) |
//! | [`Checked<C>`](Checked) | as `C` | as `C` | checked: integer widths, `str` against bytes, struct, enum, variant and field names and order; module paths are not, so equal definitions in two programs agree. See [`Checked`] for its limits |
//!
//! What no codec checks: the values themselves (a `u8` field that should
//! be at most 10, a `String` that should be a path). Validate those as any
//! input from another process.
//!
//! ```
//! use mpkit::codec::{Codec, Json, Postcard};
//!
//! let mut buf = Vec::new();
//! Json::encode(&("hi", 2), &mut buf).unwrap();
//! assert_eq!(buf, br#"["hi",2]"#);
//! let back: (String, u8) = Json::decode(&buf).unwrap();
//! assert_eq!(back, ("hi".to_string(), 2));
//!
//! buf.clear();
//! Postcard::encode(&7u32, &mut buf).unwrap();
//! assert!(Postcard::decode::<String>(&buf).is_err());
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

mod checked;
mod unpickle;

pub use checked::Checked;

/// An encoding or decoding failure, with the codec's own explanation.
///
/// [`kind`](Self::kind) tells the failures a program may want to act on
/// apart from plain malformed input.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}", .0.codec, .0.message)]
pub struct CodecError(Box<Inner>);

/// Boxed, so that results carrying a `CodecError` stay small.
#[derive(Debug)]
struct Inner {
    codec: &'static str,
    kind: CodecErrorKind,
    message: String,
}

/// What kind of failure a [`CodecError`] is.
///
/// ```
/// use mpkit::codec::{Codec, CodecErrorKind, Pickle};
///
/// // A list nested 100 000 deep, in 200 001 bytes.
/// let mut deep = vec![b']'; 100_000];
/// deep.extend(vec![b'a'; 99_999]);
/// deep.push(b'.');
/// let err = Pickle::decode::<serde_json::Value>(&deep).unwrap_err();
/// assert!(matches!(err.kind(), CodecErrorKind::TooDeep { .. }));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecErrorKind {
    /// The value could not be encoded, or the bytes are not a valid
    /// encoding of the type asked for.
    Invalid,
    /// The message nests deeper than the codec allows
    /// ([`Pickle`] decodes at most [`Pickle::MAX_DEPTH`] levels).
    TooDeep {
        /// The deepest nesting allowed.
        limit: usize,
    },
    /// The message would decode to more than the codec allows: a small
    /// pickle can reference one object many times, and each reference
    /// becomes a copy in Rust (see [`Pickle`]).
    TooLarge {
        /// The most the decoded value may count, in bytes.
        limit: u64,
    },
    /// [`Checked`]: the message was sent as a different type than the
    /// one the receiver asked for.
    TypeMismatch {
        /// The sender's type, as the sender named it (its path left out).
        sent: String,
        /// The receiver's type, named the same way.
        expected: String,
    },
}

impl CodecError {
    /// A new error reported by the codec named `codec`, of kind
    /// [`CodecErrorKind::Invalid`].
    pub fn new(codec: &'static str, message: impl std::fmt::Display) -> CodecError {
        CodecError::with_kind(codec, CodecErrorKind::Invalid, message)
    }

    /// A new error of the given kind reported by the codec named `codec`.
    pub fn with_kind(
        codec: &'static str,
        kind: CodecErrorKind,
        message: impl std::fmt::Display,
    ) -> CodecError {
        CodecError(Box::new(Inner {
            codec,
            kind,
            message: message.to_string(),
        }))
    }

    /// The name of the codec that failed.
    pub fn codec(&self) -> &'static str {
        self.0.codec
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> &CodecErrorKind {
        &self.0.kind
    }
}

/// A way to turn serde values into message bytes and back.
///
/// Implement it to plug in another format; the codec is a type parameter of
/// [`Connection`](crate::Connection), so it is zero-sized and stateless.
pub trait Codec: 'static {
    /// A short name for error messages (`"postcard"`, `"json"`).
    const NAME: &'static str;

    /// Appends the encoding of `value` to `out`.
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Decodes a whole message. Trailing bytes are an error: a message that
    /// decodes as a shorter type is not silently accepted.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError>;
}

/// The default codec: [postcard](https://docs.rs/postcard), a compact,
/// maintained, `no_std`-friendly serde format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Postcard;

impl Codec for Postcard {
    const NAME: &'static str = "postcard";

    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let buf = std::mem::take(out);
        match postcard::to_extend(value, buf) {
            Ok(buf) => {
                *out = buf;
                Ok(())
            }
            Err(e) => {
                // postcard drops the message of custom errors ("Serde
                // Serialization Error"); serializing again with serde_json,
                // which keeps it, recovers what the value's Serialize said.
                let why = match serde_json::to_writer(std::io::sink(), value) {
                    Err(j) if j.is_data() => j.to_string(),
                    _ => e.to_string(),
                };
                Err(CodecError::new(Self::NAME, why))
            }
        }
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        let (value, rest) =
            postcard::take_from_bytes(bytes).map_err(|e| CodecError::new(Self::NAME, e))?;
        if rest.is_empty() {
            Ok(value)
        } else {
            Err(CodecError::new(
                Self::NAME,
                format_args!("{} trailing bytes after the value", rest.len()),
            ))
        }
    }
}

/// JSON (serde_json): readable by every language.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Json;

impl Codec for Json {
    const NAME: &'static str = "json";

    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        serde_json::to_writer(out, value).map_err(|e| CodecError::new(Self::NAME, e))
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| CodecError::new(Self::NAME, e))
    }
}

/// Python's pickle format, so that Python's `conn.send(obj)` arrives as a
/// Rust value and a Rust value arrives in Python as objects: dicts and
/// structs, lists, tuples, strings, numbers, `None`.
///
/// Encoding is [serde-pickle](https://docs.rs/serde-pickle)'s (protocol
/// 3). Decoding reads protocols 0-5 into plain data with mpkit's own
/// reader, which follows serde-pickle's mapping (see
/// [`CodecErrorKind`] for what it reports): it never imports or calls
/// anything, so a hostile pickle is an error, not code execution.
///
/// # Limits on what a pickle may decode to
///
/// A pickle can describe more than its length suggests: nesting costs two
/// bytes a level, and a memo reference (Python's way of writing one
/// object twice) costs two bytes but becomes a whole copy in Rust, so
/// references to references grow exponentially. The reader runs the
/// opcodes without recursion and keeps references as references until it
/// decodes, and it refuses, with an error and nothing large built:
///
/// - nesting deeper than [`Pickle::MAX_DEPTH`] levels of lists, tuples,
///   sets and dicts, memo references followed
///   ([`CodecErrorKind::TooDeep`]): deeper values would overflow the
///   stack of the thread that decodes them;
/// - a decoded value larger than [`Pickle::BASE_BUDGET`] bytes plus
///   [`Pickle::ITEM_COST`] times the message's length, counting each
///   value (number, string, container, each use of a memo reference) as
///   [`Pickle::ITEM_COST`] bytes plus the bytes of its text
///   ([`CodecErrorKind::TooLarge`]). A pickle that shares nothing always
///   fits; copies made while reading (`DUP`, memo entries given to
///   `set()` or `bytes()`) are counted against the same amount;
/// - opcodes outside protocols 0-5's plain data (`PERSID`, `EXT1`-`EXT4`,
///   out-of-band buffers), a truncated stream, lengths that run past the
///   end, trailing bytes, and objects that contain themselves
///   ([`CodecErrorKind::Invalid`]).
///
/// ```
/// use mpkit::codec::{Codec, Pickle};
/// use std::collections::BTreeMap;
///
/// let mut buf = Vec::new();
/// Pickle::encode(&BTreeMap::from([("n", 1)]), &mut buf).unwrap();
/// let back: BTreeMap<String, i64> = Pickle::decode(&buf).unwrap();
/// assert_eq!(back["n"], 1);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pickle;

impl Pickle {
    /// The deepest nesting a pickle may decode to. Python's own pickler
    /// stops near 1000 levels (its recursion limit). Decoding 256 levels
    /// into a `serde_json::Value` and a `serde_pickle::Value` takes about
    /// 460 KiB of stack unoptimized (110 KiB at `opt-level = 1`): a
    /// quarter of a spawned thread's 2 MiB, leaving room for the
    /// receiver's own code and deeper-framed `Deserialize` impls.
    pub const MAX_DEPTH: usize = unpickle::MAX_DEPTH;
    /// The size budget of a decoded value, before the part proportional
    /// to the message (see [Limits](Pickle#limits-on-what-a-pickle-may-decode-to)).
    pub const BASE_BUDGET: u64 = unpickle::BASE_BUDGET;
    /// What each decoded value counts towards the budget, besides its bytes.
    pub const ITEM_COST: u64 = unpickle::ITEM_COST;
}

impl Codec for Pickle {
    const NAME: &'static str = "pickle";

    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        /// serde-pickle wants a sized value; a reference is one.
        struct Sized<'a, T: ?std::marker::Sized>(&'a T);
        impl<T: Serialize + ?std::marker::Sized> Serialize for Sized<'_, T> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.0.serialize(s)
            }
        }
        serde_pickle::to_writer(out, &Sized(value), serde_pickle::SerOptions::new())
            .map_err(|e| CodecError::new(Self::NAME, e))
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        unpickle::from_slice(bytes).map_err(CodecError::from)
    }
}
