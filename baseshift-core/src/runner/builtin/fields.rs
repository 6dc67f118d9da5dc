//! Reading a built-in runner's job config, at template load time and at run time.
//!
//! At load time (`validate_config`) the config is raw: any string may still hold a
//! `${...}` reference whose value, once resolved, can be of any type. A field whose
//! value contains such a reference is therefore accepted when it does not type-check,
//! and reported as [`Field::Templated`] so the runner skips checks it cannot make yet.
//! At run time the config is resolved and every field must type-check.

use crate::error::Error;
use crate::runner::{JobError, config_error};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Whether `value` holds a `${...}` reference anywhere (strings, array items, object values).
pub(super) fn is_templated(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains("${"),
        Value::Array(items) => items.iter().any(is_templated),
        Value::Object(map) => map.values().any(is_templated),
        _ => false,
    }
}

/// One field read from a config.
#[derive(Debug)]
pub(super) enum Field<T> {
    /// Absent or `null`.
    Missing,
    /// A raw value holding `${...}` that does not type-check yet (load time only).
    Templated,
    /// A value of the expected type.
    Value(T),
}

impl<T> Field<T> {
    /// The value, if present and known.
    pub(super) fn value(self) -> Option<T> {
        match self {
            Field::Value(v) => Some(v),
            Field::Missing | Field::Templated => None,
        }
    }
}

/// A job config object with its unknown fields already rejected.
pub(super) struct ConfigReader<'a> {
    fields: Option<&'a Map<String, Value>>,
    raw: bool,
}

impl<'a> ConfigReader<'a> {
    /// Reads a raw (template) config: `${...}` values are accepted for any field.
    pub(super) fn raw(config: &'a Value, known: &[&str]) -> Result<Self, Error> {
        Self::new(config, known, true)
    }

    /// Reads a resolved config; errors are permanent job errors.
    pub(super) fn resolved(config: &'a Value, known: &[&str]) -> Result<Self, JobError> {
        Self::new(config, known, false).map_err(JobError::permanent)
    }

    fn new(config: &'a Value, known: &[&str], raw: bool) -> Result<Self, Error> {
        let fields = match config {
            Value::Null => None,
            Value::Object(map) => Some(map),
            other => {
                return Err(Error::new(
                    crate::error::ErrorKind::InvalidTemplate,
                    format!("config: expected an object, found {}", type_name(other)),
                )
                .with_location(crate::error::Location::default().field("config")));
            }
        };
        if let Some(map) = fields
            && let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str()))
        {
            return Err(config_error(unknown, format!("unknown field (expected one of: {})", known.join(", "))));
        }
        Ok(ConfigReader { fields, raw })
    }

    /// The raw value of `field`, if present and not `null`.
    pub(super) fn get_raw(&self, field: &str) -> Option<&'a Value> {
        self.fields.and_then(|m| m.get(field)).filter(|v| !v.is_null())
    }

    /// Reads an optional field.
    pub(super) fn get<T: DeserializeOwned>(&self, field: &str) -> Result<Field<T>, Error> {
        let Some(value) = self.get_raw(field) else {
            return Ok(Field::Missing);
        };
        match serde_json::from_value::<T>(value.clone()) {
            Ok(v) => Ok(Field::Value(v)),
            Err(_) if self.raw && is_templated(value) => Ok(Field::Templated),
            Err(e) => Err(config_error(field, e)),
        }
    }

    /// Reads a required field: [`Field::Missing`] is an error.
    pub(super) fn require<T: DeserializeOwned>(&self, field: &str) -> Result<Field<T>, Error> {
        match self.get(field)? {
            Field::Missing => Err(config_error(field, "required field is missing")),
            other => Ok(other),
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde_json::json;

    #[test]
    fn detects_references_anywhere() {
        assert!(is_templated(&json!("${input.x}")));
        assert!(is_templated(&json!(["a", "b${env.X}"])));
        assert!(is_templated(&json!({"a": {"b": "${jobs.a.output}"}})));
        assert!(!is_templated(&json!(["a", 1, {"b": "$c"}])));
    }

    #[test]
    fn rejects_unknown_fields_and_non_objects() {
        let err = ConfigReader::raw(&json!({"urll": "x"}), &["url"]).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::InvalidTemplate);
        assert!(err.to_string().contains("config.urll"), "{err}");
        assert!(ConfigReader::raw(&json!([1]), &["url"]).is_err());
        assert!(ConfigReader::raw(&Value::Null, &["url"]).is_ok());
    }

    #[test]
    fn templated_values_pass_only_when_raw() {
        let cfg = json!({"n": "${input.n}", "m": "nope"});
        let raw = ConfigReader::raw(&cfg, &["n", "m"]).unwrap();
        assert!(matches!(raw.get::<u32>("n").unwrap(), Field::Templated));
        let err = raw.get::<u32>("m").unwrap_err();
        assert!(err.to_string().contains("config.m"), "{err}");
        assert!(raw.require::<u32>("absent").is_err());
        let resolved = ConfigReader::resolved(&cfg, &["n", "m"]).unwrap();
        assert!(resolved.get::<u32>("n").is_err());
    }
}
