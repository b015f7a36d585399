//! The identity provider a spoke should have in the hub realm, and how an
//! existing one differs from it.

use std::collections::BTreeMap;

use super::keycloak::IdentityProvider;
use super::registry::Spoke;
use crate::config::SyncSettings;

/// Config key marking an identity provider as managed by this service.
/// Only IdPs carrying it are ever updated or deleted.
pub const MANAGED_BY_KEY: &str = "federation.managedBy";
pub const MANAGED_BY_VALUE: &str = "federation-sync";
/// Config key holding the id of the spoke an IdP was made for.
pub const SPOKE_ID_KEY: &str = "federation.spokeId";

/// `<code>-idp`.
pub fn alias(code_lower: &str) -> String {
    format!("{code_lower}-idp")
}

pub fn is_managed(idp: &IdentityProvider) -> bool {
    idp.config.get(MANAGED_BY_KEY).map(String::as_str) == Some(MANAGED_BY_VALUE)
}

/// The managed identity providers whose alias is not `wanted`, by alias.
pub fn orphans(idps: &[IdentityProvider], wanted: impl Fn(&str) -> bool) -> Vec<&IdentityProvider> {
    let mut out: Vec<_> = idps
        .iter()
        .filter(|i| is_managed(i) && !wanted(&i.alias))
        .collect();
    out.sort_by(|a, b| a.alias.cmp(&b.alias));
    out
}

/// The instance code (upper case) of an alias named like a partner's
/// (`<code>-idp`, the code three letters), `None` for any other alias.
pub fn partner_code(alias: &str) -> Option<String> {
    let code = alias.strip_suffix("-idp")?.to_ascii_uppercase();
    protocol::is_valid_instance_code(&code).then_some(code)
}

/// The identity providers named like a partner's that this service does not
/// manage and whose alias is not `wanted` (legacy partners), by alias.
pub fn unmanaged_partners(
    idps: &[IdentityProvider],
    wanted: impl Fn(&str) -> bool,
) -> Vec<&IdentityProvider> {
    let mut out: Vec<_> = idps
        .iter()
        .filter(|i| !is_managed(i) && partner_code(&i.alias).is_some() && !wanted(&i.alias))
        .collect();
    out.sort_by(|a, b| a.alias.cmp(&b.alias));
    out
}

/// The same identity provider marked as managed by this service (what
/// adopting a legacy partner writes); the next reconcile brings the rest to
/// the registry, or deletes it when no spoke claims it.
pub fn adopted(actual: &IdentityProvider) -> IdentityProvider {
    let mut out = actual.clone();
    out.config
        .insert(MANAGED_BY_KEY.to_owned(), MANAGED_BY_VALUE.to_owned());
    out
}

/// A spoke's OIDC issuer as browsers see it (what tokens name), and the
/// same issuer where the hub reaches it (the internal URL when there is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuers {
    pub public: String,
    pub internal: String,
}

pub fn issuers(spoke: &Spoke, settings: &SyncSettings) -> Issuers {
    let suffix = settings
        .keycloak
        .spoke_issuer_path
        .replace("{code}", &spoke.code_lower());
    let issuer_of = |url: &str| format!("{}{suffix}", url.trim_end_matches('/'));
    let public = issuer_of(&spoke.idp_public_url);
    let internal = spoke
        .idp_internal_url
        .as_deref()
        .map(issuer_of)
        .unwrap_or_else(|| public.clone());
    Issuers { public, internal }
}

