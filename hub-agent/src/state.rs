//! The agent's identity: a hub token and NATS credentials, obtained once by
//! exchanging a join token (`POST /api/fed/enroll`) and kept in the state
//! directory (0700, files 0600), then refreshed before they expire
//! (`POST /api/fed/projects/{slug}/credentials/refresh`). A join token is
//! never logged; neither is anything read from the state directory.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::AgentSettings;

/// The hub's REST token, sent as `X-API-Key`.
pub const TOKEN: &str = "token";
/// The hub's NATS `.creds` (absent when the service is no NATS authority).
pub const CREDS: &str = "hub.creds";
/// When the token and the creds expire (RFC 3339); its modification time
/// is when they were received.
pub const EXPIRES: &str = "expires_at";

/// What the agent holds.
pub struct Identity {
    pub token: SecretString,
    /// The `.creds` file in the state directory, if the hub has one.
    pub creds: Option<PathBuf>,
    pub expires_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
}

impl Identity {
    /// When to refresh: once two thirds of the lifetime have passed.
    pub fn refresh_due(&self) -> DateTime<Utc> {
        let lifetime = self.expires_at - self.received_at;
        self.received_at + lifetime * 2 / 3
    }
}

/// The body of `POST /api/fed/enroll` (201) and of a refresh (200).
#[derive(Deserialize)]
struct Answer {
    token: Option<SecretString>,
    nats_creds: Option<SecretString>,
    expires_at: DateTime<Utc>,
}

