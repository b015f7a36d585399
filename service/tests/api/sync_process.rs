//! `federation sync` and `federation drift` as an operator runs them, and
//! what a real process crash mid-write leaves behind.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use service::config::TfvarsFormat;
use service::sync::tfvars;

use crate::helpers::*;
use crate::synckit::*;

const BIN: &str = env!("CARGO_BIN_EXE_federation");

fn federation(config: &Path, args: &[&str]) -> Command {
    let mut cmd = testkit::clean_command(BIN);
    cmd.arg("--config").arg(config).args(args);
    cmd
}

/// Runs the command without blocking the test's runtime (the Keycloak stub
/// it talks to is served by it).
async fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let cmd = std::mem::replace(cmd, Command::new(BIN));
    let out = tokio::process::Command::from(cmd)
        .output()
        .await
        .expect("run federation");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The environment's settings as a file for the `federation` binary.
fn write_config(env: &SyncEnv) -> std::path::PathBuf {
    let config = env.dir.path().join("federation.yaml");
    std::fs::write(
        &config,
        settings_yaml(&env.app.db.url, &sync_yaml(&env.stub, &env.tfvars, "")),
    )
    .unwrap();
    config
}

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".hub.auto.tfvars.tmp-"))
        .collect()
}

#[tokio::test]
async fn a_crash_mid_write_leaves_the_old_file_whole_and_the_next_run_completes() {
    let (env, _) = synced_env("FRA").await;
    let app = &env.app;
    let v1 = read(&env.tfvars);
    approved(app, "GBR").await;

    let config = write_config(&env);

    // The process dies half-way through the temporary file, then after it
    // is complete but before the rename: each time the file is the old one,
    // whole and parseable.
    for point in ["mid_write", "before_rename"] {
        let (code, _, err) =
            run(federation(&config, &["sync", "--once"]).env("FEDERATION_SYNC_CRASH_AT", point))
                .await;
        assert_eq!(code, None, "killed by a signal at {point}: {err}");
        assert!(
            err.contains(&format!("FEDERATION_SYNC_CRASH_AT={point}")),
            "{err}"
        );
        assert_eq!(read(&env.tfvars), v1, "after a crash at {point}");
        let partners = tfvars::parse(&read(&env.tfvars), TfvarsFormat::Hcl).unwrap();
        assert_eq!(partners.keys().collect::<Vec<_>>(), ["fra"]);
        assert_eq!(
            temp_files(env.dir.path()).len(),
            1,
            "the crash left its temp file"
        );
    }

    // Dying right after the rename: the new file is already complete.
    let (code, _, _) =
        run(federation(&config, &["sync", "--once"])
            .env("FEDERATION_SYNC_CRASH_AT", "after_rename"))
        .await;
    assert_eq!(code, None);
    let partners = tfvars::parse(&read(&env.tfvars), TfvarsFormat::Hcl).unwrap();
    assert_eq!(partners.keys().collect::<Vec<_>>(), ["fra", "gbr"]);
    assert!(
        temp_files(env.dir.path()).is_empty(),
        "stale temp files are cleaned up"
    );

    // A normal run: nothing left to do for the file, Keycloak gets gbr-idp.
    let (code, out, err) = run(&mut federation(&config, &["sync", "--once"])).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("keycloak  success"), "{out}");
    assert!(env.stub.idp(REALM, "gbr-idp").is_some());
    assert!(temp_files(env.dir.path()).is_empty());
}

#[tokio::test]
async fn drift_command_exit_status_json_fix_and_dry_run() {
    let env = sync_env("").await;
    let app = &env.app;
    approved_live(app, "FRA").await;
    let config = write_config(&env);

    // Drift: exit 1, each item listed.
    let (code, out, err) = run(&mut federation(&config, &["drift"])).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("spoke_without_idp") && out.contains("FRA"),
        "{out}"
    );
    assert!(out.contains("tfvars_file_missing"), "{out}");

    let (code, out, _) = run(&mut federation(&config, &["drift", "--json"])).await;
    assert_eq!(code, Some(1));
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["clean"], false);
    assert_eq!(report["counts"]["spoke_without_idp"], 1);

    // Dry run: the plan, nothing done.
    let (code, out, _) = run(&mut federation(&config, &["drift", "--dry-run"])).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("create fra-idp"), "{out}");
    assert!(out.contains("tfvars: write"), "{out}");
    assert!(!env.tfvars.exists());
    assert!(env.stub.writes().is_empty());

    // Fix: reconciles, then clean, exit 0.
    let (code, out, err) = run(&mut federation(&config, &["drift", "--fix"])).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("created fra-idp"), "{out}");
    assert!(out.contains("no drift"), "{out}");
    let (code, out, _) = run(&mut federation(&config, &["drift"])).await;
    assert_eq!(code, Some(0), "{out}");
    let (code, out, _) = run(&mut federation(&config, &["drift", "--dry-run", "--json"])).await;
    assert_eq!(code, Some(0), "{out}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["keycloak"]["changes"], serde_json::json!([]));

    // Keycloak unreachable: the report says so and is not clean.
    env.stub.set_failing(true);
    let (code, out, _) = run(&mut federation(&config, &["drift"])).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not checked: keycloak"), "{out}");
    for secret in ["stub-client-secret", ADMIN_KEY] {
        assert!(!out.contains(secret));
    }

    // check-config shows the sync settings, never the secret.
    let (code, out, _) = run(&mut federation(&config, &["check-config"])).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("sync keycloak:") && out.contains("realm hub"),
        "{out}"
    );
    assert!(!out.contains("stub-client-secret"), "{out}");
}

