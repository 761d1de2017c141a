//! Backstage's Actions Registry protocol (docs/backstage-protocol.md §1-2): templates call
//! `paved:*` actions over HTTP, no TypeScript needed.

use axum::{
    Json,
    extract::{Path, State},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::ApiJson;
use crate::{
    api::state::AppState,
    error::ApiError,
    provisioning::requests::IdempotencyKey,
    usecases::{
        self,
        delete::DeleteError,
        place::{self as order, Placed},
        update::Purpose,
    },
    vocab::{entity_ref::resource_ref, field_error::FieldError, principal::Principal},
};

/// The request id a template dry-run hands `paved:wait`: Backstage's scaffolder runs read-only
/// actions in a dry-run, `paved:wait` among them, but skips `paved:provision` and takes its
/// output from the output schema's example, so there is no request to wait for.
pub const DRY_RUN_REQUEST_ID: &str = "dry-run";

/// The action list, built once: Backstage fetches it for every task step.
fn list_body(plugin_id: &str) -> Value {
    let draft = "http://json-schema.org/draft-07/schema#";
    let values_input = |extra: Value| {
        let mut props = json!({
            "offering": {"type": "string", "description": "Offering (template) name, e.g. postgres-database"},
            "values": {"type": "object", "description": "The template's parameters, e.g. ${{ parameters }}"}
        });
        props
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        props
    };
    json!({"actions": [
        {
            "id": format!("{plugin_id}:estimate"), "pluginId": plugin_id, "name": "estimate",
            "title": "Estimate cost and check policy",
            "description": "Validates the values against the offering's form, prices the order and runs every policy. Changes nothing, so it also runs in template dry-runs.",
            "attributes": {"readOnly": true, "destructive": false, "idempotent": true},
            "schema": {
                "input": {"$schema": draft, "type": "object", "required": ["offering", "values"], "additionalProperties": false,
                          "properties": values_input(json!({}))},
                "output": {"$schema": draft, "type": "object", "properties": {
                    "valid": {"type": "boolean"},
                    "errors": {"type": "array", "items": {"type": "object"}},
                    "outcome": {"type": "string", "enum": ["allowed", "needs_approval", "denied", "invalid"]},
                    "monthlyCost": {"type": "number"},
                    "annualCost": {"type": "number"},
                    "currency": {"type": "string"},
                    "lineItems": {"type": "array", "items": {"type": "object"}},
                    "recommendations": {"type": "array", "items": {"type": "object"}},
                    "deny": {"type": "array", "items": {"type": "object"}},
                    "warnings": {"type": "array", "items": {"type": "object"}},
                    "approvals": {"type": "array", "items": {"type": "object"}},
                    "summary": {"type": "string"}
                }, "required": ["valid", "outcome", "summary"]}
            },
            "examples": []
        },
        {
            "id": format!("{plugin_id}:provision"), "pluginId": plugin_id, "name": "provision",
            "title": "Order infrastructure",
            "description": "Creates a provisioning request from the template's values (validated, priced, policy-checked) and returns it. Idempotent on idempotencyKey, as task recovery re-runs steps.",
            "attributes": {"readOnly": false, "destructive": false, "idempotent": true},
            "schema": {
                "input": {"$schema": draft, "type": "object", "required": ["offering", "values", "idempotencyKey"], "additionalProperties": false,
                          "properties": values_input(json!({"idempotencyKey": {"type": "string", "minLength": 1, "maxLength": 200,
                              "description": "e.g. ${{ context.task.id }}"}}))},
                "output": {"$schema": draft, "type": "object", "properties": {
                    "requestId": {"type": "string"},
                    "status": {"type": "string"},
                    "requestUrl": {"type": "string"},
                    "monthlyCost": {"type": "number"},
                    "warnings": {"type": "array", "items": {"type": "object"}}
                }, "required": ["requestId", "status", "requestUrl"],
                // A dry-run skips this action and makes its output up from `examples[0]`:
                // the id that paved:wait, which dry-runs do execute, knows to expect.
                "examples": [{"requestId": DRY_RUN_REQUEST_ID, "status": "dry-run", "requestUrl": "", "monthlyCost": 0, "warnings": []}]}
            },
            "examples": []
        },
        {
            "id": format!("{plugin_id}:wait"), "pluginId": plugin_id, "name": "wait",
            "title": "Wait for a request",
            "description": "Waits (bounded by backstage.wait_seconds, well under Backstage's 5-minute limit) until the request succeeds, and fails the step with paved's reason if it fails, is rejected or is cancelled. At the bound it fails the step when the request awaits approval (saying who may approve it and where the requester is told), and when it is still provisioning on the last of `attempts` calls; earlier calls answer final=false. Repeat it with `each: [1, 2, 3]` and `attempt: ${{ each.value }}`, `attempts: 3`.",
            "attributes": {"readOnly": true, "destructive": false, "idempotent": true},
            "schema": {
                "input": {"$schema": draft, "type": "object", "required": ["requestId"], "additionalProperties": false,
                          "properties": {
                              "requestId": {"type": "string", "description": "e.g. ${{ steps.provision.output.requestId }}"},
                              "attempt": {"type": "integer", "minimum": 1, "description": "This call's number, e.g. ${{ each.value }} (default 1)"},
                              "attempts": {"type": "integer", "minimum": 1, "description": "How many calls the template makes (default 1)"}
                          }},
                "output": {"$schema": draft, "type": "object", "properties": {
                    "requestId": {"type": "string"},
                    "status": {"type": "string"},
                    "final": {"type": "boolean"},
                    "resourceId": {"type": "string"},
                    "entityRef": {"type": "string"},
                    "entityUrl": {"type": "string", "description": "The entity's page in the Backstage app (empty without backstage.app_url)"},
                    "requestUrl": {"type": "string", "description": "paved's API route of the request (JSON, needs a token)"}
                }, "required": ["requestId", "status", "final", "requestUrl"]}
            },
            "examples": []
        },
        {
            "id": format!("{plugin_id}:destroy"), "pluginId": plugin_id, "name": "destroy",
            "title": "Delete a resource",
            "description": "Starts the deletion of a resource (each part destroyed, credentials removed, the entity leaves the catalog). Members of the owning team may delete; production resources only a platform-admin with override. Asking again while it is deleted, or after, answers with the same deletion.",
            "attributes": {"readOnly": false, "destructive": true, "idempotent": true},
            "schema": {
                "input": {"$schema": draft, "type": "object", "required": ["resourceId"], "additionalProperties": false,
                          "properties": {
                              "resourceId": {"type": "string", "minLength": 1, "description": "e.g. ${{ parameters.resourceId }}"},
                              "override": {"type": "boolean", "description": "Platform-admins: delete a production resource despite deletion protection"}
                          }},
                "output": {"$schema": draft, "type": "object", "properties": {
                    "requestId": {"type": "string"},
                    "status": {"type": "string"},
                    "resourceId": {"type": "string"},
                    "requestUrl": {"type": "string"}
                }, "required": ["requestId", "status", "resourceId", "requestUrl"],
                "examples": [{"requestId": DRY_RUN_REQUEST_ID, "status": "dry-run", "resourceId": "", "requestUrl": ""}]}
            },
            "examples": []
        },
        {
            "id": format!("{plugin_id}:update"), "pluginId": plugin_id, "name": "update",
            "title": "Change a resource",
            "description": "Changes a resource's values (e.g. size): the new values go through the form, cost and every policy again, then each part converges. Each call starts a new update request, so it is not idempotent (the end state is the same).",
            "attributes": {"readOnly": false, "destructive": false, "idempotent": false},
            "schema": {
                "input": {"$schema": draft, "type": "object", "required": ["resourceId", "values"], "additionalProperties": false,
                          "properties": {
                              "resourceId": {"type": "string", "minLength": 1},
                              "values": {"type": "object", "description": "Only the values to change, e.g. {\"size\": \"large\"}"}
                          }},
                "output": {"$schema": draft, "type": "object", "properties": {
                    "requestId": {"type": "string"},
                    "status": {"type": "string"},
                    "resourceId": {"type": "string"},
                    "requestUrl": {"type": "string"},
                    "monthlyCost": {"type": "number"}
                }, "required": ["requestId", "status", "resourceId", "requestUrl"],
                "examples": [{"requestId": DRY_RUN_REQUEST_ID, "status": "dry-run", "resourceId": "", "requestUrl": ""}]}
            },
            "examples": []
        },
        {
            "id": format!("{plugin_id}:extend-ttl"), "pluginId": plugin_id, "name": "extend-ttl",
            "title": "Extend an environment's time to live",
            "description": "Adds hours to an ephemeral resource's expiry (from now if it already passed), within the offering's maximum lifetime. Only the owning team and platform-admins may extend. Each call extends again, so it is not idempotent.",
            "attributes": {"readOnly": false, "destructive": false, "idempotent": false},
            "schema": {
                "input": {"$schema": draft, "type": "object", "required": ["resourceId", "hours"], "additionalProperties": false,
                          "properties": {
                              "resourceId": {"type": "string", "minLength": 1, "description": "e.g. ${{ steps.wait.output.resourceId }}"},
                              "hours": {"type": "integer", "minimum": 1, "description": "Hours to add"}
                          }},
                "output": {"$schema": draft, "type": "object", "properties": {
                    "resourceId": {"type": "string"},
                    "entityRef": {"type": "string"},
                    "expiresAt": {"type": "string", "format": "date-time"}
                }, "required": ["resourceId", "entityRef", "expiresAt"]}
            },
            "examples": [{
                "title": "One more day",
                "description": "Keep a preview environment for another 24 hours",
                "input": {"resourceId": "0190c3d2-7a4e-7c3b-9f3e-2a1b4c5d6e7f", "hours": 24},
                "output": {"resourceId": "0190c3d2-7a4e-7c3b-9f3e-2a1b4c5d6e7f", "entityRef": "resource:default/preview-shop-feature-login", "expiresAt": "2026-11-26T10:00:00Z"}
            }]
        }
    ]})
}

/// Built per call from this app's plugin id (Backstage asks rarely; a process-wide cache
/// would give a second app in the same process the first one's id).
pub async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(list_body(&state.settings().backstage.plugin_id))
}

