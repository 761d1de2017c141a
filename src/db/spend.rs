//! What spend and budgets read: the billed rows of a team's resources and the estimates of
//! its accepted orders.

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};

use super::entities::{request, resource};
use crate::{cost::Billed, vocab::status::RequestStatus};

pub fn billed(r: &resource::Model) -> Billed {
    Billed {
        monthly_cost_cents: r.monthly_cost_cents,
        created_at: r.created_at,
        expires_at: r.expires_at,
        deleted_at: r.deleted_at,
    }
}

/// The team's resources that are not deleted, as billed.
pub async fn live_of_team<C: ConnectionTrait>(db: &C, team: &str) -> Result<Vec<Billed>, DbErr> {
    Ok(resource::Entity::find()
        .filter(resource::Column::Owner.eq(team))
        .filter(resource::Column::DeletedAt.is_null())
        .all(db)
        .await?
        .iter()
        .map(billed)
        .collect())
}

/// The monthly cost of a team's accepted orders for new resources that are not provisioned
/// yet, from the estimate each was accepted with.
pub async fn ordered_monthly<C: ConnectionTrait>(db: &C, team: &str) -> Result<f64, DbErr> {
    // Only the estimates: an order's spec and values are not needed here.
    let estimates: Vec<Option<serde_json::Value>> = request::Entity::find()
        .select_only()
        .column(request::Column::Estimate)
        .filter(request::Column::Owner.eq(team))
        .filter(request::Column::Operation.eq("create"))
        .filter(request::Column::Status.is_in([
            RequestStatus::Pending.as_str(),
            RequestStatus::AwaitingApproval.as_str(),
            RequestStatus::Running.as_str(),
        ]))
        .into_tuple()
        .all(db)
        .await?;
    Ok(estimates
        .iter()
        .filter_map(|e| e.as_ref()?.get("monthly")?.as_f64())
        .sum())
}

/// A resource's owner and billing, deleted or not.
pub async fn of_resource<C: ConnectionTrait>(
    db: &C,
    id: &str,
) -> Result<Option<(String, Billed)>, DbErr> {
    Ok(resource::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .map(|r| (r.owner.clone(), billed(&r))))
}
