//! Costs in the shape Backstage's Cost Insights plugin reads (`Cost` from
//! `@backstage-community/plugin-cost-insights-common`: daily `aggregation`, `change`,
//! `trendline`, `groupedCosts`), for a Resource, a Group (its resources), or a Component or
//! System (the resources that depend on / belong to it), computed from paved's own history:
//! when each resource was created, updated (each successful create or update carries the
//! monthly estimate it was made with) and deleted.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use sea_orm::{ConnectionTrait, DbErr};
use serde::Serialize;
use serde_json::Value;

use crate::{
    access::{self, Target},
    db::{
        self,
        entities::{request, resource},
        reports::CostedBy,
    },
    vocab::{entity_ref::EntityRef, principal::Principal},
};

/// An ISO 8601 repeating interval as Cost Insights sends it, e.g. `R2/P30D/2026-11-24`: `R`
/// periods of the duration (days `D`, weeks `W` or months `M`) ending at the date. The date is
/// exclusive: `R2/P30D/2026-11-24` covers 2026-09-25 to 2026-11-23.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intervals {
    pub periods: u32,
    pub start: NaiveDate,
    /// Exclusive.
    pub end: NaiveDate,
    /// Where each period starts (the first is `start`).
    period_starts: [Option<NaiveDate>; 12],
}

impl Intervals {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a repeating interval like R2/P30D/2026-11-24");
        let mut it = s.split('/');
        let (r, p, d) = match (it.next(), it.next(), it.next(), it.next()) {
            (Some(r), Some(p), Some(d), None) => (r, p, d),
            _ => return Err(bad()),
        };
        let periods: u32 = r
            .strip_prefix('R')
            .and_then(|n| n.parse().ok())
            .ok_or_else(bad)?;
        if !(1..=12).contains(&periods) {
            return Err("the repetition count must be between 1 and 12".into());
        }
        let body = p.strip_prefix('P').ok_or_else(bad)?;
        let (num, unit) = body.split_at(body.len().saturating_sub(1));
        let n: u32 = num.parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        let end = NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| bad())?;
        // Each period start, going back from the end.
        let step = |from: NaiveDate| -> Option<NaiveDate> {
            match unit {
                "D" => from.checked_sub_days(chrono::Days::new(u64::from(n))),
                "W" => from.checked_sub_days(chrono::Days::new(7 * u64::from(n))),
                "M" => from.checked_sub_months(chrono::Months::new(n)),
                _ => None,
            }
        };
        let mut starts = [None; 12];
        let mut cursor = end;
        for i in (0..periods as usize).rev() {
            cursor = step(cursor).ok_or_else(bad)?;
            starts[i] = Some(cursor);
        }
        if (end - cursor).num_days() > 3 * 366 {
            return Err("the intervals may cover at most three years".into());
        }
        Ok(Self {
            periods,
            start: cursor,
            end,
            period_starts: starts,
        })
    }

    fn days(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.start.iter_days().take_while(|d| *d < self.end)
    }

    /// Which period `day` falls in.
    fn period_of(&self, day: NaiveDate) -> usize {
        (0..self.periods as usize)
            .rev()
            .find(|i| self.period_starts[*i].is_some_and(|s| day >= s))
            .unwrap_or(0)
    }
}

/// `DateAggregation`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DateAggregation {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub amount: f64,
}

/// `ChangeStatistic`: the last period against the first. `ratio` is left out when the first
/// period cost nothing (the growth is unbounded).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ChangeStatistic {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    pub amount: f64,
}

/// `Trendline`: least squares over (seconds since the epoch of each date, amount).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Trendline {
    pub slope: f64,
    pub intercept: f64,
}

/// `Cost`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cost {
    pub id: String,
    pub aggregation: Vec<DateAggregation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<ChangeStatistic>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trendline: Option<Trendline>,
    /// Breakdowns by `offering` and `resource` (Group, Component, System) or by `part`
    /// (Resource).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub grouped_costs: Option<BTreeMap<String, Vec<Cost>>>,
}

