//! What every rule check reports: one problem with one field. A leaf, so
//! the API, the catalog, the spoke registry and the configuration share it
//! without depending on one another.

use serde::Serialize;
use utoipa::ToSchema;

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

/// Orders problems by field, so a list of them reads like the request.
pub fn sort_by_field(errors: &mut [FieldError]) {
    errors.sort_by(|a, b| a.field.cmp(&b.field));
}
