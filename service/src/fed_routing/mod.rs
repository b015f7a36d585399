//! Tenant routing's domain (issue 11): nodes, rules and the tenant map as
//! the API answers and takes them, and their field rules. A leaf: the
//! store, the routing view and the API share it. The resolution algorithm
//! itself is the `routing` crate's, shared with gateways.

pub mod seal;

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::field_error::{sort_by_field, FieldError};
use crate::rules;

pub use ::routing::{NodeStatus, Reason, DEFAULT_NODE};

/// Node ids: lower-case letters, digits, inner `-` and `_`, 1 to 63.
pub const NODE_ID_PATTERN: &str = "^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$";
pub const NODE_ID_MESSAGE: &str =
    "must be a node id: lower-case letters, digits, inner - and _, 1 to 63 characters";
/// Regions: lower-case letters, digits and inner hyphens, 1 to 100.
pub const REGION_PATTERN: &str = "^[a-z0-9]([a-z0-9-]{0,98}[a-z0-9])?$";
pub const REGION_MESSAGE: &str =
    "must be a region: lower-case letters, digits and inner hyphens, 1 to 100 characters";
/// Tenant ids: a letter or digit, then letters, digits, `.`, `_`, `-`; at
/// most 128 (UUIDs fit).
pub const TENANT_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$";
pub const TENANT_MESSAGE: &str =
    "must be a tenant id: a letter or digit, then letters, digits, ., _ or -, at most 128 characters";
/// Largest rule weight.
pub const MAX_WEIGHT: i64 = 1_000_000;
/// Default rule weight, as the seed's.
pub const DEFAULT_WEIGHT: i64 = 100;

fn compiled(pattern: &str) -> Option<regex::Regex> {
    regex::Regex::new(pattern).ok()
}

static NODE_ID: LazyLock<Option<regex::Regex>> = LazyLock::new(|| compiled(NODE_ID_PATTERN));
static REGION: LazyLock<Option<regex::Regex>> = LazyLock::new(|| compiled(REGION_PATTERN));
static TENANT: LazyLock<Option<regex::Regex>> = LazyLock::new(|| compiled(TENANT_PATTERN));

pub fn is_node_id(s: &str) -> bool {
    NODE_ID.as_ref().is_some_and(|r| r.is_match(s))
}

pub fn is_region(s: &str) -> bool {
    REGION.as_ref().is_some_and(|r| r.is_match(s))
}

pub fn is_tenant(s: &str) -> bool {
    TENANT.as_ref().is_some_and(|r| r.is_match(s))
}

fn text_schema(pattern: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .build()
}

pub fn node_id_schema() -> Object {
    rules::example(text_schema(NODE_ID_PATTERN), "eu-west-1")
}

pub fn region_schema() -> Object {
    rules::example(text_schema(REGION_PATTERN), "eu-west")
}

pub fn tenant_schema() -> Object {
    rules::example(text_schema(TENANT_PATTERN), "acme")
}

fn hub_schema() -> Object {
    rules::example(rules::slug_schema(true), "projecta")
}

// Whole numbers as JSON Schema counts them: 949.0 is one too (a number
// that is a multiple of 1), and is taken.
fn whole_number(min: f64, max: f64) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .multiple_of(Some(1.0))
        .minimum(Some(min))
        .maximum(Some(max))
        .build()
}

fn weight_schema() -> Object {
    whole_number(0.0, MAX_WEIGHT as f64)
}

fn weight_answer_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .maximum(Some(MAX_WEIGHT))
        .build()
}

fn priority_schema() -> Object {
    whole_number(f64::from(i32::MIN), f64::from(i32::MAX))
}

/// `value` as an integer in `range`, if it is a whole number there.
fn whole(value: f64, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
    let fits =
        value.fract() == 0.0 && value >= *range.start() as f64 && value <= *range.end() as f64;
    // In range and whole: the conversion is exact.
    fits.then_some(value as i64)
}

