//! The control plane as the NATS authority (decentralized JWT
//! authentication): it holds an operator, a system account (`SYS`) and the
//! federation account (`FEDERATION`), each with a signing key, and issues
//! the users of that account: its own (unrestricted within the account) and
//! one per hub, which may publish only that hub's heartbeat subject.
//!
//! Everything lives in one directory (`identity.dir`), made by
//! `federation nats-init` (see `docs/security.md`):
//!
//! ```text
//! DIR/                       0700
//!   keys/                    0700  NKey seeds, 0600 each:
//!     operator.nk  operator-signing.nk  SYS.nk  SYS-signing.nk
//!     FEDERATION.nk  FEDERATION-signing.nk
//!   operator.jwt  SYS.jwt  FEDERATION.jwt
//!   service.creds            the service's user (FEDERATION)
//!   sys.creds                a system-account user (pushes account updates)
//!   nats-server.conf         operator mode, full resolver, preloaded accounts
//!   jwt/                     the resolver's store (nats-server writes it)
//!   jetstream/               JetStream's store (nats-server writes it)
//! ```
//!
//! Files are created, never overwritten: a second `init` changes nothing.
//! Seeds never reach a log line or an error message.

pub mod cli;
pub mod creds;
pub mod jwt;
pub mod revocations;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nkeys::{KeyPair, KeyPairType};
use secrecy::{ExposeSecret, SecretString};

use crate::config::IdentitySettings;
use jwt::{Account, AccountLimits, Claims, Operator, Permission, User};

/// Name of the federation account.
pub const ACCOUNT: &str = "FEDERATION";
/// Name of the system account.
pub const SYSTEM_ACCOUNT: &str = "SYS";
/// Name of the operator.
pub const OPERATOR: &str = "federation";
/// The service's own credentials, in the directory.
pub const SERVICE_CREDS: &str = "service.creds";
/// A system-account user's credentials, in the directory.
pub const SYSTEM_CREDS: &str = "sys.creds";
/// The nats-server configuration, in the directory.
pub const SERVER_CONF: &str = "nats-server.conf";
/// Longest lifetime a hub credential may be given.
pub const MAX_HUB_CREDS_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

