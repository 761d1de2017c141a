//! `GET /.backstage/auth/v1/jwks.json`: the public keys of paved's plugin tokens, where
//! Backstage looks for them (through discovery) when paved calls it. Public, like Backstage's.

use axum::{Json, extract::State};
use serde_json::Value;

use crate::{api::state::AppState, auth::signing, error::ApiError};

pub async fn jwks(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(signing::published_keys(state.db()).await?))
}