fn database_url_schema() -> Object {
    rules::example(
        rules::postgres_url_schema(),
        "postgres://app:secret@db-eu.internal:5432/app",
    )
}

fn node_status_schema() -> Object {
    rules::one_of_schema([
        "online",
        "degraded",
        "offline",
        "maintenance",
        "hub_missing",
        "disabled",
    ])
}

fn reason_schema() -> Object {
    rules::one_of_schema(::routing::Reason::ALL.map(|r| r.as_str()))
}

/// Whether an operator lets the node be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AdminStatus {
    #[default]
    Active,
    Disabled,
}

impl AdminStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminStatus::Active => "active",
            AdminStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> AdminStatus {
        if s == "disabled" {
            AdminStatus::Disabled
        } else {
            AdminStatus::Active
        }
    }
}

/// A federation node: a database, served by a hub. Its URL is never
/// answered: `database_host` and `database_fingerprint` stand for it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RoutingNode {
    #[schema(schema_with = node_id_schema)]
    pub node_id: String,
    #[schema(schema_with = region_schema)]
    pub region: String,
    /// The project (hub) whose liveness is the node's; null: always usable.
    #[schema(schema_with = hub_schema)]
    pub hub: Option<String>,
    /// Set by an operator.
    pub status: AdminStatus,
    /// What resolution goes by: `online` and `degraded` are used;
    /// `offline`, `maintenance`, `hub_missing` and `disabled` are skipped.
    #[schema(schema_with = node_status_schema)]
    pub effective_status: NodeStatus,
    /// Higher first, when falling back by priority.
    pub priority: i32,
    /// `host[:port]` of the stored database URL, without credentials; null
    /// when none is stored.
    #[schema(example = "db-eu.internal:5432")]
    pub database_host: Option<String>,
    /// Tells stored URLs apart (keyed, so it reveals nothing of the URL).
    #[schema(example = "hmac-sha256:9f2c4e1a7b3d5f60")]
    pub database_fingerprint: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl RoutingNode {
    /// What a gateway sees of it.
    pub fn snapshot_node(&self) -> ::routing::Node {
        ::routing::Node {
            node_id: self.node_id.clone(),
            region: self.region.clone(),
            priority: self.priority,
            hub: self.hub.clone(),
            status: self.effective_status,
        }
    }
}

/// Create or replace a node. `database_url` is write-only; left out (or
/// null) keeps the stored one.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeInput {
    #[schema(schema_with = region_schema)]
    pub region: String,
    /// The hub (project slug) whose liveness the node follows; null or left
    /// out: none, always usable.
    #[serde(default)]
    #[schema(schema_with = hub_schema)]
    pub hub: Option<String>,
    #[serde(default)]
    #[schema(schema_with = database_url_schema)]
    pub database_url: Option<String>,
    #[serde(default)]
    #[schema(schema_with = priority_schema)]
    pub priority: Option<f64>,
    #[serde(default)]
    pub status: Option<AdminStatus>,
    /// Free-form, stored as given.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A checked node change.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub node_id: String,
    pub region: String,
    pub hub: Option<String>,
    pub database_url: Option<secrecy::SecretString>,
    pub priority: i32,
    pub status: AdminStatus,
    pub metadata: serde_json::Value,
}

