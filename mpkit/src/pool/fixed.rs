//! How a chunk's items (and a reply's results) are laid out: a format
//! byte, then the values back to back, either in postcard or, when every
//! value is one scalar of the same type, in a fixed-width form.
//!
//! | format byte | values |
//! |---|---|
//! | `0` | postcard encodings back to back |
//! | a [`Kind`] (1-15) | each value's little-endian bytes, [`Kind::width`] each (a `bool` is `0`/`1`, a `char` its `u32`, `()` nothing) |
//!
//! The fixed-width form exists for speed: a map over numbers is the
//! commonest map, and a varint costs several times a plain word to write
//! and to read, in the caller and in the worker alike. It is chosen by
//! what the values do, not by their type: the first value is serialized
//! with [`Probe`], which takes exactly one scalar (through any number of
//! newtype structs: handles, ids, units of measure) and refuses anything
//! else. Every later value must give the same kind of scalar; the first
//! that does not turns the values written so far into postcard, once, and
//! the rest follow in postcard. So no type is ever refused here that
//! postcard takes, with one exception: a value the probe refuses is
//! serialized again, by postcard (`Serialize` takes `&self`, and the same
//! value gives the same bytes; a value that can be serialized only once,
//! a one-shot stream, fails the second time with `ArgsEncode`). A
//! handle's descriptor is still collected once: the probe takes back what
//! the handle added before it refused it.
//!
//! Reading follows the type's `Deserialize`: every request for a scalar
//! is answered with the recorded kind's value (`visit_u64` for a `u64`
//! column, whatever width the reader asked for), so serde's own range
//! checks apply, and a newtype struct is entered as postcard would. A
//! request for anything else (`deserialize_any` included, as in
//! postcard) is an error. A column
//! cut short, trailing bytes, a `bool` that is not 0 or 1 and a `char`
//! that is not a Unicode scalar are errors, as in postcard.

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::de::{self, Visitor};
use serde::ser::{self, Impossible};
use serde::{Deserialize, Serialize, Serializer};

use super::wire::Appender;
use crate::codec::{Codec, CodecError, Postcard};
use crate::handle;

/// The format byte of values in postcard.
pub(super) const POSTCARD: u8 = 0;

/// The scalar every value of a fixed-width column is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(super) enum Kind {
    Unit = 1,
    Bool,
    U8,
    U16,
    U32,
    U64,
    U128,
    I8,
    I16,
    I32,
    I64,
    I128,
    F32,
    F64,
    Char,
}

impl Kind {
    const ALL: [Kind; 15] = [
        Kind::Unit,
        Kind::Bool,
        Kind::U8,
        Kind::U16,
        Kind::U32,
        Kind::U64,
        Kind::U128,
        Kind::I8,
        Kind::I16,
        Kind::I32,
        Kind::I64,
        Kind::I128,
        Kind::F32,
        Kind::F64,
        Kind::Char,
    ];

    fn from_byte(byte: u8) -> Option<Kind> {
        Kind::ALL.get(usize::from(byte).wrapping_sub(1)).copied()
    }

    /// Bytes per value.
    pub(super) fn width(self) -> usize {
        match self {
            Kind::Unit => 0,
            Kind::Bool | Kind::U8 | Kind::I8 => 1,
            Kind::U16 | Kind::I16 => 2,
            Kind::U32 | Kind::I32 | Kind::F32 | Kind::Char => 4,
            Kind::U64 | Kind::I64 | Kind::F64 => 8,
            Kind::U128 | Kind::I128 => 16,
        }
    }
}

/// One value of a fixed-width column.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Value {
    Unit,
    Bool(bool),
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    U128(u128),
    I8(i8),
    I16(i16),
    I32(i32),
    I64(i64),
    I128(i128),
    F32(f32),
    F64(f64),
    Char(char),
}

