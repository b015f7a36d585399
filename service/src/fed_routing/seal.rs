//! Database URLs at rest: sealed with XChaCha20-Poly1305 under
//! `routing.url_key`, the node id as associated data (a sealed URL copied to
//! another node's row does not open). Stored as nonce || ciphertext. What
//! the API shows instead: the host and port, and a keyed fingerprint that
//! tells two URLs apart without revealing either.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

const NONCE_LEN: usize = 24;

/// Seals and opens database URLs; holds the key.
#[derive(Clone)]
pub struct UrlSeal {
    key: [u8; 32],
}

impl std::fmt::Debug for UrlSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSeal(..)")
    }
}

impl UrlSeal {
    pub fn new(key: [u8; 32]) -> Self {
        UrlSeal { key }
    }

    pub fn seal(&self, node_id: &str, url: &SecretString) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new((&self.key).into());
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: url.expose_secret().as_bytes(),
            aad: node_id.as_bytes(),
        };
        // Encrypting a short message in memory cannot fail.
        let sealed = cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// The URL, if `sealed` was sealed for `node_id` under this key.
    pub fn open(&self, node_id: &str, sealed: &[u8]) -> Option<SecretString> {
        if sealed.len() <= NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new((&self.key).into());
        let plain = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: node_id.as_bytes(),
                },
            )
            .ok()?;
        String::from_utf8(plain).ok().map(SecretString::from)
    }

    /// `hmac-sha256:` and 16 hex digits: equal for equal URLs under one key.
    pub fn fingerprint(&self, url: &SecretString) -> String {
        // HMAC takes a key of any length.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.key) else {
            return String::new();
        };
        mac.update(url.expose_secret().as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("hmac-sha256:{}", hex::encode(&digest[..8]))
    }
}

/// `host[:port]` of a database URL, nothing else (no user, password,
/// database or options).
pub fn host_of(url: &SecretString) -> Option<String> {
    let parsed = url::Url::parse(url.expose_secret()).ok()?;
    let host = parsed.host_str()?.to_owned();
    Some(match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_urls_open_only_for_their_node_and_key() {
        let seal = UrlSeal::new([7; 32]);
        let url = SecretString::from("postgres://u:hunter2@db.example:5433/app");
        let sealed = seal.seal("eu-1", &url);
        assert!(!String::from_utf8_lossy(&sealed).contains("hunter2"));
        let opened = seal
            .open("eu-1", &sealed)
            .map(|s| s.expose_secret().to_owned());
        assert_eq!(opened.as_deref(), Some(url.expose_secret()));
        assert!(seal.open("eu-2", &sealed).is_none());
        assert!(UrlSeal::new([8; 32]).open("eu-1", &sealed).is_none());
        assert_ne!(seal.seal("eu-1", &url), sealed, "a fresh nonce each time");
        assert_eq!(host_of(&url).as_deref(), Some("db.example:5433"));
        let f = seal.fingerprint(&url);
        assert!(f.starts_with("hmac-sha256:") && f.len() == 28, "{f}");
        assert_eq!(f, seal.fingerprint(&url));
        assert_ne!(
            f,
            seal.fingerprint(&SecretString::from("postgres://db.example/app"))
        );
    }
}
