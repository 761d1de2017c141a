//! The audit trail: every state change as an append-only event (actor, on-behalf-of, time,
//! target, outcome). Nothing in paved updates or deletes these rows.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Serialize;
use serde_json::Value;

use crate::db::entities::{audit_event, request, resource};

/// Records one event. Failing to audit is logged, never hidden, but does not undo the change
/// it describes (which already happened).
pub async fn record<C: ConnectionTrait>(
    conn: &C,
    actor: &str,
    event_type: &str,
    target: &str,
    outcome: &str,
    details: Option<Value>,
) {
    insert(conn, actor, None, event_type, target, outcome, details).await;
}

async fn insert<C: ConnectionTrait>(
    conn: &C,
    actor: &str,
    on_behalf_of: Option<String>,
    event_type: &str,
    target: &str,
    outcome: &str,
    details: Option<Value>,
) {
    let team = team_of(conn, target).await;
    let row = audit_event::ActiveModel {
        id: NotSet,
        team: Set(team),
        at: Set(Utc::now()),
        actor: Set(actor.into()),
        on_behalf_of: Set(on_behalf_of),
        event_type: Set(event_type.into()),
        target: Set(target.into()),
        outcome: Set(outcome.into()),
        details: Set(details),
    };
    if let Err(e) = audit_event::Entity::insert(row).exec(conn).await {
        tracing::error!(error = %e, event_type, target, "could not record an audit event");
    }
}

/// The team an event's target belongs to, so a team's trail can be shown to its members
/// without joining every read against requests and resources.
async fn team_of<C: ConnectionTrait>(conn: &C, target: &str) -> Option<String> {
    let (kind, id) = target.split_once(':')?;
    let found = match kind {
        "team" => return Some(id.to_owned()),
        "request" => request::Entity::find_by_id(id.to_owned())
            .one(conn)
            .await
            .map(|r| r.map(|r| r.owner)),
        "resource" => resource::Entity::find_by_id(id.to_owned())
            .one(conn)
            .await
            .map(|r| r.map(|r| r.owner)),
        _ => return None,
    };
    found.unwrap_or_else(|e| {
        tracing::warn!(error = %e, target, "could not look up the team of an audit target");
        None
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub on_behalf_of: Option<String>,
    /// e.g. request.created, policy.decided, approval.approved, step.failed,
    /// resource.created, resource.deleted, credentials.read, budget.set.
    #[serde(rename = "type")]
    pub event_type: String,
    /// e.g. `request:<id>`, `resource:<id>`, `team:group:default/team-a`.
    pub target: String,
    pub outcome: String,
    #[schema(value_type = Object)]
    pub details: Option<Value>,
    /// The team (group ref) the event concerns, if any.
    pub team: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub target: Option<String>,
    pub event_type: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only events older than this one (ids grow with time: the keyset of the newest-first
    /// order, which events recorded meanwhile never shift).
    pub before: Option<i64>,
    pub limit: u64,
    /// Only events concerning these teams, or done by (or for) `visible_to_subject`.
    pub teams: Option<std::collections::BTreeSet<String>>,
    pub visible_to_subject: Option<String>,
}

/// Newest first, at most `limit`.
pub async fn list<C: ConnectionTrait>(conn: &C, f: &AuditFilter) -> Result<Vec<AuditEvent>, DbErr> {
    let mut q = audit_event::Entity::find().order_by_desc(audit_event::Column::Id);
    if let Some(a) = &f.actor {
        q = q.filter(audit_event::Column::Actor.eq(a.as_str()));
    }
    if let Some(t) = &f.target {
        q = q.filter(audit_event::Column::Target.eq(t.as_str()));
    }
    if let Some(t) = &f.event_type {
        q = q.filter(audit_event::Column::EventType.eq(t.as_str()));
    }
    if let Some(s) = f.since {
        q = q.filter(audit_event::Column::At.gte(s));
    }
    if let Some(u) = f.until {
        q = q.filter(audit_event::Column::At.lt(u));
    }
    if let Some(b) = f.before {
        q = q.filter(audit_event::Column::Id.lt(b));
    }
    if let Some(teams) = &f.teams {
        let mut visible =
            Condition::any().add(audit_event::Column::Team.is_in(teams.iter().cloned()));
        if let Some(me) = &f.visible_to_subject {
            visible = visible
                .add(audit_event::Column::Actor.eq(me.as_str()))
                .add(audit_event::Column::OnBehalfOf.eq(me.as_str()));
        }
        q = q.filter(visible);
    }
    Ok(q.limit(f.limit)
        .all(conn)
        .await?
        .into_iter()
        .map(|m| AuditEvent {
            id: m.id,
            at: m.at,
            actor: m.actor,
            on_behalf_of: m.on_behalf_of,
            event_type: m.event_type,
            target: m.target,
            outcome: m.outcome,
            details: m.details,
            team: m.team,
        })
        .collect())
}

/// Records an event done by `who`: a plugin acting for a user is the actor, on behalf of the
/// user.
pub async fn record_by<C: ConnectionTrait>(
    conn: &C,
    who: &crate::vocab::principal::Principal,
    event_type: &str,
    target: &str,
    outcome: &str,
    details: Option<Value>,
) {
    let (actor, on_behalf_of) = match &who.via {
        Some(plugin) => (plugin.as_str(), Some(who.subject.clone())),
        None => (who.subject.as_str(), None),
    };
    insert(
        conn,
        actor,
        on_behalf_of,
        event_type,
        target,
        outcome,
        details,
    )
    .await;
}