/// Why the authority could not be set up or used. Never carries a seed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
    #[error("slug {0:?} is not a valid project slug")]
    Slug(String),
    #[error("{0}")]
    Usage(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

fn invalid(path: &Path, problem: impl Into<String>) -> IdentityError {
    IdentityError::Invalid {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// What `init` did: the paths it created (or whose mode it tightened).
/// Empty when everything was already there.
#[derive(Debug, Default)]
pub struct InitReport {
    pub dir: PathBuf,
    pub created: Vec<PathBuf>,
    pub operator: String,
    pub system_account: String,
    pub account: String,
}

impl InitReport {
    pub fn changed(&self) -> bool {
        !self.created.is_empty()
    }
}

/// Creates what is missing in `dir`: keys, JWTs, the service's and the
/// system user's credentials and the nats-server configuration. Existing
/// files are read and checked, never replaced.
pub fn init(dir: &Path) -> Result<InitReport, IdentityError> {
    let mut report = InitReport::default();
    private_dir(dir, &mut report)?;
    let dir = fs::canonicalize(dir).map_err(io_error(dir))?;
    if dir.to_str().is_none_or(|d| d.contains(['"', '\n', '\\'])) {
        return Err(invalid(
            &dir,
            "the path must be UTF-8 without quotes, backslashes or line breaks (it is written into nats-server.conf)",
        ));
    }
    report.dir = dir.clone();
    let keys = dir.join("keys");
    private_dir(&keys, &mut report)?;
    private_dir(&dir.join("jwt"), &mut report)?;

    // Keys are made only for a new authority: over existing JWTs a missing
    // key is lost (restore it), not replaced.
    let jwts = ["operator.jwt", "SYS.jwt", "FEDERATION.jwt"];
    if jwts.iter().any(|f| dir.join(f).exists()) {
        for name in [
            "operator.nk",
            "operator-signing.nk",
            "SYS.nk",
            "SYS-signing.nk",
            "FEDERATION.nk",
            "FEDERATION-signing.nk",
        ] {
            let path = keys.join(name);
            if !path.exists() {
                return Err(invalid(
                    &path,
                    "missing while the JWTs it signed exist: restore it from a backup (a new key would make a new, different authority)",
                ));
            }
        }
    }
    // Each key in DIR/keys/<name>.nk, made when missing.
    let mut key_named =
        |name: &str, kind: KeyPairType| key(&keys.join(format!("{name}.nk")), kind, &mut report);
    let operator = key_named("operator", KeyPairType::Operator)?;
    let operator_signing = key_named("operator-signing", KeyPairType::Operator)?;
    let system = key_named(SYSTEM_ACCOUNT, KeyPairType::Account)?;
    let system_signing = key_named(&format!("{SYSTEM_ACCOUNT}-signing"), KeyPairType::Account)?;
    let account = key_named(ACCOUNT, KeyPairType::Account)?;
    let account_signing = key_named(&format!("{ACCOUNT}-signing"), KeyPairType::Account)?;

    let operator_jwt = claims_file(
        &dir.join("operator.jwt"),
        &mut report,
        |jwt| check_subject::<Operator>(jwt, &operator, &operator),
        || {
            let nats = Operator::new(vec![operator_signing.public_key()], system.public_key());
            jwt::encode(new_claims(&operator, OPERATOR, None, nats), &operator)
        },
    )?;
    // An account's JWT, DIR/<name>.jwt, signed by the operator's signing
    // key, naming the account's own signing key.
    let mut account_file = |name: &str, key: &KeyPair, signing: &KeyPair, limits| {
        claims_file(
            &dir.join(format!("{name}.jwt")),
            &mut report,
            |jwt| check_subject::<Account>(jwt, key, &operator_signing),
            || {
                let nats = Account::new(limits, vec![signing.public_key()]);
                jwt::encode(new_claims(key, name, None, nats), &operator_signing)
            },
        )
    };
    let system_jwt = account_file(
        SYSTEM_ACCOUNT,
        &system,
        &system_signing,
        AccountLimits::unlimited(),
    )?;
    let account_jwt = account_file(
        ACCOUNT,
        &account,
        &account_signing,
        AccountLimits::unlimited_with_jetstream(),
    )?;

    for (file, name, issuer, signing) in [
        (
            SERVICE_CREDS,
            "federation-service",
            &account,
            &account_signing,
        ),
        (SYSTEM_CREDS, "federation-system", &system, &system_signing),
    ] {
        let path = dir.join(file);
        if path.exists() {
            check_private_file(&path)?;
            continue;
        }
        let issued = issue_user(
            name,
            issuer,
            signing,
            Permission::default(),
            Permission::default(),
            None,
        )?;
        write_private(&path, issued.creds.expose_secret().as_bytes())?;
        report.created.push(path);
    }

    let conf = dir.join(SERVER_CONF);
    // The conf and the JWTs hold no secret: their mode is the operator's
    // choice once written (e.g. readable by the nats-server user).
    if conf.exists() {
        if !conf.is_file() {
            return Err(invalid(&conf, "exists and is not a file"));
        }
    } else {
        let text = server_conf(
            &dir,
            &operator_jwt,
            &system.public_key(),
            &[
                (system.public_key(), system_jwt),
                (account.public_key(), account_jwt),
            ],
        );
        write_private(&conf, text.as_bytes())?;
        report.created.push(conf);
    }
    report.operator = operator.public_key();
    report.system_account = system.public_key();
    report.account = account.public_key();
    Ok(report)
}

/// The nats-server configuration: operator mode, the full (NATS-based)
/// resolver with both accounts preloaded, the system account, JetStream.
fn server_conf(
    dir: &Path,
    operator_jwt: &str,
    system_account: &str,
    accounts: &[(String, String)],
) -> String {
    let dir = dir.display();
    let mut preload = String::new();
    for (key, jwt) in accounts {
        preload += &format!("  {key}: \"{jwt}\"\n");
    }
    format!(
        "# Written by `federation nats-init`: the control plane is this server's\n\
         # authority. Only users it issued (signed by an account's signing key)\n\
         # connect; anonymous clients are refused. Listens on 4222 unless\n\
         # overridden (nats-server -c {SERVER_CONF} -p PORT). See docs/security.md.\n\
         \n\
         operator: \"{operator_jwt}\"\n\
         system_account: \"{system_account}\"\n\
         \n\
         resolver: {{\n  type: full\n  dir: \"{dir}/jwt\"\n  allow_delete: false\n  interval: \"2m\"\n}}\n\
         \n\
         resolver_preload: {{\n{preload}}}\n\
         \n\
         jetstream: {{\n  store_dir: \"{dir}/jetstream\"\n}}\n"
    )
}

/// What the control plane needs to issue users of the federation account.
pub struct Authority {
    dir: PathBuf,
    account: String,
    signing: KeyPair,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("dir", &self.dir)
            .field("account", &self.account)
            .field("signing_key", &self.signing.public_key())
            .finish()
    }
}

/// A user credential just issued. `creds` (the file's text) holds the seed.
pub struct Issued {
    pub name: String,
    /// The user's public NKey.
    pub user: String,
    /// Unix time it expires, if it does.
    pub expires_at: Option<i64>,
    pub jwt: String,
    pub creds: SecretString,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("name", &self.name)
            .field("user", &self.user)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// Reads the federation account's public key and signing key from `dir`
    /// (made by [`init`]).
    pub fn open(dir: &Path) -> Result<Authority, IdentityError> {
        let keys = dir.join("keys");
        let signing = read_key(
            &keys.join(format!("{ACCOUNT}-signing.nk")),
            KeyPairType::Account,
        )?;
        let path = dir.join(format!("{ACCOUNT}.jwt"));
        let text = fs::read_to_string(&path).map_err(io_error(&path))?;
        let claims: Claims<Account> =
            jwt::decode(&text).map_err(|e| invalid(&path, e.to_string()))?;
        if !claims.nats.signing_keys.contains(&signing.public_key()) {
            return Err(invalid(
                &path,
                "the account does not list the signing key in keys/ as one of its signing keys",
            ));
        }
        Ok(Authority {
            dir: dir.to_owned(),
            account: claims.sub,
            signing,
        })
    }

    /// From the `identity` settings, when `identity.dir` is set.
    pub fn from_settings(settings: &IdentitySettings) -> Result<Option<Authority>, IdentityError> {
        settings.dir.as_deref().map(Authority::open).transpose()
    }

    /// The federation account's public key.
    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Credentials for hub `slug`, valid for `ttl`: publish on
    /// `hub.presence.<slug>` only; no subscription, no JetStream API.
    pub fn hub_creds(&self, slug: &str, ttl: Duration) -> Result<Issued, IdentityError> {
        if ttl.is_zero() || ttl > MAX_HUB_CREDS_TTL {
            return Err(IdentityError::Usage(format!(
                "the lifetime must be between 1s and {}",
                humantime::format_duration(MAX_HUB_CREDS_TTL)
            )));
        }
        self.hub_creds_until(slug, jwt::now().saturating_add(ttl.as_secs() as i64))
    }

    /// As [`Authority::hub_creds`], expiring at `expires_at` (Unix time).
    pub fn hub_creds_until(&self, slug: &str, expires_at: i64) -> Result<Issued, IdentityError> {
        protocol::naming::check_slug(slug).map_err(|_| IdentityError::Slug(slug.to_owned()))?;
        issue_user(
            &format!("hub-{slug}"),
            &KeyPair::from_public_key(&self.account)
                .map_err(|_| invalid(&self.dir, "account key is not a public NKey"))?,
            &self.signing,
            hub_publish(slug),
            hub_subscribe(),
            Some(expires_at),
        )
    }
}

impl Authority {
    /// Re-signs the federation account JWT (with the operator's signing key)
    /// so it carries exactly `revocations` (user public key → Unix time),
    /// and writes it where a restarted nats-server reads it: `FEDERATION.jwt`
    /// and the account's `resolver_preload` entry in `nats-server.conf`.
    /// Returns the new JWT, to be pushed to the running servers.
    pub fn resign_account(
        &self,
        revocations: &BTreeMap<String, i64>,
    ) -> Result<String, IdentityError> {
        let path = self.dir.join(format!("{ACCOUNT}.jwt"));
        let old = fs::read_to_string(&path).map_err(io_error(&path))?;
        let old = old.trim();
        let mut claims: Claims<Account> =
            jwt::decode(old).map_err(|e| invalid(&path, e.to_string()))?;
        let signing_path = self.dir.join("keys").join("operator-signing.nk");
        let operator_signing = read_key(&signing_path, KeyPairType::Operator)?;
        if claims.iss != operator_signing.public_key() {
            return Err(invalid(
                &path,
                "not signed by the operator signing key in keys/",
            ));
        }
        claims.nats.revocations = revocations.clone();
        // A server keeps the newer of two JWTs of an account: never older
        // than the one it has, even within one second.
        claims.iat = jwt::now().max(claims.iat + 1);
        claims.exp = None;
        let new =
            jwt::encode(claims, &operator_signing).map_err(|e| invalid(&path, e.to_string()))?;
        write_private(&path, new.as_bytes())?;
        self.replace_preload(old, &new)?;
        Ok(new)
    }

    /// Replaces the account's JWT in `nats-server.conf`, keeping the file's
    /// mode. A configuration without it (edited by hand) is left alone.
    fn replace_preload(&self, old: &str, new: &str) -> Result<(), IdentityError> {
        let conf = self.dir.join(SERVER_CONF);
        let text = match fs::read_to_string(&conf) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(&conf)(e)),
        };
        let entry = format!("{}: \"{old}\"", self.account);
        if !text.contains(&entry) {
            tracing::warn!(conf = %conf.display(), "nats-server.conf does not preload the federation account's current JWT; a restarted nats-server relies on its resolver store for revocations");
            return Ok(());
        }
        let mode = fs::metadata(&conf).map_err(io_error(&conf))?.permissions();
        let text = text.replace(&entry, &format!("{}: \"{new}\"", self.account));
        write_private(&conf, text.as_bytes())?;
        fs::set_permissions(&conf, mode).map_err(io_error(&conf))
    }
}

