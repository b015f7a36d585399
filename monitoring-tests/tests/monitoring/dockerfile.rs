//! The Dockerfile against the workspace, since no Docker engine runs here:
//! it copies every workspace member and whatever the code embeds at compile
//! time, builds binaries that exist, runs them as a non-root user, and the
//! build context (.dockerignore) keeps what it copies.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use dockerfile_parser::{substitute, Dockerfile, ShellOrExecExpr, Stage};

use crate::support::*;

/// The Dockerfile, parsed by `dockerfile-parser` (continuation lines joined,
/// comments dropped, instructions split into stages).
fn dockerfile() -> Dockerfile {
    Dockerfile::parse(&read("Dockerfile")).unwrap_or_else(|e| panic!("Dockerfile: {e}"))
}

/// The global `ARG`s (before the first `FROM`) with their defaults.
fn args(file: &Dockerfile) -> HashMap<&str, &str> {
    file.global_args
        .iter()
        .filter_map(|a| Some((a.name.as_ref(), a.value.as_ref()?.as_ref())))
        .collect()
}

/// `s` with the global `ARG`s substituted (unknown ones left as written).
fn expand(s: &str, args: &HashMap<&str, &str>) -> String {
    substitute(s, args, &mut HashSet::new(), 16).unwrap_or_else(|| s.to_owned())
}

/// The stage's `FROM` image, variables resolved.
fn image(stage: &Stage<'_>, file: &Dockerfile) -> String {
    let from = stage
        .instructions
        .iter()
        .find_map(|i| i.as_from())
        .expect("a stage begins with FROM");
    from.image_parsed
        .resolve_vars(file)
        .map(|i| i.to_string())
        .unwrap_or_else(|| from.image.to_string())
}

/// The arguments of a stage's instructions named `op` that the parser does
/// not model (USER, HEALTHCHECK, ...), continuation lines joined.
fn misc(stage: &Stage<'_>, op: &str) -> Vec<String> {
    stage
        .instructions
        .iter()
        .filter_map(|i| i.as_misc())
        .filter(|m| m.instruction.as_ref().eq_ignore_ascii_case(op))
        .map(|m| m.arguments.to_string().trim().to_owned())
        .collect()
}

/// The commands of a stage's `RUN`s (shell form, or exec form joined).
fn runs(stage: &Stage<'_>) -> Vec<String> {
    stage
        .instructions
        .iter()
        .filter_map(|i| i.as_run())
        .map(|r| shell_or_exec(&r.expr))
        .collect()
}

fn shell_or_exec(expr: &ShellOrExecExpr) -> String {
    match expr {
        ShellOrExecExpr::Shell(s) => s.to_string(),
        ShellOrExecExpr::Exec(a) => a.as_str_vec().join(" "),
    }
}

/// A stage's `COPY`s: the `--from` stage (if any), sources and destination.
fn copies(stage: &Stage<'_>) -> Vec<(Option<String>, Vec<String>, String)> {
    stage
        .instructions
        .iter()
        .filter_map(|i| i.as_copy())
        .map(|c| {
            let from = c
                .flags
                .iter()
                .find(|f| f.name.as_ref() == "from")
                .map(|f| f.value.to_string());
            let sources = c.sources.iter().map(|s| s.to_string()).collect();
            (from, sources, c.destination.to_string())
        })
        .collect()
}

fn workspace_members() -> Vec<String> {
    let manifest = read("Cargo.toml");
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("workspace members");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

/// `[[bin]] name = "..."` of a member's manifest.
fn binaries(member: &str) -> Vec<String> {
    let manifest = read(&format!("{member}/Cargo.toml"));
    let mut out = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin {
            if let Some(v) = line
                .strip_prefix("name")
                .and_then(|r| r.trim_start().strip_prefix('='))
            {
                out.push(v.trim().trim_matches('"').to_owned());
            }
        }
    }
    out
}

/// Files the code reads at compile time from outside its own crate:
/// `sqlx::migrate!` (relative to the crate) and `include_str!`/`include_bytes!`
/// (relative to the source file), outside tests.
fn compile_time_inputs(member: &str) -> BTreeSet<String> {
    let root = repo_root();
    let mut out = BTreeSet::new();
    let mut stack = vec![root.join(member).join("src")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs")
                || path.file_name().is_some_and(|n| n == "tests.rs")
            {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            for (macro_, base) in [
                ("migrate!(\"", root.join(member)),
                ("include_str!(\"", path.parent().expect("dir").to_owned()),
                ("include_bytes!(\"", path.parent().expect("dir").to_owned()),
            ] {
                for (i, _) in text.match_indices(macro_) {
                    let arg = &text[i + macro_.len()..];
                    let arg = &arg[..arg.find('"').unwrap_or(0)];
                    let target = normalize(&base.join(arg));
                    if let Ok(rel) = target.strip_prefix(&root) {
                        out.insert(rel.to_string_lossy().into_owned());
                    }
                }
            }
        }
    }
    out
}

