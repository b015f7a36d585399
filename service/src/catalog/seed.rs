//! `config/projects.yaml`: projects to seed the catalog with at start.
//!
//! Same rules as the REST API ([`super`]), plus unique slugs across
//! the file. Every problem is reported with file, line, column and field.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{ProjectInput, ProjectSpec};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedFile {
    #[serde(default)]
    projects: Vec<Spanned<SeedProject>>,
}

/// Each field spanned, so a rule broken by a value points at its line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedProject {
    #[serde(alias = "slug")]
    project_slug: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    hub_url: Option<Spanned<String>>,
    mesh_namespace: Option<Spanned<String>>,
    tags: Option<Spanned<Vec<String>>>,
    allow_fanout: Option<Spanned<Vec<String>>>,
}

/// One problem in the seed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedError {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    /// e.g. `projects[1].hub_url`; empty for a file-level problem.
    pub field: String,
    pub message: String,
}

impl fmt::Display for SeedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in the projects file.
#[derive(Debug, Clone)]
pub struct SeedErrors(pub Vec<SeedError>);

impl fmt::Display for SeedErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        common::config::write_problems(f, "invalid projects file", &self.0)
    }
}

impl std::error::Error for SeedErrors {}

/// Reads and validates the file.
pub fn load(path: &Path) -> Result<Vec<ProjectSpec>, SeedErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        SeedErrors(vec![SeedError {
            file: path.to_owned(),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("cannot read: {e}"),
        }])
    })?;
    parse(path, &text)
}