/// What a hub may publish: its own heartbeat subject, nothing of JetStream.
pub fn hub_publish(slug: &str) -> Permission {
    Permission {
        allow: vec![protocol::subjects::heartbeat_subject(slug)],
        deny: vec!["$JS.>".into(), protocol::subjects::EVENTS_WILDCARD.into()],
    }
}

/// What a hub may subscribe to: nothing (it only publishes; a subscription
/// to `_INBOX.>` would see other clients' replies).
pub fn hub_subscribe() -> Permission {
    Permission {
        allow: Vec::new(),
        deny: vec![">".into()],
    }
}

fn new_claims<N>(subject: &KeyPair, name: &str, exp: Option<i64>, nats: N) -> Claims<N> {
    Claims {
        jti: String::new(),
        iat: jwt::now(),
        iss: String::new(),
        sub: subject.public_key(),
        name: name.to_owned(),
        exp,
        nats,
    }
}

/// A new user of `account` (given by its identity key, public part used),
/// signed by `signing`, one of the account's signing keys.
fn issue_user(
    name: &str,
    account: &KeyPair,
    signing: &KeyPair,
    publish: Permission,
    subscribe: Permission,
    expires_at: Option<i64>,
) -> Result<Issued, IdentityError> {
    let user = KeyPair::new_user();
    let nats = User::new(publish, subscribe, account.public_key());
    let token = jwt::encode(new_claims(&user, name, expires_at, nats), signing)
        .map_err(|e| IdentityError::Usage(e.to_string()))?;
    let seed = SecretString::from(
        user.seed()
            .map_err(|_| IdentityError::Usage("cannot encode a user seed".into()))?,
    );
    Ok(Issued {
        name: name.to_owned(),
        user: user.public_key(),
        expires_at,
        creds: creds::format(&token, &seed),
        jwt: token,
    })
}

