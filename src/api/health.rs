//! Health at the root, mirroring Backstage's `/.backstage/health/v1/*` (shape included).

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{api::state::AppState, error::KeepBody};

pub async fn liveness() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// 200 once paved can serve every request (see [`AppState::readiness`]); 503 (with the
/// reason) before that and while shutting down.
pub async fn readiness(State(state): State<AppState>) -> Response {
    match state.readiness().await {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(reason) => {
            let mut res = (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "error", "message": reason})),
            )
                .into_response();
            res.extensions_mut().insert(KeepBody);
            res
        }
    }
}
