//! One durable job system (after crates.io's `crates_io_worker`): a job type implements
//! [`BackgroundJob`], the app registers every type in one [`Registry`], and a [`Runner`]
//! claims due jobs from the `jobs` table with a lease, heartbeats it, retries with exponential
//! backoff and wakes on `NOTIFY` (polling as the fallback). This module knows no job type; the
//! SQL is in `db::jobs`.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use tokio::sync::watch;

pub mod runner;
pub mod storage;
pub mod wake;

pub use runner::{Outcome, Runner, RunnerSettings};
pub use storage::{Depth, WAKE_CHANNEL, depth, depth_by_kind, enqueue, listen_for_jobs};
pub use wake::Wake;

/// Why a run did not succeed; the runner settles the job from it.
#[derive(Debug, Clone, PartialEq)]
pub enum JobError {
    /// Worth another attempt later (connection trouble and the like), while attempts remain.
    Retry(String),
    /// Running it again cannot help: the job fails now.
    Permanent(String),
    /// The runner is stopping and the job stopped between two steps: back to the queue, due
    /// now, the attempt not counted.
    HandBack,
    /// Test hook: the runner "dies" here, leaving the job for its lease to expire.
    Abandon,
}

/// What a running job may ask of the runner.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub id: String,
    /// The row the job is about (the `request_id` column), when it has one.
    pub key: Option<String>,
    /// 1 on the first run.
    pub attempt: i32,
    pub max_attempts: i32,
    lost: Arc<AtomicBool>,
    stop: watch::Receiver<bool>,
}

impl JobContext {
    /// True once another runner may own this job: stop before the next step.
    pub fn lease_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// True once this process is stopping: finish the step in progress, then hand back.
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    pub fn lease_flag(&self) -> &AtomicBool {
        &self.lost
    }

    pub fn stop_signal(&self) -> &watch::Receiver<bool> {
        &self.stop
    }
}

/// A kind of job. The implementing type is the payload, stored as JSON in the job row.
pub trait BackgroundJob: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The `kind` column; never rename one that may still be queued somewhere.
    const JOB_NAME: &'static str;
    /// A run longer than this is stopped and retried later; None: no limit.
    const TIMEOUT: Option<Duration> = None;
    /// What every run of this kind needs (connections, drivers).
    type Context: Send + Sync + 'static;

    fn run(
        &self,
        ctx: &Self::Context,
        job: &JobContext,
    ) -> impl Future<Output = Result<(), JobError>> + Send;

    /// Told once the job failed for good (attempts used up, a permanent error, a panic).
    fn failed(
        &self,
        _ctx: &Self::Context,
        _job: &JobContext,
        _error: &str,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Told before a failed attempt is retried after `delay`.
    fn retrying(
        &self,
        _ctx: &Self::Context,
        _job: &JobContext,
        _delay: Duration,
        _error: &str,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }
}

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A job type with its context, its type erased so one registry holds them all.
trait Erased: Send + Sync {
    fn run(&self, payload: Value, job: JobContext) -> Boxed<Result<(), JobError>>;
    fn failed(&self, payload: Value, job: JobContext, error: String) -> Boxed<()>;
    fn retrying(
        &self,
        payload: Value,
        job: JobContext,
        delay: Duration,
        error: String,
    ) -> Boxed<()>;
    fn timeout(&self) -> Option<Duration>;
}

struct Typed<J: BackgroundJob> {
    ctx: Arc<J::Context>,
}

fn decode<J: BackgroundJob>(payload: Value) -> Result<J, JobError> {
    serde_json::from_value(payload)
        .map_err(|e| JobError::Permanent(format!("{} payload is unreadable: {e}", J::JOB_NAME)))
}

impl<J: BackgroundJob> Erased for Typed<J> {
    fn run(&self, payload: Value, job: JobContext) -> Boxed<Result<(), JobError>> {
        let ctx = self.ctx.clone();
        Box::pin(async move { decode::<J>(payload)?.run(&ctx, &job).await })
    }

    fn failed(&self, payload: Value, job: JobContext, error: String) -> Boxed<()> {
        let ctx = self.ctx.clone();
        Box::pin(async move {
            if let Ok(j) = decode::<J>(payload) {
                j.failed(&ctx, &job, &error).await
            }
        })
    }

    fn retrying(
        &self,
        payload: Value,
        job: JobContext,
        delay: Duration,
        error: String,
    ) -> Boxed<()> {
        let ctx = self.ctx.clone();
        Box::pin(async move {
            if let Ok(j) = decode::<J>(payload) {
                j.retrying(&ctx, &job, delay, &error).await
            }
        })
    }

