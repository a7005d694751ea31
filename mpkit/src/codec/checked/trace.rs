//! The receiving side of [`Checked`](super::Checked): a deserializer that
//! passes every call on to the codec's own and hashes what the receiver's
//! type asks for, the same tokens [`shape`](super::shape) hashes for what
//! the sender's type wrote.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, Visitor};

use super::Fnv;

/// A decoded `T` and the fingerprint of the calls decoding it made.
pub(super) struct Traced<T> {
    pub(super) value: T,
    pub(super) fingerprint: u64,
}

impl<'de, T: DeserializeOwned> de::Deserialize<'de> for Traced<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let h = Cell::new(Fnv::new());
        let value = T::deserialize(Trace {
            inner: d,
            h: &h,
            at: At::Value,
        })?;
        Ok(Traced {
            value,
            fingerprint: h.get().0,
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

/// What is being decoded, for the calls whose token depends on it.
#[derive(Clone, Copy)]
enum At {
    /// A value: each `deserialize_*` call is a token.
    Value,
    /// A sequence or a map: `end` when it runs out, as the sender's
    /// `end()` call.
    Seq,
    /// A tuple: its length is in its token, so no `end`.
    Fixed,
    /// A struct's fields, by position or by key.
    Struct(&'static [&'static str]),
    /// A struct field's key: its name (or index) is the token.
    FieldKey(&'static [&'static str]),
    /// An enum's variant: its name (or index) is the token.
    Variant(&'static [&'static str]),
}

/// The codec's deserializer, traced.
struct Trace<'h, D> {
    inner: D,
    h: &'h Cell<Fnv>,
    at: At,
}

impl<'h, D> Trace<'h, D> {
    /// Records `tag`, unless this call reads a field key or variant name
    /// (then the visitor records the name).
    fn token(&self, tag: &str, name: &str) {
        if let At::Value | At::Seq | At::Fixed | At::Struct(_) = self.at {
            token(self.h, tag, name);
        }
    }

    fn visitor<V>(&self, inner: V, at: At) -> Visit<'h, V> {
        let at = match self.at {
            key @ (At::FieldKey(_) | At::Variant(_)) => key,
            _ => at,
        };
        Visit {
            inner,
            h: self.h,
            at,
        }
    }
}

macro_rules! forward {
    ($($method:ident => $tag:literal),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.token($tag, "");
            let v = self.visitor(visitor, At::Value);
            self.inner.$method(v)
        }
    )*};
}

