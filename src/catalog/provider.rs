//! The catalog provider: every live resource as a Backstage `Resource` entity, plus the
//! offerings' `Template` entities, served as YAML that a `url` location reads.
//!
//! A composite resource (an offering with several parts, e.g. a preview environment made of a
//! database and a cache) is one `Resource` for the unit the team ordered, owns, pays for and
//! deletes, plus one `Resource` per part (what the part really is: a PostgreSQL database, a
//! Redis user), named `<resource>.<part id>`. The unit `dependsOn` its parts and each part is a
//! `dependencyOf` the unit, so Backstage draws the environment with what it is made of. Parts
//! carry no cost (the unit's cost covers them; summing costs over entities stays right) and have
//! no lifecycle of their own: they appear and disappear with the unit.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::db::entities::resource;

/// The annotations a resource's entities share: what they are and where they come from.
/// (`backstage.io/managed-by-location` and `-origin-location` are the catalog's to set, from
/// the Location that read the entity; a provider that writes them only gets them overwritten.)
fn annotations_of(r: &resource::Model) -> Value {
    json!({
        "backstage.io/source-template": format!("template:default/{}", r.offering),
        "paved.dev/resource-id": r.id,
        "paved.dev/request-id": r.request_id,
        "paved.dev/offering": r.offering,
        "paved.dev/environment": r.environment,
        "paved.dev/status": r.status,
    })
}

/// What Backstage shows for one resource. Annotation values are strings (Backstage's rule);
/// credentials never appear. `drift` is the resource's drift status once it was checked
/// (`detected` or `none`).
pub fn resource_entity(r: &resource::Model, base_url: &str, drift: Option<&str>) -> Value {
    let mut annotations = annotations_of(r);
    annotations["paved.dev/offering-version"] = json!(r.offering_version);
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
    let parts = composite_parts(r);
    if !parts.is_empty() {
        spec["dependsOn"] = parts
            .iter()
            .map(|(id, _)| {
                json!(format!(
                    "resource:default/{}",
                    part_entity_name(&r.entity_name, &r.id, id)
                ))
            })
            .collect();
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
            "links": api_links(r, base_url),
        },
        "spec": spec,
    })
}

/// Links to paved's API, labelled as such: JSON routes that need a token (a browser opens them
/// as 401), for API clients and `paved` itself. What a person opens is the entity page itself.
fn api_links(r: &resource::Model, base_url: &str) -> Value {
    json!([
        {"url": format!("{base_url}/v1/requests/{}", r.request_id), "title": "Provisioning request (paved API, JSON; needs a token)"},
        {"url": format!("{base_url}/v1/resources/{}/credentials", r.id), "title": "Credentials (paved API, JSON; owning team only)"},
    ])
}