impl Value {
    /// Reads a value of `kind` from `bytes`, which hold its width exactly.
    #[inline(always)]
    fn read(kind: Kind, bytes: &[u8]) -> Result<Value, FixedError> {
        // `bytes` has the kind's width (the caller cut it so).
        macro_rules! le {
            ($t:ty) => {
                <$t>::from_le_bytes(bytes.try_into().map_err(|_| FixedError::short())?)
            };
        }
        Ok(match kind {
            Kind::Unit => Value::Unit,
            Kind::Bool => match bytes {
                [0] => Value::Bool(false),
                [1] => Value::Bool(true),
                _ => return Err(FixedError(format!("{bytes:?} is not a bool"))),
            },
            Kind::U8 => Value::U8(le!(u8)),
            Kind::U16 => Value::U16(le!(u16)),
            Kind::U32 => Value::U32(le!(u32)),
            Kind::U64 => Value::U64(le!(u64)),
            Kind::U128 => Value::U128(le!(u128)),
            Kind::I8 => Value::I8(le!(i8)),
            Kind::I16 => Value::I16(le!(i16)),
            Kind::I32 => Value::I32(le!(i32)),
            Kind::I64 => Value::I64(le!(i64)),
            Kind::I128 => Value::I128(le!(i128)),
            Kind::F32 => Value::F32(le!(f32)),
            Kind::F64 => Value::F64(le!(f64)),
            Kind::Char => {
                let code = le!(u32);
                Value::Char(char::from_u32(code).ok_or_else(|| {
                    FixedError(format!("{code:#x} is not a Unicode scalar value"))
                })?)
            }
        })
    }

    #[inline(always)]
    fn visit<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FixedError> {
        match self {
            Value::Unit => visitor.visit_unit(),
            Value::Bool(v) => visitor.visit_bool(v),
            Value::U8(v) => visitor.visit_u8(v),
            Value::U16(v) => visitor.visit_u16(v),
            Value::U32(v) => visitor.visit_u32(v),
            Value::U64(v) => visitor.visit_u64(v),
            Value::U128(v) => visitor.visit_u128(v),
            Value::I8(v) => visitor.visit_i8(v),
            Value::I16(v) => visitor.visit_i16(v),
            Value::I32(v) => visitor.visit_i32(v),
            Value::I64(v) => visitor.visit_i64(v),
            Value::I128(v) => visitor.visit_i128(v),
            Value::F32(v) => visitor.visit_f32(v),
            Value::F64(v) => visitor.visit_f64(v),
            Value::Char(v) => visitor.visit_char(v),
        }
    }
}

/// Serializes as the scalar it holds (postcard's encoding of the value
/// that gave it, since that value made exactly this one call).
impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Value::Unit => s.serialize_unit(),
            Value::Bool(v) => s.serialize_bool(v),
            Value::U8(v) => s.serialize_u8(v),
            Value::U16(v) => s.serialize_u16(v),
            Value::U32(v) => s.serialize_u32(v),
            Value::U64(v) => s.serialize_u64(v),
            Value::U128(v) => s.serialize_u128(v),
            Value::I8(v) => s.serialize_i8(v),
            Value::I16(v) => s.serialize_i16(v),
            Value::I32(v) => s.serialize_i32(v),
            Value::I64(v) => s.serialize_i64(v),
            Value::I128(v) => s.serialize_i128(v),
            Value::F32(v) => s.serialize_f32(v),
            Value::F64(v) => s.serialize_f64(v),
            Value::Char(v) => s.serialize_char(v),
        }
    }
}

/// Why a value is not written in the fixed-width form, or a column does
/// not read.
#[derive(Debug)]
pub(super) struct FixedError(String);

impl FixedError {
    fn short() -> FixedError {
        FixedError("the values end inside one".into())
    }
}

impl fmt::Display for FixedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FixedError {}

impl ser::Error for FixedError {
    fn custom<T: fmt::Display>(msg: T) -> FixedError {
        FixedError(msg.to_string())
    }
}

impl de::Error for FixedError {
    fn custom<T: fmt::Display>(msg: T) -> FixedError {
        FixedError(msg.to_string())
    }
}

/// A serializer that takes one scalar, of the kind `want` when set, and
/// appends its bytes; anything else is refused before a byte is written.
struct Probe<O> {
    out: O,
    want: Option<Kind>,
}

/// Where a [`Probe`] writes.
trait Out {
    /// Appends `bytes`; `false` when there is no room (nothing written).
    fn write<const N: usize>(&mut self, bytes: [u8; N]) -> bool;
}

impl Out for &mut Vec<u8> {
    #[inline(always)]
    fn write<const N: usize>(&mut self, bytes: [u8; N]) -> bool {
        self.extend_from_slice(&bytes);
        true
    }
}

