//! The catalog provider: every live resource as a Backstage `Resource` entity, plus the
//! offerings' `Template` entities, served as YAML that a `url` location reads.

use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};

use crate::{db::entities::resource, templates::Catalog};

/// What Backstage shows for one resource. Annotation values are strings (Backstage's rule);
/// credentials never appear. `drift` is the resource's drift status once it was checked
/// (`detected` or `none`).
pub fn resource_entity(r: &resource::Model, base_url: &str, drift: Option<&str>) -> Value {
    let location = format!("url:{base_url}/catalog/resources/{}.yaml", r.id);
    let mut annotations = json!({
        "backstage.io/managed-by-location": location,
        "backstage.io/managed-by-origin-location": location,
        "backstage.io/source-template": format!("template:default/{}", r.offering),
        "paved.dev/resource-id": r.id,
        "paved.dev/request-id": r.request_id,
        "paved.dev/offering": r.offering,
        "paved.dev/offering-version": r.offering_version,
        "paved.dev/environment": r.environment,
        "paved.dev/status": r.status,
    });
    if let Some(c) = r.monthly_cost_cents {
        annotations["paved.dev/monthly-cost-usd"] = json!(format!("{:.2}", c as f64 / 100.0));
    }
    if let Some(e) = r.expires_at {
        annotations["paved.dev/expires-at"] = json!(e.to_rfc3339());
    }
    if let Some(d) = drift {
        annotations["paved.dev/drift"] = json!(d);
    }
    let desired = &r.desired;
    let title = desired
        .pointer("/resource/title")
        .and_then(Value::as_str)
        .unwrap_or(&r.entity_name);
    let mut labels =
        json!({"paved.dev/offering": r.offering, "paved.dev/environment": r.environment});
    if let Some(extra) = desired
        .pointer("/resource/labels")
        .and_then(Value::as_object)
    {
        for (k, v) in extra {
            labels[k] = v.clone();
        }
    }
    let mut spec = json!({"type": r.resource_type, "owner": r.owner});
    if let Some(s) = &r.system {
        spec["system"] = json!(s);
    }
    if let Some(c) = &r.component {
        spec["dependencyOf"] = json!([c]);
    }
    json!({
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Resource",
        "metadata": {
            "name": r.entity_name,
            "title": title,
            "description": format!("{} from paved offering {} ({})", r.resource_type, r.offering, r.environment),
            "labels": labels,
            "tags": ["paved", r.resource_type.to_ascii_lowercase(), r.environment.to_ascii_lowercase()],
            "annotations": annotations,
            "links": [
                {"url": format!("{base_url}/v1/requests/{}", r.request_id), "title": "Provisioning request"},
                {"url": format!("{base_url}/v1/resources/{}/credentials", r.id), "title": "Credentials (owning team only)"},
            ],
        },
        "spec": spec,
    })
}

/// Live resources, oldest first (a stable order keeps the document's ETag stable).
pub async fn live_resources(db: &DatabaseConnection) -> Result<Vec<resource::Model>, DbErr> {
    resource::Entity::find()
        .filter(resource::Column::DeletedAt.is_null())
        .order_by_asc(resource::Column::Id)
        .all(db)
        .await
}

/// All entities as one multi-document YAML stream: the offerings' Templates, then resources
/// (with their drift status by resource id).
pub fn document(
    resources: &[resource::Model],
    templates: &Catalog,
    base_url: &str,
    drift: &std::collections::BTreeMap<String, String>,
) -> String {
    let mut out = String::new();
    for o in templates.offerings.values() {
        push_yaml(&mut out, &o.template);
    }
    for r in resources {
        push_yaml(
            &mut out,
            &resource_entity(r, base_url, drift.get(&r.id).map(String::as_str)),
        );
    }
    out
}

pub fn push_yaml(out: &mut String, v: &Value) {
    out.push_str("---\n");
    out.push_str(&yaml_serde::to_string(v).unwrap_or_default());
}
