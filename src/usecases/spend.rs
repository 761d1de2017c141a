//! What a team and a resource cost, for the callers allowed to see them.

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};

use crate::{
    access::{self, Target},
    cost::{self, PriceBook, ResourceCost, TeamSpend},
    db::spend,
    vocab::{entity_ref::EntityRef, principal::Principal},
};

/// `team`'s spend at `now`. (Authorizing the team is the caller's: it also answers the budget.)
pub async fn team_spend(
    db: &DatabaseConnection,
    team: &EntityRef,
    book: &PriceBook,
    now: DateTime<Utc>,
) -> Result<TeamSpend, DbErr> {
    let owner = team.to_string();
    let live = spend::live_of_team(db, &owner).await?;
    Ok(cost::team_spend(
        &owner,
        &live,
        &book.currency,
        book.hours_per_month,
        now,
    ))
}

/// What resource `id` costs; `None` when there is none the caller may see.
pub async fn resource_cost(
    db: &DatabaseConnection,
    caller: &Principal,
    id: &str,
    book: &PriceBook,
    now: DateTime<Utc>,
) -> Result<Option<ResourceCost>, DbErr> {
    Ok(spend::of_resource(db, id)
        .await?
        .filter(|(owner, _)| access::may_see(caller, Target::Resource { owner }))
        .map(|(owner, billed)| {
            cost::resource_cost(
                id,
                &owner,
                &billed,
                &book.currency,
                book.hours_per_month,
                now,
            )
        }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{usecases::testkit, vocab::status::ResourceStatus};

    /// A failed resource is not active: the team's spend, what its next order is budgeted
    /// against and the platform metrics leave it out alike.
    #[tokio::test]
    async fn spend_budget_and_metrics_agree_a_failed_resource_is_not_active() {
        let t = testkit::db().await;
        let mut ready = testkit::resource_row("r-ready", "dev");
        ready.monthly_cost_cents = Some(1500);
        let mut failed = testkit::resource_row("r-failed", "dev");
        failed.monthly_cost_cents = Some(1000);
        failed.status = ResourceStatus::Failed;
        for r in [ready, failed] {
            crate::db::resources::insert(&t.db, r).await.unwrap();
        }
        let book =
            PriceBook::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pricing.yaml"))
                .unwrap();
        let now = Utc::now();
        let team = EntityRef::parse(testkit::TEAM_A, "group").unwrap();
        let s = team_spend(&t.db, &team, &book, now).await.unwrap();
        assert_eq!(s.current_monthly, 15.0);
        let far = now + chrono::Duration::days(400);
        let totals = spend::totals_of_team(&t.db, testkit::TEAM_A, now, far)
            .await
            .unwrap();
        assert_eq!(totals.full_month_cents, 1500);
        let m = crate::reports::platform(&t.db, chrono::Duration::days(30), now, "USD")
            .await
            .unwrap();
        assert_eq!((m.resources.active, m.resources.monthly_cost), (1, 15.0));
    }
}
