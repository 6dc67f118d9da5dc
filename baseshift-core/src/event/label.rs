//! [`Label`]: an event's type or status, static text for the engine's own names.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::{Borrow, Cow};
use std::fmt;
use std::ops::Deref;

/// An event's type (`job_succeeded`) or status (`SUCCEEDED`): the engine's own names are
/// static text, so building and dropping an event costs no allocation for them; any other
/// name owns its text. Reads like a `&str` (it derefs to one, compares with `&str` and
/// `String`, and serializes as a JSON string).
///
/// ```
/// use baseshift_core::event::Label;
///
/// let known = Label::from("job_ready");
/// let custom = Label::from(format!("deploy_{}", "done"));
/// assert_eq!(known, "job_ready");
/// assert!(custom.starts_with("deploy_") && custom.as_str() == "deploy_done");
/// assert_eq!(serde_json::to_string(&known).unwrap(), r#""job_ready""#);
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Label(Cow<'static, str>);

impl Label {
    /// A label of static text (no allocation).
    pub const fn from_static(text: &'static str) -> Label {
        Label(Cow::Borrowed(text))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text as an owned `String`.
    pub fn into_string(self) -> String {
        self.0.into_owned()
    }
}

impl Deref for Label {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Label {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Label {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&'static str> for Label {
    fn from(text: &'static str) -> Label {
        Label::from_static(text)
    }
}

impl From<String> for Label {
    fn from(text: String) -> Label {
        Label(Cow::Owned(text))
    }
}

impl From<Label> for String {
    fn from(label: Label) -> String {
        label.into_string()
    }
}

impl PartialEq<str> for Label {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Label {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<String> for Label {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Label> for &str {
    fn eq(&self, other: &Label) -> bool {
        **self == *other.0
    }
}

impl PartialEq<Label> for str {
    fn eq(&self, other: &Label) -> bool {
        *self == *other.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for Label {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Label::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_owned_labels_are_equal_by_text() {
        let a = Label::from("job_ready");
        let b = Label::from("job_ready".to_owned());
        assert_eq!(a, b);
        assert!(matches!(a.0, Cow::Borrowed(_)) && matches!(b.0, Cow::Owned(_)));
        let text = String::from("job_ready");
        assert!("job_ready" == a && a == text && *"job_ready" == a);
        assert_ne!(a, "job_running");
        assert_eq!(format!("{a} {a:?}"), r#"job_ready "job_ready""#);
        let back: Label = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        assert_eq!((back.as_str(), String::from(back.clone())), ("job_ready", "job_ready".to_owned()));
    }
}
