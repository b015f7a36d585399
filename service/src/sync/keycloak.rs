//! A small client of the Keycloak Admin REST API: the token endpoint of the
//! admin realm and the identity-provider instances of the hub realm.
//!
//! The access token is cached and refreshed before it expires, and once more
//! on a 401 (revoked or expired early). Neither the token nor the client
//! secret or password ever appears in an error or a log line.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::timeouts::StepTimeout;
use crate::config::KeycloakSettings;
use common::retry::Backoff;

/// An `IdentityProviderRepresentation`, with the fields we manage typed and
/// every other field Keycloak sends kept as is, so an update writes them back
/// unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityProvider {
    pub alias: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default)]
    pub provider_id: String,
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub trust_email: bool,
    #[serde(default)]
    pub store_token: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_broker_login_flow_alias: Option<String>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeycloakError {
    /// No answer: connection refused, DNS, timeout.
    #[error("Keycloak unreachable while trying to {op}: {detail}")]
    Unreachable { op: &'static str, detail: String },
    /// The token endpoint refused the login, or the account lacks a permission.
    #[error("Keycloak refused the service account while trying to {op}: HTTP {status}{detail}")]
    Auth {
        op: &'static str,
        status: u16,
        detail: String,
    },
    /// An HTTP error answer.
    #[error("Keycloak answered HTTP {status} to {op}{detail}")]
    Status {
        op: &'static str,
        status: u16,
        detail: String,
    },
    /// An answer we could not read.
    #[error("unexpected answer from Keycloak to {op}: {detail}")]
    Decode { op: &'static str, detail: String },
}

impl KeycloakError {
    /// Worth retrying: no answer, a 5xx, or 429.
    pub fn is_transient(&self) -> bool {
        match self {
            KeycloakError::Unreachable { .. } => true,
            KeycloakError::Status { status, .. } => *status >= 500 || *status == 429,
            KeycloakError::Auth { status, .. } => *status >= 500,
            KeycloakError::Decode { .. } => false,
        }
    }

    /// Says the target as a whole is unavailable (counts for the breaker),
    /// rather than one identity provider being refused.
    pub fn is_target_failure(&self) -> bool {
        self.is_transient() || matches!(self, KeycloakError::Auth { .. })
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            KeycloakError::Status { status, .. } | KeycloakError::Auth { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }
}

enum Login {
    ClientCredentials {
        client_id: String,
        secret: SecretString,
    },
    Password {
        client_id: String,
        username: String,
        password: SecretString,
    },
}

struct CachedToken {
    value: SecretString,
    refresh_at: Instant,
}

/// Identity providers asked for per list request.
const LIST_PAGE: usize = 500;

pub struct KeycloakClient {
    http: reqwest::Client,
    base: String,
    realm: String,
    admin_realm: String,
    login: Login,
    token: Mutex<Option<CachedToken>>,
    backoff: Backoff,
    /// Each Admin API attempt's timeout, learnt from the successful ones.
    timeout: std::sync::Arc<StepTimeout>,
}

impl std::fmt::Debug for KeycloakClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeycloakClient")
            .field("base", &self.base)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default = "default_expires_in")]
    expires_in: u64,
}

fn default_expires_in() -> u64 {
    60
}

