//! Platform metrics ("Measuring success"): how fast developers get infrastructure, how often
//! it works, what the guardrails decide, what waits for a human, what runs and costs what,
//! who adopts the platform, how often things drift, and what cleanup saves. Computed from
//! paved's own tables, on either database engine.

pub mod cost_insights;

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use sea_orm::{ConnectionTrait, DbErr};
use serde::Serialize;

use crate::vocab::status::{Operation, RequestStatus};
use crate::{
    access::{self, Act, Target},
    day2::usage::{self, UnusedReport},
    db::{
        self,
        entities::{resource, resource_notice::NoticeKind},
    },
    usecases::Refused,
    vocab::{field_error::FieldError, principal::Principal},
};

/// Why a report is not given.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Absent, or not the caller's to see (the two answer alike).
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Refused(Refused),
    /// A parameter breaks its rule.
    #[error("{0}")]
    Invalid(FieldError),
    #[error(transparent)]
    Db(#[from] DbErr),
}

fn authorize(
    who: &Principal,
    act: Act<'_>,
    target: Target<'_>,
    absent: impl FnOnce() -> String,
) -> Result<(), ReportError> {
    access::authorize(who, act, target).map_err(|d| match Refused::of(d) {
        Some(r) => ReportError::Refused(r),
        None => ReportError::NotFound(absent()),
    })
}

/// `team`'s unused resources over the last `window_hours` (1 to 8760), for a caller who may
/// see the team.
pub async fn unused_of_team<C: ConnectionTrait>(
    db: &C,
    who: &Principal,
    team: &str,
    window_hours: u64,
    currency: &str,
    now: DateTime<Utc>,
) -> Result<UnusedReport, ReportError> {
    authorize(who, Act::Read, Target::Team(team), || {
        format!("no team {team:?} known to paved")
    })?;
    if !(1..=8760).contains(&window_hours) {
        return Err(ReportError::Invalid(FieldError {
            field: "windowHours".into(),
            rule: "range".into(),
            message: "must be between 1 and 8760".into(),
        }));
    }
    Ok(usage::team_report(db, team, window_hours, currency, now).await?)
}

/// The platform's metrics over `window` (`30d`, `24h`, ...; `default_hours` when absent)
/// before `now`, for callers who see every team.
pub async fn platform_for<C: ConnectionTrait>(
    db: &C,
    who: &Principal,
    window: Option<&str>,
    default_hours: u64,
    now: DateTime<Utc>,
    currency: &str,
) -> Result<PlatformMetrics, ReportError> {
    authorize(who, Act::ReadPlatform, Target::Platform, String::new)?;
    let window = match window {
        None => Duration::hours(default_hours as i64),
        Some(w) => parse_window(w).map_err(|message| {
            ReportError::Invalid(FieldError {
                field: "window".into(),
                rule: "pattern".into(),
                message,
            })
        })?,
    };
    Ok(platform(db, window, now, currency).await?)
}

/// A window like `30d`, `7d`, `24h` or `2w`: 1 hour to 366 days.
pub fn parse_window(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a window like 30d, 7d, 24h or 2w");
    // By character, not byte: the input is whatever a query string carried.
    let unit = s.chars().last().ok_or_else(bad)?;
    let n: i64 = s[..s.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    let d = match unit {
        'h' => Duration::try_hours(n),
        'd' => Duration::try_days(n),
        'w' => Duration::try_weeks(n),
        _ => return Err(bad()),
    };
    match d {
        Some(d) if d >= Duration::hours(1) && d <= Duration::days(366) => Ok(d),
        _ => Err("must be between 1h and 366d".into()),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformMetrics {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub currency: String,
    pub time_to_infrastructure: TimeToInfrastructure,
    pub requests: RequestOutcomes,
    pub policy: PolicyCounts,
    pub approvals: PendingApprovals,
    pub resources: ActiveResources,
    pub adoption: Vec<TeamWeek>,
    pub drift: DriftCounts,
    pub cleanup: Cleanup,
}

/// Order to ready, for create requests that succeeded in the window (approval waits included).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimeToInfrastructure {
    pub count: u64,
    pub average_seconds: Option<f64>,
    pub median_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
}

/// Requests that finished in the window.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestOutcomes {
    pub succeeded: u64,
    pub failed: u64,
    pub denied: u64,
    pub rejected: u64,
    pub cancelled: u64,
    /// succeeded / (succeeded + failed): how often paved delivers what it accepted.
    pub success_rate: Option<f64>,
}

/// What the policies decided on requests made in the window, by rule.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyCounts {
    pub denials: BTreeMap<String, u64>,
    pub warnings: BTreeMap<String, u64>,
    pub approvals_required: BTreeMap<String, u64>,
}