/// The parts of a composite resource as (id, driver); empty for a single-part one, which is
/// its one part.
fn composite_parts(r: &resource::Model) -> Vec<(String, String)> {
    let parts: Vec<(String, String)> = r
        .desired
        .pointer("/parts")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| {
                    Some((
                        p.get("id")?.as_str()?.to_owned(),
                        p.get("driver")?.as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    if parts.len() > 1 { parts } else { Vec::new() }
}

/// `<resource>.<part id>`; a resource name too long for that keeps a prefix plus a digest of
/// the resource id, so names stay unique, stable and within Backstage's 63 characters.
pub fn part_entity_name(resource_name: &str, resource_id: &str, part_id: &str) -> String {
    let full = format!("{resource_name}.{part_id}");
    if full.len() <= 63 {
        return full;
    }
    let digest: String = Sha256::digest(resource_id.as_bytes())
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    let keep = 63usize.saturating_sub(part_id.len() + 1 + digest.len() + 1);
    let prefix = resource_name[..keep.min(resource_name.len())]
        .trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{prefix}-{digest}.{part_id}")
}

/// Entity refs of a composite resource's parts (what removing it must remove too).
pub fn part_entity_refs(resource_name: &str, resource_id: &str, part_ids: &[&str]) -> Vec<String> {
    if part_ids.len() < 2 {
        return Vec::new();
    }
    part_ids
        .iter()
        .map(|p| {
            format!(
                "resource:default/{}",
                part_entity_name(resource_name, resource_id, p)
            )
        })
        .collect()
}

/// The catalog type of what a driver provisions.
fn part_type(driver: &str) -> &str {
    match driver {
        "postgres" => "database",
        "redis" => "cache",
        other => other,
    }
}

/// One part of a composite resource, as its own `Resource`.
fn part_entity(r: &resource::Model, part_id: &str, driver: &str, base_url: &str) -> Value {
    let unit = format!("resource:default/{}", r.entity_name);
    let mut annotations = annotations_of(r);
    for (k, v) in [
        ("paved.dev/part", part_id),
        ("paved.dev/part-of", unit.as_str()),
        ("paved.dev/driver", driver),
    ] {
        annotations[k] = json!(v);
    }
    if let Some(e) = r.expires_at {
        annotations["paved.dev/expires-at"] = json!(e.to_rfc3339());
    }
    let kind = part_type(driver);
    let mut spec = json!({"type": kind, "owner": r.owner, "dependencyOf": [unit]});
    if let Some(s) = &r.system {
        spec["system"] = json!(s);
    }
    json!({
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Resource",
        "metadata": {
            "name": part_entity_name(&r.entity_name, &r.id, part_id),
            "title": format!("{} {part_id} ({driver})", r.entity_name),
            "description": format!("The {part_id} ({kind} via {driver}) of {}; created, changed and deleted with it", r.entity_name),
            "labels": {"paved.dev/offering": r.offering, "paved.dev/environment": r.environment},
            "tags": ["paved", kind.to_ascii_lowercase(), r.environment.to_ascii_lowercase()],
            "annotations": annotations,
            "links": api_links(r, base_url),
        },
        "spec": spec,
    })
}

/// A resource's entities: itself, then its parts when it is a composite.
pub fn resource_entities(r: &resource::Model, base_url: &str, drift: Option<&str>) -> Vec<Value> {
    let mut out = vec![resource_entity(r, base_url, drift)];
    for (id, driver) in composite_parts(r) {
        out.push(part_entity(r, &id, &driver, base_url));
    }
    out
}

pub fn push_yaml(out: &mut String, v: &Value) {
    out.push_str("---\n");
    out.push_str(&yaml_serde::to_string(v).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::entity_ref::is_valid_entity_name;

    #[test]
    fn api_links_are_labelled_as_api_links_and_carry_no_secret() {
        let now = chrono::Utc::now();
        let r = resource::Model {
            id: "r1".into(),
            entity_name: "orders-db-dev".into(),
            offering: "postgres-database".into(),
            offering_version: "1".into(),
            resource_type: "database".into(),
            environment: "dev".into(),
            owner: "group:default/team-a".into(),
            system: None,
            component: None,
            status: crate::vocab::status::ResourceStatus::Ready,
            desired: json!({}),
            outputs: json!({"password": "s3cret"}),
            monthly_cost_cents: None,
            expires_at: None,
            request_id: "q1".into(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
            catalog_bucket: 0,
        };
        let e = resource_entity(&r, "https://paved.example/api/paved", None);
        let links = e["metadata"]["links"].as_array().unwrap();
        assert_eq!(links.len(), 2);
        for l in links {
            let (url, title) = (l["url"].as_str().unwrap(), l["title"].as_str().unwrap());
            assert!(
                url.starts_with("https://paved.example/api/paved/v1/"),
                "{url}"
            );
            assert!(title.contains("paved API, JSON"), "{title}");
        }
        assert!(!e.to_string().contains("s3cret"));
    }

    #[test]
    fn part_names_are_the_resource_name_and_part_id_within_63_characters() {
        assert_eq!(
            part_entity_name("preview-shop-pr-1", "r1", "database"),
            "preview-shop-pr-1.database"
        );
        let long = format!("preview-{}-{}", "a".repeat(24), "b".repeat(24));
        let one = part_entity_name(&long, "id-1", "database");
        let other = part_entity_name(&long, "id-2", "database");
        assert_eq!(one.len(), 63, "{one}");
        assert!(is_valid_entity_name(&one), "{one}");
        assert!(one.ends_with(".database") && one.starts_with("preview-aaaa"));
        assert_ne!(one, other, "a digest of the resource id keeps them apart");
        assert_eq!(one, part_entity_name(&long, "id-1", "database"), "stable");
        // A cut that would end on a dash does not.
        let dashy = format!("{}-{}", "a".repeat(44), "b".repeat(30));
        assert!(is_valid_entity_name(&part_entity_name(
            &dashy, "x", "cache"
        )));
    }
}
