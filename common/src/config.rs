//! Settings loading that never stops at the first problem.
//!
//! Layers: built-in defaults → YAML file → the original service's
//! environment variables ([`LegacyEnv`]) → `PREFIX__SECTION__KEY`. Each
//! section is extracted on its own ([`section`]): one that fails to parse is
//! reported and replaced by its defaults so the others are still checked.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::DeserializeOwned;
use serde_saphyr::figment::Yaml;

/// One problem with the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path, e.g. `heartbeat.stale_threshold`.
    pub path: String,
    pub message: String,
    /// Where the offending value came from, when known.
    pub origin: Option<String>,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
            origin: None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        if let Some(origin) = &self.origin {
            write!(f, " (from {origin})")?;
        }
        Ok(())
    }
}

/// Every problem found, in a stable order.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_problems(f, "invalid configuration", &self.0)
    }
}

/// `<what> (N problem(s)):` and one indented line per problem: how every
/// "all that is wrong at once" error reads.
pub fn write_problems<E: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    what: &str,
    problems: &[E],
) -> fmt::Result {
    writeln!(f, "{what} ({} problem(s)):", problems.len())?;
    for p in problems {
        writeln!(f, "  - {p}")?;
    }
    Ok(())
}

impl std::error::Error for ConfigErrors {}

/// Where settings come from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The YAML file; `None` for none.
    pub file: Option<PathBuf>,
    /// Whether a missing file is an error (it is when named explicitly).
    pub file_required: bool,
}

impl Sources {
    /// `--config PATH` when given (then it must exist), else `default` if present.
    pub fn from_cli(path: Option<&Path>, default: &str) -> Self {
        match path {
            Some(p) => Sources {
                file: Some(p.to_owned()),
                file_required: true,
            },
            None => Sources {
                file: Some(PathBuf::from(default)),
                file_required: false,
            },
        }
    }

    /// Only defaults and the environment.
    pub fn none() -> Self {
        Sources {
            file: None,
            file_required: false,
        }
    }
}

/// The provider chain: file, then the original variables, then ours.
pub fn figment(sources: &Sources, legacy: LegacyEnv, env_prefix: &str) -> Figment {
    let mut fig = Figment::new();
    if let Some(path) = &sources.file {
        if sources.file_required || path.exists() {
            fig = fig.merge(Yaml::file_exact(path));
        }
    }
    fig.merge(legacy)
        .merge(Env::prefixed(env_prefix).split("__"))
}

/// Problems that stop extraction before any section: a broken file, and
/// top-level keys that are not `sections`. Empty when all is well.
pub fn check_root(fig: &Figment, sections: &[&str]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    match fig.extract::<Dict>() {
        Err(e) => collect_figment(&mut errors, "", "", e),
        Ok(root) => {
            for key in root.keys().filter(|k| !sections.contains(&k.as_str())) {
                errors.push(ConfigError {
                    path: key.clone(),
                    message: format!("is not a known section (known: {})", sections.join(", ")),
                    origin: fig.find_metadata(key).map(|m| origin(m, &[key], "")),
                });
            }
        }
    }
    errors
}

/// Extracts one section (`""`: the top-level keys), recording its errors
/// instead of stopping; a section that fails is replaced by its defaults and
/// named in `failed`. Every key of a failed section is tried on its own, so
/// all of its problems are reported, not only serde's first.
pub fn section<T: DeserializeOwned + Default>(
    fig: &Figment,
    name: &'static str,
    env_prefix: &str,
    errors: &mut Vec<ConfigError>,
    failed: &mut Vec<&'static str>,
) -> T {
    let focused = if name.is_empty() {
        fig.clone()
    } else {
        fig.focus(name)
    };
    match focused.extract::<T>() {
        Ok(v) => v,
        Err(e) => {
            let mut found = Vec::new();
            if let Ok(keys) = focused.extract::<Dict>() {
                for (key, value) in keys {
                    probe::<T>(fig, name, env_prefix, vec![key], value, &mut found);
                }
            }
            if found.is_empty() {
                collect_figment(errors, name, env_prefix, e);
            } else {
                errors.extend(found);
            }
            failed.push(name);
            T::default()
        }
    }
}

