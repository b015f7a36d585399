//! The structure a request must have, read from the same OpenAPI schema the
//! document publishes: which fields exist, which are required, and the JSON
//! type of each. [`Shape::check`] reports every departure at once, in words,
//! and patches the value so the rest of it can still be read and checked.
//!
//! Only structure lives here. The rules on values (lengths, patterns, codes)
//! are the domain's ([`crate::rules`]), checked after, with their own words.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use utoipa::openapi::schema::{AdditionalProperties, ArrayItems, Schema, SchemaType, Type};
use utoipa::openapi::RefOr;

use crate::field_error::FieldError;

/// A JSON value's expected structure.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Any,
    Null,
    Bool,
    Integer,
    Number,
    /// A string, one of `values` when given.
    String(Option<Vec<String>>),
    List(Box<Shape>),
    Object(ObjectShape),
    /// Any one of these.
    Either(Vec<Shape>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObjectShape {
    pub fields: BTreeMap<String, Shape>,
    pub required: Vec<String>,
    /// Whether fields not listed are refused.
    pub closed: bool,
}

/// Named schemas a `$ref` may point at.
pub type Components = BTreeMap<String, RefOr<Schema>>;

impl Shape {
    /// The shape of a utoipa schema; `$ref`s are looked up in `components`.
    pub fn of(schema: &RefOr<Schema>, components: &Components) -> Shape {
        Self::of_depth(schema, components, 0)
    }

    fn of_depth(schema: &RefOr<Schema>, components: &Components, depth: u8) -> Shape {
        if depth > 16 {
            return Shape::Any;
        }
        let schema = match schema {
            RefOr::Ref(r) => {
                let name = r.ref_location.rsplit('/').next().unwrap_or_default();
                return match components.get(name) {
                    Some(target) => Self::of_depth(target, components, depth + 1),
                    None => Shape::Any,
                };
            }
            RefOr::T(s) => s,
        };
        let either = |items: &[RefOr<Schema>]| {
            Shape::Either(
                items
                    .iter()
                    .map(|i| Self::of_depth(i, components, depth + 1))
                    .collect(),
            )
        };
        match schema {
            Schema::Array(a) => {
                let items = match &a.items {
                    ArrayItems::RefOrSchema(s) => Self::of_depth(s, components, depth + 1),
                    ArrayItems::False => Shape::Any,
                };
                with_types(&a.schema_type, |t| match t {
                    Type::Array => Some(Shape::List(Box::new(items.clone()))),
                    Type::Null => Some(Shape::Null),
                    _ => None,
                })
            }
            Schema::Object(o) => {
                let values: Option<Vec<String>> = o.enum_values.as_ref().map(|vs| {
                    vs.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                });
                let object = || {
                    Shape::Object(ObjectShape {
                        fields: o
                            .properties
                            .iter()
                            .map(|(k, v)| (k.clone(), Self::of_depth(v, components, depth + 1)))
                            .collect(),
                        required: o.required.clone(),
                        closed: matches!(
                            o.additional_properties.as_deref(),
                            Some(AdditionalProperties::FreeForm(false))
                        ),
                    })
                };
                with_types(&o.schema_type, |t| match t {
                    Type::String => Some(Shape::String(values.clone())),
                    Type::Integer => Some(Shape::Integer),
                    Type::Number => Some(Shape::Number),
                    Type::Boolean => Some(Shape::Bool),
                    Type::Null => Some(Shape::Null),
                    Type::Array => Some(Shape::List(Box::new(Shape::Any))),
                    Type::Object => Some(object()),
                })
            }
            Schema::OneOf(o) => either(&o.items),
            Schema::AnyOf(o) => either(&o.items),
            _ => Shape::Any,
        }
    }

    /// Checks `value`, recording each problem under `path`, and returns the
    /// value patched to fit (unknown fields dropped, wrong or missing
    /// required ones replaced by a placeholder) or `None` when it should be
    /// left out.
    pub fn check(&self, value: &Value, path: &str, errors: &mut Vec<FieldError>) -> Option<Value> {
        if self.admits(value) {
            return Some(match (self, value) {
                (Shape::List(item), Value::Array(items)) => Value::Array(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            item.check(v, &format!("{path}[{i}]"), errors)
                                .unwrap_or_else(|| item.placeholder())
                        })
                        .collect(),
                ),
                (Shape::Object(o), Value::Object(map)) => Value::Object(o.check(map, path, errors)),
                (Shape::Either(shapes), v) => shapes
                    .iter()
                    .find(|s| s.admits(v))
                    .and_then(|s| s.check(v, path, errors))
                    .unwrap_or(Value::Null),
                (_, v) => v.clone(),
            });
        }
        let field = if path.is_empty() { "body" } else { path };
        let message = match (self.without_null(), value) {
            (Shape::String(Some(values)), Value::String(_)) => {
                format!("must be one of: {}", values.join(", "))
            }
            (shape, v) => format!("must be {}, not {}", shape.describe(), kind(v)),
        };
        errors.push(FieldError::new(field, message));
        None
    }

    /// Whether `value` has this shape at the top (items are checked apart).
    fn admits(&self, value: &Value) -> bool {
        match (self, value) {
            (Shape::Any, _) => true,
            (Shape::Null, Value::Null) => true,
            (Shape::Bool, Value::Bool(_)) => true,
            (Shape::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (Shape::Number, Value::Number(_)) => true,
            (Shape::String(None), Value::String(_)) => true,
            (Shape::String(Some(values)), Value::String(s)) => values.iter().any(|v| v == s),
            (Shape::List(_), Value::Array(_)) => true,
            (Shape::Object(_), Value::Object(_)) => true,
            (Shape::Either(shapes), v) => shapes.iter().any(|s| s.admits(v)),
            _ => false,
        }
    }

    /// A value of this shape, standing in for a wrong one.
    fn placeholder(&self) -> Value {
        match self {
            Shape::Any | Shape::Null => Value::Null,
            Shape::Bool => Value::Bool(false),
            Shape::Integer | Shape::Number => Value::from(0),
            Shape::String(values) => Value::String(
                values
                    .as_ref()
                    .and_then(|v| v.first().cloned())
                    .unwrap_or_default(),
            ),
            Shape::List(_) => Value::Array(Vec::new()),
            Shape::Object(o) => Value::Object(
                o.required
                    .iter()
                    .map(|name| {
                        let shape = o.fields.get(name).unwrap_or(&Shape::Any);
                        (name.clone(), shape.placeholder())
                    })
                    .collect(),
            ),
            Shape::Either(shapes) => shapes
                .iter()
                .find(|s| **s != Shape::Null)
                .or(shapes.first())
                .map_or(Value::Null, Shape::placeholder),
        }
    }

    /// The shape without its `null` alternative: optional fields may be
    /// null, which is not worth saying in every message.
    pub fn without_null(&self) -> &Shape {
        match self {
            Shape::Either(shapes) => {
                let mut rest = shapes.iter().filter(|s| **s != Shape::Null);
                match (rest.next(), rest.next()) {
                    (Some(only), None) => only,
                    _ => self,
                }
            }
            other => other,
        }
    }

    /// "a string", "a list of strings"...
    pub fn describe(&self) -> String {
        match self.without_null() {
            Shape::Any => "a value".into(),
            Shape::Null => "null".into(),
            Shape::Bool => "true or false".into(),
            Shape::Integer => "a whole number".into(),
            Shape::Number => "a number".into(),
            Shape::String(None) => "a string".into(),
            Shape::String(Some(values)) => format!("one of: {}", values.join(", ")),
            Shape::List(item) => match item.without_null() {
                Shape::String(None) => "a list of strings".into(),
                Shape::Integer => "a list of whole numbers".into(),
                Shape::Object(_) => "a list of objects".into(),
                other => format!("a list, each item {}", other.describe()),
            },
            Shape::Object(_) => "an object".into(),
            Shape::Either(shapes) => shapes
                .iter()
                .filter(|s| **s != Shape::Null)
                .map(Shape::describe)
                .collect::<Vec<_>>()
                .join(" or "),
        }
    }
}

