//! `/v1/requests`: order an offering, follow what was ordered.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::extract::{ApiJson, ApiQuery};
use crate::{
    app::AppState,
    catalog::EntityRef,
    error::{ApiError, ErrorEnvelope, ErrorName},
    provisioning::requests::{
        self, CreateError, Created, IdempotencyKey, ListFilter, NewRequest, PrepareError, Request,
        RequestStatus,
    },
};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRequest {
    /// Offering (template) name, e.g. `postgres-database`.
    pub offering: String,
    /// Form values, as the template's parameters define them.
    #[schema(value_type = Object)]
    pub values: Value,
    /// Makes the create safe to retry: a second create with the same key returns the first
    /// request. Backstage templates pass `${{ context.task.id }}`.
    pub idempotency_key: Option<String>,
}

/// Order an offering. Values are validated against the template's own form; the request is
/// stored before anything else happens.
#[utoipa::path(post, path = "/v1/requests", operation_id = "createRequest", tag = "requests",
    request_body = CreateRequest,
    responses(
        (status = 201, description = "Stored", body = Request),
        (status = 200, description = "Same idempotency key as an earlier create: that request", body = Request),
        (status = 400, description = "Values break the template's rules; `error.errors` lists every violation", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
        (status = 409, description = "Idempotency key reused with different values", body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateRequest>,
) -> Result<(StatusCode, Json<Request>), ApiError> {
    let offering = state
        .templates()
        .snapshot()
        .get(&body.offering)
        .ok_or_else(|| ApiError::not_found(format!("no offering named {:?}", body.offering)))?;
    let key = body
        .idempotency_key
        .as_deref()
        .map(IdempotencyKey::parse)
        .transpose()
        .map_err(|e| ApiError::input(format!("idempotencyKey: {e}")))?;
    let new = NewRequest::prepare(
        &offering,
        state.templates().renderer(),
        &body.values,
        state.requester(),
        key,
    )
    .map_err(|e| prepare_error(&offering.name, e))?;
    match requests::create(state.db(), new).await {
        Ok(Created::New(r)) => {
            tracing::info!(request_id = %r.id, offering = %r.offering, owner = %r.owner, "request stored");
            Ok((StatusCode::CREATED, Json(r)))
        }
        Ok(Created::Existing(r)) => Ok((StatusCode::OK, Json(r))),
        Err(e @ CreateError::KeyReused { .. }) => Err(ApiError::conflict(e.to_string())),
        Err(CreateError::Db(e)) => Err(e.into()),
    }
}

pub(crate) fn prepare_error(offering: &str, e: PrepareError) -> ApiError {
    match e {
        PrepareError::Invalid(errors) => {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            ApiError::input(format!(
                "values do not match the form of {offering}: {}",
                list.join("; ")
            ))
            .with_detail("errors", &errors)
        }
        PrepareError::Template(e) => ApiError::new(
            ErrorName::Internal,
            format!(
                "template {offering} cannot render its provisioning spec ({e}); the platform team must fix the template"
            ),
        ),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Owner entity ref (`group:default/team-a` or `team-a`).
    pub owner: Option<String>,
    pub status: Option<String>,
    pub offering: Option<String>,
    /// Page size, 1-500 (default 50).
    pub limit: Option<u64>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestList {
    pub items: Vec<Request>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List requests, newest first.
#[utoipa::path(get, path = "/v1/requests", operation_id = "listRequests", tag = "requests", params(ListQuery),
    responses((status = 200, body = RequestList), (status = 400, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<RequestList>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::input("limit: must be between 1 and 500"));
    }
    let status = q
        .status
        .as_deref()
        .map(|s| {
            RequestStatus::parse(s)
                .ok_or_else(|| ApiError::input(format!("status: unknown status {s:?}")))
        })
        .transpose()?;
    let owner = q
        .owner
        .as_deref()
        .map(|o| EntityRef::parse(o, "group").map_err(|e| ApiError::input(format!("owner: {e}"))))
        .transpose()?;
    let filter = ListFilter {
        owner,
        status,
        offering: q.offering,
        before: q.cursor,
        limit,
    };
    let (items, next_cursor) = requests::list(state.db(), &filter).await?;
    Ok(Json(RequestList { items, next_cursor }))
}

/// One request with its steps.
#[utoipa::path(get, path = "/v1/requests/{id}", operation_id = "getRequest", tag = "requests",
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, body = Request), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Request>, ApiError> {
    requests::get(state.db(), &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no request with id {id:?}")))
}