#[tokio::test]
async fn legacy_partner_idps_are_reported_and_left_alone_until_adopted() {
    let env = sync_env("").await;
    let app = &env.app;
    approved_live(app, "FRA").await;
    // Legacy partners made by hand: no spoke claims ALB or AUT; DEU is
    // approved but its alias is taken. `google` is no partner at all.
    for (alias, issuer) in [
        ("alb-idp", "https://alb.legacy"),
        ("aut-idp", "https://aut.legacy"),
        ("deu-idp", "https://deu.legacy"),
        ("google", "https://google"),
    ] {
        env.stub.insert_idp(
            REALM,
            serde_json::json!({"alias": alias, "providerId": "oidc", "enabled": true,
                               "config": {"issuer": issuer}}),
        );
    }
    approved_live(app, "DEU").await;
    let config = write_config(&env);

    // Each legacy partner on its own line, the taken alias as before.
    let (code, out, err) = run(&mut federation(&config, &["drift", "--fix"])).await;
    assert_eq!(code, Some(1), "{out}{err}");
    let legacy: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("unmanaged_partner_idp"))
        .collect();
    assert_eq!(legacy.len(), 2, "{out}");
    assert!(legacy[0].contains("alb-idp") && legacy[0].contains("--adopt ALB"));
    assert!(legacy[1].contains("aut-idp"), "{out}");
    assert!(out.contains("spoke_without_idp") && out.contains("DEU"));
    // The fix wrote only FRA's IdP: the unmanaged ones are untouched.
    let written: Vec<String> = env.stub.writes().into_iter().map(|w| w.alias).collect();
    assert_eq!(written, ["fra-idp"]);
    for (alias, issuer) in [
        ("alb-idp", "https://alb.legacy"),
        ("deu-idp", "https://deu.legacy"),
    ] {
        assert_eq!(
            env.stub.idp(REALM, alias).unwrap()["config"]["issuer"],
            issuer
        );
    }

    // Adopting DEU: the marker alone; the fix then takes it over.
    env.stub.clear_writes();
    let (code, out, err) = run(&mut federation(
        &config,
        &["drift", "--adopt", "deu", "--json"],
    ))
    .await;
    assert_eq!(code, Some(1), "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["adopted"]["outcome"], "adopted", "{v}");
    assert_eq!(v["adopted"]["spoke"], "approved");
    assert_eq!(v["drift"]["counts"]["unmanaged_partner_idp"], 2);
    let deu = env.stub.idp(REALM, "deu-idp").unwrap();
    assert_eq!(deu["config"]["federation.managedBy"], "federation-sync");
    assert_eq!(deu["config"]["issuer"], "https://deu.legacy");
    let (code, out, err) = run(&mut federation(&config, &["drift", "--fix"])).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("updated deu-idp"), "{out}");
    assert_ne!(
        env.stub.idp(REALM, "deu-idp").unwrap()["config"]["issuer"],
        "https://deu.legacy"
    );
    assert!(!out.contains("spoke_without_idp"), "{out}");

    // Adopting ALB, which no spoke claims: the fix deletes it, AUT stays.
    let (code, out, err) = run(&mut federation(
        &config,
        &["drift", "--adopt", "ALB", "--fix"],
    ))
    .await;
    assert!(
        out.contains("adopted alb-idp") && out.contains("deletes it"),
        "{out}{err}"
    );
    assert!(out.contains("deleted alb-idp"), "{out}");
    assert_eq!(code, Some(1), "AUT is still there: {out}");
    assert!(env.stub.idp(REALM, "alb-idp").is_none());
    assert_eq!(
        env.stub.idp(REALM, "aut-idp").unwrap()["config"]["issuer"],
        "https://aut.legacy"
    );
    assert!(env.stub.idp(REALM, "google").is_some());
    let writes = env.stub.writes();
    assert!(
        writes
            .iter()
            .all(|w| w.alias != "aut-idp" && w.alias != "google"),
        "{writes:?}"
    );

    // Adopting again is a no-op; a bad code or a missing IdP is refused.
    env.stub.clear_writes();
    let (_, out, _) = run(&mut federation(&config, &["drift", "--adopt", "DEU"])).await;
    assert!(out.contains("deu-idp is already managed"), "{out}");
    assert!(env.stub.writes().is_empty());
    for (bad, says) in [
        ("FR1", "not an instance code"),
        ("BEL", "no identity provider bel-idp"),
    ] {
        let (code, out, err) = run(&mut federation(&config, &["drift", "--adopt", bad])).await;
        assert_eq!(code, Some(1), "{out}{err}");
        assert!(err.contains(says), "{err}");
    }
    assert!(env.stub.writes().is_empty());
}
