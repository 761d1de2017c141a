//! What callers do, one function per use case: the REST API and Backstage's Actions protocol
//! are two adapters over the same calls. Each checks authorization through `access` and
//! records its audit event; typed errors say what went wrong, never an HTTP status.

pub mod assess;
pub mod budget;
pub mod cancel;
pub mod credentials;
pub mod decide;
pub mod delete;
pub mod extend_ttl;
pub mod place;
pub mod spend;
pub mod update;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};

use crate::{
    access::{self, Act, Denied, Target},
    db::{self, entities::resource},
    notifications::Notifier,
    vocab::principal::Principal,
};

/// What the use cases that change state need besides their inputs.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub db: &'a DatabaseConnection,
    /// The moment the use case happens at (expiry arithmetic, stored timestamps).
    pub now: DateTime<Utc>,
    /// For the provisioning job a started request gets.
    pub max_attempts: i32,
    /// Tells requesters and teams what was decided.
    pub notifier: &'a Notifier,
}

/// Why a caller may not act on a target it can see. What it may not see is no refusal: each
/// use case answers it with its own `NotFound`, exactly like what is absent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{0} needs an authenticated caller")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    Forbidden(String),
}

impl Refused {
    /// The refusal `access` decided; `None` when the target is invisible (not found).
    pub fn of(d: Denied) -> Option<Self> {
        match d {
            Denied::NotFound => None,
            Denied::Unauthenticated(what) => Some(Self::Unauthenticated(what)),
            Denied::Forbidden(m) => Some(Self::Forbidden(m)),
        }
    }
}

/// The resource row, when `who` may do `act(resource)` to it; `Err(None)` when there is none
/// the caller may see.
pub(crate) async fn resource_for(
    db: &DatabaseConnection,
    who: &Principal,
    id: &str,
    act: impl FnOnce(&resource::Model) -> Act<'static>,
) -> Result<Result<resource::Model, Option<Refused>>, DbErr> {
    let Some(res) = db::resources::by_id(db, id).await? else {
        return Ok(Err(None));
    };
    Ok(
        access::authorize(who, act(&res), Target::Resource { owner: &res.owner })
            .map(|()| res)
            .map_err(Refused::of),
    )
}

#[cfg(test)]
pub(crate) mod testkit {
    //! A migrated SQLite database in a temporary directory, and the callers tests use.
    use std::collections::BTreeSet;

    use sea_orm::DatabaseConnection;

    use crate::{db::entities::resource, vocab::principal::Principal};

    pub use crate::db::testdb::{Db, TEAM_A, db, resource_row};

    pub fn person(subject: &str, roles: &[&str], groups: &[&str]) -> Principal {
        Principal {
            subject: subject.into(),
            roles: roles.iter().map(|r| r.parse().unwrap()).collect(),
            groups: groups
                .iter()
                .map(|g| g.to_string())
                .collect::<BTreeSet<_>>(),
            via: None,
        }
    }

    pub fn member() -> Principal {
        person("user:default/alice", &["developer"], &[TEAM_A])
    }

    pub fn outsider() -> Principal {
        person(
            "user:default/bob",
            &["developer"],
            &["group:default/team-b"],
        )
    }

    pub fn admin() -> Principal {
        person("user:default/root", &["platform-admin"], &[])
    }

    /// A ready resource of team-a in `environment`.
    pub async fn resource(db: &DatabaseConnection, id: &str, environment: &str) -> resource::Model {
        crate::db::resources::insert(db, resource_row(id, environment))
            .await
            .unwrap()
    }

    /// The audit events recorded for `target`, oldest first, as (type, actor, outcome).
    pub async fn audit_of(db: &DatabaseConnection, target: &str) -> Vec<(String, String, String)> {
        let mut rows = crate::audit::list(
            db,
            &crate::audit::AuditFilter {
                target: Some(target.into()),
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        rows.reverse();
        rows.into_iter()
            .map(|e| (e.event_type, e.actor, e.outcome))
            .collect()
    }
}