/// The OIDC identity provider for a spoke: enabled when approved, disabled
/// when suspended. Browser-facing endpoints come from the public IdP URL,
/// back-channel ones from the internal URL when there is one.
pub fn desired(spoke: &Spoke, settings: &SyncSettings) -> IdentityProvider {
    let code = spoke.code_lower();
    let Issuers { public, internal } = issuers(spoke, settings);
    let oidc = |base: &str, endpoint: &str| format!("{base}/protocol/openid-connect/{endpoint}");
    let kc = &settings.keycloak;
    let config: BTreeMap<String, String> = [
        ("issuer", public.clone()),
        ("authorizationUrl", oidc(&public, "auth")),
        ("tokenUrl", oidc(&internal, "token")),
        ("jwksUrl", oidc(&internal, "certs")),
        ("userInfoUrl", oidc(&internal, "userinfo")),
        ("logoutUrl", oidc(&internal, "logout")),
        ("clientId", kc.spoke_client_id.clone()),
        // A vault reference, resolved by Keycloak: never the secret itself.
        (
            "clientSecret",
            format!("${{vault.{}}}", settings.secret_ref(&code)),
        ),
        ("clientAuthMethod", "client_secret_post".into()),
        ("syncMode", "FORCE".into()),
        ("pkceEnabled", "true".into()),
        ("pkceMethod", "S256".into()),
        ("validateSignature", "true".into()),
        ("useJwksUrl", "true".into()),
        ("defaultScope", "openid profile email".into()),
        (MANAGED_BY_KEY, MANAGED_BY_VALUE.into()),
        (SPOKE_ID_KEY, spoke.id.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    IdentityProvider {
        alias: alias(&code),
        display_name: Some(spoke.name.clone()),
        provider_id: "oidc".into(),
        enabled: spoke.is_approved(),
        trust_email: false,
        store_token: false,
        first_broker_login_flow_alias: Some(kc.first_broker_login_flow.clone()),
        config,
        other: serde_json::Map::new(),
    }
}

/// The fields of `actual` that differ from `want`, by name. Only what we
/// manage counts: fields and config keys Keycloak adds are left alone.
pub fn differences(want: &IdentityProvider, actual: &IdentityProvider) -> Vec<String> {
    let fields = [
        ("displayName", want.display_name != actual.display_name),
        ("providerId", want.provider_id != actual.provider_id),
        ("enabled", want.enabled != actual.enabled),
        ("trustEmail", want.trust_email != actual.trust_email),
        ("storeToken", want.store_token != actual.store_token),
        (
            "firstBrokerLoginFlowAlias",
            want.first_broker_login_flow_alias != actual.first_broker_login_flow_alias,
        ),
    ];
    let mut out: Vec<String> = fields
        .into_iter()
        .filter(|(_, differs)| *differs)
        .map(|(field, _)| field.to_owned())
        .collect();
    for (k, v) in &want.config {
        if actual.config.get(k) != Some(v) {
            out.push(format!("config.{k}"));
        }
    }
    out
}

/// What to PUT: the existing representation (keeping what Keycloak added,
/// such as `internalId`) with our fields and config keys set.
pub fn merged(want: &IdentityProvider, actual: &IdentityProvider) -> IdentityProvider {
    let mut out = actual.clone();
    out.display_name.clone_from(&want.display_name);
    out.provider_id.clone_from(&want.provider_id);
    out.enabled = want.enabled;
    out.trust_email = want.trust_email;
    out.store_token = want.store_token;
    out.first_broker_login_flow_alias
        .clone_from(&want.first_broker_login_flow_alias);
    for (k, v) in &want.config {
        out.config.insert(k.clone(), v.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spoke(status: &str, internal: Option<&str>) -> Spoke {
        Spoke {
            id: "spoke-fra-ee18ad42".into(),
            instance_code: "FRA".into(),
            name: "FRA Instance".into(),
            idp_public_url: "https://fra.example/realms/fra/".into(),
            idp_internal_url: internal.map(str::to_owned),
            status: status.into(),
            generation: 1,
            hub_status: None,
        }
    }

    #[test]
    fn endpoints_come_from_the_public_and_internal_urls() {
        let s = SyncSettings::default();
        let idp = desired(
            &spoke("approved", Some("http://fra-kc:8080/realms/fra")),
            &s,
        );
        assert_eq!(idp.alias, "fra-idp");
        assert_eq!(idp.provider_id, "oidc");
        assert!(idp.enabled);
        let c = &idp.config;
        assert_eq!(c["issuer"], "https://fra.example/realms/fra");
        assert_eq!(
            c["authorizationUrl"],
            "https://fra.example/realms/fra/protocol/openid-connect/auth"
        );
        assert_eq!(
            c["tokenUrl"],
            "http://fra-kc:8080/realms/fra/protocol/openid-connect/token"
        );
        assert_eq!(
            c["jwksUrl"],
            "http://fra-kc:8080/realms/fra/protocol/openid-connect/certs"
        );
        assert_eq!(
            c["userInfoUrl"],
            "http://fra-kc:8080/realms/fra/protocol/openid-connect/userinfo"
        );
        assert_eq!(
            c["logoutUrl"],
            "http://fra-kc:8080/realms/fra/protocol/openid-connect/logout"
        );
        assert_eq!(c["clientAuthMethod"], "client_secret_post");
        assert_eq!(c["syncMode"], "FORCE");
        assert_eq!(c["pkceEnabled"], "true");
        assert_eq!(c["validateSignature"], "true");
        assert_eq!(c["clientSecret"], "${vault.fra-idp-client-secret}");
        assert!(is_managed(&idp));

        let mut realms = SyncSettings::default();
        realms.keycloak.spoke_issuer_path = "/realms/{code}".into();
        let mut base = spoke("approved", Some("http://fra-kc:8080/"));
        base.idp_public_url = "https://idp.fra.example:8453".into();
        let idp = desired(&base, &realms);
        assert_eq!(
            idp.config["issuer"],
            "https://idp.fra.example:8453/realms/fra"
        );
        assert_eq!(
            idp.config["tokenUrl"],
            "http://fra-kc:8080/realms/fra/protocol/openid-connect/token"
        );

        let no_internal = desired(&spoke("suspended", None), &s);
        assert!(!no_internal.enabled);
        assert_eq!(
            no_internal.config["tokenUrl"],
            "https://fra.example/realms/fra/protocol/openid-connect/token"
        );
    }

    #[test]
    fn partner_aliases_are_a_code_and_idp() {
        assert_eq!(partner_code("fra-idp").as_deref(), Some("FRA"));
        for other in [
            "google", "fr-idp", "fran-idp", "fra-idp2", "fr1-idp", "-idp",
        ] {
            assert_eq!(partner_code(other), None, "{other}");
        }
        let s = SyncSettings::default();
        let managed = desired(&spoke("approved", None), &s);
        let mut legacy = managed.clone();
        legacy.alias = "gbr-idp".into();
        legacy.config.remove(MANAGED_BY_KEY);
        let mut hand_made = legacy.clone();
        hand_made.alias = "google".into();
        let mut claimed = legacy.clone();
        claimed.alias = "deu-idp".into();
        let idps = [managed, legacy.clone(), hand_made, claimed];
        let found = unmanaged_partners(&idps, |a| a == "deu-idp");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].alias, "gbr-idp");
        assert!(is_managed(&adopted(&legacy)));
        assert!(!is_managed(&legacy));
    }

    #[test]
    fn only_managed_fields_count_as_differences() {
        let s = SyncSettings::default();
        let want = desired(&spoke("approved", None), &s);
        let mut actual = want.clone();
        actual
            .other
            .insert("internalId".into(), serde_json::json!("abc"));
        actual
            .config
            .insert("hideOnLoginPage".into(), "false".into());
        assert!(differences(&want, &actual).is_empty());
        actual.enabled = false;
        actual
            .config
            .insert("tokenUrl".into(), "http://elsewhere".into());
        assert_eq!(differences(&want, &actual), ["enabled", "config.tokenUrl"]);
        let put = merged(&want, &actual);
        assert!(differences(&want, &put).is_empty());
        assert_eq!(put.other["internalId"], "abc");
        assert_eq!(put.config["hideOnLoginPage"], "false");
    }
}
