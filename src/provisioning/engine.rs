//! The provisioning engine: workers take `provision` jobs from the queue and run the request
//! as recorded steps (validate, plan, create and configure each part, store credentials,
//! publish). A step that already succeeded is not run again after a crash; the ones that run
//! again converge, because drivers are idempotent.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use chrono::Utc;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, TransactionSession,
    TransactionTrait,
};
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use uuid::Uuid;

use super::drivers::{DriverError, PartSpec, Provisioner, generate_password};

mod failure;
mod provision;
mod step;
pub use step::Step;
#[cfg(test)]
mod tests;
use crate::{
    audit,
    config::EngineSettings,
    db::{
        self,
        entities::{request, resource},
    },
    templates::RenderedSpec,
    vocab::{
        actor,
        secret_box::{Sealed, SecretBox},
        status::{Operation, RequestStatus, ResourceStatus, StepStatus},
    },
};
pub use provision::Provision;

/// Why a run stopped.
#[derive(Debug)]
enum Stop {
    /// Retry later (connection trouble and the like).
    Transient(String),
    /// The request fails with this reason.
    Permanent(String),
    /// Cancelled between steps (None), or during a driver call that stopped (what it said).
    Cancelled(Option<String>),
    /// The process is stopping: the step in progress finished, the job goes back to the queue.
    HandOff,
}

impl From<DbErr> for Stop {
    fn from(e: DbErr) -> Self {
        Stop::Transient(format!("database: {e}"))
    }
}

impl From<DriverError> for Stop {
    fn from(e: DriverError) -> Self {
        match e {
            DriverError::Transient(m) => Stop::Transient(m),
            DriverError::Permanent(m) | DriverError::Conflict(m) => Stop::Permanent(m),
            DriverError::Cancelled(m) => Stop::Cancelled(Some(m)),
        }
    }
}

/// What a step that succeeded says, and what the catalog hears once it is committed.
struct StepDone {
    message: String,
    tell: Option<Told>,
    /// What a driver applied, to record on the resource.
    applied: Option<AppliedPart>,
}

impl From<String> for StepDone {
    fn from(message: String) -> Self {
        Self {
            message,
            tell: None,
            applied: None,
        }
    }
}

struct AppliedPart {
    part_id: String,
    outputs: Value,
    /// The part was renamed (an update): its new spec replaces the recorded one.
    replaced: bool,
    update: bool,
    /// Sensitive outputs (a Terraform module's), sealed with the part, for its credentials.
    secrets: Value,
}

/// A change of the catalog's, told after the commit that made it.
enum Told {
    Published {
        name: String,
        id: String,
    },
    Removed {
        name: String,
        id: String,
        parts: Vec<String>,
    },
}

/// One transaction of a run: it holds the request's row lock from its first statement (so a
/// cancel waits for it, and it sees a cancel committed before it), and writes its log lines
/// in one statement when it commits.
struct Segment {
    txn: DatabaseTransaction,
    request_id: String,
    /// The request's status when the transaction took the lock (as this run moved it since).
    status: Option<RequestStatus>,
    /// The owning team, which the step events are of.
    team: String,
    lines: Vec<db::request_logs::NewLine>,
    events: Vec<audit::Pending>,
    told: Vec<Told>,
    clock: crate::vocab::clock::Clock,
}

impl Segment {
    async fn open(
        db: &DatabaseConnection,
        request_id: &str,
        team: &str,
        clock: &crate::vocab::clock::Clock,
    ) -> Result<Self, DbErr> {
        let txn = db::begin_write(db).await?;
        let status = db::requests::status_locked(&txn, request_id).await?;
        Ok(Self {
            txn,
            request_id: request_id.to_owned(),
            status,
            team: team.to_owned(),
            lines: Vec::new(),
            events: Vec::new(),
            told: Vec::new(),
            clock: clock.clone(),
        })
    }

    /// An engine event on this request, recorded with the others at the commit.
    fn audit(&mut self, event_type: &str, outcome: &str, details: Option<Value>) {
        self.events.push(audit::Pending {
            event_type: event_type.to_owned(),
            target: audit::Target::request(self.request_id.as_str()),
            outcome: outcome.to_owned(),
            details,
            at: self.clock.now(),
        });
    }

    fn log(&mut self, step: Option<&str>, level: &'static str, message: String) {
        self.lines.push(db::request_logs::NewLine {
            step: step.map(str::to_owned),
            level,
            message,
            at: self.clock.now(),
        });
    }

    /// Commits; what the catalog is to hear of.
    async fn commit(self) -> Result<Vec<Told>, DbErr> {
        db::request_logs::add_all(&self.txn, &self.request_id, self.lines).await?;
        audit::record_all_of_team(&self.txn, actor::ENGINE, &self.team, self.events).await;
        self.txn.commit().await?;
        Ok(self.told)
    }
}

/// A step's attempt in progress: its start already written (a driver step), or to be written
/// with its end (a step run inside the transaction).
enum Attempt {
    Started(db::entities::request_step::Model),
    Running(db::entities::request_step::Model, chrono::DateTime<Utc>),
}

impl Attempt {
    async fn end<C: ConnectionTrait>(
        self,
        conn: &C,
        status: StepStatus,
        error: Option<String>,
        now: chrono::DateTime<Utc>,
    ) -> Result<(), DbErr> {
        match self {
            Attempt::Started(m) => db::steps::finish(conn, m, status, error, now).await?,
            Attempt::Running(m, at) => db::steps::ran(conn, m, at, status, error, now).await?,
        };
        Ok(())
    }
}

