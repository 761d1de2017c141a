//! The catalog change feed: what paved publishes, for an entity provider inside Backstage
//! (`backstage/plugins/catalog-backend-module-paved`) instead of a `url` location.
//!
//! Read from the start (no cursor), it lists everything: the offerings' Templates, then every
//! resource in the order of its latest change. Read after a cursor, it answers each resource
//! changed since, once, in its current state: a live one as its entities (itself and its parts,
//! the bodies the catalog pages serve), a deleted one as the refs to remove. Positions are rows
//! of `catalog_feed` (see its migration), so a cursor means the same on every replica and after
//! any restart. The answer is state, not history: reading a change twice, or a newer state than
//! the cursor promised, is harmless, which is what lets the walk be paged freely.
//!
//! Provider entities carry `backstage.io/managed-by-location` and `-origin-location` (the
//! catalog refuses them otherwise); they name the document of the same entities
//! (`catalog/resources/<id>.yaml`, the index for Templates), so "view source" still opens paved.

use base64::Engine as _;
use sea_orm::{ConnectionTrait, DbErr};
use serde_json::{Value, json};

use super::{pages::Layout, provider};
use crate::{
    db::{self, catalog::FeedPosition},
    templates::Catalog,
    vocab::{entity_ref::resource_ref, field_error::FieldError},
};

/// The cursor's list name: a cursor of another list is refused rather than misread.
const LIST: &str = "catalog-changes";

/// Changes per answer when the caller gives no limit, and the most it may ask for.
pub const DEFAULT_LIMIT: u64 = 100;
pub const MAX_LIMIT: u64 = 500;

/// One answer of the feed.
#[derive(Debug, Clone, PartialEq)]
pub struct Changes {
    /// Entities to add or replace, whole.
    pub entities: Vec<Value>,
    /// Refs of entities to remove.
    pub removed: Vec<String>,
    /// Where the next read starts; the same cursor when nothing changed.
    pub cursor: String,
    /// More changes follow at once.
    pub more: bool,
    /// A digest of the offerings' versions: a provider that sees it change reads from the
    /// start again (Templates are listed there only).
    pub templates: String,
}

/// The opaque form of a position.
pub fn encode(p: FeedPosition) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{LIST}\n{}.{}", p.txid, p.seq))
}

/// A cursor back to its position; anything else is a field error on `after`.
pub fn decode(cursor: &str) -> Result<FeedPosition, FieldError> {
    let bad = || FieldError {
        field: "after".into(),
        rule: "format".into(),
        message:
            "is not a cursor of the catalog feed; pass the cursor of the previous answer unchanged"
                .into(),
    };
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let (list, pos) = text.split_once('\n').ok_or_else(bad)?;
    let (txid, seq) = pos.split_once('.').ok_or_else(bad)?;
    match (list, txid.parse::<i64>(), seq.parse::<i64>()) {
        (LIST, Ok(txid), Ok(seq)) if txid >= 0 && seq >= 0 => Ok(FeedPosition { txid, seq }),
        _ => Err(bad()),
    }
}

/// `limit` checked: 1 to [`MAX_LIMIT`].
pub fn check_limit(limit: Option<u64>) -> Result<u64, FieldError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(l) if (1..=MAX_LIMIT).contains(&l) => Ok(l),
        Some(_) => Err(FieldError {
            field: "limit".into(),
            rule: "range".into(),
            message: format!("must be a whole number from 1 to {MAX_LIMIT}"),
        }),
    }
}

/// The digest of the offerings' versions (see [`Changes::templates`]).
pub fn templates_version(templates: &Catalog) -> String {
    let versions = templates
        .offerings
        .iter()
        .map(|(name, o)| format!("{name}@{}", o.version))
        .collect::<Vec<_>>()
        .join(",");
    super::pages::etag_of(&versions)
        .trim_matches('"')
        .to_owned()
}

