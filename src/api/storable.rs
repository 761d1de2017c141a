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
    templates::FieldError,
};

const RULE: &str = "no_nul";

pub async fn refuse_unstorable(req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let mut bad = Vec::new();
    // Parameters that are not UTF-8 are left to the handler's own extractor to refuse.
    if let Ok(params) = RawPathParams::from_request_parts(&mut parts, &()).await {
        for (name, value) in &params {
            if value.contains('\0') {
                bad.push(("path parameter", name.to_owned()));
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
    // where the syntax broke). JSON spells NUL `\u0000`; a raw NUL byte is not valid JSON.
    if !bytes.is_empty()
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