/// A stretch of time at one monthly price, split by part.
#[derive(Debug, Clone)]
struct Segment {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    parts: BTreeMap<String, f64>,
}

impl Segment {
    fn monthly(&self) -> f64 {
        self.parts.values().sum()
    }
}

/// Monthly cost per part from a stored estimate (its line items), scaled to its total.
fn parts_of(estimate: &crate::cost::Estimate) -> Option<BTreeMap<String, f64>> {
    let total = estimate.monthly;
    let mut parts: BTreeMap<String, f64> = BTreeMap::new();
    for item in &estimate.line_items {
        *parts.entry(item.part.clone()).or_default() += item.monthly;
    }
    let sum: f64 = parts.values().sum();
    if sum > 0.0 && (sum - total).abs() > 0.005 {
        for v in parts.values_mut() {
            *v *= total / sum;
        }
    }
    if parts.is_empty() {
        parts.insert("total".into(), total);
    }
    Some(parts)
}

/// The resource's price over its life: from creation, each successful create or update sets
/// the price until the next; billing stops at deletion (or expiry, if the reaper has not come
/// yet).
fn segments(r: &resource::Model, changes: &[&request::Model], now: DateTime<Utc>) -> Vec<Segment> {
    let stop = [r.deleted_at, r.expires_at]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now)
        .min(now);
    let mut points: Vec<(DateTime<Utc>, BTreeMap<String, f64>)> = Vec::new();
    for (i, req) in changes.iter().enumerate() {
        let Some(parts) = req.estimate.as_ref().and_then(parts_of) else {
            continue;
        };
        let at = if i == 0 {
            r.created_at
        } else {
            req.completed_at.unwrap_or(req.updated_at)
        };
        points.push((at, parts));
    }
    if points.is_empty() {
        let monthly = r.monthly_cost_cents.unwrap_or(0) as f64 / 100.0;
        points.push((r.created_at, [("total".to_owned(), monthly)].into()));
    }
    let mut out = Vec::new();
    for (i, (from, parts)) in points.iter().enumerate() {
        let to = points.get(i + 1).map_or(stop, |(t, _)| *t).min(stop);
        if to > *from {
            out.push(Segment {
                from: *from,
                to,
                parts: parts.clone(),
            });
        }
    }
    out
}

fn day_bounds(d: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = Utc
        .with_ymd_and_hms(d.year(), d.month(), d.day(), 0, 0, 0)
        .single()
        .expect("valid date");
    (start, start + Duration::days(1))
}

fn overlap_hours(a: (DateTime<Utc>, DateTime<Utc>), b: (DateTime<Utc>, DateTime<Utc>)) -> f64 {
    let from = a.0.max(b.0);
    let to = a.1.min(b.1);
    ((to - from).num_seconds().max(0) as f64) / 3600.0
}

/// Daily amounts of `segments` (optionally one part only) over the intervals.
fn daily(
    segments: &[Segment],
    part: Option<&str>,
    iv: &Intervals,
    hours_per_month: f64,
) -> Vec<f64> {
    iv.days()
        .map(|d| {
            let day = day_bounds(d);
            segments
                .iter()
                .map(|s| {
                    let monthly = match part {
                        Some(p) => s.parts.get(p).copied().unwrap_or(0.0),
                        None => s.monthly(),
                    };
                    monthly / hours_per_month * overlap_hours(day, (s.from, s.to))
                })
                .sum()
        })
        .collect()
}