/// A run of values written into a slice, its length kept beside it (in a
/// register, where a vector's length lives in memory that every byte
/// written might alias: one store-to-load chain per value, about half a
/// trivial map's encoding).
struct Cursor<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Out for &mut Cursor<'_> {
    #[inline(always)]
    fn write<const N: usize>(&mut self, bytes: [u8; N]) -> bool {
        match self.out.get_mut(self.at..self.at + N) {
            Some(room) => {
                room.copy_from_slice(&bytes);
                self.at += N;
                true
            }
            None => false,
        }
    }
}

impl<O: Out> Probe<O> {
    #[inline(always)]
    fn put<const N: usize>(&mut self, kind: Kind, bytes: [u8; N]) -> Result<Kind, FixedError> {
        if self.want.is_some_and(|want| want != kind) || !self.out.write(bytes) {
            return Err(FixedError(String::new()));
        }
        Ok(kind)
    }
}

fn not_scalar() -> FixedError {
    FixedError(String::new())
}

type No = Impossible<Kind, FixedError>;

impl<O: Out> Serializer for &mut Probe<O> {
    type Ok = Kind;
    type Error = FixedError;
    type SerializeSeq = No;
    type SerializeTuple = No;
    type SerializeTupleStruct = No;
    type SerializeTupleVariant = No;
    type SerializeMap = No;
    type SerializeStruct = No;
    type SerializeStructVariant = No;