/// v2 wraps the input: `{input, secrets}`.
#[derive(Deserialize)]
pub struct V2Body {
    input: Value,
    #[serde(default)]
    #[allow(dead_code)] // accepted per protocol; no paved action takes secrets
    secrets: Option<Value>,
}

pub async fn invoke_v1(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    invoke(&state, &principal, &id, input).await
}

pub async fn invoke_v2(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<V2Body>,
) -> Result<Json<Value>, ApiError> {
    invoke(&state, &principal, &id, body.input).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OrderInput {
    offering: String,
    values: Value,
    idempotency_key: Option<String>,
}

async fn invoke(
    state: &AppState,
    principal: &Principal,
    id: &str,
    input: Value,
) -> Result<Json<Value>, ApiError> {
    let plugin = &state.settings().backstage.plugin_id;
    let name = id
        .strip_prefix(plugin.as_str())
        .and_then(|r| r.strip_prefix(':'))
        .unwrap_or("");
    let output = match name {
        "estimate" => estimate(state, principal, parse_as(id, input)?).await?,
        "provision" => provision(state, principal, parse_as(id, input)?).await?,
        "wait" => return wait(state, principal, &input).await,
        "extend-ttl" => extend_ttl(state, principal, &input).await?,
        "destroy" => destroy(state, principal, parse_as(id, input)?).await?,
        "update" => update(state, principal, parse_as(id, input)?).await?,
        _ => {
            return Err(ApiError::not_found(format!(
                "no action {id:?}; paved serves {plugin}:estimate, {plugin}:provision, {plugin}:wait, {plugin}:destroy, {plugin}:update and {plugin}:extend-ttl"
            )));
        }
    };
    Ok(Json(json!({ "output": output })))
}

/// `paved:estimate`: the form's cost and policy outcome before submit.
async fn estimate(
    state: &AppState,
    principal: &Principal,
    input: OrderInput,
) -> Result<Value, ApiError> {
    let r = super::guardrails::assess(state, principal, &input.offering, &input.values).await?;
    Ok(estimate_output(&r))
}

/// `paved:provision`: places the order under the task's idempotency key.
async fn provision(
    state: &AppState,
    principal: &Principal,
    input: OrderInput,
) -> Result<Value, ApiError> {
    let key = input
        .idempotency_key
        .as_deref()
        .map(IdempotencyKey::parse)
        .transpose()
        .map_err(|e| ApiError::input(format!("idempotencyKey: {e}")))?
        .ok_or_else(|| {
            ApiError::input("idempotencyKey: is required (pass ${{ context.task.id }})")
        })?;
    let offering = super::requests::offering(state, &input.offering)?;
    let policies = state.policies();
    let placed = order::place(
        &state.guardrail_inputs(&policies),
        &offering,
        &input.values,
        principal,
        Some(key),
    )
    .await
    .map_err(|e| ApiError::place(&offering.name, e))?;
    match placed {
        Placed::Accepted { request, .. } => {
            state.wake_workers();
            Ok(json!({
                "requestId": request.id,
                "status": request.status,
                "requestUrl": state.notifier().request_link(&request.id),
                "monthlyCost": request.estimate.as_ref().map(|e| e.monthly),
                "warnings": request.decision.as_ref().map_or(&[][..], |d| d.warn.as_slice()),
            }))
        }
        Placed::Denied { request, deny } => Err(ApiError::policy_denied(&request, &deny)),
        Placed::Invalid(errors) => Err(ApiError::invalid_values(&offering.name, &errors)),
    }
}

/// `paved:extend-ttl`: more time for an ephemeral resource, within the offering's maximum.
async fn extend_ttl(
    state: &AppState,
    principal: &Principal,
    input: &Value,
) -> Result<Value, ApiError> {
    let hours = super::resources::hours_of(input, &["resourceId", "hours"])?;
    let Some(rid) = input
        .get("resourceId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return Err(ApiError::field(FieldError {
            field: "resourceId".into(),
            rule: "required".into(),
            message: "is required (a non-empty string)".into(),
        }));
    };
    let r = super::resources::extend_ttl(state, principal, rid, hours).await?;
    Ok(json!({
        "resourceId": r.id,
        "entityRef": resource_ref(&r.name),
        "expiresAt": r.expires_at,
    }))
}

