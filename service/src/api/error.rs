//! One error type for every handler, answered as `application/problem+json`
//! (RFC 9457). Internal causes are logged here and never sent to the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::field_error::FieldError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem; `about:blank` when the status says it all.
    #[serde(rename = "type")]
    #[schema(example = "urn:federation:problem:validation")]
    pub problem_type: String,
    #[schema(example = "Unprocessable Entity")]
    pub title: String,
    #[schema(example = 422)]
    pub status: u16,
    #[schema(
        example = "2 problems: hub_url is required; colour is not a known field (known: ...)"
    )]
    pub detail: String,
    /// Per-field problems, for validation errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// For conflicts: the state the resource is in now.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub current: Option<serde_json::Value>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            problem_type: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            current: None,
        }
    }

    fn typed(mut self, kind: &str) -> Self {
        self.problem_type = format!("urn:federation:problem:{kind}");
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (status, body).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        res
    }
}

/// What every route behind an API key may answer besides its own outcomes;
/// added to each such route's OpenAPI `responses` where the routes are
/// listed (`api::protected`).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only: handlers answer with ApiError
pub enum KeyedErrors {
    /// No API key (`WWW-Authenticate` says how to send one), a shared agent
    /// key while `auth.allow_shared_agent_keys` is false, or a hub token that
    /// is unknown, revoked or expired
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthenticated(Problem),
    /// Unknown API key, a key without the role the action needs, or a hub token outside its own project
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// The database is unavailable
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

/// What every route that reads a JSON body may answer about the body;
/// named once in each such route's OpenAPI `responses`.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only: handlers answer with ApiError
pub enum BodyErrors {
    /// Malformed JSON
    #[response(status = 400, content_type = "application/problem+json")]
    Malformed(Problem),
    /// Body larger than `server.body_limit_bytes`
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// Not `application/json`
    #[response(status = 415, content_type = "application/problem+json")]
    NotJson(Problem),
    /// Invalid, missing or unknown fields, each listed in `errors`
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(Problem),
}

/// What a route with query parameters answers when they are wrong.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only: handlers answer with ApiError
pub enum QueryErrors {
    /// A bad or unknown query parameter, each listed in `errors`
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(Problem),
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("invalid fields")]
    Validation(Vec<FieldError>),
    #[error("missing API key")]
    Unauthenticated,
    /// A credential that is known to be no good: a shared agent key while
    /// they are turned off, or a hub token that is unknown, revoked or
    /// expired (401, with the reason).
    #[error("refused credentials: {0}")]
    Rejected(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {detail}")]
    Conflict {
        detail: String,
        current: Option<serde_json::Value>,
    },
    #[error("payload too large")]
    PayloadTooLarge(String),
    #[error("unsupported media type")]
    UnsupportedMediaType(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::Unavailable("the database is unavailable; retry later".into())
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

impl ApiError {
    pub fn validation(errors: Vec<FieldError>) -> Self {
        ApiError::Validation(errors)
    }

    pub fn problem(&self) -> Problem {
        match self {
            ApiError::BadRequest(d) => {
                Problem::new(StatusCode::BAD_REQUEST, d.clone()).typed("malformed")
            }
            ApiError::Validation(errors) => {
                let each: Vec<String> = errors
                    .iter()
                    .map(|e| format!("{} {}", e.field, e.message))
                    .collect();
                let detail = match each.len() {
                    1 => each[0].clone(),
                    n => format!("{n} problems: {}", each.join("; ")),
                };
                let mut p =
                    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, detail).typed("validation");
                p.errors = errors.clone();
                p
            }
            ApiError::Unauthenticated => Problem::new(
                StatusCode::UNAUTHORIZED,
                "this route needs an API key in the X-API-Key header",
            )
            .typed("unauthenticated"),
            ApiError::Rejected(d) => {
                Problem::new(StatusCode::UNAUTHORIZED, d.clone()).typed("unauthenticated")
            }
            ApiError::Forbidden(d) => {
                Problem::new(StatusCode::FORBIDDEN, d.clone()).typed("forbidden")
            }
            ApiError::NotFound(d) => Problem::new(StatusCode::NOT_FOUND, d.clone()),
            ApiError::Conflict { detail, current } => {
                let mut p = Problem::new(StatusCode::CONFLICT, detail.clone()).typed("conflict");
                p.current = current.clone();
                p
            }
            ApiError::PayloadTooLarge(d) => Problem::new(StatusCode::PAYLOAD_TOO_LARGE, d.clone()),
            ApiError::UnsupportedMediaType(d) => {
                Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, d.clone())
            }
            ApiError::Unavailable(d) => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, d.clone()).typed("unavailable")
            }
            ApiError::Internal(_) => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "an internal error occurred; it has been logged",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            tracing::error!(
                error = format!("{e:#}"),
                "internal error answering a request"
            );
        }
        let mut res = self.problem().into_response();
        if matches!(self, ApiError::Unauthenticated | ApiError::Rejected(_)) {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"ApiKey realm="federation", header="X-API-Key""#),
            );
        }
        res
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
