//! Sign-in for the web UI: an API key (or a hub token) is exchanged once
//! for a session cookie, signed with HMAC-SHA256 under `ui.session_key`.
//!
//! The cookie never holds the key, nor its plain digest: it holds the
//! role, the key's fingerprint, a keyed reference to the key (an HMAC of
//! its digest under the session key), the expiry and a random nonce, and
//! the signature over all of it. Each request checks the signature and
//! the expiry, then looks the reference up among the keys configured now
//! (or the hub credential among the hub's valid ones), so a key removed
//! from the configuration, or a revoked hub token, stops working at once.
//! The CSRF token of a session is an HMAC of its nonce: nothing to store.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::auth::Role;
use crate::config::{AuthSettings, UiSettings};

type HmacSha256 = Hmac<Sha256>;

/// The session cookie's name.
pub const COOKIE: &str = "fed_session";
/// The form field every POST of a signed-in page carries.
pub const CSRF_FIELD: &str = "csrf";
const VERSION: &str = "v1";

/// Who a session was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An admin or agent key, by its keyed reference.
    Key { reference: String },
    /// A hub token of hub `slug`.
    Hub { slug: String },
}

/// What a session cookie says (signed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub principal: Principal,
    pub role: Role,
    /// `sha256:xxxxxxxx`, the key's fingerprint as the API logs it.
    pub fingerprint: String,
    pub expires: DateTime<Utc>,
    /// Random, per sign-in; the CSRF token is derived from it.
    pub nonce: String,
}

/// Why a cookie is not a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    Malformed,
    BadSignature,
    Expired,
}

/// Issues and checks session cookies; one per process.
pub struct Sessions {
    key: Vec<u8>,
    ttl: Duration,
    secure: bool,
    /// Keyed reference of each configured key, its role, and whether it
    /// is accepted (shared agent keys may be turned off).
    keys: Vec<(String, Role, bool)>,
}

impl Sessions {
    /// From the settings; without `ui.session_key`, a random key (warned).
    pub fn new(ui: &UiSettings, auth: &AuthSettings) -> Arc<Self> {
        let key = match &ui.session_key {
            Some(k) => k.expose_secret().as_bytes().to_vec(),
            None => {
                let mut k = vec![0u8; 32];
                rand::rng().fill_bytes(&mut k);
                if ui.enabled {
                    tracing::warn!(
                        "ui.session_key is not set: web UI sessions are signed with a random key of this process; \
                         they end when it restarts and work only on this replica (set ui.session_key, at least 32 bytes, the same on every replica)"
                    );
                }
                k
            }
        };
        let mut sessions = Sessions {
            key,
            ttl: ui.session_ttl,
            secure: ui.secure_cookie,
            keys: Vec::new(),
        };
        let agents_on = auth.allow_shared_agent_keys;
        let admins = auth.admin_keys.iter().map(|k| (k, Role::Admin, true));
        let agents = auth.agent_keys.iter().map(|k| (k, Role::Agent, agents_on));
        sessions.keys = admins
            .chain(agents)
            .map(|(k, role, on)| (sessions.reference(k.expose_secret().as_bytes()), role, on))
            .collect();
        Arc::new(sessions)
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        // HMAC takes keys of any length.
        let mut mac = HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        mac
    }

    /// The keyed reference of a presented key: an HMAC of its digest, so
    /// the cookie can name the key without carrying anything that
    /// authenticates elsewhere.
    pub fn reference(&self, presented: &[u8]) -> String {
        let digest = Sha256::digest(presented);
        let tag = self.mac(&[b"key-ref", &digest]).finalize().into_bytes();
        BASE64URL_NOPAD.encode(&tag[..18])
    }

    /// The configured role of the key with this reference, if it is
    /// configured and accepted now.
    pub fn role_of(&self, reference: &str) -> Option<Role> {
        let mut found = None;
        for (r, role, on) in &self.keys {
            let hit: bool = r.as_bytes().ct_eq(reference.as_bytes()).into();
            if hit && *on && found.is_none_or(|f| *role > f) {
                found = Some(*role);
            }
        }
        found
    }

