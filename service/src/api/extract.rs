//! Extractors whose rejections are problem documents listing every field
//! problem at once, in words, instead of axum's plain-text first error.
//!
//! The structure a body or query must have is read from the request type's
//! own OpenAPI schema ([`super::shape`]), so what the document publishes is
//! what is enforced; the domain's value rules run after, on whatever could be
//! read, and their problems join the list ([`Json::check`]).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::Required;
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::shape::{Components, Shape};
use crate::field_error::{sort_by_field, FieldError};

/// A JSON body. Syntax errors are 400. Unknown, missing and mistyped fields
/// are 422, all of them at once, together with what the domain's rules find
/// in the rest ([`Json::check`]).
pub struct Json<T> {
    value: T,
    /// Structural problems; the fields they name hold placeholders in `value`.
    problems: Vec<FieldError>,
}

impl<T> Json<T> {
    /// Runs the body's value rules and returns their result, or every
    /// problem: the structural ones and those `rules` found in the fields
    /// that could be read. The body is reachable only through here, so a
    /// structurally broken one is never used.
    pub fn check<S>(
        self,
        rules: impl FnOnce(T) -> Result<S, Vec<FieldError>>,
    ) -> Result<S, ApiError> {
        let outcome = rules(self.value);
        if self.problems.is_empty() {
            return outcome.map_err(ApiError::validation);
        }
        let mut all = self.problems;
        if let Err(found) = outcome {
            // A field with a structural problem holds a placeholder: what the
            // rules say of it is noise.
            let broken: Vec<String> = all.iter().map(|e| top_level(&e.field).to_owned()).collect();
            all.extend(
                found
                    .into_iter()
                    .filter(|e| !broken.iter().any(|b| b == top_level(&e.field))),
            );
        }
        sort_by_field(&mut all);
        Err(ApiError::validation(all))
    }
}

/// `tags[2]` → `tags`, `a.b` → `a`.
fn top_level(field: &str) -> &str {
    field.split(['[', '.']).next().unwrap_or(field)
}

impl<S: Send + Sync, T: DeserializeOwned + ToSchema> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as Content-Type: application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| match e {
            BytesRejection::FailedToBufferBody(_) => ApiError::PayloadTooLarge(
                "the request body is larger than the server accepts".into(),
            ),
            other => ApiError::BadRequest(other.body_text()),
        })?;
        parse_json(&bytes)
    }
}

/// The shape of `T`, from its schema and those it refers to.
fn shape_of<T: ToSchema>() -> Shape {
    let mut referenced = Vec::new();
    T::schemas(&mut referenced);
    let components: Components = referenced.into_iter().collect();
    Shape::of(&T::schema(), &components)
}

pub fn parse_json<T: DeserializeOwned + ToSchema>(bytes: &[u8]) -> Result<Json<T>, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    let mut problems = Vec::new();
    let patched = shape_of::<T>()
        .check(&value, "", &mut problems)
        .ok_or_else(|| ApiError::validation(problems.clone()))?;
    match serde_path_to_error::deserialize(patched) {
        Ok(value) => Ok(Json { value, problems }),
        Err(e) => {
            // Something the shape does not say (an enum, a number's range):
            // nothing more can be read.
            problems.push(serde_problem(
                &e.path().to_string(),
                &e.into_inner().to_string(),
            ));
            sort_by_field(&mut problems);
            Err(ApiError::validation(problems))
        }
    }
}

