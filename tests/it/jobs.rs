//! The job system's runner, with job types made up here: what happens to a job that panics,
//! hangs, or keeps killing its worker, and that a periodic job runs once per period however
//! many replicas ask for it.

use crate::common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use common::{Engine as DbEngine, migrated};
use paved::{
    db::entities::job,
    jobs::{self, BackgroundJob, JobContext, JobError, Outcome, Registry, Runner, RunnerSettings},
};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseConnection, EntityTrait};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Default)]
struct Seen {
    runs: AtomicUsize,
    failed: AtomicUsize,
}

#[derive(Serialize, Deserialize)]
struct Panics;

impl BackgroundJob for Panics {
    const JOB_NAME: &'static str = "test-panics";
    type Context = Seen;
    async fn run(&self, seen: &Seen, _: &JobContext) -> Result<(), JobError> {
        seen.runs.fetch_add(1, Ordering::SeqCst);
        panic!("boom")
    }
    async fn failed(&self, seen: &Seen, _: &JobContext, _: &str) {
        seen.failed.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Serialize, Deserialize)]
struct Counts;

impl BackgroundJob for Counts {
    const JOB_NAME: &'static str = "test-counts";
    type Context = Seen;
    async fn run(&self, seen: &Seen, _: &JobContext) -> Result<(), JobError> {
        seen.runs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn failed(&self, seen: &Seen, _: &JobContext, _: &str) {
        seen.failed.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Serialize, Deserialize)]
struct Hangs;

impl BackgroundJob for Hangs {
    const JOB_NAME: &'static str = "test-hangs";
    // Short, yet the outcome does not depend on timing: the run never ends by itself.
    const TIMEOUT: Option<Duration> = Some(Duration::from_millis(50));
    type Context = Seen;
    async fn run(&self, _: &Seen, _: &JobContext) -> Result<(), JobError> {
        std::future::pending().await
    }
}

fn runner(db: &DatabaseConnection, seen: &Arc<Seen>) -> Runner {
    let registry = Registry::new()
        .register::<Panics>(seen.clone())
        .register::<Counts>(seen.clone())
        .register::<Hangs>(seen.clone());
    Runner::new(
        db.clone(),
        registry,
        RunnerSettings {
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(60),
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            retention: Duration::from_secs(24 * 3600),
        },
        Arc::new(Notify::new()),
    )
}

async fn row(db: &DatabaseConnection, id: &str) -> job::Model {
    job::Entity::find_by_id(id.to_owned())
        .one(db)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_panicking_job_fails_and_the_runner_goes_on() {
    let (_t, db) = migrated(DbEngine::Sqlite).await;
    let seen = Arc::new(Seen::default());
    let bad = jobs::enqueue(&db, &Panics, "k1", 5).await.unwrap();
    let good = jobs::enqueue(&db, &Counts, "k2", 5).await.unwrap();
    let out = runner(&db, &seen).run_pending("w").await.unwrap();
    assert_eq!(
        out,
        vec![
            Outcome::Failed("the job panicked: boom".into()),
            Outcome::Done
        ]
    );
    let bad = row(&db, &bad).await;
    assert_eq!(bad.status, "failed", "a panic is not worth a retry");
    assert_eq!(bad.last_error.as_deref(), Some("the job panicked: boom"));
    assert_eq!(row(&db, &good).await.status, "done");
    assert_eq!(seen.failed.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_job_over_its_timeout_is_stopped_and_retried_then_fails() {
    let (_t, db) = migrated(DbEngine::Sqlite).await;
    let seen = Arc::new(Seen::default());
    let id = jobs::enqueue(&db, &Hangs, "k", 2).await.unwrap();
    let r = runner(&db, &seen);
    let out = r.run_pending("w").await.unwrap();
    assert_eq!(
        out,
        vec![Outcome::Retrying {
            delay: Duration::from_millis(500),
            error: "timed out after 0.05 s".into()
        }]
    );
    let j = row(&db, &id).await;
    assert_eq!((j.status.as_str(), j.attempts), ("queued", 1));
    // Due now rather than after the backoff, so the test needs no clock.
    let mut a: job::ActiveModel = j.into();
    a.run_at = Set(Utc::now() - chrono::Duration::seconds(1));
    a.update(&db).await.unwrap();
    let out = r.run_pending("w").await.unwrap();
    assert_eq!(out, vec![Outcome::Failed("timed out after 0.05 s".into())]);
    assert_eq!(row(&db, &id).await.status, "failed");
}

/// A job whose worker died on it (its lease ran out while it was running) is taken over, but
/// not forever: once it was claimed more often than it may run, it fails.
#[tokio::test]
async fn a_job_that_keeps_killing_its_worker_fails_after_its_attempts() {
    let (_t, db) = migrated(DbEngine::Sqlite).await;
    let seen = Arc::new(Seen::default());
    let id = jobs::enqueue(&db, &Counts, "k", 3).await.unwrap();
    let dead_worker = |attempts: i32| {
        let db = db.clone();
        let id = id.clone();
        async move {
            let mut a: job::ActiveModel = row(&db, &id).await.into();
            a.status = Set("running".into());
            a.attempts = Set(attempts);
            a.locked_by = Set(Some("dead".into()));
            a.locked_until = Set(Some(Utc::now() - chrono::Duration::seconds(1)));
            a.update(&db).await.unwrap();
        }
    };
    // Two takeovers so far, one attempt left: it runs.
    dead_worker(2).await;
    assert_eq!(
        runner(&db, &seen).run_pending("w").await.unwrap(),
        vec![Outcome::Done]
    );
    assert_eq!(seen.runs.load(Ordering::SeqCst), 1);

    let id2 = jobs::enqueue(&db, &Counts, "k2", 3).await.unwrap();
    let mut a: job::ActiveModel = row(&db, &id2).await.into();
    a.status = Set("running".into());
    a.attempts = Set(3);
    a.locked_by = Set(Some("dead".into()));
    a.locked_until = Set(Some(Utc::now() - chrono::Duration::seconds(1)));
    a.update(&db).await.unwrap();
    let want = "gave up after 3 attempts: the worker running it stopped each time";
    assert_eq!(
        runner(&db, &seen).run_pending("w").await.unwrap(),
        vec![Outcome::Failed(want.into())]
    );
    let j = row(&db, &id2).await;
    assert_eq!(
        (j.status.as_str(), j.last_error.as_deref()),
        ("failed", Some(want))
    );
    assert_eq!(seen.runs.load(Ordering::SeqCst), 1, "not run a fourth time");
    assert_eq!(seen.failed.load(Ordering::SeqCst), 1, "told it failed");
}

/// Two replicas on one PostgreSQL asking for the same period at the same moment make one job,
/// and of two runners racing for it exactly one runs it.
#[tokio::test]
async fn a_periodic_job_is_queued_and_run_once_per_period_across_replicas() {
    let (t, db) = migrated(DbEngine::Postgres).await;
    let mut s = paved::config::Settings::default().database;
    s.url = t.url.clone();
    let other = paved::db::connect(&s).await.unwrap();
    let every = Duration::from_secs(3600);
    let now = Utc::now();
    for _ in 0..10 {
        let (a, b) = tokio::join!(
            jobs::enqueue_periodic(&db, &Counts, every, 3, now),
            jobs::enqueue_periodic(&other, &Counts, every, 3, now),
        );
        let _ = (a.unwrap(), b.unwrap());
    }
    let rows = job::Entity::find().all(&db).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].id, jobs::periodic_id("test-counts", every, now));

    let seen = Arc::new(Seen::default());
    let (ra, rb) = (runner(&db, &seen), runner(&other, &seen));
    let (a, b) = tokio::join!(ra.run_pending("a"), rb.run_pending("b"));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 1, "{a:?} {b:?}");
    assert_eq!(seen.runs.load(Ordering::SeqCst), 1);

    // The next period is a new job.
    let later = now + chrono::Duration::seconds(3600);
    assert!(
        jobs::enqueue_periodic(&other, &Counts, every, 3, later)
            .await
            .unwrap()
    );
    assert!(
        !jobs::enqueue_periodic(&db, &Counts, every, 3, later)
            .await
            .unwrap()
    );
}

/// Finished jobs older than the retention go; newer ones, and any still to run, stay.
#[tokio::test]
async fn finished_jobs_past_the_retention_are_pruned() {
    let (_t, db) = migrated(DbEngine::Sqlite).await;
    let seen = Arc::new(Seen::default());
    let r = runner(&db, &seen);
    let done = jobs::enqueue(&db, &Counts, "done", 3).await.unwrap();
    let failed = jobs::enqueue(&db, &Panics, "failed", 3).await.unwrap();
    r.run_pending("w").await.unwrap();
    let queued = jobs::enqueue(&db, &Counts, "queued", 3).await.unwrap();
    let finished_at = row(&db, &done).await.updated_at;
    // A day later nothing is past the retention yet.
    assert_eq!(
        r.prune(finished_at + chrono::Duration::hours(23))
            .await
            .unwrap(),
        0
    );
    // Past it, the two finished jobs go and the queued one stays.
    let later = Utc::now() + chrono::Duration::hours(25);
    assert_eq!(r.prune(later).await.unwrap(), 2);
    let left: Vec<String> = job::Entity::find()
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(left, vec![queued]);
    let _ = (done, failed);
}
