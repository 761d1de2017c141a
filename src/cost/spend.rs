//! A team's spend: its active resources, prorated for those with a TTL, and a forecast to the
//! end of the month. Pure arithmetic over what a resource is billed for; `db::spend` reads
//! those rows.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::Serialize;

/// What a resource is billed by: its monthly price and when it lived.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Billed {
    pub monthly_cost_cents: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl Billed {
    fn monthly(&self) -> f64 {
        self.monthly_cost_cents.unwrap_or(0) as f64 / 100.0
    }
}

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

/// What a live resource counts for in its team's monthly spend: its monthly cost, or the
/// hours it has left when it expires within a month. Hours left are counted from the whole
/// seconds of both moments, which a database sums exactly too (`db::spend::totals_of_team`).
pub fn current_monthly_of(r: &Billed, now: DateTime<Utc>, hours_per_month: f64) -> f64 {
    let monthly = r.monthly();
    match r.expires_at {
        Some(e) if e <= now => 0.0,
        Some(e) => monthly * (seconds_left(e, now) as f64 / 3600.0 / hours_per_month).min(1.0),
        None => monthly,
    }
}

fn seconds_left(e: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (e.timestamp() - now.timestamp()).max(0)
}

/// From when an expiry no longer prorates (a resource that lives at least this long counts a
/// whole month in [`current_monthly_of`]): a whole second, with one to spare for rounding.
pub fn full_month_from(now: DateTime<Utc>, hours_per_month: f64) -> DateTime<Utc> {
    let seconds = (hours_per_month * 3600.0).ceil().min(1e12) as i64 + 1;
    DateTime::from_timestamp(now.timestamp().saturating_add(seconds), 0)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A team's monthly run rate from its totals: the cents of the resources billed a whole month,
/// and for those expiring before [`full_month_from`] the sum of cents × seconds left. The same
/// figure as [`team_spend`]'s `current_monthly` over the same resources.
pub fn current_monthly_from(
    full_month_cents: i64,
    expiring_cent_seconds: i64,
    hours_per_month: f64,
) -> f64 {
    let prorated = expiring_cent_seconds as f64 / 100.0 / 3600.0 / hours_per_month;
    round(full_month_cents as f64 / 100.0 + prorated)
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `team`'s spend at `now` from its live (not deleted) resources.
pub fn team_spend(
    team: &str,
    live: &[Billed],
    currency: &str,
    hours_per_month: f64,
    now: DateTime<Utc>,
) -> TeamSpend {
    let (month_start, month_end) = month_bounds(now);
    let (mut current, mut to_date, mut forecast) = (0.0, 0.0, 0.0);
    let mut active = 0;
    for r in live {
        let expires = r.expires_at;
        if expires.is_some_and(|e| e <= now) {
            continue; // expired, waiting for the reaper: no longer billed
        }
        active += 1;
        let hourly = r.monthly() / hours_per_month;
        let alive_until = expires.map_or(month_end, |e| e.min(month_end));
        current += current_monthly_of(r, now, hours_per_month);
        let accrued = hourly * hours(r.created_at.max(month_start), now);
        to_date += accrued;
        forecast += accrued + hourly * hours(now, alive_until);
    }
    TeamSpend {
        team: team.to_owned(),
        currency: currency.to_owned(),
        current_monthly: round(current),
        month_to_date: round(to_date),
        forecast_month_end: round(forecast),
        active_resources: active,
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

/// What resource `id` of `owner` costs at `now`.
pub fn resource_cost(
    id: &str,
    owner: &str,
    r: &Billed,
    currency: &str,
    hours_per_month: f64,
    now: DateTime<Utc>,
) -> ResourceCost {
    let (month_start, month_end) = month_bounds(now);
    let monthly = r.monthly();
    let hourly = monthly / hours_per_month;
    // Billing stops at deletion or expiry, whichever came first.
    let stop = [r.deleted_at, r.expires_at].into_iter().flatten().min();
    let until_now = stop.map_or(now, |s| s.min(now));
    let to_date = hourly * hours(r.created_at.max(month_start), until_now);
    let until_end = stop.map_or(month_end, |s| s.min(month_end));
    let forecast = to_date + hourly * hours(now, until_end);
    ResourceCost {
        resource_id: id.to_owned(),
        owner: owner.to_owned(),
        currency: currency.to_owned(),
        monthly,
        month_to_date: round(to_date),
        forecast_month_end: round(forecast),
        expires_at: r.expires_at,
        deleted: r.deleted_at.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_give_what_the_rows_give() {
        let now = Utc.with_ymd_and_hms(2026, 12, 15, 10, 0, 0).unwrap();
        let hpm = 730.0;
        let full_from = full_month_from(now, hpm);
        let at = |hours: i64| Some(now + chrono::TimeDelta::hours(hours));
        let billed = |cents: i64, expires_at| Billed {
            monthly_cost_cents: Some(cents),
            created_at: now - chrono::TimeDelta::days(40),
            expires_at,
            deleted_at: None,
        };
        let live = [
            billed(10_050, None),
            billed(4_275, at(10_000)),
            billed(7_300, at(730)),
            billed(7_300, at(729)),
            billed(3_470, at(24)),
            billed(999, at(-1)),
            billed(1_234, Some(full_from)),
        ];
        let (full, expiring): (Vec<&Billed>, Vec<&Billed>) = live
            .iter()
            .partition(|r| r.expires_at.is_none_or(|e| e >= full_from));
        let expiring: Vec<&Billed> = expiring
            .into_iter()
            .filter(|r| r.expires_at.is_some_and(|e| e > now))
            .collect();
        let cents = full.iter().map(|r| r.monthly_cost_cents.unwrap()).sum();
        assert_eq!(
            expiring.len(),
            3,
            "730 h is a whole month only from full_from on"
        );
        let cent_seconds = expiring
            .iter()
            .map(|r| r.monthly_cost_cents.unwrap() * seconds_left(r.expires_at.unwrap(), now))
            .sum();
        assert_eq!(
            current_monthly_from(cents, cent_seconds, hpm),
            team_spend("t", &live, "USD", hpm, now).current_monthly
        );
    }

    #[test]
    fn month_bounds_cover_december() {
        let (s, e) = month_bounds(Utc.with_ymd_and_hms(2026, 12, 15, 10, 0, 0).unwrap());
        assert_eq!(s, Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap());
        assert_eq!(e, Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
    }
}