impl ObjectShape {
    fn check(
        &self,
        map: &Map<String, Value>,
        path: &str,
        errors: &mut Vec<FieldError>,
    ) -> Map<String, Value> {
        let at = |name: &str| {
            if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            }
        };
        let mut out = Map::new();
        for (name, value) in map {
            match self.fields.get(name) {
                None if self.closed => errors.push(FieldError::new(
                    at(name),
                    format!("is not a known field (known: {})", self.known()),
                )),
                None => {
                    out.insert(name.clone(), value.clone());
                }
                Some(shape) => match shape.check(value, &at(name), errors) {
                    Some(v) => {
                        out.insert(name.clone(), v);
                    }
                    None if self.required.contains(name) => {
                        out.insert(name.clone(), shape.placeholder());
                    }
                    None => {}
                },
            }
        }
        for name in &self.required {
            if !map.contains_key(name) {
                errors.push(FieldError::new(at(name), "is required"));
                let shape = self.fields.get(name).unwrap_or(&Shape::Any);
                out.insert(name.clone(), shape.placeholder());
            }
        }
        out
    }

    fn known(&self) -> String {
        self.fields.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// The shape for each type in `types`, as one shape.
fn with_types(types: &SchemaType, shape: impl Fn(&Type) -> Option<Shape>) -> Shape {
    match types {
        SchemaType::AnyValue => Shape::Any,
        SchemaType::Type(t) => shape(t).unwrap_or(Shape::Any),
        SchemaType::Array(ts) => {
            let mut shapes: Vec<Shape> = ts.iter().filter_map(&shape).collect();
            match shapes.len() {
                0 => Shape::Any,
                1 => shapes.remove(0),
                _ => Shape::Either(shapes),
            }
        }
    }
}

/// What a JSON value is, in words.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "true or false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use utoipa::{PartialSchema, ToSchema};

    #[derive(serde::Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        n: u32,
        tags: Option<Vec<String>>,
        flag: Option<bool>,
    }

    fn check(value: Value) -> (Vec<(String, String)>, Option<Value>) {
        let shape = Shape::of(&Body::schema(), &Components::new());
        let mut errors = Vec::new();
        let patched = shape.check(&value, "", &mut errors);
        (
            errors.into_iter().map(|e| (e.field, e.message)).collect(),
            patched,
        )
    }

    #[test]
    fn a_derived_schema_gives_fields_types_and_required() {
        let Shape::Object(o) = Shape::of(&Body::schema(), &Components::new()) else {
            panic!("not an object");
        };
        assert!(o.closed);
        assert_eq!(o.required, ["name", "n"]);
        assert_eq!(o.fields["n"], Shape::Integer);
        assert_eq!(o.fields["tags"].describe(), "a list of strings");
    }

    #[test]
    fn every_structural_problem_is_reported_and_patched() {
        let (errors, patched) =
            check(json!({"n": "x", "tags": "a", "colour": "red", "flag": null}));
        assert_eq!(
            errors,
            [
                (
                    "colour".to_owned(),
                    "is not a known field (known: flag, n, name, tags)".to_owned()
                ),
                (
                    "n".to_owned(),
                    "must be a whole number, not a string".to_owned()
                ),
                (
                    "tags".to_owned(),
                    "must be a list of strings, not a string".to_owned()
                ),
                ("name".to_owned(), "is required".to_owned()),
            ]
        );
        let patched: Body = serde_json::from_value(patched.unwrap()).unwrap();
        assert_eq!((patched.name.as_str(), patched.n), ("", 0));
        assert!(patched.tags.is_none());
    }

    #[test]
    fn list_items_are_checked_one_by_one() {
        let (errors, _) = check(json!({"name": "a", "n": 1, "tags": ["ok", 3, null]}));
        assert_eq!(
            errors,
            [
                (
                    "tags[1]".to_owned(),
                    "must be a string, not a number".to_owned()
                ),
                (
                    "tags[2]".to_owned(),
                    "must be a string, not null".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn a_body_that_is_not_an_object_is_one_problem() {
        let (errors, patched) = check(json!([1]));
        assert_eq!(
            errors,
            [(
                "body".to_owned(),
                "must be an object, not a list".to_owned()
            )]
        );
        assert!(patched.is_none());
    }
}
