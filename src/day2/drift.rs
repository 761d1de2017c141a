//! Drift: what changed behind paved's back. A check observes every part of a resource through
//! its driver and compares it with what paved provisioned; each difference is a finding
//! (part, field, expected, actual, detected at) that stays open until it disappears, is
//! reverted (the desired state re-applied through a normal update request) or accepted (the
//! actual value becomes the expected one).

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::provisioning::drivers::{Difference, DriverError, Drivers};
use crate::{
    audit,
    db::entities::{drift_finding, drift_state, resource},
    notifications::{self, Notification, Notifier, Severity, Topic},
    templates::RenderedSpec,
    vocab::{principal::Principal, status::ResourceStatus},
};

use crate::vocab::actor::DRIFT;

/// Fields whose actual value cannot become the desired one: something is missing.
const NOT_ACCEPTABLE: &[&str] = &["exists", "role"];

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
    #[error("resource {id} is {status}; only ready resources are checked")]
    NotReady { id: String, status: String },
    #[error("{0}")]
    NotAllowed(String),
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
        status: m.status,
        detected_at: m.detected_at,
        last_seen_at: m.last_seen_at,
        resolved_at: m.resolved_at,
        resolved_by: m.resolved_by,
        request_id: m.request_id,
    }
}

async fn open_findings(
    db: &DatabaseConnection,
    resource_id: &str,
) -> Result<Vec<drift_finding::Model>, DbErr> {
    drift_finding::Entity::find()
        .filter(drift_finding::Column::ResourceId.eq(resource_id))
        .filter(drift_finding::Column::Status.eq("open"))
        .order_by_asc(drift_finding::Column::Id)
        .all(db)
        .await
}

/// The stored drift of `resource_id`.
pub async fn report(db: &DatabaseConnection, resource_id: &str) -> Result<DriftReport, DbErr> {
    let state = drift_state::Entity::find_by_id(resource_id.to_owned())
        .one(db)
        .await?;
    let findings = open_findings(db, resource_id)
        .await?
        .into_iter()
        .map(to_api)
        .collect();
    let history = drift_finding::Entity::find()
        .filter(drift_finding::Column::ResourceId.eq(resource_id))
        .filter(drift_finding::Column::Status.ne("open"))
        .order_by_desc(drift_finding::Column::Id)
        .limit(50)
        .all(db)
        .await?
        .into_iter()
        .map(to_api)
        .collect();
    Ok(DriftReport {
        resource_id: resource_id.to_owned(),
        status: state
            .as_ref()
            .map(|s| s.status.clone())
            .unwrap_or_else(|| "unknown".into()),
        checked_at: state.map(|s| s.checked_at),
        findings,
        history,
    })
}

/// The drift status of many resources at once (for the catalog documents).
pub async fn statuses(
    db: &DatabaseConnection,
) -> Result<std::collections::BTreeMap<String, String>, DbErr> {
    Ok(drift_state::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|s| (s.resource_id, s.status))
        .collect())
}

/// The drift status of the given resources (those checked at least once), in chunks so a
/// catalog page of thousands stays within the databases' parameter limits.
pub async fn statuses_of(
    db: &DatabaseConnection,
    resource_ids: &[String],
) -> Result<std::collections::BTreeMap<String, String>, DbErr> {
    let mut out = std::collections::BTreeMap::new();
    for chunk in resource_ids.chunks(500) {
        for s in drift_state::Entity::find()
            .filter(drift_state::Column::ResourceId.is_in(chunk.iter().cloned()))
            .all(db)
            .await?
        {
            out.insert(s.resource_id, s.status);
        }
    }
    Ok(out)
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
}

