//! The template's form (`spec.parameters`) as a validator.
//!
//! Backstage validates each parameter page (draft-07 JSON Schema, `ui:*` keys ignored) against
//! the merged values of all pages; paved does the same server-side, because calls to its
//! actions and REST API never pass through the scaffolder's own check, and applies the
//! defaults the form would have filled in.

use std::collections::BTreeSet;

use jsonschema::{ValidationError, Validator, error::ValidationErrorKind};
use serde_json::{Map, Value};

use crate::vocab::field_error::FieldError;

/// Values that passed the form: an object, with defaults applied. Only [`Form::validate`]
/// makes one, so holding it proves the check ran.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidValues(Map<String, Value>);

impl ValidValues {
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }
    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

struct Page {
    schema: Value,
    validator: Validator,
}

/// The compiled parameter pages of one template.
pub struct Form {
    pages: Vec<Page>,
    /// Every top-level field any page declares.
    fields: BTreeSet<String>,
}

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Form")
            .field("fields", &self.fields)
            .finish()
    }
}

impl Form {
    /// Compiles `spec.parameters` (one object or a list of pages). Errors name the page.
    pub fn compile(parameters: Option<&Value>) -> Result<Self, String> {
        let pages: Vec<&Value> = match parameters {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(list)) => list.iter().collect(),
            Some(obj @ Value::Object(_)) => vec![obj],
            Some(_) => return Err("spec.parameters must be an object or a list of pages".into()),
        };
        let mut compiled = Vec::with_capacity(pages.len());
        let mut fields = BTreeSet::new();
        for (i, page) in pages.into_iter().enumerate() {
            if !page.is_object() {
                return Err(format!("spec.parameters[{i}] must be an object"));
            }
            let validator = jsonschema::draft7::new(page)
                .map_err(|e| format!("spec.parameters[{i}] is not a valid JSON Schema: {e}"))?;
            if let Some(props) = page.get("properties").and_then(Value::as_object) {
                fields.extend(props.keys().cloned());
            }
            compiled.push(Page {
                schema: page.clone(),
                validator,
            });
        }
        Ok(Self {
            pages: compiled,
            fields,
        })
    }

    pub fn fields(&self) -> &BTreeSet<String> {
        &self.fields
    }

    /// Schema of every page, in order.
    pub fn page_schemas(&self) -> impl Iterator<Item = &Value> {
        self.pages.iter().map(|p| &p.schema)
    }

    /// Applies defaults, refuses unknown fields, validates every page; reports every violation.
    pub fn validate(&self, values: &Value) -> Result<ValidValues, Vec<FieldError>> {
        let Some(input) = values.as_object() else {
            return Err(vec![FieldError {
                field: String::new(),
                rule: "type".into(),
                message: format!("values must be an object, not {}", json_kind(values)),
            }]);
        };
        let mut merged = input.clone();
        for page in &self.pages {
            apply_defaults(&page.schema, &mut merged);
        }
        let mut errors: Vec<FieldError> = merged
            .keys()
            .filter(|k| !self.fields.contains(*k))
            .map(|k| FieldError {
                field: k.clone(),
                rule: "additionalProperties".into(),
                message: "is not a parameter of this template".into(),
            })
            .collect();
        let instance = Value::Object(merged);
        for page in &self.pages {
            for err in page.validator.iter_errors(&instance) {
                let e = describe(&err);
                if !errors.contains(&e) {
                    errors.push(e);
                }
            }
        }
        match instance {
            Value::Object(map) if errors.is_empty() => Ok(ValidValues(map)),
            _ => Err(errors),
        }
    }
}

/// Fills `default`s of absent properties, recursing into objects (what the form does before
/// submit). An absent object is created only when it is required and one of its children has
/// a default: creating an optional one would invent errors for fields nobody was asked for.
fn apply_defaults(schema: &Value, target: &mut Map<String, Value>) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required = |name: &str| {
        schema
            .get("required")
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(|v| v == name))
    };
    for (name, prop) in props {
        match target.get_mut(name) {
            Some(Value::Object(child)) => apply_defaults(prop, child),
            Some(_) => {}
            None => {
                if let Some(default) = prop.get("default") {
                    target.insert(name.clone(), default.clone());
                } else if prop.get("properties").is_some() && required(name) {
                    let mut child = Map::new();
                    apply_defaults(prop, &mut child);
                    if !child.is_empty() {
                        target.insert(name.clone(), Value::Object(child));
                    }
                }
            }
        }
    }
}

