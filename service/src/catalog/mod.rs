//! The project catalog's domain: what a project is, and the rules an input
//! must obey before it reaches the database. Used by the REST API and by the
//! seed file alike, so both refuse the same things with the same words.

pub mod metrics;
pub mod seed;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{AllOfBuilder, Array, Object, ObjectBuilder, OneOfBuilder, Schema};
use utoipa::ToSchema;

use protocol::naming::{is_valid_slug, mesh_namespace, namespace_matches};

use crate::field_error::{sort_by_field, FieldError};
use crate::rules::{self, Label, Text};

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
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
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
    /// The planned-downtime window the hub is in, `null` when none (see
    /// `PUT /api/fed/projects/{slug}/maintenance`).
    #[schema(value_type = Option<Maintenance>)]
    pub maintenance: Option<sqlx::types::Json<Maintenance>>,
    /// Grows with every update of the row; with `id` it orders two copies
    /// of a project (see `catalog_view`). Not served.
    #[serde(skip)]
    pub revision: i64,
}

/// A planned-downtime window: while it lasts the stale sweeper does not
/// judge the hub's silence; afterwards silence counts from its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Maintenance {
    /// When the window was started.
    pub since: DateTime<Utc>,
    /// When it ends by itself.
    pub until: DateTime<Utc>,
    #[schema(example = "kernel upgrade")]
    pub reason: String,
    /// Who started it: an API key's fingerprint.
    #[schema(example = "sha256:1a2b3c4d")]
    pub by: String,
}

impl Project {
    /// The window, if one is in effect at `now`.
    pub fn maintenance_at(&self, now: DateTime<Utc>) -> Option<&Maintenance> {
        self.maintenance
            .as_ref()
            .map(|m| &m.0)
            .filter(|m| m.until > now)
    }
}

/// Register or update a project (`POST /api/fed/projects`). Same fields as
/// the original service, whose name for `project_slug` was `slug`: give one
/// of the two. On an update, omitted optional fields keep their stored
/// values, so an agent re-registering at start never wipes what an operator
/// set.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectInput {
    /// The project's slug (`slug` is the same field under the original
    /// service's name; give one of the two).
    #[serde(default)]
    #[schema(schema_with = slug_example_schema)]
    pub project_slug: Option<String>,
    /// The original service's name for `project_slug`.
    #[serde(default)]
    #[schema(schema_with = slug_schema)]
    pub slug: Option<String>,
    /// Display name; the slug when a new project omits it.
    #[serde(default)]
    #[schema(schema_with = optional_name_schema)]
    pub name: Option<String>,
    #[schema(schema_with = hub_url_schema)]
    pub hub_url: String,
    /// Must be `hub.<project_slug>`; derived when omitted.
    #[serde(default)]
    #[schema(schema_with = namespace_schema)]
    pub mesh_namespace: Option<String>,
    /// Empty for a new project when omitted; kept on update.
    #[serde(default)]
    #[schema(schema_with = tags_schema)]
    pub tags: Option<Vec<String>>,
    /// Mesh namespaces (`hub.<slug>`) this hub may fan out to. Empty for a
    /// new project when omitted; kept on update.
    #[serde(default)]
    #[schema(schema_with = fanout_schema)]
    pub allow_fanout: Option<Vec<String>>,
}

/// Replace a project's attributes (`PUT /api/fed/projects/{slug}`). The slug
/// comes from the path; if the body names one, it must be the same.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectUpdate {
    /// Optional; when given, the slug in the path.
    #[serde(default)]
    #[schema(schema_with = slug_schema)]
    pub project_slug: Option<String>,
    /// Optional; when given, the slug in the path.
    #[serde(default)]
    #[schema(schema_with = slug_schema)]
    pub slug: Option<String>,
    #[schema(schema_with = name_schema)]
    pub name: String,
    #[schema(schema_with = hub_url_schema)]
    pub hub_url: String,
    /// Must be `hub.<slug>`; derived when omitted.
    #[serde(default)]
    #[schema(schema_with = namespace_schema)]
    pub mesh_namespace: Option<String>,
    #[serde(default)]
    #[schema(schema_with = required_tags_schema)]
    pub tags: Vec<String>,
    #[serde(default)]
    #[schema(schema_with = required_fanout_schema)]
    pub allow_fanout: Vec<String>,
}