/// Extracts `T` from the value at `path` alone (defaults for the rest) and
/// records what is wrong with it; a table with several keys is split
/// further, so one bad key does not hide its siblings.
fn probe<T: DeserializeOwned>(
    fig: &Figment,
    section: &str,
    env_prefix: &str,
    path: Vec<String>,
    value: Value,
    out: &mut Vec<ConfigError>,
) {
    let mut nested = value.clone();
    for key in path.iter().rev() {
        let mut dict = Dict::new();
        dict.insert(key.clone(), nested);
        nested = Value::from(dict);
    }
    let Err(e) = Figment::from(figment::providers::Serialized::defaults(nested)).extract::<T>()
    else {
        return;
    };
    if let Value::Dict(_, children) = &value {
        if children.len() > 1 {
            for (key, child) in children.clone() {
                let mut child_path = path.clone();
                child_path.push(key);
                probe::<T>(fig, section, env_prefix, child_path, child, out);
            }
            return;
        }
    }
    for err in e {
        let full = error_path(section, &err);
        let message = describe(&err.kind, &full);
        let dotted = full.join(".");
        out.push(ConfigError {
            origin: fig
                .find_metadata(&dotted)
                .map(|m| origin(m, &full, env_prefix)),
            path: dotted,
            message,
        });
    }
}

/// The loaded settings when nothing is wrong; else every error: `errors`
/// (from parsing) and those of the semantic `rules` that concern sections
/// that parsed (a section in `failed` was replaced by its defaults).
pub fn conclude<T>(
    settings: T,
    mut errors: Vec<ConfigError>,
    rules: Vec<ConfigError>,
    failed: &[&str],
) -> Result<T, ConfigErrors> {
    errors.extend(without_failed(rules, failed));
    if errors.is_empty() {
        Ok(settings)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Keeps only the rule errors about sections that parsed.
fn without_failed<'a>(
    rules: Vec<ConfigError>,
    failed: &'a [&'a str],
) -> impl Iterator<Item = ConfigError> + 'a {
    rules.into_iter().filter(move |e| {
        let section = e.path.split(['.', '[']).next().unwrap_or_default();
        !failed.contains(&section)
    })
}

fn collect_figment(
    errors: &mut Vec<ConfigError>,
    section: &str,
    env_prefix: &str,
    e: figment::Error,
) {
    for err in e {
        let path = error_path(section, &err);
        let origin = err.metadata.as_ref().map(|m| origin(m, &path, env_prefix));
        errors.push(ConfigError {
            message: describe(&err.kind, &path),
            path: if path.is_empty() {
                "(root)".into()
            } else {
                path.join(".")
            },
            origin,
        });
    }
}

/// The keys from the top down to what `err` is about: the section's, the
/// error's own path, and a missing field's name.
fn error_path<'a>(section: &'a str, err: &'a figment::Error) -> Vec<&'a str> {
    let mut path: Vec<&str> = Vec::new();
    if !section.is_empty() {
        path.push(section);
    }
    path.extend(err.path.iter().map(String::as_str));
    if let figment::error::Kind::MissingField(field) = &err.kind {
        path.push(field);
    }
    path
}

/// Where a value came from: the file, or the variable that set it.
fn origin(m: &Metadata, path: &[&str], env_prefix: &str) -> String {
    match &m.source {
        Some(figment::Source::File(f)) => format!("{} {}", m.name, f.display()),
        // figment's own interpolation forgets the prefix and the `__`.
        _ if !env_prefix.is_empty() && m.name.contains(env_prefix) && !path.is_empty() => {
            format!(
                "environment variable `{env_prefix}{}`",
                path.join("__").to_uppercase()
            )
        }
        _ if !path.is_empty() && m.name == "environment variable" => {
            format!("{} {}", m.name, m.interpolate(&Profile::Default, path))
        }
        _ if !path.is_empty() => m.interpolate(&Profile::Default, path),
        _ => m.name.to_string(),
    }
}