impl NodeInput {
    pub fn into_spec(self, node_id: &str) -> Result<NodeSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        if !is_region(&self.region) {
            errors.push(FieldError::new("region", REGION_MESSAGE));
        }
        if let Some(hub) = &self.hub {
            if !protocol::naming::is_valid_slug(hub) {
                errors.push(FieldError::new("hub", rules::SLUG_MESSAGE));
            }
        }
        if let Some(url) = &self.database_url {
            if !rules::is_postgres_url(url) {
                errors.push(FieldError::new(
                    "database_url",
                    rules::postgres_url_message(),
                ));
            }
        }
        let range = i64::from(i32::MIN)..=i64::from(i32::MAX);
        let priority = match whole(self.priority.unwrap_or(0.0), range) {
            Some(p) => i32::try_from(p).unwrap_or(0),
            None => {
                errors.push(FieldError::new("priority", "must be a 32-bit integer"));
                0
            }
        };
        if !errors.is_empty() {
            sort_by_field(&mut errors);
            return Err(errors);
        }
        Ok(NodeSpec {
            node_id: node_id.to_owned(),
            region: self.region,
            hub: self.hub,
            database_url: self.database_url.map(secrecy::SecretString::from),
            priority,
            status: self.status.unwrap_or_default(),
            metadata: serde_json::Value::Object(self.metadata.unwrap_or_default()),
        })
    }
}

/// A routing rule: `tenant_id`'s requests in `region` may go to `node_id`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RoutingRule {
    pub id: Uuid,
    #[schema(schema_with = tenant_schema)]
    pub tenant_id: String,
    #[schema(schema_with = region_schema)]
    pub region: String,
    #[schema(schema_with = node_id_schema)]
    pub node_id: String,
    /// Primary rules are chosen before the others of equal standing.
    pub is_primary: bool,
    /// Share of the tenant's requests among rules of equal standing; 0:
    /// only a fallback (by the node's priority).
    #[schema(schema_with = weight_answer_schema)]
    pub weight: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl RoutingRule {
    pub fn snapshot_rule(&self) -> ::routing::Rule {
        ::routing::Rule {
            tenant_id: self.tenant_id.clone(),
            region: self.region.clone(),
            node_id: self.node_id.clone(),
            is_primary: self.is_primary,
            weight: u32::try_from(self.weight).unwrap_or(0),
        }
    }
}

/// Create a rule, or replace the one with the same tenant, region and node.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    #[schema(schema_with = tenant_schema)]
    pub tenant_id: String,
    #[schema(schema_with = region_schema)]
    pub region: String,
    #[schema(schema_with = node_id_schema)]
    pub node_id: String,
    #[serde(default)]
    pub is_primary: Option<bool>,
    /// Default 100.
    #[serde(default)]
    #[schema(schema_with = weight_schema)]
    pub weight: Option<f64>,
}

/// A checked rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    pub tenant_id: String,
    pub region: String,
    pub node_id: String,
    pub is_primary: bool,
    pub weight: i32,
}

impl RuleInput {
    pub fn into_spec(self) -> Result<RuleSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        if !is_tenant(&self.tenant_id) {
            errors.push(FieldError::new("tenant_id", TENANT_MESSAGE));
        }
        if !is_region(&self.region) {
            errors.push(FieldError::new("region", REGION_MESSAGE));
        }
        if !is_node_id(&self.node_id) {
            errors.push(FieldError::new("node_id", NODE_ID_MESSAGE));
        }
        let weight = match self.weight {
            None => DEFAULT_WEIGHT,
            Some(w) => whole(w, 0..=MAX_WEIGHT).unwrap_or_else(|| {
                errors.push(FieldError::new(
                    "weight",
                    format!("must be a whole number between 0 and {MAX_WEIGHT}"),
                ));
                0
            }),
        };
        if !errors.is_empty() {
            sort_by_field(&mut errors);
            return Err(errors);
        }
        Ok(RuleSpec {
            tenant_id: self.tenant_id,
            region: self.region,
            node_id: self.node_id,
            is_primary: self.is_primary.unwrap_or(false),
            weight: i32::try_from(weight).unwrap_or(0),
        })
    }
}

