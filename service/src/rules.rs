//! The rules request fields obey, each written once: validation checks a
//! value with [`Text::accepts`] and friends, and the OpenAPI document
//! publishes the same rule as `pattern`, `maxLength`, `maxItems` or `enum`
//! ([`Text::schema`] and friends), built from the same constants. A request
//! the document calls valid is one the server accepts, and the other way
//! round; the tests below hold the two spellings of each rule together.
//!
//! Patterns use only what ECMA-262, Python's `re` and Rust's `regex` read
//! alike (classes, `\xNN` and `\uNNNN` escapes, groups, bounded repeats):
//! no `\s`, `\d` or `\w`, whose meaning differs between engines.

use std::sync::LazyLock;

use regex::Regex;
use utoipa::openapi::schema::{
    Array, ArrayBuilder, Object, ObjectBuilder, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::KnownFormat;

use protocol::naming::SLUG_MAX_LEN;

/// Control characters (Unicode Cc, what `char::is_control` means), as the
/// inside of a regex class.
pub const CONTROL: &str = r"\x00-\x1f\x7f-\x9f";
/// White space that is not also a control character (Unicode White_Space,
/// what `char::is_whitespace` and `str::trim` mean, minus Cc).
pub const SPACE: &str = r" \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// All of Unicode White_Space, control characters included.
pub const WHITE_SPACE: &str =
    r"\x09-\x0d \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// Longest URL the service stores.
pub const MAX_URL_LEN: usize = 2048;

/// What a blank value (empty, or only white space) means for a text field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blank {
    /// A value must have at least one visible character.
    Refused,
    /// A blank value is taken as no value at all.
    Absent,
}

/// Free text: at most `max` characters (Unicode scalar values, as JSON
/// Schema's `maxLength` counts them), no control characters. Stored trimmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Text {
    pub max: usize,
    pub blank: Blank,
}

impl Text {
    pub const fn required(max: usize) -> Text {
        Text {
            max,
            blank: Blank::Refused,
        }
    }

    pub const fn optional(max: usize) -> Text {
        Text {
            max,
            blank: Blank::Absent,
        }
    }

    pub fn accepts(&self, s: &str) -> bool {
        s.chars().count() <= self.max
            && !s.chars().any(char::is_control)
            && (self.blank == Blank::Absent || s.chars().any(|c| !c.is_whitespace()))
    }

    /// The rule in words, to follow a field name.
    pub fn message(&self) -> String {
        match self.blank {
            Blank::Refused => format!(
                "must be 1 to {} characters, not blank, without control characters",
                self.max
            ),
            Blank::Absent => format!(
                "must be at most {} characters, without control characters",
                self.max
            ),
        }
    }

    pub fn pattern(&self) -> String {
        match self.blank {
            Blank::Refused => format!("^[^{CONTROL}]*[^{CONTROL}{SPACE}][^{CONTROL}]*$"),
            Blank::Absent => format!("^[^{CONTROL}]*$"),
        }
    }

    pub fn schema(&self, nullable: bool) -> Object {
        let min = (self.blank == Blank::Refused).then_some(1);
        string(nullable)
            .min_length(min)
            .max_length(Some(self.max))
            .pattern(Some(self.pattern()))
            .build()
    }

    /// Checks an optional value: `None` when absent or blank (if blank means
    /// absent), the trimmed text when valid, else the message.
    pub fn check_optional(&self, value: Option<&str>) -> Result<Option<String>, String> {
        match value {
            None => Ok(None),
            Some(v) if !self.accepts(v) => Err(self.message()),
            Some(v) => Ok(Some(v.trim().to_owned()).filter(|t| !t.is_empty())),
        }
    }
}

/// A label such as a project tag: 1 to `max` characters, no control
/// characters, no white space at either end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    pub max: usize,
}

impl Label {
    pub fn accepts(&self, s: &str) -> bool {
        !s.is_empty()
            && s.chars().count() <= self.max
            && !s.chars().any(char::is_control)
            && s.trim() == s
    }

    pub fn message(&self) -> String {
        format!(
            "must be 1 to {} characters, without control characters or white space at either end",
            self.max
        )
    }

    pub fn pattern(&self) -> String {
        format!("^[^{CONTROL}{SPACE}]([^{CONTROL}]*[^{CONTROL}{SPACE}])?$")
    }

