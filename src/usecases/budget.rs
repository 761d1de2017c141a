//! A team's monthly budget: read (set through the API, else from configuration) and set by
//! platform-admins.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use serde::Serialize;
use serde_json::json;

use super::Refused;
use crate::{
    access::{self, Act, Target},
    config::CostSettings,
    db::{self, entities::budget},
    guardrails,
    vocab::{entity_ref::EntityRef, principal::Principal},
};

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    pub team: String,
    pub currency: String,
    /// None: no budget.
    pub monthly_limit: Option<f64>,
    /// `api` (set through this API), `config` (paved's configuration) or `none`.
    pub source: String,
    pub updated_by: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("no team {team:?} known to paved")]
    NotFound { team: String },
    #[error("{0}")]
    Refused(Refused),
    #[error("monthlyLimit: must be a non-negative amount")]
    InvalidLimit,
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// The monthly limit that holds for `team`, and who set it through the API (`None` when it
/// comes from configuration, or there is none). The one place a budget is looked up.
pub async fn limit_of<C: ConnectionTrait>(
    db: &C,
    cost: &CostSettings,
    team: &EntityRef,
) -> Result<(Option<f64>, Option<budget::Model>), DbErr> {
    Ok(match db::budgets::of_team(db, &team.to_string()).await? {
        Some(b) => (Some(b.monthly_limit_cents as f64 / 100.0), Some(b)),
        None => (guardrails::configured_budget(cost, team), None),
    })
}

/// `team`'s budget as `who` may read it.
pub async fn get(
    db: &DatabaseConnection,
    cost: &CostSettings,
    currency: &str,
    who: &Principal,
    team: &EntityRef,
) -> Result<Budget, BudgetError> {
    authorize(who, Act::Read, team)?;
    Ok(read(db, cost, currency, team).await?)
}

/// Sets `team`'s monthly limit (in the price book's currency): platform-admins only.
pub async fn set(
    db: &DatabaseConnection,
    cost: &CostSettings,
    currency: &str,
    who: &Principal,
    team: &EntityRef,
    monthly_limit: f64,
    now: DateTime<Utc>,
) -> Result<Budget, BudgetError> {
    authorize(who, Act::SetBudget, team)?;
    if !(0.0..1e12).contains(&monthly_limit) {
        return Err(BudgetError::InvalidLimit);
    }
    let cents = (monthly_limit * 100.0).round() as i64;
    db::budgets::set(db, &team.to_string(), cents, &who.subject, now).await?;
    tracing::info!(team = %team, monthly_limit, by = %who.subject, "budget set");
    crate::audit::record_by(
        db,
        who,
        "budget.set",
        &format!("team:{team}"),
        "set",
        Some(json!({"monthlyLimit": monthly_limit})),
    )
    .await;
    Ok(read(db, cost, currency, team).await?)
}

/// What a team's budget and spend routes ask of `access`; another team's is not found.
pub fn authorize(who: &Principal, act: Act<'_>, team: &EntityRef) -> Result<(), BudgetError> {
    let team = team.to_string();
    access::authorize(who, act, Target::Team(&team)).map_err(|d| match Refused::of(d) {
        None => BudgetError::NotFound { team: team.clone() },
        Some(r) => BudgetError::Refused(r),
    })
}

async fn read(
    db: &DatabaseConnection,
    cost: &CostSettings,
    currency: &str,
    team: &EntityRef,
) -> Result<Budget, DbErr> {
    let (monthly_limit, stored) = limit_of(db, cost, team).await?;
    Ok(Budget {
        team: team.to_string(),
        currency: currency.to_owned(),
        monthly_limit,
        source: match (&stored, monthly_limit) {
            (Some(_), _) => "api",
            (None, Some(_)) => "config",
            (None, None) => "none",
        }
        .into(),
        updated_by: stored.map(|b| b.updated_by),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usecases::testkit::{self, TEAM_A, admin, audit_of, member};

    fn team() -> EntityRef {
        EntityRef::parse(TEAM_A, "group").unwrap()
    }

    #[tokio::test]
    async fn an_admin_sets_a_budget_that_overrides_configuration_and_is_audited() {
        let t = testkit::db().await;
        let mut cost = CostSettings::default();
        cost.budgets.insert("team-a".into(), 100.0);
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let before = get(&t.db, &cost, "EUR", &member(), &team()).await.unwrap();
        assert_eq!(
            (before.monthly_limit, before.source.as_str()),
            (Some(100.0), "config")
        );

        let set_to = set(&t.db, &cost, "EUR", &admin(), &team(), 250.5, now)
            .await
            .unwrap();
        assert_eq!(
            set_to,
            Budget {
                team: TEAM_A.into(),
                currency: "EUR".into(),
                monthly_limit: Some(250.5),
                source: "api".into(),
                updated_by: Some("user:default/root".into()),
            }
        );
        // Setting again updates the one row.
        set(&t.db, &cost, "EUR", &admin(), &team(), 300.0, now)
            .await
            .unwrap();
        let (limit, _) = limit_of(&t.db, &cost, &team()).await.unwrap();
        assert_eq!(limit, Some(300.0));
        let events = audit_of(&t.db, &format!("team:{TEAM_A}")).await;
        assert_eq!(
            events,
            vec![
                (
                    "budget.set".into(),
                    "user:default/root".into(),
                    "set".into()
                );
                2
            ]
        );
    }

    #[tokio::test]
    async fn members_may_not_set_it_and_a_bad_limit_names_the_field() {
        let t = testkit::db().await;
        let cost = CostSettings::default();
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let e = set(&t.db, &cost, "EUR", &member(), &team(), 10.0, now)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, BudgetError::Refused(Refused::Forbidden(m)) if m == "only platform-admins set budgets"),
            "{e:?}"
        );
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e12] {
            let e = set(&t.db, &cost, "EUR", &admin(), &team(), bad, now)
                .await
                .unwrap_err();
            assert!(matches!(e, BudgetError::InvalidLimit), "{bad}: {e:?}");
            assert_eq!(e.to_string(), "monthlyLimit: must be a non-negative amount");
        }
        let other = EntityRef::parse("team-b", "group").unwrap();
        let e = get(&t.db, &cost, "EUR", &member(), &other)
            .await
            .unwrap_err();
        assert!(matches!(e, BudgetError::NotFound { .. }), "{e:?}");
        let none = get(&t.db, &cost, "EUR", &member(), &team()).await.unwrap();
        assert_eq!((none.monthly_limit, none.source.as_str()), (None, "none"));
        assert!(audit_of(&t.db, &format!("team:{TEAM_A}")).await.is_empty());
    }
}
