//! Reading a column: fixed-width, or postcard.

use serde::Deserialize;
use serde::de::{self, Visitor};

use super::{FixedError, Kind, POSTCARD, Value};
use crate::codec::{Codec, CodecError, Postcard};

/// Reads a fixed-width column. A plain struct, unlike [`ItemReader`] (an
/// enum the compiler cannot keep in registers): loops over many values
/// read through one of these.
pub(in crate::pool) struct FixedReader<'b> {
    pub(super) kind: Kind,
    /// The kind's width, looked up once.
    pub(super) width: usize,
    pub(super) bytes: &'b [u8],
}

impl FixedReader<'_> {
    #[inline(always)]
    pub(super) fn take(&mut self) -> Result<Value, FixedError> {
        let Some((value, rest)) = self.bytes.split_at_checked(self.width) else {
            return Err(FixedError::short());
        };
        self.bytes = rest;
        Value::read(self.kind, value)
    }
}

impl<'b> FixedReader<'b> {
    /// The next value, read from its own bytes: one whose `Deserialize`
    /// fails (or panics) before it took its bytes, or leaves some, fails
    /// alone, and the next value is still the next item's.
    #[inline(always)]
    pub(in crate::pool) fn next_alone<T: Deserialize<'b>>(&mut self) -> Result<T, CodecError> {
        let Some((bytes, rest)) = self.bytes.split_at_checked(self.width) else {
            return Err(CodecError::new(FIXED_NAME, FixedError::short()));
        };
        self.bytes = rest;
        let mut one = FixedReader {
            kind: self.kind,
            width: self.width,
            bytes,
        };
        let value = T::deserialize(&mut one).map_err(|e| CodecError::new(FIXED_NAME, e))?;
        match one.bytes.len() {
            0 => Ok(value),
            _ => Err(CodecError::new(
                FIXED_NAME,
                "the value did not read its bytes",
            )),
        }
    }

    /// The next value when it is the kind asked for: the column's own
    /// type read back, the usual case, kept small enough to inline.
    #[inline(always)]
    fn take_as<const N: usize>(&mut self, kind: Kind) -> Option<Result<[u8; N], FixedError>> {
        if self.kind != kind {
            return None;
        }
        Some(match self.bytes.split_first_chunk::<N>() {
            Some((value, rest)) => {
                self.bytes = rest;
                Ok(*value)
            }
            None => Err(FixedError::short()),
        })
    }

    /// Any other request: the recorded kind's value, for the visitor to
    /// take or refuse. Out of line, and given the reader's fields by value
    /// (its address would make the compiler keep every reader in memory,
    /// a store and a load per value of the usual loop).
    #[inline(always)]
    fn visit_any<'de, V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, FixedError> {
        let (value, rest) = visit_value(self.kind, self.width, self.bytes, visitor);
        self.bytes = rest;
        value
    }
}

/// [`FixedReader::visit_any`]'s work: the next value of `bytes` (a column
/// of `kind`), visited, and the bytes after it.
#[inline(never)]
fn visit_value<'b, 'de, V: Visitor<'de>>(
    kind: Kind,
    width: usize,
    bytes: &'b [u8],
    visitor: V,
) -> (Result<V::Value, FixedError>, &'b [u8]) {
    let mut reader = FixedReader { kind, width, bytes };
    let value = reader.take().and_then(|v| v.visit(visitor));
    (value, reader.bytes)
}

/// `deserialize_*` methods that read their own kind directly, and leave
/// every other case to [`FixedReader::visit_any`].
macro_rules! direct {
    ($($method:ident $kind:ident $t:ty, $visit:ident;)*) => {$(
        #[inline(always)]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FixedError> {
            match self.take_as::<{ size_of::<$t>() }>(Kind::$kind) {
                Some(bytes) => visitor.$visit(<$t>::from_le_bytes(bytes?)),
                None => self.visit_any(visitor),
            }
        }
    )*};
}