/// The identity to use: the one in the state directory, else one obtained
/// with the join token; `None` without either (shared agent key), or when
/// shutdown came first.
pub async fn obtain(
    settings: &AgentSettings,
    http: &reqwest::Client,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Identity>> {
    let dir = &settings.hub.state_dir;
    if let Some(held) = load(dir)? {
        if settings.hub.join_token.is_some() || settings.hub.join_token_file.is_some() {
            tracing::info!(state_dir = %dir.display(), "the state directory holds a hub token; the join token is ignored");
        } else {
            tracing::info!(state_dir = %dir.display(), "using the hub token in the state directory");
        }
        return Ok(Some(held));
    }
    let join = match (&settings.hub.join_token, &settings.hub.join_token_file) {
        (Some(token), _) => Some(token.clone()),
        (None, Some(file)) => Some(read_join_token(file)?),
        (None, None) => None,
    };
    let (Some(join), Some(base)) = (join, &settings.catalog.url) else {
        return Ok(None);
    };
    prepare_dir(dir)?;
    let url = format!("{}/api/fed/enroll", base.trim_end_matches('/'));
    let body = serde_json::json!({ "join_token": join.expose_secret() });
    let mut backoff = ENROLL_RETRY.schedule();
    for attempt in 1u32.. {
        let delay = backoff.next_delay();
        match http.post(&url).json(&body).send().await {
            Ok(r) if r.status() == reqwest::StatusCode::CREATED => {
                let answer: Answer = r.json().await.context("reading the enrollment answer")?;
                let token = answer.token.context("the enrollment answer has no token")?;
                save(
                    dir,
                    Some(&token),
                    answer.nats_creds.as_ref(),
                    answer.expires_at,
                )?;
                tracing::info!(state_dir = %dir.display(), nats = answer.nats_creds.is_some(), expires_at = %answer.expires_at, "enrolled with the join token");
                return load(dir)?
                    .context("the state directory lost what was just written")
                    .map(Some);
            }
            Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                let status = r.status().as_u16();
                let detail = problem_detail(r).await;
                bail!("the catalog refused the join token ({status}: {detail}); ask an admin for a new one (POST /api/fed/projects/{{slug}}/enrollments)");
            }
            Ok(r) => {
                tracing::warn!(
                    status = r.status().as_u16(),
                    attempt,
                    retry_in_s = delay.as_secs(),
                    "enrollment failed; retrying"
                )
            }
            Err(e) => {
                tracing::warn!(error = %e.without_url(), attempt, retry_in_s = delay.as_secs(), "catalog unreachable for enrollment; retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return Ok(None),
        }
    }
    Ok(None)
}

/// The join token in `file` (`join_token_file`), trimmed. Its contents
/// never reach an error message.
fn read_join_token(file: &Path) -> anyhow::Result<SecretString> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the join token file {}", file.display()))?;
    let token = SecretString::from(text.trim().to_owned());
    if token.expose_secret().is_empty() {
        bail!(
            "the join token file {} is empty; ask an admin for a join token (POST /api/fed/projects/{{slug}}/enrollments)",
            file.display()
        );
    }
    Ok(token)
}

const ENROLL_RETRY: common::retry::Backoff =
    common::retry::Backoff::new(Duration::from_secs(1), Duration::from_secs(30));

async fn problem_detail(r: reqwest::Response) -> String {
    r.json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// New NATS credentials and expiry for the same token.
pub async fn refresh(
    settings: &AgentSettings,
    http: &reqwest::Client,
    held: &Identity,
) -> anyhow::Result<Identity> {
    let base = settings
        .catalog
        .url
        .as_deref()
        .context("refreshing needs catalog.url")?;
    let url = format!(
        "{}/api/fed/projects/{}/credentials/refresh",
        base.trim_end_matches('/'),
        settings.hub.slug
    );
    let r = http
        .post(&url)
        .header("X-API-Key", held.token.expose_secret())
        .send()
        .await
        .map_err(|e| e.without_url())
        .context("catalog unreachable")?;
    if r.status() != reqwest::StatusCode::OK {
        let status = r.status().as_u16();
        bail!("refused ({status}: {})", problem_detail(r).await);
    }
    let answer: Answer = r.json().await.context("reading the refresh answer")?;
    let dir = &settings.hub.state_dir;
    save(dir, None, answer.nats_creds.as_ref(), answer.expires_at)?;
    load(dir)?.context("the state directory lost what was just written")
}

/// What the state directory holds, if it holds a token.
pub fn load(dir: &Path) -> anyhow::Result<Option<Identity>> {
    let token_path = dir.join(TOKEN);
    let token = match std::fs::read_to_string(&token_path) {
        Ok(t) => SecretString::from(t.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", token_path.display())),
    };
    let expires_path = dir.join(EXPIRES);
    let expires_at: DateTime<Utc> = std::fs::read_to_string(&expires_path)
        .with_context(|| format!("reading {}", expires_path.display()))?
        .trim()
        .parse()
        .with_context(|| format!("{} is not an RFC 3339 time", expires_path.display()))?;
    let received_at: DateTime<Utc> = std::fs::metadata(&expires_path)?
        .modified()
        .unwrap_or_else(|_| SystemTime::now())
        .into();
    let creds = dir.join(CREDS);
    Ok(Some(Identity {
        token,
        creds: creds.is_file().then_some(creds),
        expires_at,
        received_at,
    }))
}

/// Creates the state directory (0700) if it is missing.
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the state directory {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private (0700)", dir.display()))?;
    Ok(())
}

/// Writes what was received; the token last, so a token in the directory
/// means the rest is there too.
fn save(
    dir: &Path,
    token: Option<&SecretString>,
    creds: Option<&SecretString>,
    expires_at: DateTime<Utc>,
) -> anyhow::Result<()> {
    if let Some(creds) = creds {
        write_private(&dir.join(CREDS), creds.expose_secret().as_bytes())?;
    }
    write_private(&dir.join(EXPIRES), expires_at.to_rfc3339().as_bytes())?;
    if let Some(token) = token {
        write_private(&dir.join(TOKEN), token.expose_secret().as_bytes())?;
    }
    Ok(())
}

/// Replaces `path` atomically with a file only its owner may read (0600).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_token_file_is_read_trimmed_and_refused_when_empty_or_missing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("join-token");
        std::fs::write(&file, "fedjoin_abc\n").unwrap();
        assert_eq!(
            read_join_token(&file).unwrap().expose_secret(),
            "fedjoin_abc"
        );
        std::fs::write(&file, " \n").unwrap();
        let e = format!("{:#}", read_join_token(&file).unwrap_err());
        assert!(e.contains("is empty"), "{e}");
        let e = format!(
            "{:#}",
            read_join_token(&dir.path().join("none")).unwrap_err()
        );
        assert!(e.contains("reading the join token file"), "{e}");
    }
}