/// A response, read whole.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl KeycloakClient {
    /// `None` when Keycloak is not configured (`base_url` unset).
    pub fn from_settings(
        settings: &KeycloakSettings,
        backoff: Backoff,
        timeout: std::sync::Arc<StepTimeout>,
    ) -> Result<Option<KeycloakClient>, reqwest::Error> {
        let Some(base) = &settings.base_url else {
            return Ok(None);
        };
        let login = match (
            &settings.client_secret,
            &settings.username,
            &settings.password,
        ) {
            (_, Some(username), Some(password)) => Login::Password {
                client_id: settings.client_id.clone(),
                username: username.clone(),
                password: password.clone(),
            },
            (Some(secret), _, _) => Login::ClientCredentials {
                client_id: settings.client_id.clone(),
                secret: secret.clone(),
            },
            // Settings validation requires one of the two.
            _ => Login::ClientCredentials {
                client_id: settings.client_id.clone(),
                secret: SecretString::from(String::new()),
            },
        };
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(5)))
            .build()?;
        Ok(Some(KeycloakClient {
            http,
            base: base.as_str().trim_end_matches('/').to_owned(),
            realm: settings.realm.clone(),
            admin_realm: settings.admin_realm.clone(),
            login,
            token: Mutex::new(None),
            backoff,
            timeout,
        }))
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Base URL, for messages (it carries no credentials: settings refuse them).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn instances_url(&self) -> String {
        format!(
            "{}/admin/realms/{}/identity-provider/instances",
            self.base,
            urlencode(&self.realm)
        )
    }

    fn instance_url(&self, alias: &str) -> String {
        format!("{}/{}", self.instances_url(), urlencode(alias))
    }

    /// A valid access token, from the cache or a fresh login.
    async fn token(&self, force: bool) -> Result<SecretString, KeycloakError> {
        let mut cached = self.token.lock().await;
        if !force {
            if let Some(t) = cached.as_ref() {
                if Instant::now() < t.refresh_at {
                    return Ok(t.value.clone());
                }
            }
        }
        let fresh = self.login().await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    async fn login(&self) -> Result<CachedToken, KeycloakError> {
        const OP: &str = "log in";
        let url = format!(
            "{}/realms/{}/protocol/openid-connect/token",
            self.base,
            urlencode(&self.admin_realm)
        );
        let form: Vec<(&str, &str)> = match &self.login {
            Login::ClientCredentials { client_id, secret } => vec![
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret.expose_secret()),
            ],
            Login::Password {
                client_id,
                username,
                password,
            } => vec![
                ("grant_type", "password"),
                ("client_id", client_id),
                ("username", username),
                ("password", password.expose_secret()),
            ],
        };
        let started = Instant::now();
        let res = self
            .http
            .post(&url)
            .form(&form)
            .send()
            .await
            .map_err(|e| unreachable(OP, &e))?;
        let status = res.status();
        let body = res.bytes().await.map_err(|e| unreachable(OP, &e))?;
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(KeycloakError::Status {
                op: OP,
                status: status.as_u16(),
                detail: excerpt(&body),
            });
        }
        if !status.is_success() {
            // The token endpoint's error body is an OAuth error code and
            // description; it never echoes the credentials.
            return Err(KeycloakError::Auth {
                op: OP,
                status: status.as_u16(),
                detail: excerpt(&body),
            });
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|e| KeycloakError::Decode {
                op: OP,
                detail: format!("token response: {e}"),
            })?;
        // Refresh a little before expiry: a fifth of the lifetime, at most 30 s
        // early, and count from when we asked, not when it arrived.
        let lifetime = Duration::from_secs(answer.expires_in);
        let margin = (lifetime / 5).min(Duration::from_secs(30));
        Ok(CachedToken {
            value: SecretString::from(answer.access_token),
            refresh_at: started + lifetime.saturating_sub(margin),
        })
    }

    /// One request with the bearer token; on 401, logs in again and retries
    /// once. Transient failures are retried with backoff.
    async fn call(
        &self,
        op: &'static str,
        method: Method,
        url: &str,
        body: Option<&IdentityProvider>,
    ) -> Result<Answer, KeycloakError> {
        self.backoff
            .retry(
                || self.call_once(op, &method, url, body),
                KeycloakError::is_transient,
            )
            .await
    }

    async fn call_once(
        &self,
        op: &'static str,
        method: &Method,
        url: &str,
        body: Option<&IdentityProvider>,
    ) -> Result<Answer, KeycloakError> {
        let mut force_login = false;
        loop {
            let token = self.token(force_login).await?;
            let mut req = self
                .http
                .request(method.clone(), url)
                .timeout(self.timeout.current())
                .bearer_auth(token.expose_secret());
            if let Some(b) = body {
                req = req.json(b);
            }
            let started = Instant::now();
            let res = req.send().await.map_err(|e| unreachable(op, &e))?;
            let status = res.status();
            let headers = res.headers().clone();
            let bytes = res.bytes().await.map_err(|e| unreachable(op, &e))?;
            // Transient: retried by `call` with the shared backoff; a 4xx is
            // the caller's to judge and never retried.
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                return Err(KeycloakError::Status {
                    op,
                    status: status.as_u16(),
                    detail: excerpt(&bytes),
                });
            }
            self.timeout.record_success(started.elapsed());
            if status == StatusCode::UNAUTHORIZED && !force_login {
                tracing::debug!(op, "Keycloak answered 401; logging in again");
                force_login = true;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(KeycloakError::Auth {
                    op,
                    status: status.as_u16(),
                    detail: excerpt(&bytes),
                });
            }
            return Ok(Answer {
                status,
                headers,
                body: bytes.to_vec(),
            });
        }
    }

    fn fail(op: &'static str, a: &Answer) -> KeycloakError {
        KeycloakError::Status {
            op,
            status: a.status.as_u16(),
            detail: excerpt(&a.body),
        }
    }

    /// Every identity provider of the hub realm. Recent Keycloak pages this
    /// list (100 by default), so it is read page by page with `first` and
    /// `max`; a server that ignores them answers everything at once, which
    /// is recognised and taken as the whole list.
    pub async fn list(&self) -> Result<Vec<IdentityProvider>, KeycloakError> {
        const OP: &str = "list identity providers";
        let mut all: Vec<IdentityProvider> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            let url = format!(
                "{}?first={}&max={LIST_PAGE}",
                self.instances_url(),
                all.len()
            );
            let a = self.call(OP, Method::GET, &url, None).await?;
            if a.status != StatusCode::OK {
                return Err(Self::fail(OP, &a));
            }
            let page: Vec<IdentityProvider> =
                serde_json::from_slice(&a.body).map_err(|e| KeycloakError::Decode {
                    op: OP,
                    detail: e.to_string(),
                })?;
            let n = page.len();
            let mut fresh = 0;
            for idp in page {
                if seen.insert(idp.alias.clone()) {
                    all.push(idp);
                    fresh += 1;
                }
            }
            // A short page is the last; so is a page that brought nothing
            // new or more than asked (paging ignored).
            if n < LIST_PAGE || fresh < n || n > LIST_PAGE {
                return Ok(all);
            }
        }
    }

    /// One identity provider, `None` if absent.
    pub async fn get(&self, alias: &str) -> Result<Option<IdentityProvider>, KeycloakError> {
        const OP: &str = "read an identity provider";
        let a = self
            .call(OP, Method::GET, &self.instance_url(alias), None)
            .await?;
        match a.status {
            StatusCode::OK => {
                serde_json::from_slice(&a.body)
                    .map(Some)
                    .map_err(|e| KeycloakError::Decode {
                        op: OP,
                        detail: e.to_string(),
                    })
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(Self::fail(OP, &a)),
        }
    }

    /// Creates an identity provider; `Err(Status 409)` if the alias exists.
    pub async fn create(&self, idp: &IdentityProvider) -> Result<(), KeycloakError> {
        const OP: &str = "create an identity provider";
        let a = self
            .call(OP, Method::POST, &self.instances_url(), Some(idp))
            .await?;
        if a.status != StatusCode::CREATED {
            return Err(Self::fail(OP, &a));
        }
        if a.headers.get(reqwest::header::LOCATION).is_none() {
            tracing::debug!(alias = %idp.alias, "Keycloak created an IdP without a Location header");
        }
        Ok(())
    }

    /// Replaces an identity provider.
    pub async fn update(&self, idp: &IdentityProvider) -> Result<(), KeycloakError> {
        const OP: &str = "update an identity provider";
        let a = self
            .call(OP, Method::PUT, &self.instance_url(&idp.alias), Some(idp))
            .await?;
        match a.status {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
            _ => Err(Self::fail(OP, &a)),
        }
    }

    /// Deletes an identity provider; `false` if it was already gone.
    pub async fn delete(&self, alias: &str) -> Result<bool, KeycloakError> {
        const OP: &str = "delete an identity provider";
        let a = self
            .call(OP, Method::DELETE, &self.instance_url(alias), None)
            .await?;
        match a.status {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(Self::fail(OP, &a)),
        }
    }
}

fn unreachable(op: &'static str, e: &reqwest::Error) -> KeycloakError {
    // reqwest's message names the URL (no credentials in it) and the cause.
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_timeout() {
        detail = format!("timed out ({detail})");
    }
    KeycloakError::Unreachable { op, detail }
}

/// The start of an error body, for messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let cut: String = text.chars().take(200).collect();
    format!(": {cut}")
}

fn urlencode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
