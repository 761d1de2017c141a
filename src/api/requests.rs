//! `/v1/requests`: order an offering, follow what was ordered.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
};
use serde::Deserialize;
use serde_json::Value;

use super::{
    extract::ApiJson,
    page::{NoFilter, Page, PageParams, Paged},
};
use crate::{
    access::{Act, Target},
    api::state::AppState,
    error::{ApiError, ErrorEnvelope},
    provisioning::{
        approvals,
        requests::{self, IdempotencyKey, ListFilter, Request},
    },
    usecases::{
        self, Ctx,
        decide::Decision,
        place::{self as order, Placed},
    },
    vocab::{entity_ref::EntityRef, principal::Principal, status::RequestStatus},
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

/// Order an offering. Values are validated against the template's own form, priced, checked
/// against the team budget and every policy; the request is stored with that verdict before
/// anything else happens.
#[utoipa::path(post, path = "/v1/requests", operation_id = "createRequest", tag = "requests",
    request_body = CreateRequest,
    responses(
        (status = 201, description = "Stored: `pending`, or `awaiting_approval` when a policy asks for one", body = Request),
        (status = 200, description = "Same idempotency key as an earlier create: that request", body = Request),
        (status = 400, description = "Values break the template's rules; `error.errors` lists every violation", body = ErrorEnvelope),
        (status = 403, description = "Denied by policy (stored as `denied`); the status line carries the first reason, `error.errors` all", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
        (status = 409, description = "Idempotency key reused with different values", body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateRequest>,
) -> Result<(StatusCode, Json<Request>), ApiError> {
    let offering = offering(&state, &body.offering)?;
    let key = body
        .idempotency_key
        .as_deref()
        .map(IdempotencyKey::parse)
        .transpose()
        .map_err(|e| ApiError::input(format!("idempotencyKey: {e}")))?;
    let policies = state.policies();
    let placed = order::place(
        &state.guardrail_inputs(&policies),
        &offering,
        &body.values,
        &principal,
        key,
    )
    .await
    .map_err(|e| ApiError::place(&offering.name, e))?;
    match placed {
        Placed::Accepted { request, new: true } => {
            state.wake_workers();
            tracing::info!(request_id = %request.id, offering = %request.offering, owner = %request.owner, status = request.status.as_str(), "request stored");
            Ok((StatusCode::CREATED, Json(request)))
        }
        Placed::Accepted {
            request,
            new: false,
        } => Ok((StatusCode::OK, Json(request))),
        Placed::Denied { request, deny } => Err(ApiError::policy_denied(&request, &deny)),
        Placed::Invalid(errors) => Err(ApiError::invalid_values(&offering.name, &errors)),
    }
}

pub(crate) fn offering(
    state: &AppState,
    name: &str,
) -> Result<std::sync::Arc<crate::templates::Offering>, ApiError> {
    state
        .templates()
        .snapshot()
        .get(name)
        .ok_or_else(|| ApiError::not_found(format!("no offering named {name:?}")))
}

/// What the use cases that change state need, from the app's state.
pub(crate) fn ctx(state: &AppState) -> Ctx<'_> {
    Ctx {
        db: state.db(),
        now: state.now(),
        max_attempts: state.settings().engine.max_attempts,
        notifier: state.notifier(),
    }
}

#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// Why; recorded with the decision.
    pub reason: Option<String>,
}

/// Approve a request waiting for approval. Only the role the policy named may decide (leads
/// within their own teams, platform-admins always), and never the requester.
#[utoipa::path(post, path = "/v1/requests/{id}/approve", operation_id = "approveRequest", tag = "requests",
    params(("id" = String, Path, description = "Request id")), request_body = DecisionBody,
    responses((status = 200, body = Request), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, description = "Not awaiting approval", body = ErrorEnvelope)))]
pub async fn approve(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Request>, ApiError> {
    decide(&state, &principal, &id, Decision::Approve, &body).await
}

/// Reject a request waiting for approval; it ends.
#[utoipa::path(post, path = "/v1/requests/{id}/reject", operation_id = "rejectRequest", tag = "requests",
    params(("id" = String, Path, description = "Request id")), request_body = DecisionBody,
    responses((status = 200, body = Request), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, description = "Not awaiting approval", body = ErrorEnvelope)))]
