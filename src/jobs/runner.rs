//! Claims due jobs and runs them: one lease per job, kept alive by a heartbeat; a job runs in
//! its own task so a panic fails that job, not the runner.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::watch;

use super::{Backoff, JobContext, JobError, Registry, Wake};
use crate::{
    config::EngineSettings,
    db::{entities::job, jobs as storage},
};

#[derive(Debug, Clone)]
pub struct RunnerSettings {
    pub lease: Duration,
    pub poll: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Finished jobs older than this are deleted (the table would otherwise only grow).
    pub retention: Duration,
}

impl From<&EngineSettings> for RunnerSettings {
    fn from(s: &EngineSettings) -> Self {
        Self {
            lease: Duration::from_secs(s.lease_seconds),
            poll: Duration::from_secs(s.poll_seconds),
            retry_base: Duration::from_millis(s.retry_base_ms),
            retry_max: Duration::from_secs(s.retry_max_seconds),
            retention: DEFAULT_RETENTION,
        }
    }
}

/// A week of finished jobs stays readable for whoever investigates one.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How often an idle runner prunes; every runner does, the deletes are idempotent.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// How one run of a job ended (what the runner wrote back).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done,
    Retrying {
        delay: Duration,
        error: String,
    },
    Failed(String),
    HandedBack,
    /// The lease was lost during the run: the job's new owner settles it.
    LeaseLost,
    /// Test hook: the runner stopped without settling.
    Abandoned,
}

pub struct Runner {
    db: DatabaseConnection,
    registry: Registry,
    settings: RunnerSettings,
    wake: Wake,
}

impl Runner {
    pub fn new(
        db: DatabaseConnection,
        registry: Registry,
        settings: RunnerSettings,
        wake: Wake,
    ) -> Self {
        Self {
            db,
            registry,
            settings,
            wake,
        }
    }

