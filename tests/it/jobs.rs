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
    db::entities::job::{self, JobStatus},
    jobs::{self, BackgroundJob, JobContext, JobError, Outcome, Registry, Runner, RunnerSettings},
};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseConnection, EntityTrait};
use serde::{Deserialize, Serialize};

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
        paved::jobs::Wake::default(),
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
    let bad = jobs::enqueue_job(&db, &Panics, "k1", 5).await.unwrap();
    let good = jobs::enqueue_job(&db, &Counts, "k2", 5).await.unwrap();
    let out = runner(&db, &seen).run_pending("w").await.unwrap();
    assert_eq!(
        out,
        vec![
            Outcome::Failed("the job panicked: boom".into()),
            Outcome::Done
        ]
    );
    let bad = row(&db, &bad).await;
    assert_eq!(
        bad.status,
        JobStatus::Failed,
        "a panic is not worth a retry"
    );
    assert_eq!(bad.last_error.as_deref(), Some("the job panicked: boom"));
    assert_eq!(row(&db, &good).await.status, JobStatus::Done);
    assert_eq!(seen.failed.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_job_over_its_timeout_is_stopped_and_retried_then_fails() {
    let (_t, db) = migrated(DbEngine::Sqlite).await;
    let seen = Arc::new(Seen::default());
    let id = jobs::enqueue_job(&db, &Hangs, "k", 2).await.unwrap();
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
    assert_eq!(row(&db, &id).await.status, JobStatus::Failed);
}

/// A job whose worker died on it (its lease ran out while it was running) is taken over, but
/// not forever: once it was claimed more often than it may run, it fails.
#[tokio::test]
async fn a_job_that_keeps_killing_its_worker_fails_after_its_attempts() {
    let (_t, db) = migrated(DbEngine::Sqlite).await;
    let seen = Arc::new(Seen::default());
    let id = jobs::enqueue_job(&db, &Counts, "k", 3).await.unwrap();
    let dead_worker = |attempts: i32| {
        let db = db.clone();
        let id = id.clone();
        async move {
            let mut a: job::ActiveModel = row(&db, &id).await.into();
            a.status = Set(JobStatus::Running);
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

    let id2 = jobs::enqueue_job(&db, &Counts, "k2", 3).await.unwrap();
    let mut a: job::ActiveModel = row(&db, &id2).await.into();
    a.status = Set(JobStatus::Running);
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
    let done = jobs::enqueue_job(&db, &Counts, "done", 3).await.unwrap();
    let failed = jobs::enqueue_job(&db, &Panics, "failed", 3).await.unwrap();
    r.run_pending("w").await.unwrap();
    let queued = jobs::enqueue_job(&db, &Counts, "queued", 3).await.unwrap();
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

/// The outbox as the old sender left it becomes jobs: every row stays, each one still waiting
/// (queued, or being sent when the old sender stopped) gets a delivery job due when its next
/// attempt was, with the attempts it had, and the runner delivers it. The down migration gives
/// the outbox its scheduling columns back, rows intact.
async fn outbox_migration_keeps_every_row(engine: DbEngine) {
    use paved::{
        db::{
            Migrator,
            entities::notification::{self, NotificationStatus},
        },
        notifications::{Channel, Delivered, deliver::DeliverNotification},
    };
    use sea_orm::{ConnectionTrait, PaginatorTrait, Statement};
    use sea_orm_migration::MigratorTrait;

    let t = common::TestDb::new(engine).await;
    let conn = common::kit::db_of(&t.url).await;
    let all: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let before = all
        .iter()
        .position(|n| n == "m20261201_000008_notification_delivery_jobs")
        .unwrap();
    Migrator::up(&conn, Some(before as u32)).await.unwrap();
    let backend = conn.get_database_backend();
    let created = Utc::now() - chrono::Duration::minutes(10);
    let due = Utc::now() - chrono::Duration::minutes(1);
    for (id, status, attempts) in [
        ("n-queued", "queued", 2),
        ("n-sending", "sending", 1),
        ("n-sent", "sent", 1),
        ("n-failed", "failed", 8),
    ] {
        let mut sql = format!(
            "INSERT INTO notifications (id, channel, topic, recipients, payload, status, attempts, \
             next_attempt_at, locked_until, last_error, created_at, sent_at) VALUES \
             ('{id}', 'backstage', 'request-succeeded', '[\"user:default/alice\"]', \
             '{{\"title\": \"{id}\"}}', '{status}', {attempts}, ?, NULL, NULL, ?, NULL)"
        );
        if backend == sea_orm::DbBackend::Postgres {
            sql = sql.replacen('?', "$1", 1).replacen('?', "$2", 1);
        }
        conn.execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [due.into(), created.into()],
        ))
        .await
        .unwrap();
    }
    Migrator::up(&conn, None).await.unwrap();

    let rows = notification::Entity::find().all(&conn).await.unwrap();
    assert_eq!(rows.len(), 4, "every outbox row stays: {rows:?}");
    let mut waiting = job::Entity::find().all(&conn).await.unwrap();
    waiting.sort_by(|a, b| a.id.cmp(&b.id));
    let got: Vec<(&str, JobStatus, i32, String)> = waiting
        .iter()
        .map(|j| {
            (
                j.kind.as_str(),
                j.status,
                j.attempts,
                j.payload["notification"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "deliver-notification",
                JobStatus::Queued,
                2,
                "n-queued".into()
            ),
            (
                "deliver-notification",
                JobStatus::Queued,
                1,
                "n-sending".into()
            ),
        ]
    );
    assert!(
        waiting
            .iter()
            .all(|j| (j.run_at - due).num_milliseconds().abs() < 1000),
        "due when the next attempt was: {waiting:?}"
    );

    // A fake Backstage channel (the real one needs a Backstage): the runner delivers both.
    struct Takes;
    impl Channel for Takes {
        fn name(&self) -> &'static str {
            "backstage"
        }
        fn deliver<'a>(&'a self, _: &'a notification::Model) -> Delivered<'a> {
            Box::pin(async { Ok(()) })
        }
    }
    let delivery = paved::notifications::deliver::Delivery::new(
        conn.clone(),
        Arc::new(vec![Arc::new(Takes) as Arc<dyn Channel>]),
    );
    let runner = Runner::new(
        conn.clone(),
        Registry::new().register::<DeliverNotification>(Arc::new(delivery)),
        RunnerSettings::from(&paved::config::Settings::default().engine),
        paved::jobs::Wake::default(),
    );
    assert_eq!(
        runner.run_pending("w").await.unwrap(),
        vec![Outcome::Done, Outcome::Done]
    );
    let sent = notification::Entity::find_by_id("n-queued".to_owned())
        .one(&conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((sent.status, sent.attempts), (NotificationStatus::Sent, 3));

    Migrator::down(&conn, Some(1)).await.unwrap();
    assert_eq!(
        notification::Entity::find().count(&conn).await.unwrap(),
        4,
        "down keeps every row too"
    );
}

#[tokio::test]
async fn the_outbox_migration_keeps_every_row_on_sqlite() {
    outbox_migration_keeps_every_row(DbEngine::Sqlite).await;
}

#[tokio::test]
async fn the_outbox_migration_keeps_every_row_on_postgres() {
    outbox_migration_keeps_every_row(DbEngine::Postgres).await;
}
