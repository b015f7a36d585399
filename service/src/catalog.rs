//! The project catalog's domain: what a project is, and the rules an input
//! must obey before it reaches the database. Used by the REST API and by the
//! seed file alike, so both refuse the same things with the same words.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::{Validate, ValidationError};

use protocol::heartbeat::is_valid_hub_url;
use protocol::naming::{is_valid_slug, mesh_namespace, namespace_matches};

/// Limits on free-form fields.
pub const MAX_NAME_LEN: usize = 200;
pub const MAX_TAGS: usize = 32;
pub const MAX_TAG_LEN: usize = 64;
pub const MAX_FANOUT: usize = 1000;

/// A project's liveness as the catalog sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum ProjectStatus {
    Online,
    Degraded,
    Offline,
}

impl ProjectStatus {
    pub const ALL: [ProjectStatus; 3] = [
        ProjectStatus::Online,
        ProjectStatus::Degraded,
        ProjectStatus::Offline,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProjectStatus::Online => "online",
            ProjectStatus::Degraded => "degraded",
            ProjectStatus::Offline => "offline",
        }
    }
}

impl From<protocol::HubStatus> for ProjectStatus {
    fn from(s: protocol::HubStatus) -> Self {
        match s {
            protocol::HubStatus::Online => ProjectStatus::Online,
            protocol::HubStatus::Degraded => ProjectStatus::Degraded,
            protocol::HubStatus::Offline => ProjectStatus::Offline,
        }
    }
}

/// A project as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct Project {
    pub id: i64,
    #[schema(example = "alpha")]
    pub slug: String,
    #[schema(example = "Alpha hub")]
    pub name: String,
    #[schema(example = "http://alpha:9001")]
    pub hub_url: String,
    #[schema(example = "hub.alpha")]
    pub mesh_namespace: String,
    pub tags: Vec<String>,
    /// Mesh namespaces this hub may fan out to.
    pub allow_fanout: Vec<String>,
    pub status: ProjectStatus,
    /// When `status` last changed.
    pub status_changed_at: DateTime<Utc>,
    /// Service receive time of the latest heartbeat.
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// The hub's own clock in its latest heartbeat (diagnostic only).
    pub hub_timestamp: Option<DateTime<Utc>>,
    /// Agent that sent the latest heartbeat, its version, sequence number
    /// and publishing interval.
    pub agent_id: Option<String>,
    pub agent_version: Option<String>,
    pub heartbeat_seq: Option<i64>,
    pub heartbeat_interval_s: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Grows with every update of the row; with `id` it orders two copies
    /// of a project (see `catalog_view`). Not served.
    #[serde(skip)]
    pub revision: i64,
}

/// Register or update a project (`POST /api/fed/projects`). Same fields as
/// the original service; `slug` is accepted for `project_slug`. On an
/// update, omitted optional fields keep their stored values, so an agent
/// re-registering at start never wipes what an operator set.
#[derive(Debug, Clone, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct ProjectInput {
    #[serde(alias = "slug")]
    #[validate(custom(function = "check_slug"))]
    #[schema(example = "alpha")]
    pub project_slug: String,
    /// Display name; the slug when a new project omits it.
    #[serde(default)]
    #[validate(custom(function = "check_name"))]
    #[schema(example = "Alpha hub")]
    pub name: Option<String>,
    #[validate(custom(function = "check_hub_url"))]
    #[schema(example = "http://alpha:9001")]
    pub hub_url: String,
    /// Must be `hub.<project_slug>`; derived when omitted.
    #[serde(default)]
    #[schema(example = "hub.alpha")]
    pub mesh_namespace: Option<String>,
    /// Empty for a new project when omitted; kept on update.
    #[serde(default)]
    #[validate(custom(function = "check_tags"))]
    pub tags: Option<Vec<String>>,
    /// Mesh namespaces (`hub.<slug>`) this hub may fan out to. Empty for a
    /// new project when omitted; kept on update.
    #[serde(default)]
    #[validate(custom(function = "check_fanout"))]
    pub allow_fanout: Option<Vec<String>>,
}

/// Replace a project's attributes (`PUT /api/fed/projects/{slug}`). The slug
/// comes from the path; if the body names one, it must be the same.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectUpdate {
    #[serde(default, alias = "slug")]
    pub project_slug: Option<String>,
    pub name: String,
    pub hub_url: String,
    #[serde(default)]
    pub mesh_namespace: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub allow_fanout: Vec<String>,
}

impl ProjectUpdate {
    /// The equivalent full input for `slug`, or the error if the body names
    /// another slug.
    pub fn for_slug(self, slug: &str) -> Result<ProjectInput, Vec<FieldError>> {
        if let Some(body_slug) = &self.project_slug {
            if body_slug != slug {
                return Err(vec![FieldError::new(
                    "project_slug",
                    format!("must match the slug in the path ({slug}) or be omitted"),
                )]);
            }
        }
        Ok(ProjectInput {
            project_slug: slug.to_owned(),
            name: Some(self.name),
            hub_url: self.hub_url,
            mesh_namespace: self.mesh_namespace,
            tags: Some(self.tags),
            allow_fanout: Some(self.allow_fanout),
        })
    }
}

/// A validated project definition, ready to store. `None` fields are left
/// as they are on an existing project (and take their defaults on a new one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectSpec {
    pub slug: String,
    pub name: Option<String>,
    pub hub_url: String,
    pub mesh_namespace: String,
    pub tags: Option<Vec<String>>,
    pub allow_fanout: Option<Vec<String>>,
}

