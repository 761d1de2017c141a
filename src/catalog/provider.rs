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
//!
//! Resource entities are written as YAML text straight from the row: at 100k resources,
//! building a `serde_json` tree per entity and serializing it through `yaml_serde` was most of
//! a page's rendering time. Strings are plain where they read back as the same string under
//! YAML 1.1 and 1.2 alike, double-quoted otherwise ([`scalar`]).

use std::fmt::Write as _;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    db::catalog::Entry,
    vocab::entity_ref::{is_valid_entity_name, resource_ref},
};

/// The annotations a resource's entities share: what they are and where they come from.
/// (`backstage.io/managed-by-location` and `-origin-location` are the catalog's to set, from
/// the Location that read the entity; a provider that writes them only gets them overwritten.)
fn shared_annotations(out: &mut String, r: &Entry) {
    entry(
        out,
        4,
        "backstage.io/source-template",
        &format!("template:default/{}", r.offering),
    );
    entry(out, 4, "paved.dev/resource-id", &r.id);
    entry(out, 4, "paved.dev/request-id", &r.request_id);
    entry(out, 4, "paved.dev/offering", &r.offering);
    entry(out, 4, "paved.dev/environment", &r.environment);
    entry(out, 4, "paved.dev/status", r.status.as_str());
}

/// Appends what Backstage shows for one resource, as one YAML document. Annotation values are
/// strings (Backstage's rule); credentials never appear (the entry has no outputs). The drift
/// annotation is there once the resource was checked (`detected` or `none`).
pub fn push_resource_entity(out: &mut String, r: &Entry, base_url: &str) {
    let desired = &r.desired;
    let title = desired
        .pointer("/resource/title")
        .and_then(Value::as_str)
        .unwrap_or(&r.entity_name);
    out.push_str("---\napiVersion: backstage.io/v1alpha1\nkind: Resource\nmetadata:\n");
    entry(out, 2, "name", &r.entity_name);
    entry(out, 2, "title", title);
    out.push_str("  description: ");
    scalar(
        out,
        &format!(
            "{} from paved offering {} ({})",
            r.resource_type, r.offering, r.environment
        ),
    );
    out.push_str("\n  labels:\n");
    let extra = desired
        .pointer("/resource/labels")
        .and_then(Value::as_object);
    // An ordered label of the same name replaces paved's own.
    for (k, v) in [
        ("paved.dev/offering", &r.offering),
        ("paved.dev/environment", &r.environment),
    ] {
        if extra.is_none_or(|e| !e.contains_key(k)) {
            entry(out, 4, k, v);
        }
    }
    for (k, v) in extra.into_iter().flatten() {
        indent(out, 4);
        scalar(out, k);
        out.push_str(": ");
        json_value(out, v);
        out.push('\n');
    }
    tags(out, &r.resource_type, &r.environment);
    out.push_str("  annotations:\n");
    shared_annotations(out, r);
    entry(out, 4, "paved.dev/offering-version", &r.offering_version);
    if let Some(c) = r.monthly_cost_cents {
        entry(
            out,
            4,
            "paved.dev/monthly-cost-usd",
            &format!("{:.2}", c as f64 / 100.0),
        );
    }
    if let Some(e) = r.expires_at {
        entry(out, 4, "paved.dev/expires-at", &e.to_rfc3339());
    }
    if let Some(d) = r.drift {
        entry(out, 4, "paved.dev/drift", d.as_str());
    }
    let outputs = declared_outputs(r, None);
    for o in &outputs {
        entry(out, 4, &o.annotation, &o.value);
    }
    api_links(out, r, base_url, &outputs);
    out.push_str("spec:\n");
    entry(out, 2, "type", &r.resource_type);
    entry(out, 2, "owner", &r.owner);
    if let Some(s) = &r.system {
        entry(out, 2, "system", s);
    }
    if let Some(c) = &r.component {
        out.push_str("  dependencyOf:\n");
        item(out, c);
    }
    let parts = composite_parts(r);
    if !parts.is_empty() {
        out.push_str("  dependsOn:\n");
        for (id, _) in &parts {
            item(
                out,
                &resource_ref(&part_entity_name(&r.entity_name, &r.id, id)),
            );
        }
    }
}

