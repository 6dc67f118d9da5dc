//! Identifiers.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// The id of one workflow run (a UUIDv7 string unless the host supplies its own).
/// Shared: a clone is a reference count, not a copy.
///
/// A [`Name`] underneath: ordered, hashed and serialized as its text, and two clones of
/// one id compare without reading the text (the records and index entries of one
/// workflow share it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkflowId(Name);

impl WorkflowId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        // Encoded into a stack buffer: `to_string` would go through `fmt`.
        let mut buf = uuid::Uuid::encode_buffer();
        WorkflowId(Name::from(&*uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf)))
    }

    /// Wraps an existing id.
    pub fn new(id: impl Into<String>) -> Self {
        WorkflowId(Name::from(id.into()))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for WorkflowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<&str> for WorkflowId {
    fn from(s: &str) -> Self {
        WorkflowId(Name::from(s))
    }
}

impl From<String> for WorkflowId {
    fn from(s: String) -> Self {
        WorkflowId(Name::from(s))
    }
}

/// A shared, immutable name: a job id, a job type, an engine instance id. A clone is a
/// reference count, not a copy: the job records of a workflow, their keys, leases, events
/// and runner contexts all share the names of the compiled template they came from.
///
/// It reads as a `&str` (`Deref`, [`Name::as_str`]), compares with `str` and `String`,
/// orders and hashes as its text (so a `HashMap<Name, _>` is searched with a `&str`), and
/// serializes as a plain string.
///
/// ```
/// use baseshift_core::Name;
///
/// let id = Name::from("build");
/// let shared = id.clone();
/// assert_eq!(shared, "build");
/// assert_eq!(id.len(), 5);
/// assert_eq!(serde_json::to_string(&id).unwrap(), r#""build""#);
/// assert_eq!(format!("{id} {id:?}"), r#"build "build""#);
/// ```
#[derive(Clone)]
pub struct Name(Arc<str>);

// Equality, order and hash as the text, with two clones of one allocation compared by
// pointer first: `Arc`'s own equality does that only for sized types.
impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for Name {}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.0, &other.0) { std::cmp::Ordering::Equal } else { self.0.cmp(&other.0) }
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Name {
    /// A name holding `text`.
    pub fn new(text: impl Into<Name>) -> Self {
        text.into()
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Name {
    fn default() -> Self {
        Name(Arc::from(""))
    }
}

impl std::ops::Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        Name(Arc::from(s))
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Self {
        Name(Arc::from(s.as_str()))
    }
}

impl From<String> for Name {
    fn from(s: String) -> Self {
        Name(Arc::from(s))
    }
}

impl From<&Name> for Name {
    fn from(s: &Name) -> Self {
        s.clone()
    }
}

impl From<&Name> for String {
    fn from(s: &Name) -> Self {
        s.as_str().to_owned()
    }
}

impl From<Name> for String {
    fn from(s: Name) -> Self {
        s.as_str().to_owned()
    }
}

macro_rules! name_eq {
    ($($other:ty),*) => {$(
        impl PartialEq<$other> for Name {
            fn eq(&self, other: &$other) -> bool {
                self.as_str() == AsRef::<str>::as_ref(other)
            }
        }
        impl PartialEq<Name> for $other {
            fn eq(&self, other: &Name) -> bool {
                AsRef::<str>::as_ref(self) == other.as_str()
            }
        }
    )*};
}
name_eq!(str, &str, String);

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Borrowed text where the format allows it: no intermediate `String`.
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Name, E> {
                Ok(Name::from(v))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Name, E> {
                Ok(Name::from(v))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// The key of one job record: its workflow and its job id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobKey {
    /// The workflow the job belongs to.
    pub workflow_id: WorkflowId,
    /// The job's id within the template.
    pub job_id: Name,
}

impl JobKey {
    /// A key from its parts.
    pub fn new(workflow_id: WorkflowId, job_id: impl Into<Name>) -> Self {
        JobKey { workflow_id, job_id: job_id.into() }
    }
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.workflow_id, self.job_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn names_compare_order_and_hash_as_their_text_shared_or_not() {
        use std::collections::HashMap;
        let a = Name::from("a");
        let other_a = Name::from(String::from("a"));
        assert_eq!(a, a.clone());
        assert_eq!(a, other_a);
        assert_ne!(a, Name::from("b"));
        let owned = String::from("a");
        assert_eq!((a == "a", "a" == a, a == owned, owned == a), (true, true, true, true));
        assert_eq!(a.cmp(&Name::from("ab")), "a".cmp("ab"));
        let mut seen: HashMap<Name, u32> = HashMap::new();
        seen.insert(a.clone(), 1);
        *seen.entry(other_a).or_default() += 1;
        assert_eq!((seen.len(), seen.get("a")), (1, Some(&2)), "one key, found by its text");
        let back: Name = serde_json::from_str(r#""a""#).unwrap();
        assert_eq!((back, String::from(&a)), (a, "a".to_owned()));
    }

    #[test]
    fn workflow_ids_order_as_their_text_shared_or_not() {
        let a = WorkflowId::new("a");
        let b = WorkflowId::new("b");
        assert_eq!(a.cmp(&a.clone()), Ordering::Equal);
        assert_eq!(a.cmp(&WorkflowId::new("a")), Ordering::Equal);
        assert_eq!((a.cmp(&b), b.cmp(&a)), (Ordering::Less, Ordering::Greater));
        assert_eq!(WorkflowId::new("ab").cmp(&a), "ab".cmp("a"));
        let mut ids = [b.clone(), a.clone(), b.clone(), WorkflowId::new("a")];
        ids.sort();
        assert_eq!(ids.iter().map(WorkflowId::as_str).collect::<Vec<_>>(), ["a", "a", "b", "b"]);
    }
}
