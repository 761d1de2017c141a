//! Entity references (`kind:namespace/name`) and Backstage's naming rules
//! (`@backstage/catalog-model` `KubernetesValidatorFunctions`, docs/backstage-protocol.md §7).

use std::fmt;

/// A parsed, validated entity reference. Kind and namespace are lower-cased, as Backstage
/// compares refs case-insensitively; the name keeps its case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityRef {
    kind: String,
    namespace: String,
    name: String,
}

impl EntityRef {
    /// Parses `kind:namespace/name`, `kind:name`, `namespace/name` or `name`, filling what is
    /// missing from `default_kind` and the `default` namespace (as `parseEntityRef` does).
    pub fn parse(input: &str, default_kind: &str) -> Result<Self, String> {
        let input = input.trim();
        if input.is_empty() {
            return Err("must not be empty".into());
        }
        let (kind, rest) = match input.split_once(':') {
            Some((k, r)) => (k, r),
            None => (default_kind, input),
        };
        let (namespace, name) = match rest.split_once('/') {
            Some((ns, n)) => (ns, n),
            None => ("default", rest),
        };
        if kind.is_empty() || !is_valid_kind(kind) {
            return Err(format!("kind {kind:?} is not a valid entity kind"));
        }
        let namespace = namespace.to_ascii_lowercase();
        if !is_valid_namespace(&namespace) {
            return Err(format!(
                "namespace {namespace:?} must be a DNS label (lowercase letters, digits and dashes, 1-63 characters)"
            ));
        }
        if !is_valid_entity_name(name) {
            return Err(format!(
                "name {name:?} must be 1-63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            ));
        }
        Ok(Self {
            kind: kind.to_ascii_lowercase(),
            namespace,
            name: name.to_owned(),
        })
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The ref of paved's `Resource` entity named `name` (paved's entities live in the `default`
/// namespace): the one place the catalog's, the actions' and the refresh's refs are spelled.
pub fn resource_ref(name: &str) -> String {
    format!("resource:default/{name}")
}

/// Written as its text (`user:default/jane`), so settings holding refs serialize as they read.
impl serde::Serialize for EntityRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.kind, self.namespace, self.name)
    }
}

/// `metadata.name`: 1-63 chars, `^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`.
pub fn is_valid_entity_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Namespace: a DNS label, `^[a-z0-9]+(?:-+[a-z0-9]+)*$`, 1-63 chars.
pub fn is_valid_namespace(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Kind: `^[a-zA-Z][a-z0-9A-Z]*$`, at most 63 chars.
pub fn is_valid_kind(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric())
}

/// Tag: `^[a-z0-9:+#]+(-[a-z0-9:+#]+)*$`, at most 63 chars.
pub fn is_valid_tag(s: &str) -> bool {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, ':' | '+' | '#');
    !s.is_empty()
        && s.len() <= 63
        && s.split('-')
            .all(|part| !part.is_empty() && part.chars().all(ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_short_refs() {
        let r = EntityRef::parse("group:default/team-a", "group").unwrap();
        assert_eq!(r.to_string(), "group:default/team-a");
        assert_eq!(
            EntityRef::parse("team-a", "group").unwrap().to_string(),
            "group:default/team-a"
        );
        assert_eq!(
            EntityRef::parse("Component:Prod/orders", "group")
                .unwrap()
                .to_string(),
            "component:prod/orders"
        );
        assert_eq!(
            EntityRef::parse("user:development/guest", "group")
                .unwrap()
                .name(),
            "guest"
        );
    }

    #[test]
    fn refuses_bad_parts() {
        for bad in [
            "",
            "group:",
            "group:default/",
            "-x",
            "a b",
            "x/y/z",
            "gr oup:x",
            "ns_x/name",
        ] {
            assert!(EntityRef::parse(bad, "group").is_err(), "{bad:?} accepted");
        }
        assert!(!is_valid_entity_name(&"a".repeat(64)));
        assert!(is_valid_entity_name(&"a".repeat(63)));
        assert!(is_valid_entity_name("orders-db.v2_x"));
        assert!(!is_valid_entity_name("orders-"));
        assert!(is_valid_tag("paved"));
        assert!(is_valid_tag("c++"));
        assert!(!is_valid_tag("Bad"));
        assert!(!is_valid_tag("a--b"));
    }
}