/// `tags: [paved, <type>, <environment>]`, lower case.
fn tags(out: &mut String, kind: &str, environment: &str) {
    out.push_str("  tags:\n  - paved\n");
    item(out, &kind.to_ascii_lowercase());
    item(out, &environment.to_ascii_lowercase());
}

/// One output the offering declares, as the entity shows it.
struct ShownOutput {
    /// `paved.dev/output.<part>.<name>` (`templates lint` keeps it a valid annotation key).
    annotation: String,
    value: String,
    description: String,
}

/// The declared outputs (of one part, or all) that the resource has, as strings. Only what the
/// offering declares is shown: the platform team decides what everyone in Backstage sees of a
/// resource (its outputs hold no secret, but not every output is worth publishing).
fn declared_outputs(r: &Entry, part: Option<&str>) -> Vec<ShownOutput> {
    let Some(declared) = r.desired.get("outputs").and_then(Value::as_array) else {
        return Vec::new();
    };
    declared
        .iter()
        .filter_map(|d| {
            let (p, name) = (d.get("part")?.as_str()?, d.get("name")?.as_str()?);
            // An invalid annotation key would make Backstage refuse the whole entity.
            let key = format!("output.{p}.{name}");
            if part.is_some_and(|want| want != p) || !is_valid_entity_name(&key) {
                return None;
            }
            let value = match r.outputs.get(p)?.get(name)? {
                Value::String(s) => s.clone(),
                v @ (Value::Number(_) | Value::Bool(_)) => v.to_string(),
                _ => return None,
            };
            Some(ShownOutput {
                annotation: format!("paved.dev/{key}"),
                value,
                description: d
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or(name)
                    .to_owned(),
            })
        })
        .collect()
}

/// Links to paved's API, labelled as such: JSON routes that need a token (a browser opens them
/// as 401), for API clients and `paved` itself. What a person opens is the entity page itself,
/// and the declared outputs that are web addresses (a module's endpoint, a preview's URL).
fn api_links(out: &mut String, r: &Entry, base_url: &str, outputs: &[ShownOutput]) {
    out.push_str("  links:\n  - url: ");
    scalar(out, &format!("{base_url}/v1/requests/{}", r.request_id));
    out.push_str("\n    title: Provisioning request (paved API, JSON; needs a token)\n  - url: ");
    scalar(
        out,
        &format!("{base_url}/v1/resources/{}/credentials", r.id),
    );
    out.push_str("\n    title: Credentials (paved API, JSON; owning team only)\n");
    for o in outputs {
        if o.value.starts_with("https://") || o.value.starts_with("http://") {
            out.push_str("  - url: ");
            scalar(out, &o.value);
            out.push_str("\n    title: ");
            scalar(out, &o.description);
            out.push('\n');
        }
    }
}

/// The parts of a composite resource as (id, driver); empty for a single-part one, which is
/// its one part.
fn composite_parts(r: &Entry) -> Vec<(&str, &str)> {
    let parts: Vec<(&str, &str)> = r
        .desired
        .pointer("/parts")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| Some((p.get("id")?.as_str()?, p.get("driver")?.as_str()?)))
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
        .map(|p| resource_ref(&part_entity_name(resource_name, resource_id, p)))
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

/// Appends one part of a composite resource, as its own `Resource` document.
fn push_part_entity(out: &mut String, r: &Entry, part_id: &str, driver: &str, base_url: &str) {
    let unit = resource_ref(&r.entity_name);
    let kind = part_type(driver);
    out.push_str("---\napiVersion: backstage.io/v1alpha1\nkind: Resource\nmetadata:\n");
    entry(
        out,
        2,
        "name",
        &part_entity_name(&r.entity_name, &r.id, part_id),
    );
    entry(
        out,
        2,
        "title",
        &format!("{} {part_id} ({driver})", r.entity_name),
    );
    entry(
        out,
        2,
        "description",
        &format!(
            "The {part_id} ({kind} via {driver}) of {}; created, changed and deleted with it",
            r.entity_name
        ),
    );
    out.push_str("  labels:\n");
    entry(out, 4, "paved.dev/offering", &r.offering);
    entry(out, 4, "paved.dev/environment", &r.environment);
    tags(out, kind, &r.environment);
    out.push_str("  annotations:\n");
    shared_annotations(out, r);
    entry(out, 4, "paved.dev/part", part_id);
    entry(out, 4, "paved.dev/part-of", &unit);
    entry(out, 4, "paved.dev/driver", driver);
    if let Some(e) = r.expires_at {
        entry(out, 4, "paved.dev/expires-at", &e.to_rfc3339());
    }
    let outputs = declared_outputs(r, Some(part_id));
    for o in &outputs {
        entry(out, 4, &o.annotation, &o.value);
    }
    api_links(out, r, base_url, &outputs);
    out.push_str("spec:\n");
    entry(out, 2, "type", kind);
    entry(out, 2, "owner", &r.owner);
    out.push_str("  dependencyOf:\n");
    item(out, &unit);
    if let Some(s) = &r.system {
        entry(out, 2, "system", s);
    }
}