/// One field that broke a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Path of the field, e.g. `hub_url` or `tags[2]`.
    #[schema(example = "hub_url")]
    pub field: String,
    #[schema(example = "must be an http(s) URL with a host and no credentials")]
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl ProjectInput {
    /// Checks every rule and reports every broken one.
    pub fn into_spec(self) -> Result<ProjectSpec, Vec<FieldError>> {
        let mut errors = match self.validate() {
            Ok(()) => Vec::new(),
            Err(e) => field_errors(&e),
        };
        let namespace = match &self.mesh_namespace {
            Some(ns) => {
                if is_valid_slug(&self.project_slug) && !namespace_matches(&self.project_slug, ns) {
                    errors.push(FieldError::new(
                        "mesh_namespace",
                        format!("must be \"{}\"", mesh_namespace(&self.project_slug)),
                    ));
                }
                ns.clone()
            }
            None => mesh_namespace(&self.project_slug),
        };
        if !errors.is_empty() {
            errors.sort_by(|a, b| a.field.cmp(&b.field));
            return Err(errors);
        }
        Ok(ProjectSpec {
            slug: self.project_slug,
            name: self.name.map(|n| n.trim().to_owned()),
            hub_url: self.hub_url,
            mesh_namespace: namespace,
            tags: self.tags,
            allow_fanout: self.allow_fanout,
        })
    }
}

/// Flattens validator's errors into our field list.
pub fn field_errors(e: &validator::ValidationErrors) -> Vec<FieldError> {
    let mut out = Vec::new();
    for (field, errs) in e.field_errors() {
        for err in errs {
            out.push(FieldError::new(
                field.to_string(),
                crate::config::describe_validation(err),
            ));
        }
    }
    out
}

fn rule(code: &'static str, message: String) -> ValidationError {
    ValidationError::new(code).with_message(message.into())
}

fn check_slug(slug: &str) -> Result<(), ValidationError> {
    if is_valid_slug(slug) {
        Ok(())
    } else {
        Err(rule("slug", protocol::NamingError::Slug.to_string()))
    }
}

fn check_name(name: &str) -> Result<(), ValidationError> {
    let len = name.trim().chars().count();
    if len == 0 || len > MAX_NAME_LEN {
        Err(rule(
            "name",
            format!("must be 1 to {MAX_NAME_LEN} characters, not blank"),
        ))
    } else {
        Ok(())
    }
}

fn check_hub_url(url: &str) -> Result<(), ValidationError> {
    if is_valid_hub_url(url) {
        Ok(())
    } else {
        Err(rule(
            "hub_url",
            "must be an http(s) URL with a host and no credentials".into(),
        ))
    }
}

fn check_tags(tags: &[String]) -> Result<(), ValidationError> {
    if tags.len() > MAX_TAGS {
        return Err(rule("tags", format!("at most {MAX_TAGS} tags")));
    }
    for (i, tag) in tags.iter().enumerate() {
        let len = tag.chars().count();
        if tag.trim().is_empty() || tag.trim() != tag || len > MAX_TAG_LEN {
            return Err(rule(
                "tags",
                format!("tags[{i}] must be a non-empty string of at most {MAX_TAG_LEN} characters without surrounding spaces"),
            ));
        }
    }
    Ok(())
}

fn check_fanout(namespaces: &[String]) -> Result<(), ValidationError> {
    if namespaces.len() > MAX_FANOUT {
        return Err(rule(
            "allow_fanout",
            format!("at most {MAX_FANOUT} entries"),
        ));
    }
    for (i, ns) in namespaces.iter().enumerate() {
        let ok = ns.strip_prefix("hub.").is_some_and(is_valid_slug);
        if !ok {
            return Err(rule(
                "allow_fanout",
                format!("allow_fanout[{i}] must be a mesh namespace hub.<slug>"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ProjectInput {
        ProjectInput {
            project_slug: "alpha".into(),
            name: Some("Alpha".into()),
            hub_url: "http://alpha:9001".into(),
            mesh_namespace: Some("hub.alpha".into()),
            tags: Some(vec!["prod".into()]),
            allow_fanout: Some(vec!["hub.beta".into()]),
        }
    }

    #[test]
    fn a_valid_input_becomes_a_spec() {
        let spec = input().into_spec().unwrap();
        assert_eq!(spec.slug, "alpha");
        assert_eq!(spec.mesh_namespace, "hub.alpha");
    }

    #[test]
    fn the_namespace_is_derived_when_omitted() {
        let spec = ProjectInput {
            mesh_namespace: None,
            ..input()
        }
        .into_spec()
        .unwrap();
        assert_eq!(spec.mesh_namespace, "hub.alpha");
    }

    #[test]
    fn every_broken_rule_is_reported_at_once() {
        let bad = ProjectInput {
            project_slug: "Alpha!".into(),
            name: Some("  ".into()),
            hub_url: "ftp://x".into(),
            mesh_namespace: Some("hub.other".into()),
            tags: Some(vec!["".into()]),
            allow_fanout: Some(vec!["beta".into()]),
        };
        let fields: Vec<String> = bad
            .into_spec()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            ["allow_fanout", "hub_url", "name", "project_slug", "tags"]
        );
    }

    #[test]
    fn a_namespace_for_another_slug_is_refused() {
        let errs = ProjectInput {
            mesh_namespace: Some("hub.beta".into()),
            ..input()
        }
        .into_spec()
        .unwrap_err();
        assert_eq!(
            errs,
            [FieldError::new("mesh_namespace", "must be \"hub.alpha\"")]
        );
    }

    #[test]
    fn an_update_naming_another_slug_is_refused() {
        let upd: ProjectUpdate =
            serde_json::from_str(r#"{"project_slug":"beta","name":"x","hub_url":"http://x"}"#)
                .unwrap();
        assert_eq!(upd.for_slug("alpha").unwrap_err()[0].field, "project_slug");
    }
}