/// A figment error as a sentence to follow the setting's path, e.g.
/// `99999 is not a valid port (0 to 65535)`. Values of settings that may
/// hold secrets are never repeated.
pub fn describe(kind: &figment::error::Kind, path: &[&str]) -> String {
    use figment::error::Kind as K;
    let leaf = path.last().copied().unwrap_or_default();
    let expected = |e: &str| {
        if e == "u16" && leaf.ends_with("port") {
            "a valid port (0 to 65535)".to_owned()
        } else {
            crate::de::expected_in_words(e)
        }
    };
    let actual = |a: &figment::error::Actual| {
        use figment::error::Actual as A;
        let scalar = matches!(
            a,
            A::Bool(_) | A::Unsigned(_) | A::Signed(_) | A::Float(_) | A::Char(_) | A::Str(_)
        );
        if scalar && may_be_secret(leaf) {
            "the value given (not shown)".to_owned()
        } else {
            actual_in_words(a)
        }
    };
    let names = |list: &[&str]| list.join(", ");
    match kind {
        // std's parse errors, from `FromStr` types such as `IpAddr`.
        K::Message(m) if m == "invalid IP address syntax" => {
            format!("must be {}", crate::de::expected_in_words("IP address"))
        }
        K::Message(m) if m == "invalid socket address syntax" => {
            format!("must be {}", crate::de::expected_in_words("socket address"))
        }
        K::Message(m) => m.clone(),
        K::InvalidType(a, e) => format!("must be {}, not {}", expected(e), actual(a)),
        K::InvalidValue(a, e) => format!("{} is not {}", actual(a), expected(e)),
        K::InvalidLength(n, e) => format!("has {n} items; expected {}", expected(e)),
        K::UnknownVariant(v, list) => {
            let v = if may_be_secret(leaf) {
                "the value given (not shown)".to_owned()
            } else {
                format!("{v:?}")
            };
            format!("{v} is not one of: {}", names(list))
        }
        K::UnknownField(_, []) => "is not a known setting".to_owned(),
        K::UnknownField(_, list) => format!("is not a known setting (known here: {})", names(list)),
        K::MissingField(_) => "is required".to_owned(),
        K::DuplicateField(f) => format!("{f} is given twice"),
        K::ISizeOutOfRange(n) => format!("{n} is out of range"),
        K::USizeOutOfRange(n) => format!("{n} is out of range"),
        K::Unsupported(a) => format!("{} is not supported here", actual_in_words(a)),
        K::UnsupportedKey(a, need) => format!(
            "keys must be {}, not {}",
            crate::de::expected_in_words(need),
            actual_in_words(a)
        ),
    }
}

/// Settings whose values are never repeated in a message.
fn may_be_secret(leaf: &str) -> bool {
    ["password", "token", "secret", "key", "seed", "creds", "url"]
        .iter()
        .any(|w| leaf.contains(w))
}

fn actual_in_words(a: &figment::error::Actual) -> String {
    use figment::error::Actual as A;
    match a {
        A::Bool(b) => b.to_string(),
        A::Unsigned(n) => n.to_string(),
        A::Signed(n) => n.to_string(),
        A::Float(n) => n.to_string(),
        A::Char(c) => format!("{c:?}"),
        A::Str(s) => format!("{s:?}"),
        A::Bytes(_) => "bytes".into(),
        A::Unit => "nothing".into(),
        A::Option => "an optional value".into(),
        A::Seq => "a list".into(),
        A::Map => "a table of keys".into(),
        A::NewtypeStruct
        | A::Enum
        | A::UnitVariant
        | A::NewtypeVariant
        | A::TupleVariant
        | A::StructVariant => "a value of another kind".into(),
        A::Other(o) => o.clone(),
    }
}

/// validator's errors as `(path, message)`, `prefix` prepended.
pub fn flatten_validation(prefix: &str, e: &validator::ValidationErrors) -> Vec<(String, String)> {
    use validator::ValidationErrorsKind as K;
    let mut out = Vec::new();
    for (field, kind) in e.errors() {
        let path = format!("{prefix}.{field}");
        match kind {
            K::Field(errs) => {
                for err in errs {
                    out.push((path.clone(), describe_validation(err)));
                }
            }
            K::Struct(inner) => out.extend(flatten_validation(&path, inner)),
            K::List(items) => {
                for (i, inner) in items {
                    out.extend(flatten_validation(&format!("{path}[{i}]"), inner));
                }
            }
        }
    }
    out.sort();
    out
}

/// A readable message for a validator error.
pub fn describe_validation(err: &validator::ValidationError) -> String {
    if let Some(m) = &err.message {
        return m.to_string();
    }
    let p = |k: &str| err.params.get(k).map(|v| v.to_string());
    match err.code.as_ref() {
        "range" => match (p("min"), p("max")) {
            (Some(min), Some(max)) => format!("must be between {min} and {max}"),
            (Some(min), None) => format!("must be at least {min}"),
            (None, Some(max)) => format!("must be at most {max}"),
            _ => "out of range".into(),
        },
        "length" => match (p("min"), p("max")) {
            (Some(min), Some(max)) => format!("length must be between {min} and {max}"),
            (Some(min), None) => format!("length must be at least {min}"),
            (None, Some(max)) => format!("length must be at most {max}"),
            _ => "bad length".into(),
        },
        code => format!("failed rule {code}"),
    }
}

