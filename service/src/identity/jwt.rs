//! NATS JWTs (the v2 claim layout nats-server 2.9 reads), encoded here:
//! a header `{"typ":"JWT","alg":"ed25519-nkey"}`, the claims as JSON, both
//! base64url without padding, and an ed25519 signature by the issuer's
//! NKey over `header.claims`. `jti` is the base32 SHA-256 of the claims
//! written without it.
//!
//! Only what the control plane issues is modelled: an operator with signing
//! keys and a system account, accounts with signing keys, JetStream limits
//! and revocations, and users with publish/subscribe permissions.

use std::collections::BTreeMap;

use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
use nkeys::KeyPair;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const HEADER: &str = r#"{"typ":"JWT","alg":"ed25519-nkey"}"#;

/// The registered claims every NATS JWT carries, with the NATS part.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims<N> {
    #[serde(default)]
    pub jti: String,
    pub iat: i64,
    pub iss: String,
    pub sub: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    pub nats: N,
}

/// `nats` of an operator JWT.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Operator {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub system_account: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u8,
}

/// Account limits; -1 is unlimited. JetStream is enabled for the account
/// when a storage limit is not 0.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountLimits {
    pub subs: i64,
    pub data: i64,
    pub payload: i64,
    pub imports: i64,
    pub exports: i64,
    pub wildcards: bool,
    pub conn: i64,
    pub leaf: i64,
    #[serde(default)]
    pub mem_storage: i64,
    #[serde(default)]
    pub disk_storage: i64,
    #[serde(default)]
    pub streams: i64,
    #[serde(default)]
    pub consumer: i64,
}

impl AccountLimits {
    /// No limit, JetStream off.
    pub fn unlimited() -> AccountLimits {
        AccountLimits {
            subs: -1,
            data: -1,
            payload: -1,
            imports: -1,
            exports: -1,
            wildcards: true,
            conn: -1,
            leaf: -1,
            mem_storage: 0,
            disk_storage: 0,
            streams: 0,
            consumer: 0,
        }
    }

    /// No limit, JetStream on without limits.
    pub fn unlimited_with_jetstream() -> AccountLimits {
        AccountLimits {
            mem_storage: -1,
            disk_storage: -1,
            streams: -1,
            consumer: -1,
            ..Self::unlimited()
        }
    }
}

/// `nats` of an account JWT.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    pub limits: AccountLimits,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<String>,
    /// User public key → unix time: that user's JWTs issued at or before
    /// it are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revocations: BTreeMap<String, i64>,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u8,
}

/// Subjects allowed and denied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

impl Permission {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// `nats` of a user JWT.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    #[serde(rename = "pub", default, skip_serializing_if = "Permission::is_empty")]
    pub publish: Permission,
    #[serde(rename = "sub", default, skip_serializing_if = "Permission::is_empty")]
    pub subscribe: Permission,
    pub subs: i64,
    pub data: i64,
    pub payload: i64,
    /// The account, when the JWT is signed by one of its signing keys.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer_account: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u8,
}

impl Operator {
    pub fn new(signing_keys: Vec<String>, system_account: String) -> Operator {
        Operator {
            signing_keys,
            system_account,
            kind: "operator".into(),
            version: 2,
        }
    }
}

impl Account {
    pub fn new(limits: AccountLimits, signing_keys: Vec<String>) -> Account {
        Account {
            limits,
            signing_keys,
            revocations: BTreeMap::new(),
            kind: "account".into(),
            version: 2,
        }
    }
}

impl User {
    /// A user without limits, with the given permissions, issued by a
    /// signing key of `issuer_account`.
    pub fn new(publish: Permission, subscribe: Permission, issuer_account: String) -> User {
        User {
            publish,
            subscribe,
            subs: -1,
            data: -1,
            payload: -1,
            issuer_account,
            kind: "user".into(),
            version: 2,
        }
    }
}

/// Why a JWT could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("signing failed: {0}")]
    Sign(String),
    #[error("malformed JWT: {0}")]
    Malformed(&'static str),
    #[error("JWT signature does not verify with its issuer")]
    BadSignature,
}

