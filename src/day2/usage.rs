//! Unused resources: the drivers' usage readings, sampled on a schedule, show which resources
//! nobody used over a window (no connections, no transactions, no key touched), and what
//! deleting them would save.
//!
//! PostgreSQL's counter is the database's transactions (`pg_stat_database`); paved's own
//! observations connect to the database too (drift checks read its extensions), so each
//! records how many transactions it caused (`kind = self`) and those are left out.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use serde::Serialize;
use serde_json::json;

use crate::provisioning::drivers::Provisioner;
use crate::{
    audit::{self, Target},
    db::{
        self,
        entities::{resource, resource_notice::NoticeKind, usage_sample::SampleKind},
        usage::{NewSample, Sample},
    },
    notifications::{Notification, Notifier, Severity, Topic},
    templates::RenderedSpec,
};

/// The usage schedule acts as this principal.
pub const USAGE: &str = "system:usage";

/// Records transactions paved itself caused on a resource's parts (e.g. a drift check).
pub async fn record_self_activity<C: ConnectionTrait>(
    db: &C,
    resource_id: &str,
    parts: &[(String, i64)],
    now: DateTime<Utc>,
) {
    let rows: Vec<NewSample> = parts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(part, n)| NewSample {
            resource_id,
            part,
            kind: SampleKind::OwnActivity,
            at: now,
            active: 0,
            counter: *n,
            idle_seconds: None,
        })
        .collect();
    if let Err(e) = db::usage::record(db, &rows).await {
        tracing::warn!(resource_id, error = %e, "could not record paved's own activity; the resource may look used");
    }
}

/// Reads the usage of every part of `res` and stores it as of `now`.
pub async fn sample_resource<C: ConnectionTrait>(
    db: &C,
    drivers: &dyn Provisioner,
    res: &resource::Model,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let spec: RenderedSpec =
        serde_json::from_value(res.desired.clone()).map_err(|e| e.to_string())?;
    for part in &spec.parts {
        let parsed = drivers
            .parse(&part.driver, &part.spec)
            .map_err(|e| e.to_string())?;
        let u = drivers.usage(&parsed).await.map_err(|e| e.to_string())?;
        let sample = NewSample {
            resource_id: &res.id,
            part: &part.id,
            kind: SampleKind::Sample,
            at: now,
            active: u.active,
            counter: u.activity_counter,
            idle_seconds: u.idle_seconds,
        };
        db::usage::record(db, &[sample])
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One sampling round over every ready resource; returns how many were sampled.
pub async fn sample<C: ConnectionTrait>(
    db: &C,
    drivers: &dyn Provisioner,
    now: DateTime<Utc>,
) -> Result<usize, DbErr> {
    let mut n = 0;
    for res in db::day2::ready(db, None).await? {
        match sample_resource(db, drivers, &res, now).await {
            Ok(()) => n += 1,
            Err(e) => tracing::warn!(resource_id = %res.id, error = %e, "usage sample failed"),
        }
    }
    Ok(n)
}

/// A resource nobody used over the window.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnusedResource {
    pub resource_id: String,
    pub name: String,
    pub offering: String,
    pub environment: String,
    pub owner: String,
    /// What deleting it saves per month.
    pub monthly_cost: f64,
    /// The last reading that showed activity, if paved ever saw any.
    pub last_activity: Option<DateTime<Utc>>,
    /// Since when paved has readings showing no activity.
    pub idle_since: DateTime<Utc>,
    /// Why it counts as unused, per part.
    pub reasons: Vec<String>,
}

/// A team's unused resources and what deleting them would save.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnusedReport {
    pub team: String,
    pub window_hours: u64,
    pub currency: String,
    pub resources: Vec<UnusedResource>,
    /// Sum of their monthly costs.
    pub monthly_savings: f64,
    /// Ready resources without readings covering the whole window yet (too new, or sampling
    /// started recently): neither used nor unused.
    pub not_enough_data: u64,
}

/// What one part's readings say about the window.
enum Verdict {
    Used,
    Unused {
        idle_since: DateTime<Utc>,
        last_activity: Option<DateTime<Utc>>,
        reason: String,
    },
    NotEnoughData,
}

