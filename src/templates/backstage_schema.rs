//! Backstage's own JSON Schema for `scaffolder.backstage.io/v1beta3` Templates (vendored from
//! npm, see `backstage_schemas/README.md`), so lint refuses what Backstage's catalog would.

use std::sync::OnceLock;

use jsonschema::{Retrieve, Uri, Validator};
use serde_json::Value;

const BASE: &str = "json-schema:///";

const SCHEMAS: &[(&str, &str)] = &[
    (
        "Entity",
        include_str!("backstage_schemas/Entity.schema.json"),
    ),
    (
        "EntityMeta",
        include_str!("backstage_schemas/EntityMeta.schema.json"),
    ),
    (
        "common",
        include_str!("backstage_schemas/common.schema.json"),
    ),
];
const TEMPLATE: &str = include_str!("backstage_schemas/Template.v1beta3.schema.json");

/// The schemas refer to each other by bare `$id`s; this resolves them offline.
struct Vendored;

impl Retrieve for Vendored {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri.as_str().trim_start_matches(BASE);
        let name = name.split('#').next().unwrap_or(name);
        SCHEMAS
            .iter()
            .find(|(id, _)| *id == name)
            .map(|(_, text)| serde_json::from_str(text).map_err(Into::into))
            .unwrap_or_else(|| Err(format!("no vendored Backstage schema {uri}").into()))
    }
}

fn validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| {
        let schema: Value = serde_json::from_str(TEMPLATE).expect("vendored schema is JSON");
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .with_base_uri(format!("{BASE}TemplateV1beta3"))
            .with_retriever(Vendored)
            .build(&schema)
            .expect("vendored Backstage schema compiles")
    })
}

/// A schema violation, with the text to look for in the file to find its line.
pub struct SchemaProblem {
    pub needle: String,
    pub message: String,
}

/// Checks a parsed template against Backstage's schema.
pub fn check_template(template: &Value) -> Vec<SchemaProblem> {
    validator()
        .iter_errors(template)
        .map(|e| {
            let path = e.instance_path().to_string();
            let needle = path
                .rsplit('/')
                .find(|s| !s.is_empty() && !s.bytes().all(|b| b.is_ascii_digit()))
                .map(|s| format!("{s}:"))
                .unwrap_or_default();
            let at = if path.is_empty() {
                "(root)".to_owned()
            } else {
                path
            };
            SchemaProblem {
                needle,
                message: format!("Backstage Template schema: {at}: {e}"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_a_minimal_template_and_refuses_what_backstage_refuses() {
        let ok = json!({
            "apiVersion": "scaffolder.backstage.io/v1beta3", "kind": "Template",
            "metadata": {"name": "x"},
            "spec": {"type": "resource", "steps": [{"id": "a", "action": "paved:estimate"}]}
        });
        assert!(check_template(&ok).is_empty());
        let mut no_steps = ok.clone();
        no_steps["spec"].as_object_mut().unwrap().remove("steps");
        assert!(!check_template(&no_steps).is_empty());
        let mut extra = ok.clone();
        extra["bogus"] = json!(1);
        assert!(!check_template(&extra).is_empty());
        let mut bad_annotation = ok;
        bad_annotation["metadata"]["annotations"] = json!({"a": 1});
        assert!(!check_template(&bad_annotation).is_empty());
    }
}
