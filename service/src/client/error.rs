//! The client's one error type and the exit status each error gives.

use std::fmt::Write as _;

use serde_json::Value;

/// Exit statuses of the client commands (documented in docs/cli.md and
/// `federation --help`). Scripts may rely on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Anything not named below (e.g. 410 from the watch stream).
    Failure = 1,
    /// A wrong command line, or a request the server found invalid (400, 422).
    Usage = 2,
    /// No key, a wrong key, or a key without the role (401, 403).
    Auth = 3,
    /// No such project or spoke (404).
    NotFound = 4,
    /// Not allowed in the resource's current state (409).
    Conflict = 5,
    /// The server failed (5xx), answered something unreadable, or could not
    /// be reached.
    Server = 6,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The command line cannot make a request (a bad --server URL...).
    #[error("{0}")]
    Usage(String),
    /// The server answered an error status; its problem document when it
    /// sent one.
    #[error("{status} {}", problem.title)]
    Status { status: u16, problem: Problem },
    /// Found nothing on the client's side (no live spoke of a code).
    #[error("{0}")]
    NotFound(String),
    /// No answer: connection refused, DNS, timeout, a stream cut.
    #[error("cannot reach the service at {server}: {cause}")]
    Unreachable { server: String, cause: String },
    /// An answer the client cannot read.
    #[error("unexpected answer from {server}: {detail}")]
    BadAnswer { server: String, detail: String },
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// An RFC 9457 problem document, as much of it as the server sent.
#[derive(Debug, Default)]
pub struct Problem {
    pub title: String,
    pub detail: Option<String>,
    /// `field`, `message` of a validation problem.
    pub errors: Vec<(String, String)>,
    /// For a conflict: the resource's status now.
    pub current_status: Option<String>,
}

impl Problem {
    /// Reads a problem document (or any JSON error body); the status's
    /// reason phrase when the body says nothing.
    pub fn from_body(status: u16, body: &[u8]) -> Problem {
        let reason = reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        let Ok(doc) = serde_json::from_slice::<Value>(body) else {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            return Problem {
                title: reason.to_owned(),
                detail: (!text.is_empty()).then(|| clip(text, 500)),
                ..Problem::default()
            };
        };
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let errors = doc
            .get("errors")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|e| {
                        (
                            text(e, "field").unwrap_or_default(),
                            text(e, "message").unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Problem {
            title: text(&doc, "title").unwrap_or_else(|| reason.to_owned()),
            detail: text(&doc, "detail").or_else(|| text(&doc, "error")),
            errors,
            current_status: doc.get("current").and_then(|c| text(c, "status")),
        }
    }
}

fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

impl ClientError {
    pub fn exit(&self) -> Exit {
        match self {
            ClientError::Usage(_) => Exit::Usage,
            ClientError::NotFound(_) => Exit::NotFound,
            ClientError::Unreachable { .. } | ClientError::BadAnswer { .. } => Exit::Server,
            ClientError::Output(_) => Exit::Failure,
            ClientError::Status { status, .. } => match status {
                400 | 422 => Exit::Usage,
                401 | 403 => Exit::Auth,
                404 => Exit::NotFound,
                409 => Exit::Conflict,
                500..=599 => Exit::Server,
                _ => Exit::Failure,
            },
        }
    }

    /// What the user reads on standard error: one `error:` line, then the
    /// field errors and a hint, each on its own line.
    pub fn report(&self) -> String {
        let mut out = String::new();
        match self {
            ClientError::Status { status, problem } => {
                let _ = write!(out, "error: {} ({status})", problem.title);
                if let Some(detail) = &problem.detail {
                    let _ = write!(out, ": {detail}");
                }
                out.push('\n');
                for (field, message) in &problem.errors {
                    let _ = writeln!(out, "  {field}: {message}");
                }
                if let Some(now) = &problem.current_status {
                    let _ = writeln!(out, "  current status: {now}");
                }
                match status {
                    401 => out.push_str(
                        "hint: pass an API key with --api-key or FEDERATION_API_KEY\n",
                    ),
                    403 => out.push_str(
                        "hint: the key is not known to this server, or lacks the role (an admin key may do everything)\n",
                    ),
                    _ => {}
                }
            }
            ClientError::Unreachable { .. } => {
                let _ = writeln!(out, "error: {self}");
                out.push_str(
                    "hint: is it running? Set the address with --server or FEDERATION_URL\n",
                );
            }
            other => {
                let _ = writeln!(out, "error: {other}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_reads_title_detail_and_every_field() {
        let body = br#"{"type":"urn:federation:problem:validation","title":"Unprocessable Entity","status":422,
            "detail":"2 problems","errors":[{"field":"reason","message":"is required"},{"field":"x","message":"is not a known field"}]}"#;
        let e = ClientError::Status {
            status: 422,
            problem: Problem::from_body(422, body),
        };
        assert_eq!(e.exit(), Exit::Usage);
        assert_eq!(
            e.report(),
            "error: Unprocessable Entity (422): 2 problems\n  reason: is required\n  x: is not a known field\n"
        );
    }

    #[test]
    fn a_body_that_is_no_problem_still_reads() {
        let p = Problem::from_body(502, b"Bad gateway from the proxy");
        assert_eq!(p.title, "Bad Gateway");
        assert_eq!(p.detail.as_deref(), Some("Bad gateway from the proxy"));
        let p = Problem::from_body(503, b"");
        assert_eq!((p.title.as_str(), p.detail), ("Service Unavailable", None));
    }

    #[test]
    fn statuses_map_to_distinct_exits() {
        let exit = |status| {
            ClientError::Status {
                status,
                problem: Problem::default(),
            }
            .exit()
        };
        assert_eq!(exit(401), Exit::Auth);
        assert_eq!(exit(403), Exit::Auth);
        assert_eq!(exit(404), Exit::NotFound);
        assert_eq!(exit(409), Exit::Conflict);
        assert_eq!(exit(503), Exit::Server);
        assert_eq!(exit(410), Exit::Failure);
    }
}