    pub fn schema(&self) -> Object {
        nonempty_string(self.max)
            .pattern(Some(self.pattern()))
            .build()
    }
}

/// Keyset paging of a list newest first: `limit` rows (1 to `max`,
/// `default` when not given) older than the row `before` (an id, at least 1;
/// the previous page's last).
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub default: i64,
    pub max: i64,
}

impl Paging {
    /// The page size asked for, or what is wrong with the two parameters.
    pub fn check(
        &self,
        limit: Option<i64>,
        before: Option<i64>,
    ) -> Result<i64, Vec<crate::field_error::FieldError>> {
        use crate::field_error::FieldError;
        let mut problems = Vec::new();
        let limit = limit.unwrap_or(self.default);
        if !(1..=self.max).contains(&limit) {
            problems.push(FieldError::new(
                "limit",
                format!("must be between 1 and {}", self.max),
            ));
        }
        if before.is_some_and(|b| b < 1) {
            problems.push(FieldError::new("before", "must be at least 1"));
        }
        if problems.is_empty() {
            Ok(limit)
        } else {
            Err(problems)
        }
    }

    pub fn limit_schema(&self) -> Object {
        integer(1)
            .maximum(Some(self.max))
            .default(Some(self.default.into()))
            .build()
    }

    /// `limit` for a list that, without it, answers everything.
    pub fn limit_schema_without_default(&self) -> Object {
        integer(1).maximum(Some(self.max)).build()
    }

    pub fn before_schema() -> Object {
        integer(1).build()
    }
}

/// The pages of the logs (audit log, hub history).
pub const LOG_PAGES: Paging = Paging {
    default: 100,
    max: 1000,
};

/// [`LOG_PAGES`]' `limit`, for `#[param(schema_with = ...)]`.
pub fn log_limit_schema() -> Object {
    LOG_PAGES.limit_schema()
}

/// The `before` of the next page: the last row's id when the page is full
/// (`limit` rows), `None` on the last page.
pub fn next_before<T>(rows: &[T], limit: i64, id: impl Fn(&T) -> i64) -> Option<i64> {
    if rows.len() as i64 == limit {
        rows.last().map(id)
    } else {
        None
    }
}

/// A 64-bit integer of at least `min`.
fn integer(min: i64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(min))
}

/// The project slug rule, `protocol::naming::is_valid_slug`, as a pattern.
pub fn slug_pattern() -> String {
    format!("^{}$", slug_body())
}

fn slug_body() -> String {
    format!("[a-z0-9]([a-z0-9-]{{0,{}}}[a-z0-9])?", SLUG_MAX_LEN - 2)
}

pub const SLUG_MESSAGE: &str =
    "must be a slug: lower-case letters, digits and inner hyphens, 1 to 63 characters";

pub fn slug_schema(nullable: bool) -> Object {
    string(nullable).pattern(Some(slug_pattern())).build()
}

/// A mesh namespace, `hub.<slug>`.
pub fn namespace_pattern() -> String {
    format!(r"^hub\.{}$", slug_body())
}

pub fn is_namespace(s: &str) -> bool {
    s.strip_prefix("hub.")
        .is_some_and(protocol::naming::is_valid_slug)
}

pub fn namespace_schema(nullable: bool) -> Object {
    string(nullable).pattern(Some(namespace_pattern())).build()
}

/// A fan-out target: a mesh namespace `hub.<slug>`, or a bare slug as the
/// original service's `projects.yaml` lists them (stored as `hub.<slug>`).
pub fn fanout_pattern() -> String {
    format!(r"^(hub\.)?{}$", slug_body())
}

/// The mesh namespace a fan-out entry names, if it is one.
pub fn fanout_namespace(s: &str) -> Option<String> {
    if is_namespace(s) {
        Some(s.to_owned())
    } else if protocol::naming::is_valid_slug(s) {
        Some(protocol::naming::mesh_namespace(s))
    } else {
        None
    }
}

pub fn fanout_schema(nullable: bool) -> Object {
    string(nullable).pattern(Some(fanout_pattern())).build()
}

