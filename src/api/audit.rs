//! `GET /v1/audit`: the append-only record of every state change. There is no way to change or
//! delete an event through the API.

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::page::{Page, PageParams, Paged};
use crate::{
    api::state::AppState,
    audit::{self, AuditEvent, AuditFilter},
    error::{ApiError, ErrorEnvelope},
    vocab::principal::Principal,
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Who acted (entity ref, `paved:engine`, `paved:policy`, `anonymous`).
    pub actor: Option<String>,
    /// What it concerned, e.g. `request:<id>` or `resource:<id>`.
    pub target: Option<String>,
    /// Event type, e.g. `credentials.read`.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// RFC 3339 time, inclusive.
    pub since: Option<DateTime<Utc>>,
    /// RFC 3339 time, exclusive.
    pub until: Option<DateTime<Utc>>,
}

/// Audit events, newest first. Platform-admins see every event; others see the events of
/// their teams' requests and resources and the events they caused themselves.
#[utoipa::path(get, path = "/v1/audit", operation_id = "listAuditEvents", tag = "audit", params(AuditQuery, PageParams),
    responses((status = 200, body = Page<AuditEvent>), (status = 400, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    Paged { filter: q, paging }: Paged<AuditQuery>,
) -> Result<Json<Page<AuditEvent>>, ApiError> {
    super::storable::time_filter("since", q.since)?;
    super::storable::time_filter("until", q.until)?;
    let filter = AuditFilter {
        actor: q.actor,
        target: q.target,
        event_type: q.event_type,
        since: q.since,
        until: q.until,
        before: paging.after_number("audit")?,
        limit: paging.fetch(),
        // Developers and leads see their teams' trail and what they did themselves.
        teams: crate::access::Scope::of(&who).teams().cloned(),
        visible_to_subject: Some(who.subject.clone()),
    };
    let rows = audit::list(state.db(), &filter).await?;
    Ok(Json(Page::from_rows(rows, &paging, "audit", |e| {
        e.id.to_string()
    })))
}
