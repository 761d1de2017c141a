//! Reading settings: the file, then `PAVED_<SECTION>__<KEY>` variables typed by the setting.

use std::{collections::BTreeSet, path::Path};

use serde_json::{Map, Value};

use super::*;

/// `PAVED_*` variables that are not configuration keys: the command line's client
/// (`paved resource …`) and the test harness (`PAVED_TEST_*`).
pub(super) fn not_a_setting(name: &str) -> bool {
    matches!(name, CONFIG_ENV | "PAVED_URL" | "PAVED_TOKEN") || name.starts_with("PAVED_TEST_")
}

impl Settings {
    /// Loads `file` (if any), applies `PAVED_*` overrides from `env`, and checks every value.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut tree = match file {
            Some(path) => read_file(path)?,
            None => Value::Object(Map::new()),
        };
        let defaults = serde_json::to_value(Settings::default()).expect("settings serialize");
        let sections: BTreeSet<String> = defaults
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        // (dotted key, variable) for error messages; (path, raw value) to apply.
        let mut env_keys: Vec<(String, String)> = Vec::new();
        let mut overrides: Vec<(Vec<String>, String)> = Vec::new();
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            // Only `PAVED_<SECTION>__<KEY>` of a real section is a setting: `PAVED_BIN` in a
            // script is not. Inside a known section an unknown key is still an error.
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            if not_a_setting(&name) || path.len() < 2 {
                continue;
            }
            if !sections.contains(&path[0]) {
                // Another tool's variable, unless it is one letter or two from a section: then
                // it is a typo that would otherwise be silently ignored.
                if let Some(near) = sections.iter().find(|s| edit_distance(s, &path[0]) <= 2) {
                    return Err(ConfigError {
                        key: path[0].clone(),
                        message: format!("unknown section (did you mean `{near}`?)"),
                        from_env: Some(name),
                    });
                }
                continue;
            }
            // Overriding one entry of a table (e.g. one environment's target) keeps the
            // others: what the variable goes into starts from the defaults, not from nothing.
            for depth in 1..path.len() {
                if get_path(&tree, &path[..depth]).is_none()
                    && let Some(d) = get_path(&defaults, &path[..depth])
                    && d.is_object()
                {
                    let mut d = d.clone();
                    unmasked(&mut d);
                    set_path(&mut tree, &path[..depth], d);
                }
            }
            env_keys.push((path.join("."), name));
            overrides.push((path, raw));
        }
        // Each value is first taken as the text it is; only a setting that is not text (a
        // number, a flag, a list) reads it as a YAML scalar. So `0x1f` stays "0x1f" for a
        // plugin id, and `8080` is a number for a port. Inline lists and tables (`[…]`, `{…}`)
        // are structure from the start.
        let mut typed: BTreeSet<usize> = overrides
            .iter()
            .enumerate()
            .filter(|(_, (_, raw))| raw.trim_start().starts_with(['[', '{']))
            .map(|(i, _)| i)
            .collect();
        let settings: Settings = loop {
            let mut attempt = tree.clone();
            for (i, (path, raw)) in overrides.iter().enumerate() {
                // Anything under `policies.data` has no type to fail against (Rego reads it
                // as it is): it reads as the same value would in the file, `0` a number,
                // `true` a flag (`"0"` quoted stays text).
                let v = if is_data(path) {
                    yaml_serde::from_str::<Value>(raw)
                        .unwrap_or_else(|_| Value::String(raw.clone()))
                } else if typed.contains(&i) {
                    scalar(raw)
                } else {
                    Value::String(raw.clone())
                };
                set_path(&mut attempt, path, v);
            }
            match serde_path_to_error::deserialize::<_, Settings>(attempt) {
                Ok(s) => break s,
                Err(err) => {
                    let key = err.path().to_string();
                    let message = err.inner().to_string();
                    let retry = overrides.iter().enumerate().position(|(i, (p, _))| {
                        !typed.contains(&i)
                            && p.join(".") == key
                            && message.starts_with("invalid type: string")
                    });
                    if let Some(i) = retry {
                        typed.insert(i);
                        continue;
                    }
                    let from_env = env_var_for(&env_keys, &key, &message);
                    return Err(ConfigError {
                        key,
                        message,
                        from_env,
                    });
                }
            }
        };
        settings.check().map_err(|mut e| {
            // `key[2]` came from the variable that set the whole list `key`.
            e.from_env = env_keys
                .iter()
                .find(|(k, _)| *k == e.key || e.key.starts_with(&format!("{k}[")))
                .map(|(_, v)| v.clone());
            e
        })?;
        Ok(settings)
    }
}