    fn timeout(&self) -> Option<Duration> {
        J::TIMEOUT
    }
}

/// How long a failed attempt waits before the next: `base`, 2×`base`, 4×`base` ... up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after failed attempt number `attempt` (1 for the first).
    pub fn delay(&self, attempt: i32) -> Duration {
        let factor = 1u32 << (attempt.clamp(1, 16) - 1);
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// Every job type this process runs, by name.
#[derive(Clone, Default)]
pub struct Registry {
    jobs: HashMap<&'static str, Entry>,
}

#[derive(Clone)]
struct Entry {
    job: Arc<dyn Erased>,
    /// None: the runner's own.
    backoff: Option<Backoff>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register<J: BackgroundJob>(mut self, ctx: Arc<J::Context>) -> Self {
        let job = Arc::new(Typed::<J> { ctx });
        self.jobs.insert(J::JOB_NAME, Entry { job, backoff: None });
        self
    }

    /// As [`register`](Self::register), retrying `J` on its own schedule (a setting of its own,
    /// such as `notifications.retry_base_ms`) instead of the runner's.
    pub fn register_with_backoff<J: BackgroundJob>(
        mut self,
        ctx: Arc<J::Context>,
        backoff: Backoff,
    ) -> Self {
        let job = Arc::new(Typed::<J> { ctx });
        let backoff = Some(backoff);
        self.jobs.insert(J::JOB_NAME, Entry { job, backoff });
        self
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        let mut k: Vec<_> = self.jobs.keys().copied().collect();
        k.sort_unstable();
        k
    }

    fn get(&self, kind: &str) -> Option<&Entry> {
        self.jobs.get(kind)
    }
}

/// Adds a job of type `J` (inside the caller's transaction when given one), so it is queued
/// exactly when the state change that causes it commits.
pub async fn enqueue_job<J: BackgroundJob, C: sea_orm::ConnectionTrait>(
    conn: &C,
    job: &J,
    key: &str,
    max_attempts: i32,
) -> Result<String, sea_orm::DbErr> {
    storage::enqueue(conn, J::JOB_NAME, key, max_attempts, payload_of(job)?).await
}

/// Keeps one waiting job of type `J` about `about` (an entity, say), the latest `job` winning:
/// a job already waiting under its id (`<name>:<about>`) takes this payload and runs now with
/// all its attempts, a finished one runs again. While that one runs, a second id
/// (`<name>:<about>:again`) holds the change, so a change made during a run is not lost to it.
/// True when a job was queued or renewed; false only when both are running.
pub async fn enqueue_latest<J: BackgroundJob, C: sea_orm::ConnectionTrait>(
    conn: &C,
    job: &J,
    about: &str,
    key: &str,
    max_attempts: i32,
) -> Result<bool, sea_orm::DbErr> {
    let payload = payload_of(job)?;
    let now = chrono::Utc::now();
    for id in [
        format!("{}:{about}", J::JOB_NAME),
        format!("{}:{about}:again", J::JOB_NAME),
    ] {
        let kind = J::JOB_NAME;
        let queued = crate::db::jobs::enqueue_latest(
            conn,
            &id,
            kind,
            key,
            max_attempts,
            payload.clone(),
            now,
        )
        .await?;
        if queued {
            return Ok(true);
        }
    }
    Ok(false)
}

fn payload_of<J: BackgroundJob>(job: &J) -> Result<Value, sea_orm::DbErr> {
    serde_json::to_value(job).map_err(|e| sea_orm::DbErr::Custom(format!("payload: {e}")))
}

/// Queues this period's run of a periodic job unless some replica already did: the job's id
/// is its name and the number of the `every`-long period `now` falls in (counted from the Unix
/// epoch), so the rows of one schedule are one per period across all replicas. True when this
/// call queued it.
pub async fn enqueue_periodic<J: BackgroundJob>(
    db: &sea_orm::DatabaseConnection,
    job: &J,
    every: Duration,
    max_attempts: i32,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, sea_orm::DbErr> {
    let id = periodic_id(J::JOB_NAME, every, now);
    crate::db::jobs::enqueue_unique(db, &id, J::JOB_NAME, max_attempts, payload_of(job)?, now).await
}

/// `<name>@<period number>`; an `every` under a second counts as one second.
pub fn periodic_id(name: &str, every: Duration, now: chrono::DateTime<chrono::Utc>) -> String {
    let secs = every.as_secs().max(1) as i64;
    format!("{name}@{}", now.timestamp().div_euclid(secs))
}
