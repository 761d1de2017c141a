//! What spend and budgets read: the billed rows of a team's resources and the estimates of
//! its accepted orders.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait, QueryFilter,
    QuerySelect, Statement,
};

use super::entities::{request, resource};
use crate::{
    cost::{Billed, Estimate},
    vocab::status::{Operation, RequestStatus},
};

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
    let estimates: Vec<Option<Estimate>> = request::Entity::find()
        .select_only()
        .column(request::Column::Estimate)
        .filter(request::Column::Owner.eq(team))
        .filter(request::Column::Operation.eq(Operation::Create))
        .filter(request::Column::Status.is_in(RequestStatus::OPEN))
        .into_tuple()
        .all(db)
        .await?;
    Ok(estimates.iter().flatten().map(|e| e.monthly).sum())
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

/// Class id of paved's advisory locks on its own database (the two-key form keeps them apart
/// from any other user of advisory locks there): "pave" in ASCII.
const ORDER_LOCK_CLASS: i32 = 0x7061_7665;

/// PostgreSQL: holds the team's order lock until `txn` ends (a transaction-scoped advisory
/// lock keyed on the team), so the next order of the team, on any replica, reads a spend that
/// includes what `txn` stores.
pub async fn lock_team_orders(txn: &DatabaseTransaction, team: &str) -> Result<(), DbErr> {
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        [ORDER_LOCK_CLASS.into(), team.into()],
    ))
    .await?;
    Ok(())
}