/// A tenant's entry in the tenant map: its primary node.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TenantMapping {
    #[schema(schema_with = tenant_schema)]
    pub tenant_id: String,
    #[schema(schema_with = node_id_schema)]
    pub primary_node_id: String,
    #[schema(schema_with = region_schema)]
    pub primary_region: String,
    #[schema(value_type = Object)]
    pub federation_metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TenantMapping {
    pub fn snapshot_entry(&self) -> ::routing::TenantEntry {
        ::routing::TenantEntry {
            tenant_id: self.tenant_id.clone(),
            primary_node_id: self.primary_node_id.clone(),
            primary_region: self.primary_region.clone(),
            metadata: self.federation_metadata.clone(),
        }
    }
}

/// Set a tenant's primary node.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantInput {
    #[schema(schema_with = node_id_schema)]
    pub primary_node_id: String,
    #[schema(schema_with = region_schema)]
    pub primary_region: String,
    /// Free-form, handed out in bootstrap kits.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub federation_metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A checked tenant entry.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantSpec {
    pub tenant_id: String,
    pub primary_node_id: String,
    pub primary_region: String,
    pub federation_metadata: serde_json::Value,
}

impl TenantInput {
    pub fn into_spec(self, tenant_id: &str) -> Result<TenantSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        if !is_node_id(&self.primary_node_id) {
            errors.push(FieldError::new("primary_node_id", NODE_ID_MESSAGE));
        }
        if !is_region(&self.primary_region) {
            errors.push(FieldError::new("primary_region", REGION_MESSAGE));
        }
        if !errors.is_empty() {
            sort_by_field(&mut errors);
            return Err(errors);
        }
        Ok(TenantSpec {
            tenant_id: tenant_id.to_owned(),
            primary_node_id: self.primary_node_id,
            primary_region: self.primary_region,
            federation_metadata: serde_json::Value::Object(
                self.federation_metadata.unwrap_or_default(),
            ),
        })
    }
}

/// `GET /api/fed/routing/resolve`'s answer. Never a URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Resolution {
    /// Null when none was given.
    #[schema(schema_with = nullable_tenant_schema)]
    pub tenant: Option<String>,
    /// The region asked for, else the tenant's primary region; null when
    /// neither is known.
    #[schema(schema_with = nullable_region_schema)]
    pub region: Option<String>,
    pub node_id: String,
    pub node_region: String,
    #[schema(schema_with = reason_schema)]
    pub reason: Reason,
}

fn nullable_tenant_schema() -> Object {
    rules::example(nullable_text(), "acme")
}

fn nullable_text() -> Object {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .build()
}

fn nullable_region_schema() -> Object {
    rules::example(
        ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                Type::String,
                Type::Null,
            ]))
            .build(),
        "eu-west",
    )
}

/// The federation part of a tenant's bootstrap kit, as the seed's
/// `metadata.json` carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BootstrapMetadata {
    pub federation: BootstrapFederation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapFederation {
    pub primary_node_id: String,
    pub primary_region: String,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_follow_their_patterns() {
        assert!(is_node_id("eu-west_1") && is_node_id("default") && !is_node_id("-a"));
        assert!(!is_node_id("A") && !is_node_id(&"a".repeat(64)));
        assert!(is_region("eu-west") && !is_region("eu_west") && !is_region("eu-"));
        assert!(is_tenant("9f1c2b7e-1d2c-4b8a-9e0f-0a1b2c3d4e5f") && is_tenant("Acme.co"));
        assert!(!is_tenant(".acme") && !is_tenant(&"a".repeat(129)));
    }

    #[test]
    fn a_node_input_reports_every_problem() {
        let input = NodeInput {
            region: "EU".into(),
            hub: Some("Not A Slug".into()),
            database_url: Some("mysql://x".into()),
            priority: Some(1e12),
            status: None,
            metadata: None,
        };
        let errors = input.into_spec("n").err().unwrap_or_default();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["database_url", "hub", "priority", "region"]);
        let input = NodeInput {
            region: "eu".into(),
            hub: None,
            database_url: Some("postgres://u:p@db:5432/app".into()),
            priority: None,
            status: None,
            metadata: None,
        };
        assert!(input.into_spec("n").is_ok());
    }
}
