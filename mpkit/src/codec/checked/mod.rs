//! [`Checked`]: a codec that tells the receiver when a message was sent as
//! another type.

use std::cell::Cell;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Codec, CodecError, CodecErrorKind, Postcard};
use crate::base::element::short_type_name;

mod shape;
mod trace;

/// Any codec `C`, with a check that the receiver asks for the type the
/// sender sent: each message starts with a fingerprint of the value's
/// shape as serde describes it, and the sender's type name.
///
/// [`Postcard`] is not self-describing: `7u32` received as an `i32` is
/// `-4`, and `(1u8, 2u8)` received as a `String` is `"\u{2}"`. Through
/// `Checked` both are a [`CodecErrorKind::TypeMismatch`] naming both types:
///
/// ```
/// use mpkit::codec::{Checked, Codec, CodecErrorKind};
///
/// let mut buf = Vec::new();
/// Checked::<mpkit::codec::Postcard>::encode(&7u32, &mut buf).unwrap();
/// let err = Checked::<mpkit::codec::Postcard>::decode::<i32>(&buf).unwrap_err();
/// assert_eq!(
///     err.kind(),
///     &CodecErrorKind::TypeMismatch { sent: "u32".into(), expected: "i32".into() }
/// );
/// assert_eq!(Checked::<mpkit::codec::Postcard>::decode::<u32>(&buf).unwrap(), 7);
/// ```
///
/// On a [`Connection`](crate::Connection):
/// `conn.with_codec::<Checked>()` (both ends must use it).
///
/// # What is compared
///
/// The fingerprint hashes the sequence of serde calls the value makes when
/// it is serialized (`u32`, `str`, `seq` … `end`, `struct Job` with each
/// field's name, `enum Shape` with the variant's name, `some`/`none`), and
/// the receiver hashes the calls its type makes while it is decoded; the
/// two must be equal. So:
///
/// - Two programs that each define `struct Job { id: u64, name: String }`
///   agree: names of structs, enums, variants and fields take part, module
///   paths and crate names do not.
/// - Integer widths and signedness, `str` against bytes, a sequence
///   against a tuple or a struct, a renamed or reordered field, a reordered
///   enum: all differ.
/// - Only the part of the type the value uses is compared: `None` sent as
///   `Option<u32>` is accepted as `Option<String>`, an empty `Vec<u8>` as
///   an empty `Vec<String>` (both are valid values of the receiver's type).
/// - Types whose `Serialize` and `Deserialize` do not mirror each other's
///   calls are reported as a mismatch even when the data would decode:
///   those that decode through `deserialize_any` (untagged and internally
///   tagged enums, `#[serde(flatten)]`, `serde_json::Value`), and types
///   that serialize as one thing and deserialize from another. `String`
///   and `&str`, `Vec` and slices, maps of any kind, `Box`/`Rc`/`Arc`
///   around a type and the type itself all count as the same.
/// - Equal fingerprints are not proof of equal types: it is a 64-bit hash
///   (FNV-1a) meant to catch mistakes, not a signature against a hostile
///   sender (which can write any fingerprint it likes).
///
/// # Wire format
///
/// The fingerprint (8 bytes, little-endian), the sender's type name
/// without its module paths (one length byte, then up to 255 bytes of
/// UTF-8, used only in the error), then `C`'s encoding of the value.
/// Decoding costs one extra pass of bookkeeping per serde call, while the
/// value is decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checked<C = Postcard>(PhantomData<C>);

impl<C: Codec> Codec for Checked<C> {
    const NAME: &'static str = "checked";

    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        // The fingerprint is known once the value is encoded, in the same
        // pass: its place is kept and filled in after.
        let start = out.len();
        out.extend_from_slice(&[0; 8]);
        let name = short_type_name(std::any::type_name::<T>());
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        let h = Cell::new(Fnv::new());
        if let Err(e) = C::encode(&shape::Shaped { value, h: &h }, out) {
            out.truncate(start);
            return Err(e);
        }
        out[start..start + 8].copy_from_slice(&h.get().0.to_le_bytes());
        Ok(())
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        let expected = || short_type_name(std::any::type_name::<T>());
        let (fingerprint, rest) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| CodecError::new(Self::NAME, "a message shorter than its header"))?;
        let fingerprint = u64::from_le_bytes(*fingerprint);
        let (&len, rest) = rest
            .split_first()
            .ok_or_else(|| CodecError::new(Self::NAME, "a message shorter than its header"))?;
        let (sent, body) = rest
            .split_at_checked(len.into())
            .ok_or_else(|| CodecError::new(Self::NAME, "a message shorter than its header"))?;
        let sent = String::from_utf8_lossy(sent).into_owned();
        let mismatch = |sent: String, expected: String, why: &str| {
            let message = format!("sent as `{sent}`, received as `{expected}`: {why}");
            CodecError::with_kind(
                Self::NAME,
                CodecErrorKind::TypeMismatch { sent, expected },
                message,
            )
        };
        match C::decode::<trace::Traced<T>>(body) {
            Ok(traced) if traced.fingerprint == fingerprint => Ok(traced.value),
            Ok(_) => Err(mismatch(sent, expected(), "the types' shapes differ")),
            // The data did not fit: when the names differ too, that is
            // the likelier story.
            Err(e) if sent != expected() => Err(mismatch(sent, expected(), &e.to_string())),
            Err(e) => Err(e),
        }
    }
}

/// FNV-1a, 64 bits: stable across Rust versions and platforms, which
/// `std`'s hashers do not promise.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    const fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// One token: a tag and an optional name, delimited so that no two
    /// token sequences hash the same bytes.
    fn token(&mut self, tag: &str, name: &str) {
        self.bytes(tag.as_bytes());
        self.bytes(&[0xff]);
        self.bytes(name.as_bytes());
        self.bytes(&[0xfe]);
    }

    fn number(&mut self, tag: &str, n: usize) {
        self.token(tag, &n.to_string());
    }
}
