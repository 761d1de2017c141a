//! Input paved cannot store is refused at the door, naming the field.
//!
//! PostgreSQL's `text` and `jsonb` cannot hold the NUL character: a `%00` in an id, a filter or
//! an action's input reached a query and came back as a 500 from 17 endpoints. Rather than
//! every handler remembering it, one route layer looks at everything a handler can read (the
//! matched path parameters, the query string and a JSON body) and answers 400 `InputError`
//! with the field: the path parameter's name from the route template, the query parameter,
//! or the JSON pointer of the body field (`/values/name`). It runs after routing, so an
//! unknown route stays 404.

use axum::{
    body::Body,
    extract::{FromRequestParts, RawPathParams, Request},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::Value;

use crate::{
    error::{ApiError, ErrorName},
    vocab::field_error::FieldError,
};

const RULE: &str = "no_nul";

pub async fn refuse_unstorable(req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let mut bad = Vec::new();
    match RawPathParams::from_request_parts(&mut parts, &()).await {
        Ok(params) => {
            for (name, value) in &params {
                if value.contains('\0') {
                    bad.push(("path parameter", name.to_owned()));
                }
            }
        }
        // Percent-encoded bytes that are not UTF-8 text: axum's own answer names no field.
        Err(_) => {
            if let Some(name) = non_utf8_param(&parts) {
                let message = "must be percent-encoded UTF-8 text";
                return ApiError::input(format!("path parameter {name}: {message}"))
                    .with_detail(
                        "errors",
                        [FieldError {
                            field: name,
                            rule: "utf8".into(),
                            message: message.into(),
                        }],
                    )
                    .into_response();
            }
        }
    }
    if let Some(query) = parts.uri.query() {
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if key.contains('\0') || value.contains('\0') {
                bad.push(("query parameter", printable(&key)));
            }
        }
    }
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return unreadable(e),
    };
    // Only JSON is inspected: a body that does not parse is the handler's to refuse (it says
    // where the syntax broke). JSON spells NUL `\u0000` (a raw NUL byte is not valid JSON),
    // so a body without that escape is not parsed here a second time.
    if bytes.windows(6).any(|w| w == b"\\u0000")
        && let Ok(doc) = serde_json::from_slice::<Value>(&bytes)
    {
        let mut pointer = String::new();
        nul_fields(&doc, &mut pointer, &mut bad);
    }
    if bad.is_empty() {
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    }
    let errors: Vec<FieldError> = bad
        .iter()
        .map(|(kind, field)| FieldError {
            field: field.clone(),
            rule: RULE.into(),
            message: format!(
                "{kind} {field}: must not contain the NUL character (U+0000, %00), which cannot be stored"
            ),
        })
        .collect();
    let message = errors
        .iter()
        .map(|e| e.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    ApiError::input(message)
        .with_detail("errors", errors)
        .into_response()
}

/// The path parameter whose value does not decode to UTF-8, found by laying the route
/// template over the path (from the end, so a stripped nesting prefix does not matter).
fn non_utf8_param(parts: &axum::http::request::Parts) -> Option<String> {
    let template = parts
        .extensions
        .get::<axum::extract::MatchedPath>()?
        .as_str();
    template
        .split('/')
        .rev()
        .zip(parts.uri.path().split('/').rev())
        .find_map(|(t, raw)| {
            let name = t.strip_prefix('{')?.strip_suffix('}')?;
            std::str::from_utf8(&percent_encoding::percent_decode_str(raw).collect::<Vec<u8>>())
                .is_err()
                .then(|| name.to_owned())
        })
}

/// Every string or object key holding a NUL, as the JSON pointer of its field.
fn nul_fields(v: &Value, pointer: &mut String, out: &mut Vec<(&'static str, String)>) {
    let len = pointer.len();
    match v {
        Value::String(s) if s.contains('\0') => out.push(("body field", at(pointer))),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointer.push('/');
                pointer.push_str(&i.to_string());
                nul_fields(item, pointer, out);
                pointer.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                if key.contains('\0') {
                    out.push(("body field", at(pointer)));
                } else {
                    nul_fields(item, pointer, out);
                }
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}

fn at(pointer: &str) -> String {
    if pointer.is_empty() {
        "/".to_owned()
    } else {
        printable(pointer)
    }
}

/// A name that itself holds the NUL, shown so it can be read (and logged) safely.
fn printable(s: &str) -> String {
    s.replace('\0', "\\u0000")
}

/// A time filter PostgreSQL can compare with: its timestamps end at 4713 BC, so an RFC 3339
/// time with a negative year answered 500. Years 1 to 9999 (what RFC 3339 itself allows) pass.
pub fn time_filter(field: &str, t: Option<chrono::DateTime<chrono::Utc>>) -> Result<(), ApiError> {
    use chrono::Datelike;
    match t {
        Some(t) if !(1..=9999).contains(&t.year()) => {
            let message = "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z";
            Err(ApiError::input(format!("{field}: {message}")).with_detail(
                "errors",
                [FieldError {
                    field: field.into(),
                    rule: "range".into(),
                    message: message.into(),
                }],
            ))
        }
        _ => Ok(()),
    }
}

fn unreadable(e: axum::Error) -> Response {
    let mut cause: &dyn std::error::Error = &e;
    loop {
        if cause.is::<http_body_util::LengthLimitError>() {
            return ApiError::new(
                ErrorName::PayloadTooLarge,
                "request body is larger than the configured limit (server.body_limit_bytes)",
            )
            .into_response();
        }
        match cause.source() {
            Some(next) => cause = next,
            None => break,
        }
    }
    ApiError::input(format!("the request body could not be read: {e}")).into_response()
}