impl ProjectUpdate {
    /// The equivalent full input for `slug`, or the error if the body names
    /// another slug.
    pub fn for_slug(self, slug: &str) -> Result<ProjectInput, Vec<FieldError>> {
        let errors: Vec<FieldError> = [("project_slug", &self.project_slug), ("slug", &self.slug)]
            .into_iter()
            .filter(|(_, given)| given.as_deref().is_some_and(|g| g != slug))
            .map(|(field, _)| {
                FieldError::new(
                    field,
                    format!("must be the slug in the path ({slug}) or be left out"),
                )
            })
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ProjectInput {
            project_slug: Some(slug.to_owned()),
            slug: None,
            name: Some(self.name),
            hub_url: self.hub_url,
            mesh_namespace: self.mesh_namespace,
            tags: Some(self.tags),
            allow_fanout: Some(self.allow_fanout),
        })
    }
}

/// A project's display name.
pub const NAME: Text = Text::required(MAX_NAME_LEN);
/// One project tag.
pub const TAG: Label = Label { max: MAX_TAG_LEN };

fn slug_schema() -> Object {
    // Left out when not given, never null: a null would satisfy the
    // document's "one of project_slug and slug is present".
    rules::slug_schema(false)
}

rules::example_schemas! {
    slug_example_schema => slug_schema(), "alpha";
    name_schema => NAME.schema(false), "Alpha hub";
    optional_name_schema => NAME.schema(true), "Alpha hub";
    hub_url_schema => rules::url_schema(false), "http://alpha:9001";
    namespace_schema => rules::namespace_schema(true), "hub.alpha";
}

fn tags_schema() -> Array {
    rules::list_schema(TAG.schema(), MAX_TAGS, true)
}

fn required_tags_schema() -> Array {
    rules::list_schema(TAG.schema(), MAX_TAGS, false)
}

fn fanout_schema() -> Array {
    rules::list_schema(rules::fanout_schema(false), MAX_FANOUT, true)
}

fn required_fanout_schema() -> Array {
    rules::list_schema(rules::fanout_schema(false), MAX_FANOUT, false)
}

/// `ProjectInput` as published: its derived schema, plus what a derive
/// cannot say, that exactly one of `project_slug` and `slug` is given.
pub fn project_input_schema(derived: Schema) -> Schema {
    let one = |field: &str| ObjectBuilder::new().required(field).build();
    AllOfBuilder::new()
        .item(derived)
        .item(
            OneOfBuilder::new()
                .item(one("project_slug"))
                .item(one("slug")),
        )
        .build()
        .into()
}