/// As [`direct`], for the kinds that a column may hold narrowed.
macro_rules! narrowed {
    ($($method:ident $kind:ident $t:ty, $narrow:ident $n:ty, $visit:ident;)*) => {$(
        #[inline(always)]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FixedError> {
            if let Some(bytes) = self.take_as::<{ size_of::<$n>() }>(Kind::$narrow) {
                return visitor.$visit(<$n>::from_le_bytes(bytes?).into());
            }
            match self.take_as::<{ size_of::<$t>() }>(Kind::$kind) {
                Some(bytes) => visitor.$visit(<$t>::from_le_bytes(bytes?)),
                None => self.visit_any(visitor),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut FixedReader<'_> {
    type Error = FixedError;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, FixedError> {
        // As postcard: a value is read as its type says, never as the
        // bytes say (so whether it reads cannot depend on its chunk).
        Err(FixedError(
            "the format does not describe itself (deserialize_any)".into(),
        ))
    }

    direct! {
        deserialize_u8 U8 u8, visit_u8;
        deserialize_u16 U16 u16, visit_u16;
        deserialize_u32 U32 u32, visit_u32;

        deserialize_u128 U128 u128, visit_u128;
        deserialize_i8 I8 i8, visit_i8;
        deserialize_i16 I16 i16, visit_i16;
        deserialize_i32 I32 i32, visit_i32;

        deserialize_i128 I128 i128, visit_i128;
        deserialize_f32 F32 f32, visit_f32;
        deserialize_f64 F64 f64, visit_f64;
    }

    narrowed! {
        deserialize_u64 U64 u64, U64As32 u32, visit_u64;
        deserialize_i64 I64 i64, I64As32 i32, visit_i64;
    }

    #[inline(always)]
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FixedError> {
        match self.kind {
            Kind::Unit => visitor.visit_unit(),
            _ => self.visit_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, FixedError> {
        visitor.visit_newtype_struct(self)
    }

    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FixedError> {
        self.visit_any(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FixedError> {
        self.visit_any(visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, FixedError> {
        self.deserialize_unit(visitor)
    }

    // What has a length, a tag or parts is never in a fixed-width column.
    serde::forward_to_deserialize_any! {
        str string bytes byte_buf option seq tuple tuple_struct map struct
        enum identifier ignored_any
    }
}

/// Reads values one after another, as an [`ItemWriter`] wrote them: the
/// format byte first.
pub(in crate::pool) struct ItemReader<'b>(Reader<'b>);

enum Reader<'b> {
    Postcard(postcard::Deserializer<'b, postcard::de_flavors::Slice<'b>>),
    Fixed(FixedReader<'b>),
}

/// The name decoding errors of a fixed-width column carry.
const FIXED_NAME: &str = "fixed-width";

impl<'b> ItemReader<'b> {
    /// Reads the format byte at the start of `bytes`.
    pub(in crate::pool) fn new(bytes: &'b [u8]) -> Result<ItemReader<'b>, CodecError> {
        match bytes.split_first() {
            Some((&POSTCARD, rest)) => Ok(ItemReader(Reader::Postcard(
                postcard::Deserializer::from_bytes(rest),
            ))),
            Some((&byte, rest)) => match Kind::from_byte(byte) {
                Some(kind) => Ok(ItemReader(Reader::Fixed(FixedReader {
                    kind,
                    width: kind.width(),
                    bytes: rest,
                }))),
                None => Err(CodecError::new(
                    FIXED_NAME,
                    format_args!("{byte} is not a format"),
                )),
            },
            None => Err(CodecError::new(FIXED_NAME, "no format byte")),
        }
    }

    /// For a fixed-width column, whether it holds exactly `count` values
    /// (then each can be read, or fail, alone); `None` for postcard.
    pub(in crate::pool) fn fixed_exactly(&self, count: u64) -> Option<Result<(), String>> {
        let Reader::Fixed(reader) = &self.0 else {
            return None;
        };
        let expected = (reader.width as u64).checked_mul(count);
        Some(match expected {
            Some(n) if n == reader.bytes.len() as u64 => Ok(()),
            _ => Err(format!(
                "{} bytes of {:?} values, not {count}",
                reader.bytes.len(),
                reader.kind
            )),
        })
    }

    /// The next value.
    #[inline(always)]
    pub(in crate::pool) fn next<T: Deserialize<'b>>(&mut self) -> Result<T, CodecError> {
        match &mut self.0 {
            Reader::Fixed(reader) => {
                T::deserialize(reader).map_err(|e| CodecError::new(FIXED_NAME, e))
            }
            Reader::Postcard(de) => {
                T::deserialize(de).map_err(|e| CodecError::new(Postcard::NAME, e))
            }
        }
    }

    /// The fixed-width column's reader, or `None` for postcard.
    pub(in crate::pool) fn into_fixed(self) -> Option<FixedReader<'b>> {
        match self.0 {
            Reader::Fixed(reader) => Some(reader),
            Reader::Postcard(_) => None,
        }
    }

    /// Reads `n` values onto the end of `out`, straight into its spare
    /// room (its length written once: a vector's length lives in memory
    /// that each value written might alias, as far as the compiler knows).
    /// How many were read, and why the next one was not.
    ///
    /// Values that all read, but end before or after the column's bytes
    /// do, are taken back out and the error says so: past a value that
    /// read the wrong number of bytes, the others were its neighbours'
    /// bytes. So are the values before one that fails in postcard (in a
    /// fixed-width column each value reads its own bytes).
    pub(in crate::pool) fn read_into<T: Deserialize<'b>>(
        self,
        n: usize,
        out: &mut Vec<T>,
    ) -> (usize, Option<CodecError>) {
        let start = out.len();
        let (read, error, left, name) = match self.0 {
            // A plain struct, by value: its state in registers.
            Reader::Fixed(mut reader) => {
                let (read, error) = fill(n, out, || reader.next_alone());
                (read, error, reader.bytes.len(), FIXED_NAME)
            }
            Reader::Postcard(mut de) => {
                let (read, error) = fill(n, out, || {
                    T::deserialize(&mut de).map_err(|e| CodecError::new(Postcard::NAME, e))
                });
                if error.is_some() {
                    // Where a value stopped cannot tell whether those
                    // before it read their own bytes: none is kept.
                    out.truncate(start);
                    return (0, error);
                }
                let left = de.finalize().map_or(0, |rest| rest.len());
                (read, error, left, Postcard::NAME)
            }
        };
        if error.is_none() && left > 0 {
            out.truncate(start);
            let why = format!("the values end {left} bytes before their column does");
            return (0, Some(CodecError::new(name, why)));
        }
        (read, error)
    }

    /// Checks that every byte was read.
    pub(in crate::pool) fn finish(self) -> Result<(), CodecError> {
        let (rest, name) = match self.0 {
            Reader::Fixed(reader) => (reader.bytes.len(), FIXED_NAME),
            Reader::Postcard(de) => (
                de.finalize()
                    .map_err(|e| CodecError::new(Postcard::NAME, e))?
                    .len(),
                Postcard::NAME,
            ),
        };
        match rest {
            0 => Ok(()),
            n => Err(CodecError::new(
                name,
                format_args!("{n} trailing bytes after the items"),
            )),
        }
    }
}

/// Reads up to `n` values with `next` into `out`'s spare room, then sets
/// its length once (also when `next` panics: every value read is the
/// vector's, and dropped with it).
#[inline(always)]
fn fill<T>(
    n: usize,
    out: &mut Vec<T>,
    mut next: impl FnMut() -> Result<T, CodecError>,
) -> (usize, Option<CodecError>) {
    out.reserve(n);
    let start = out.len();
    let mut filled = Filled { len: start, out };
    let mut error = None;
    for slot in &mut filled.out.spare_capacity_mut()[..n] {
        match next() {
            Ok(v) => {
                slot.write(v);
                filled.len += 1;
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    (filled.len - start, error)
}

/// A vector whose first `len` elements are written, whose length it sets
/// when dropped.
struct Filled<'v, T> {
    out: &'v mut Vec<T>,
    len: usize,
}

impl<T> Drop for Filled<'_, T> {
    fn drop(&mut self) {
        // SAFETY: `fill` wrote the elements up to `len` (from the length
        // the vector had, within the room `reserve` made) before counting
        // each.
        unsafe { self.out.set_len(self.len) };
    }
}
