use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A duration written as `"30s"`, `"500ms"`, `"5m"`, `"1h 30m"` or a number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DurationSpec(pub Duration);

impl DurationSpec {
    /// Parses `"30s"`, `"5m"`, `"1h 30m"`, `"250ms"`, or a plain number of seconds.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Ok(secs) = t.parse::<f64>() {
            return Self::from_secs(secs);
        }
        humantime::parse_duration(t)
            .map(DurationSpec)
            .map_err(|e| format!("invalid duration `{s}`: {e} (use e.g. `30s`, `500ms`, `5m`)"))
    }

    fn from_secs(secs: f64) -> Result<Self, String> {
        if (0.0..1e12).contains(&secs) {
            Ok(DurationSpec(Duration::from_secs_f64(secs)))
        } else {
            Err(format!("invalid duration {secs}: must be a non-negative number of seconds"))
        }
    }
}

impl From<Duration> for DurationSpec {
    fn from(d: Duration) -> Self {
        DurationSpec(d)
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as `30s`, `5m` or a number of seconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationSpec, E> {
                DurationSpec::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationSpec, E> {
                DurationSpec::from_secs(v as f64).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationSpec, E> {
                DurationSpec::from_secs(v as f64).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationSpec, E> {
                DurationSpec::from_secs(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_numbers() {
        assert_eq!(DurationSpec::parse("30s").unwrap().0, Duration::from_secs(30));
        assert_eq!(DurationSpec::parse("250ms").unwrap().0, Duration::from_millis(250));
        assert_eq!(DurationSpec::parse("1h 30m").unwrap().0, Duration::from_secs(5400));
        assert_eq!(DurationSpec::parse("1.5").unwrap().0, Duration::from_millis(1500));
        assert!(DurationSpec::parse("soon").is_err());
        assert!(DurationSpec::parse("-1").is_err());
    }

    #[test]
    fn round_trips_through_json() {
        let d = DurationSpec(Duration::from_millis(1500));
        let s = serde_json::to_string(&d).unwrap();
        let back: DurationSpec = serde_json::from_str(&s).unwrap();
        assert_eq!(back, d);
        let n: DurationSpec = serde_json::from_str("2").unwrap();
        assert_eq!(n.0, Duration::from_secs(2));
    }
}