/// Observes every part of `res` and records what differs from what paved provisioned.
/// `actor` is who asked (a user for on-demand checks, [`DRIFT`] for the schedule).
pub async fn check(
    db: &DatabaseConnection,
    drivers: &Drivers,
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
        let (seen, diffs) = drivers
            .drift(&parsed)
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

    let open = open_findings(db, &res.id).await?;
    let mut new_incidents = Vec::new();
    for (part, d) in &found {
        match open.iter().find(|f| &f.part == part && f.field == d.field) {
            Some(f) if f.actual.as_ref() == Some(&d.actual) => {
                drift_finding::Entity::update_many()
                    .col_expr(drift_finding::Column::LastSeenAt, Expr::value(now))
                    .filter(drift_finding::Column::Id.eq(f.id))
                    .exec(db)
                    .await?;
            }
            other => {
                if let Some(f) = other {
                    // Changed again: the old finding is superseded by a new one.
                    close(db, f.id, "superseded", actor, None, now).await?;
                }
                drift_finding::Entity::insert(drift_finding::ActiveModel {
                    id: sea_orm::ActiveValue::NotSet,
                    resource_id: Set(res.id.clone()),
                    part: Set(part.clone()),
                    field: Set(d.field.clone()),
                    expected: Set(Some(d.expected.clone())),
                    actual: Set(Some(d.actual.clone())),
                    status: Set("open".into()),
                    detected_at: Set(now),
                    last_seen_at: Set(now),
                    resolved_at: Set(None),
                    resolved_by: Set(None),
                    request_id: Set(None),
                })
                .exec(db)
                .await?;
                new_incidents.push(json!({"part": part, "field": d.field, "expected": d.expected, "actual": d.actual}));
            }
        }
    }
    for f in &open {
        if !found
            .iter()
            .any(|(p, d)| *p == f.part && d.field == f.field)
        {
            close(db, f.id, "resolved", actor, None, now).await?;
        }
    }
    let status = if found.is_empty() { "none" } else { "detected" };
    let status_changed = set_state(db, res, status, now).await?;
    if !new_incidents.is_empty() {
        audit::record(
            db,
            actor,
            "drift.detected",
            &format!("resource:{}", res.id),
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
                Notification {
                    topic: Topic::DriftDetected,
                    recipients: vec![res.owner.clone()],
                    title: format!("{} was changed outside paved", res.entity_name),
                    description: format!(
                        "paved found {} difference(s) between {} ({}) and what it provisioned: {}. Revert (POST {}/v1/resources/{}/drift/revert) re-applies paved's state; accept (…/drift/accept) keeps the change.",
                        found.len(),
                        res.entity_name,
                        res.environment,
                        list.join("; "),
                        notifier.plugin_base_path(),
                        res.id
                    ),
                    link: Some(notifications::resource_link(&res.entity_name)),
                    severity: Severity::High,
                    scope: Some(format!("paved:drift:{}", res.id)),
                },
            )
            .await;
    }
    Ok(Checked {
        report: report(db, &res.id).await?,
        status_changed,
        self_transactions: self_tx,
    })
}

async fn close(
    db: &DatabaseConnection,
    id: i64,
    status: &str,
    by: &str,
    request_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    drift_finding::Entity::update_many()
        .col_expr(drift_finding::Column::Status, Expr::value(status))
        .col_expr(drift_finding::Column::ResolvedAt, Expr::value(now))
        .col_expr(drift_finding::Column::ResolvedBy, Expr::value(by))
        .col_expr(
            drift_finding::Column::RequestId,
            Expr::value(request_id.map(str::to_owned)),
        )
        .filter(drift_finding::Column::Id.eq(id))
        .filter(drift_finding::Column::Status.eq("open"))
        .exec(db)
        .await?;
    Ok(())
}

