//! The sending side of [`Checked`](super::Checked): a serializer that
//! passes every call on to the codec's own and hashes it on the way, so
//! the value is walked once (a handle inside it is collected once).

use std::cell::Cell;

use serde::Serialize;
use serde::ser::{self, Serializer};

use super::Fnv;

/// `value`, to be serialized through [`Tee`] into `h`.
pub(super) struct Shaped<'h, T: ?Sized> {
    pub(super) value: &'h T,
    pub(super) h: &'h Cell<Fnv>,
}

impl<T: Serialize + ?Sized> Serialize for Shaped<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(Tee {
            inner: s,
            h: self.h,
        })
    }
}

fn token(h: &Cell<Fnv>, tag: &str, name: &str) {
    let mut f = h.get();
    f.token(tag, name);
    h.set(f);
}

fn number(h: &Cell<Fnv>, tag: &str, n: usize) {
    let mut f = h.get();
    f.number(tag, n);
    h.set(f);
}

struct Tee<'h, S> {
    inner: S,
    h: &'h Cell<Fnv>,
}

/// A compound value being serialized, hashing each part.
pub(super) struct Compound<'h, C> {
    inner: C,
    h: &'h Cell<Fnv>,
}

macro_rules! scalar {
    ($($method:ident: $ty:ty => $tag:literal),* $(,)?) => {$(
        fn $method(self, v: $ty) -> Result<S::Ok, S::Error> {
            token(self.h, $tag, "");
            self.inner.$method(v)
        }
    )*};
}

impl<'h, S: Serializer> Serializer for Tee<'h, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Compound<'h, S::SerializeSeq>;
    type SerializeTuple = Compound<'h, S::SerializeTuple>;
    type SerializeTupleStruct = Compound<'h, S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<'h, S::SerializeTupleVariant>;
    type SerializeMap = Compound<'h, S::SerializeMap>;
    type SerializeStruct = Compound<'h, S::SerializeStruct>;
    type SerializeStructVariant = Compound<'h, S::SerializeStructVariant>;

    scalar! {
        serialize_bool: bool => "bool",
        serialize_i8: i8 => "i8",
        serialize_i16: i16 => "i16",
        serialize_i32: i32 => "i32",
        serialize_i64: i64 => "i64",
        serialize_i128: i128 => "i128",
        serialize_u8: u8 => "u8",
        serialize_u16: u16 => "u16",
        serialize_u32: u32 => "u32",
        serialize_u64: u64 => "u64",
        serialize_u128: u128 => "u128",
        serialize_f32: f32 => "f32",
        serialize_f64: f64 => "f64",
        serialize_char: char => "char",
        serialize_str: &str => "str",
        serialize_bytes: &[u8] => "bytes",
    }

    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        token(self.h, "none", "");
        self.inner.serialize_none()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        token(self.h, "some", "");
        self.inner.serialize_some(&Shaped { value, h: self.h })
    }

    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        token(self.h, "unit", "");
        self.inner.serialize_unit()
    }

    fn serialize_unit_struct(self, name: &'static str) -> Result<S::Ok, S::Error> {
        token(self.h, "unit_struct", name);
        self.inner.serialize_unit_struct(name)
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        token(self.h, "enum", name);
        token(self.h, "variant", variant);
        self.inner.serialize_unit_variant(name, index, variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        token(self.h, "newtype", name);
        self.inner
            .serialize_newtype_struct(name, &Shaped { value, h: self.h })
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        token(self.h, "enum", name);
        token(self.h, "variant", variant);
        self.inner
            .serialize_newtype_variant(name, index, variant, &Shaped { value, h: self.h })
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        token(self.h, "seq", "");
        Ok(Compound {
            inner: self.inner.serialize_seq(len)?,
            h: self.h,
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        number(self.h, "tuple", len);
        Ok(Compound {
            inner: self.inner.serialize_tuple(len)?,
            h: self.h,
        })
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        token(self.h, "tuple_struct", name);
        number(self.h, "len", len);
        Ok(Compound {
            inner: self.inner.serialize_tuple_struct(name, len)?,
            h: self.h,
        })
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        token(self.h, "enum", name);
        token(self.h, "variant", variant);
        number(self.h, "tuple", len);
        Ok(Compound {
            inner: self
                .inner
                .serialize_tuple_variant(name, index, variant, len)?,
            h: self.h,
        })
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        token(self.h, "map", "");
        Ok(Compound {
            inner: self.inner.serialize_map(len)?,
            h: self.h,
        })
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        token(self.h, "struct", name);
        Ok(Compound {
            inner: self.inner.serialize_struct(name, len)?,
            h: self.h,
        })
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        token(self.h, "enum", name);
        token(self.h, "variant", variant);
        token(self.h, "fields", "");
        Ok(Compound {
            inner: self
                .inner
                .serialize_struct_variant(name, index, variant, len)?,
            h: self.h,
        })
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

impl<C: ser::SerializeSeq> ser::SerializeSeq for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.inner.serialize_element(&Shaped { value, h: self.h })
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        token(self.h, "end", "");
        self.inner.end()
    }
}

impl<C: ser::SerializeTuple> ser::SerializeTuple for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.inner.serialize_element(&Shaped { value, h: self.h })
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

impl<C: ser::SerializeTupleStruct> ser::SerializeTupleStruct for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.inner.serialize_field(&Shaped { value, h: self.h })
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

impl<C: ser::SerializeTupleVariant> ser::SerializeTupleVariant for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.inner.serialize_field(&Shaped { value, h: self.h })
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

impl<C: ser::SerializeMap> ser::SerializeMap for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), C::Error> {
        self.inner.serialize_key(&Shaped {
            value: key,
            h: self.h,
        })
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.inner.serialize_value(&Shaped { value, h: self.h })
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        token(self.h, "end", "");
        self.inner.end()
    }
}

impl<C: ser::SerializeStruct> ser::SerializeStruct for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), C::Error> {
        token(self.h, "field", key);
        self.inner
            .serialize_field(key, &Shaped { value, h: self.h })
    }

    fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
        self.inner.skip_field(key)
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

impl<C: ser::SerializeStructVariant> ser::SerializeStructVariant for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), C::Error> {
        token(self.h, "field", key);
        self.inner
            .serialize_field(key, &Shaped { value, h: self.h })
    }

    fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
        self.inner.skip_field(key)
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}
