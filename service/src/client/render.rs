//! Printing: the server's JSON as it came (pretty) or as YAML, or tables
//! for people, with times as "12s ago".

use std::io::Write;

use chrono::{DateTime, Utc};
use comfy_table::{presets, ContentArrangement, Table};
use serde_json::Value;

use super::error::ClientError;
use super::Format;

/// Writes `text` to standard output.
pub fn out(text: &str) -> Result<(), ClientError> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// A JSON document as `format` asks for (JSON or YAML), ending in a newline.
pub fn document(format: Format, doc: &Value) -> Result<String, ClientError> {
    let mut text = match format {
        Format::Yaml => serde_saphyr::to_string(doc).map_err(|e| ClientError::BadAnswer {
            server: String::new(),
            detail: format!("cannot write YAML: {e}"),
        })?,
        Format::Json | Format::Table => serde_json::to_string_pretty(doc).unwrap_or_default(),
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Prints `doc` as JSON or YAML.
pub fn print_document(format: Format, doc: &Value) -> Result<(), ClientError> {
    out(&document(format, doc)?)
}

/// A borderless table with a header, as `kubectl get` prints.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().map(|h| h.to_uppercase()));
    t
}

/// Prints a table: columns two spaces apart, flush left, no trailing
/// blanks.
pub fn print_table(mut t: Table) -> Result<(), ClientError> {
    for column in t.column_iter_mut() {
        column.set_padding((0, 2));
    }
    let mut text = String::new();
    for line in t.lines() {
        text.push_str(line.trim_end());
        text.push('\n');
    }
    out(&text)
}

/// `label: value` lines, labels aligned.
pub fn fields(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 1;
    let mut text = String::new();
    for (label, value) in rows {
        text.push_str(&format!("{:<width$} {value}\n", format!("{label}:")));
    }
    text
}

/// The string at `key`, or "".
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The string at `key`, or `none`.
pub fn or<'a>(v: &'a Value, key: &str, none: &'a str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .unwrap_or(none)
}

/// A list of strings at `key`, comma-separated.
pub fn list(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

pub fn time(v: &Value, key: &str) -> Option<DateTime<Utc>> {
    v.get(key)
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// "12s ago", "5m ago", "3h ago", "4d ago"; `never` when there is no time.
pub fn ago(at: Option<DateTime<Utc>>, now: DateTime<Utc>, never: &str) -> String {
    match at {
        Some(at) => format!("{} ago", span((now - at).num_seconds().max(0))),
        None => never.to_owned(),
    }
}

/// "45s", "12m", "3h5m", "2d4h": the largest two units, rounded down.
pub fn span(secs: i64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match () {
        _ if d > 0 && h > 0 => format!("{d}d{h}h"),
        _ if d > 0 => format!("{d}d"),
        _ if h > 0 && m > 0 => format!("{h}h{m}m"),
        _ if h > 0 => format!("{h}h"),
        _ if m > 0 => format!("{m}m"),
        _ => format!("{s}s"),
    }
}

/// `status (since …)`: a record's status and how long it has held.
pub fn status_since(v: &Value, now: DateTime<Utc>) -> String {
    let since = ago(time(v, "status_changed_at"), now, "-");
    format!("{} (since {since})", s(v, "status"))
}

/// A time as people read it in a table: `2026-01-15 10:08:02Z`.
pub fn short_time(at: Option<DateTime<Utc>>) -> String {
    at.map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// What is left of a maintenance window: `1h59m`.
pub fn time_left(window: &Value, now: DateTime<Utc>) -> String {
    time(window, "until")
        .map(|until| span((until - now).num_seconds().max(0)))
        .unwrap_or_default()
}

/// A hub's maintenance window in a few words: `1h59m left: kernel upgrade`.
pub fn maintenance(project: &Value, now: DateTime<Utc>) -> String {
    match project.get("maintenance").filter(|m| !m.is_null()) {
        Some(window) => format!(
            "{} left: {}",
            time_left(window, now),
            clip(s(window, "reason"), 40)
        ),
        None => String::new(),
    }
}

/// `text` cut to `max` characters, with an ellipsis when cut.
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_at_a_glance() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(12), "12s");
        assert_eq!(span(60), "1m");
        assert_eq!(span(3 * 3600 + 5 * 60 + 9), "3h5m");
        assert_eq!(span(7200), "2h");
        assert_eq!(span(2 * 86_400 + 4 * 3600 + 1), "2d4h");
    }

    #[test]
    fn a_time_in_the_future_is_not_negative() {
        let now = Utc::now();
        assert_eq!(
            ago(Some(now + chrono::Duration::seconds(3)), now, "-"),
            "0s ago"
        );
        assert_eq!(ago(None, now, "never"), "never");
    }

    #[test]
    fn yaml_is_the_same_document() {
        let doc = serde_json::json!({"slug": "a", "tags": ["x", "y"], "maintenance": null, "n": 3});
        let yaml = document(Format::Yaml, &doc).unwrap_or_else(|e| panic!("{e}"));
        let back: Value = serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, doc);
    }
}
