//! Teams' monthly budgets as set through the API.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait, sea_query::OnConflict};

use super::entities::budget::{ActiveModel, Column, Entity, Model};

pub async fn of_team<C: ConnectionTrait>(db: &C, team: &str) -> Result<Option<Model>, DbErr> {
    Entity::find_by_id(team.to_owned()).one(db).await
}

/// Sets (or replaces) the team's limit.
pub async fn set<C: ConnectionTrait>(
    db: &C,
    team: &str,
    monthly_limit_cents: i64,
    by: &str,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    Entity::insert(ActiveModel {
        team: Set(team.to_owned()),
        monthly_limit_cents: Set(monthly_limit_cents),
        updated_by: Set(by.to_owned()),
        updated_at: Set(at),
    })
    .on_conflict(
        OnConflict::column(Column::Team)
            .update_columns([
                Column::MonthlyLimitCents,
                Column::UpdatedBy,
                Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec(db)
    .await?;
    Ok(())
}