fn describe(err: &ValidationError<'_>) -> FieldError {
    let mut field = pointer_to_path(&err.instance_path().to_string());
    let rule = err.kind().keyword().to_owned();
    let message = match err.kind() {
        ValidationErrorKind::Required { property } => {
            let prop = property
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| property.to_string());
            field = if field.is_empty() {
                prop
            } else {
                format!("{field}.{prop}")
            };
            "is required".to_owned()
        }
        ValidationErrorKind::Maximum { limit } => format!("must be <= {limit}"),
        ValidationErrorKind::Minimum { limit } => format!("must be >= {limit}"),
        ValidationErrorKind::ExclusiveMaximum { limit } => format!("must be < {limit}"),
        ValidationErrorKind::ExclusiveMinimum { limit } => format!("must be > {limit}"),
        ValidationErrorKind::MaxLength { limit } => format!("must be at most {limit} characters"),
        ValidationErrorKind::MinLength { limit } => format!("must be at least {limit} characters"),
        ValidationErrorKind::MaxItems { limit } => format!("must have at most {limit} items"),
        ValidationErrorKind::MinItems { limit } => format!("must have at least {limit} items"),
        ValidationErrorKind::Pattern { pattern } => format!("must match pattern {pattern}"),
        ValidationErrorKind::Enum { options } => match options.as_array() {
            Some(opts) => format!(
                "must be one of: {}",
                opts.iter().map(short).collect::<Vec<_>>().join(", ")
            ),
            None => format!("must be one of {options}"),
        },
        ValidationErrorKind::Constant { expected_value } => {
            format!("must be {}", short(expected_value))
        }
        ValidationErrorKind::Type { kind } => format!(
            "must be of type {}, not {}",
            type_name(kind),
            json_kind(err.instance())
        ),
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            format!("has unknown fields: {}", unexpected.join(", "))
        }
        ValidationErrorKind::Format { format } => format!("must be a valid {format}"),
        ValidationErrorKind::MultipleOf { multiple_of } => {
            format!("must be a multiple of {multiple_of}")
        }
        ValidationErrorKind::UniqueItems => "must not contain duplicates".to_owned(),
        ValidationErrorKind::OneOfNotValid { .. } | ValidationErrorKind::AnyOf { .. } => {
            "does not match any of the allowed shapes".to_owned()
        }
        ValidationErrorKind::OneOfMultipleValid { .. } => {
            "matches more than one of the allowed shapes".to_owned()
        }
        _ => err.to_string(),
    };
    FieldError {
        field,
        rule,
        message,
    }
}

