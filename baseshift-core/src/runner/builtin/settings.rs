//! Loading a built-in runner's host config from YAML or JSON, with errors naming the field.
//!
//! Each section is decoded into a `#[serde(default, deny_unknown_fields)]` struct. When that
//! fails, every key is decoded again on its own, so the error names the offending field
//! (serde's own messages name unknown fields but not mistyped ones).

use crate::error::{Error, Location};
use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use std::fmt;

/// Parses a YAML document into a JSON value; `what` names the config in errors.
pub(super) fn yaml_value(src: &str, what: &str) -> Result<Value, Error> {
    serde_saphyr::from_str::<Value>(src).map_err(|e| invalid(what, format!("invalid YAML: {e}")))
}

/// Parses a JSON document.
pub(super) fn json_value(src: &str, what: &str) -> Result<Value, Error> {
    serde_json::from_str::<Value>(src).map_err(|e| invalid(what, format!("invalid JSON: {e}")))
}

/// An [`Error`] of kind `InvalidInput` whose location names `field`.
pub(super) fn invalid(field: &str, message: impl fmt::Display) -> Error {
    Error::invalid_input(format!("{field}: {message}")).with_location(Location::default().field(field.to_owned()))
}

/// Decodes one section (`null` counts as empty); errors name `section.<key>`.
pub(super) fn decode<T: DeserializeOwned>(value: &Value, section: &str) -> Result<T, Error> {
    let value = if value.is_null() { Value::Object(Map::new()) } else { value.clone() };
    let Value::Object(map) = &value else {
        return Err(invalid(section, "expected a mapping"));
    };
    match serde_json::from_value::<T>(value.clone()) {
        Ok(decoded) => Ok(decoded),
        Err(whole) => {
            for (key, item) in map {
                let single = Value::Object(Map::from_iter([(key.clone(), item.clone())]));
                if let Err(e) = serde_json::from_value::<T>(single) {
                    return Err(invalid(&format!("{section}.{key}"), e));
                }
            }
            Err(invalid(section, whole))
        }
    }
}

/// A byte count written as a number or as `"512KiB"`, `"64 MiB"`, `"1GiB"`, `"10MB"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ByteSize(pub(super) u64);

impl ByteSize {
    fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 = digits.parse().map_err(|_| format!("invalid byte size `{text}`"))?;
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            other => return Err(format!("unknown unit `{other}` in `{text}` (use B, KiB, MiB, GiB, KB, MB, GB)")),
        };
        n.checked_mul(factor).map(ByteSize).ok_or_else(|| format!("byte size `{text}` is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte count such as 1048576 or `64MiB`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Sample {
        names: Vec<String>,
        size: Option<ByteSize>,
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(ByteSize::parse("64MiB"), Ok(ByteSize(64 << 20)));
        assert_eq!(ByteSize::parse("2 GiB"), Ok(ByteSize(2 << 30)));
        assert_eq!(ByteSize::parse("10kb"), Ok(ByteSize(10_000)));
        assert_eq!(ByteSize::parse("7"), Ok(ByteSize(7)));
        assert!(ByteSize::parse("1 parsec").is_err());
        assert!(ByteSize::parse("99999999999999GiB").is_err());
    }

    #[test]
    fn errors_name_the_field() {
        let err = decode::<Sample>(&json!({"names": ["a"], "size": "big"}), "x.security").unwrap_err();
        assert!(err.to_string().contains("x.security.size"), "{err}");
        let err = decode::<Sample>(&json!({"nmes": []}), "x.security").unwrap_err();
        assert!(err.to_string().contains("x.security.nmes") && err.to_string().contains("unknown field"), "{err}");
        let ok = decode::<Sample>(&Value::Null, "x").unwrap();
        assert!(ok.names.is_empty() && ok.size.is_none());
        assert!(decode::<Sample>(&json!([1]), "x").is_err());
    }
}
