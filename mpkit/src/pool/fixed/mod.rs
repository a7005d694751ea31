//! How a chunk's items (and a reply's results) are laid out: a format
//! byte, then the values back to back, either in postcard or, when every
//! value is one scalar of the same type, in a fixed-width form.
//!
//! | format byte | values |
//! |---|---|
//! | `0` | postcard encodings back to back |
//! | a [`Kind`] (1-17) | each value's little-endian bytes, [`Kind::width`] each (a `bool` is `0`/`1`, a `char` its `u32`, `()` nothing; kinds 16 and 17 are `u64` and `i64` values written as `u32` and `i32`) |
//!
//! The fixed-width form exists for speed: a map over numbers is the
//! commonest map, and a varint costs several times a plain word to write
//! and to read, in the caller and in the worker alike. A column of `u64`
//! or `i64` values starts 4 bytes a value when its first value fits 32
//! bits, and is widened to 8 (the values written so far rewritten once)
//! at the first value that does not: half the bytes to copy between the
//! processes for the usual `usize` and `u64` values. It is chosen by
//! what the values do, not by their type. The first value is serialized
//! once, in postcard, through a [`Recorder`] that notes whether it made
//! exactly one scalar call (through any number of newtype structs: ids,
//! units of measure; not a handle's); if it did, its bytes are rewritten
//! fixed-width and the column is that scalar's. Every later value goes
//! through a [`Probe`], which takes only that kind of scalar and refuses
//! anything else before writing a byte; the first it refuses turns the
//! values written so far into postcard, once, and it and the rest follow
//! in postcard. So no type is ever refused here that postcard takes, with
//! one exception: the value the probe refused is serialized a second
//! time (`Serialize` takes `&self`, and the same value gives the same
//! bytes; a value that can be serialized only once, a one-shot stream,
//! fails then with `ArgsEncode` if it follows scalars of its chunk). A
//! handle's descriptor is collected once even so: the probe takes back
//! what the handle added before it refused it.
//!
//! Reading follows the type's `Deserialize`: every request for a scalar
//! is answered with the recorded kind's value (`visit_u64` for a `u64`
//! column, whatever width the reader asked for), so serde's own range
//! checks apply, and a newtype struct is entered as postcard would. A
//! request for anything else (`deserialize_any` included, as in
//! postcard) is an error. A column cut short, trailing bytes, a `bool`
//! that is not 0 or 1 and a `char` that is not a Unicode scalar are
//! errors, as in postcard.

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::de::{self, Visitor};
use serde::ser;
use serde::{Serialize, Serializer};

use super::wire::{Append, Appender};
use probe::{Cursor, Probe, Recorder, Seen};
pub(super) use read::{FixedReader, ItemReader};

mod probe;
mod read;
#[cfg(test)]
mod tests;

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
    /// `u64` values that all fit 32 bits so far, 4 bytes each.
    U64As32,
    /// `i64` values that all fit 32 bits so far, 4 bytes each.
    I64As32,
}

impl Kind {
    const ALL: [Kind; 17] = [
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
        Kind::U64As32,
        Kind::I64As32,
    ];

    fn from_byte(byte: u8) -> Option<Kind> {
        Kind::ALL.get(usize::from(byte).wrapping_sub(1)).copied()
    }

    /// Bytes per value (at most [`MAX_WIDTH`]).
    pub(super) fn width(self) -> usize {
        match self {
            Kind::Unit => 0,
            Kind::Bool | Kind::U8 | Kind::I8 => 1,
            Kind::U16 | Kind::I16 => 2,
            Kind::U32 | Kind::I32 | Kind::F32 | Kind::Char => 4,
            Kind::U64As32 | Kind::I64As32 => 4,
            Kind::U64 | Kind::I64 | Kind::F64 => 8,
            Kind::U128 | Kind::I128 => 16,
        }
    }

    /// The kind a narrowed kind's values have.
    fn wide(self) -> Option<Kind> {
        match self {
            Kind::U64As32 => Some(Kind::U64),
            Kind::I64As32 => Some(Kind::I64),
            _ => None,
        }
    }

    /// The narrowed kind a first value starts its column with, if any.
    fn narrowed_for(value: Value) -> Option<Kind> {
        match value {
            Value::U64(v) if u32::try_from(v).is_ok() => Some(Kind::U64As32),
            Value::I64(v) if i32::try_from(v).is_ok() => Some(Kind::I64As32),
            _ => None,
        }
    }
}