pub(super) fn read_file(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        key: "(file)".into(),
        message: format!("cannot read {}: {e}", path.display()),
        from_env: None,
    })?;
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let value: Value = yaml_serde::from_str(&text).map_err(|e| ConfigError {
        key: "(file)".into(),
        message: format!("{} is not valid YAML: {e}", path.display()),
        from_env: None,
    })?;
    match value {
        Value::Object(_) => Ok(value),
        Value::Null => Ok(Value::Object(Map::new())),
        _ => Err(ConfigError {
            key: "(file)".into(),
            message: format!("{} must hold a YAML mapping at the top", path.display()),
            from_env: None,
        }),
    }
}

/// Environment values are typed like YAML scalars (`8080` is a number, `true` a boolean);
/// string fields accept any scalar (see [`string`]).
/// The defaults serialize a secret as `***`: left out, its key takes the real default when
/// the tree is read back, instead of the mask as its value.
fn unmasked(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| v.as_str() != Some(Secret::MASK));
            m.values_mut().for_each(unmasked);
        }
        Value::Array(a) => a.iter_mut().for_each(unmasked),
        _ => {}
    }
}

/// A key inside `policies.data`, the free-form data policies read.
fn is_data(path: &[String]) -> bool {
    path.len() > 2 && path[0] == "policies" && path[1] == "data"
}

pub(super) fn scalar(raw: &str) -> Value {
    match yaml_serde::from_str::<Value>(raw) {
        Ok(v @ (Value::Bool(_) | Value::Number(_))) => v,
        // Lists and mappings (e.g. static tokens) can be given inline: `[{subject: ..., ...}]`.
        Ok(v @ (Value::Array(_) | Value::Object(_)))
            if raw.trim_start().starts_with(['[', '{']) =>
        {
            v
        }
        _ => Value::String(raw.to_owned()),
    }
}

/// `scheme://user:secret@host` → `scheme://user:***@host`, anywhere in the tree (database
/// URL, driver targets, webhooks).
pub(super) fn mask_url_passwords(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let Some((scheme, rest)) = s.split_once("://")
                && let Some((userinfo, host)) = rest.split_once('@')
                && let Some((user, _)) = userinfo.split_once(':')
            {
                *s = format!("{scheme}://{user}:***@{host}");
            }
        }
        Value::Array(a) => a.iter_mut().for_each(mask_url_passwords),
        Value::Object(m) => m.values_mut().for_each(mask_url_passwords),
        _ => {}
    }
}

/// Levenshtein distance, for "did you mean".
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

pub(super) fn get_path<'a>(tree: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(tree, |node, seg| node.as_object()?.get(seg))
}

pub(super) fn set_path(tree: &mut Value, path: &[String], value: Value) {
    let mut node = tree;
    for (i, seg) in path.iter().enumerate() {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let map = node.as_object_mut().expect("object ensured above");
        if i == path.len() - 1 {
            map.insert(seg.clone(), value);
            return;
        }
        node = map
            .entry(seg.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

pub(super) fn env_var_for(
    env_keys: &[(String, String)],
    key: &str,
    message: &str,
) -> Option<String> {
    // serde reports an unknown field at its parent path and names the field in the message.
    let unknown: BTreeSet<&str> = env_keys
        .iter()
        .filter(|(k, _)| {
            let leaf = k.rsplit('.').next().unwrap_or(k);
            message.contains(&format!("`{leaf}`"))
        })
        .map(|(_, v)| v.as_str())
        .collect();
    env_keys
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .or_else(|| unknown.into_iter().next().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copied_defaults_leave_masked_secrets_to_their_real_default() {
        let mut d = serde_json::json!({"a": {"token": Secret::MASK, "n": 3, "list": [{"key": Secret::MASK, "k": 1}]}});
        unmasked(&mut d);
        assert_eq!(d, serde_json::json!({"a": {"n": 3, "list": [{"k": 1}]}}));
    }
}