fn check_subject<N: for<'de> serde::Deserialize<'de>>(
    jwt: &str,
    subject: &KeyPair,
    issuer: &KeyPair,
) -> Result<(), String> {
    let claims: Claims<N> = jwt::decode(jwt).map_err(|e| e.to_string())?;
    if claims.sub != subject.public_key() {
        return Err("its subject is not the key in keys/".into());
    }
    if claims.iss != issuer.public_key() {
        return Err("it is not signed by the expected key in keys/".into());
    }
    Ok(())
}

/// Reads and checks a JWT file, or writes a new one.
fn claims_file(
    path: &Path,
    report: &mut InitReport,
    check: impl FnOnce(&str) -> Result<(), String>,
    make: impl FnOnce() -> Result<String, jwt::JwtError>,
) -> Result<String, IdentityError> {
    if path.exists() {
        let text = fs::read_to_string(path).map_err(io_error(path))?;
        let text = text.trim().to_owned();
        check(&text).map_err(|problem| invalid(path, problem))?;
        return Ok(text);
    }
    let token = make().map_err(|e| invalid(path, e.to_string()))?;
    write_private(path, token.as_bytes())?;
    report.created.push(path.to_owned());
    Ok(token)
}

/// Reads the seed in `path`, or makes a new key and writes its seed.
fn key(path: &Path, kind: KeyPairType, report: &mut InitReport) -> Result<KeyPair, IdentityError> {
    if path.exists() {
        check_private_file(path)?;
        return read_key(path, kind);
    }
    let pair = KeyPair::new(kind);
    let seed = pair
        .seed()
        .map_err(|_| invalid(path, "cannot encode the seed"))?;
    write_private(path, seed.as_bytes())?;
    report.created.push(path.to_owned());
    Ok(pair)
}

