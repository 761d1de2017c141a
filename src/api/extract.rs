//! Extractors that refuse bad input in Backstage's error shape, naming what was wrong.

use axum::{
    extract::{FromRequest, FromRequestParts, Request, rejection::JsonRejection},
    http::{StatusCode, request::Parts},
};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorName};

/// `Json<T>` whose rejections are `InputError` (malformed JSON, wrong field types, missing
/// content type) or `PayloadTooLargeError`, with serde's message naming the field.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            ErrorName::PayloadTooLarge,
            "request body is larger than the configured limit (server.body_limit_bytes)",
        );
    }
    let message = match &r {
        JsonRejection::MissingJsonContentType(_) => {
            "expected a JSON body with Content-Type: application/json".to_owned()
        }
        JsonRejection::JsonSyntaxError(e) => format!("malformed JSON: {}", source_text(e)),
        JsonRejection::JsonDataError(e) => format!("invalid request body: {}", source_text(e)),
        other => other.body_text(),
    };
    ApiError::input(message)
}

fn source_text(e: &dyn std::error::Error) -> String {
    // axum wraps serde's error; the innermost message names the field and position.
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Query strings, refused as `InputError` naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(Self).map_err(|e| {
            ApiError::input(format!(
                "invalid query parameter {}: {}",
                e.path(),
                e.inner()
            ))
        })
    }
}

/// A serde error as a user reads it: the field path (`input` for the whole document) and the
/// rule, without Rust type names (`expected struct OrderInput` says nothing to a template
/// author).
pub fn readable<E: std::fmt::Display>(e: &serde_path_to_error::Error<E>) -> (String, String) {
    let path = match e.path().to_string() {
        p if p == "." => "input".to_owned(),
        p => p,
    };
    let mut msg = e.inner().to_string();
    if let Some(i) = msg.find("expected struct ") {
        let end = msg[i + 16..]
            .find(|c: char| !c.is_alphanumeric() && c != '_')
            .map_or(msg.len(), |j| i + 16 + j);
        msg.replace_range(i..end, "expected an object");
    }
    (path, msg)
}

/// Extracts the caller (see `auth::Authenticator`). Already authenticated by the API's
/// middleware: each token is verified once per request.
impl FromRequestParts<super::state::AppState> for crate::vocab::principal::Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &super::state::AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(p) = parts.extensions.get::<Self>() {
            return Ok(p.clone());
        }
        state
            .authenticator()
            .caller(&parts.headers)
            .await
            .map_err(|e| match e {
                crate::auth::AuthError::Unavailable(m) => ApiError::unavailable(m),
                e => ApiError::new(ErrorName::Authentication, e.to_string()),
            })
    }
}
