//! The audit trail: every state change as an append-only event (actor, on-behalf-of, time,
//! target, outcome). Nothing in paved updates or deletes these rows.

use std::fmt;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr};
use serde::Serialize;
use serde_json::Value;

use crate::db::{self, audit::NewEvent, entities::audit_event};

/// Read by `list`; lives with the queries that apply it.
pub use crate::db::audit::AuditFilter;

/// What an event concerns. Stored as `<kind>:<id>` (`request:<id>`, `resource:<id>`,
/// `team:<group ref>`), which is also what `GET /v1/audit?target=` matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Request(String),
    Resource(String),
    Team(String),
    /// Anything else, stored as given.
    Other(String),
}

impl Target {
    pub fn request(id: impl Into<String>) -> Self {
        Self::Request(id.into())
    }
    pub fn resource(id: impl Into<String>) -> Self {
        Self::Resource(id.into())
    }
    pub fn team(team: impl Into<String>) -> Self {
        Self::Team(team.into())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Request(id) => write!(f, "request:{id}"),
            Self::Resource(id) => write!(f, "resource:{id}"),
            Self::Team(t) => write!(f, "team:{t}"),
            Self::Other(s) => f.write_str(s),
        }
    }
}

/// The stored form read back, for callers that still format their targets by hand.
impl From<&str> for Target {
    fn from(s: &str) -> Self {
        match s.split_once(':') {
            Some(("request", id)) => Self::request(id),
            Some(("resource", id)) => Self::resource(id),
            Some(("team", t)) => Self::team(t),
            _ => Self::Other(s.to_owned()),
        }
    }
}

impl From<&String> for Target {
    fn from(s: &String) -> Self {
        Self::from(s.as_str())
    }
}

/// Records one event. Failing to audit is logged, never hidden, but does not undo the change
/// it describes (which already happened).
pub async fn record<C: ConnectionTrait>(
    conn: &C,
    actor: &str,
    event_type: &str,
    target: impl Into<Target>,
    outcome: &str,
    details: Option<Value>,
) {
    let target = target.into();
    let team = team_of(conn, &target).await;
    insert(
        conn, actor, None, event_type, target, team, outcome, details,
    )
    .await;
}

/// [`record`] for a caller that knows the team the target belongs to (the engine holds the
/// request it works on): one statement instead of a look-up and an insert.
pub async fn record_of_team<C: ConnectionTrait>(
    conn: &C,
    actor: &str,
    event_type: &str,
    target: impl Into<Target>,
    team: &str,
    outcome: &str,
    details: Option<Value>,
) {
    insert(
        conn,
        actor,
        None,
        event_type,
        target.into(),
        Some(team.to_owned()),
        outcome,
        details,
    )
    .await;
}

/// An event recorded later, with others, by [`record_all_of_team`].
pub struct Pending {
    pub event_type: String,
    pub target: Target,
    pub outcome: String,
    pub details: Option<Value>,
    pub at: chrono::DateTime<Utc>,
}

/// Records `events` of `actor` on targets of `team` in one statement (the engine's step
/// events, written when the transaction that ran the steps commits). Like [`record`], a
/// failure is logged and does not undo the changes the events describe.
pub async fn record_all_of_team<C: ConnectionTrait>(
    conn: &C,
    actor: &str,
    team: &str,
    events: Vec<Pending>,
) {
    let rows = events
        .iter()
        .map(|e| NewEvent {
            at: e.at,
            actor,
            on_behalf_of: None,
            event_type: &e.event_type,
            target: e.target.to_string(),
            outcome: &e.outcome,
            details: e.details.clone(),
            team: Some(team.to_owned()),
        })
        .collect();
    if let Err(e) = db::audit::append_all(conn, rows).await {
        tracing::error!(error = %e, team, "could not record audit events");
    }
}

#[allow(clippy::too_many_arguments)]
async fn insert<C: ConnectionTrait>(
    conn: &C,
    actor: &str,
    on_behalf_of: Option<String>,
    event_type: &str,
    target: Target,
    team: Option<String>,
    outcome: &str,
    details: Option<Value>,
) {
    let target = target.to_string();
    let row = NewEvent {
        at: Utc::now(),
        actor,
        on_behalf_of,
        event_type,
        target: target.clone(),
        outcome,
        details,
        team,
    };
    if let Err(e) = db::audit::append(conn, row).await {
        tracing::error!(error = %e, event_type, target, "could not record an audit event");
    }
}

