//! Naming rules: project slugs, mesh namespaces and spoke instance codes.

use thiserror::Error;

/// Longest slug the rule admits (a DNS label).
pub const SLUG_MAX_LEN: usize = 63;

/// Why a name was refused, phrased for an operator.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NamingError {
    #[error("slug must match ^[a-z0-9]([a-z0-9-]{{0,61}}[a-z0-9])?$ (lower-case letters, digits and inner hyphens, 1-63 characters)")]
    Slug,
    #[error("mesh_namespace must be \"hub.{0}\"")]
    MeshNamespace(String),
    #[error("instance code must be an upper-case ISO 3166-1 alpha-3 code such as FRA")]
    InstanceCode,
}

/// The slug rule `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`, without a regex engine.
pub fn is_valid_slug(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match b {
        [] => false,
        [only] => alnum(only),
        [first, middle @ .., last] => {
            b.len() <= SLUG_MAX_LEN
                && alnum(first)
                && alnum(last)
                && middle.iter().all(|c| alnum(c) || *c == b'-')
        }
    }
}

/// Checks a slug, returning it unchanged when valid.
pub fn check_slug(s: &str) -> Result<&str, NamingError> {
    if is_valid_slug(s) {
        Ok(s)
    } else {
        Err(NamingError::Slug)
    }
}

/// The mesh namespace a project must use: `hub.<slug>`.
pub fn mesh_namespace(slug: &str) -> String {
    format!("hub.{slug}")
}

/// True when `namespace` is exactly `hub.<slug>`.
pub fn namespace_matches(slug: &str, namespace: &str) -> bool {
    namespace
        .strip_prefix("hub.")
        .is_some_and(|rest| rest == slug)
}

/// Spoke instance codes are ISO 3166-1 alpha-3 country codes in upper case
/// (`FRA`, `DEU`). The shape is checked here; the service also checks the code
/// is an assigned one.
pub fn is_valid_instance_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|c| c.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_rule_accepts_dns_labels() {
        for ok in ["a", "0", "alpha", "a-b", "hub-01", &"a".repeat(63)] {
            assert!(is_valid_slug(ok), "{ok} should be valid");
        }
    }

    #[test]
    fn slug_rule_rejects_everything_else() {
        let too_long = "a".repeat(64);
        for bad in [
            "", "-a", "a-", "A", "alpha_1", "al.pha", "al pha", "é", &too_long, "a--", "hub.x",
        ] {
            assert!(!is_valid_slug(bad), "{bad:?} should be invalid");
        }
        // inner double hyphens are allowed by the rule
        assert!(is_valid_slug("a--b"));
    }

    #[test]
    fn namespace_must_be_hub_dot_slug() {
        assert!(namespace_matches("alpha", "hub.alpha"));
        assert!(!namespace_matches("alpha", "hub.beta"));
        assert!(!namespace_matches("alpha", "alpha"));
        assert!(!namespace_matches("alpha", "hub.alpha.x"));
        assert_eq!(mesh_namespace("alpha"), "hub.alpha");
    }

    #[test]
    fn instance_codes_are_three_upper_case_letters() {
        assert!(is_valid_instance_code("FRA"));
        for bad in ["fra", "FR", "FRAN", "F1A", ""] {
            assert!(!is_valid_instance_code(bad), "{bad:?}");
        }
    }
}
