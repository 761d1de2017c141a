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
