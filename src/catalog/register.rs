//! `paved catalog register`: registers paved's catalog document as a Backstage `url` location.
//!
//! A plain `POST /api/catalog/locations` to a host missing from Backstage's
//! `backend.reading.allow` still answers 201; the read then fails in the background and no
//! entity ever appears, with nothing logged above debug level (docs/backstage-protocol.md §6b).
//! So the location is first checked with `?dryRun=true`, which reads and processes the
//! document synchronously and answers 400 for an unreadable URL or a refused entity, and only
//! then registered for real.

use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde_json::{Value, json};

/// A registration that worked (or was already there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub target: String,
    /// The `Location` entity Backstage keeps for it.
    pub location_ref: String,
    /// The location existed before: nothing changed.
    pub already: bool,
    /// The entities Backstage read from the document in the dry run (`kind:namespace/name`).
    pub entities: Vec<String>,
    /// Only checked (`--dry-run`), not registered.
    pub dry_run: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("{0}")]
    NotConfigured(String),
    #[error("{}", not_allowed(.target, .backstage))]
    ReadingNotAllowed { target: String, backstage: String },
    #[error("{}", kind_not_allowed(.target, .backstage))]
    KindNotAllowed { target: String, backstage: String },
    #[error(
        "Backstage refused paved's credentials ({status}): {backstage}\n\
         With backstage.auth: external-jwks (the default), app-config.yaml needs an entry for paved's\n\
         keys (paved serve logs these options with its own values at start):\n\n\
         backend:\n  auth:\n    externalAccess:\n      - type: jwks\n        options:\n          url: <server.public_url>/api/paved/.backstage/auth/v1/jwks.json\n          issuer: paved                      # backstage.issuer\n          algorithm: ES256\n          audience: <backstage.base_url>   # backstage.audience\n\n\
         With backstage.auth: static, an entry of type static with backstage.token; with\n\
         backstage.auth: plugin, a discovery entry that maps plugin paved to paved.\n"
    )]
    Unauthorized { status: u16, backstage: String },
    #[error("Backstage could not process {target}: {backstage}")]
    Refused { target: String, backstage: String },
    #[error("Backstage answered {status} to {what}: {backstage}")]
    Http {
        what: String,
        status: u16,
        backstage: String,
    },
    #[error("cannot reach Backstage at {url}: {error}")]
    Unreachable { url: String, error: String },
}

/// `host[:port]` and the path prefix Backstage's reading allow-list needs for `target`.
fn allow_entry(target: &str) -> (String, String) {
    match Url::parse(target) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("").to_owned();
            // Backstage matches the port exactly: a URL with a port needs it in the entry.
            let host = match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            };
            let path = u.path();
            let dir = match path.rfind('/') {
                Some(i) => &path[..=i],
                None => "/",
            };
            (host, dir.to_owned())
        }
        Err(_) => (target.to_owned(), "/".into()),
    }
}

fn not_allowed(target: &str, backstage: &str) -> String {
    let (host, path) = allow_entry(target);
    format!(
        "Backstage may not read {target}: its URL reader fetches only from hosts listed in \
         backend.reading.allow, and {host} is not one of them.\n\
         Add this to Backstage's app-config.yaml (keep entries you already have), restart \
         Backstage, then run `paved catalog register` again:\n\n\
         backend:\n  reading:\n    allow:\n      - host: {host}\n        paths: [{path}]\n\n\
         Backstage said: {backstage}"
    )
}

fn kind_not_allowed(target: &str, backstage: &str) -> String {
    format!(
        "Backstage read {target} but its catalog rules refuse paved's entity kinds (by default \
         only Component, API and Location are allowed).\n\
         Add this to Backstage's app-config.yaml (keep kinds you already allow) and restart \
         Backstage:\n\n\
         catalog:\n  rules:\n    - allow: [Component, System, API, Resource, Location, Template, Group, User]\n\n\
         Backstage said: {backstage}"
    )
}

/// Backstage's error message from its envelope, else the raw body.
fn message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| body.trim().to_owned())
}

fn entity_ref(e: &Value) -> Option<String> {
    let kind = e.get("kind")?.as_str()?.to_ascii_lowercase();
    let md = e.get("metadata")?;
    let ns = md
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    Some(format!("{kind}:{ns}/{}", md.get("name")?.as_str()?))
}