/// Records the resource's drift status; when it changes, the resource counts as updated (the
/// catalog documents change: `paved.dev/drift`).
async fn set_state(
    db: &DatabaseConnection,
    res: &resource::Model,
    status: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let before = drift_state::Entity::find_by_id(res.id.clone())
        .one(db)
        .await?;
    let changed = before.as_ref().map(|s| s.status.as_str()) != Some(status);
    match before {
        Some(s) => {
            let mut a = s.into_active_model();
            a.status = Set(status.into());
            a.checked_at = Set(now);
            a.update(db).await?;
        }
        None => {
            drift_state::Entity::insert(drift_state::ActiveModel {
                resource_id: Set(res.id.clone()),
                status: Set(status.into()),
                checked_at: Set(now),
            })
            .on_conflict_do_nothing_on([drift_state::Column::ResourceId])
            .exec(db)
            .await?;
        }
    }
    if changed {
        resource::Entity::update_many()
            .col_expr(resource::Column::UpdatedAt, Expr::value(now))
            .filter(resource::Column::Id.eq(res.id.clone()))
            .exec(db)
            .await?;
    }
    Ok(changed)
}

/// Whether the caller may resolve drift on `res`: members of the owning team and admins.
fn may_resolve(who: &Principal, res: &resource::Model) -> Result<(), DriftError> {
    use crate::access::{Act, Target, authorize};
    authorize(who, Act::Change, Target::Resource { owner: &res.owner })
        .map_err(|d| DriftError::NotAllowed(d.to_string()))
}

/// Accepts open findings (all, or those in `ids`): their actual values become the expected
/// ones for later checks. A missing database, role or user cannot be accepted; revert it (or
/// delete the resource). An update or revert re-applies the offering's spec and clears
/// acceptances.
pub async fn accept(
    db: &DatabaseConnection,
    res: &resource::Model,
    ids: Option<&[i64]>,
    who: &Principal,
    now: DateTime<Utc>,
) -> Result<DriftReport, DriftError> {
    may_resolve(who, res)?;
    let open = open_findings(db, &res.id).await?;
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
    resource::Entity::update_many()
        .col_expr(resource::Column::Desired, Expr::value(desired))
        .col_expr(resource::Column::UpdatedAt, Expr::value(now))
        .filter(resource::Column::Id.eq(res.id.clone()))
        .exec(db)
        .await?;
    for f in &chosen {
        close(db, f.id, "accepted", &who.subject, None, now).await?;
    }
    let left = open.len() - chosen.len();
    set_state(db, res, if left == 0 { "none" } else { "detected" }, now).await?;
    let accepted: Vec<Value> = chosen
        .iter()
        .map(|f| json!({"part": f.part, "field": f.field, "actual": f.actual}))
        .collect();
    audit::record_by(
        db,
        who,
        "drift.accepted",
        &format!("resource:{}", res.id),
        "accepted",
        Some(json!({"findings": accepted})),
    )
    .await;
    Ok(report(db, &res.id).await?)
}

/// Marks the open findings reverted by update request `request_id` (started by the caller
/// through the normal update path, see [`crate::usecases::update`]).
pub async fn mark_reverted(
    db: &DatabaseConnection,
    res: &resource::Model,
    request_id: &str,
    who: &Principal,
    now: DateTime<Utc>,
) -> Result<usize, DbErr> {
    let open = open_findings(db, &res.id).await?;
    for f in &open {
        close(db, f.id, "reverted", &who.subject, Some(request_id), now).await?;
    }
    audit::record_by(
        db,
        who,
        "drift.reverted",
        &format!("resource:{}", res.id),
        "reverting",
        Some(json!({"requestId": request_id, "findings": open.len()})),
    )
    .await;
    Ok(open.len())
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
    drivers: &Drivers,
    notifier: &Notifier,
    now: DateTime<Utc>,
) -> Result<Scanned, DbErr> {
    let ready = resource::Entity::find()
        .filter(resource::Column::DeletedAt.is_null())
        .filter(resource::Column::Status.eq("ready"))
        .order_by_asc(resource::Column::Id)
        .all(db)
        .await?;
    let mut out = Scanned::default();
    for res in ready {
        match check(db, drivers, notifier, &res, DRIFT, now).await {
            Ok(c) => {
                out.checked += 1;
                if c.report.status == "detected" {
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
