//! A serde deserializer over the located tree that reports every mistake of a file, not just
//! the first.
//!
//! serde stops at the first error, so the caller ([`super::load`]) runs deserialization in
//! rounds: each error is recorded with the path and position of the node that caused it, and
//! that node gets a *fixup* for the next round — first a neutral placeholder (`0`, `""`,
//! `false`, an empty list), and if the placeholder does not fit either, the node is left out;
//! a required field that is missing gets a placeholder supplied. Unknown keys are reported in
//! the same pass they are met (the struct's field list comes with `deserialize_struct`) and
//! skipped, so they never stop anything. Rounds end when the document deserializes.

use super::scalar;
use super::tree::{join, Kind, Mark, Node};
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

/// What the next round does with a node that caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixup {
    /// Read as a neutral value of whatever type is asked for.
    Neutral,
    /// Left out: an absent key (its default applies) or a dropped list element.
    Remove,
    /// A required key that is absent: a neutral value is supplied.
    Supply,
}

/// An error with the path and position of the node it is about.
#[derive(Debug)]
pub struct Error {
    pub message: String,
    /// The field a struct needed and did not get.
    pub missing: Option<&'static str>,
    pub at: Option<(String, Mark)>,
}

impl Error {
    fn at(mut self, path: &str, mark: Mark) -> Self {
        if self.at.is_none() {
            self.at = Some((path.to_string(), mark));
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            message: msg.to_string(),
            missing: None,
            at: None,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self {
            message: format!("missing field `{field}`"),
            missing: Some(field),
            at: None,
        }
    }
}

/// An unknown key met during a round.
#[derive(Debug, Clone)]
pub struct UnknownKey {
    pub path: String,
    pub mark: Mark,
    pub message: String,
    /// The path of the known field it is probably a misspelling of: a complaint about that
    /// field being absent would only repeat this mistake.
    pub meant: Option<String>,
}

/// State shared by one round.
pub struct Round<'f> {
    fixups: &'f HashMap<String, Fixup>,
    unknown: RefCell<Vec<UnknownKey>>,
}

impl<'f> Round<'f> {
    /// A round applying `fixups`.
    pub fn new(fixups: &'f HashMap<String, Fixup>) -> Self {
        Self {
            fixups,
            unknown: RefCell::new(Vec::new()),
        }
    }

    /// The unknown keys met.
    pub fn unknown_keys(self) -> Vec<UnknownKey> {
        self.unknown.into_inner()
    }
}

/// Deserializes one node (`None`: a neutral placeholder).
pub struct De<'a, 'f> {
    node: Option<&'a Node>,
    mark: Mark,
    path: String,
    round: &'a Round<'f>,
}

impl<'a, 'f> De<'a, 'f> {
    /// The document's top node.
    pub fn root(node: &'a Node, round: &'a Round<'f>) -> Self {
        Self {
            node: Some(node),
            mark: node.mark,
            path: String::new(),
            round,
        }
    }

    fn scalar(&self) -> Option<(&'a str, bool)> {
        match &self.node?.kind {
            Kind::Scalar { text, plain } => Some((text.as_str(), *plain)),
            _ => None,
        }
    }

    fn fail(&self, message: String) -> Error {
        de::Error::custom(message)
    }