fn cost_of(id: String, amounts: &[f64], iv: &Intervals, with_stats: bool) -> Cost {
    let round = |x: f64| (x * 100.0).round() / 100.0;
    let aggregation: Vec<DateAggregation> = iv
        .days()
        .zip(amounts)
        .map(|(d, a)| DateAggregation {
            date: d.to_string(),
            amount: round(*a),
        })
        .collect();
    let (change, trendline) = if with_stats {
        let mut totals = vec![0.0; iv.periods as usize];
        for (d, a) in iv.days().zip(amounts) {
            totals[iv.period_of(d)] += a;
        }
        let (first, last) = (totals[0], totals[totals.len() - 1]);
        let change = ChangeStatistic {
            ratio: (first > 0.0).then(|| ((last - first) / first * 10_000.0).round() / 10_000.0),
            amount: round(last - first),
        };
        (Some(change), Some(trendline(&aggregation)))
    } else {
        (None, None)
    };
    Cost {
        id,
        aggregation,
        change,
        trendline,
        grouped_costs: None,
    }
}

fn trendline(agg: &[DateAggregation]) -> Trendline {
    let points: Vec<(f64, f64)> = agg
        .iter()
        .filter_map(|a| {
            let d = NaiveDate::parse_from_str(&a.date, "%Y-%m-%d").ok()?;
            Some((day_bounds(d).0.timestamp() as f64, a.amount))
        })
        .collect();
    let n = points.len() as f64;
    if n < 2.0 {
        return Trendline {
            slope: 0.0,
            intercept: points.first().map_or(0.0, |p| p.1),
        };
    }
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    Trendline {
        slope,
        intercept: my - slope * mx,
    }
}

/// The resources an entity's cost is made of: a Resource by its name (every incarnation: a
/// deleted resource gave its name back), a Group's resources, or those that depend on a
/// Component or belong to a System.
async fn resources_of<C: ConnectionTrait>(
    db: &C,
    entity: &EntityRef,
) -> Result<Vec<resource::Model>, DbErr> {
    let entity_ref = entity.to_string();
    let rows = match entity.kind() {
        "resource" => db::reports::costed_resources(db, CostedBy::All)
            .await?
            .into_iter()
            .filter(|r| {
                entity.namespace() == "default"
                    && (r.entity_name == entity.name()
                        || (r.deleted_at.is_some()
                            && r.desired.pointer("/resource/name").and_then(Value::as_str)
                                == Some(entity.name())))
            })
            .collect(),
        "group" => db::reports::costed_resources(db, CostedBy::Owner(&entity_ref)).await?,
        "component" => db::reports::costed_resources(db, CostedBy::Component(&entity_ref)).await?,
        "system" => db::reports::costed_resources(db, CostedBy::System(&entity_ref)).await?,
        _ => Vec::new(),
    };
    Ok(rows)
}

/// What the catalog entity is and who owns the resources behind it.
pub struct EntityCost {
    pub cost: Cost,
    /// Owners of the resources counted (for access checks).
    pub owners: Vec<String>,
}

