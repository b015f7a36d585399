//! Lenient deserializers for values that arrive as YAML scalars or as
//! environment strings.

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// A duration written as a number of seconds (`90`, `0.5`) or in human form
/// (`90s`, `100ms`, `2m`).
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration such as 90, \"90s\", \"100ms\" or \"2m\"")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom("a duration cannot be negative"))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            Duration::try_from_secs_f64(v)
                .map_err(|_| E::custom("a duration must be finite and not negative"))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            let v = v.trim();
            if let Ok(secs) = v.parse::<f64>() {
                return self.visit_f64(secs);
            }
            humantime::parse_duration(v).map_err(|_| {
                E::custom(format!(
                    "{v:?} is not a duration; write a number of seconds, or e.g. \"90s\", \"100ms\", \"2m\""
                ))
            })
        }
    }
    d.deserialize_any(V)
}

/// What serde says it expected, as words for a person: `u16` becomes
/// "a whole number from 0 to 65535", `a boolean` becomes "true or false".
/// Expectations already in words pass through.
pub fn expected_in_words(expected: &str) -> String {
    let whole = |min: i128, max: u128| format!("a whole number from {min} to {max}");
    match expected {
        "u8" => whole(0, u8::MAX.into()),
        "u16" => whole(0, u16::MAX.into()),
        "u32" => whole(0, u32::MAX.into()),
        "u64" | "usize" => whole(0, u64::MAX.into()),
        "i8" => whole(i8::MIN.into(), i8::MAX as u128),
        "i16" => whole(i16::MIN.into(), i16::MAX as u128),
        "i32" => whole(i32::MIN.into(), i32::MAX as u128),
        "i64" | "isize" => whole(i64::MIN.into(), i64::MAX as u128),
        "f32" | "f64" | "a float" => "a number".into(),
        "a boolean" | "bool" => "true or false".into(),
        "a sequence" => "a list".into(),
        "a map" => "a table of keys".into(),
        "a character" | "char" => "a single character".into(),
        "unit" => "nothing".into(),
        e if e.starts_with("struct ") => "a table of keys".into(),
        "IP address" => "an IP address such as 127.0.0.1 or 0.0.0.0".into(),
        "socket address" => "an address such as 127.0.0.1:8001".into(),
        e if e.starts_with("a string") || e.starts_with("a ") || e.starts_with("an ") => e.into(),
        e if e.starts_with("one of ") => e.replace('`', ""),
        e => e.replace('`', ""),
    }
}

/// A list of secrets: a YAML sequence, a JSON array in a string
/// (`["k1","k2"]`, as the original service took it) or a comma list.
pub fn secret_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SecretString>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<SecretString>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of keys, a JSON array of strings, or a comma-separated string")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<Scalar>()? {
                out.push(SecretString::from(item.0));
            }
            Ok(out)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let v = v.trim();
            if v.starts_with('[') {
                // Never echo the value: it holds keys.
                let keys: Vec<String> = serde_json::from_str(v).map_err(|_| {
                    E::custom("not a valid JSON array of strings (value not shown)")
                })?;
                return Ok(keys.into_iter().map(SecretString::from).collect());
            }
            Ok(v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| SecretString::from(s.to_owned()))
                .collect())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(vec![SecretString::from(v.to_string())])
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(vec![SecretString::from(v.to_string())])
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
    }
    d.deserialize_any(V)
}

/// A string that may have been written as a number (an all-digit key).
struct Scalar(String);

impl<'de> serde::Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct D {
        #[serde(deserialize_with = "duration")]
        d: Duration,
    }

    #[derive(Deserialize)]
    struct K {
        #[serde(deserialize_with = "secret_list")]
        k: Vec<SecretString>,
    }

    fn keys(json: &str) -> Vec<String> {
        let k: K = serde_json::from_str(json).unwrap();
        k.k.iter().map(|s| s.expose_secret().to_owned()).collect()
    }

    #[test]
    fn durations_in_every_accepted_form() {
        for (json, want) in [
            (r#"{"d":90}"#, Duration::from_secs(90)),
            (r#"{"d":0.25}"#, Duration::from_millis(250)),
            (r#"{"d":"90"}"#, Duration::from_secs(90)),
            (r#"{"d":"90s"}"#, Duration::from_secs(90)),
            (r#"{"d":"100ms"}"#, Duration::from_millis(100)),
            (r#"{"d":"2m"}"#, Duration::from_secs(120)),
        ] {
            let d: D = serde_json::from_str(json).unwrap();
            assert_eq!(d.d, want, "{json}");
        }
        for bad in [r#"{"d":-1}"#, r#"{"d":"soon"}"#, r#"{"d":true}"#] {
            assert!(serde_json::from_str::<D>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_lists_in_every_accepted_form() {
        assert_eq!(keys(r#"{"k":["a","b"]}"#), ["a", "b"]);
        assert_eq!(keys(r#"{"k":"[\"a\",\"b\"]"}"#), ["a", "b"]);
        assert_eq!(keys(r#"{"k":"a, b,,c"}"#), ["a", "b", "c"]);
        assert_eq!(keys(r#"{"k":[12345]}"#), ["12345"]);
        assert_eq!(keys(r#"{"k":""}"#), Vec::<String>::new());
    }

    #[test]
    fn a_broken_json_key_list_does_not_echo_the_keys() {
        let err = serde_json::from_str::<K>(r#"{"k":"[\"supersecret\""}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(!err.contains("supersecret"), "{err}");
    }
}