/// Signs `claims` (setting `iss` to the signer and `jti`) and encodes them.
pub fn encode<N: Serialize>(mut claims: Claims<N>, signer: &KeyPair) -> Result<String, JwtError> {
    claims.iss = signer.public_key();
    claims.jti = String::new();
    let unidentified = serde_json::to_vec(&claims).map_err(|e| JwtError::Sign(e.to_string()))?;
    claims.jti = BASE32_NOPAD.encode(&Sha256::digest(&unidentified));
    let body = serde_json::to_vec(&claims).map_err(|e| JwtError::Sign(e.to_string()))?;
    let signed = format!(
        "{}.{}",
        BASE64URL_NOPAD.encode(HEADER.as_bytes()),
        BASE64URL_NOPAD.encode(&body)
    );
    let signature = signer
        .sign(signed.as_bytes())
        .map_err(|e| JwtError::Sign(e.to_string()))?;
    Ok(format!("{signed}.{}", BASE64URL_NOPAD.encode(&signature)))
}

/// Decodes a JWT and checks that its issuer (`iss`) signed it. Whether
/// that issuer is trusted is the caller's question.
pub fn decode<N: for<'de> Deserialize<'de>>(jwt: &str) -> Result<Claims<N>, JwtError> {
    let mut parts = jwt.trim().split('.');
    let (Some(header), Some(body), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("not three dot-separated parts"));
    };
    let header_json = BASE64URL_NOPAD
        .decode(header.as_bytes())
        .map_err(|_| JwtError::Malformed("header is not base64url"))?;
    let header_value: serde_json::Value = serde_json::from_slice(&header_json)
        .map_err(|_| JwtError::Malformed("header is not JSON"))?;
    if header_value.get("alg").and_then(|a| a.as_str()) != Some("ed25519-nkey") {
        return Err(JwtError::Malformed("alg is not ed25519-nkey"));
    }
    let body_json = BASE64URL_NOPAD
        .decode(body.as_bytes())
        .map_err(|_| JwtError::Malformed("claims are not base64url"))?;
    let claims: Claims<N> = serde_json::from_slice(&body_json)
        .map_err(|_| JwtError::Malformed("claims do not have the expected layout"))?;
    let signature = BASE64URL_NOPAD
        .decode(signature.as_bytes())
        .map_err(|_| JwtError::Malformed("signature is not base64url"))?;
    let issuer = KeyPair::from_public_key(&claims.iss)
        .map_err(|_| JwtError::Malformed("iss is not a public NKey"))?;
    issuer
        .verify(format!("{header}.{body}").as_bytes(), &signature)
        .map_err(|_| JwtError::BadSignature)?;
    Ok(claims)
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::new_claims;

    #[test]
    fn a_signed_user_jwt_decodes_and_verifies() {
        let account = KeyPair::new_account();
        let signer = KeyPair::new_account();
        let user = KeyPair::new_user();
        let nats = User::new(
            Permission {
                allow: vec!["hub.presence.alpha".into()],
                deny: vec![],
            },
            Permission {
                allow: vec![],
                deny: vec![">".into()],
            },
            account.public_key(),
        );
        let claims = new_claims(&user, "alpha", Some(now() + 60), nats);
        let jwt = encode(claims, &signer).expect("signed");
        let back: Claims<User> = decode(&jwt).expect("decoded");
        assert_eq!(back.iss, signer.public_key());
        assert_eq!(back.sub, user.public_key());
        assert_eq!(back.nats.issuer_account, account.public_key());
        assert_eq!(back.nats.publish.allow, vec!["hub.presence.alpha"]);
        assert_eq!(back.jti.len(), 52, "base32 of 32 bytes");
        let value: serde_json::Value = serde_json::from_slice(
            &BASE64URL_NOPAD
                .decode(jwt.split('.').nth(1).expect("body").as_bytes())
                .expect("b64"),
        )
        .expect("json");
        assert_eq!(value["nats"]["type"], "user");
        assert_eq!(value["nats"]["version"], 2);
        assert_eq!(value["nats"]["pub"]["allow"][0], "hub.presence.alpha");
    }

    #[test]
    fn a_tampered_jwt_is_refused() {
        let signer = KeyPair::new_operator();
        let claims = new_claims(&signer, "op", None, Operator::new(vec![], String::new()));
        let jwt = encode(claims, &signer).expect("signed");
        let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
        let mut body: serde_json::Value =
            serde_json::from_slice(&BASE64URL_NOPAD.decode(parts[1].as_bytes()).expect("b64"))
                .expect("json");
        body["name"] = "evil".into();
        parts[1] = BASE64URL_NOPAD.encode(body.to_string().as_bytes());
        let forged = parts.join(".");
        assert!(matches!(
            decode::<Operator>(&forged),
            Err(JwtError::BadSignature)
        ));
        assert!(matches!(
            decode::<Operator>("a.b"),
            Err(JwtError::Malformed(_))
        ));
    }
}
