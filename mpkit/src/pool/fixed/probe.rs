//! The serializer that tells a scalar from anything else, writing the
//! scalar's fixed-width bytes.

use serde::ser::Impossible;
use serde::{Serialize, Serializer};

use super::super::wire::Append;
use super::{FixedError, Kind, Value};
use crate::handle;

/// A serializer that takes one scalar, of the kind `want` when set, and
/// appends its bytes; anything else is refused before a byte is written.
pub(super) struct Probe<O> {
    pub(super) out: O,
    pub(super) want: Option<Kind>,
}

/// Where a [`Probe`] writes.
pub(super) trait Out {
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
pub(super) struct Cursor<'a> {
    pub(super) out: &'a mut [u8],
    pub(super) at: usize,
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

/// Methods a probe refuses, before writing a byte.
macro_rules! refused {
    ($(fn $method:ident($($t:ty),*) -> $ok:ty;)*) => {$(
        fn $method(self, $(_: $t),*) -> Result<$ok, FixedError> {
            Err(not_scalar())
        }
    )*};
}

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
        match (self.want, u32::try_from(v)) {
            (Some(Kind::U64As32), Ok(v)) => self.put(Kind::U64As32, v.to_le_bytes()),
            (Some(Kind::U64As32), Err(_)) => Err(not_scalar()),
            _ => self.put(Kind::U64, v.to_le_bytes()),
        }
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
        match (self.want, i32::try_from(v)) {
            (Some(Kind::I64As32), Ok(v)) => self.put(Kind::I64As32, v.to_le_bytes()),
            (Some(Kind::I64As32), Err(_)) => Err(not_scalar()),
            _ => self.put(Kind::I64, v.to_le_bytes()),
        }
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
    refused! {
        fn serialize_str(&str) -> Kind;
        fn serialize_bytes(&[u8]) -> Kind;
        fn serialize_none() -> Kind;
        fn serialize_unit_variant(&'static str, u32, &'static str) -> Kind;
        fn serialize_seq(Option<usize>) -> No;
        fn serialize_tuple(usize) -> No;
        fn serialize_tuple_struct(&'static str, usize) -> No;
        fn serialize_tuple_variant(&'static str, u32, &'static str, usize) -> No;
        fn serialize_map(Option<usize>) -> No;
        fn serialize_struct(&'static str, usize) -> No;
        fn serialize_struct_variant(&'static str, u32, &'static str, usize) -> No;
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<Kind, FixedError> {
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
    fn is_human_readable(&self) -> bool {
        // As postcard: a value must not serialize differently here.
        false
    }
}

/// What a value did under a [`Recorder`].
#[derive(Default)]
pub(super) struct Seen {
    /// The scalar it gave, if its first call gave one.
    pub(super) scalar: Option<Value>,
    /// It made a call that is not one scalar's (or more than one).
    pub(super) other: bool,
}

impl Seen {
    #[inline]
    fn scalar(&mut self, value: Value) {
        if self.scalar.is_some() {
            self.other = true;
        }
        self.scalar = Some(value);
    }
}

/// Serializes a value in postcard, noting whether it was exactly one
/// scalar (through newtype structs, but not a handle's): the first value
/// of a column is written once, and rewritten fixed-width when it was.
pub(super) struct Recorder<'s, 'b> {
    pub(super) ser: &'s mut postcard::Serializer<Append<'b>>,
    pub(super) seen: &'s mut Seen,
}

type Postcard<'s, 'b> = &'s mut postcard::Serializer<Append<'b>>;

/// Scalar methods: noted, then postcard's.
macro_rules! scalars {
    ($($method:ident $t:ty, $variant:ident;)*) => {$(
        fn $method(self, v: $t) -> Result<(), postcard::Error> {
            self.seen.scalar(Value::$variant(v));
            self.ser.$method(v)
        }
    )*};
}

/// Methods that are not one scalar's: noted, then postcard's.
macro_rules! others {
    ($(fn $method:ident($($arg:ident: $t:ty),*) -> $ok:ty;)*) => {$(
        fn $method(self, $($arg: $t),*) -> Result<$ok, postcard::Error> {
            self.seen.other = true;
            self.ser.$method($($arg),*)
        }
    )*};
}

impl<'s, 'b> Serializer for Recorder<'s, 'b> {
    type Ok = ();
    type Error = postcard::Error;
    type SerializeSeq = Postcard<'s, 'b>;
    type SerializeTuple = Postcard<'s, 'b>;
    type SerializeTupleStruct = Postcard<'s, 'b>;
    type SerializeTupleVariant = Postcard<'s, 'b>;
    type SerializeMap = Postcard<'s, 'b>;
    type SerializeStruct = Postcard<'s, 'b>;
    type SerializeStructVariant = Postcard<'s, 'b>;

    scalars! {
        serialize_bool bool, Bool;
        serialize_u8 u8, U8;
        serialize_u16 u16, U16;
        serialize_u32 u32, U32;
        serialize_u64 u64, U64;
        serialize_u128 u128, U128;
        serialize_i8 i8, I8;
        serialize_i16 i16, I16;
        serialize_i32 i32, I32;
        serialize_i64 i64, I64;
        serialize_i128 i128, I128;
        serialize_f32 f32, F32;
        serialize_f64 f64, F64;
        serialize_char char, Char;
    }

    fn serialize_unit(self) -> Result<(), postcard::Error> {
        self.seen.scalar(Value::Unit);
        self.ser.serialize_unit()
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<(), postcard::Error> {
        self.seen.scalar(Value::Unit);
        self.ser.serialize_unit_struct(name)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), postcard::Error> {
        if name == handle::HANDLE_NAME {
            self.seen.other = true;
            return self.ser.serialize_newtype_struct(name, value);
        }
        // Postcard writes a newtype as its content: so does this.
        value.serialize(self)
    }

    // Everything else: noted as not a scalar, then postcard's.
    others! {
        fn serialize_str(v: &str) -> ();
        fn serialize_bytes(v: &[u8]) -> ();
        fn serialize_none() -> ();
        fn serialize_unit_variant(name: &'static str, index: u32, variant: &'static str) -> ();
        fn serialize_seq(len: Option<usize>) -> Postcard<'s, 'b>;
        fn serialize_tuple(len: usize) -> Postcard<'s, 'b>;
        fn serialize_tuple_struct(name: &'static str, len: usize) -> Postcard<'s, 'b>;
        fn serialize_tuple_variant(
            name: &'static str,
            index: u32,
            variant: &'static str,
            len: usize
        ) -> Postcard<'s, 'b>;
        fn serialize_map(len: Option<usize>) -> Postcard<'s, 'b>;
        fn serialize_struct(name: &'static str, len: usize) -> Postcard<'s, 'b>;
        fn serialize_struct_variant(
            name: &'static str,
            index: u32,
            variant: &'static str,
            len: usize
        ) -> Postcard<'s, 'b>;
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), postcard::Error> {
        self.seen.other = true;
        self.ser.serialize_some(v)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), postcard::Error> {
        self.seen.other = true;
        self.ser
            .serialize_newtype_variant(name, index, variant, value)
    }
    fn collect_str<T: std::fmt::Display + ?Sized>(self, v: &T) -> Result<(), postcard::Error> {
        self.seen.other = true;
        self.ser.collect_str(v)
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}