/// `paved:destroy`: a delete request (a re-run after it finished answers with it).
async fn destroy(
    state: &AppState,
    principal: &Principal,
    input: DestroyInput,
) -> Result<Value, ApiError> {
    let ctx = super::requests::ctx(state);
    let (rid, overridden) = (&input.resource_id, input.override_protection);
    let r = match usecases::delete::delete(ctx, principal, rid, overridden).await {
        Ok(r) => {
            state.wake_workers();
            r
        }
        // A re-run after the deletion finished (Backstage re-runs steps on task recovery)
        // answers with that deletion.
        Err(e @ DeleteError::AlreadyDeleted { .. }) => {
            crate::provisioning::requests::last_delete(state.db(), rid)
                .await?
                .ok_or(e)?
        }
        Err(e) => return Err(e.into()),
    };
    Ok(request_output(state, &r))
}

/// `paved:update`: an update request with new values.
async fn update(
    state: &AppState,
    principal: &Principal,
    input: UpdateInput,
) -> Result<Value, ApiError> {
    let r = super::resources::update_resource(
        state,
        principal,
        &input.resource_id,
        &input.values,
        Purpose::Change,
    )
    .await?;
    let mut output = request_output(state, &r);
    if let Some(e) = &r.estimate {
        output["monthlyCost"] = json!(e.monthly);
    }
    Ok(output)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DestroyInput {
    resource_id: String,
    #[serde(default, rename = "override")]
    override_protection: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateInput {
    resource_id: String,
    values: Value,
}

/// Parses an action's input, naming the field and the rule when it does not fit.
fn parse_as<T: serde::de::DeserializeOwned>(id: &str, input: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize::<_, T>(input).map_err(|e| {
        let (path, rule) = super::extract::readable(&e);
        ApiError::input(format!("invalid input for {id}: {path}: {rule}"))
            .with_reason_phrase(&format!("Invalid input: {path}: {rule}"))
    })
}

/// What destroy and update answer: the request they started, and where to follow it.
fn request_output(state: &AppState, r: &crate::provisioning::requests::Request) -> Value {
    json!({
        "requestId": r.id,
        "status": r.status,
        "resourceId": r.resource_id,
        "requestUrl": state.notifier().request_link(&r.id),
    })
}

fn estimate_output(r: &super::guardrails::EstimateResponse) -> Value {
    let Some((estimate, decision)) = r.estimate.as_ref().zip(r.decision.as_ref()) else {
        let list: Vec<String> = r.errors.iter().map(ToString::to_string).collect();
        return json!({"valid": false, "errors": r.errors, "outcome": "invalid", "summary": format!("Invalid values: {}", list.join("; "))});
    };
    let outcome = serde_json::to_value(decision.outcome).unwrap_or(Value::Null);
    let summary = match decision.deny.first() {
        Some(d) => format!("Denied: {}", d.message),
        None if !decision.require_approval.is_empty() => {
            format!(
                "{:.2} {}/month; needs approval: {}",
                estimate.monthly, estimate.currency, decision.require_approval[0].message
            )
        }
        None => format!(
            "{:.2} {}/month; allowed",
            estimate.monthly, estimate.currency
        ),
    };
    json!({
        "valid": true, "errors": [], "outcome": outcome,
        "monthlyCost": estimate.monthly, "annualCost": estimate.annual, "currency": estimate.currency,
        "lineItems": estimate.line_items, "recommendations": estimate.recommendations,
        "deny": decision.deny, "warnings": decision.warn, "approvals": decision.require_approval,
        "summary": summary,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WaitInput {
    request_id: String,
    /// This call's number among `attempts` (a template's `each: [1, 2, 3]`): before the last
    /// one a request still being provisioned answers `final: false`; the last one fails.
    #[serde(default = "one")]
    attempt: u32,
    #[serde(default = "one")]
    attempts: u32,
}

fn one() -> u32 {
    1
}

/// Polls the stored request until it is final or the bound passes. A task never shows success
/// for a request that has not succeeded: at the bound, a request awaiting approval fails the
/// step saying who may approve and where the requester hears of it (approvals take longer than
/// Backstage lets a task's calls run); one still provisioning answers `final: false` until the
/// last attempt, which fails the same way.
async fn wait(
    state: &AppState,
    principal: &Principal,
    input: &Value,
) -> Result<Json<Value>, ApiError> {
    use crate::vocab::status::RequestStatus;
    let input: WaitInput = serde_path_to_error::deserialize(input.clone()).map_err(|e| {
        let (path, rule) = super::extract::readable(&e);
        ApiError::input(format!("invalid input for paved:wait: {path}: {rule}"))
    })?;
    if input.request_id == DRY_RUN_REQUEST_ID {
        // Every key a real answer has, so a template's `| last` over them renders in a dry-run.
        return Ok(Json(json!({"output": {
            "requestId": DRY_RUN_REQUEST_ID, "status": "dry-run", "final": true, "requestUrl": "",
            "resourceId": "", "entityRef": "", "entityUrl": "",
        }})));
    }
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_secs(state.settings().backstage.wait_seconds);
    // A replica going away (rolling deploy) answers an open wait at once, as if its bound had
    // passed, so the template's next call reaches a replica that stays.
    let bound_passed = || tokio::time::Instant::now() >= deadline || state.shutting_down();
    loop {
        // Another team's request is as absent here as on `GET /requests/{id}`.
        let r = super::requests::authorized(state, principal, &input.request_id, |_| {
            crate::access::Act::Read
        })
        .await?;
        let url = state.notifier().request_link(&r.id);
        match r.status {
            RequestStatus::Succeeded => {
                let name = match &r.resource_id {
                    Some(id) => crate::provisioning::resources::get(state.db(), id)
                        .await?
                        .map(|res| res.name),
                    None => None,
                };
                let page = name
                    .as_deref()
                    .and_then(|n| state.settings().entity_page_url(n));
                return Ok(Json(json!({"output": {
                    "requestId": r.id, "status": r.status, "final": true,
                    "resourceId": r.resource_id.clone().unwrap_or_default(),
                    "entityRef": name.as_deref().map(resource_ref).unwrap_or_default(),
                    "entityUrl": page.unwrap_or_default(),
                    "requestUrl": url,
                }})));
            }
            RequestStatus::Failed
            | RequestStatus::Denied
            | RequestStatus::Rejected
            | RequestStatus::Cancelled => {
                let reason = r
                    .error
                    .clone()
                    .unwrap_or_else(|| r.status.as_str().to_owned());
                return Err(ApiError::conflict(format!(
                    "request {} {}: {reason}",
                    r.id,
                    r.status.as_str()
                ))
                .with_detail("requestId", &r.id)
                .with_reason_phrase(&format!("Request {}: {reason}", r.status.as_str())));
            }
            RequestStatus::AwaitingApproval if bound_passed() => {
                return Err(awaiting_approval(state, &r, &url).await?);
            }
            _ if bound_passed() => {
                if input.attempt < input.attempts {
                    return Ok(Json(
                        json!({"output": {"requestId": r.id, "status": r.status, "final": false,
                                          "resourceId": "", "entityRef": "", "entityUrl": "", "requestUrl": url}}),
                    ));
                }
                let told = where_told(state, &r);
                return Err(ApiError::unavailable(format!(
                    "request {} is still {} after this task's last wait; paved finishes it in the background. {told} Request: {url}",
                    r.id,
                    r.status.as_str()
                ))
                .with_detail("requestId", &r.id)
                .with_reason_phrase(&format!(
                    "Still provisioning; {}",
                    where_told_short(state)
                )));
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}

/// The step's error for a request that still waits for a person: who may approve it (role and
/// team), and where the requester hears of the outcome.
async fn awaiting_approval(
    state: &AppState,
    r: &crate::provisioning::requests::Request,
    url: &str,
) -> Result<ApiError, ApiError> {
    let approvals = crate::provisioning::approvals::list(state.db(), &r.id).await?;
    let mut who: Vec<String> = approvals
        .iter()
        .filter(|a| a.status == crate::vocab::status::ApprovalStatus::Pending)
        .map(|a| approver(&a.required_role, &r.owner))
        .collect();
    who.dedup();
    let who = if who.is_empty() {
        "an approver".to_owned()
    } else {
        who.join(" and ")
    };
    let reasons: Vec<&str> = approvals
        .iter()
        .filter(|a| a.status == crate::vocab::status::ApprovalStatus::Pending)
        .map(|a| a.reason.as_str())
        .collect();
    let told = where_told(state, r);
    Ok(ApiError::conflict(format!(
        "request {} waits for approval by {who}{}. Nothing is provisioned until then, and this task stops waiting; the request stays open and paved provisions it once approved. {told} Request: {url}",
        r.id,
        if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join("; ")) },
    ))
    .with_detail("requestId", &r.id)
    .with_detail("status", r.status.as_str())
    .with_reason_phrase(&format!(
        "Waits for approval by {who}; {}",
        where_told_short(state)
    )))
}

/// Who may decide an approval that asks for `role` on `owner`'s request (as `access::may_decide`).
fn approver(role: &str, owner: &str) -> String {
    match role {
        "platform-admin" => "a platform-admin".to_owned(),
        "lead" => format!("a lead of {owner} (or a platform-admin)"),
        other => format!("a {other} (or a platform-admin)"),
    }
}

/// Where the requester learns that the request finished, as configuration says.
fn where_told(state: &AppState, r: &crate::provisioning::requests::Request) -> String {
    let name = r
        .spec
        .as_ref()
        .and_then(|s| s.pointer("/resource/name"))
        .and_then(Value::as_str);
    let catalog = match (name, name.and_then(|n| state.settings().entity_page_url(n))) {
        (_, Some(page)) => format!(" and it appears in the catalog at {page}"),
        (Some(n), None) => format!(" and it appears in the catalog as resource:default/{n}"),
        (None, None) => String::new(),
    };
    if state.notifier().is_enabled() {
        format!("When it is done, {} is notified{catalog}.", r.requester)
    } else {
        format!(
            "No notification channel is configured, so nobody is told when it is done: follow the request{catalog}."
        )
    }
}

fn where_told_short(state: &AppState) -> &'static str {
    if state.notifier().is_enabled() {
        "you will be notified when it is done"
    } else {
        "follow the request in paved (no notifications configured)"
    }
}
