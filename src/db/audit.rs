//! The audit trail as stored: append-only rows (the database refuses UPDATE and DELETE), so
//! this file only inserts and reads.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::NotSet, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::Value;

use super::entities::{audit_event, request, resource};

/// One event to append.
pub struct NewEvent<'a> {
    pub at: DateTime<Utc>,
    pub actor: &'a str,
    pub on_behalf_of: Option<String>,
    pub event_type: &'a str,
    pub target: String,
    pub outcome: &'a str,
    pub details: Option<Value>,
    pub team: Option<String>,
}

pub async fn append<C: ConnectionTrait>(conn: &C, e: NewEvent<'_>) -> Result<(), DbErr> {
    append_all(conn, vec![e]).await
}

/// Appends `events` in one statement, in their order.
pub async fn append_all<C: ConnectionTrait>(
    conn: &C,
    events: Vec<NewEvent<'_>>,
) -> Result<(), DbErr> {
    if events.is_empty() {
        return Ok(());
    }
    audit_event::Entity::insert_many(events.into_iter().map(|e| audit_event::ActiveModel {
        id: NotSet,
        team: Set(e.team),
        at: Set(e.at),
        actor: Set(e.actor.to_owned()),
        on_behalf_of: Set(e.on_behalf_of),
        event_type: Set(e.event_type.to_owned()),
        target: Set(e.target),
        outcome: Set(e.outcome.to_owned()),
        details: Set(e.details),
    }))
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Which events to read.
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
    pub teams: Option<BTreeSet<String>>,
    pub visible_to_subject: Option<String>,
}

/// Newest first, at most `limit`.
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    f: &AuditFilter,
) -> Result<Vec<audit_event::Model>, DbErr> {
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
    q.limit(f.limit).all(conn).await
}

/// The owning team of request `id`, if there is one.
pub async fn owner_of_request<C: ConnectionTrait>(
    conn: &C,
    id: &str,
) -> Result<Option<String>, DbErr> {
    request::Entity::find_by_id(id.to_owned())
        .select_only()
        .column(request::Column::Owner)
        .into_tuple()
        .one(conn)
        .await
}

/// The owning team of resource `id`, if there is one.
pub async fn owner_of_resource<C: ConnectionTrait>(
    conn: &C,
    id: &str,
) -> Result<Option<String>, DbErr> {
    resource::Entity::find_by_id(id.to_owned())
        .select_only()
        .column(resource::Column::Owner)
        .into_tuple()
        .one(conn)
        .await
}