    /// The children of a mapping, with fixups applied; `fields` filters (and reports) unknown
    /// keys of a struct.
    fn entries(&self, fields: Option<&'static [&'static str]>) -> Vec<Slot<'a>> {
        let mut out = Vec::new();
        if let Some(Node {
            kind: Kind::Map(entries),
            ..
        }) = self.node
        {
            for e in entries {
                let path = join(&self.path, &e.key);
                if let Some(fields) = fields {
                    if !fields.contains(&e.key.as_str()) {
                        let near = super::suggest::closest(&e.key, fields.iter().copied());
                        self.round.unknown.borrow_mut().push(UnknownKey {
                            message: unknown_field(&e.key, near, fields),
                            meant: near.map(|n| join(&self.path, n)),
                            path,
                            mark: e.key_mark,
                        });
                        continue;
                    }
                }
                let node = match self.round.fixups.get(&path) {
                    Some(Fixup::Remove) => continue,
                    Some(Fixup::Neutral) => None,
                    _ => Some(&e.value),
                };
                out.push(Slot {
                    key: e.key.clone(),
                    node,
                    mark: e.value.mark,
                    path,
                });
            }
        }
        if let Some(fields) = fields {
            for field in fields {
                let path = join(&self.path, field);
                if self.round.fixups.get(&path) == Some(&Fixup::Supply)
                    && !out.iter().any(|s| s.key == *field)
                {
                    out.push(Slot {
                        key: (*field).to_string(),
                        node: None,
                        mark: self.mark,
                        path,
                    });
                }
            }
        }
        out
    }

    fn items(&self) -> Vec<Slot<'a>> {
        let Some(Node {
            kind: Kind::Seq(items),
            ..
        }) = self.node
        else {
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let path = format!("{}[{i}]", self.path);
                let node = match self.round.fixups.get(&path) {
                    Some(Fixup::Remove) => return None,
                    Some(Fixup::Neutral) => None,
                    _ => Some(item),
                };
                Some(Slot {
                    key: String::new(),
                    node,
                    mark: item.mark,
                    path,
                })
            })
            .collect()
    }

    fn child(&self, slot: Slot<'a>) -> De<'a, 'f> {
        De {
            node: slot.node,
            mark: slot.mark,
            path: slot.path,
            round: self.round,
        }
    }
}

/// serde's wording for an unknown field, with the closest known name when one is near.
fn unknown_field(key: &str, near: Option<&str>, fields: &'static [&'static str]) -> String {
    let base = <Error as de::Error>::unknown_field(key, fields).message;
    match near {
        Some(near) => format!("{base} (did you mean `{near}`?)"),
        None => base,
    }
}

/// One child to deserialize: its key (for mappings), node (None = placeholder) and place.
struct Slot<'a> {
    key: String,
    node: Option<&'a Node>,
    mark: Mark,
    path: String,
}

struct MapAccess<'a, 'f> {
    parent: &'a De<'a, 'f>,
    slots: std::vec::IntoIter<Slot<'a>>,
    value: Option<Slot<'a>>,
}

impl<'de, 'a, 'f> de::MapAccess<'de> for MapAccess<'a, 'f> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(slot) = self.slots.next() else {
            return Ok(None);
        };
        let key = seed
            .deserialize(slot.key.as_str().into_deserializer())
            .map_err(|e: Error| e.at(&slot.path, slot.mark))?;
        self.value = Some(slot);
        Ok(Some(key))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let slot = self
            .value
            .take()
            .ok_or_else(|| <Error as de::Error>::custom("value without a key"))?;
        let (path, mark) = (slot.path.clone(), slot.mark);
        seed.deserialize(self.parent.child(slot))
            .map_err(|e| e.at(&path, mark))
    }
}

struct SeqAccess<'a, 'f> {
    parent: &'a De<'a, 'f>,
    slots: std::vec::IntoIter<Slot<'a>>,
}

impl<'de, 'a, 'f> de::SeqAccess<'de> for SeqAccess<'a, 'f> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some(slot) = self.slots.next() else {
            return Ok(None);
        };
        let (path, mark) = (slot.path.clone(), slot.mark);
        seed.deserialize(self.parent.child(slot))
            .map(Some)
            .map_err(|e| e.at(&path, mark))
    }
}

fn visit_int<'de, V: Visitor<'de>>(n: i128, visitor: V) -> Result<V::Value, Error> {
    if let Ok(u) = u64::try_from(n) {
        visitor.visit_u64(u)
    } else if let Ok(i) = i64::try_from(n) {
        visitor.visit_i64(i)
    } else {
        visitor.visit_i128(n)
    }
}