/// Registers `target` (paved's catalog document URL) in the Backstage at `base_url`: a dry
/// run first, then for real unless `dry_run`. An existing location is success.
pub async fn register(
    base_url: &str,
    token: Option<&str>,
    target: &str,
    dry_run: bool,
) -> Result<Registered, RegisterError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        // The dry run reads and processes the whole document.
        .timeout(Duration::from_secs(120))
        .build()
        .expect("HTTP client builds");
    let url = format!("{}/api/catalog/locations", base_url.trim_end_matches('/'));
    let post = |query: &'static str| {
        let mut req = http
            .post(format!("{url}{query}"))
            .json(&json!({"type": "url", "target": target}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let unreachable = |e: reqwest::Error| RegisterError::Unreachable {
        url: base_url.to_owned(),
        error: e.to_string(),
    };

    let res = post("?dryRun=true").await.map_err(unreachable)?;
    let status = res.status();
    let body = res.text().await.unwrap_or_default();
    let checked: Value = match status {
        s if s.is_success() => serde_json::from_str(&body).unwrap_or(Value::Null),
        // Not what 1.55 does (it answers exists: true), but the meaning is the same.
        StatusCode::CONFLICT => json!({"exists": true}),
        s => return Err(classify(s, &body, target, "the dry run")),
    };
    let location_ref = checked
        .pointer("/location/entityRef")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| super::refresh::location_entity_ref(target));
    let entities: Vec<String> = checked
        .get("entities")
        .and_then(Value::as_array)
        .map(|es| {
            es.iter()
                .filter(|e| e.get("kind").and_then(Value::as_str) != Some("Location"))
                .filter_map(entity_ref)
                .collect()
        })
        .unwrap_or_default();
    let exists = checked.get("exists").and_then(Value::as_bool) == Some(true);
    let done = |already: bool| Registered {
        target: target.to_owned(),
        location_ref: location_ref.clone(),
        already,
        entities: entities.clone(),
        dry_run,
    };
    if exists || dry_run {
        return Ok(done(exists));
    }

    let res = post("").await.map_err(unreachable)?;
    let status = res.status();
    let body = res.text().await.unwrap_or_default();
    match status {
        s if s.is_success() => Ok(done(false)),
        // Registered meanwhile (or by someone else): what we wanted.
        StatusCode::CONFLICT => Ok(done(true)),
        s => Err(classify(s, &body, target, "the registration")),
    }
}

fn classify(status: StatusCode, body: &str, target: &str, what: &str) -> RegisterError {
    let backstage = message(body);
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegisterError::Unauthorized {
            status: status.as_u16(),
            backstage,
        },
        StatusCode::BAD_REQUEST if backstage.contains("backend.reading.allow") => {
            RegisterError::ReadingNotAllowed {
                target: target.to_owned(),
                backstage,
            }
        }
        StatusCode::BAD_REQUEST if backstage.contains("is not of an allowed kind") => {
            RegisterError::KindNotAllowed {
                target: target.to_owned(),
                backstage,
            }
        }
        StatusCode::BAD_REQUEST => RegisterError::Refused {
            target: target.to_owned(),
            backstage,
        },
        s => RegisterError::Http {
            what: what.to_owned(),
            status: s.as_u16(),
            backstage,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_entry_names_host_port_and_folder() {
        assert_eq!(
            allow_entry("http://paved.internal:7077/api/paved/catalog/entities.yaml"),
            ("paved.internal:7077".into(), "/api/paved/catalog/".into())
        );
        assert_eq!(
            allow_entry("https://paved.example.com/api/paved/catalog/entities.yaml"),
            ("paved.example.com".into(), "/api/paved/catalog/".into())
        );
    }

    #[test]
    fn a_refused_read_explains_the_lines_to_add() {
        let body = r#"{"error":{"name":"InputError","message":"Error: Unable to read url, Reading from 'http://localhost:7177/api/paved/catalog/entities.yaml' is not allowed. You may need to configure an integration for the target host, or add it to the configured list of allowed hosts at 'backend.reading.allow'"},"request":{"method":"POST","url":"/locations?dryRun=true"},"response":{"statusCode":400}}"#;
        let e = classify(
            StatusCode::BAD_REQUEST,
            body,
            "http://localhost:7177/api/paved/catalog/entities.yaml",
            "the dry run",
        );
        let text = e.to_string();
        assert!(matches!(e, RegisterError::ReadingNotAllowed { .. }));
        assert!(
            text.contains(
                "backend:\n  reading:\n    allow:\n      - host: localhost:7177\n        paths: [/api/paved/catalog/]\n"
            ),
            "{text}"
        );
        assert!(text.contains("Backstage said: Error: Unable to read url"));
    }
}