/// Appends a resource's entities: itself, then its parts when it is a composite.
pub fn push_resource_entities(out: &mut String, r: &Entry, base_url: &str) {
    push_resource_entity(out, r, base_url);
    for (id, driver) in composite_parts(r) {
        push_part_entity(out, r, id, driver, base_url);
    }
}

/// Appends a document built as a JSON value (Templates, Locations: a few per catalog).
pub fn push_yaml(out: &mut String, v: &Value) {
    out.push_str("---\n");
    out.push_str(&yaml_serde::to_string(v).unwrap_or_default());
}

fn indent(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push(' ');
    }
}

/// `<indent><key>: <value>` on a line of its own.
fn entry(out: &mut String, n: usize, key: &str, value: &str) {
    indent(out, n);
    scalar(out, key);
    out.push_str(": ");
    scalar(out, value);
    out.push('\n');
}

/// A sequence item under a key at indent 2 (`  - <value>`).
fn item(out: &mut String, value: &str) {
    out.push_str("  - ");
    scalar(out, value);
    out.push('\n');
}

/// A label value as ordered: a string as a scalar, anything else in flow style (JSON-like).
fn json_value(out: &mut String, v: &Value) {
    match v {
        Value::String(s) => scalar(out, s),
        other => flow(out, other),
    }
}

/// `v` in flow style, every string double-quoted (flow context gives `,` `[` `]` `{` `}`
/// meaning, so nothing there is left plain).
fn flow(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => quoted(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                flow(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                quoted(out, k);
                out.push_str(": ");
                flow(out, x);
            }
            out.push('}');
        }
    }
}

/// Appends `s` as a block-context YAML scalar that reads back as the string `s`.
pub fn scalar(out: &mut String, s: &str) {
    if is_plain(s) {
        out.push_str(s);
    } else {
        quoted(out, s);
    }
}

/// Whether `s` may be written unquoted and still read as this string, under YAML 1.2 (what
/// Backstage's parser speaks) and 1.1 alike. Deliberately narrow: an ASCII letter first (so no
/// number, date, indicator or `~`), then letters, digits, spaces and `._-/:@()+,`; no `: `, no
/// trailing `:` or space, and none of the words YAML 1.1 reads as a boolean or null.
fn is_plain(s: &str) -> bool {
    let b = s.as_bytes();
    let Some(first) = b.first() else {
        return false;
    };
    if !first.is_ascii_alphabetic() || matches!(b.last(), Some(b':' | b' ')) {
        return false;
    }
    let mut prev = 0u8;
    for &c in b {
        let ok = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b' ' | b'.' | b'_' | b'-' | b'/' | b':' | b'@' | b'(' | b')' | b'+' | b','
            );
        if !ok || (prev == b':' && c == b' ') {
            return false;
        }
        prev = c;
    }
    // YAML 1.1 booleans and null (any case is refused, a superset of what it reads as such).
    !(b.len() <= 5
        && ["y", "n", "yes", "no", "on", "off", "true", "false", "null"]
            .iter()
            .any(|w| w.eq_ignore_ascii_case(s)))
}

