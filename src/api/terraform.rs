//! Terraform's `http` state backend (`/terraform/state/{resource}/{part}`): GET the state,
//! POST `?ID=<lock id>` a new one, LOCK and UNLOCK with Terraform's lock info. Called only by
//! the CLI runs paved starts, with their run's basic credentials; the work is
//! `provisioning::terraform_state`'s. Outside the OpenAPI document: Terraform's protocol, with
//! methods OpenAPI cannot name.

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use crate::{
    api::state::AppState,
    error::{ApiError, ErrorName, KeepBody},
    provisioning::terraform_state::StateError,
};

#[derive(Deserialize)]
pub struct Lock {
    #[serde(rename = "ID")]
    id: Option<String>,
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = v.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

fn refused(e: StateError) -> Response {
    match e {
        StateError::Unauthorized => {
            let mut r = ApiError::new(ErrorName::Authentication, e.to_string()).into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"paved terraform state\""),
            );
            r
        }
        // Terraform shows the holder from the body: it must stay the lock info.
        StateError::Locked(info) => {
            let mut r = (StatusCode::LOCKED, axum::Json(info)).into_response();
            r.extensions_mut().insert(KeepBody);
            r
        }
        StateError::Conflict(m) => ApiError::conflict(m).into_response(),
        StateError::BadRequest(m) => ApiError::input(m).into_response(),
        StateError::Unreadable(m) => ApiError::internal(m).into_response(),
        StateError::Db(e) => ApiError::internal(e).into_response(),
    }
}

/// Every method of the state address.
pub async fn state(
    State(state): State<AppState>,
    method: Method,
    Path((resource_id, part)): Path<(String, String)>,
    Query(lock): Query<Lock>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let service = state.terraform_state();
    let creds = basic(&headers);
    let run = match service
        .authenticate(
            &resource_id,
            &part,
            creds.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
        )
        .await
    {
        Ok(run) => run,
        Err(e) => return refused(e),
    };
    let info = || -> Result<Option<Value>, StateError> {
        if body.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| StateError::BadRequest(format!("lock info: not JSON: {e}")))
    };
    let result = match method.as_str() {
        "GET" => match service.get(&run).await {
            Ok(Some(bytes)) => {
                return ([(header::CONTENT_TYPE, "application/json")], bytes).into_response();
            }
            Ok(None) => return ApiError::not_found("no state yet").into_response(),
            Err(e) => Err(e),
        },
        "POST" => service.put(&run, lock.id.as_deref(), &body).await,
        "LOCK" => match info() {
            Ok(Some(i)) => service.lock(&run, &i).await,
            Ok(None) => Err(StateError::BadRequest("lock info: missing".into())),
            Err(e) => Err(e),
        },
        "UNLOCK" => match info() {
            Ok(i) => service.unlock(&run, i.as_ref()).await,
            Err(e) => Err(e),
        },
        other => {
            return ApiError::new(
                ErrorName::MethodNotAllowed,
                format!("{other} is not a method of the terraform state"),
            )
            .into_response();
        }
    };
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => refused(e),
    }
}