/// Validates YAML text; `path` is only used in messages.
pub fn parse(path: &Path, text: &str) -> Result<Vec<ProjectSpec>, SeedErrors> {
    let options = serde_saphyr::options! { with_snippet: false };
    let file: SeedFile = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let loc = e.location();
        SeedErrors(vec![SeedError {
            file: path.to_owned(),
            line: loc.map_or(0, |l| l.line()),
            column: loc.map_or(0, |l| l.column()),
            field: String::new(),
            message: first_line(&e.to_string()),
        }])
    })?;

    let mut errors = Vec::new();
    let mut specs = Vec::new();
    let mut seen: HashMap<String, (usize, u64)> = HashMap::new();
    for (i, entry) in file.projects.into_iter().enumerate() {
        let at = |field: &str, line: u64, column: u64, message: String| SeedError {
            file: path.to_owned(),
            line,
            column,
            field: format!(
                "projects[{i}]{}{field}",
                if field.is_empty() { "" } else { "." }
            ),
            message,
        };
        let (entry_line, entry_col) = (entry.referenced.line(), entry.referenced.column());
        let p = entry.value;
        let pos = |s: Option<(u64, u64)>| s.unwrap_or((entry_line, entry_col));
        let span_of = |field: &str| -> Option<(u64, u64)> {
            let loc = match field {
                "project_slug" => p.project_slug.as_ref().map(|s| s.referenced),
                "name" => p.name.as_ref().map(|s| s.referenced),
                "hub_url" => p.hub_url.as_ref().map(|s| s.referenced),
                "mesh_namespace" => p.mesh_namespace.as_ref().map(|s| s.referenced),
                "tags" => p.tags.as_ref().map(|s| s.referenced),
                "allow_fanout" => p.allow_fanout.as_ref().map(|s| s.referenced),
                _ => None,
            }?;
            Some((loc.line(), loc.column()))
        };

        let mut missing = false;
        for (field, present) in [
            ("project_slug", p.project_slug.is_some()),
            ("name", p.name.is_some()),
            ("hub_url", p.hub_url.is_some()),
        ] {
            if !present {
                errors.push(at(field, entry_line, entry_col, "is required".into()));
                missing = true;
            }
        }
        if missing {
            continue;
        }
        let input = ProjectInput {
            project_slug: p.project_slug.as_ref().map(|s| s.value.clone()),
            slug: None,
            name: p.name.as_ref().map(|s| s.value.clone()),
            hub_url: p
                .hub_url
                .as_ref()
                .map(|s| s.value.clone())
                .unwrap_or_default(),
            mesh_namespace: p.mesh_namespace.as_ref().map(|s| s.value.clone()),
            // The file is the source of truth for what it lists: an omitted
            // list means empty, not "keep".
            tags: Some(p.tags.as_ref().map(|s| s.value.clone()).unwrap_or_default()),
            allow_fanout: Some(
                p.allow_fanout
                    .as_ref()
                    .map(|s| s.value.clone())
                    .unwrap_or_default(),
            ),
        };
        let (slug_line, slug_col) = pos(span_of("project_slug"));
        let slug = input.project_slug.clone().unwrap_or_default();
        let duplicate = match seen.get(&slug) {
            Some((first, first_line)) => {
                errors.push(at(
                    "project_slug",
                    slug_line,
                    slug_col,
                    format!(
                        "duplicate slug {slug:?}, already used by projects[{first}] at line {first_line}"
                    ),
                ));
                true
            }
            None => {
                seen.insert(slug, (i, slug_line));
                false
            }
        };
        match input.into_spec() {
            Ok(spec) if !duplicate => specs.push(spec),
            Ok(_) => {}
            Err(field_errors) => {
                for fe in field_errors {
                    let top = fe.field.split(['[', '.']).next().unwrap_or_default();
                    let (line, col) = pos(span_of(top));
                    errors.push(at(&fe.field, line, col, fe.message));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(specs)
    } else {
        errors.sort_by_key(|e| (e.line, e.column));
        Err(SeedErrors(errors))
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(yaml: &str) -> Vec<String> {
        parse(Path::new("projects.yaml"), yaml)
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const GOOD: &str = "\
projects:
  - project_slug: commandcenter
    name: Main CommandCenter
    hub_url: http://localhost:9001
    mesh_namespace: hub.commandcenter
    tags: [primary, production]
    allow_fanout: [hub.projecta, hub.projectb]
  - project_slug: projecta
    name: Project A CommandCenter
    hub_url: http://localhost:9002
    mesh_namespace: hub.projecta
    tags: [client, staging]
    allow_fanout: []
";

    #[test]
    fn the_original_example_file_is_accepted() {
        let specs = parse(Path::new("p.yaml"), GOOD).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(
            specs[0].allow_fanout.as_deref().unwrap(),
            ["hub.projecta", "hub.projectb"]
        );
    }

    #[test]
    fn an_empty_file_seeds_nothing() {
        assert!(parse(Path::new("p.yaml"), "projects: []\n")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn each_problem_names_file_line_and_field() {
        let yaml = "\
projects:
  - project_slug: alpha
    name: A
    hub_url: ftp://alpha
    mesh_namespace: hub.beta
  - project_slug: alpha
    name: A again
    hub_url: http://alpha
  - name: no slug
    hub_url: http://x
  - project_slug: Bad_Slug
    name: B
    hub_url: http://b
    tags: ['']
";
        assert_eq!(
            errs(yaml),
            [
                "projects.yaml:4:14: projects[0].hub_url: must be an http(s) URL: a host name, an IPv4 address or an IPv6 address in brackets, an optional port, path and query; no credentials or fragment; at most 2048 characters",
                "projects.yaml:5:21: projects[0].mesh_namespace: must be \"hub.alpha\", the namespace of alpha",
                "projects.yaml:6:19: projects[1].project_slug: duplicate slug \"alpha\", already used by projects[0] at line 2",
                "projects.yaml:9:5: projects[2].project_slug: is required",
                "projects.yaml:11:19: projects[3].project_slug: must be a slug: lower-case letters, digits and inner hyphens, 1 to 63 characters",
                "projects.yaml:14:11: projects[3].tags[0]: must be 1 to 64 characters, without control characters or white space at either end",
            ]
        );
    }

    #[test]
    fn unknown_fields_and_bad_yaml_are_located() {
        let e = errs(
            "projects:\n  - project_slug: a\n    name: A\n    hub_url: http://a\n    colour: red\n",
        );
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("projects.yaml:5:"), "{e:?}");
        assert!(e[0].contains("colour"), "{e:?}");

        let e = errs("projects:\n  - project_slug: [\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("projects.yaml:"), "{e:?}");
        assert!(!e[0].starts_with("projects.yaml:0:"), "{e:?}");
    }
}