/// The team an event's target belongs to, so a team's trail can be shown to its members
/// without joining every read against requests and resources.
async fn team_of<C: ConnectionTrait>(conn: &C, target: &Target) -> Option<String> {
    let found = match target {
        Target::Team(t) => return Some(t.clone()),
        Target::Request(id) => db::audit::owner_of_request(conn, id).await,
        Target::Resource(id) => db::audit::owner_of_resource(conn, id).await,
        Target::Other(_) => return None,
    };
    found.unwrap_or_else(|e| {
        tracing::warn!(error = %e, %target, "could not look up the team of an audit target");
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

impl From<audit_event::Model> for AuditEvent {
    fn from(m: audit_event::Model) -> Self {
        Self {
            id: m.id,
            at: m.at,
            actor: m.actor,
            on_behalf_of: m.on_behalf_of,
            event_type: m.event_type,
            target: m.target,
            outcome: m.outcome,
            details: m.details,
            team: m.team,
        }
    }
}

/// Newest first, at most `limit`.
pub async fn list<C: ConnectionTrait>(conn: &C, f: &AuditFilter) -> Result<Vec<AuditEvent>, DbErr> {
    Ok(db::audit::list(conn, f)
        .await?
        .into_iter()
        .map(AuditEvent::from)
        .collect())
}

/// Records an event done by `who`: a plugin acting for a user is the actor, on behalf of the
/// user.
pub async fn record_by<C: ConnectionTrait>(
    conn: &C,
    who: &crate::vocab::principal::Principal,
    event_type: &str,
    target: impl Into<Target>,
    outcome: &str,
    details: Option<Value>,
) {
    let target = target.into();
    let team = team_of(conn, &target).await;
    record_by_in(conn, who, event_type, target, team, outcome, details).await;
}

/// [`record_by`] for a caller that knows the target's team.
pub async fn record_by_of_team<C: ConnectionTrait>(
    conn: &C,
    who: &crate::vocab::principal::Principal,
    event_type: &str,
    target: impl Into<Target>,
    team: &str,
    outcome: &str,
    details: Option<Value>,
) {
    let team = Some(team.to_owned());
    record_by_in(conn, who, event_type, target.into(), team, outcome, details).await;
}

async fn record_by_in<C: ConnectionTrait>(
    conn: &C,
    who: &crate::vocab::principal::Principal,
    event_type: &str,
    target: Target,
    team: Option<String>,
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
        team,
        outcome,
        details,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testdb;

    #[test]
    fn targets_are_stored_as_kind_and_id_and_read_back_so() {
        for t in [
            Target::request("r-1"),
            Target::resource("x-2"),
            Target::team("group:default/team-a"),
        ] {
            assert_eq!(Target::from(t.to_string().as_str()), t);
        }
        assert_eq!(
            Target::team("group:default/t").to_string(),
            "team:group:default/t"
        );
        assert_eq!(
            Target::from("policy:p"),
            Target::Other("policy:p".into()),
            "an unknown kind is kept as given, without a team"
        );
    }

    #[tokio::test]
    async fn an_event_is_shown_to_the_team_owning_its_target() {
        let t = testdb::db().await;
        let res = testdb::resource(&t.db, "res-1").await;
        record(
            &t.db,
            "paved:engine",
            "resource.created",
            Target::resource(&res.id),
            "ready",
            None,
        )
        .await;
        record(
            &t.db,
            "paved:engine",
            "budget.set",
            Target::team("group:default/team-b"),
            "set",
            None,
        )
        .await;
        record(
            &t.db,
            "paved:engine",
            "other",
            Target::resource("missing"),
            "x",
            None,
        )
        .await;

        let mine = list(
            &t.db,
            &AuditFilter {
                limit: 10,
                teams: Some([testdb::TEAM_A.to_owned()].into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(mine.len(), 1, "{mine:?}");
        assert_eq!(mine[0].target, "resource:res-1");
        assert_eq!(mine[0].team.as_deref(), Some(testdb::TEAM_A));

        let all = list(
            &t.db,
            &AuditFilter {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let teams: Vec<Option<&str>> = all.iter().map(|e| e.team.as_deref()).collect();
        // Newest first; a target that names nothing paved has concerns no team.
        assert_eq!(
            teams,
            [None, Some("group:default/team-b"), Some(testdb::TEAM_A)]
        );
    }
}
