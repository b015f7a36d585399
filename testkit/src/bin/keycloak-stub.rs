//! The Keycloak Admin API stub as a program, for trying the federation sync
//! by hand (see docs/sync.md):
//!
//!     cargo run -p testkit --bin keycloak-stub -- --port 8180
//!
//! Options: --port N (default 8180), --realm NAME (the hub realm, default
//! `hub`; repeatable), --client-id ID, --client-secret SECRET, --username U,
//! --password P, --token-lifetime SECONDS.

use std::net::SocketAddr;
use std::time::Duration;

use testkit::keycloak::{KeycloakStub, StubConfig};

fn main() -> anyhow::Result<()> {
    let mut config = StubConfig {
        realms: vec!["master".into()],
        ..StubConfig::default()
    };
    let mut port: u16 = 8180;
    let mut hub_realms = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--port" => port = value()?.parse()?,
            "--realm" => hub_realms.push(value()?),
            "--client-id" => config.client_id = value()?,
            "--client-secret" => config.client_secret = value()?,
            "--username" => config.username = value()?,
            "--password" => config.password = value()?,
            "--token-lifetime" => config.token_lifetime = Duration::from_secs(value()?.parse()?),
            "-h" | "--help" => {
                println!("keycloak-stub [--port N] [--realm NAME]... [--client-id ID] [--client-secret S] [--username U] [--password P] [--token-lifetime SECONDS]");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other} (see --help)"),
        }
    }
    if hub_realms.is_empty() {
        hub_realms.push("hub".into());
    }
    config.realms.extend(hub_realms);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let stub = KeycloakStub::start_on(SocketAddr::from(([127, 0, 0, 1], port)), config).await?;
        let c = stub.config();
        println!("Keycloak Admin API stub on {}", stub.url());
        println!("  realms: {}", c.realms.join(", "));
        println!(
            "  login:  client_id={} (client_credentials; the secret is the one passed with --client-secret, default stub-client-secret)",
            c.client_id
        );
        println!("  Ctrl-C stops it");
        tokio::signal::ctrl_c().await?;
        Ok(())
    })
}