impl<'de, 'h, D: Deserializer<'de>> Deserializer<'de> for Trace<'h, D> {
    type Error = D::Error;

    forward! {
        deserialize_any => "any",
        deserialize_bool => "bool",
        deserialize_i8 => "i8",
        deserialize_i16 => "i16",
        deserialize_i32 => "i32",
        deserialize_i64 => "i64",
        deserialize_i128 => "i128",
        deserialize_u8 => "u8",
        deserialize_u16 => "u16",
        deserialize_u32 => "u32",
        deserialize_u64 => "u64",
        deserialize_u128 => "u128",
        deserialize_f32 => "f32",
        deserialize_f64 => "f64",
        deserialize_char => "char",
        deserialize_str => "str",
        deserialize_string => "str",
        deserialize_bytes => "bytes",
        deserialize_byte_buf => "bytes",
        deserialize_unit => "unit",
        deserialize_identifier => "identifier",
        deserialize_ignored_any => "ignored",
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let v = self.visitor(visitor, At::Value);
        self.inner.deserialize_option(v)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.token("unit_struct", name);
        let v = self.visitor(visitor, At::Value);
        self.inner.deserialize_unit_struct(name, v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.token("newtype", name);
        let v = self.visitor(visitor, At::Value);
        self.inner.deserialize_newtype_struct(name, v)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.token("seq", "");
        let v = self.visitor(visitor, At::Seq);
        self.inner.deserialize_seq(v)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        if let At::Value | At::Seq | At::Fixed | At::Struct(_) = self.at {
            number(self.h, "tuple", len);
        }
        let v = self.visitor(visitor, At::Fixed);
        self.inner.deserialize_tuple(len, v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.token("tuple_struct", name);
        if let At::Value | At::Seq | At::Fixed | At::Struct(_) = self.at {
            number(self.h, "len", len);
        }
        let v = self.visitor(visitor, At::Fixed);
        self.inner.deserialize_tuple_struct(name, len, v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.token("map", "");
        let v = self.visitor(visitor, At::Seq);
        self.inner.deserialize_map(v)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.token("struct", name);
        let v = self.visitor(visitor, At::Struct(fields));
        self.inner.deserialize_struct(name, fields, v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.token("enum", name);
        let v = self.visitor(visitor, At::Variant(variants));
        self.inner.deserialize_enum(name, variants, v)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// The receiver's visitor, traced: containers it is given are traced in
/// turn, and a field key or variant name it is given is a token.
struct Visit<'h, V> {
    inner: V,
    h: &'h Cell<Fnv>,
    at: At,
}

impl<V> Visit<'_, V> {
    /// Records the name read at a field key or variant, by name or index.
    fn name(&self, name: Option<&str>, index: Option<u64>) {
        let (tag, names) = match self.at {
            At::FieldKey(names) => ("field", names),
            At::Variant(names) => ("variant", names),
            _ => return,
        };
        let by_index = index
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| names.get(i).copied());
        match (name, by_index) {
            (Some(n), _) => token(self.h, tag, n),
            (None, Some(n)) => token(self.h, tag, n),
            (None, None) => token(self.h, tag, "?"),
        }
    }
}

macro_rules! visit_number {
    ($($method:ident: $ty:ty),* $(,)?) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.name(None, u64::try_from(v).ok());
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Visit<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    visit_number! {
        visit_i8: i8, visit_i16: i16, visit_i32: i32, visit_i64: i64, visit_i128: i128,
        visit_u8: u8, visit_u16: u16, visit_u32: u32, visit_u64: u64, visit_u128: u128,
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<V::Value, E> {
        self.inner.visit_bool(v)
    }

    fn visit_f32<E: de::Error>(self, v: f32) -> Result<V::Value, E> {
        self.inner.visit_f32(v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<V::Value, E> {
        self.inner.visit_f64(v)
    }

    fn visit_char<E: de::Error>(self, v: char) -> Result<V::Value, E> {
        self.inner.visit_char(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.name(Some(v), None);
        self.inner.visit_str(v)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.name(Some(v), None);
        self.inner.visit_borrowed_str(v)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.name(Some(&v), None);
        self.inner.visit_string(v)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        self.name(std::str::from_utf8(v).ok(), None);
        self.inner.visit_bytes(v)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<V::Value, E> {
        self.name(std::str::from_utf8(v).ok(), None);
        self.inner.visit_borrowed_bytes(v)
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<V::Value, E> {
        self.name(std::str::from_utf8(&v).ok(), None);
        self.inner.visit_byte_buf(v)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        token(self.h, "none", "");
        self.inner.visit_none()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        token(self.h, "some", "");
        self.inner.visit_some(Trace {
            inner: d,
            h: self.h,
            at: At::Value,
        })
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Trace {
            inner: d,
            h: self.h,
            at: At::Value,
        })
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(Items {
            inner: seq,
            h: self.h,
            at: self.at,
            index: 0,
        })
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Items {
            inner: map,
            h: self.h,
            at: self.at,
            index: 0,
        })
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let variants = match self.at {
            At::Variant(names) => names,
            _ => &[],
        };
        self.inner.visit_enum(Enum {
            inner: data,
            h: self.h,
            variants,
        })
    }
}

/// A seed, traced.
struct Seed<'h, S> {
    inner: S,
    h: &'h Cell<Fnv>,
    at: At,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Trace {
            inner: d,
            h: self.h,
            at: self.at,
        })
    }
}

/// The items of a sequence, tuple, map or struct, traced.
struct Items<'h, A> {
    inner: A,
    h: &'h Cell<Fnv>,
    at: At,
    index: usize,
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Items<'_, A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        if let At::Struct(fields) = self.at {
            token(
                self.h,
                "field",
                fields.get(self.index).copied().unwrap_or("?"),
            );
        }
        self.index += 1;
        let out = self.inner.next_element_seed(Seed {
            inner: seed,
            h: self.h,
            at: At::Value,
        })?;
        if out.is_none() && matches!(self.at, At::Seq) {
            token(self.h, "end", "");
        }
        Ok(out)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Items<'_, A> {
    type Error = A::Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        let at = match self.at {
            At::Struct(fields) => At::FieldKey(fields),
            _ => At::Value,
        };
        let out = self.inner.next_key_seed(Seed {
            inner: seed,
            h: self.h,
            at,
        })?;
        if out.is_none() && matches!(self.at, At::Seq) {
            token(self.h, "end", "");
        }
        Ok(out)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.next_value_seed(Seed {
            inner: seed,
            h: self.h,
            at: At::Value,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// An enum, traced: the variant's name, then its data.
struct Enum<'h, A> {
    inner: A,
    h: &'h Cell<Fnv>,
    variants: &'static [&'static str],
}

impl<'de, 'h, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Enum<'h, A> {
    type Error = A::Error;
    type Variant = Enum<'h, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let (value, variant) = self.inner.variant_seed(Seed {
            inner: seed,
            h: self.h,
            at: At::Variant(self.variants),
        })?;
        Ok((
            value,
            Enum {
                inner: variant,
                h: self.h,
                variants: self.variants,
            },
        ))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Enum<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.newtype_variant_seed(Seed {
            inner: seed,
            h: self.h,
            at: At::Value,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        number(self.h, "tuple", len);
        self.inner.tuple_variant(
            len,
            Visit {
                inner: visitor,
                h: self.h,
                at: At::Fixed,
            },
        )
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        token(self.h, "fields", "");
        self.inner.struct_variant(
            fields,
            Visit {
                inner: visitor,
                h: self.h,
                at: At::Struct(fields),
            },
        )
    }
}