macro_rules! integer {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.scalar() {
                _ if self.node.is_none() => visitor.visit_u64(0),
                Some((text, true)) => match scalar::integer(text) {
                    Some(n) => visit_int(n, visitor),
                    None => self.deserialize_any(visitor),
                },
                _ => self.deserialize_any(visitor),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for De<'_, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let Some(node) = self.node else {
            return visitor.visit_unit();
        };
        match &node.kind {
            Kind::Scalar { text, plain: false } => visitor.visit_str(text),
            Kind::Scalar { text, plain: true } => {
                if scalar::is_null(text) {
                    visitor.visit_unit()
                } else if let Some(b) = scalar::boolean(text) {
                    visitor.visit_bool(b)
                } else if let Some(n) = scalar::integer(text) {
                    visit_int(n, visitor)
                } else if let Some(f) = scalar::float(text) {
                    visitor.visit_f64(f)
                } else {
                    visitor.visit_str(text)
                }
            }
            Kind::Seq(_) => {
                let slots = self.items().into_iter();
                visitor.visit_seq(SeqAccess {
                    parent: &self,
                    slots,
                })
            }
            Kind::Map(_) => {
                let slots = self.entries(None).into_iter();
                visitor.visit_map(MapAccess {
                    parent: &self,
                    slots,
                    value: None,
                })
            }
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.scalar() {
            _ if self.node.is_none() => visitor.visit_bool(false),
            Some((text, true)) => match scalar::boolean(text) {
                Some(b) => visitor.visit_bool(b),
                None => self.deserialize_any(visitor),
            },
            _ => self.deserialize_any(visitor),
        }
    }

    integer! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.scalar() {
            _ if self.node.is_none() => visitor.visit_f64(0.0),
            Some((text, true)) => {
                match scalar::float(text).or_else(|| scalar::integer(text).map(|n| n as f64)) {
                    Some(f) => visitor.visit_f64(f),
                    None => self.deserialize_any(visitor),
                }
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // `key:` with nothing after it is the empty string, as serde_yaml reads it.
        match (self.node, self.scalar()) {
            (None, _) => visitor.visit_str(""),
            (_, Some((text, _))) => visitor.visit_str(text),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            None => visitor.visit_none(),
            Some(node) if node.is_null() => visitor.visit_none(),
            Some(_) => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            None => visitor.visit_unit(),
            Some(node) if node.is_null() => visitor.visit_unit(),
            Some(_) => self.deserialize_any(visitor),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // `key:` with nothing after it is an empty list, as serde_yaml reads it.
        let empty = self.node.is_some_and(node_text_is_empty);
        match self.node.map(|n| &n.kind) {
            None | Some(Kind::Seq(_)) => {
                let slots = self.items().into_iter();
                visitor.visit_seq(SeqAccess {
                    parent: &self,
                    slots,
                })
            }
            _ if empty => visitor.visit_seq(SeqAccess {
                parent: &self,
                slots: Vec::new().into_iter(),
            }),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // `key:` with nothing after it is an empty map, as serde_yaml reads it.
        let empty = self.node.is_some_and(node_text_is_empty);
        match self.node.map(|n| &n.kind) {
            None | Some(Kind::Map(_)) => {
                let slots = self.entries(None).into_iter();
                visitor.visit_map(MapAccess {
                    parent: &self,
                    slots,
                    value: None,
                })
            }
            _ if empty => visitor.visit_map(MapAccess {
                parent: &self,
                slots: Vec::new().into_iter(),
                value: None,
            }),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.node.map(|n| &n.kind) {
            None | Some(Kind::Map(_)) => {
                let slots = self.entries(Some(fields)).into_iter();
                let (path, mark) = (self.path.clone(), self.mark);
                visitor
                    .visit_map(MapAccess {
                        parent: &self,
                        slots,
                        value: None,
                    })
                    .map_err(|e| e.at(&path, mark))
            }
            // `key:` with nothing after it reads as an empty section.
            Some(Kind::Scalar { .. }) if self.node.is_some_and(node_text_is_empty) => {
                let empty = De { node: None, ..self };
                empty.deserialize_struct(_name, fields, visitor)
            }
            // serde would read a struct from a list by position; a configuration never means that.
            Some(Kind::Seq(_)) => Err(de::Error::invalid_type(de::Unexpected::Seq, &visitor)),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.node.map(|n| &n.kind) {
            None => visitor.visit_enum(variants.first().copied().unwrap_or("").into_deserializer()),
            Some(Kind::Scalar { text, .. }) => {
                visitor.visit_enum(text.as_str().into_deserializer())
            }
            // Every enum of the schema is a plain name; serde_yaml also refuses `{variant: x}`.
            _ => Err(self.fail(format!("expected one of {}", variants.join(", ")))),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

/// `key:` with nothing after it (as opposed to an explicit `~` or `null`).
fn node_text_is_empty(node: &Node) -> bool {
    matches!(&node.kind, Kind::Scalar { text, plain: true } if text.is_empty())
}