fn read_key(path: &Path, kind: KeyPairType) -> Result<KeyPair, IdentityError> {
    let seed = SecretString::from(fs::read_to_string(path).map_err(io_error(path))?);
    let pair = KeyPair::from_seed(seed.expose_secret().trim())
        .map_err(|_| invalid(path, "not an NKey seed (contents not shown)"))?;
    if pair.key_pair_type() != kind {
        return Err(invalid(path, format!("not a seed of an {kind:?} key")));
    }
    Ok(pair)
}

/// Creates `path` as a 0700 directory, or tightens an existing one to 0700.
fn private_dir(path: &Path, report: &mut InitReport) -> Result<(), IdentityError> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            if meta.permissions().mode() & 0o077 != 0 {
                fs::set_permissions(path, fs::Permissions::from_mode(0o700))
                    .map_err(io_error(path))?;
                report.created.push(path.to_owned());
            }
            Ok(())
        }
        Ok(_) => Err(invalid(path, "exists and is not a directory")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(io_error(path))?;
            // The umask may have narrowed it further; never widened.
            report.created.push(path.to_owned());
            Ok(())
        }
        Err(e) => Err(io_error(path)(e)),
    }
}

/// An existing secret-bearing file must not be readable by others.
fn check_private_file(path: &Path) -> Result<(), IdentityError> {
    let meta = fs::metadata(path).map_err(io_error(path))?;
    if !meta.is_file() {
        return Err(invalid(path, "exists and is not a file"));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(invalid(
            path,
            format!(
                "mode {:o} lets others read it; chmod 600 it",
                meta.permissions().mode() & 0o777
            ),
        ));
    }
    Ok(())
}

/// Writes a new 0600 file: to a temporary name, then renamed, so a crash
/// leaves no half-written file under the real name.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), IdentityError> {
    let name = path
        .file_name()
        .ok_or_else(|| invalid(path, "no file name"))?
        .to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_error(&tmp))?;
    file.write_all(contents).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_error(path))
}