fn with_location(mut entity: Value, target: &str) -> Value {
    if let Some(meta) = entity.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        if let Some(a) = annotations {
            let at = Value::String(format!("url:{target}"));
            a.insert("backstage.io/managed-by-location".into(), at.clone());
            a.insert("backstage.io/managed-by-origin-location".into(), at);
        }
    }
    entity
}

/// A live resource's entities as JSON, parsed from the very text its page serves.
fn resource_entities(e: &db::catalog::Entry, layout: &Layout) -> Vec<Value> {
    use serde::Deserialize;
    let mut text = String::new();
    provider::push_resource_entities(&mut text, e, layout.base_url());
    let source = format!("{}/catalog/resources/{}.yaml", layout.base_url(), e.id);
    yaml_serde::Deserializer::from_str(&text)
        .filter_map(|doc| Value::deserialize(doc).ok())
        .filter(|v| !v.is_null())
        .map(|v| with_location(v, &source))
        .collect()
}

/// A deleted resource's entity refs: its own and its parts'. (Deleting gives the row's name
/// back for new orders; the published name stays in `desired`.)
fn removed_refs(p: &db::catalog::Published) -> Vec<String> {
    let name = p
        .desired
        .pointer("/resource/name")
        .and_then(Value::as_str)
        .unwrap_or(&p.entity_name);
    let parts: Vec<&str> = p
        .desired
        .pointer("/parts")
        .and_then(Value::as_array)
        .map(|ps| ps.iter().filter_map(|x| x.get("id")?.as_str()).collect())
        .unwrap_or_default();
    let mut refs = vec![resource_ref(name)];
    refs.extend(provider::part_entity_refs(name, &p.id, &parts));
    refs
}

/// Up to `limit` changes after `after` (from the start when `None`, Templates first).
pub async fn changes<C: ConnectionTrait>(
    db: &C,
    layout: &Layout,
    templates: &Catalog,
    after: Option<FeedPosition>,
    limit: u64,
) -> Result<Changes, DbErr> {
    let start = after.unwrap_or_default();
    let mut rows = db::catalog::feed_after(db, start, limit + 1).await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let cursor = rows.last().map_or(start, |(_, p)| *p);
    let ids: Vec<String> = rows.into_iter().map(|(id, _)| id).collect();

    let mut entities = Vec::new();
    if after.is_none() {
        for o in templates.offerings.values() {
            entities.push(with_location(o.template.clone(), &layout.document_url()));
        }
    }
    let mut removed = Vec::new();
    if !ids.is_empty() {
        // Each resource is live or deleted; the two reads together cover every id.
        let live = db::catalog::entries_of_ids(db, &ids).await?;
        let gone = db::catalog::deleted_of_ids(db, &ids).await?;
        let order = |id: &str| ids.iter().position(|i| i == id).unwrap_or(usize::MAX);
        let mut live: Vec<_> = live.iter().map(|e| (order(&e.id), e)).collect();
        live.sort_by_key(|(i, _)| *i);
        for (_, e) in live {
            entities.extend(resource_entities(e, layout));
        }
        for p in &gone {
            removed.extend(removed_refs(p));
        }
    }
    Ok(Changes {
        entities,
        removed,
        cursor: encode(cursor),
        more,
        templates: templates_version(templates),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_others_are_refused_naming_after() {
        let p = FeedPosition { txid: 812, seq: 7 };
        assert_eq!(decode(&encode(p)).unwrap(), p);
        let other = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("requests\n812.7");
        for bad in ["", "x", "812.7", other.as_str()] {
            let e = decode(bad).unwrap_err();
            assert_eq!((e.field.as_str(), e.rule.as_str()), ("after", "format"));
        }
    }

    #[test]
    fn limit_is_checked() {
        assert_eq!(check_limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(check_limit(Some(MAX_LIMIT)).unwrap(), MAX_LIMIT);
        assert_eq!(check_limit(Some(0)).unwrap_err().field, "limit");
        assert_eq!(check_limit(Some(MAX_LIMIT + 1)).unwrap_err().rule, "range");
    }
}