    /// Claims and runs jobs until `stop` turns true (or a job abandons the runner).
    pub async fn work(&self, name: String, mut stop: watch::Receiver<bool>) {
        let _counted = self.wake.runner();
        let mut next_prune = tokio::time::Instant::now();
        loop {
            if *stop.borrow() {
                return;
            }
            match self.run_once(&name, &stop).await {
                Ok(Some(Outcome::Abandoned)) => return,
                Ok(Some(_)) => {}
                Ok(None) => {
                    if tokio::time::Instant::now() >= next_prune {
                        next_prune += PRUNE_EVERY;
                        if let Err(e) = self.prune(chrono::Utc::now()).await {
                            tracing::warn!(error = %e, "cannot prune finished jobs");
                        }
                    }
                    tokio::select! {
                        _ = self.wake.wait() => {}
                        _ = tokio::time::sleep(self.settings.poll) => {}
                        _ = stop.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(worker = %name, error = %crate::vocab::redact::redact(&e.to_string()), "cannot claim jobs; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Claims one due job and runs it to its outcome; None when nothing is due. Tests call
    /// this instead of waiting for a poll.
    pub async fn run_once(
        &self,
        worker: &str,
        stop: &watch::Receiver<bool>,
    ) -> Result<Option<Outcome>, DbErr> {
        let kinds = self.registry.kinds();
        let Some(job) = storage::claim(&self.db, worker, &kinds, self.settings.lease).await? else {
            return Ok(None);
        };
        // More may be waiting than this process was woken for (see `Wake`): the next idle
        // runner looks while this one works.
        self.wake.one();
        Ok(Some(self.run_job(worker, job, stop).await))
    }

    /// Runs every due job until none is left; returns how each ended.
    pub async fn run_pending(&self, worker: &str) -> Result<Vec<Outcome>, DbErr> {
        let (_tx, stop) = watch::channel(false);
        let mut out = Vec::new();
        while let Some(o) = self.run_once(worker, &stop).await? {
            let abandoned = o == Outcome::Abandoned;
            out.push(o);
            if abandoned {
                break;
            }
        }
        Ok(out)
    }

    /// Deletes the jobs that finished more than the retention before `now`.
    pub async fn prune(&self, now: chrono::DateTime<chrono::Utc>) -> Result<u64, DbErr> {
        let keep = chrono::Duration::from_std(self.settings.retention).unwrap_or_default();
        storage::prune(&self.db, now - keep).await
    }

    /// The runner's own backoff, for job types registered without one.
    fn backoff(&self) -> Backoff {
        Backoff {
            base: self.settings.retry_base,
            max: self.settings.retry_max,
        }
    }

    async fn run_job(
        &self,
        worker: &str,
        job: job::Model,
        stop: &watch::Receiver<bool>,
    ) -> Outcome {
        let Some(registered) = self.registry.get(&job.kind).cloned() else {
            // claim() only takes registered kinds; this is a bug, not the job's fault.
            let e = format!("no job type {} in this runner", job.kind);
            self.settle(
                &job,
                storage::fail(&self.db, &job.id, worker, e.clone()).await,
            );
            return Outcome::Failed(e);
        };
        let (entry, backoff) = (registered.job, registered.backoff.unwrap_or(self.backoff()));
        let lease = self.settings.lease;
        let lost = Arc::new(AtomicBool::new(false));
        let ctx = JobContext {
            id: job.id.clone(),
            key: job.request_id.clone(),
            attempt: job.attempts,
            max_attempts: job.max_attempts,
            lost: lost.clone(),
            stop: stop.clone(),
        };
        // Claimed again after its lease ran out more often than it may run at all: its
        // runner keeps dying on it, so it fails rather than take down every replica in turn.
        if job.attempts > job.max_attempts {
            let e = format!(
                "gave up after {} attempts: the worker running it stopped each time",
                job.max_attempts
            );
            tracing::error!(job = %job.id, kind = %job.kind, error = %e, "job failed");
            entry
                .failed(job.payload.clone(), ctx.clone(), e.clone())
                .await;
            self.settle(
                &job,
                storage::fail(&self.db, &job.id, worker, e.clone()).await,
            );
            return Outcome::Failed(e);
        }
        let (db, id, w) = (self.db.clone(), job.id.clone(), worker.to_owned());
        let flag = lost.clone();
        let heartbeat = AbortOnDrop(tokio::spawn(async move {
            let mut last_ok = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(lease / 3).await;
                match storage::heartbeat(&db, &id, &w, lease).await {
                    Ok(true) => last_ok = tokio::time::Instant::now(),
                    Ok(false) => {
                        flag.store(true, Ordering::Release);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(job = %id, error = %e, "heartbeat failed");
                        if last_ok.elapsed() >= lease {
                            flag.store(true, Ordering::Release);
                            return;
                        }
                    }
                }
            }
        }));
        // `request_id` as before the job system: operators find a request's lines by it.
        let span = tracing::info_span!("job", job = %job.id, kind = %job.kind, request_id = %job.request_id.as_deref().unwrap_or(""), attempt = job.attempts);
        let run = entry.run(job.payload.clone(), ctx.clone());
        let timeout = entry.timeout();
        // Its own task: a panic ends that task and is reported here as a JoinError.
        let mut task = AbortOnDrop(tokio::spawn(tracing::Instrument::instrument(
            async move {
                match timeout {
                    Some(t) => tokio::time::timeout(t, run).await.unwrap_or_else(|_| {
                        Err(JobError::Retry(format!(
                            "timed out after {} s",
                            t.as_secs_f64()
                        )))
                    }),
                    None => run.await,
                }
            },
            span,
        )));
        let result = match (&mut task.0).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => Err(JobError::Permanent(format!(
                "the job panicked: {}",
                panic_message(e.into_panic())
            ))),
            Err(_) => Err(JobError::Retry("the job's task was cancelled".into())),
        };
        drop(heartbeat);
        if lost.load(Ordering::Acquire) {
            tracing::warn!(job = %job.id, kind = %job.kind, "lease lost; leaving the job to its new owner");
            return Outcome::LeaseLost;
        }
        match result {
            Ok(()) => {
                self.settle(&job, storage::finish(&self.db, &job.id, worker).await);
                Outcome::Done
            }
            Err(JobError::Abandon) => Outcome::Abandoned,
            Err(JobError::HandBack) => {
                tracing::info!(job = %job.id, kind = %job.kind, "stopping: the step in progress is done; job handed back to the queue");
                self.settle(&job, storage::hand_back(&self.db, &job.id, worker).await);
                Outcome::HandedBack
            }
            Err(JobError::Retry(e)) if job.attempts < job.max_attempts => {
                let delay = backoff.delay(job.attempts);
                tracing::warn!(job = %job.id, kind = %job.kind, attempt = job.attempts, retry_in_ms = delay.as_millis() as u64, error = %e, "transient failure; will retry");
                entry
                    .retrying(job.payload.clone(), ctx, delay, e.clone())
                    .await;
                self.settle(
                    &job,
                    storage::retry_later(&self.db, &job.id, worker, delay, e.clone()).await,
                );
                Outcome::Retrying { delay, error: e }
            }
            Err(JobError::Retry(e) | JobError::Permanent(e)) => {
                tracing::error!(job = %job.id, kind = %job.kind, error = %e, "job failed");
                entry.failed(job.payload.clone(), ctx, e.clone()).await;
                self.settle(
                    &job,
                    storage::fail(&self.db, &job.id, worker, e.clone()).await,
                );
                Outcome::Failed(e)
            }
        }
    }

    fn settle(&self, job: &job::Model, r: Result<(), DbErr>) {
        if let Err(e) = r {
            tracing::error!(job = %job.id, error = %e, "could not record the job's outcome; its lease will expire and it runs again");
        }
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