fn normalize(p: &Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Sources of a stage's COPY instructions from the build context (not `--from`).
fn copied(stage: &Stage<'_>) -> Vec<String> {
    copies(stage)
        .into_iter()
        .filter(|(from, _, _)| from.is_none())
        .flat_map(|(_, sources, _)| sources)
        .collect()
}

fn is_copied(path: &str, sources: &[String]) -> bool {
    sources.iter().any(|s| {
        let s = s.trim_end_matches('/');
        path == s || path.starts_with(&format!("{s}/"))
    })
}

#[test]
fn the_build_stage_has_everything_cargo_needs() {
    let file = dockerfile();
    let stages = file.iter_stages().collect::<Vec<_>>();
    assert!(stages.len() >= 2, "expected a multi-stage build");
    let build = &stages[0];
    let from = image(build, &file);
    let image_version = from
        .strip_prefix("rust:")
        .and_then(|r| r.split(['-', ' ']).next())
        .unwrap_or_else(|| panic!("build stage is not a rust image: {from}"));
    let required = read("Cargo.toml")
        .lines()
        .find_map(|l| {
            l.trim().strip_prefix("rust-version").map(|r| {
                r.trim_start_matches([' ', '='])
                    .trim_matches('"')
                    .to_owned()
            })
        })
        .expect("workspace rust-version");
    assert!(
        version_at_least(image_version, &required),
        "rust:{image_version} is older than the workspace's rust-version {required}"
    );
    let sources = copied(build);
    for path in ["Cargo.toml", "Cargo.lock"] {
        assert!(
            is_copied(path, &sources),
            "{path} is not copied: {sources:?}"
        );
    }
    for member in workspace_members() {
        assert!(
            is_copied(&member, &sources),
            "workspace member {member} is not copied: {sources:?}"
        );
        for input in compile_time_inputs(&member) {
            assert!(
                is_copied(&input, &sources),
                "{member} embeds {input} at compile time; not copied"
            );
        }
    }
    for s in &sources {
        assert!(repo_path(s).exists(), "COPY {s}: no such path");
    }
}

#[test]
fn the_image_holds_both_binaries_and_runs_as_non_root() {
    let file = dockerfile();
    let args = args(&file);
    let stages = file.iter_stages().collect::<Vec<_>>();
    let build = &stages[0];
    let runtime = stages.last().expect("runtime stage");
    let bins: BTreeSet<String> = ["service", "hub-agent"]
        .iter()
        .flat_map(|m| binaries(m))
        .collect();
    assert_eq!(
        bins,
        BTreeSet::from(["federation".to_owned(), "hub-agent".to_owned()])
    );
    let cargo = runs(build)
        .into_iter()
        .find(|r| r.contains("cargo build"))
        .expect("a cargo build");
    assert!(
        cargo.contains("--release") && cargo.contains("--locked"),
        "{cargo}"
    );
    let build_name = build.name.clone().expect("the build stage is named");
    for bin in &bins {
        assert!(
            cargo.contains(&format!("--bin {bin}")),
            "cargo build does not build {bin}: {cargo}"
        );
        assert!(
            cargo.contains(&format!("target/release/{bin}")),
            "{bin} is not taken from target/release"
        );
        let copied_in = copies(runtime).iter().any(|(from, sources, _)| {
            from.as_deref() == Some(build_name.as_str())
                && sources.iter().any(|s| s.ends_with(&format!("/{bin}")))
        });
        assert!(copied_in, "{bin} is not copied into the runtime image");
    }
    let user = misc(runtime, "USER")
        .last()
        .map(|u| expand(u, &args))
        .expect("a USER in the runtime stage");
    let name = user.split(':').next().unwrap_or_default();
    assert!(!["root", "0", ""].contains(&name), "runs as {user}");
    let entry = runtime
        .instructions
        .iter()
        .rev()
        .find_map(|i| i.as_entrypoint())
        .expect("an ENTRYPOINT");
    let entry = entry
        .expr
        .as_exec()
        .map(|a| a.as_str_vec())
        .expect("ENTRYPOINT in exec form");
    assert_eq!(entry, ["federation"]);
    let health = misc(runtime, "HEALTHCHECK").join(" ");
    assert!(
        health.contains("/ready"),
        "HEALTHCHECK should probe /ready: {health}"
    );
    // Installed for that health check.
    assert!(
        runs(runtime).iter().any(|r| r.contains("curl")),
        "curl is not installed"
    );
    // The default settings file the binary looks for, and the seed file it names.
    for file in ["config/federation.yaml", "config/projects.yaml"] {
        assert!(
            copied(runtime).iter().any(|c| c == file),
            "{file} is not in the image"
        );
    }
}

#[test]
fn the_build_context_keeps_what_the_dockerfile_copies() {
    let ignore = read(".dockerignore");
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in ["target", ".git"] {
        assert!(
            patterns.iter().any(|p| p.trim_end_matches('/') == needed),
            ".dockerignore does not exclude {needed}"
        );
    }
    let file = dockerfile();
    let mut sources = Vec::new();
    for stage in file.iter_stages() {
        sources.extend(copied(&stage));
    }
    for s in sources {
        for p in &patterns {
            let p = p.trim_end_matches('/');
            let hit = s == p || s.starts_with(&format!("{p}/"));
            assert!(!hit, "COPY {s} but .dockerignore excludes it ({p})");
        }
    }
}

fn version_at_least(have: &str, need: &str) -> bool {
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    let (mut a, mut b) = (parse(have), parse(need));
    let n = a.len().max(b.len());
    a.resize(n, 0);
    b.resize(n, 0);
    a >= b
}

#[test]
fn versions_compare_numerically() {
    assert!(version_at_least("1.95", "1.85"));
    assert!(version_at_least("1.85", "1.85.0"));
    assert!(!version_at_least("1.9", "1.85"));
}