/// A spoke id as the service mints them: `spoke-<code>-<8 hex digits>`.
pub const SPOKE_ID_PATTERN: &str = "^spoke-[a-z]{3}-[0-9a-f]{8}$";
pub const SPOKE_ID_MESSAGE: &str = "must be a spoke id such as spoke-fra-ee18ad42";

pub fn spoke_id_schema() -> Object {
    string(false)
        .pattern(Some(SPOKE_ID_PATTERN))
        .examples(["spoke-fra-ee18ad42"])
        .build()
}

/// A hub or IdP URL: `http` or `https`, a host name (letters, digits, `_`,
/// inner hyphens; the last label not numeric), an IPv4 address or an IPv6
/// address in brackets, an optional port, path and query; no credentials or
/// fragment (the original service accepted any `https?://...`; credentials
/// would be a secret in the catalog, a fragment never reaches a server).
/// Every such string is also a URL the `url` crate parses with that host.
pub fn url_pattern() -> String {
    format!(
        r"^https?://{}(/[A-Za-z0-9._~%/-]*)?(\?[A-Za-z0-9._~%/&=+:@!$,;-]*)?$",
        host_and_port()
    )
}

/// A host name, IPv4 address or bracketed IPv6 address, and an optional port.
fn host_and_port() -> String {
    let label = "[A-Za-z0-9_]+(-[A-Za-z0-9_]+)*";
    let h = "[0-9A-Fa-f]{1,4}";
    let ipv6 = format!(
        "({h}:){{7}}{h}|({h}:){{1,7}}:|({h}:){{1,6}}:{h}|({h}:){{1,5}}(:{h}){{1,2}}|\
         ({h}:){{1,4}}(:{h}){{1,3}}|({h}:){{1,3}}(:{h}){{1,4}}|({h}:){{1,2}}(:{h}){{1,5}}|\
         {h}:(:{h}){{1,6}}|:((:{h}){{1,7}}|:)"
    );
    // A last label of digits (or 0x...) would make the host an IPv4 number.
    let last = "[A-Za-z_][A-Za-z0-9_]*(-[A-Za-z0-9_]+)*";
    let octet = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
    let port =
        "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}|0)";
    format!(r"(({label}\.)*{last}|{octet}(\.{octet}){{3}}|\[({ipv6})\])(:{port})?")
}

/// A PostgreSQL URL as a routing node's `database_url`: `postgres://` or
/// `postgresql://`, optional user and password (percent-encoded), a host
/// as in [`url_pattern`], an optional port, database name and options.
pub fn postgres_url_pattern() -> String {
    let userinfo = "[A-Za-z0-9._~%!$&'()*+,;=-]+(:[A-Za-z0-9._~%!$&'()*+,;=-]*)?@";
    format!(
        r"^postgres(ql)?://({userinfo})?{}(/[A-Za-z0-9._~%-]*)?(\?[A-Za-z0-9._~%&=+-]*)?$",
        host_and_port()
    )
}

static POSTGRES_URL: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)] // a constant pattern, tested below
    Regex::new(&postgres_url_pattern()).expect("the PostgreSQL URL pattern compiles")
});

pub fn postgres_url_message() -> String {
    format!(
        "must be a postgres:// or postgresql:// URL with a host, at most {MAX_URL_LEN} characters"
    )
}

pub fn is_postgres_url(s: &str) -> bool {
    s.len() <= MAX_URL_LEN
        && POSTGRES_URL.is_match(s)
        && url::Url::parse(s).is_ok_and(|u| u.host_str().is_some())
}

/// Write-only: `writeOnly` so that no response is expected to carry it.
pub fn postgres_url_schema() -> Object {
    let mut schema = string(true)
        .max_length(Some(MAX_URL_LEN))
        .pattern(Some(postgres_url_pattern()))
        .build();
    schema.write_only = Some(true);
    schema
}

static URL: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)] // a constant pattern, tested below
    Regex::new(&url_pattern()).expect("the URL pattern compiles")
});

pub fn url_message() -> String {
    format!(
        "must be an http(s) URL: a host name, an IPv4 address or an IPv6 address in brackets, \
         an optional port, path and query; no credentials or fragment; at most {MAX_URL_LEN} characters"
    )
}

pub fn is_url(s: &str) -> bool {
    s.len() <= MAX_URL_LEN && URL.is_match(s) && protocol::heartbeat::is_valid_hub_url(s)
}