/// Removes user info from each URL in a comma-separated list.
pub fn redact_urls(urls: &str) -> String {
    urls.split(',')
        .map(|u| {
            let u = u.trim();
            match url::Url::parse(u) {
                Ok(mut parsed) => {
                    if !parsed.username().is_empty() || parsed.password().is_some() {
                        let _ = parsed.set_username("");
                        let _ = parsed.set_password(None);
                    }
                    parsed.to_string().trim_end_matches('/').to_owned()
                }
                Err(_) => "<unparseable url>".to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// How an original variable's value is passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyKind {
    /// As written.
    Text,
    /// A number when it is one (so type errors name the variable), else text.
    Number,
    /// A log level, Python's names mapped to ours (`warning` → `warn`).
    LogLevel,
}

/// Original variable names mapped to settings paths, as a figment provider.
/// Values are taken as written: figment's own env parsing would turn an
/// all-digit API key into a number or a `[`-prefixed one into an array.
pub struct LegacyEnv {
    table: &'static [(&'static str, &'static str, LegacyKind)],
    values: Vec<(&'static str, LegacyKind, String)>,
}

impl LegacyEnv {
    pub fn from_process(table: &'static [(&'static str, &'static str, LegacyKind)]) -> Self {
        Self::from_lookup(table, |name| std::env::var(name).ok())
    }

    pub fn from_lookup(
        table: &'static [(&'static str, &'static str, LegacyKind)],
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let values = table
            .iter()
            .filter_map(|(var, path, kind)| lookup(var).map(|v| (*path, *kind, v)))
            .collect();
        LegacyEnv { table, values }
    }
}

impl Provider for LegacyEnv {
    fn metadata(&self) -> Metadata {
        let table = self.table;
        Metadata::named("environment variable").interpolater(move |_profile, keys| {
            let path = keys.join(".");
            table
                .iter()
                .find(|(_, p, _)| *p == path)
                .map(|(var, _, _)| format!("`{var}`"))
                .unwrap_or(path)
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (path, kind, raw) in &self.values {
            let value = match kind {
                LegacyKind::Text => Value::from(raw.clone()),
                LegacyKind::Number => raw
                    .trim()
                    .parse::<u64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::from(raw.clone())),
                LegacyKind::LogLevel => {
                    Value::from(match raw.trim().to_ascii_lowercase().as_str() {
                        "warning" => "warn".to_owned(),
                        "critical" | "fatal" => "error".to_owned(),
                        other => other.to_owned(),
                    })
                }
            };
            // Nest from the leaf outwards, then merge into the root.
            let mut parts: Vec<&str> = path.split('.').collect();
            let leaf = parts.pop().unwrap_or_default();
            let mut nested = Dict::new();
            nested.insert(leaf.to_owned(), value);
            for part in parts.into_iter().rev() {
                let mut outer = Dict::new();
                outer.insert(part.to_owned(), Value::from(nested));
                nested = outer;
            }
            merge(&mut root, nested);
        }
        Ok(Profile::Default.collect(root))
    }
}

fn merge(into: &mut Dict, from: Dict) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Dict(_, existing)), Value::Dict(_, incoming)) => merge(existing, incoming),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_stripped_from_displayed_urls() {
        assert_eq!(
            redact_urls("nats://u:p@a:4222, nats://tok@b:4222"),
            "nats://a:4222,nats://b:4222"
        );
        assert_eq!(redact_urls("postgres://u:p@db/fed"), "postgres://db/fed");
        assert_eq!(redact_urls("nats://a:4222"), "nats://a:4222");
    }

    #[test]
    fn legacy_values_land_on_their_paths_untouched() {
        const T: &[(&str, &str, LegacyKind)] = &[
            ("KEYS", "auth.admin_keys", LegacyKind::Text),
            ("PORT", "server.port", LegacyKind::Number),
            ("LEVEL", "log.level", LegacyKind::LogLevel),
            ("DEEP", "a.b.c", LegacyKind::Text),
            ("DEEP2", "a.b.d", LegacyKind::Text),
        ];
        let env = LegacyEnv::from_lookup(T, |k| match k {
            "KEYS" => Some("[\"0123\"]".into()),
            "PORT" => Some("8001".into()),
            "LEVEL" => Some("WARNING".into()),
            "DEEP" => Some("x".into()),
            "DEEP2" => Some("y".into()),
            _ => None,
        });
        let v: serde_json::Value = Figment::from(env).extract().unwrap();
        assert_eq!(v["auth"]["admin_keys"], "[\"0123\"]");
        assert_eq!(v["server"]["port"], 8001);
        assert_eq!(v["log"]["level"], "warn");
        assert_eq!(v["a"]["b"]["c"], "x");
        assert_eq!(v["a"]["b"]["d"], "y");
    }
}