/// The entity's daily cost over `iv`. `None`: a Resource paved never had.
pub async fn entity_daily_cost<C: ConnectionTrait>(
    db: &C,
    entity: &EntityRef,
    iv: &Intervals,
    hours_per_month: f64,
    now: DateTime<Utc>,
) -> Result<Option<EntityCost>, DbErr> {
    let resources = resources_of(db, entity).await?;
    if resources.is_empty() && entity.kind() == "resource" {
        return Ok(None);
    }
    let ids: Vec<String> = resources.iter().map(|r| r.id.clone()).collect();
    let changes = db::reports::price_changes(db, &ids).await?;
    let mut total = vec![0.0; iv.days().count()];
    let mut by_offering: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut by_resource: Vec<(String, Vec<f64>)> = Vec::new();
    let mut by_part: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in &resources {
        let mine: Vec<&request::Model> = changes
            .iter()
            .filter(|q| q.resource_id.as_deref() == Some(r.id.as_str()))
            .collect();
        let segs = segments(r, &mine, now);
        let amounts = daily(&segs, None, iv, hours_per_month);
        for (t, a) in total.iter_mut().zip(&amounts) {
            *t += a;
        }
        let off = by_offering
            .entry(r.offering.clone())
            .or_insert_with(|| vec![0.0; amounts.len()]);
        for (t, a) in off.iter_mut().zip(&amounts) {
            *t += a;
        }
        let parts: std::collections::BTreeSet<String> =
            segs.iter().flat_map(|s| s.parts.keys().cloned()).collect();
        for p in parts {
            let pa = daily(&segs, Some(&p), iv, hours_per_month);
            let e = by_part.entry(p).or_insert_with(|| vec![0.0; pa.len()]);
            for (t, a) in e.iter_mut().zip(&pa) {
                *t += a;
            }
        }
        let name = r
            .desired
            .pointer("/resource/name")
            .and_then(Value::as_str)
            .unwrap_or(&r.entity_name)
            .to_owned();
        by_resource.push((format!("{name} ({})", r.id), amounts));
    }
    let mut cost = cost_of(entity.to_string(), &total, iv, true);
    let group = |m: Vec<(String, Vec<f64>)>| -> Vec<Cost> {
        m.into_iter()
            .map(|(id, a)| cost_of(id, &a, iv, false))
            .collect()
    };
    let grouped: BTreeMap<String, Vec<Cost>> = if entity.kind() == "resource" {
        [("part".to_owned(), group(by_part.into_iter().collect()))].into()
    } else {
        [
            (
                "offering".to_owned(),
                group(by_offering.into_iter().collect()),
            ),
            ("resource".to_owned(), group(by_resource)),
        ]
        .into()
    };
    cost.grouped_costs = Some(grouped);
    let mut owners: Vec<String> = resources.iter().map(|r| r.owner.clone()).collect();
    owners.sort();
    owners.dedup();
    Ok(Some(EntityCost { cost, owners }))
}

/// The entity's daily cost over `iv`, for a caller who may see it: a group is a team; any
/// other entity is visible when every owner of the resources behind it is. `None` when paved
/// has no such entity or the caller may not see it (the two answer alike).
pub async fn entity_cost_for<C: ConnectionTrait>(
    db: &C,
    who: &Principal,
    entity: &EntityRef,
    iv: &Intervals,
    hours_per_month: f64,
    now: DateTime<Utc>,
) -> Result<Option<Cost>, DbErr> {
    let Some(found) = entity_daily_cost(db, entity, iv, hours_per_month, now).await? else {
        return Ok(None);
    };
    let allowed = match entity.kind() {
        "group" => access::may_see(who, Target::Team(&entity.to_string())),
        _ => found
            .owners
            .iter()
            .all(|o| access::may_see(who, Target::Resource { owner: o })),
    };
    Ok(allowed.then_some(found.cost))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_cover_whole_periods_before_the_end_date() {
        let iv = Intervals::parse("R2/P30D/2026-11-24").unwrap();
        assert_eq!(iv.start, NaiveDate::from_ymd_opt(2026, 9, 25).unwrap());
        assert_eq!(iv.days().count(), 60);
        assert_eq!(
            iv.period_of(NaiveDate::from_ymd_opt(2026, 10, 24).unwrap()),
            0
        );
        assert_eq!(
            iv.period_of(NaiveDate::from_ymd_opt(2026, 10, 25).unwrap()),
            1
        );
        let m = Intervals::parse("R3/P1M/2026-12-01").unwrap();
        assert_eq!(m.start, NaiveDate::from_ymd_opt(2026, 9, 1).unwrap());
        for bad in [
            "P30D/2026-11-24",
            "R2/P30X/2026-11-24",
            "R0/P30D/2026-11-24",
            "R2/P30D/2026-13-01",
            "R2/P0D/2026-11-24",
        ] {
            assert!(Intervals::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_straight_line_is_its_own_trendline() {
        let agg: Vec<DateAggregation> = (1..=5)
            .map(|d| DateAggregation {
                date: format!("2026-11-0{d}"),
                amount: f64::from(d) * 2.0,
            })
            .collect();
        let t = trendline(&agg);
        assert!((t.slope * 86_400.0 - 2.0).abs() < 1e-9, "{t:?}");
    }
}
