//! Decoding the result into a serde type, by reference, with a depth
//! limit and a size budget.

use std::collections::{HashMap, HashSet};

use serde::de::{self, DeserializeSeed, Visitor};

use super::{Error, ITEM_COST, Kind, MAX_DEPTH, V};

/// Decodes `root` as a `T`, following references into `memo`.
pub(super) fn decode<T: de::DeserializeOwned>(
    root: &V,
    memo: &HashMap<u32, V>,
    budget: u64,
) -> Result<T, Error> {
    let mut walk = Walk {
        memo,
        left: budget,
        budget,
        depth: 0,
        open: HashSet::new(),
    };
    T::deserialize(Node {
        v: root,
        walk: &mut walk,
    })
}

/// The state of one decode: what is left of the budget, how deep the
/// walk is, and which memo entries it is inside of (a reference back to
/// one of those is a cycle, which a Rust value cannot hold).
struct Walk<'a> {
    memo: &'a HashMap<u32, V>,
    left: u64,
    budget: u64,
    depth: usize,
    open: HashSet<u32>,
}

impl<'a> Walk<'a> {
    fn charge(&mut self, v: &V) -> Result<(), Error> {
        let cost = match v {
            V::Bytes(b) => ITEM_COST + b.len() as u64,
            V::Str(s) => ITEM_COST + s.len() as u64,
            _ => ITEM_COST,
        };
        self.left = self
            .left
            .checked_sub(cost)
            .ok_or(Error::TooLarge(self.budget))?;
        Ok(())
    }

    /// Follows a memo reference, entering it; returns its id to leave.
    fn follow(&mut self, v: &'a V) -> Result<(&'a V, Option<u32>), Error> {
        match v {
            V::Ref(id) => {
                if !self.open.insert(*id) {
                    return Err(Error::Invalid(
                        "the pickle holds a recursive structure (an object that contains itself)"
                            .into(),
                    ));
                }
                let target = self.memo.get(id).ok_or_else(|| {
                    Error::Invalid(format!("memo {id} is referenced but not defined"))
                })?;
                Ok((target, Some(*id)))
            }
            v => Ok((v, None)),
        }
    }

    fn leave(&mut self, id: Option<u32>) {
        if let Some(id) = id {
            self.open.remove(&id);
        }
    }

    fn enter(&mut self) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error::TooDeep);
        }
        Ok(())
    }
}

/// One value to decode, and the walk it is part of.
struct Node<'a, 'w> {
    v: &'a V,
    walk: &'w mut Walk<'a>,
}

impl<'de, 'a, 'w> de::Deserializer<'de> for Node<'a, 'w> {
    type Error = Error;