/// The `tag` filter of the project list, checked like a tag.
pub fn tag_filter_schema() -> Object {
    TAG.schema()
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

impl ProjectInput {
    /// Checks every rule and reports every broken one.
    pub fn into_spec(self) -> Result<ProjectSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        let (slug_field, slug) = match (self.project_slug, self.slug) {
            (Some(s), None) => ("project_slug", Some(s)),
            (None, Some(s)) => ("slug", Some(s)),
            (None, None) => {
                errors.push(FieldError::new(
                    "project_slug",
                    "is required (or slug, the original service's name for it)",
                ));
                ("project_slug", None)
            }
            (Some(s), Some(_)) => {
                errors.push(FieldError::new(
                    "slug",
                    "must be left out when project_slug is given: they are the same field",
                ));
                ("project_slug", Some(s))
            }
        };
        let slug = slug.unwrap_or_default();
        let slug_ok = is_valid_slug(&slug);
        if !slug_ok && !errors.iter().any(|e| e.field == slug_field) {
            errors.push(FieldError::new(slug_field, rules::SLUG_MESSAGE));
        }
        if let Some(name) = &self.name {
            if !NAME.accepts(name) {
                errors.push(FieldError::new("name", NAME.message()));
            }
        }
        if !rules::is_url(&self.hub_url) {
            errors.push(FieldError::new("hub_url", rules::url_message()));
        }
        let namespace = match &self.mesh_namespace {
            Some(ns) => {
                if !rules::is_namespace(ns) {
                    errors.push(FieldError::new(
                        "mesh_namespace",
                        "must be a mesh namespace, hub.<slug>",
                    ));
                } else if slug_ok && !namespace_matches(&slug, ns) {
                    errors.push(FieldError::new(
                        "mesh_namespace",
                        format!(
                            "must be \"{}\", the namespace of {slug}",
                            mesh_namespace(&slug)
                        ),
                    ));
                }
                ns.clone()
            }
            None => mesh_namespace(&slug),
        };
        if let Some(tags) = &self.tags {
            if tags.len() > MAX_TAGS {
                errors.push(FieldError::new(
                    "tags",
                    format!("must have at most {MAX_TAGS} tags"),
                ));
            }
            for (i, tag) in tags.iter().enumerate() {
                if !TAG.accepts(tag) {
                    errors.push(FieldError::new(format!("tags[{i}]"), TAG.message()));
                }
            }
        }
        // The original's projects.yaml lists bare slugs; we store namespaces.
        let mut allow_fanout = None;
        if let Some(fanout) = &self.allow_fanout {
            if fanout.len() > MAX_FANOUT {
                errors.push(FieldError::new(
                    "allow_fanout",
                    format!("must have at most {MAX_FANOUT} entries"),
                ));
            }
            let mut namespaces = Vec::with_capacity(fanout.len());
            for (i, entry) in fanout.iter().enumerate() {
                match rules::fanout_namespace(entry) {
                    Some(ns) => namespaces.push(ns),
                    None => errors.push(FieldError::new(
                        format!("allow_fanout[{i}]"),
                        "must be a mesh namespace, hub.<slug>, or a slug",
                    )),
                }
            }
            allow_fanout = Some(namespaces);
        }
        if !errors.is_empty() {
            sort_by_field(&mut errors);
            return Err(errors);
        }
        Ok(ProjectSpec {
            slug,
            name: self.name.map(|n| n.trim().to_owned()),
            hub_url: self.hub_url,
            mesh_namespace: namespace,
            tags: self.tags,
            allow_fanout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ProjectInput {
        ProjectInput {
            project_slug: Some("alpha".into()),
            slug: None,
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
            project_slug: Some("Alpha!".into()),
            slug: None,
            name: Some("  ".into()),
            hub_url: "ftp://x".into(),
            mesh_namespace: Some("hub.other".into()),
            tags: Some(vec!["ok".into(), "".into()]),
            allow_fanout: Some(vec!["hub.Beta".into()]),
        };
        let fields: Vec<String> = bad
            .into_spec()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "allow_fanout[0]",
                "hub_url",
                "name",
                "project_slug",
                "tags[1]"
            ]
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
            [FieldError::new(
                "mesh_namespace",
                "must be \"hub.alpha\", the namespace of alpha"
            )]
        );
    }

    #[test]
    fn an_update_naming_another_slug_is_refused() {
        let upd: ProjectUpdate =
            serde_json::from_str(r#"{"project_slug":"beta","name":"x","hub_url":"http://x"}"#)
                .unwrap();
        assert_eq!(upd.for_slug("alpha").unwrap_err()[0].field, "project_slug");
        let upd: ProjectUpdate =
            serde_json::from_str(r#"{"slug":"alpha","name":"x","hub_url":"http://x"}"#).unwrap();
        assert!(upd.for_slug("alpha").is_ok());
    }

    #[test]
    fn the_slug_comes_as_project_slug_or_as_slug_not_both() {
        let spec = ProjectInput {
            project_slug: None,
            slug: Some("alpha".into()),
            ..input()
        }
        .into_spec()
        .unwrap();
        assert_eq!(spec.slug, "alpha");
        let fields = |i: ProjectInput| -> Vec<String> {
            i.into_spec()
                .unwrap_err()
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        let neither = ProjectInput {
            project_slug: None,
            ..input()
        };
        assert_eq!(fields(neither), ["project_slug"]);
        let both = ProjectInput {
            slug: Some("alpha".into()),
            ..input()
        };
        assert_eq!(fields(both), ["slug"]);
        let bad_alias = ProjectInput {
            project_slug: None,
            slug: Some("Alpha".into()),
            mesh_namespace: None,
            ..input()
        };
        assert_eq!(fields(bad_alias), ["slug"]);
    }

    #[test]
    fn control_characters_are_refused_everywhere() {
        let fields = |i: ProjectInput| -> Vec<String> {
            i.into_spec()
                .unwrap_err()
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        let bad = ProjectInput {
            name: Some("Al\u{0}pha".into()),
            hub_url: "\u{0}http://alpha".into(),
            tags: Some(vec!["a\u{1b}b".into()]),
            ..input()
        };
        assert_eq!(fields(bad), ["hub_url", "name", "tags[0]"]);
    }
}
