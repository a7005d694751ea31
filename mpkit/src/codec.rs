//! Codecs: how typed values become the bytes of a message.
//!
//! A [`Connection`](crate::Connection) is generic over its codec, so the
//! choice is made once, in the type, and costs nothing per message:
//!
//! | codec | format | use it for |
//! |---|---|---|
//! | [`Postcard`] (default) | [postcard](https://docs.rs/postcard), compact, not self-describing | mpkit to mpkit |
//! | [`Json`] | JSON text (serde_json) | other languages, debugging, JSON messages as Python programs send them |
//! | [`Pickle`] | Python's pickle (serde-pickle: reads protocols 0-5, writes 3) | Python's `Connection.send`/`recv` |
//!
//! Decoding never runs code chosen by the sender (unlike Python's pickle): a
//! malformed or hostile message is a [`CodecError`], and the receiver names
//! the type it expects.
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

/// An encoding or decoding failure, with the codec's own explanation.
#[derive(Debug, thiserror::Error)]
#[error("{codec}: {message}")]
pub struct CodecError {
    codec: &'static str,
    message: String,
}

impl CodecError {
    /// A new error reported by the codec named `codec`.
    pub fn new(codec: &'static str, message: impl std::fmt::Display) -> CodecError {
        CodecError {
            codec,
            message: message.to_string(),
        }
    }

    /// The name of the codec that failed.
    pub fn codec(&self) -> &'static str {
        self.codec
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
/// Decoding interprets pickle opcodes into plain data with
/// [serde-pickle](https://docs.rs/serde-pickle); it never imports or calls
/// anything, so a hostile pickle is an error, not code execution.
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
        serde_pickle::from_slice(bytes, serde_pickle::DeOptions::new())
            .map_err(|e| CodecError::new(Self::NAME, e))
    }
}