/// A serde error as a field problem, in words.
fn serde_problem(path: &str, message: &str) -> FieldError {
    let message = message.split(" at line ").next().unwrap_or(message);
    let quoted = |m: &str| -> Option<String> {
        let start = m.find('`')? + 1;
        let end = start + m[start..].find('`')?;
        Some(m[start..end].to_owned())
    };
    let field = if path == "." || path.is_empty() {
        quoted(message).unwrap_or_else(|| "body".into())
    } else {
        path.to_owned()
    };
    let text = if message.starts_with("missing field") {
        "is required".to_owned()
    } else if message.starts_with("unknown field") {
        "is not a known field".to_owned()
    } else if let Some(rest) = message.strip_prefix("unknown variant ") {
        let expected = rest
            .split_once("expected ")
            .map(|(_, e)| e.replace('`', "").replace("one of ", ""))
            .unwrap_or_default();
        format!("must be one of: {expected}")
    } else if let Some((_, expected)) = message.split_once(", expected ") {
        format!("must be {}", common::de::expected_in_words(expected))
    } else {
        message.to_owned()
    };
    FieldError::new(field, text)
}

/// Query parameters, checked against the type's documented parameters:
/// unknown, repeated and mistyped ones are 422, all at once.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + IntoParams> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(Query)
    }
}

