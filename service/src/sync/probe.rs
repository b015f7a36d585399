//! `IdpReachable`: the hub looks at a spoke's IdP the way its Keycloak will.
//! It fetches the OIDC discovery document from where the hub reaches the
//! spoke (`<internal issuer>/.well-known/openid-configuration`), checks that
//! it names the registered public issuer (what the spoke's tokens carry),
//! then fetches the JWKS the managed IdP is configured with. Each request
//! has the adaptive timeout of the `idp_probe` step ([`StepTimeout`]).

use serde::Deserialize;

use super::idp;
use super::registry::Spoke;
use super::timeouts::StepTimeout;
use crate::conditions::{reasons, ConditionType, Observed};
use crate::config::SyncSettings;

const TYPE: ConditionType = ConditionType::IdpReachable;

#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Jwks {
    keys: Vec<serde_json::Value>,
}

/// The discovery document's URL for `spoke`.
pub fn discovery_url(spoke: &Spoke, settings: &SyncSettings) -> String {
    let internal = idp::issuers(spoke, settings).internal;
    format!(
        "{}/.well-known/openid-configuration",
        internal.trim_end_matches('/')
    )
}

/// Probes `spoke`'s IdP once; the `IdpReachable` condition it supports.
pub async fn probe(
    http: &reqwest::Client,
    spoke: &Spoke,
    settings: &SyncSettings,
    timeout: &StepTimeout,
) -> Observed {
    let url = discovery_url(spoke, settings);
    let doc: Discovery = match get_json(http, &url, timeout).await {
        Ok(doc) => doc,
        Err(GetError::Unreachable(e)) => {
            return Observed::is_false(TYPE, reasons::DISCOVERY_UNREACHABLE, e)
        }
        Err(GetError::Invalid(e)) => {
            return Observed::is_false(TYPE, reasons::DISCOVERY_INVALID, e)
        }
    };
    let want = idp::issuers(spoke, settings).public;
    match doc.issuer {
        Some(issuer) if issuer == want => {}
        Some(issuer) => {
            return Observed::is_false(
                TYPE,
                reasons::ISSUER_MISMATCH,
                format!("{url} names issuer {issuer:?}; the registry says {want:?}"),
            )
        }
        None => {
            return Observed::is_false(
                TYPE,
                reasons::DISCOVERY_INVALID,
                format!("{url} has no issuer"),
            )
        }
    }
    let desired = idp::desired(spoke, settings);
    let jwks_url = desired.config.get("jwksUrl").cloned().unwrap_or_default();
    match get_json::<Jwks>(http, &jwks_url, timeout).await {
        Ok(jwks) => Observed::new(
            TYPE,
            crate::conditions::ConditionStatus::True,
            reasons::DISCOVERED,
            format!("issuer {want}; JWKS has {} key(s)", jwks.keys.len()),
        ),
        Err(GetError::Unreachable(e) | GetError::Invalid(e)) => {
            Observed::is_false(TYPE, reasons::JWKS_UNREACHABLE, e)
        }
    }
}

enum GetError {
    /// No answer, or not a 2xx.
    Unreachable(String),
    /// An answer that is not the JSON expected.
    Invalid(String),
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    timeout: &StepTimeout,
) -> Result<T, GetError> {
    let limit = timeout.current();
    let attempt = async {
        let res = http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| GetError::Unreachable(format!("GET {url}: {}", without_url(e))))?;
        let status = res.status();
        if !status.is_success() {
            return Err(GetError::Unreachable(format!("GET {url}: HTTP {status}")));
        }
        res.json::<T>().await.map_err(|e| {
            GetError::Invalid(format!(
                "GET {url}: not the expected JSON: {}",
                without_url(e)
            ))
        })
    };
    timeout.run(attempt).await.unwrap_or_else(|| {
        Err(GetError::Unreachable(format!(
            "GET {url}: timed out after {} ms",
            limit.as_millis()
        )))
    })
}

/// reqwest's error text without the URL it repeats.
fn without_url(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    e.without_url().to_string()
}