pub fn url_schema(nullable: bool) -> Object {
    string(nullable)
        .max_length(Some(MAX_URL_LEN))
        .pattern(Some(url_pattern()))
        .build()
}

/// A SHA-256 fingerprint: 64 hex digits, or 32 colon-separated pairs, white
/// space around allowed; blank means none.
pub fn fingerprint_pattern() -> String {
    let hex = "[0-9A-Fa-f]";
    format!("^[{WHITE_SPACE}]*({hex}{{64}}|{hex}{{2}}(:{hex}{{2}}){{31}})?[{WHITE_SPACE}]*$")
}

pub fn fingerprint_schema() -> Object {
    string(true)
        .pattern(Some(fingerprint_pattern()))
        .examples(["AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"])
        .build()
}

/// An event id: a UUID.
pub fn uuid_schema() -> Object {
    string(false)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        .build()
}

/// `schema` with an example value (for readers, and as a first request
/// for generators).
pub fn example(mut schema: Object, value: &str) -> Object {
    schema.examples = vec![value.into()];
    schema
}

/// Declares the functions `#[schema(schema_with = ...)]` names: each
/// returns a rule's schema with an example value.
macro_rules! example_schemas {
    ($($name:ident => $schema:expr, $value:literal;)+) => {
        $(
            fn $name() -> utoipa::openapi::Object {
                $crate::rules::example($schema, $value)
            }
        )+
    };
}
pub(crate) use example_schemas;

/// One of `values`.
pub fn one_of_schema<'a>(values: impl IntoIterator<Item = &'a str>) -> Object {
    string(false).enum_values(Some(values)).build()
}

/// A list of `items`, at most `max` long.
pub fn list_schema(items: Object, max: usize, nullable: bool) -> Array {
    let ty = if nullable {
        SchemaType::from_iter([Type::Array, Type::Null])
    } else {
        SchemaType::Type(Type::Array)
    };
    ArrayBuilder::new()
        .schema_type(ty)
        .items(items)
        .max_items(Some(max))
        .build()
}

/// A string of 1 to `max` characters.
pub fn nonempty_string(max: usize) -> ObjectBuilder {
    string(false).min_length(Some(1)).max_length(Some(max))
}

