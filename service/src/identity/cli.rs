//! `federation nats-init` and `federation nats-creds`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::{init as init_dir, write_private, Authority, IdentityError};
use crate::config::{self, IdentitySettings, Sources};

/// Exit status for invalid configuration or usage.
const EXIT_USAGE: u8 = 2;

/// `nats-init --dir DIR`.
pub fn init(dir: &Path) -> ExitCode {
    match init_dir(dir) {
        Ok(report) => {
            if report.changed() {
                println!("NATS authority initialised in {}", report.dir.display());
                for path in &report.created {
                    println!("  created {}", path.display());
                }
            } else {
                println!(
                    "NATS authority already initialised in {}: nothing changed",
                    report.dir.display()
                );
            }
            println!("  operator:           {}", report.operator);
            println!("  system account:     {}", report.system_account);
            println!("  federation account: {}", report.account);
            println!(
                "run: nats-server -c {}; then set identity.dir (FEDERATION__IDENTITY__DIR) to {}",
                report.dir.join(super::SERVER_CONF).display(),
                report.dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `nats-creds [--dir DIR] --slug SLUG [--expires-in D] [--out FILE]`.
pub fn creds(
    sources: &Sources,
    dir: Option<&Path>,
    slug: &str,
    expires_in: Option<Duration>,
    out: Option<&Path>,
) -> ExitCode {
    // Only the identity section is read: the command needs nothing else.
    let mut errors = Vec::new();
    let mut failed = Vec::new();
    let settings: IdentitySettings = common::config::section(
        &config::figment(sources),
        "identity",
        config::ENV_PREFIX,
        &mut errors,
        &mut failed,
    );
    if !errors.is_empty() {
        eprint!("{}", config::ConfigErrors(errors));
        return ExitCode::from(EXIT_USAGE);
    }
    let Some(dir) = dir.or(settings.dir.as_deref()) else {
        eprintln!("error: give --dir or set identity.dir (FEDERATION__IDENTITY__DIR)");
        return ExitCode::from(EXIT_USAGE);
    };
    let ttl = expires_in.unwrap_or(settings.hub_creds_ttl);
    let issued = Authority::open(dir).and_then(|authority| authority.hub_creds(slug, ttl));
    let issued = match issued {
        Ok(issued) => issued,
        Err(e @ (IdentityError::Slug(_) | IdentityError::Usage(_))) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let expires = issued
        .expires_at
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| "never".into());
    match out {
        Some(path) => {
            if let Err(e) = write_private(path, issued.creds.expose_secret().as_bytes()) {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
            eprintln!(
                "wrote {} for hub {slug}: user {}, publish hub.presence.{slug} only, expires {expires}",
                path.display(),
                issued.user
            );
        }
        None => {
            print!("{}", issued.creds.expose_secret());
            eprintln!(
                "issued for hub {slug}: user {}, publish hub.presence.{slug} only, expires {expires}",
                issued.user
            );
        }
    }
    ExitCode::SUCCESS
}
