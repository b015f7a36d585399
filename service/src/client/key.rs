//! The API key: never printed (its `Debug` is redacted), taken from
//! `--api-key`, `FEDERATION_API_KEY`, or for a server on this machine the
//! quickstart's keys file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where the quickstart keeps its keys, relative to the repository root.
pub const QUICKSTART_KEYS: &str = ".quickstart/keys.env";

/// An API key. `Debug` and `Display` do not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// The key itself, for the request header only.
    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl FromStr for ApiKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err("the API key is empty".into());
        }
        if s.chars().any(|c| c.is_control()) {
            return Err("the API key holds a control character".into());
        }
        Ok(ApiKey(s.to_owned()))
    }
}

/// Whether `host` is this machine: only such a server gets the
/// quickstart's key without being asked.
pub(super) fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// The quickstart's keys file in `dir` or the nearest parent that has one.
pub(super) fn find_quickstart_keys(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .map(|d| d.join(QUICKSTART_KEYS))
        .find(|p| p.is_file())
}

/// The admin key in a quickstart keys file (`ADMIN_KEY=`, or the first of
/// `FEDERATION_API_KEYS=` as older ones wrote it).
pub(super) fn quickstart_key(text: &str) -> Option<ApiKey> {
    let value = |name: &str| {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix(name)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\''))
            .find(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let raw = value("ADMIN_KEY").or_else(|| {
        value("FEDERATION_API_KEYS")
            .and_then(|all| all.split(',').next().map(|k| k.trim().to_owned()))
    })?;
    raw.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let key: ApiKey = "qs-admin-0123".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{key:?}").contains("0123"));
    }

    #[test]
    fn reads_the_admin_key_of_a_quickstart_keys_file() {
        let text = "# Source it\nADMIN_KEY=qs-admin-1\nAGENT_KEY=qs-agent-2\nFEDERATION_API_KEYS=qs-admin-1\n";
        assert_eq!(quickstart_key(text).map(|k| k.0), Some("qs-admin-1".into()));
        let old = "FEDERATION_API_KEYS=a1,a2\nFEDERATION_AGENT_API_KEYS=g\n";
        assert_eq!(quickstart_key(old).map(|k| k.0), Some("a1".into()));
        assert_eq!(quickstart_key("AGENT_KEY=x\n"), None);
    }

    #[test]
    fn only_this_machine_is_loopback() {
        for (host, local) in [
            ("localhost", true),
            ("127.0.0.1", true),
            ("[::1]", true),
            ("example.org", false),
            ("10.0.0.1", false),
        ] {
            let url =
                url::Url::parse(&format!("http://{host}:8001/")).unwrap_or_else(|e| panic!("{e}"));
            let h = url.host().unwrap_or_else(|| panic!("{host} has a host"));
            assert_eq!(is_loopback(&h), local, "{host}");
        }
    }
}