async fn part_verdict<C: ConnectionTrait>(
    db: &C,
    resource_id: &str,
    part: &str,
    driver: &str,
    window: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<Verdict, DbErr> {
    let rows = db::usage::of_part(db, resource_id, part, now).await?;
    Ok(verdict(&rows, driver, now - window))
}

/// What a part's samples up to now (oldest first) say about the window starting at `start`.
fn verdict(rows: &[Sample], driver: &str, start: DateTime<Utc>) -> Verdict {
    let samples: Vec<&Sample> = rows
        .iter()
        .filter(|r| r.kind == SampleKind::Sample)
        .collect();
    // The reading the window is measured from, and the ones inside it.
    let Some(base) = samples.iter().rev().find(|s| s.at <= start) else {
        return Verdict::NotEnoughData;
    };
    let inside: Vec<&&Sample> = samples.iter().filter(|s| s.at > start).collect();
    let Some(last) = inside.last() else {
        return Verdict::NotEnoughData;
    };
    // Transactions paved itself caused in (from, to]: a drift check is not use.
    let own = |from: DateTime<Utc>, to: DateTime<Utc>| -> i64 {
        rows.iter()
            .filter(|r| r.kind == SampleKind::OwnActivity && r.at > from && r.at <= to)
            .map(|r| r.counter)
            .sum()
    };
    // The last activity paved ever saw, for the report and as the idle period's key: counting
    // paved's own checks here would start a new idle period, and a new notice, every round.
    let mut last_activity = None;
    for pair in samples.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.active > 0 || b.counter - a.counter != own(a.at, b.at) {
            last_activity = Some(b.at);
        }
    }
    if inside.iter().any(|s| s.active > 0) {
        return Verdict::Used;
    }
    let delta = last.counter - base.counter;
    let (used, reason) = match driver {
        "postgres" => {
            let own = own(base.at, last.at);
            // A counter that went down was reset: no evidence either way, so not unused.
            (
                delta < 0 || delta > own,
                "no connections and no transactions".to_owned(),
            )
        }
        _ => {
            let touched = last
                .idle_seconds
                .is_some_and(|i| i < (last.at - base.at).num_seconds());
            (
                delta != 0 || touched,
                "no client connected and no key read or written".to_owned(),
            )
        }
    };
    if used {
        return Verdict::Used;
    }
    Verdict::Unused {
        idle_since: last_activity.unwrap_or(samples[0].at).max(samples[0].at),
        last_activity,
        reason,
    }
}

/// Ready resources (of `owner`, or all) without any activity over `window` before `now`.
/// Returns them and how many resources had too few readings to tell.
pub async fn find_unused<C: ConnectionTrait>(
    db: &C,
    owner: Option<&str>,
    window: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<(Vec<UnusedResource>, u64), DbErr> {
    let mut unused = Vec::new();
    let mut unknown = 0;
    'resources: for res in db::day2::ready(db, owner).await? {
        let Ok(spec) = serde_json::from_value::<RenderedSpec>(res.desired.clone()) else {
            continue;
        };
        let mut reasons = Vec::new();
        let mut idle_since = res.created_at;
        let mut last_activity: Option<DateTime<Utc>> = None;
        for part in &spec.parts {
            match part_verdict(db, &res.id, &part.id, &part.driver, window, now).await? {
                Verdict::Used => continue 'resources,
                Verdict::NotEnoughData => {
                    unknown += 1;
                    continue 'resources;
                }
                Verdict::Unused {
                    idle_since: since,
                    last_activity: last,
                    reason,
                } => {
                    idle_since = idle_since.max(since);
                    last_activity = last_activity.max(last);
                    reasons.push(format!(
                        "{}: {reason} since {}",
                        part.id,
                        since.to_rfc3339()
                    ));
                }
            }
        }
        unused.push(UnusedResource {
            resource_id: res.id.clone(),
            name: res.entity_name.clone(),
            offering: res.offering.clone(),
            environment: res.environment.clone(),
            owner: res.owner.clone(),
            monthly_cost: res.monthly_cost_cents.unwrap_or(0) as f64 / 100.0,
            last_activity,
            idle_since,
            reasons,
        });
    }
    Ok((unused, unknown))
}

/// A team's report.
pub async fn team_report<C: ConnectionTrait>(
    db: &C,
    team: &str,
    window_hours: u64,
    currency: &str,
    now: DateTime<Utc>,
) -> Result<UnusedReport, DbErr> {
    let window = chrono::Duration::hours(window_hours as i64);
    let (resources, not_enough_data) = find_unused(db, Some(team), window, now).await?;
    let savings: f64 = resources.iter().map(|r| r.monthly_cost).sum();
    Ok(UnusedReport {
        team: team.to_owned(),
        window_hours,
        currency: currency.to_owned(),
        resources,
        monthly_savings: (savings * 100.0).round() / 100.0,
        not_enough_data,
    })
}