/// The widest [`Kind`]'s bytes.
const MAX_WIDTH: usize = 16;

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
            Kind::U64As32 => Value::U64(le!(u32).into()),
            Kind::I64As32 => Value::I64(le!(i32).into()),
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
    /// This many were written; the next one's `Serialize` panicked (only
    /// from [`ItemWriter::extend_fixed_from`] when it catches): nothing of
    /// it was written, and the column is still fixed-width.
    Panicked(usize, Box<dyn Any + Send>),
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
        self.extend_fixed_from::<false, T>(|| items.next())
    }

    /// [`extend_fixed`](Self::extend_fixed) with the values `next` makes
    /// until it returns `None`. A panic in a value's `Serialize` is caught
    /// when `CATCH` ([`Run::Panicked`]).
    #[inline(always)]
    pub(super) fn extend_fixed_from<const CATCH: bool, T: Serialize>(
        &mut self,
        mut next: impl FnMut() -> Option<T>,
    ) -> Run<T> {
        /// Values a batch makes room for.
        const BATCH: usize = 256;
        if !matches!(self.state, State::Fixed(_)) {
            return Run::NotFixed;
        }
        // The batch is written on the stack, then appended: nothing the
        // loop writes can alias the state of what makes the values (the
        // message's bytes could, as far as the compiler knows), so that
        // state stays in registers instead of a store and a load per
        // value.
        let mut room = [0u8; BATCH * MAX_WIDTH];
        let mut n = 0;
        loop {
            // Still fixed-width: it turns to postcard only where this
            // returns (widening keeps it fixed-width).
            let State::Fixed(kind) = self.state else {
                return Run::Done(n);
            };
            let mut cursor = Cursor {
                out: &mut room[..BATCH * kind.width()],
                at: 0,
            };
            let mut written = 0;
            let end = loop {
                if written == BATCH {
                    break None;
                }
                let Some(item) = next() else {
                    break Some(Ok(None));
                };
                let at = cursor.at;
                let mut probe = Probe {
                    out: &mut cursor,
                    want: Some(kind),
                };
                match Self::guard::<CATCH, _>(|| item.serialize(&mut probe).is_ok()) {
                    Ok(true) => written += 1,
                    Ok(false) => {
                        // A `Serialize` that wrote and then failed leaves
                        // bytes to cut.
                        cursor.at = at;
                        break Some(Ok(Some(item)));
                    }
                    Err(payload) => {
                        cursor.at = at;
                        break Some(Err(payload));
                    }
                }
            };
            let used = cursor.at;
            self.buf.extend_from_slice(&room[..used]);
            n += written;
            match end {
                None => {}
                Some(Ok(None)) => return Run::Done(n),
                // Refused: written at the column's full width if it was
                // narrowed (and the run goes on), or the column turns to
                // postcard.
                Some(Ok(Some(item))) => {
                    if !self.widen() {
                        self.turn_to_postcard();
                        return Run::Stopped(n, item);
                    }
                    match self.try_fixed::<CATCH, T>(&item) {
                        Ok(true) => n += 1,
                        Ok(false) => return Run::Stopped(n, item),
                        Err(payload) => return Run::Panicked(n, payload),
                    }
                }
                Some(Err(payload)) => return Run::Panicked(n, payload),
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
            // bytes to cut): the column's full width, if it was narrowed,
            // or postcard from here on.
            self.buf.truncate(start);
            if self.widen() {
                return self.try_fixed::<CATCH, T>(value);
            }
            self.turn_to_postcard();
            return Ok(false);
        }
        self.try_first::<CATCH, T>(value)
    }

    /// [`try_fixed`](Self::try_fixed) for the first value (or in
    /// postcard: `Ok(false)`). The value is serialized once, in postcard,
    /// while a [`Recorder`] notes whether it was one scalar; if it was,
    /// its bytes are rewritten fixed-width and the column is that
    /// scalar's. If not, it stays as written and the column is postcard:
    /// `Ok(true)` either way. A value that fails to serialize leaves
    /// nothing and turns the column to postcard: `Ok(false)`, for
    /// [`push`](Self::push) to write it again and say why.
    fn try_first<const CATCH: bool, T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<bool, Box<dyn Any + Send>> {
        if !matches!(self.state, State::Undecided) {
            return Ok(false);
        }
        let start = self.buf.len();
        let mut seen = Seen::default();
        let buf = &mut *self.buf;
        let serialized = Self::guard::<CATCH, _>(|| {
            let mut ser = postcard::Serializer {
                output: Append(buf),
            };
            let recorder = Recorder {
                ser: &mut ser,
                seen: &mut seen,
            };
            value.serialize(recorder).is_ok()
        });
        match (serialized, seen) {
            (Err(payload), _) => {
                self.buf.truncate(start);
                Err(payload)
            }
            (Ok(false), _) => {
                self.buf.truncate(start);
                self.turn_to_postcard();
                Ok(false)
            }
            (
                Ok(true),
                Seen {
                    scalar: Some(scalar),
                    other: false,
                },
            ) => {
                self.buf.truncate(start);
                let mut probe = Probe {
                    out: &mut *self.buf,
                    want: Kind::narrowed_for(scalar),
                };
                match scalar.serialize(&mut probe) {
                    Ok(kind) => {
                        self.buf[self.format_at] = kind as u8;
                        self.state = State::Fixed(kind);
                    }
                    // A scalar, which the probe takes; were it not, its
                    // postcard bytes again.
                    Err(_) => {
                        self.state = State::Postcard;
                        let _ = Appender::new(self.buf).push(&scalar);
                    }
                }
                Ok(true)
            }
            (Ok(true), _) => {
                // Written in postcard, under the format byte it already
                // has.
                self.state = State::Postcard;
                Ok(true)
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

    /// Rewrites a narrowed column's values at its kind's full width;
    /// `false` (nothing done) for a column that is not narrowed.
    fn widen(&mut self) -> bool {
        let State::Fixed(kind) = self.state else {
            return false;
        };
        let Some(wide) = kind.wide() else {
            return false;
        };
        let column = self.buf.split_off(self.format_at + 1);
        self.buf.reserve(column.len() * 2);
        for word in column.chunks_exact(4) {
            let word = [word[0], word[1], word[2], word[3]];
            let value = match kind {
                Kind::U64As32 => u64::from(u32::from_le_bytes(word)).to_le_bytes(),
                _ => i64::from(i32::from_le_bytes(word)).to_le_bytes(),
            };
            self.buf.extend_from_slice(&value);
        }
        self.buf[self.format_at] = wide as u8;
        self.state = State::Fixed(wide);
        true
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