    /// New claims for a sign-in now.
    pub fn claims(&self, principal: Principal, role: Role, fingerprint: String) -> Claims {
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::hours(8));
        Claims {
            principal,
            role,
            fingerprint,
            // The cookie keeps whole seconds.
            expires: (Utc::now() + ttl).trunc_subsecs(0),
            nonce: HEXLOWER.encode(&nonce),
        }
    }

    /// The cookie's value: the claims and their signature.
    pub fn encode(&self, c: &Claims) -> String {
        let (kind, subject) = match &c.principal {
            Principal::Key { reference } => ("key", reference.as_str()),
            Principal::Hub { slug } => ("hub", slug.as_str()),
        };
        let payload = [
            VERSION,
            kind,
            subject,
            c.role.as_str(),
            &c.fingerprint,
            &c.expires.timestamp().to_string(),
            &c.nonce,
        ]
        .join("|");
        let tag = self
            .mac(&[b"session", payload.as_bytes()])
            .finalize()
            .into_bytes();
        format!(
            "{}.{}",
            BASE64URL_NOPAD.encode(payload.as_bytes()),
            BASE64URL_NOPAD.encode(&tag)
        )
    }

    /// The claims of a cookie value, if it is signed with this key and
    /// not expired at `now`. Says nothing yet of whether the key is still
    /// configured (see `ui::auth`).
    pub fn decode(&self, value: &str, now: DateTime<Utc>) -> Result<Claims, Invalid> {
        let (payload, tag) = value.split_once('.').ok_or(Invalid::Malformed)?;
        let payload = BASE64URL_NOPAD
            .decode(payload.as_bytes())
            .map_err(|_| Invalid::Malformed)?;
        let tag = BASE64URL_NOPAD
            .decode(tag.as_bytes())
            .map_err(|_| Invalid::Malformed)?;
        self.mac(&[b"session", &payload])
            .verify_slice(&tag)
            .map_err(|_| Invalid::BadSignature)?;
        let payload = String::from_utf8(payload).map_err(|_| Invalid::Malformed)?;
        let f: Vec<&str> = payload.split('|').collect();
        let [VERSION, kind, subject, role, fingerprint, expires, nonce] = f[..] else {
            return Err(Invalid::Malformed);
        };
        let principal = match kind {
            "key" => Principal::Key {
                reference: subject.to_owned(),
            },
            "hub" => Principal::Hub {
                slug: subject.to_owned(),
            },
            _ => return Err(Invalid::Malformed),
        };
        let role = match role {
            "admin" => Role::Admin,
            "agent" => Role::Agent,
            "hub" => Role::Hub,
            _ => return Err(Invalid::Malformed),
        };
        let expires = expires
            .parse::<i64>()
            .ok()
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .ok_or(Invalid::Malformed)?;
        if expires <= now {
            return Err(Invalid::Expired);
        }
        Ok(Claims {
            principal,
            role,
            fingerprint: fingerprint.to_owned(),
            expires,
            nonce: nonce.to_owned(),
        })
    }

    /// The CSRF token of a session.
    pub fn csrf_token(&self, c: &Claims) -> String {
        let tag = self
            .mac(&[b"csrf", c.nonce.as_bytes()])
            .finalize()
            .into_bytes();
        HEXLOWER.encode(&tag[..16])
    }

    /// Whether `presented` is the session's CSRF token.
    pub fn csrf_ok(&self, c: &Claims, presented: &str) -> bool {
        self.csrf_token(c)
            .as_bytes()
            .ct_eq(presented.as_bytes())
            .into()
    }

    /// `Set-Cookie` for a session just issued by [`Self::claims`].
    pub fn set_cookie(&self, c: &Claims) -> String {
        let max_age = self.ttl.as_secs();
        format!(
            "{COOKIE}={}; Path=/ui; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
            self.encode(c),
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// `Set-Cookie` that ends the session in the browser.
    pub fn clear_cookie(&self) -> String {
        format!(
            "{COOKIE}=; Path=/ui; Max-Age=0; HttpOnly; SameSite=Strict{}",
            if self.secure { "; Secure" } else { "" }
        )
    }
}

/// The session cookie's value among a request's `Cookie` headers.
pub fn cookie_value(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn sessions(key: &str) -> Arc<Sessions> {
        let ui = UiSettings {
            session_key: Some(SecretString::from(key)),
            ..UiSettings::default()
        };
        let auth = AuthSettings {
            admin_keys: vec![SecretString::from("admin-key-0123456789")],
            agent_keys: vec![SecretString::from("agent-key-0123456789")],
            allow_shared_agent_keys: true,
        };
        Sessions::new(&ui, &auth)
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_cookie_round_trips_and_names_no_key() {
        let s = sessions(KEY);
        let reference = s.reference(b"admin-key-0123456789");
        assert_eq!(s.role_of(&reference), Some(Role::Admin));
        let c = s.claims(
            Principal::Key { reference },
            Role::Admin,
            "sha256:abcd0123".into(),
        );
        let value = s.encode(&c);
        assert!(!value.contains("admin-key"));
        let decoded = BASE64URL_NOPAD
            .decode(value.split('.').next().unwrap_or_default().as_bytes())
            .unwrap_or_default();
        assert!(!String::from_utf8_lossy(&decoded).contains("admin-key"));
        assert_eq!(s.decode(&value, Utc::now()), Ok(c.clone()));
        assert!(s.csrf_ok(&c, &s.csrf_token(&c)));
        assert!(!s.csrf_ok(&c, ""));
    }

    #[test]
    fn tampered_expired_or_foreign_cookies_are_refused() {
        let s = sessions(KEY);
        let c = s.claims(
            Principal::Key {
                reference: s.reference(b"agent-key-0123456789"),
            },
            Role::Agent,
            "sha256:abcd0123".into(),
        );
        let value = s.encode(&c);
        // The role changed in the payload, the signature kept.
        let (payload, tag) = value.split_once('.').unwrap_or_default();
        let text = String::from_utf8(
            BASE64URL_NOPAD
                .decode(payload.as_bytes())
                .unwrap_or_default(),
        )
        .unwrap_or_default()
        .replace("|agent|", "|admin|");
        let forged = format!("{}.{tag}", BASE64URL_NOPAD.encode(text.as_bytes()));
        assert_eq!(s.decode(&forged, Utc::now()), Err(Invalid::BadSignature));
        assert_eq!(
            s.decode(&value, c.expires + chrono::Duration::seconds(1)),
            Err(Invalid::Expired)
        );
        let other = sessions("another-key-of-32-bytes-or-more!!");
        assert_eq!(other.decode(&value, Utc::now()), Err(Invalid::BadSignature));
        assert_eq!(s.decode("garbage", Utc::now()), Err(Invalid::Malformed));
        // Another process's key gives the same reference no role.
        assert_eq!(other.role_of(&s.reference(b"admin-key-0123456789")), None);
    }
}