/// Tells each owning team once about resources that became unused (again, after activity),
/// one notification per team with what deleting them saves. Returns how many resources were
/// newly reported.
pub async fn notify_unused(
    db: &DatabaseConnection,
    notifier: &Notifier,
    window_hours: u64,
    currency: &str,
    now: DateTime<Utc>,
) -> Result<usize, DbErr> {
    let window = chrono::Duration::hours(window_hours as i64);
    let (unused, _) = find_unused(db, None, window, now).await?;
    let mut by_team: BTreeMap<String, Vec<UnusedResource>> = BTreeMap::new();
    for r in unused {
        let key = r
            .last_activity
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "never".into());
        if !db::notices::first_time(db, &r.resource_id, NoticeKind::Unused, &key, now).await? {
            continue;
        }
        audit::record(
            db,
            USAGE,
            "resource.unused",
            Target::resource(&r.resource_id),
            "unused",
            Some(json!({"windowHours": window_hours, "monthlyCost": r.monthly_cost, "lastActivity": r.last_activity})),
        )
        .await;
        by_team.entry(r.owner.clone()).or_default().push(r);
    }
    let mut told = 0;
    for (team, list) in by_team {
        told += list.len();
        let total: f64 = list.iter().map(|r| r.monthly_cost).sum();
        let lines: Vec<String> = list
            .iter()
            .map(|r| {
                format!(
                    "{} ({}, {:.2} {currency}/month)",
                    r.name, r.environment, r.monthly_cost
                )
            })
            .collect();
        notifier
            .send(
                db,
                Notification {
                    topic: Topic::UnusedResource,
                    recipients: vec![team.clone()],
                    title: format!(
                        "{} resource(s) look unused: {:.2} {currency}/month to save",
                        list.len(),
                        total
                    ),
                    description: format!(
                        "Nothing used these in the last {window_hours} hours: {}. If nobody needs them, deleting them saves {:.2} {currency} per month.",
                        lines.join(", "),
                        total
                    ),
                    link: Some(notifier.api_url(&format!(
                        "/v1/teams/{}/unused",
                        team.replace('/', "%2F")
                    ))),
                    severity: Severity::Low,
                    scope: Some(format!("paved:unused:{team}")),
                },
            )
            .await;
    }
    Ok(told)
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn at(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + Duration::hours(h)
    }

    fn sample(h: i64, counter: i64) -> Sample {
        Sample {
            kind: SampleKind::Sample,
            at: at(h),
            active: 0,
            counter,
            idle_seconds: None,
        }
    }

    fn own(h: i64, counter: i64) -> Sample {
        Sample {
            kind: SampleKind::OwnActivity,
            ..sample(h, counter)
        }
    }

    #[test]
    fn without_a_reading_before_and_inside_the_window_nothing_is_known() {
        let start = at(10);
        assert!(matches!(
            verdict(&[sample(11, 5), sample(12, 5)], "postgres", start),
            Verdict::NotEnoughData
        ));
        assert!(matches!(
            verdict(&[sample(9, 5)], "postgres", start),
            Verdict::NotEnoughData
        ));
    }

    #[test]
    fn paved_own_transactions_do_not_count_as_use() {
        let start = at(10);
        // Three transactions inside the window, all of them a drift check's.
        let rows = [sample(9, 100), own(11, 3), sample(12, 103)];
        match verdict(&rows, "postgres", start) {
            Verdict::Unused { reason, .. } => {
                assert_eq!(reason, "no connections and no transactions");
            }
            _ => panic!("expected unused"),
        }
        // One more than paved caused: someone used it.
        let rows = [sample(9, 100), own(11, 3), sample(12, 104)];
        assert!(matches!(verdict(&rows, "postgres", start), Verdict::Used));
        // A counter that went down was reset: no evidence it is unused.
        let rows = [sample(9, 100), sample(12, 2)];
        assert!(matches!(verdict(&rows, "postgres", start), Verdict::Used));
    }

    /// Round after round of drift checks leave the idle period where it began, so it is
    /// reported once; real use ends it, and the next idle period is a new one.
    #[test]
    fn paved_own_checks_do_not_start_a_new_idle_period() {
        let idle = |rows: &[Sample], now: i64| match verdict(rows, "postgres", at(now - 10)) {
            Verdict::Unused {
                idle_since,
                last_activity,
                ..
            } => (idle_since, last_activity),
            _ => panic!("expected unused at {now}"),
        };
        let mut rows = vec![sample(0, 100), sample(1, 110)];
        for h in 2..30 {
            rows.push(own(h, 3));
            rows.push(sample(h, 110 + 3 * (h - 1)));
        }
        let first = idle(&rows[..24], 12);
        assert_eq!(first, (at(1), Some(at(1))));
        assert_eq!(idle(&rows, 29), first, "the same idle period, every round");

        // Someone used it: a new idle period, with a new key, starts after that.
        let last = rows.last().unwrap().counter;
        rows.push(sample(30, last + 5));
        rows.push(own(31, 3));
        rows.push(sample(31, last + 8));
        rows.push(sample(45, last + 8));
        assert_eq!(idle(&rows, 45), (at(30), Some(at(30))));
    }

    #[test]
    fn a_connection_or_a_touched_key_is_use() {
        let start = at(10);
        let mut active = sample(11, 0);
        active.active = 1;
        assert!(matches!(
            verdict(&[sample(9, 0), active, sample(12, 0)], "redis", start),
            Verdict::Used
        ));
        // Idle for less than the time between the readings: a key was touched.
        let mut touched = sample(12, 0);
        touched.idle_seconds = Some(60);
        assert!(matches!(
            verdict(&[sample(9, 0), touched.clone()], "redis", start),
            Verdict::Used
        ));
        touched.idle_seconds = Some(4 * 3600);
        assert!(matches!(
            verdict(&[sample(9, 0), touched], "redis", start),
            Verdict::Unused { .. }
        ));
    }
}