fn type_name(kind: &jsonschema::error::TypeKind) -> String {
    match kind {
        jsonschema::error::TypeKind::Single(t) => t.to_string(),
        jsonschema::error::TypeKind::Multiple(set) => set
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `/network/cidrs/1` → `network.cidrs[1]` (JSON pointer escapes `~1` and `~0` undone).
fn pointer_to_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) && !out.is_empty() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form() -> Form {
        Form::compile(Some(&json!([
            {
                "title": "Database",
                "required": ["name", "environment"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z][a-z0-9-]{2,30}$", "ui:autofocus": true},
                    "environment": {"type": "string", "enum": ["dev", "staging", "prod"]},
                    "size": {"type": "string", "enum": ["small", "medium"], "default": "small"}
                }
            },
            {
                "title": "Advanced",
                "properties": {
                    "storage_gb": {"type": "integer", "minimum": 20, "maximum": 1000},
                    "backup_retention_days": {"type": "integer", "default": 7},
                    "network": {
                        "type": "object",
                        "required": ["cidr"],
                        "properties": {
                            "cidr": {"type": "string", "minLength": 9},
                            "public": {"type": "boolean", "default": false}
                        }
                    },
                    "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}}
                }
            }
        ])))
        .unwrap()
    }

    fn errors(values: Value) -> Vec<String> {
        let mut v: Vec<String> = form()
            .validate(&values)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn applies_defaults_across_pages_and_nested_objects() {
        let ok = form()
            .validate(&json!({"name": "orders", "environment": "dev", "network": {"cidr": "10.0.0.0/16"}}))
            .unwrap();
        assert_eq!(ok.as_map()["size"], "small");
        assert_eq!(ok.as_map()["backup_retention_days"], 7);
        assert_eq!(ok.as_map()["network"]["public"], false);
    }

    #[test]
    fn table_of_violations() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({"environment": "dev"}), vec!["name: is required"]),
            (
                json!({"name": 5, "environment": "dev"}),
                vec!["name: must be of type string, not integer"],
            ),
            (
                json!({"name": "orders", "environment": "qa"}),
                vec!["environment: must be one of: dev, staging, prod"],
            ),
            (
                json!({"name": "Orders!", "environment": "dev"}),
                vec!["name: must match pattern ^[a-z][a-z0-9-]{2,30}$"],
            ),
            (
                json!({"name": "orders", "environment": "dev", "storage_gb": 5000}),
                vec!["storage_gb: must be <= 1000"],
            ),
            (
                json!({"name": "orders", "environment": "dev", "storage_gb": 1}),
                vec!["storage_gb: must be >= 20"],
            ),
            (
                json!({"name": "orders", "environment": "dev", "storage_gb": 20.5}),
                vec!["storage_gb: must be of type integer, not number"],
            ),
            (
                json!({"name": "orders", "environment": "dev", "network": {}}),
                vec!["network.cidr: is required"],
            ),
            (
                json!({"name": "orders", "environment": "dev", "network": {"cidr": "short"}}),
                vec!["network.cidr: must be at least 9 characters"],
            ),
            (
                json!({"name": "orders", "environment": "dev", "tags": ["ok", "toolong"]}),
                vec!["tags[1]: must be at most 5 characters"],
            ),
            (
                json!({"name": "orders", "environment": "dev", "bogus": 1}),
                vec!["bogus: is not a parameter of this template"],
            ),
        ];
        for (values, expected) in cases {
            assert_eq!(errors(values.clone()), expected, "values: {values}");
        }
    }

    #[test]
    fn reports_all_errors_at_once() {
        let all = errors(json!({"environment": "qa", "storage_gb": 5000, "bogus": true}));
        assert_eq!(
            all,
            vec![
                "bogus: is not a parameter of this template",
                "environment: must be one of: dev, staging, prod",
                "name: is required",
                "storage_gb: must be <= 1000",
            ]
        );
    }

    #[test]
    fn non_object_values_are_refused() {
        assert_eq!(
            errors(json!([1])),
            vec!["values must be an object, not array"]
        );
    }

    #[test]
    fn single_object_parameters_and_bad_schemas() {
        let f = Form::compile(Some(&json!({"properties": {"a": {"type": "string"}}}))).unwrap();
        assert!(f.validate(&json!({"a": "x"})).is_ok());
        let err =
            Form::compile(Some(&json!([{"properties": {"a": {"type": "strng"}}}]))).unwrap_err();
        assert!(err.contains("spec.parameters[0]"), "{err}");
    }

    proptest::proptest! {
        // Whatever the values, validation answers (never panics) and every error names a rule.
        #[test]
        fn validation_never_panics(s in ".{0,40}", n in proptest::num::i64::ANY, b in proptest::bool::ANY) {
            let values = json!({"name": s, "environment": s, "storage_gb": n, "network": {"public": b, "cidr": n}});
            match form().validate(&values) {
                Ok(v) => proptest::prop_assert!(v.as_map().contains_key("size")),
                Err(errs) => proptest::prop_assert!(errs.iter().all(|e| !e.rule.is_empty() && !e.message.is_empty())),
            }
        }
    }
}