    #[inline]
    fn serialize_unit(self) -> Result<Kind, FixedError> {
        self.put(Kind::Unit, [])
    }
    #[inline]
    fn serialize_unit_struct(self, _: &'static str) -> Result<Kind, FixedError> {
        self.put(Kind::Unit, [])
    }
    #[inline]
    fn serialize_bool(self, v: bool) -> Result<Kind, FixedError> {
        self.put(Kind::Bool, [u8::from(v)])
    }
    #[inline]
    fn serialize_u8(self, v: u8) -> Result<Kind, FixedError> {
        self.put(Kind::U8, [v])
    }
    #[inline]
    fn serialize_u16(self, v: u16) -> Result<Kind, FixedError> {
        self.put(Kind::U16, v.to_le_bytes())
    }
    #[inline]
    fn serialize_u32(self, v: u32) -> Result<Kind, FixedError> {
        self.put(Kind::U32, v.to_le_bytes())
    }
    #[inline]
    fn serialize_u64(self, v: u64) -> Result<Kind, FixedError> {
        self.put(Kind::U64, v.to_le_bytes())
    }
    #[inline]
    fn serialize_u128(self, v: u128) -> Result<Kind, FixedError> {
        self.put(Kind::U128, v.to_le_bytes())
    }
    #[inline]
    fn serialize_i8(self, v: i8) -> Result<Kind, FixedError> {
        self.put(Kind::I8, v.to_le_bytes())
    }
    #[inline]
    fn serialize_i16(self, v: i16) -> Result<Kind, FixedError> {
        self.put(Kind::I16, v.to_le_bytes())
    }
    #[inline]
    fn serialize_i32(self, v: i32) -> Result<Kind, FixedError> {
        self.put(Kind::I32, v.to_le_bytes())
    }
    #[inline]
    fn serialize_i64(self, v: i64) -> Result<Kind, FixedError> {
        self.put(Kind::I64, v.to_le_bytes())
    }
    #[inline]
    fn serialize_i128(self, v: i128) -> Result<Kind, FixedError> {
        self.put(Kind::I128, v.to_le_bytes())
    }
    #[inline]
    fn serialize_f32(self, v: f32) -> Result<Kind, FixedError> {
        self.put(Kind::F32, v.to_le_bytes())
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> Result<Kind, FixedError> {
        self.put(Kind::F64, v.to_le_bytes())
    }
    #[inline]
    fn serialize_char(self, v: char) -> Result<Kind, FixedError> {
        self.put(Kind::Char, u32::from(v).to_le_bytes())
    }
    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<Kind, FixedError> {
        // A handle's index only means something beside its descriptors,
        // which postcard's path collects and provides.
        if name == handle::HANDLE_NAME {
            // Its descriptor was just added to the message's list (a
            // handle adds it, then serializes its index): taken back, or
            // postcard would add it a second time.
            handle::take_back_last();
            return Err(not_scalar());
        }
        value.serialize(self)
    }

    // Everything else has a length, a tag or parts: postcard's.
    fn serialize_str(self, _: &str) -> Result<Kind, FixedError> {
        Err(not_scalar())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<Kind, FixedError> {
        Err(not_scalar())
    }
    fn serialize_none(self) -> Result<Kind, FixedError> {
        Err(not_scalar())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<Kind, FixedError> {
        Err(not_scalar())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<Kind, FixedError> {
        Err(not_scalar())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Kind, FixedError> {
        Err(not_scalar())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<No, FixedError> {
        Err(not_scalar())
    }
    fn serialize_tuple(self, _: usize) -> Result<No, FixedError> {
        Err(not_scalar())
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<No, FixedError> {
        Err(not_scalar())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<No, FixedError> {
        Err(not_scalar())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<No, FixedError> {
        Err(not_scalar())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<No, FixedError> {
        Err(not_scalar())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<No, FixedError> {
        Err(not_scalar())
    }
    fn is_human_readable(&self) -> bool {
        // As postcard: a value must not serialize differently here.
        false
    }
}

/// Why a value was not written.
pub(super) enum PushError {
    /// Its `Serialize` failed; the words say why (as postcard has them).
    Encode(String),
    /// Its `Serialize` panicked (only from [`ItemWriter::push_caught`]).
    Panicked(Box<dyn Any + Send>),
}

/// Where [`ItemWriter::extend_fixed`] stopped.
pub(super) enum Run<T> {
    /// The column is not fixed-width (yet): nothing was taken.
    NotFixed,
    /// The items ran out, after this many were written.
    Done(usize),
    /// This many were written; this item is not the column's scalar, and
    /// the column is now postcard: [`ItemWriter::push`] writes it.
    Stopped(usize, T),
}

enum State {
    /// No value written yet.
    Undecided,
    /// Values of one kind written.
    Fixed(Kind),
    Postcard,
}

/// Writes values one after another onto the end of a vector, after a
/// format byte (see the module docs): fixed-width while every value is
/// the same scalar, postcard from the first that is not.
pub(super) struct ItemWriter<'a> {
    buf: &'a mut Vec<u8>,
    format_at: usize,
    state: State,
}

impl<'a> ItemWriter<'a> {
    /// Writes the format byte (postcard until a value decides) at the end
    /// of `buf`, and the values after it.
    pub(super) fn new(buf: &'a mut Vec<u8>) -> ItemWriter<'a> {
        let format_at = buf.len();
        buf.push(POSTCARD);
        ItemWriter {
            buf,
            format_at,
            state: State::Undecided,
        }
    }

    /// Appends `value`; on failure nothing of it is left in the vector.
    /// A panic in its `Serialize` goes on up.
    #[inline]
    pub(super) fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), String> {
        match self.push_with::<false, T>(value) {
            Ok(()) => Ok(()),
            Err(PushError::Encode(why)) => Err(why),
            Err(PushError::Panicked(payload)) => std::panic::resume_unwind(payload),
        }
    }

    /// As [`push`](Self::push), with a panic in the value's `Serialize`
    /// caught and returned (what was written of the value is cut back).
    #[inline]
    pub(super) fn push_caught<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), PushError> {
        self.push_with::<true, T>(value)
    }

    /// Runs `f`, under `catch_unwind` when `CATCH`.
    #[inline(always)]
    fn guard<const CATCH: bool, R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
        if CATCH {
            catch_unwind(AssertUnwindSafe(f))
        } else {
            Ok(f())
        }
    }

    /// Writes values from `items` while the column is fixed-width and each
    /// is its scalar, straight into room made for a batch of them at a
    /// time. See [`Run`] for where it stops. A panic in a value's
    /// `Serialize` goes on up.
    #[inline]
    pub(super) fn extend_fixed<T: Serialize, I: Iterator<Item = T>>(
        &mut self,
        items: &mut I,
    ) -> Run<T> {
        /// Values a batch makes room for.
        const BATCH: usize = 256;
        let State::Fixed(kind) = self.state else {
            return Run::NotFixed;
        };
        let width = kind.width().max(1);
        let mut n = 0;
        loop {
            let start = self.buf.len();
            // Zeroed room (safe code; the zeroing costs a fraction of the
            // writes), cut back to what was written.
            self.buf.resize(start + BATCH * width, 0);
            let mut cursor = Cursor {
                out: &mut self.buf[start..],
                at: 0,
            };
            let mut written = 0;
            let end = loop {
                if written == BATCH {
                    break None;
                }
                let Some(item) = items.next() else {
                    break Some(None);
                };
                let at = cursor.at;
                let mut probe = Probe {
                    out: &mut cursor,
                    want: Some(kind),
                };
                if item.serialize(&mut probe).is_err() {
                    // A `Serialize` that wrote and then failed leaves
                    // bytes to cut.
                    cursor.at = at;
                    break Some(Some(item));
                }
                written += 1;
            };
            let used = cursor.at;
            self.buf.truncate(start + used);
            n += written;
            match end {
                None => {}
                Some(None) => return Run::Done(n),
                Some(Some(item)) => {
                    self.turn_to_postcard();
                    return Run::Stopped(n, item);
                }
            }
        }
    }

    /// Whether values now go in postcard.
    pub(super) fn is_postcard(&self) -> bool {
        matches!(self.state, State::Postcard)
    }

    /// Appends `value` fixed-width if it is the column's scalar (or the
    /// first value, and a scalar): `Ok(true)`. Otherwise the column turns
    /// to postcard and nothing of `value` is written: `Ok(false)`, for
    /// [`push`](Self::push) to write it. A panic in its `Serialize` is
    /// caught when `CATCH`.
    #[inline(always)]
    pub(super) fn try_fixed<const CATCH: bool, T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<bool, Box<dyn Any + Send>> {
        if let State::Fixed(kind) = self.state {
            let start = self.buf.len();
            let mut probe = Probe {
                out: &mut *self.buf,
                want: Some(kind),
            };
            match Self::guard::<CATCH, _>(|| value.serialize(&mut probe).is_ok()) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(payload) => {
                    self.buf.truncate(start);
                    return Err(payload);
                }
            }
            // Refused (a `Serialize` that wrote and then failed leaves
            // bytes to cut): postcard from here on.
            self.buf.truncate(start);
            self.turn_to_postcard();
            return Ok(false);
        }
        self.try_first::<CATCH, T>(value)
    }

    /// [`try_fixed`](Self::try_fixed) for the first value, or in postcard.
    fn try_first<const CATCH: bool, T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<bool, Box<dyn Any + Send>> {
        if !matches!(self.state, State::Undecided) {
            return Ok(false);
        }
        let start = self.buf.len();
        let mut probe = Probe {
            out: &mut *self.buf,
            want: None,
        };
        match Self::guard::<CATCH, _>(|| value.serialize(&mut probe).ok()) {
            Ok(Some(kind)) => {
                self.buf[self.format_at] = kind as u8;
                self.state = State::Fixed(kind);
                Ok(true)
            }
            Ok(None) => {
                self.buf.truncate(start);
                self.turn_to_postcard();
                Ok(false)
            }
            Err(payload) => {
                self.buf.truncate(start);
                Err(payload)
            }
        }
    }

    #[inline(always)]
    fn push_with<const CATCH: bool, T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), PushError> {
        match self.try_fixed::<CATCH, T>(value) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(payload) => return Err(PushError::Panicked(payload)),
        }
        let start = self.buf.len();
        let buf = &mut *self.buf;
        match Self::guard::<CATCH, _>(|| Appender::new(buf).push(value)) {
            Ok(pushed) => pushed.map_err(PushError::Encode),
            Err(payload) => {
                self.buf.truncate(start);
                Err(PushError::Panicked(payload))
            }
        }
    }

    /// Rewrites the fixed-width values written so far in postcard, and
    /// writes postcard from now on.
    fn turn_to_postcard(&mut self) {
        if let State::Fixed(kind) = self.state {
            let column = self.buf.split_off(self.format_at + 1);
            let mut reader = FixedReader {
                kind,
                width: kind.width(),
                bytes: &column,
            };
            let mut out = Appender::new(self.buf);
            // Units take no room in either form: nothing to rewrite.
            while !reader.bytes.is_empty() {
                // Written above from values of this kind: each reads back,
                // and a scalar cannot fail to encode.
                match reader.take() {
                    Ok(value) => {
                        let _ = out.push(&value);
                    }
                    Err(_) => break,
                }
            }
        }
        self.buf[self.format_at] = POSTCARD;
        self.state = State::Postcard;
    }
}

/// Reads a fixed-width column.
struct FixedReader<'b> {
    kind: Kind,
    /// The kind's width, looked up once.
    width: usize,
    bytes: &'b [u8],
}

impl FixedReader<'_> {
    #[inline(always)]
    fn take(&mut self) -> Result<Value, FixedError> {
        let Some((value, rest)) = self.bytes.split_at_checked(self.width) else {
            return Err(FixedError::short());
        };
        self.bytes = rest;
        Value::read(self.kind, value)
    }
}

impl FixedReader<'_> {
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
    /// take or refuse.
    #[inline(never)]
    fn visit_any<'de, V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, FixedError> {
        self.take()?.visit(visitor)
    }
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
        deserialize_u64 U64 u64, visit_u64;
        deserialize_u128 U128 u128, visit_u128;
        deserialize_i8 I8 i8, visit_i8;
        deserialize_i16 I16 i16, visit_i16;
        deserialize_i32 I32 i32, visit_i32;
        deserialize_i64 I64 i64, visit_i64;
        deserialize_i128 I128 i128, visit_i128;
        deserialize_f32 F32 f32, visit_f32;
        deserialize_f64 F64 f64, visit_f64;
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
pub(super) struct ItemReader<'b>(Reader<'b>);

enum Reader<'b> {
    Postcard(postcard::Deserializer<'b, postcard::de_flavors::Slice<'b>>),
    Fixed(FixedReader<'b>),
}

/// The name decoding errors of a fixed-width column carry.
const FIXED_NAME: &str = "fixed-width";

impl<'b> ItemReader<'b> {
    /// Reads the format byte at the start of `bytes`.
    pub(super) fn new(bytes: &'b [u8]) -> Result<ItemReader<'b>, CodecError> {
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
    pub(super) fn fixed_exactly(&self, count: u64) -> Option<Result<(), String>> {
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
    pub(super) fn next<T: Deserialize<'b>>(&mut self) -> Result<T, CodecError> {
        match &mut self.0 {
            Reader::Fixed(reader) => {
                T::deserialize(reader).map_err(|e| CodecError::new(FIXED_NAME, e))
            }
            Reader::Postcard(de) => {
                T::deserialize(de).map_err(|e| CodecError::new(Postcard::NAME, e))
            }
        }
    }

    /// The next value, read from its own bytes: in a fixed-width column a
    /// value whose `Deserialize` fails (or panics) before it took its
    /// bytes, or leaves some, fails alone, and the next value is still the
    /// next item's. In postcard, as [`next`](Self::next).
    #[inline(always)]
    pub(super) fn next_alone<T: Deserialize<'b>>(&mut self) -> Result<T, CodecError> {
        let Reader::Fixed(reader) = &mut self.0 else {
            return self.next();
        };
        let Some((bytes, rest)) = reader.bytes.split_at_checked(reader.width) else {
            return Err(CodecError::new(FIXED_NAME, FixedError::short()));
        };
        reader.bytes = rest;
        let mut one = FixedReader {
            kind: reader.kind,
            width: reader.width,
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

    /// Checks that every byte was read.
    pub(super) fn finish(self) -> Result<(), CodecError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write<T: Serialize>(values: &[T]) -> Vec<u8> {
        let mut buf = vec![9];
        let mut w = ItemWriter::new(&mut buf);
        for v in values {
            w.push(v).unwrap();
        }
        buf.remove(0);
        buf
    }

    fn read<T: for<'b> Deserialize<'b>>(bytes: &[u8], n: usize) -> Result<Vec<T>, CodecError> {
        let mut r = ItemReader::new(bytes)?;
        let values = (0..n).map(|_| r.next()).collect::<Result<_, _>>()?;
        r.finish()?;
        Ok(values)
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug, Clone, Copy)]
    struct Metres(f64);

    #[test]
    fn scalars_are_written_fixed_width_and_read_back() {
        let bytes = write(&[1u64, 2, u64::MAX]);
        assert_eq!(bytes[0], Kind::U64 as u8);
        assert_eq!(bytes.len(), 1 + 3 * 8);
        assert_eq!(read::<u64>(&bytes, 3).unwrap(), [1, 2, u64::MAX]);
        // A newtype is its scalar.
        let bytes = write(&[Metres(1.5), Metres(-0.0)]);
        assert_eq!(bytes[0], Kind::F64 as u8);
        assert_eq!(
            read::<Metres>(&bytes, 2).unwrap(),
            [Metres(1.5), Metres(-0.0)]
        );
        // Unit takes no room.
        let bytes = write(&[(), (), ()]);
        assert_eq!(bytes, [Kind::Unit as u8]);
        assert_eq!(read::<()>(&bytes, 3).unwrap().len(), 3);
        for (bytes, n) in [
            (write(&['a', '\u{10FFFF}']), 2),
            (write(&[true, false]), 2),
            (write(&[-5i8]), 1),
            (write(&[i128::MIN]), 1),
        ] {
            assert_ne!(bytes[0], POSTCARD);
            assert_eq!(
                bytes.len(),
                1 + n * Kind::from_byte(bytes[0]).unwrap().width()
            );
        }
        assert_eq!(read::<char>(&write(&['a', 'é']), 2).unwrap(), ['a', 'é']);
    }

    #[test]
    fn values_that_are_not_one_scalar_are_postcard() {
        let values = vec!["a".to_string(), "bc".into()];
        let bytes = write(&values);
        assert_eq!(bytes[0], POSTCARD);
        assert_eq!(read::<String>(&bytes, 2).unwrap(), values);
        let bytes = write(&[Some(1u8), None]);
        assert_eq!(bytes[0], POSTCARD);
        assert_eq!(read::<Option<u8>>(&bytes, 2).unwrap(), [Some(1), None]);
    }

    /// A type whose values serialize as different scalars.
    #[derive(Debug, PartialEq)]
    enum Either {
        Small(u8),
        Big(u64),
    }

    impl Serialize for Either {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match *self {
                Either::Small(v) => s.serialize_u8(v),
                Either::Big(v) => s.serialize_u64(v),
            }
        }
    }

    #[test]
    fn a_value_of_another_shape_turns_the_column_turn_to_postcard() {
        let bytes = write(&[Either::Small(3), Either::Small(200), Either::Big(1 << 40)]);
        assert_eq!(bytes[0], POSTCARD);
        let mut expected = vec![POSTCARD];
        let mut postcard = Appender::new(&mut expected);
        postcard.push(&3u8).unwrap();
        postcard.push(&200u8).unwrap();
        postcard.push(&(1u64 << 40)).unwrap();
        assert_eq!(bytes, expected);
        // Then a string after numbers.
        #[derive(Serialize)]
        #[serde(untagged)]
        enum Mixed {
            N(i32),
            S(&'static str),
        }
        let bytes = write(&[Mixed::N(-1), Mixed::N(7), Mixed::S("x")]);
        let mut r = ItemReader::new(&bytes).unwrap();
        assert_eq!(
            (r.next::<i32>().unwrap(), r.next::<i32>().unwrap()),
            (-1, 7)
        );
        assert_eq!(r.next::<String>().unwrap(), "x");
        r.finish().unwrap();
    }

    #[test]
    fn widths_are_the_readers_choice_within_range() {
        // Written as u64, read as u8: serde's range check decides.
        let bytes = write(&[200u64, 300]);
        let mut r = ItemReader::new(&bytes).unwrap();
        assert_eq!(r.next::<u8>().unwrap(), 200);
        assert!(r.next::<u8>().is_err());
    }

    #[test]
    fn bad_columns_are_errors() {
        let mut bytes = write(&[1u32, 2]);
        bytes.pop();
        let e = read::<u32>(&bytes, 2).unwrap_err();
        assert!(e.to_string().contains("end inside"), "{e}");
        let bytes = write(&[1u32, 2]);
        assert!(
            read::<u32>(&bytes, 1)
                .unwrap_err()
                .to_string()
                .contains("trailing")
        );
        assert!(read::<bool>(&[Kind::Bool as u8, 2], 1).is_err());
        let mut not_char = vec![Kind::Char as u8];
        not_char.extend_from_slice(&0xD800u32.to_le_bytes());
        assert!(read::<char>(&not_char, 1).is_err());
        assert!(read::<u8>(&[16, 0], 1).is_err());
        assert!(read::<u8>(&[], 1).is_err());
        // A string asked of a number column.
        assert!(read::<String>(&write(&[1u8]), 1).is_err());
    }

    #[test]
    fn a_panic_leaves_nothing_of_its_value() {
        struct Panics;
        impl Serialize for Panics {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let _ = s.serialize_u64(7);
                panic!("after the write")
            }
        }
        let mut buf = Vec::new();
        let mut w = ItemWriter::new(&mut buf);
        w.push(&1u64).unwrap();
        assert!(matches!(
            w.push_caught(&Panics),
            Err(PushError::Panicked(_))
        ));
        w.push(&2u64).unwrap();
        assert_eq!(read::<u64>(&buf, 2).unwrap(), [1, 2]);
    }
}
