//! Lenient deserializers (numbers accepted where text is meant) and their schemas.

use std::str::FromStr;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::Secret;
use crate::vocab::entity_ref::EntityRef;

/// Deserializes a string from any scalar, so `PAVED_BACKSTAGE__PLUGIN_ID=123` is "123".
pub(super) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string, found {}",
            kind(&other)
        ))),
    }
}

pub(super) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        v => string(v).map(Some).map_err(serde::de::Error::custom),
    }
}

/// An optional secret: empty text is unset, as for `opt_string`.
pub(super) fn opt_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    opt_string(d).map(|s| s.map(Secret::from))
}

/// A list of keys: one string or a list of strings. Errors never quote a value (they are keys).
pub(super) fn secret_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Secret>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(Vec::new()),
        Value::String(s) if s.trim().is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s.into()]),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.into()),
                other => Err(serde::de::Error::custom(format!(
                    "item {i}: expected a base64 key, found {}",
                    kind(&other)
                ))),
            })
            .collect(),
        other => Err(serde::de::Error::custom(format!(
            "expected a list of base64 keys, found {}",
            kind(&other)
        ))),
    }
}

/// A user's entity ref (`jane` is `user:default/jane`), checked by Backstage's rules.
pub(super) fn user_ref<'de, D: Deserializer<'de>>(d: D) -> Result<EntityRef, D::Error> {
    let s = string(d)?;
    EntityRef::parse(&s, "user").map_err(serde::de::Error::custom)
}

/// Groups' entity refs (`team-a` is `group:default/team-a`).
pub(super) fn group_refs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<EntityRef>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .enumerate()
        .map(|(i, g)| {
            EntityRef::parse(g, "group")
                .map_err(|e| serde::de::Error::custom(format!("item {i}: {e}")))
        })
        .collect()
}

pub(super) fn ref_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string" })
}

pub(super) fn refs_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "array", "items": { "type": "string" } })
}

// What `string`, `opt_string` and `secret_list` accept, for the configuration's JSON Schema.
pub(super) fn string_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": ["string", "number", "boolean"] })
}

pub(super) fn opt_string_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": ["string", "number", "boolean", "null"] })
}

pub(super) fn secret_list_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": ["array", "string", "null"], "items": { "type": "string" } })
}

pub(super) fn from_display<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let s = string(d)?;
    s.parse()
        .map_err(|e| serde::de::Error::custom(format!("{e}: {s:?}")))
}

pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
