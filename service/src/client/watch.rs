//! `federation watch`: the server-sent events of `GET /api/fed/watch`, one
//! line per event as it happens. A stream that ends (the server restarting)
//! is resumed after the last event seen, without gap or repeat.

use std::time::Duration;

use serde_json::Value;

use super::render::{self, s, short_time, time};
use super::{Api, ClientError, Format, WatchArgs};

const WATCH: [&str; 3] = ["api", "fed", "watch"];
/// The longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

pub async fn run(api: &Api, out: Format, args: WatchArgs) -> Result<(), ClientError> {
    let mut last = args.after;
    let mut connected = false;
    let mut backoff = Duration::from_millis(500);
    loop {
        match api.stream(&WATCH, last.as_deref()).await {
            Ok(res) => {
                connected = true;
                backoff = Duration::from_millis(500);
                match follow(api, res, out, &mut last).await {
                    Err(ClientError::Output(e)) => return Err(ClientError::Output(e)),
                    Err(e) => eprintln!("warning: {e}; reconnecting"),
                    Ok(()) => eprintln!("warning: the server ended the stream; reconnecting"),
                }
            }
            // A first connection that fails says why and stops; so does a
            // refusal a retry would not change (a key, a pruned event id).
            Err(e) if !connected || !retry_helps(&e) => return Err(e),
            Err(e) => eprintln!("warning: {e}; retrying in {}s", backoff.as_secs_f32()),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn retry_helps(e: &ClientError) -> bool {
    match e {
        ClientError::Unreachable { .. } | ClientError::BadAnswer { .. } => true,
        ClientError::Status { status, .. } => *status >= 500,
        _ => false,
    }
}

/// Prints each event of an open stream until it ends; `last` follows the
/// ids seen.
async fn follow(
    api: &Api,
    mut res: reqwest::Response,
    out: Format,
    last: &mut Option<String>,
) -> Result<(), ClientError> {
    let mut parser = SseParser::default();
    while let Some(chunk) = res.chunk().await.map_err(|e| api.unreachable(&e))? {
        for message in parser.feed(&chunk) {
            render::out(&line(out, &message.data)?)?;
            if let Some(id) = message.id {
                *last = Some(id);
            }
        }
    }
    Ok(())
}

/// What one event prints: its JSON on one line, a YAML document, or a
/// line for people.
pub fn line(out: Format, data: &str) -> Result<String, ClientError> {
    let Ok(event) = serde_json::from_str::<Value>(data) else {
        return Ok(format!("{data}\n"));
    };
    Ok(match out {
        // As the server sent it (its field order), when it is one line.
        Format::Json if !data.contains('\n') => format!("{data}\n"),
        Format::Json => format!("{}\n", serde_json::to_string(&event).unwrap_or_default()),
        Format::Yaml => format!("---\n{}", render::document(Format::Yaml, &event)?),
        Format::Table => format!("{}\n", summary(&event).trim_end()),
    })
}

/// `2026-01-15 10:08:02Z  project.status  fra  online → offline (sweeper)`
pub fn summary(event: &Value) -> String {
    let kind = s(event, "type");
    let kind = kind.strip_prefix("federation.").unwrap_or(kind);
    let d = &event["data"];
    let what = match kind {
        "project.status" => format!("{} → {} ({})", s(d, "from"), s(d, "to"), s(d, "cause")),
        "project.maintenance" if s(d, "change") == "started" => format!(
            "maintenance until {} by {}: {}",
            short_time(time(d, "until")),
            s(d, "by"),
            s(d, "reason")
        ),
        "project.maintenance" => format!("maintenance ended by {}", s(d, "ended_by")),
        "project.registered" | "project.updated" | "project.deleted" => {
            format!("{} ({})", s(d, "name"), s(d, "status"))
        }
        k if k.starts_with("spoke.") => {
            let t = &d["transition"];
            format!(
                "{} {} → {}: {}",
                s(d, "instance_code"),
                render::or(t, "from_status", "-"),
                s(t, "to_status"),
                s(t, "reason")
            )
        }
        _ => String::new(),
    };
    format!(
        "{}  {:<19}  {:<18}  {what}",
        short_time(time(event, "time")),
        kind,
        s(event, "subject"),
    )
}

/// One message of an event stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    pub id: Option<String>,
    pub data: String,
}

/// Reads `text/event-stream` bytes as they arrive (the WHATWG rules the
/// server's messages need: `id`, `data` over one or more lines, comments
/// and other fields skipped, a blank line ends a message).
#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
    id: Option<String>,
    data: Option<String>,
}

impl SseParser {
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Message> {
        self.pending.extend_from_slice(chunk);
        let mut messages = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&raw[..end]);
            let text = text.strip_suffix('\r').unwrap_or(&text);
            if text.is_empty() {
                if let Some(data) = self.data.take() {
                    messages.push(Message {
                        id: self.id.take(),
                        data,
                    });
                }
                self.id = None;
                continue;
            }
            if text.starts_with(':') {
                continue;
            }
            let (field, value) = text.split_once(':').unwrap_or((text, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "data" => match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => self.data = Some(value.to_owned()),
                },
                "id" => self.id = Some(value.to_owned()),
                _ => {}
            }
        }
        messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_anywhere_are_put_back_together() {
        let stream = b": keep-alive\n\nid: 1\ndata: {\"a\":\ndata: 1}\n\nid: 2\r\ndata: x\r\n\r\n";
        for cut in 0..stream.len() {
            let mut p = SseParser::default();
            let mut got = p.feed(&stream[..cut]);
            got.extend(p.feed(&stream[cut..]));
            assert_eq!(
                got,
                vec![
                    Message {
                        id: Some("1".into()),
                        data: "{\"a\":\n1}".into()
                    },
                    Message {
                        id: Some("2".into()),
                        data: "x".into()
                    },
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_status_change_reads_as_one_line() {
        let event = serde_json::json!({
            "type": "federation.project.status", "subject": "fra",
            "time": "2026-01-15T10:08:02.000417Z",
            "data": {"slug": "fra", "from": "online", "to": "offline", "cause": "sweeper"}
        });
        let text = line(Format::Table, &event.to_string()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            text,
            "2026-01-15 10:08:02Z  project.status       fra                 online → offline (sweeper)\n"
        );
        let json = line(Format::Json, &event.to_string()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json.lines().count(), 1);
        assert_eq!(serde_json::from_str::<Value>(&json).ok(), Some(event));
    }
}
