//! The module map has no cycles: a module reached from another never
//! reaches back. Read from the source, as `crate::<module>` paths (also in
//! grouped `use crate::{a, b}`), comments left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module → the top-level modules it names.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let single = Regex::new(r"crate::([a-z_][a-z0-9_]*)").unwrap();
    let grouped = Regex::new(r"crate::\{([^}]*)\}").unwrap();
    let comment = Regex::new(r"(?m)//.*$").unwrap();
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let text = comment.replace_all(&text, "");
        let mut named: BTreeSet<String> = single
            .captures_iter(&text)
            .map(|c| c[1].to_owned())
            .collect();
        for group in grouped.captures_iter(&text) {
            for item in group[1].split(',') {
                let head = item.trim().split("::").next().unwrap_or("").trim();
                if !head.is_empty() && head != "self" {
                    named.insert(head.to_owned());
                }
            }
        }
        named.remove(&module);
        graph.entry(module).or_default().extend(named);
    }
    graph
}

/// A path from `from` back to itself, if there is one.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![(from.to_owned(), vec![from.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in graph.get(&at).into_iter().flatten() {
            if next == from {
                let mut cycle = path.clone();
                cycle.push(from.to_owned());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn no_module_of_the_service_depends_on_itself_through_others() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(graph.len() > 10, "read too few modules: {graph:?}");
    assert!(
        graph["app"].contains("api") && graph["api"].contains("state"),
        "the reader misses known edges: {graph:?}"
    );
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_through(&graph, m))
        .map(|c| c.join(" → "))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_reader_finds_a_cycle_when_there_is_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("a")).unwrap();
    std::fs::write(dir.path().join("a/mod.rs"), "use crate::{b::X, c};").unwrap();
    std::fs::write(
        dir.path().join("b.rs"),
        "// crate::c\nfn f() { crate::a::g() }",
    )
    .unwrap();
    std::fs::write(dir.path().join("c.rs"), "").unwrap();
    let graph = module_graph(dir.path());
    assert_eq!(
        cycle_through(&graph, "a"),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
    assert_eq!(cycle_through(&graph, "c"), None);
}
