//! [`CompactValue`]: a JSON value kept as its serialized text when that is smaller.
//!
//! A `serde_json::Value` object or array costs a B-tree node (~640 bytes) or a vector per
//! level even for one entry; its JSON text costs about its length. Stores and logs that
//! keep many values they rarely read (workflow inputs, event results) keep them in this
//! form and parse them back on read. Values nested deeper than the parser's limit are kept
//! as they are, so every value reads back equal to what was stored.

use serde_json::Value;

/// Values nested deeper than this stay as `Value`s (`serde_json` parses up to 128 levels).
const MAX_DEPTH: usize = 64;

/// A JSON value, as the value itself (scalars, strings, empty containers, very deep
/// values) or as its JSON text (non-empty objects and arrays).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum CompactValue {
    /// Kept as is.
    Value(Value),
    /// Kept as JSON text; parses back to an equal value.
    Json(Box<str>),
}

impl CompactValue {
    /// `value` in its compact form.
    pub(crate) fn new(value: Value) -> Self {
        match text_of(&value) {
            Some(text) => CompactValue::Json(text),
            None => CompactValue::Value(value),
        }
    }

    /// [`CompactValue::new`] of a borrowed value (a container is not cloned).
    pub(crate) fn from_ref(value: &Value) -> Self {
        match text_of(value) {
            Some(text) => CompactValue::Json(text),
            None => CompactValue::Value(value.clone()),
        }
    }

    /// The value again. Text this type wrote always parses; should it not, the value
    /// reads as `null` rather than panicking.
    pub(crate) fn to_value(&self) -> Value {
        match self {
            CompactValue::Value(v) => v.clone(),
            CompactValue::Json(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        }
    }
}

/// The JSON text of a non-empty object or array within [`MAX_DEPTH`]; `None` for what
/// stays a `Value`.
fn text_of(value: &Value) -> Option<Box<str>> {
    let container = match value {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    };
    if !container || !within_depth(value, MAX_DEPTH) {
        return None;
    }
    serde_json::to_string(value).ok().map(String::into_boxed_str)
}

/// Whether `value` nests at most `depth` containers deep.
fn within_depth(value: &Value, depth: usize) -> bool {
    match value {
        Value::Object(m) => depth > 0 && m.values().all(|v| within_depth(v, depth - 1)),
        Value::Array(a) => depth > 0 && a.iter().all(|v| within_depth(v, depth - 1)),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_read_back_equal() {
        let values = [
            Value::Null,
            json!(1),
            json!(-2.5),
            json!(u64::MAX),
            json!("text"),
            json!({}),
            json!([]),
            json!({ "i": 0 }),
            json!({ "a": [1, { "b": null }], "c": "é\"\\" }),
            json!([1.0e300, -0.0, i64::MIN]),
        ];
        for v in values {
            assert_eq!(CompactValue::new(v.clone()).to_value(), v);
            assert_eq!(CompactValue::from_ref(&v), CompactValue::new(v.clone()));
        }
        assert!(matches!(CompactValue::new(json!({ "i": 0 })), CompactValue::Json(_)));
        assert!(matches!(CompactValue::new(json!("s")), CompactValue::Value(_)));
    }

    #[test]
    fn deep_values_stay_values() {
        let mut v = json!(1);
        for _ in 0..200 {
            v = json!([v]);
        }
        let c = CompactValue::new(v.clone());
        assert!(matches!(c, CompactValue::Value(_)));
        assert_eq!(c.to_value(), v);
    }
}
