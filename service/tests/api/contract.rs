//! The OpenAPI document is a promise the server keeps: schemathesis reads
//! `/openapi.json` from the running service (real PostgreSQL, NATS on a
//! private nats-server, so every route is live) and sends what it generates
//! from it, with an admin key and with an agent key. Any 5xx, undocumented
//! status, response off its schema, schema-valid request refused or
//! schema-breaking request accepted fails the test.
//!
//! scripts/test installs the pinned schemathesis and exports
//! `SCHEMATHESIS_BIN`; `contract/` holds its settings and the hooks for the
//! two rules OpenAPI cannot carry. `SCHEMATHESIS_SEED`,
//! `SCHEMATHESIS_MAX_EXAMPLES` and `SCHEMATHESIS_MAX_TIME` override the
//! defaults (to explore further by hand).

use std::path::{Path, PathBuf};

use testkit::NatsServer;

use crate::fedkit::nats_yaml;
use crate::helpers::*;

/// Test cases per operation and phase in one pass.
const MAX_EXAMPLES: &str = "15";
/// Seconds each run may take; schemathesis shares them between its phases
/// and repeats passes while time is left, so the test takes about this
/// long however busy the machine is (the two keys run at once).
const MAX_TIME: &str = "45";
/// A fixed seed, so a failure in CI is the same failure on a laptop.
const SEED: &str = "1";

fn schemathesis() -> PathBuf {
    if let Some(p) = std::env::var_os("SCHEMATHESIS_BIN").map(PathBuf::from) {
        assert!(
            p.is_file(),
            "SCHEMATHESIS_BIN={} does not exist; run scripts/test, which installs schemathesis",
            p.display()
        );
        return p;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("schemathesis"))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "schemathesis is not installed. Run the tests through scripts/test, which \
                 installs the pinned version, or set SCHEMATHESIS_BIN to its path."
            )
        })
}

fn contract_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/contract")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_keeps_every_promise_of_its_openapi_document() {
    let bin = schemathesis();
    let nats = NatsServer::start().await;
    // A routing.url_key, so that nodes may be given database URLs.
    let yaml = format!(
        "{}routing:\n  url_key: \"{}\"\n",
        nats_yaml(&nats.url()),
        "ab".repeat(32)
    );
    let app = spawn_app_with(&yaml, Vec::new()).await;
    let workdir = tempfile::tempdir().unwrap();
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| SEED.into());
    let examples =
        std::env::var("SCHEMATHESIS_MAX_EXAMPLES").unwrap_or_else(|_| MAX_EXAMPLES.into());
    let max_time = std::env::var("SCHEMATHESIS_MAX_TIME").unwrap_or_else(|_| MAX_TIME.into());
    // Both keys at once: each run is one busy Python process.
    let runs = [("admin", ADMIN_KEY), ("agent", AGENT_KEY)].map(|(role, key)| {
        let out = tokio::process::Command::new(&bin)
            .arg("--config-file")
            .arg(contract_dir().join("schemathesis.toml"))
            .arg("run")
            .arg(app.url("/openapi.json"))
            .args(["--checks", "all"])
            .args(["--header", &format!("X-API-Key: {key}")])
            .args(["--max-examples", &examples])
            .args(["--max-time", &max_time])
            .args(["--seed", &seed])
            .args(["--generation-database", "none"])
            .arg("--no-color")
            .env("SCHEMATHESIS_HOOKS", contract_dir().join("hooks.py"))
            // Nothing it writes lands in the repository.
            .current_dir(workdir.path())
            .kill_on_drop(true)
            .output();
        async move { (role, out.await) }
    });
    let mut failures = Vec::new();
    for (role, out) in futures::future::join_all(runs).await {
        let out = out.unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let summary = stdout
            .rfind("SUMMARY")
            .map_or(stdout.as_ref(), |i| &stdout[i..]);
        println!("--- schemathesis, {role} key ---\n{summary}");
        if !out.status.success() {
            failures.push(format!(
                "--- schemathesis with the {role} key: {} ---\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
