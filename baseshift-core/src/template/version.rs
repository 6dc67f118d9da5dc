//! Serde for template versions: semver, leniently read (`1`, `1.0`, `"1.0"`, `"1.0.0"`).

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;

/// Parses `1`, `1.2`, `1.2.3` (and full semver with pre-release/build) into a version.
pub fn parse_lenient(s: &str) -> Result<semver::Version, String> {
    let t = s.trim().trim_start_matches('v');
    if let Ok(v) = semver::Version::parse(t) {
        return Ok(v);
    }
    let parts: Vec<&str> = t.split('.').collect();
    let nums: Result<Vec<u64>, _> = parts.iter().map(|p| p.parse::<u64>()).collect();
    match nums {
        Ok(n) if (1..=2).contains(&n.len()) => Ok(semver::Version::new(n[0], n.get(1).copied().unwrap_or(0), 0)),
        _ => Err(format!("invalid version `{s}`: expected a semantic version such as 1.0.0")),
    }
}

pub(super) fn serialize<S: Serializer>(v: &semver::Version, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<semver::Version, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = semver::Version;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a version such as 1.0.0, \"1.0\" or 1.0")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            parse_lenient(v).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(semver::Version::new(v, 0, 0))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map(|v| semver::Version::new(v, 0, 0))
                .map_err(|_| E::custom("a version cannot be negative"))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            // A YAML `1.0` arrives as a float; `1.10` would arrive as 1.1 and cannot be told
            // apart, so only one decimal digit of minor is meaningful here: quote versions.
            if !(v.is_finite() && v >= 0.0) {
                return Err(E::custom("a version must be a non-negative number or a string"));
            }
            parse_lenient(&format!("{v:?}")).map_err(E::custom)
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::parse_lenient;

    #[test]
    fn lenient_versions() {
        assert_eq!(parse_lenient("1.0").unwrap(), semver::Version::new(1, 0, 0));
        assert_eq!(parse_lenient("2").unwrap(), semver::Version::new(2, 0, 0));
        assert_eq!(parse_lenient("1.2.3-rc.1").unwrap().to_string(), "1.2.3-rc.1");
        assert!(parse_lenient("one").is_err());
    }
}