pub fn parse_query<T: DeserializeOwned + IntoParams>(query: &str) -> Result<T, ApiError> {
    let params: Vec<Parameter> = T::into_params(|| Some(ParameterIn::Query));
    let components = Components::new();
    let mut problems = Vec::new();
    let mut typed = Map::new();
    let mut seen: Vec<String> = Vec::new();
    for (name, raw) in form_urlencoded::parse(query.as_bytes()) {
        let name = name.into_owned();
        let Some(param) = params.iter().find(|p| p.name == name) else {
            if !seen.contains(&name) {
                let known: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
                problems.push(FieldError::new(
                    &name,
                    format!("is not a known parameter (known: {})", known.join(", ")),
                ));
            }
            seen.push(name);
            continue;
        };
        let shape = param
            .schema
            .as_ref()
            .map_or(Shape::Any, |s| Shape::of(s, &components));
        // A list is given by repeating the parameter (`tag=a&tag=b`).
        if let Shape::List(item) = shape.without_null() {
            let index = seen.iter().filter(|n| **n == name).count();
            seen.push(name.clone());
            let at = format!("{name}[{index}]");
            let list = typed
                .entry(name.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            match scalar(item, &raw) {
                Some(value) => {
                    if let (Some(v), Value::Array(items)) =
                        (item.check(&value, &at, &mut problems), list)
                    {
                        items.push(v);
                    }
                }
                None => problems.push(FieldError::new(&at, format!("must be {}", item.describe()))),
            }
            continue;
        }
        if seen.contains(&name) {
            problems.push(FieldError::new(&name, "is given more than once"));
            continue;
        }
        seen.push(name.clone());
        if let Some(value) = scalar(&shape, &raw) {
            if shape.check(&value, &name, &mut problems).is_some() {
                typed.insert(name, value);
            }
        } else {
            problems.push(FieldError::new(
                &name,
                format!("must be {}", shape.describe()),
            ));
        }
    }
    for p in &params {
        if matches!(p.required, Required::True) && !seen.contains(&p.name) {
            problems.push(FieldError::new(&p.name, "is required"));
        }
    }
    // What the shape leaves to serde (an enum behind a `$ref`), one
    // parameter at a time so that each is heard.
    for (name, value) in &typed {
        let alone = Value::Object(Map::from_iter([(name.clone(), value.clone())]));
        if let Err(e) = serde_path_to_error::deserialize::<_, T>(alone) {
            let problem = serde_problem(&e.path().to_string(), &e.into_inner().to_string());
            if problem.field == *name {
                problems.push(problem);
            }
        }
    }
    if !problems.is_empty() {
        sort_by_field(&mut problems);
        return Err(ApiError::validation(problems));
    }
    serde_path_to_error::deserialize(Value::Object(typed)).map_err(|e| {
        ApiError::validation(vec![serde_problem(
            &e.path().to_string(),
            &e.into_inner().to_string(),
        )])
    })
}

/// A query string value as the JSON value its shape wants, if it can be one.
fn scalar(shape: &Shape, raw: &str) -> Option<Value> {
    match shape {
        Shape::Bool => match raw {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        Shape::Integer => raw
            .parse::<i64>()
            .ok()
            .map(Value::from)
            .or_else(|| raw.parse::<u64>().ok().map(Value::from)),
        Shape::Number => raw
            .parse::<f64>()
            .ok()
            .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number)),
        Shape::Either(shapes) => shapes
            .iter()
            .filter(|s| **s != Shape::Null)
            .find_map(|s| scalar(s, raw)),
        _ => Some(Value::String(raw.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        n: u32,
    }

    fn problems(r: Result<Json<Body>, ApiError>) -> Vec<(String, String)> {
        match r.map(|j| j.check(|_| Err::<(), _>(vec![FieldError::new("name", "rule")]))) {
            Err(ApiError::Validation(v)) | Ok(Err(ApiError::Validation(v))) => {
                v.into_iter().map(|e| (e.field, e.message)).collect()
            }
            Ok(other) => panic!("expected a validation error, got {other:?}"),
            Err(other) => panic!("expected a validation error, got {other:?}"),
        }
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn every_problem_is_listed_in_words() {
        assert_eq!(
            problems(parse_json(br#"{"n":"x","colour":1}"#)),
            pairs(&[
                ("colour", "is not a known field (known: n, name)"),
                ("n", "must be a whole number, not a string"),
                ("name", "is required"),
            ])
        );
    }

    #[test]
    fn value_rules_join_the_structural_problems_for_other_fields() {
        // `name` is fine structurally, so the rule's word on it counts.
        assert_eq!(
            problems(parse_json(br#"{"name":"a","n":"x"}"#)),
            pairs(&[
                ("n", "must be a whole number, not a string"),
                ("name", "rule")
            ])
        );
    }

    #[test]
    fn what_the_shape_cannot_say_comes_from_serde_in_words() {
        assert_eq!(
            problems(parse_json(br#"{"name":"a","n":-1}"#)),
            pairs(&[("n", "must be a whole number from 0 to 4294967295")])
        );
    }

    #[test]
    fn syntax_errors_are_bad_requests() {
        assert!(matches!(
            parse_json::<Body>(b"{nope"),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[derive(Debug, Deserialize, IntoParams)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Params {
        status: Option<crate::catalog::ProjectStatus>,
        dry_run: Option<bool>,
        tag: Option<String>,
    }

    fn query_problems(q: &str) -> Vec<(String, String)> {
        match parse_query::<Params>(q) {
            Err(ApiError::Validation(v)) => v.into_iter().map(|e| (e.field, e.message)).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn query_problems_are_listed_at_once() {
        assert_eq!(
            query_problems("status=asleep&dry_run=yes&x=1&tag=a&tag=b"),
            pairs(&[
                ("dry_run", "must be true or false"),
                ("status", "must be one of: online, degraded, offline"),
                ("tag", "is given more than once"),
                (
                    "x",
                    "is not a known parameter (known: status, dry_run, tag)"
                ),
            ])
        );
        let ok = parse_query::<Params>("status=online&dry_run=true&tag=a%20b").unwrap();
        assert_eq!(ok.tag.as_deref(), Some("a b"));
        assert_eq!(ok.dry_run, Some(true));
    }

    #[derive(Debug, Deserialize, IntoParams)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct ListParams {
        tag: Option<Vec<String>>,
        limit: Option<i64>,
    }

    #[test]
    fn a_list_parameter_is_given_by_repeating_it() {
        let ok = parse_query::<ListParams>("tag=a&limit=3&tag=b%20c").unwrap();
        assert_eq!(ok.tag.unwrap(), ["a", "b c"]);
        assert!(parse_query::<ListParams>("").unwrap().tag.is_none());
        match parse_query::<ListParams>("tag=a&limit=x&limit=2") {
            Err(ApiError::Validation(v)) => assert_eq!(
                v.into_iter()
                    .map(|e| (e.field, e.message))
                    .collect::<Vec<_>>(),
                pairs(&[
                    ("limit", "must be a whole number"),
                    ("limit", "is given more than once"),
                ])
            ),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }
}