    fn deserialize_any<Vi: Visitor<'de>>(self, visitor: Vi) -> Result<Vi::Value, Error> {
        let walk = self.walk;
        let (v, id) = walk.follow(self.v)?;
        walk.charge(v)?;
        let out = match v {
            V::None => visitor.visit_unit(),
            V::Bool(b) => visitor.visit_bool(*b),
            V::Int(i) => {
                if let Ok(i) = i64::try_from(*i) {
                    visitor.visit_i64(i)
                } else if let Ok(u) = u64::try_from(*i) {
                    visitor.visit_u64(u)
                } else {
                    visitor.visit_i128(*i)
                }
            }
            V::Huge => Err(Error::Type("integer too large".into())),
            V::Float(f) => visitor.visit_f64(*f),
            V::Bytes(b) => visitor.visit_bytes(b),
            V::Str(s) => visitor.visit_str(s),
            V::Global(_) => Err(Error::Type(
                "the pickle names a Python class or function, which has no Rust value".into(),
            )),
            V::Ref(_) => Err(Error::Invalid("a memo entry that is a reference".into())),
            V::C(c) => {
                walk.enter()?;
                let out = if c.kind == Kind::Dict {
                    visitor.visit_map(Items {
                        items: c.items.iter(),
                        walk: &mut *walk,
                    })
                } else {
                    visitor.visit_seq(Items {
                        items: c.items.iter(),
                        walk: &mut *walk,
                    })
                };
                walk.depth -= 1;
                out
            }
        };
        walk.leave(id);
        out
    }

    fn deserialize_option<Vi: Visitor<'de>>(self, visitor: Vi) -> Result<Vi::Value, Error> {
        let walk = self.walk;
        let (v, id) = walk.follow(self.v)?;
        let out = match v {
            V::None => {
                walk.charge(v)?;
                visitor.visit_none()
            }
            v => visitor.visit_some(Node {
                v,
                walk: &mut *walk,
            }),
        };
        walk.leave(id);
        out
    }

    fn deserialize_newtype_struct<Vi: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: Vi,
    ) -> Result<Vi::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<Vi: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: Vi,
    ) -> Result<Vi::Value, Error> {
        let walk = self.walk;
        let (v, id) = walk.follow(self.v)?;
        walk.charge(v)?;
        let (name, data) = match v {
            V::Str(_) => (v, None),
            V::C(c) if c.kind == Kind::Tuple && c.items.len() == 2 => {
                (&c.items[0], Some(&c.items[1]))
            }
            V::C(c) if c.kind == Kind::Tuple && c.items.len() == 1 => (&c.items[0], None),
            V::C(c) if c.kind == Kind::Dict => {
                if c.items.len() != 2 {
                    return Err(Error::Type("enum variants must have one dict entry".into()));
                }
                (&c.items[0], Some(&c.items[1]))
            }
            _ => {
                return Err(Error::Type(
                    "enums must be represented as a name, a dict or a tuple".into(),
                ));
            }
        };
        walk.enter()?;
        let out = visitor.visit_enum(Variant {
            name,
            data,
            walk: &mut *walk,
        });
        walk.depth -= 1;
        walk.leave(id);
        out
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

/// The items of a list, tuple, set (as a sequence) or dict (as a map).
struct Items<'a, 'w> {
    items: std::slice::Iter<'a, V>,
    walk: &'w mut Walk<'a>,
}

impl<'de, 'a, 'w> de::SeqAccess<'de> for Items<'a, 'w> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        match self.items.next() {
            Some(v) => seed
                .deserialize(Node {
                    v,
                    walk: &mut *self.walk,
                })
                .map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

impl<'de, 'a, 'w> de::MapAccess<'de> for Items<'a, 'w> {
    type Error = Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        de::SeqAccess::next_element_seed(self, seed)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        match de::SeqAccess::next_element_seed(self, seed)? {
            Some(v) => Ok(v),
            None => Err(Error::Type("a dict key without a value".into())),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len() / 2)
    }
}

/// An enum's variant name and its data.
struct Variant<'a, 'w> {
    name: &'a V,
    data: Option<&'a V>,
    walk: &'w mut Walk<'a>,
}

impl<'de, 'a, 'w> de::EnumAccess<'de> for Variant<'a, 'w> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), Error> {
        let name = seed.deserialize(Node {
            v: self.name,
            walk: &mut *self.walk,
        })?;
        Ok((name, self))
    }
}

impl<'de, 'a, 'w> de::VariantAccess<'de> for Variant<'a, 'w> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, Error> {
        seed.deserialize(self.data()?)
    }

    fn tuple_variant<Vi: Visitor<'de>>(self, _len: usize, visitor: Vi) -> Result<Vi::Value, Error> {
        de::Deserializer::deserialize_any(self.data()?, visitor)
    }

    fn struct_variant<Vi: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: Vi,
    ) -> Result<Vi::Value, Error> {
        de::Deserializer::deserialize_any(self.data()?, visitor)
    }
}

impl<'a, 'w> Variant<'a, 'w> {
    fn data(self) -> Result<Node<'a, 'w>, Error> {
        match self.data {
            Some(v) => Ok(Node { v, walk: self.walk }),
            None => Err(Error::Type("an enum variant without its data".into())),
        }
    }
}
