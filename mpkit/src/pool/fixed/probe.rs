//! The serializer that tells a scalar from anything else, writing the
//! scalar's fixed-width bytes.

use serde::ser::Impossible;
use serde::{Serialize, Serializer};

use super::{FixedError, Kind};
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