/// `s` double-quoted: `"` and `\` escaped, and every character YAML does not allow raw (C0 and
/// C1 controls, DEL) or may read as a line break (NEL, U+2028/9) or drop (BOM) as `\uXXXX`.
fn quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{feff}'
            | '\u{fffe}'
            | '\u{ffff}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::entities::drift_state::DriftStatus;
    use proptest::prelude::*;
    use serde_json::json;

    fn entry(desired: Value) -> Entry {
        Entry {
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
            desired,
            outputs: json!({}),
            monthly_cost_cents: None,
            expires_at: None,
            request_id: "q1".into(),
            catalog_bucket: 0,
            drift: None,
        }
    }

    /// The documents `push_resource_entities` writes, read back as YAML.
    fn read_back(r: &Entry, base_url: &str) -> Vec<Value> {
        let mut out = String::new();
        push_resource_entities(&mut out, r, base_url);
        out.split("---\n")
            .filter(|d| !d.trim().is_empty())
            .map(|d| yaml_serde::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
            .collect()
    }

    #[test]
    fn api_links_are_labelled_as_api_links_and_carry_no_secret() {
        let e = read_back(&entry(json!({})), "https://paved.example/api/paved").remove(0);
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
    }

    /// Everything an entity carries, checked field by field against what it was built from,
    /// with the values that need quoting in YAML.
    #[test]
    fn a_composite_reads_back_as_the_unit_and_its_parts() {
        let expires = chrono::DateTime::parse_from_rfc3339("2026-12-24T08:00:00+00:00")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let mut r = entry(json!({
            "resource": {
                "title": "Shop: preview #7 \"quoted\" ünïcode",
                "labels": {"cost-center": "0042", "paved.dev/environment": "override", "n": 3, "on": true}
            },
            "parts": [{"id": "database", "driver": "postgres"}, {"id": "cache", "driver": "redis"}],
        }));
        r.entity_name = "preview-shop-7".into();
        r.environment = "Preview".into();
        r.system = Some("system:default/shop".into());
        r.component = Some("component:default/shop".into());
        r.monthly_cost_cents = Some(4205);
        r.expires_at = Some(expires);
        r.drift = Some(DriftStatus::Detected);
        r.id = "0cc175b9c0f1b6a8".into();
        r.request_id = "true".into();
        let docs = read_back(&r, "http://x/api/paved");
        assert_eq!(docs.len(), 3);
        let links = json!([
            {"url": "http://x/api/paved/v1/requests/true", "title": "Provisioning request (paved API, JSON; needs a token)"},
            {"url": "http://x/api/paved/v1/resources/0cc175b9c0f1b6a8/credentials", "title": "Credentials (paved API, JSON; owning team only)"},
        ]);
        let shared = json!({
            "backstage.io/source-template": "template:default/postgres-database",
            "paved.dev/resource-id": "0cc175b9c0f1b6a8",
            "paved.dev/request-id": "true",
            "paved.dev/offering": "postgres-database",
            "paved.dev/environment": "Preview",
            "paved.dev/status": "ready",
        });
        let mut annotations = shared.clone();
        for (k, v) in [
            ("paved.dev/offering-version", "1"),
            ("paved.dev/monthly-cost-usd", "42.05"),
            ("paved.dev/expires-at", "2026-12-24T08:00:00+00:00"),
            ("paved.dev/drift", "detected"),
        ] {
            annotations[k] = json!(v);
        }
        assert_eq!(
            docs[0],
            json!({
                "apiVersion": "backstage.io/v1alpha1",
                "kind": "Resource",
                "metadata": {
                    "name": "preview-shop-7",
                    "title": "Shop: preview #7 \"quoted\" ünïcode",
                    "description": "database from paved offering postgres-database (Preview)",
                    "labels": {"paved.dev/offering": "postgres-database", "paved.dev/environment": "override",
                               "cost-center": "0042", "n": 3, "on": true},
                    "tags": ["paved", "database", "preview"],
                    "annotations": annotations,
                    "links": links,
                },
                "spec": {
                    "type": "database", "owner": "group:default/team-a", "system": "system:default/shop",
                    "dependencyOf": ["component:default/shop"],
                    "dependsOn": ["resource:default/preview-shop-7.database", "resource:default/preview-shop-7.cache"],
                },
            })
        );
        let mut part = shared;
        for (k, v) in [
            ("paved.dev/part", "cache"),
            ("paved.dev/part-of", "resource:default/preview-shop-7"),
            ("paved.dev/driver", "redis"),
            ("paved.dev/expires-at", "2026-12-24T08:00:00+00:00"),
        ] {
            part[k] = json!(v);
        }
        assert_eq!(
            docs[2],
            json!({
                "apiVersion": "backstage.io/v1alpha1",
                "kind": "Resource",
                "metadata": {
                    "name": "preview-shop-7.cache",
                    "title": "preview-shop-7 cache (redis)",
                    "description": "The cache (cache via redis) of preview-shop-7; created, changed and deleted with it",
                    "labels": {"paved.dev/offering": "postgres-database", "paved.dev/environment": "Preview"},
                    "tags": ["paved", "cache", "preview"],
                    "annotations": part,
                    "links": links,
                },
                "spec": {
                    "type": "cache", "owner": "group:default/team-a", "system": "system:default/shop",
                    "dependencyOf": ["resource:default/preview-shop-7"],
                },
            })
        );
        assert_eq!(docs[1]["metadata"]["name"], "preview-shop-7.database");
        assert_eq!(docs[1]["spec"]["type"], "database");
    }

    /// The entity shows the outputs its offering declares, as annotations (a web address also
    /// as a link), on the unit and on the part they belong to; nothing undeclared, nothing
    /// that is not a plain value, no key Backstage would refuse.
    #[test]
    fn entities_show_the_declared_outputs_and_nothing_else() {
        let mut r = entry(json!({
            "parts": [{"id": "database", "driver": "postgres"}, {"id": "web", "driver": "terraform"}],
            "outputs": [
                {"part": "database", "name": "host", "description": "Host"},
                {"part": "database", "name": "port", "description": "Port"},
                {"part": "web", "name": "url", "description": "The preview's address"},
                {"part": "web", "name": "settings", "description": "An object"},
                {"part": "web", "name": "not valid!", "description": "A bad key"},
                {"part": "web", "name": "missing", "description": "Not reported"},
            ],
        }));
        r.outputs = json!({
            "database": {"host": "pg.internal", "port": 5432, "username": "orders_owner"},
            "web": {"url": "https://orders.preview.example", "settings": {"a": 1}, "not valid!": "x"},
        });
        let docs = read_back(&r, "http://x");
        assert_eq!(docs.len(), 3);
        let outputs_of = |d: &Value| -> Value {
            d["metadata"]["annotations"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| k.starts_with("paved.dev/output."))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        assert_eq!(
            outputs_of(&docs[0]),
            json!({
                "paved.dev/output.database.host": "pg.internal",
                "paved.dev/output.database.port": "5432",
                "paved.dev/output.web.url": "https://orders.preview.example",
            })
        );
        assert_eq!(
            outputs_of(&docs[1]),
            json!({"paved.dev/output.database.host": "pg.internal", "paved.dev/output.database.port": "5432"})
        );
        assert_eq!(
            outputs_of(&docs[2]),
            json!({"paved.dev/output.web.url": "https://orders.preview.example"})
        );
        for d in [&docs[0], &docs[2]] {
            let links = d["metadata"]["links"].as_array().unwrap();
            assert_eq!(
                links.last().unwrap(),
                &json!({"url": "https://orders.preview.example", "title": "The preview's address"})
            );
        }
        assert_eq!(docs[1]["metadata"]["links"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_single_part_resource_is_one_entity_titled_by_its_name() {
        let r =
            entry(json!({"parts": [{"id": "db", "driver": "postgres"}], "resource": {"title": 5}}));
        let docs = read_back(&r, "http://x");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0]["metadata"]["title"], "orders-db-dev");
        assert!(docs[0]["spec"].get("dependsOn").is_none());
        assert!(
            docs[0]["metadata"]["annotations"]
                .get("paved.dev/drift")
                .is_none()
        );
    }

    proptest! {
        /// Whatever a string holds, it reads back as itself, as a value and as a key.
        #[test]
        fn any_string_reads_back_as_itself(
            s in prop_oneof![
                any::<String>(),
                "[a-zA-Z][a-zA-Z0-9 ._/:@()+,#'-]{0,16}",
                "(yes|No|ON|off|true|NULL|y|n|~|null|0x1f|1e3|-1|\\.inf|2026-12-01)",
            ]
        ) {
            let read = |yaml: String| -> Result<serde_json::Map<String, Value>, TestCaseError> {
                yaml_serde::from_str(&yaml).map_err(|e| TestCaseError::fail(format!("{e}: {yaml:?}")))
            };
            let mut value = String::from("k: ");
            scalar(&mut value, &s);
            value.push('\n');
            let mut key = String::new();
            scalar(&mut key, &s);
            key.push_str(": v\n");
            let (as_value, as_key) = (read(value)?, read(key)?);
            prop_assert_eq!(as_value.get("k"), Some(&json!(s)));
            prop_assert_eq!(as_key.get(&s), Some(&json!("v")));
        }
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
