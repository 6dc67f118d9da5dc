//! A document tree that remembers where each node was written.
//!
//! YAML is read into this tree first (through `serde_saphyr::Spanned`), so syntax errors
//! surface before anything else and every later error can point at a line and column.
//! JSON is converted into the same tree without positions, so both formats share one
//! template builder.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::Spanned;
use std::fmt;

/// A 1-based (line, column), when known.
pub(super) type Pos = Option<(u32, u32)>;

/// A node of the document with its position.
#[derive(Debug)]
pub(super) struct Node {
    pub kind: Kind,
    pub pos: Pos,
}

/// What a node holds.
#[derive(Debug)]
pub(super) enum Kind {
    Scalar(Value),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key with its position.
#[derive(Debug)]
pub(super) struct Key {
    pub name: String,
    pub pos: Pos,
}

fn pos_of(loc: &serde_saphyr::Location) -> Pos {
    let line = u32::try_from(loc.line()).ok()?;
    let column = u32::try_from(loc.column()).ok()?;
    (line > 0).then_some((line, column))
}

impl Node {
    /// Converts a JSON value (no positions).
    pub fn from_value(value: Value) -> Node {
        let kind = match value {
            Value::Array(items) => Kind::Seq(items.into_iter().map(Node::from_value).collect()),
            Value::Object(map) => {
                Kind::Map(map.into_iter().map(|(k, v)| (Key { name: k, pos: None }, Node::from_value(v))).collect())
            }
            scalar => Kind::Scalar(scalar),
        };
        Node { kind, pos: None }
    }

    /// The JSON value of this node (a later duplicate key wins; the builder rejects
    /// duplicates where they matter).
    pub fn to_value(&self) -> Value {
        match &self.kind {
            Kind::Scalar(v) => v.clone(),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_value).collect()),
            Kind::Map(entries) => Value::Object(entries.iter().map(|(k, v)| (k.name.clone(), v.to_value())).collect()),
        }
    }

    /// The string, if this node is a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// A short name of the node's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar(Value::Null) => "null",
            Kind::Scalar(Value::Bool(_)) => "a boolean",
            Kind::Scalar(Value::Number(_)) => "a number",
            Kind::Scalar(Value::String(_)) => "a string",
            Kind::Scalar(_) => "a value",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    /// Calls `f(path, pos)` for every node below this one, `path` extending `root` as
    /// `root.key` and `root[i]`. Iterative, so deep documents cannot overflow the stack.
    pub fn for_each_path(&self, root: &str, mut f: impl FnMut(&str, (u32, u32))) {
        let mut stack: Vec<(String, &Node)> = vec![(root.to_owned(), self)];
        while let Some((path, node)) = stack.pop() {
            match &node.kind {
                Kind::Scalar(_) => {}
                Kind::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        stack.push((format!("{path}[{i}]"), item));
                    }
                }
                Kind::Map(entries) => {
                    for (k, v) in entries {
                        stack.push((format!("{path}.{}", k.name), v));
                    }
                }
            }
            if let Some(p) = node.pos {
                f(&path, p);
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Kind>::deserialize(d)?;
        Ok(Node { kind: spanned.value, pos: pos_of(&spanned.referenced) })
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Kind>::deserialize(d)?;
        let name = match spanned.value {
            Kind::Scalar(Value::String(s)) => s,
            Kind::Scalar(Value::Null) => {
                return Err(de::Error::custom("a mapping key must not be null"));
            }
            Kind::Scalar(other) => other.to_string(),
            Kind::Seq(_) | Kind::Map(_) => {
                return Err(de::Error::custom("a mapping key must be a string, not a list or mapping"));
            }
        };
        Ok(Key { name, pos: pos_of(&spanned.referenced) })
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Scalar(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Scalar(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Kind, E> {
        Ok(Kind::Scalar(Value::from(v)))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Kind, E> {
        i64::try_from(v)
            .map(Value::from)
            .or_else(|_| u64::try_from(v).map(Value::from))
            .map(Kind::Scalar)
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Kind, E> {
        u64::try_from(v)
            .map(|u| Kind::Scalar(Value::from(u)))
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Kind, E> {
        serde_json::Number::from_f64(v)
            .map(|n| Kind::Scalar(Value::Number(n)))
            .ok_or_else(|| E::custom(format!("{v} cannot be represented in JSON")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Scalar(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Scalar(Value::String(v)))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Kind, E> {
        String::from_utf8(v.to_vec())
            .map(|s| Kind::Scalar(Value::String(s)))
            .map_err(|_| E::custom("binary values are not supported"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Scalar(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Scalar(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        Kind::deserialize(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        Kind::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Kind::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
        while let Some(key) = map.next_key::<Key>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Kind::Map(entries))
    }
}