fn string(nullable: bool) -> ObjectBuilder {
    let ty = if nullable {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::Type(Type::String)
    };
    ObjectBuilder::new().schema_type(ty)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn regex(pattern: &str) -> Regex {
        Regex::new(pattern).unwrap()
    }

    /// Characters on either side of every boundary the rules draw.
    fn tricky_chars() -> Vec<char> {
        let mut out: Vec<char> = (0u32..=0x3100).filter_map(char::from_u32).collect();
        out.extend([
            '\u{feff}',
            '\u{fffd}',
            '\u{10000}',
            '\u{1f600}',
            '\u{10ffff}',
        ]);
        out
    }

    #[test]
    fn the_character_classes_are_rusts_own() {
        let control = regex(&format!("^[{CONTROL}]$"));
        let space = regex(&format!("^[{SPACE}]$"));
        let white = regex(&format!("^[{WHITE_SPACE}]$"));
        for c in (0u32..=0x10ffff).filter_map(char::from_u32) {
            let s = c.to_string();
            assert_eq!(control.is_match(&s), c.is_control(), "{c:?}");
            assert_eq!(
                space.is_match(&s),
                c.is_whitespace() && !c.is_control(),
                "{c:?}"
            );
            assert_eq!(white.is_match(&s), c.is_whitespace(), "{c:?}");
        }
    }

    pub(crate) fn samples() -> Vec<String> {
        let mut out = vec![
            String::new(),
            " ".into(),
            "a".into(),
            " a".into(),
            "a ".into(),
            "a b".into(),
            "\u{3000}x\u{3000}".into(),
            "x\ny".into(),
            "\u{85}".into(),
            "\u{1c}".into(),
            "é".repeat(64),
            "é".repeat(65),
            "x".repeat(200),
            "x".repeat(201),
        ];
        for c in tricky_chars() {
            out.push(c.to_string());
            out.push(format!("a{c}"));
            out.push(format!("{c}a"));
            out.push(format!("a{c}a"));
        }
        out
    }

    fn counts(s: &str, max: usize) -> bool {
        s.chars().count() <= max
    }

    #[test]
    fn text_rules_and_their_patterns_agree() {
        for rule in [Text::required(200), Text::optional(200), Text::required(3)] {
            let re = regex(&rule.pattern());
            for s in samples() {
                assert_eq!(
                    rule.accepts(&s),
                    re.is_match(&s)
                        && counts(&s, rule.max)
                        && (rule.blank == Blank::Absent || !s.is_empty()),
                    "{rule:?} {s:?}"
                );
            }
        }
    }

    #[test]
    fn label_rule_and_its_pattern_agree() {
        let rule = Label { max: 64 };
        let re = regex(&rule.pattern());
        for s in samples() {
            assert_eq!(
                rule.accepts(&s),
                re.is_match(&s) && counts(&s, rule.max) && !s.is_empty(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn slug_and_namespace_patterns_are_the_protocol_rules() {
        let slug = regex(&slug_pattern());
        let ns = regex(&namespace_pattern());
        let mut cases: Vec<String> = samples();
        cases.extend(
            [
                "alpha", "a-b", "-a", "a-", "A", "a_b", "0", "a--b", "hub-01",
            ]
            .map(String::from),
        );
        cases.push("a".repeat(63));
        cases.push("a".repeat(64));
        for s in cases {
            assert_eq!(
                slug.is_match(&s),
                protocol::naming::is_valid_slug(&s),
                "{s:?}"
            );
            let namespace = format!("hub.{s}");
            assert_eq!(ns.is_match(&namespace), is_namespace(&namespace), "{s:?}");
        }
        assert!(!ns.is_match("hubxalpha"));
    }

    #[test]
    fn every_url_the_pattern_admits_is_a_hub_url() {
        use rand::prelude::*;
        let re = regex(&url_pattern());
        let mut rng = StdRng::seed_from_u64(7);
        let alphabet: Vec<char> = "aZ09_-.:/%~".chars().collect();
        let mut admitted = 0;
        for _ in 0..200_000 {
            let len = rng.random_range(1..24);
            let tail: String = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            let scheme = if rng.random_bool(0.5) {
                "http"
            } else {
                "https"
            };
            let url = format!("{scheme}://{tail}");
            if re.is_match(&url) {
                admitted += 1;
                assert!(protocol::heartbeat::is_valid_hub_url(&url), "{url}");
                assert!(is_url(&url), "{url}");
            }
        }
        assert!(admitted > 1000, "only {admitted} generated URLs matched");
    }

    #[test]
    fn fanout_entries_are_namespaces_or_bare_slugs() {
        let re = regex(&fanout_pattern());
        for (input, stored) in [
            ("hub.beta", Some("hub.beta")),
            ("beta", Some("hub.beta")),
            ("hub-1", Some("hub.hub-1")),
            ("hub.", None),
            ("Beta", None),
            ("hub.beta.x", None),
            ("", None),
        ] {
            assert_eq!(fanout_namespace(input).as_deref(), stored, "{input:?}");
            assert_eq!(re.is_match(input), stored.is_some(), "{input:?}");
        }
    }

    #[test]
    fn urls() {
        for ok in [
            "http://alpha:9001",
            "https://fra.example:3010/realms/fra",
            "http://command_center:8000",
            "http://127.0.0.1:65535/",
            "http://localhost",
            "http://x1",
            "http://[::1]:9001",
            "https://[2001:db8::7]/hub",
            "http://[fe80:0:0:0:0:0:0:1]",
            "http://alpha:9001/x?tenant=a&b=c",
            "http://A?0",
            "http://a?",
        ] {
            assert!(is_url(ok), "{ok}");
        }
        for bad in [
            "ftp://alpha",
            "http://",
            "http://u:p@alpha",
            "http://alpha:65536",
            "http://a.1",
            "http://256.1.1.1",
            "http://1.2.3",
            "http://alpha#x",
            "http://[::1",
            "http://[:::1]",
            "http://[1:2:3:4:5:6:7:8:9]",
            "http://al pha",
            "\u{0}http://alpha",
            "HTTP://alpha",
            "http://xn--a",
        ] {
            assert!(!is_url(bad), "{bad}");
        }
        assert!(!is_url(&format!("http://a/{}", "x".repeat(MAX_URL_LEN))));
    }
}
