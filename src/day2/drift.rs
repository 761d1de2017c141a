//! Drift: what changed behind paved's back. A check observes every part of a resource through
//! its driver and compares it with what paved provisioned; each difference is a finding
//! (part, field, expected, actual, detected at) that stays open until it disappears, is
//! reverted (the desired state re-applied through a normal update request) or accepted (the
//! actual value becomes the expected one).

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::provisioning::drivers::{Difference, DriverError, Provisioner};
use crate::{
    access::Act,
    audit::{self, Target},
    db::{
        self,
        drift::NewFinding,
        entities::{
            drift_finding::{self, FindingStatus},
            drift_state::DriftStatus,
            resource,
        },
    },
    notifications::{Notification, Notifier, Severity, Topic},
    provisioning::requests::Request,
    templates::{Catalog, RenderedSpec},
    usecases::{
        Refused,
        assess::Inputs,
        resource_for,
        update::{self, Purpose, UpdateError},
    },
    vocab::{principal::Principal, status::ResourceStatus},
};

use crate::vocab::actor::DRIFT;

/// Fields whose actual value cannot become the desired one: something is missing.
const NOT_ACCEPTABLE: &[&str] = &["exists", "role"];

/// How many closed findings a report shows.
const HISTORY: u64 = 50;

/// One difference found, and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub id: i64,
    /// The offering part (e.g. `database`, `cache`).
    pub part: String,
    /// e.g. `connection_limit`, `exists`, `commands`.
    pub field: String,
    #[schema(value_type = Object)]
    pub expected: Value,
    #[schema(value_type = Object)]
    pub actual: Value,
    /// open, resolved (gone by itself), reverted, accepted, superseded (changed again).
    pub status: String,
    pub detected_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
    /// The update request a revert started.
    pub request_id: Option<String>,
}

/// A resource's drift as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftReport {
    pub resource_id: String,
    /// detected, none, or unknown (never checked).
    pub status: String,
    pub checked_at: Option<DateTime<Utc>>,
    /// Open findings.
    pub findings: Vec<Finding>,
    /// The latest closed findings (up to 50), newest first.
    pub history: Vec<Finding>,
}

#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error("no resource with id {0:?}")]
    NotFound(String),
    #[error("{0}")]
    Refused(Refused),
    #[error("resource {id} is {status}; only ready resources are checked")]
    NotReady { id: String, status: String },
    #[error("{0}")]
    Conflict(String),
    #[error("cannot observe part {part}: {error}")]
    Driver { part: String, error: DriverError },
    #[error(transparent)]
    Db(#[from] DbErr),
}

fn to_api(m: drift_finding::Model) -> Finding {
    Finding {
        id: m.id,
        part: m.part,
        field: m.field,
        expected: m.expected.unwrap_or(Value::Null),
        actual: m.actual.unwrap_or(Value::Null),
        status: m.status.as_str().to_owned(),
        detected_at: m.detected_at,
        last_seen_at: m.last_seen_at,
        resolved_at: m.resolved_at,
        resolved_by: m.resolved_by,
        request_id: m.request_id,
    }
}

/// The stored drift of `resource_id`.
pub async fn report(db: &DatabaseConnection, resource_id: &str) -> Result<DriftReport, DbErr> {
    let state = db::drift::state(db, resource_id).await?;
    let findings = db::drift::open_findings(db, resource_id).await?;
    let history = db::drift::closed_findings(db, resource_id, HISTORY).await?;
    Ok(DriftReport {
        resource_id: resource_id.to_owned(),
        status: state
            .as_ref()
            .map_or("unknown", |s| s.status.as_str())
            .to_owned(),
        checked_at: state.map(|s| s.checked_at),
        findings: findings.into_iter().map(to_api).collect(),
        history: history.into_iter().map(to_api).collect(),
    })
}

/// Resource `id` when `who` may do `act` to it (what it may not see is not found).
async fn visible(
    db: &DatabaseConnection,
    who: &Principal,
    id: &str,
    act: Act<'static>,
) -> Result<resource::Model, DriftError> {
    match resource_for(db, who, id, |_| act).await? {
        Ok(res) => Ok(res),
        Err(None) => Err(DriftError::NotFound(id.into())),
        Err(Some(r)) => Err(DriftError::Refused(r)),
    }
}

/// The drift of resource `id`, for a caller who may see it.
pub async fn report_for(
    db: &DatabaseConnection,
    who: &Principal,
    id: &str,
) -> Result<DriftReport, DriftError> {
    visible(db, who, id, Act::Read).await?;
    Ok(report(db, id).await?)
}