pub async fn reject(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Request>, ApiError> {
    decide(&state, &principal, &id, Decision::Reject, &body).await
}

/// The request, when `principal` may do `act(request)` to it; an invisible one answers 404
/// exactly like an absent one.
pub(super) async fn authorized(
    state: &AppState,
    principal: &Principal,
    id: &str,
    act: impl FnOnce(&Request) -> Act,
) -> Result<Request, ApiError> {
    let absent = || format!("no request with id {id:?}");
    let r = requests::get(state.db(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(absent()))?;
    let target = Target::Request {
        owner: &r.owner,
        requester: &r.requester,
    };
    crate::access::authorize(principal, act(&r), target)
        .map_err(|d| ApiError::denied(d, absent))?;
    Ok(r)
}

/// The body is optional: an empty one means "no reason given".
fn decision_body(bytes: &[u8]) -> Result<DecisionBody, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(DecisionBody::default());
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::input(format!("invalid request body: {e}")))
}

async fn decide(
    state: &AppState,
    principal: &Principal,
    id: &str,
    decision: Decision,
    body: &[u8],
) -> Result<Json<Request>, ApiError> {
    let reason = decision_body(body)?.reason;
    let r = usecases::decide::decide(ctx(state), principal, id, decision, reason).await?;
    state.wake_workers();
    Ok(Json(r))
}

/// The approvals a request waits for (or waited for), with who decided, in the order they
/// were asked for.
#[utoipa::path(get, path = "/v1/requests/{id}/approvals", operation_id = "listApprovals", tag = "requests",
    params(("id" = String, Path, description = "Request id"), PageParams),
    responses((status = 200, body = Page<approvals::Approval>), (status = 404, body = ErrorEnvelope)))]
pub async fn list_approvals(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Paged { paging, .. }: Paged<NoFilter>,
) -> Result<Json<Page<approvals::Approval>>, ApiError> {
    let after = paging.after_uuid("approvals")?;
    authorized(&state, &principal, &id, |_| Act::Read).await?;
    let rows = approvals::list_page(state.db(), &id, after.as_deref(), paging.fetch()).await?;
    Ok(Json(Page::from_rows(rows, &paging, "approvals", |a| {
        a.id.clone()
    })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Owner entity ref (`group:default/team-a` or `team-a`).
    pub owner: Option<String>,
    pub status: Option<String>,
    pub offering: Option<String>,
    /// Resource id: only the requests about it (its create, updates and delete), e.g. the
    /// last one with `limit=1`.
    pub resource: Option<String>,
}

/// List requests, newest first.
#[utoipa::path(get, path = "/v1/requests", operation_id = "listRequests", tag = "requests", params(ListQuery, PageParams),
    responses((status = 200, body = Page<Request>), (status = 400, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Paged { filter: q, paging }: Paged<ListQuery>,
) -> Result<Json<Page<Request>>, ApiError> {
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
        resource: q.resource,
        before: paging.after_uuid("requests")?,
        visible: crate::access::Scope::of(&principal),
        limit: paging.fetch(),
    };
    let rows = requests::list(state.db(), &filter).await?;
    Ok(Json(Page::from_rows(rows, &paging, "requests", |r| {
        r.id.clone()
    })))
}

/// One request with its steps.
#[utoipa::path(get, path = "/v1/requests/{id}", operation_id = "getRequest", tag = "requests",
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, body = Request), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Request>, ApiError> {
    let mut r = authorized(&state, &principal, &id, |_| Act::Read).await?;
    r.expected = requests::expected(state.db(), &r, state.now()).await?;
    Ok(Json(r))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    pub at: chrono::DateTime<chrono::Utc>,
    pub step: Option<String>,
    pub level: String,
    pub message: String,
}

/// What the engine wrote while running the request, oldest first (a walk started early also
/// gets the lines written meanwhile).
#[utoipa::path(get, path = "/v1/requests/{id}/logs", operation_id = "getRequestLogs", tag = "requests",
    params(("id" = String, Path, description = "Request id"), PageParams),
    responses((status = 200, body = Page<LogLine>), (status = 404, body = ErrorEnvelope)))]
pub async fn logs(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Paged { paging, .. }: Paged<NoFilter>,
) -> Result<Json<Page<LogLine>>, ApiError> {
    let after = paging.after_number("logs")?;
    authorized(&state, &principal, &id, |_| Act::Read).await?;
    let rows = crate::db::request_logs::page(state.db(), &id, after, paging.fetch()).await?;
    let page = Page::from_rows(rows, &paging, "logs", |r| r.id.to_string());
    Ok(Json(Page {
        items: page
            .items
            .into_iter()
            .map(|r| LogLine {
                at: r.at,
                step: r.step,
                level: r.level,
                message: r.message,
            })
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Cancel a request that has not finished: at once while pending or awaiting approval,
/// between steps while running.
#[utoipa::path(post, path = "/v1/requests/{id}/cancel", operation_id = "cancelRequest", tag = "requests",
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, body = Request), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, description = "Already finished", body = ErrorEnvelope)))]
pub async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Request>, ApiError> {
    Ok(Json(
        usecases::cancel::cancel(state.db(), &principal, &id).await?,
    ))
}
