//! A team's spend: its active resources, prorated for those with a TTL, and a forecast to the
//! end of the month.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use serde::Serialize;

use crate::{catalog::EntityRef, db::entities::resource};

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamSpend {
    pub team: String,
    pub currency: String,
    /// Monthly run rate of the active resources; a resource that expires before the month
    /// ends counts for the part of the month it still lives.
    pub current_monthly: f64,
    /// Cost accrued since the start of this month.
    pub month_to_date: f64,
    /// What this month will have cost at its end, if nothing changes.
    pub forecast_month_end: f64,
    pub active_resources: u64,
}

fn month_bounds(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .expect("valid date");
    let (y, m) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    let end = Utc
        .with_ymd_and_hms(y, m, 1, 0, 0, 0)
        .single()
        .expect("valid date");
    (start, end)
}

fn hours(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    ((b - a).num_seconds().max(0) as f64) / 3600.0
}

/// Computes `team`'s spend at `now` from the resources table.
/// What a live resource counts for in its team's monthly spend: its monthly cost, or the
/// hours it has left when it expires within a month.
pub fn current_monthly_of(r: &resource::Model, now: DateTime<Utc>, hours_per_month: f64) -> f64 {
    let monthly = r.monthly_cost_cents.unwrap_or(0) as f64 / 100.0;
    match r.expires_at {
        Some(e) if e <= now => 0.0,
        Some(e) => monthly * (hours(now, e) / hours_per_month).min(1.0),
        None => monthly,
    }
}

/// The monthly cost of a team's accepted orders for new resources that are not provisioned
/// yet, from the estimate each was accepted with.
pub async fn ordered_monthly<C: ConnectionTrait>(db: &C, team: &EntityRef) -> Result<f64, DbErr> {
    use crate::{db::entities::request, provisioning::requests::RequestStatus};
    use sea_orm::QuerySelect;
    // Only the estimates: an order's spec and values are not needed here.
    let estimates: Vec<Option<serde_json::Value>> = request::Entity::find()
        .select_only()
        .column(request::Column::Estimate)
        .filter(request::Column::Owner.eq(team.to_string()))
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

pub async fn team_spend<C: ConnectionTrait>(
    db: &C,
    team: &EntityRef,
    currency: &str,
    hours_per_month: f64,
    now: DateTime<Utc>,
) -> Result<TeamSpend, DbErr> {
    let rows = resource::Entity::find()
        .filter(resource::Column::Owner.eq(team.to_string()))
        .filter(resource::Column::DeletedAt.is_null())
        .all(db)
        .await?;
    let (month_start, month_end) = month_bounds(now);
    let (mut current, mut to_date, mut forecast) = (0.0, 0.0, 0.0);
    let mut active = 0;
    for r in rows {
        let monthly = r.monthly_cost_cents.unwrap_or(0) as f64 / 100.0;
        let expires = r.expires_at;
        if expires.is_some_and(|e| e <= now) {
            continue; // expired, waiting for the reaper: no longer billed
        }
        active += 1;
        let hourly = monthly / hours_per_month;
        let alive_until = expires.map_or(month_end, |e| e.min(month_end));
        current += current_monthly_of(&r, now, hours_per_month);
        let accrued = hourly * hours(r.created_at.max(month_start), now);
        to_date += accrued;
        forecast += accrued + hourly * hours(now, alive_until);
    }
    let round = |x: f64| (x * 100.0).round() / 100.0;
    Ok(TeamSpend {
        team: team.to_string(),
        currency: currency.to_owned(),
        current_monthly: round(current),
        month_to_date: round(to_date),
        forecast_month_end: round(forecast),
        active_resources: active,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_bounds_cover_december() {
        let (s, e) = month_bounds(Utc.with_ymd_and_hms(2026, 12, 15, 10, 0, 0).unwrap());
        assert_eq!(s, Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap());
        assert_eq!(e, Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
    }
}

/// What one resource costs.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceCost {
    pub resource_id: String,
    pub owner: String,
    pub currency: String,
    pub monthly: f64,
    /// Accrued since the start of this month (or since it was created).
    pub month_to_date: f64,
    /// What it will have cost by the end of the month (or its expiry, if sooner).
    pub forecast_month_end: f64,
    pub expires_at: Option<DateTime<Utc>>,
    pub deleted: bool,
}

pub async fn resource_cost(
    db: &DatabaseConnection,
    id: &str,
    currency: &str,
    hours_per_month: f64,
    now: DateTime<Utc>,
) -> Result<Option<ResourceCost>, DbErr> {
    let Some(r) = resource::Entity::find_by_id(id.to_owned()).one(db).await? else {
        return Ok(None);
    };
    let (month_start, month_end) = month_bounds(now);
    let monthly = r.monthly_cost_cents.unwrap_or(0) as f64 / 100.0;
    let hourly = monthly / hours_per_month;
    // Billing stops at deletion or expiry, whichever came first.
    let stop = [r.deleted_at, r.expires_at].into_iter().flatten().min();
    let until_now = stop.map_or(now, |s| s.min(now));
    let to_date = hourly * hours(r.created_at.max(month_start), until_now);
    let until_end = stop.map_or(month_end, |s| s.min(month_end));
    let forecast = to_date + hourly * hours(now, until_end);
    let round = |x: f64| (x * 100.0).round() / 100.0;
    Ok(Some(ResourceCost {
        resource_id: r.id,
        owner: r.owner,
        currency: currency.to_owned(),
        monthly,
        month_to_date: round(to_date),
        forecast_month_end: round(forecast),
        expires_at: r.expires_at,
        deleted: r.deleted_at.is_some(),
    }))
}