/// Values accepted for (part, field): they are what is expected from now on.
fn accepted(desired: &Value) -> Map<String, Value> {
    desired
        .get("accepted")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// What a check found.
#[derive(Debug)]
pub struct Checked {
    pub report: DriftReport,
    /// The drift status changed (the catalog entity's `paved.dev/drift` with it).
    pub status_changed: bool,
    /// Per part, transactions the observation itself committed on the tenant's database
    /// (see [`crate::provisioning::drivers::Observed::self_transactions`]).
    pub self_transactions: Vec<(String, i64)>,
    /// The checked resource's catalog entity name (to refresh when the status changed).
    pub entity_name: String,
}

/// Observes every part of `res` and records what differs from what paved provisioned.
/// `actor` is who asked (a user for on-demand checks, [`DRIFT`] for the schedule).
pub async fn check(
    db: &DatabaseConnection,
    drivers: &dyn Provisioner,
    notifier: &Notifier,
    res: &resource::Model,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Checked, DriftError> {
    if res.deleted_at.is_some() || res.status != ResourceStatus::Ready {
        return Err(DriftError::NotReady {
            id: res.id.clone(),
            status: if res.deleted_at.is_some() {
                "deleted".into()
            } else {
                res.status.as_str().to_owned()
            },
        });
    }
    let spec: RenderedSpec = serde_json::from_value(res.desired.clone()).map_err(|e| {
        DriftError::Conflict(format!(
            "resource {} has no readable desired state: {e}",
            res.id
        ))
    })?;
    let accepted = accepted(&res.desired);
    let mut found: Vec<(String, Difference)> = Vec::new();
    let mut self_tx = Vec::new();
    for part in &spec.parts {
        let parsed =
            drivers
                .parse(&part.driver, &part.spec)
                .map_err(|error| DriftError::Driver {
                    part: part.id.clone(),
                    error,
                })?;
        // A driver that keeps state per resource (Terraform) finds it by the resource's id.
        let (seen, diffs) =
            crate::provisioning::drivers::context::on_resource(&res.id, drivers.drift(&parsed))
                .await
                .map_err(|error| DriftError::Driver {
                    part: part.id.clone(),
                    error,
                })?;
        self_tx.push((part.id.clone(), seen.self_transactions));
        for d in diffs {
            let ok = accepted
                .get(&part.id)
                .and_then(|p| p.get(&d.field))
                .is_some_and(|v| *v == d.actual);
            if !ok {
                found.push((part.id.clone(), d));
            }
        }
    }

    let open = db::drift::open_findings(db, &res.id).await?;
    let mut new_incidents = Vec::new();
    for (part, d) in &found {
        match open.iter().find(|f| &f.part == part && f.field == d.field) {
            Some(f) if f.actual.as_ref() == Some(&d.actual) => {
                db::drift::seen_again(db, f.id, now).await?;
            }
            other => {
                if let Some(f) = other {
                    // Changed again: the old finding is superseded by a new one.
                    db::drift::close(db, f.id, FindingStatus::Superseded, actor, None, now).await?;
                }
                let finding = NewFinding {
                    resource_id: &res.id,
                    part,
                    field: &d.field,
                    expected: &d.expected,
                    actual: &d.actual,
                };
                db::drift::open_finding(db, finding, now).await?;
                new_incidents.push(json!({"part": part, "field": d.field, "expected": d.expected, "actual": d.actual}));
            }
        }
    }
    for f in &open {
        if !found
            .iter()
            .any(|(p, d)| *p == f.part && d.field == f.field)
        {
            db::drift::close(db, f.id, FindingStatus::Resolved, actor, None, now).await?;
        }
    }
    let status = if found.is_empty() {
        DriftStatus::None
    } else {
        DriftStatus::Detected
    };
    let status_changed = db::drift::set_state(db, &res.id, status, now).await?;
    if !new_incidents.is_empty() {
        audit::record(
            db,
            actor,
            "drift.detected",
            Target::resource(&res.id),
            "detected",
            Some(json!({"findings": new_incidents})),
        )
        .await;
        let list: Vec<String> = found
            .iter()
            .map(|(p, d)| {
                format!(
                    "{p}.{}: expected {}, found {}",
                    d.field, d.expected, d.actual
                )
            })
            .collect();
        notifier
            .send(
                db,
                Notification::to_owner_of(
                    Topic::DriftDetected,
                    Severity::High,
                    (&res.owner, &res.entity_name, &res.id),
                    "drift",
                    format!("{} was changed outside paved", res.entity_name),
                    format!(
                        "paved found {} difference(s) between {} ({}) and what it provisioned: {}. Revert (POST {}/v1/resources/{}/drift/revert) re-applies paved's state; accept (…/drift/accept) keeps the change.",
                        found.len(),
                        res.entity_name,
                        res.environment,
                        list.join("; "),
                        notifier.plugin_base_path(),
                        res.id
                    ),
                ),
            )
            .await;
    }
    Ok(Checked {
        report: report(db, &res.id).await?,
        status_changed,
        self_transactions: self_tx,
        entity_name: res.entity_name.clone(),
    })
}

/// An on-demand check of resource `id` by `who` (members of the owning team and admins). What
/// the observation itself did on the tenant's database is recorded, so it does not count as
/// use.
pub async fn check_for(
    db: &DatabaseConnection,
    drivers: &dyn Provisioner,
    notifier: &Notifier,
    who: &Principal,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Checked, DriftError> {
    let res = visible(db, who, id, Act::Change).await?;
    let checked = check(db, drivers, notifier, &res, &who.subject, now).await?;
    super::usage::record_self_activity(db, &res.id, &checked.self_transactions, now).await;
    Ok(checked)
}

/// What accepting did.
#[derive(Debug)]
pub struct Accepted {
    pub report: DriftReport,
    /// The resource's catalog entity name (its desired state changed: refresh it).
    pub entity_name: String,
}

/// Accepts open findings of resource `id` (all, or those in `ids`): their actual values become
/// the expected ones for later checks. Members of the owning team and admins. A missing
/// database, role or user cannot be accepted; revert it (or delete the resource). An update or
/// revert re-applies the offering's spec and clears acceptances.
pub async fn accept(
    db: &DatabaseConnection,
    who: &Principal,
    id: &str,
    ids: Option<&[i64]>,
    now: DateTime<Utc>,
) -> Result<Accepted, DriftError> {
    let res = visible(db, who, id, Act::Change).await?;
    let open = db::drift::open_findings(db, &res.id).await?;
    let chosen: Vec<&drift_finding::Model> = open
        .iter()
        .filter(|f| ids.is_none_or(|ids| ids.contains(&f.id)))
        .collect();
    if let Some(ids) = ids
        && let Some(missing) = ids.iter().find(|i| !open.iter().any(|f| f.id == **i))
    {
        return Err(DriftError::Conflict(format!(
            "ids: finding {missing} is not an open finding of resource {}",
            res.id
        )));
    }
    if chosen.is_empty() {
        return Err(DriftError::Conflict(format!(
            "resource {} has no open drift findings to accept",
            res.id
        )));
    }
    if let Some(f) = chosen
        .iter()
        .find(|f| NOT_ACCEPTABLE.contains(&f.field.as_str()))
    {
        return Err(DriftError::Conflict(format!(
            "{}.{}: a missing {} cannot be accepted; revert to re-create it, or delete the resource",
            f.part,
            f.field,
            if f.field == "exists" {
                "database or user"
            } else {
                "role"
            }
        )));
    }
    let mut desired = res.desired.clone();
    let mut acc = accepted(&desired);
    for f in &chosen {
        let part = acc
            .entry(f.part.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(p) = part.as_object_mut() {
            p.insert(f.field.clone(), f.actual.clone().unwrap_or(Value::Null));
        }
    }
    if let Some(obj) = desired.as_object_mut() {
        obj.insert("accepted".into(), Value::Object(acc));
    }
    db::drift::store_accepted(db, &res.id, desired, now).await?;
    for f in &chosen {
        db::drift::close(db, f.id, FindingStatus::Accepted, &who.subject, None, now).await?;
    }
    let left = open.len() - chosen.len();
    let status = if left == 0 {
        DriftStatus::None
    } else {
        DriftStatus::Detected
    };
    db::drift::set_state(db, &res.id, status, now).await?;
    let accepted: Vec<Value> = chosen
        .iter()
        .map(|f| json!({"part": f.part, "field": f.field, "actual": f.actual}))
        .collect();
    audit::record_by(
        db,
        who,
        "drift.accepted",
        Target::resource(&res.id),
        "accepted",
        Some(json!({"findings": accepted})),
    )
    .await;
    Ok(Accepted {
        report: report(db, &res.id).await?,
        entity_name: res.entity_name,
    })
}

/// Re-applies paved's desired state over resource `id`'s drift: an `update` with its current
/// values, through the guardrails and steps like any update (which authorizes `who`), and
/// marks the open findings reverted by it. The next check confirms.
pub async fn revert(
    inputs: &Inputs<'_>,
    offerings: &Catalog,
    who: &Principal,
    id: &str,
) -> Result<Request, UpdateError> {
    // Read before the update authorizes; nothing of it is answered to a caller it refuses.
    let open = db::drift::open_findings(inputs.db, id).await?;
    let purpose = Purpose::Revert {
        open_findings: !open.is_empty(),
    };
    let request = update::update(inputs, offerings, who, id, &json!({}), purpose).await?;
    // Those open now: a check may have changed them while the update was placed.
    let open = db::drift::open_findings(inputs.db, id).await?;
    for f in &open {
        let (by, now) = (&who.subject, inputs.now);
        db::drift::close(
            inputs.db,
            f.id,
            FindingStatus::Reverted,
            by,
            Some(&request.id),
            now,
        )
        .await?;
    }
    audit::record_by(
        inputs.db,
        who,
        "drift.reverted",
        Target::resource(id),
        "reverting",
        Some(json!({"requestId": request.id, "findings": open.len()})),
    )
    .await;
    Ok(request)
}

/// What a scan did.
#[derive(Debug, Default)]
pub struct Scanned {
    pub checked: usize,
    pub drifted: usize,
    /// Entity names whose drift status changed (their catalog entities need a refresh).
    pub changed: Vec<(String, String)>,
    /// (resource id, part, transactions the observation committed).
    pub self_transactions: Vec<(String, String, i64)>,
}

/// One scheduled scan: every ready resource. Failures of one resource are logged, never stop
/// the scan.
pub async fn scan(
    db: &DatabaseConnection,
    drivers: &dyn Provisioner,
    notifier: &Notifier,
    now: DateTime<Utc>,
) -> Result<Scanned, DbErr> {
    let ready = db::day2::ready(db, None).await?;
    let mut out = Scanned::default();
    for res in ready {
        match check(db, drivers, notifier, &res, DRIFT, now).await {
            Ok(c) => {
                out.checked += 1;
                if c.report.status == DriftStatus::Detected.as_str() {
                    out.drifted += 1;
                }
                if c.status_changed {
                    out.changed.push((res.entity_name.clone(), res.id.clone()));
                }
                out.self_transactions.extend(
                    c.self_transactions
                        .into_iter()
                        .map(|(p, n)| (res.id.clone(), p, n)),
                );
            }
            Err(DriftError::Db(e)) => return Err(e),
            Err(e) => tracing::warn!(resource_id = %res.id, error = %e, "drift check failed"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usecases::testkit;

    async fn with_findings(t: &testkit::Db) -> Vec<drift_finding::Model> {
        testkit::resource(&t.db, "r1", "dev").await;
        let now = Utc::now();
        for (field, actual) in [("connection_limit", json!(50)), ("exists", json!(false))] {
            let f = NewFinding {
                resource_id: "r1",
                part: "database",
                field,
                expected: &json!(null),
                actual: &actual,
            };
            db::drift::open_finding(&t.db, f, now).await.unwrap();
        }
        db::drift::set_state(&t.db, "r1", DriftStatus::Detected, now)
            .await
            .unwrap();
        db::drift::open_findings(&t.db, "r1").await.unwrap()
    }

    #[tokio::test]
    async fn another_teams_drift_is_not_found() {
        let t = testkit::db().await;
        with_findings(&t).await;
        let who = testkit::outsider();
        let e = report_for(&t.db, &who, "r1").await.unwrap_err();
        assert!(matches!(e, DriftError::NotFound(id) if id == "r1"));
        let e = accept(&t.db, &who, "r1", None, Utc::now())
            .await
            .unwrap_err();
        assert!(matches!(e, DriftError::NotFound(_)), "{e}");
        let mine = report_for(&t.db, &testkit::member(), "r1").await.unwrap();
        assert_eq!((mine.status.as_str(), mine.findings.len()), ("detected", 2));
    }

    #[tokio::test]
    async fn a_missing_object_or_an_unknown_finding_cannot_be_accepted() {
        let t = testkit::db().await;
        let open = with_findings(&t).await;
        let who = testkit::member();
        let e = accept(&t.db, &who, "r1", None, Utc::now())
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("database.exists: a missing database or user cannot be accepted"),
            "{e}"
        );
        let e = accept(&t.db, &who, "r1", Some(&[open[0].id, 999]), Utc::now())
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "ids: finding 999 is not an open finding of resource r1"
        );
        assert_eq!(
            db::drift::open_findings(&t.db, "r1").await.unwrap().len(),
            2
        );
    }

    #[tokio::test]
    async fn an_accepted_value_becomes_expected_and_is_audited() {
        let t = testkit::db().await;
        let open = with_findings(&t).await;
        let who = testkit::member();
        let done = accept(&t.db, &who, "r1", Some(&[open[0].id]), Utc::now())
            .await
            .unwrap();
        assert_eq!(done.entity_name, "db-r1");
        // One finding is left open, so the resource still drifts.
        assert_eq!(done.report.status, "detected");
        assert_eq!(done.report.findings.len(), 1);
        assert_eq!(done.report.history[0].status, "accepted");
        assert_eq!(
            done.report.history[0].resolved_by.as_deref(),
            Some(who.subject.as_str())
        );
        let res = db::catalog::live(&t.db, "r1").await.unwrap().unwrap();
        assert_eq!(
            accepted(&res.desired)["database"]["connection_limit"],
            json!(50)
        );
        assert_eq!(
            testkit::audit_of(&t.db, "resource:r1").await,
            [(
                "drift.accepted".to_owned(),
                who.subject.clone(),
                "accepted".to_owned()
            )]
        );
    }
}