pub struct Engine {
    db: DatabaseConnection,
    /// The real drivers in the app; tests put a fake or a wrapper in their place.
    drivers: Arc<dyn Provisioner>,
    secrets: Arc<SecretBox>,
    settings: EngineSettings,
    wake: crate::jobs::Wake,
    /// Told about published and removed resources, when configured.
    catalog: Option<Arc<dyn super::catalog_sink::CatalogSink>>,
    /// Tells requesters and owners when a request fails.
    notifier: crate::notifications::Notifier,
    /// "Now" for what the engine records (step times, expiry, publish): the app's clock.
    clock: crate::vocab::clock::Clock,
}

impl Engine {
    pub fn new(
        db: DatabaseConnection,
        drivers: Arc<dyn Provisioner>,
        secrets: Arc<SecretBox>,
        settings: EngineSettings,
        wake: crate::jobs::Wake,
    ) -> Self {
        Self {
            db,
            drivers,
            secrets,
            settings,
            wake,
            catalog: None,
            notifier: crate::notifications::Notifier::disabled(),
            clock: crate::vocab::clock::Clock::system(),
        }
    }

    /// Read "now" from `clock` (the app's; tests pass a fixed one).
    pub fn with_clock(mut self, clock: crate::vocab::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Notify requester and owning team when a request fails.
    pub fn with_notifier(mut self, n: crate::notifications::Notifier) -> Self {
        self.notifier = n;
        self
    }

    /// Tell `sink` (Backstage's catalog) after each publish / unpublish.
    pub fn with_catalog(mut self, sink: Arc<dyn super::catalog_sink::CatalogSink>) -> Self {
        self.catalog = Some(sink);
        self
    }

    /// The runner settings this engine's workers use.
    pub fn runner_settings(&self) -> crate::jobs::RunnerSettings {
        (&self.settings).into()
    }

    /// Runs one worker taking only `provision` jobs until `stop` turns true (the app's
    /// runners take every job type; this is for tests that drive the engine alone).
    pub async fn work(self: Arc<Self>, name: String, stop: watch::Receiver<bool>) {
        let runner = crate::jobs::Runner::new(
            self.db.clone(),
            crate::jobs::Registry::new().register::<Provision>(self.clone()),
            self.runner_settings(),
            self.wake.clone(),
        );
        runner.work(name, stop).await
    }

    async fn log(&self, request_id: &str, step: Option<&str>, level: &'static str, message: &str) {
        if let Err(e) =
            db::request_logs::add(&self.db, request_id, step, level, message, self.clock.now())
                .await
        {
            tracing::warn!(error = %e, "could not record a request log line");
        }
    }

    /// A step's failure as the developer reads it (see [`failure`]).
    fn explain(&self, at: &failure::At<'_>, request_id: &str, cause: &str) -> String {
        if failure::is_explained(cause) {
            return cause.to_owned();
        }
        let logs = self
            .notifier
            .api_url(&format!("/v1/requests/{request_id}/logs"));
        failure::explain(at, cause, &logs)
    }

    async fn fail_request(&self, request_id: &str, reason: &str) {
        let now = self.clock.now();
        // The failure, the resource left in doubt, the notification and the audit event
        // commit together: nobody hears of a failure that did not happen, or misses one.
        let failed = async {
            let txn = self.db.begin().await?;
            // The step it stopped at is failed now, not `retrying` (or `running`, when the
            // runner gave up on a run that timed out or died); a reason from outside a step
            // (a timeout, a dying worker) is told as that step's failure.
            let steps = db::steps::of_request(&txn, request_id).await?;
            let total = steps.len();
            let mut reason = reason.to_owned();
            for step in steps {
                if !matches!(step.status, StepStatus::Retrying | StepStatus::Running) {
                    continue;
                }
                let at = failure::At {
                    position: usize::try_from(step.position).unwrap_or_default() + 1,
                    total,
                    step: &step.name,
                };
                reason = self.explain(&at, request_id, &reason);
                let error = step.error.clone().unwrap_or_else(|| reason.clone());
                db::steps::gave_up(&txn, step, error, now).await?;
            }
            let req = db::requests::by_id(&txn, request_id).await?;
            if let Some(req) = &req
                && req.operation == Operation::Create
                && let Some(res) = &req.resource_id
            {
                // The failed resource holds the name until it is deleted.
                reason = failure::then(
                    &reason,
                    &format!(
                        "To try again once fixed: delete resource {res} (`paved resource delete {res}`) and order it again"
                    ),
                );
            }
            let told = reason.clone();
            let reason = reason.as_str();
            db::requests::fail(&txn, request_id, reason, now).await?;
            if let Some(req) = &req
                // A failed update leaves a working resource; only a failed create or delete
                // leaves one in doubt.
                && req.operation != Operation::Update
                && let Some(res) = &req.resource_id
            {
                db::resources::set_status(&txn, res, ResourceStatus::Failed, now).await?;
            }
            if let Some(req) = &req {
                self.notify_failed(&txn, req, reason).await;
            }
            audit::record(
                &txn,
                actor::ENGINE,
                "request.failed",
                audit::Target::request(request_id),
                RequestStatus::Failed.as_str(),
                Some(json!({"reason": reason})),
            )
            .await;
            txn.commit().await?;
            Ok::<_, DbErr>((req, told))
        };
        let told = match failed.await {
            Ok((req, told)) => {
                self.notifier.wake();
                if let Some(req) = &req {
                    finished(req, RequestStatus::Failed, now);
                }
                told
            }
            Err(e) => {
                tracing::error!(request_id, error = %e, "could not mark the request failed");
                reason.to_owned()
            }
        };
        self.log(request_id, None, "error", &told).await;
    }

    async fn notify_failed<C: ConnectionTrait + TransactionTrait>(
        &self,
        conn: &C,
        req: &request::Model,
        reason: &str,
    ) {
        use crate::notifications::{Notification, Severity, Topic};
        let mut recipients = vec![req.owner.clone()];
        // A person (not paved itself, a plugin or the anonymous caller) hears it directly.
        if req.requester.starts_with("user:") {
            recipients.push(req.requester.clone());
        }
        let what = spec_name(req).unwrap_or_else(|| req.offering.clone());
        self.notifier
            .send(
                conn,
                Notification {
                    topic: Topic::RequestFailed,
                    recipients,
                    title: format!("{} of {what} failed", capitalized(req.operation.as_str())),
                    description: format!(
                        "paved could not {} {what} ({}): {reason}. Request {}.",
                        req.operation, req.offering, req.id
                    ),
                    link: Some(self.notifier.request_link(&req.id)),
                    severity: Severity::High,
                    scope: Some(format!("paved:request:{}", req.id)),
                },
            )
            .await;
    }

    /// The steps of a request, from its offering's parts. The bookkeeping of a run is a few
    /// transactions, not one per write: steps that only touch paved's database (validate,
    /// plan, store credentials, publish) run inside the transaction that records them, which
    /// commits before each driver call (so that call's start is durable and shown) and at the
    /// end, together with the request's success.
    async fn provision(
        &self,
        request_id: &str,
        lease_lost: &AtomicBool,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), Stop> {
        let Some(mut req) = db::requests::by_id(&self.db, request_id).await? else {
            return Err(Stop::Permanent(format!(
                "request {request_id} does not exist"
            )));
        };
        match req.status {
            RequestStatus::Pending | RequestStatus::Running => {}
            // Cancelled, finished, or waiting for a human: nothing to do.
            _ => return Ok(()),
        }
        let spec: RenderedSpec = serde_json::from_value(req.spec.clone().unwrap_or(Value::Null))
            .map_err(|e| Stop::Permanent(format!("stored spec is unreadable: {e}")))?;

        let names = Step::plan(req.operation, &spec);
        let mut steps = db::steps::of_request(&self.db, request_id).await?;
        let mut seg = Segment::open(&self.db, request_id, &req.owner, &self.clock).await?;
        if seg.status == Some(RequestStatus::Pending) {
            db::requests::start(&seg.txn, request_id, self.clock.now()).await?;
            seg.status = Some(RequestStatus::Running);
        }
        if steps.len() < names.len() {
            let missing: Vec<(i32, String)> = names
                .iter()
                .enumerate()
                .skip(steps.len())
                .map(|(i, s)| (i as i32, s.to_string()))
                .collect();
            db::steps::add_all(&seg.txn, request_id, &missing).await?;
            steps = db::steps::of_request(&seg.txn, request_id).await?;
        }

        // Parsed by each driver once; every step below reads them.
        let mut parts: Vec<(String, PartSpec)> = Vec::new();
        for step in steps {
            if step.status == StepStatus::Succeeded {
                if Step::parse(&step.name) == Some(Step::Validate) {
                    parts = self.parse_parts(&spec)?;
                }
                continue;
            }
            if lease_lost.load(Ordering::Acquire) {
                // Rolled back: the job's new owner runs this stretch again.
                return Err(Stop::Transient("lease lost".into()));
            }
            // A stopping replica starts no step: another one continues from here at once,
            // instead of after this one's lease runs out.
            if *stop.borrow() {
                self.commit(seg).await?;
                return Err(Stop::HandOff);
            }
            match seg.status {
                Some(RequestStatus::Running) => {}
                Some(RequestStatus::Cancelled) => {
                    seg.log(
                        Some(&step.name),
                        "info",
                        "cancelled before this step".into(),
                    );
                    self.commit(seg).await?;
                    return Err(Stop::Cancelled(None));
                }
                // Settled by another run (its lease outlived ours): nothing left to do.
                Some(_) => return Ok(()),
                None => return Err(Stop::Permanent("request vanished".into())),
            }
            let name = step.name.clone();
            let position = usize::try_from(step.position).unwrap_or_default() + 1;
            let kind = Step::parse(&name);
            let calls_a_driver = kind.as_ref().is_some_and(Step::calls_a_driver);
            let started_at = self.clock.now();
            // A driver step's start is written (and committed) before the call; a step run
            // inside this transaction is written once, when it ends.
            let started = if calls_a_driver {
                Attempt::Started(db::steps::start(&seg.txn, step, started_at).await?)
            } else {
                Attempt::Running(step, started_at)
            };
            seg.log(Some(&name), "info", format!("{name}: started"));
            let result = if calls_a_driver {
                if let (Some(Step::Create(part) | Step::Update(part)), Some(res)) =
                    (&kind, &req.resource_id)
                {
                    // Generated and sealed in this transaction, before the driver uses it:
                    // a rerun applies the same password.
                    self.password(&seg.txn, res, part).await?;
                }
                // Durable before the driver acts: a crash during the call is seen as one.
                self.commit(seg).await?;
                let resource = req.resource_id.clone();
                // The step's driver call knows its step (a driver may log into it).
                let mut r = super::drivers::context::in_step(
                    &name,
                    resource.as_deref(),
                    self.run_step(&self.db, kind, &mut req, &spec, &mut parts),
                )
                .await;
                seg = Segment::open(&self.db, request_id, &req.owner, &self.clock).await?;
                if let (Ok(done), Some(res)) = (&mut r, &req.resource_id)
                    && let Some(applied) = done.applied.take()
                    && let Err(e) = self
                        .record_applied(&seg.txn, res, &spec, &parts, applied)
                        .await
                {
                    r = Err(e);
                }
                r
            } else {
                self.run_step(&seg.txn, kind, &mut req, &spec, &mut parts)
                    .await
            };
            match result {
                Ok(done) => {
                    started
                        .end(&seg.txn, StepStatus::Succeeded, None, self.clock.now())
                        .await?;
                    seg.log(Some(&name), "info", format!("{name}: {}", done.message));
                    seg.told.extend(done.tell);
                    seg.audit("step.succeeded", &name, None);
                }
                Err(e) => {
                    let at = failure::At {
                        position,
                        total: names.len(),
                        step: &name,
                    };
                    let e = match e {
                        Stop::Transient(m) => Stop::Transient(self.explain(&at, request_id, &m)),
                        Stop::Permanent(m) => Stop::Permanent(self.explain(&at, request_id, &m)),
                        other => other,
                    };
                    let (status, text) = match &e {
                        Stop::Transient(m) => (StepStatus::Retrying, m.clone()),
                        Stop::Permanent(m) => (StepStatus::Failed, m.clone()),
                        Stop::Cancelled(m) => (
                            StepStatus::Cancelled,
                            m.clone().unwrap_or_else(|| "cancelled".into()),
                        ),
                        _ => (StepStatus::Failed, "stopped".into()),
                    };
                    let recorded = async {
                        started
                            .end(&seg.txn, status, Some(text.clone()), self.clock.now())
                            .await?;
                        let level = match status {
                            StepStatus::Failed => "error",
                            StepStatus::Cancelled => "info",
                            _ => "warn",
                        };
                        seg.log(Some(&name), level, text.clone());
                        seg.audit(
                            &format!("step.{status}"),
                            status.as_str(),
                            Some(json!({"step": name, "error": text})),
                        );
                        self.commit(seg).await
                    };
                    // The step's own error is the one to report; a database error while
                    // recording it (its transaction broken by the failure) is only logged.
                    if let Err(db_err) = recorded.await {
                        tracing::warn!(request_id, error = %db_err, "could not record a failed step");
                    }
                    return Err(e);
                }
            }
        }
        // Only once every step is recorded as succeeded, in the same transaction: a reader
        // never sees a succeeded request with a step still running.
        self.complete(seg, &req).await?;
        Ok(())
    }

    /// Commits a stretch of the run, then tells the catalog what it published or removed
    /// (never before: Backstage would read the resource as it was).
    async fn commit(&self, seg: Segment) -> Result<(), DbErr> {
        let told = seg.commit().await?;
        let Some(c) = &self.catalog else {
            return Ok(());
        };
        for t in told {
            match t {
                Told::Published { name, id } => c.published(&name, &id),
                Told::Removed { name, id, parts } => {
                    let part_ids: Vec<&str> = parts.iter().map(String::as_str).collect();
                    c.removed(&name, &id, &part_ids);
                }
            }
        }
        Ok(())
    }

    fn parse_parts(&self, spec: &RenderedSpec) -> Result<Vec<(String, PartSpec)>, Stop> {
        spec.parts
            .iter()
            .map(|p| {
                self.drivers
                    .parse(&p.driver, &p.spec)
                    .map(|s| (p.id.clone(), s))
                    .map_err(|e| Stop::Permanent(format!("part {}: {e}", p.id)))
            })
            .collect()
    }

    /// Runs one step on `conn`: the run's open transaction for steps that only touch paved's
    /// database, the pool for driver steps (never a transaction held across a driver call).
    /// `req` is the request as the run knows it (planning links its resource).
    async fn run_step<C: ConnectionTrait + TransactionTrait>(
        &self,
        conn: &C,
        step: Option<Step>,
        req: &mut request::Model,
        spec: &RenderedSpec,
        parts: &mut Vec<(String, PartSpec)>,
    ) -> Result<StepDone, Stop> {
        let step = step.ok_or_else(|| Stop::Permanent("unknown step".into()))?;
        if parts.is_empty() && step != Step::Validate {
            *parts = self.parse_parts(spec)?;
        }
        let request_id = req.id.clone();
        let request_id = request_id.as_str();
        match step {
            Step::Validate => {
                *parts = self.parse_parts(spec)?;
                Ok(format!("{} part(s) valid", parts.len()).into())
            }
            Step::Plan => {
                let id = self.ensure_resource(conn, req, spec).await?;
                req.resource_id = Some(id.clone());
                Ok(format!(
                    "resource {} ({}) planned: {}",
                    spec.resource.name,
                    id,
                    spec.parts
                        .iter()
                        .map(|p| format!("{} via {}", p.id, p.driver))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
                .into())
            }
            Step::StoreCredentials => {
                let res_id = req
                    .resource_id
                    .clone()
                    .ok_or_else(|| Stop::Permanent("no resource planned".into()))?;
                self.seal_credentials(conn, &res_id, parts).await?;
                Ok(format!("credentials sealed (key {})", self.secrets.key_id()).into())
            }
            Step::Unpublish => {
                let res_id = req
                    .resource_id
                    .clone()
                    .ok_or_else(|| Stop::Permanent("no resource to delete".into()))?;
                db::secrets::delete_of_resource(conn, &res_id).await?;
                // Frees the name for a new order; the API still shows the original one.
                db::resources::mark_deleted(conn, &res_id, self.clock.now()).await?;
                audit::record_of_team(
                    conn,
                    actor::ENGINE,
                    "resource.deleted",
                    audit::Target::resource(res_id.as_str()),
                    &req.owner,
                    ResourceStatus::Deleted.as_str(),
                    Some(json!({"requestId": request_id})),
                )
                .await;
                Ok(StepDone {
                    applied: None,
                    message: "resource deleted; credentials destroyed".into(),
                    tell: Some(Told::Removed {
                        name: spec.resource.name.clone(),
                        id: res_id,
                        parts: spec.parts.iter().map(|p| p.id.clone()).collect(),
                    }),
                })
            }
            Step::Publish => {
                let res_id = req
                    .resource_id
                    .clone()
                    .ok_or_else(|| Stop::Permanent("no resource planned".into()))?;
                let now = self.clock.now();
                let monthly = req.estimate.as_ref().map(|e| e.monthly);
                let res = db::resources::by_id(conn, &res_id)
                    .await?
                    .ok_or_else(|| Stop::Permanent("resource vanished".into()))?;
                let published = db::resources::Published {
                    monthly_cost_cents: monthly.map(|m| (m * 100.0).round() as i64),
                    // An update keeps the expiry it has; extending a TTL is its own operation.
                    expires_at: (req.operation == Operation::Create).then(|| {
                        spec.resource
                            .ttl_hours
                            .map(|h| now + chrono::Duration::hours(i64::from(h)))
                    }),
                    desired: serde_json::to_value(spec).unwrap_or(Value::Null),
                    offering_version: req.template_version.clone(),
                };
                db::resources::publish(conn, res, published, now).await?;
                let event = if req.operation == Operation::Create {
                    "resource.created"
                } else {
                    "resource.updated"
                };
                audit::record_of_team(
                    conn,
                    actor::ENGINE,
                    event,
                    audit::Target::resource(res_id.as_str()),
                    &req.owner,
                    ResourceStatus::Ready.as_str(),
                    Some(json!({"requestId": request_id, "name": spec.resource.name})),
                )
                .await;
                Ok(StepDone {
                    applied: None,
                    message: "resource ready".into(),
                    tell: Some(Told::Published {
                        name: spec.resource.name.clone(),
                        id: res_id,
                    }),
                })
            }
            Step::Create(ref part_id)
            | Step::Update(ref part_id)
            | Step::Configure(ref part_id)
            | Step::Destroy(ref part_id) => {
                let part_id = part_id.as_str();
                let part = parts
                    .iter()
                    .find(|(id, _)| id == part_id)
                    .map(|(_, p)| p.clone())
                    .ok_or_else(|| Stop::Permanent(format!("unknown part {part_id:?}")))?;
                let res_id = req
                    .resource_id
                    .clone()
                    .ok_or_else(|| Stop::Permanent("no resource planned".into()))?;
                match step {
                    // An update converges the existing part with the same password.
                    Step::Create(_) | Step::Update(_) => {
                        let tag = owner_tag(&res_id);
                        // What this part is on the target now (an update may rename it: a
                        // preview's key prefix follows the whole branch name).
                        let before = match step {
                            Step::Update(_) => {
                                self.provisioned_part(conn, &res_id, part_id).await?
                            }
                            _ => None,
                        };
                        let replaced = before.filter(|old| !old.same_identity(&part));
                        if let Some(old) = &replaced
                            && !old.renamable()
                        {
                            return Err(Stop::Permanent(format!(
                                "{part_id}: an update cannot rename it ({} to {}); its data would be lost. Order a new resource instead",
                                old.identity(),
                                part.identity()
                            )));
                        }
                        let password = self.password(conn, &res_id, part_id).await?;
                        let applied = self.drivers.apply(&part, &password, &tag).await?;
                        if let Some(old) = &replaced {
                            // The old user's credentials die with the rename, not with the
                            // resource: nobody keeps a login paved no longer hands out.
                            self.drivers.destroy(old, &tag).await?;
                        }
                        let message = match &replaced {
                            Some(old) => format!(
                                "{part_id} applied; {} replaced by {} and removed",
                                old.identity(),
                                part.identity()
                            ),
                            None => format!("{part_id} applied"),
                        };
                        // Recorded by the transaction that records the step's end.
                        Ok(StepDone {
                            message,
                            tell: None,
                            applied: Some(AppliedPart {
                                part_id: part_id.to_owned(),
                                outputs: applied.outputs,
                                replaced: replaced.is_some(),
                                update: matches!(step, Step::Update(_)),
                                secrets: beyond_password(applied.secrets, &password),
                            }),
                        })
                    }
                    Step::Destroy(_) => {
                        self.drivers.destroy(&part, &owner_tag(&res_id)).await?;
                        Ok(format!("{part_id} destroyed").into())
                    }
                    // Configure: the outer arm admits only part steps.
                    _ => {
                        let seen = self.drivers.observe(&part).await?;
                        if !seen.exists {
                            return Err(Stop::Transient(format!("{part_id} is not visible yet")));
                        }
                        Ok(format!("{part_id} verified: {}", seen.state).into())
                    }
                }
            }
        }
    }

    /// Records what a driver step applied on its resource (in the transaction that records
    /// the step's end): the part's outputs and, when it was renamed, its new spec.
    async fn record_applied<C: ConnectionTrait>(
        &self,
        conn: &C,
        res_id: &str,
        spec: &RenderedSpec,
        parts: &[(String, PartSpec)],
        a: AppliedPart,
    ) -> Result<(), Stop> {
        let part_id = a.part_id.as_str();
        let res = db::resources::by_id(conn, res_id)
            .await?
            .ok_or_else(|| Stop::Permanent("resource vanished".into()))?;
        let mut outputs = res.outputs.as_object().cloned().unwrap_or_default();
        outputs.insert(part_id.to_owned(), a.outputs);
        let mut desired = res.desired.clone();
        if a.replaced {
            // Recorded with the step: a delete (or a failure after this step) must find what
            // exists now, not what the request started from.
            if let (Some(list), Some(new)) = (
                desired.get_mut("parts").and_then(Value::as_array_mut),
                spec.parts.iter().find(|p| p.id == part_id),
            ) {
                for p in list.iter_mut() {
                    if p["id"] == part_id {
                        p["spec"] = new.spec.clone();
                    }
                }
            }
        }
        if a.secrets.as_object().is_some_and(|s| !s.is_empty()) {
            let name = format!("{part_id}.{SENSITIVE_OUTPUTS}");
            let plaintext =
                serde_json::to_vec(&a.secrets).map_err(|e| Stop::Permanent(e.to_string()))?;
            let sealed = self.secrets.seal(&plaintext, &format!("{res_id}/{name}"));
            self.store_secret(conn, res_id, &name, &sealed).await?;
        }
        let had_credentials = a.update
            && db::secrets::sealed(conn, res_id, CREDENTIALS)
                .await?
                .is_some();
        db::resources::record_parts(conn, res, Value::Object(outputs), desired, self.clock.now())
            .await?;
        if had_credentials {
            // The credentials endpoint hands out what exists, never a login of before the
            // update.
            self.seal_credentials(conn, res_id, parts).await?;
        }
        Ok(())
    }

    /// Seals the credentials document of every part (outputs + password + URL).
    async fn seal_credentials<C: ConnectionTrait>(
        &self,
        conn: &C,
        res_id: &str,
        parts: &[(String, PartSpec)],
    ) -> Result<(), Stop> {
        let res = db::resources::by_id(conn, res_id)
            .await?
            .ok_or_else(|| Stop::Permanent("resource vanished".into()))?;
        let mut doc = Map::new();
        for (id, _) in parts.iter() {
            let password = self.password(conn, res_id, id).await?;
            let mut cred = res.outputs.get(id).cloned().unwrap_or(json!({}));
            cred["password"] = json!(password);
            // A module's sensitive outputs belong with its credentials (and win over paved's
            // password, which the module was given and may have passed on as it is).
            let name = format!("{id}.{SENSITIVE_OUTPUTS}");
            if let Some(sealed) = db::secrets::sealed(conn, res_id, &name).await? {
                let bytes = self
                    .secrets
                    .open(&sealed, &format!("{res_id}/{name}"))
                    .map_err(Stop::Permanent)?;
                let more: Map<String, Value> =
                    serde_json::from_slice(&bytes).map_err(|e| Stop::Permanent(e.to_string()))?;
                for (k, v) in more {
                    cred[k] = v;
                }
            }
            if let (Some(h), Some(p), Some(u)) = (
                cred.get("host").and_then(Value::as_str),
                cred.get("port"),
                cred.get("username").and_then(Value::as_str),
            ) {
                let url = match cred.get("database").and_then(Value::as_str) {
                    Some(db) => format!("postgres://{u}:{password}@{h}:{p}/{db}"),
                    None => format!("redis://{u}:{password}@{h}:{p}"),
                };
                cred["url"] = json!(url);
            }
            doc.insert(id.clone(), cred);
        }
        let plaintext =
            serde_json::to_vec(&Value::Object(doc)).map_err(|e| Stop::Permanent(e.to_string()))?;
        self.store_secret(
            conn,
            res_id,
            CREDENTIALS,
            &self
                .secrets
                .seal(&plaintext, &format!("{res_id}/{CREDENTIALS}")),
        )
        .await
    }

    /// The part as the resource records it provisioned (its desired state), if it has one.
    async fn provisioned_part<C: ConnectionTrait>(
        &self,
        conn: &C,
        res_id: &str,
        part_id: &str,
    ) -> Result<Option<PartSpec>, Stop> {
        let Some(res) = db::resources::by_id(conn, res_id).await? else {
            return Ok(None);
        };
        let Ok(desired) = serde_json::from_value::<RenderedSpec>(res.desired) else {
            return Ok(None);
        };
        Ok(desired
            .parts
            .iter()
            .find(|p| p.id == part_id)
            .and_then(|p| self.drivers.parse(&p.driver, &p.spec).ok()))
    }

    /// A request that failed (or was cancelled) leaves on the targets exactly what its
    /// resource is. A create's parts are destroyed (only what carries this resource's tag, so
    /// a colliding foreign database or user stays untouched) with its sealed passwords; the
    /// resource row stays, failed, and can be deleted. An update's renamed parts that were
    /// applied but never recorded as the resource's are destroyed: the resource keeps the
    /// parts (and credentials) it had.
    async fn clean_up_after(&self, request_id: &str) {
        let Ok(Some(req)) = db::requests::by_id(&self.db, request_id).await else {
            return;
        };
        let Some(res_id) = req.resource_id.clone() else {
            return;
        };
        let Ok(spec) =
            serde_json::from_value::<RenderedSpec>(req.spec.clone().unwrap_or(Value::Null))
        else {
            return;
        };
        let tag = owner_tag(&res_id);
        let mut doomed = Vec::new();
        for p in spec.parts.iter().rev() {
            let Ok(part) = self.drivers.parse(&p.driver, &p.spec) else {
                continue;
            };
            match req.operation {
                Operation::Create => doomed.push((p.id.clone(), part)),
                Operation::Update => {
                    let recorded = self
                        .provisioned_part(&self.db, &res_id, &p.id)
                        .await
                        .ok()
                        .flatten();
                    if recorded.is_some_and(|r| !r.same_identity(&part)) {
                        doomed.push((p.id.clone(), part));
                    }
                }
                Operation::Delete => {}
            }
        }
        if doomed.is_empty() {
            return;
        }
        let mut clean = true;
        for (id, part) in &doomed {
            if let Err(e) = self.drivers.destroy(part, &tag).await {
                clean = false;
                self.log(
                    request_id,
                    None,
                    "warn",
                    &format!("could not remove part {id} after the failure: {e}"),
                )
                .await;
            }
        }
        if clean && req.operation == Operation::Create {
            let _ = db::secrets::delete_of_resource(&self.db, &res_id).await;
        }
        if clean {
            self.log(
                request_id,
                None,
                "info",
                "removed what this request had provisioned and its resource does not record",
            )
            .await;
        }
    }

    /// Marks the request succeeded (unless it was cancelled meanwhile), in the run's last
    /// transaction: its last steps, the success and its notification commit together.
    async fn complete(&self, seg: Segment, req: &request::Model) -> Result<(), DbErr> {
        let now = self.clock.now();
        let done = db::requests::succeed(&seg.txn, &req.id, now).await?;
        if done {
            self.notify_succeeded(&seg.txn, req).await;
        }
        self.commit(seg).await?;
        if done {
            self.notifier.wake();
            finished(req, RequestStatus::Succeeded, now);
        }
        Ok(())
    }

    /// The requester and the owning team hear that it is done: a task that stopped waiting
    /// (an approval outlasted it) told them they would.
    async fn notify_succeeded<C: ConnectionTrait + TransactionTrait>(
        &self,
        conn: &C,
        req: &request::Model,
    ) {
        use crate::notifications::{Notification, Severity, Topic};
        let mut recipients = vec![req.owner.clone()];
        if req.requester.starts_with("user:") {
            recipients.push(req.requester.clone());
        }
        let what = spec_name(req).unwrap_or_else(|| req.offering.clone());
        // A live resource's page in Backstage (relative links resolve against the app); a
        // deletion leaves none, so the request.
        let link = match (req.operation, spec_name(req)) {
            (Operation::Delete, _) | (_, None) => self.notifier.request_link(&req.id),
            (_, Some(n)) => self.notifier.entity_link(&n),
        };
        self.notifier
            .send(
                conn,
                Notification {
                    topic: Topic::RequestSucceeded,
                    recipients,
                    title: format!("{} of {what} done", capitalized(req.operation.as_str())),
                    description: format!(
                        "paved finished the {} of {what} ({}). Request {}.",
                        req.operation, req.offering, req.id
                    ),
                    link: Some(link),
                    severity: Severity::Normal,
                    scope: Some(format!("paved:request:{}", req.id)),
                },
            )
            .await;
    }

    /// Creates the resource row once per request (a rerun finds it through the request).
    async fn ensure_resource<C: ConnectionTrait + TransactionTrait>(
        &self,
        conn: &C,
        req: &request::Model,
        spec: &RenderedSpec,
    ) -> Result<String, Stop> {
        if let Some(id) = &req.resource_id {
            return Ok(id.clone());
        }
        // A run that died between inserting the resource and linking it finds it here.
        if let Some(existing) = db::resources::by_request(conn, &req.id).await? {
            db::requests::link_resource(conn, &req.id, &existing.id).await?;
            return Ok(existing.id);
        }
        let now = self.clock.now();
        let id = Uuid::now_v7().to_string();
        let r = &spec.resource;
        let row = resource::Model {
            id: id.clone(),
            entity_name: r.name.clone(),
            offering: req.offering.clone(),
            offering_version: req.template_version.clone(),
            resource_type: r.resource_type.clone(),
            environment: r.environment.clone(),
            owner: r.owner.clone(),
            system: r.system.clone(),
            component: r.component.clone(),
            status: ResourceStatus::Provisioning,
            desired: serde_json::to_value(spec).unwrap_or(Value::Null),
            outputs: json!({}),
            monthly_cost_cents: None,
            expires_at: None,
            request_id: req.id.clone(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
            catalog_bucket: crate::vocab::bucket::bucket_of(&id),
        };
        // A savepoint: a taken name fails this insert without breaking the run's transaction
        // (PostgreSQL aborts a transaction at its first failed statement).
        let attempt = conn.begin().await?;
        match db::resources::insert(&attempt, row).await {
            Ok(_) => attempt.commit().await?,
            Err(e) if db::is_unique_violation(&e) => {
                attempt.rollback().await?;
                return Err(Stop::Permanent(self.name_taken(&r.name, &r.owner).await));
            }
            Err(e) => return Err(e.into()),
        }
        db::requests::link_resource(conn, &req.id, &id).await?;
        Ok(id)
    }

    /// Why a name is taken and, for the team's own resource, how to free it. Another team's
    /// resource is not named (the requester may not see it).
    async fn name_taken(&self, name: &str, owner: &str) -> String {
        let existing = db::resources::live_by_name(&self.db, name)
            .await
            .ok()
            .flatten();
        match existing {
            Some(e) if e.owner == owner => {
                let how = format!(
                    "delete it to free the name (`paved resource delete {id}` or DELETE {base}/v1/resources/{id})",
                    id = e.id,
                    base = self.notifier.plugin_base_path()
                );
                if e.status == ResourceStatus::Failed {
                    format!(
                        "a resource named {name} already exists: resource {} of {owner}, whose create failed; {how} (deleting it touches nothing that is not paved's)",
                        e.id
                    )
                } else {
                    format!(
                        "a resource named {name} already exists: resource {} of {owner} ({}); choose another name or {how}",
                        e.id, e.status
                    )
                }
            }
            _ => format!(
                "a resource named {name} already exists (another team's); choose another name"
            ),
        }
    }

    /// The part's password: generated and sealed once, so a rerun applies the same one.
    async fn password<C: ConnectionTrait>(
        &self,
        conn: &C,
        resource_id: &str,
        part: &str,
    ) -> Result<String, Stop> {
        let name = format!("{part}.password");
        let context = format!("{resource_id}/{name}");
        if let Some(sealed) = db::secrets::sealed(conn, resource_id, &name).await? {
            let bytes = self
                .secrets
                .open(&sealed, &context)
                .map_err(Stop::Permanent)?;
            return String::from_utf8(bytes).map_err(|e| Stop::Permanent(e.to_string()));
        }
        let password = generate_password();
        self.store_secret(
            conn,
            resource_id,
            &name,
            &self.secrets.seal(password.as_bytes(), &context),
        )
        .await?;
        Ok(password)
    }

    async fn store_secret<C: ConnectionTrait>(
        &self,
        conn: &C,
        resource_id: &str,
        name: &str,
        sealed: &Sealed,
    ) -> Result<(), Stop> {
        db::secrets::replace(conn, resource_id, name, sealed, self.clock.now()).await?;
        Ok(())
    }
}

/// Reads a resource's sealed credentials document.
pub async fn credentials(
    db: &DatabaseConnection,
    secrets: &SecretBox,
    resource_id: &str,
) -> Result<Option<Value>, String> {
    let sealed = db::secrets::sealed(db, resource_id, CREDENTIALS)
        .await
        .map_err(|e| e.to_string())?;
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let bytes = secrets.open(&sealed, &format!("{resource_id}/{CREDENTIALS}"))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Counted where it happens, by the replica whose worker finished it: summed over replicas,
/// the figures are right (a database-wide gauge on each replica would count it once each).
fn finished(req: &request::Model, outcome: RequestStatus, at: chrono::DateTime<Utc>) {
    let labels = [
        ("operation", req.operation.as_str().to_owned()),
        ("outcome", outcome.as_str().to_owned()),
    ];
    metrics::counter!("paved_requests_finished_total", &labels).increment(1);
    let took = (at - req.created_at).num_milliseconds().max(0) as f64 / 1000.0;
    metrics::histogram!("paved_request_time_to_finish_seconds", &labels).record(took);
}

/// Aborts the heartbeat however the run ends (a panic included), so a dead run stops renewing
/// its lease.
/// The resource name a request's spec renders, if it has one.
fn spec_name(req: &request::Model) -> Option<String> {
    req.spec
        .as_ref()?
        .pointer("/resource/name")?
        .as_str()
        .map(str::to_owned)
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The name of a resource's sealed credentials document.
const CREDENTIALS: &str = "credentials";

/// What a driver's secrets add to the part's password (sealed on its own already): a
/// module's sensitive outputs, not the password it was given and passed on.
fn beyond_password(secrets: Value, password: &str) -> Value {
    match secrets {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| v.as_str() != Some(password))
                .collect(),
        ),
        _ => json!({}),
    }
}

/// `<part>.sensitive-outputs`: a part's sensitive outputs, sealed.
const SENSITIVE_OUTPUTS: &str = "sensitive-outputs";

/// What marks a database, role or Redis user as belonging to resource `id`.
pub fn owner_tag(resource_id: &str) -> String {
    format!("paved:resource:{resource_id}")
}