/// Approvals waiting now.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingApprovals {
    pub pending: u64,
    pub oldest_age_seconds: Option<i64>,
    pub average_age_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActiveResources {
    pub active: u64,
    pub monthly_cost: f64,
    /// By owning team and offering.
    pub by_team_and_offering: Vec<ResourceGroup>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceGroup {
    pub team: String,
    pub offering: String,
    pub active: u64,
    pub monthly_cost: f64,
}

/// Requests per team per ISO week (weeks start on Monday), for requests made in the window.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamWeek {
    pub team: String,
    /// The week's Monday, `YYYY-MM-DD`.
    pub week: String,
    pub requests: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftCounts {
    /// Findings first detected in the window.
    pub incidents: u64,
    /// Findings open now, and the resources they belong to.
    pub open: u64,
    pub resources_with_drift: u64,
}

/// Resources deleted in the window and what they cost per month.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cleanup {
    pub deleted: u64,
    pub deleted_monthly_cost: f64,
    /// Deleted by the reaper after their TTL, or after paved reported them unused.
    pub cleaned_up: u64,
    /// The monthly cost of those: what cleanup saves.
    pub monthly_savings: f64,
}

/// `part / whole` to four places, in one rounding: rounding the percentage and then dividing
/// it by 100 gave 0.8065000000000001.
fn rate(part: u64, whole: u64) -> f64 {
    (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

fn median(sorted: &[f64]) -> Option<f64> {
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

fn monday(d: NaiveDate) -> NaiveDate {
    d - chrono::Days::new(u64::from(d.weekday().num_days_from_monday()))
}

fn rules<'a>(rules: impl Iterator<Item = &'a String>, into: &mut BTreeMap<String, u64>) {
    for rule in rules {
        *into.entry(rule.clone()).or_default() += 1;
    }
}

/// The platform's metrics over `window` before `now`.
pub async fn platform<C: ConnectionTrait>(
    db: &C,
    window: Duration,
    now: DateTime<Utc>,
    currency: &str,
) -> Result<PlatformMetrics, DbErr> {
    let from = now - window;

    // Finished in the window: speed and outcomes.
    let finished = db::reports::requests_finished_between(db, from, now).await?;
    let mut durations: Vec<f64> = finished
        .iter()
        .filter(|r| r.operation == Operation::Create && r.status == RequestStatus::Succeeded)
        .filter_map(|r| {
            r.completed_at
                .map(|c| (c - r.created_at).num_milliseconds() as f64 / 1000.0)
        })
        .collect();
    durations.sort_by(|a, b| a.total_cmp(b));
    let count = |s: RequestStatus| finished.iter().filter(|r| r.status == s).count() as u64;
    let (succeeded, failed) = (
        count(RequestStatus::Succeeded),
        count(RequestStatus::Failed),
    );

    // Made in the window: policy decisions and adoption.
    let made = db::reports::requests_made_between(db, from, now).await?;
    let mut policy = PolicyCounts {
        denials: BTreeMap::new(),
        warnings: BTreeMap::new(),
        approvals_required: BTreeMap::new(),
    };
    let mut weeks: BTreeMap<(String, NaiveDate), u64> = BTreeMap::new();
    for r in &made {
        if let Some(d) = &r.decision {
            rules(d.deny.iter().map(|v| &v.rule), &mut policy.denials);
            rules(d.warn.iter().map(|v| &v.rule), &mut policy.warnings);
            let approvals = d.require_approval.iter().map(|v| &v.rule);
            rules(approvals, &mut policy.approvals_required);
        }
        // Developers' orders: the reaper's deletions are not adoption.
        if !r.requester.starts_with("system:") {
            *weeks
                .entry((r.owner.clone(), monday(r.created_at.date_naive())))
                .or_default() += 1;
        }
    }

    let pending = db::reports::pending_approvals(db).await?;
    let ages: Vec<i64> = pending
        .iter()
        .map(|a| (now - a.created_at).num_seconds().max(0))
        .collect();

    let live = db::reports::active_resources(db).await?;
    let mut groups: BTreeMap<(String, String), (u64, f64)> = BTreeMap::new();
    for r in &live {
        let g = groups
            .entry((r.owner.clone(), r.offering.clone()))
            .or_default();
        g.0 += 1;
        g.1 += r.monthly_cost_cents.unwrap_or(0) as f64 / 100.0;
    }

    let detected = db::drift::detected_between(db, from, now).await?;
    let open = db::drift::all_open(db).await?;
    let drifting: std::collections::BTreeSet<&str> =
        open.iter().map(|f| f.resource_id.as_str()).collect();

    let deleted = db::reports::resources_deleted_between(db, from, now).await?;
    let ids: Vec<String> = deleted.iter().map(|r| r.id.clone()).collect();
    let reaped = db::reports::deleted_by(db, crate::vocab::actor::REAPER, &ids).await?;
    let flagged = db::notices::noticed_among(db, NoticeKind::Unused, &ids).await?;
    let cost = |r: &resource::Model| r.monthly_cost_cents.unwrap_or(0) as f64 / 100.0;
    let cleaned: Vec<&resource::Model> = deleted
        .iter()
        .filter(|r| reaped.contains(&r.id) || flagged.contains(&r.id))
        .collect();

    Ok(PlatformMetrics {
        from,
        to: now,
        currency: currency.to_owned(),
        time_to_infrastructure: TimeToInfrastructure {
            count: durations.len() as u64,
            average_seconds: (!durations.is_empty())
                .then(|| round2(durations.iter().sum::<f64>() / durations.len() as f64)),
            median_seconds: median(&durations).map(round2),
            p95_seconds: percentile(&durations, 95.0).map(round2),
        },
        requests: RequestOutcomes {
            succeeded,
            failed,
            denied: count(RequestStatus::Denied),
            rejected: count(RequestStatus::Rejected),
            cancelled: count(RequestStatus::Cancelled),
            success_rate: (succeeded + failed > 0).then(|| rate(succeeded, succeeded + failed)),
        },
        policy,
        approvals: PendingApprovals {
            pending: pending.len() as u64,
            oldest_age_seconds: ages.iter().max().copied(),
            average_age_seconds: (!ages.is_empty())
                .then(|| round2(ages.iter().sum::<i64>() as f64 / ages.len() as f64)),
        },
        resources: ActiveResources {
            active: live.len() as u64,
            monthly_cost: round2(live.iter().map(cost).sum()),
            by_team_and_offering: groups
                .into_iter()
                .map(|((team, offering), (active, monthly))| ResourceGroup {
                    team,
                    offering,
                    active,
                    monthly_cost: round2(monthly),
                })
                .collect(),
        },
        adoption: weeks
            .into_iter()
            .map(|((team, week), requests)| TeamWeek {
                team,
                week: week.to_string(),
                requests,
            })
            .collect(),
        drift: DriftCounts {
            incidents: detected.len() as u64,
            open: open.len() as u64,
            resources_with_drift: drifting.len() as u64,
        },
        cleanup: Cleanup {
            deleted: deleted.len() as u64,
            deleted_monthly_cost: round2(deleted.iter().map(cost).sum()),
            cleaned_up: cleaned.len() as u64,
            monthly_savings: round2(cleaned.iter().map(|r| cost(r)).sum()),
        },
    })
}

type Labels = Vec<(String, String)>;
/// A gauge's name and labels.
type GaugeKey = (String, Labels);

/// Publishes `m` as Prometheus gauges (on the process's recorder). Label sets that no longer
/// occur are set to 0, so a team without resources does not keep its old figures.
pub fn publish_gauges(m: &PlatformMetrics) {
    use std::sync::{Mutex, OnceLock};
    static SEEN: OnceLock<Mutex<std::collections::BTreeSet<GaugeKey>>> = OnceLock::new();
    let mut now: Vec<(&'static str, Labels, f64)> = Vec::new();
    let l = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let t = &m.time_to_infrastructure;
    for (stat, v) in [
        ("average", t.average_seconds),
        ("median", t.median_seconds),
        ("p95", t.p95_seconds),
    ] {
        if let Some(v) = v {
            now.push((
                "paved_time_to_infrastructure_seconds",
                l(&[("stat", stat)]),
                v,
            ));
        }
    }
    if let Some(r) = m.requests.success_rate {
        now.push(("paved_request_success_ratio", vec![], r));
    }
    for (outcome, n) in [
        ("succeeded", m.requests.succeeded),
        ("failed", m.requests.failed),
        ("denied", m.requests.denied),
        ("rejected", m.requests.rejected),
        ("cancelled", m.requests.cancelled),
    ] {
        now.push((
            "paved_requests_finished",
            l(&[("outcome", outcome)]),
            n as f64,
        ));
    }
    for (kind, map) in [
        ("deny", &m.policy.denials),
        ("warn", &m.policy.warnings),
        ("approval", &m.policy.approvals_required),
    ] {
        for (rule, n) in map {
            now.push((
                "paved_policy_decisions",
                l(&[("kind", kind), ("rule", rule)]),
                *n as f64,
            ));
        }
    }
    now.push((
        "paved_approvals_pending",
        vec![],
        m.approvals.pending as f64,
    ));
    now.push((
        "paved_approvals_oldest_age_seconds",
        vec![],
        m.approvals.oldest_age_seconds.unwrap_or(0) as f64,
    ));
    for g in &m.resources.by_team_and_offering {
        let labels = l(&[("team", &g.team), ("offering", &g.offering)]);
        now.push(("paved_resources_active", labels.clone(), g.active as f64));
        now.push(("paved_resources_monthly_cost", labels, g.monthly_cost));
    }
    // By team over the window: a week label would grow a new series every week forever.
    let mut by_team: std::collections::BTreeMap<&str, u64> = Default::default();
    for w in &m.adoption {
        *by_team.entry(&w.team).or_default() += w.requests;
    }
    for (team, n) in by_team {
        now.push(("paved_requests_by_team", l(&[("team", team)]), n as f64));
    }
    now.push(("paved_drift_incidents", vec![], m.drift.incidents as f64));
    now.push(("paved_drift_open", vec![], m.drift.open as f64));
    now.push((
        "paved_cleanup_monthly_savings",
        vec![],
        m.cleanup.monthly_savings,
    ));
    let mut seen = SEEN
        .get_or_init(|| Mutex::new(Default::default()))
        .lock()
        .expect("gauge registry lock");
    let current: std::collections::BTreeSet<GaugeKey> = now
        .iter()
        .map(|(n, l, _)| (n.to_string(), l.clone()))
        .collect();
    for (name, labels) in seen.difference(&current) {
        metrics::gauge!(name.clone(), &labels[..]).set(0.0);
    }
    for (name, labels, v) in now {
        // Rounding a tiny negative amount gives -0, which reads like a refund.
        let v = if v == 0.0 { 0.0 } else { v };
        metrics::gauge!(name, &labels[..]).set(v);
    }
    seen.extend(current);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_reads_as_people_write_it() {
        // 25 of 31 succeeded: 0.806451…
        assert_eq!(serde_json::to_string(&rate(25, 31)).unwrap(), "0.8065");
        assert_eq!(serde_json::to_string(&rate(1, 3)).unwrap(), "0.3333");
        assert_eq!(rate(2, 2), 1.0);
    }

    #[test]
    fn windows_parse_or_name_the_rule() {
        assert_eq!(parse_window("30d"), Ok(Duration::days(30)));
        assert_eq!(parse_window("24h"), Ok(Duration::hours(24)));
        assert_eq!(parse_window("2w"), Ok(Duration::weeks(2)));
        // Found by schemathesis: a multi-byte character used to split mid-character (a panic),
        // and a huge count overflowed the duration (another).
        for bad in [
            "",
            "d",
            "\u{f4b0}\u{92}",
            "1\u{1f600}",
            "x5d",
            "99999999999999999d",
            "-3d",
            "0h",
            "367d",
        ] {
            assert!(parse_window(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn platform_metrics_are_for_those_who_see_every_team() {
        let t = crate::usecases::testkit::db().await;
        let now = Utc::now();
        let member = crate::usecases::testkit::member();
        let e = platform_for(&t.db, &member, None, 24, now, "EUR")
            .await
            .unwrap_err();
        assert!(matches!(e, ReportError::Refused(_)), "{e}");
        let admin = crate::usecases::testkit::admin();
        let e = platform_for(&t.db, &admin, Some("5y"), 24, now, "EUR")
            .await
            .unwrap_err();
        assert!(
            matches!(&e, ReportError::Invalid(f) if f.field == "window"),
            "{e}"
        );
        crate::usecases::testkit::resource(&t.db, "r1", "dev").await;
        let m = platform_for(&t.db, &admin, Some("7d"), 24, now, "EUR")
            .await
            .unwrap();
        assert_eq!((m.from, m.resources.active), (now - Duration::days(7), 1));
    }

    #[tokio::test]
    async fn another_teams_unused_resources_are_not_found_and_the_window_has_a_range() {
        let t = crate::usecases::testkit::db().await;
        let now = Utc::now();
        let team = crate::usecases::testkit::TEAM_A;
        let outsider = crate::usecases::testkit::outsider();
        let e = unused_of_team(&t.db, &outsider, team, 24, "EUR", now)
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), format!("no team {team:?} known to paved"));
        let member = crate::usecases::testkit::member();
        let e = unused_of_team(&t.db, &member, team, 0, "EUR", now)
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "windowHours: must be between 1 and 8760");
        let r = unused_of_team(&t.db, &member, team, 24, "EUR", now)
            .await
            .unwrap();
        assert_eq!((r.resources.len(), r.not_enough_data), (0, 0));
    }
    /// A failed resource is not active: the team's spend, what its next order is budgeted
    /// against and the platform metrics leave it out alike.
    #[tokio::test]
    async fn spend_budget_and_metrics_agree_a_failed_resource_is_not_active() {
        let t = crate::usecases::testkit::db().await;
        let mut ready = crate::usecases::testkit::resource_row("r-ready", "dev");
        ready.monthly_cost_cents = Some(1500);
        let mut failed = crate::usecases::testkit::resource_row("r-failed", "dev");
        failed.monthly_cost_cents = Some(1000);
        failed.status = crate::vocab::status::ResourceStatus::Failed;
        for r in [ready, failed] {
            crate::db::resources::insert(&t.db, r).await.unwrap();
        }
        let book = crate::cost::PriceBook::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pricing.yaml"),
        )
        .unwrap();
        let now = chrono::Utc::now();
        let team =
            crate::vocab::entity_ref::EntityRef::parse(crate::usecases::testkit::TEAM_A, "group")
                .unwrap();
        let s = crate::usecases::spend::team_spend(&t.db, &team, &book, now)
            .await
            .unwrap();
        assert_eq!(s.current_monthly, 15.0);
        let far = now + chrono::Duration::days(400);
        let totals =
            crate::db::spend::totals_of_team(&t.db, crate::usecases::testkit::TEAM_A, now, far)
                .await
                .unwrap();
        assert_eq!(totals.full_month_cents, 1500);
        let m = crate::reports::platform(&t.db, chrono::Duration::days(30), now, "USD")
            .await
            .unwrap();
        assert_eq!((m.resources.active, m.resources.monthly_cost), (1, 15.0));
    }
}
