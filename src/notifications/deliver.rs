//! Delivering one outbox row is a job: `deliver-notification`, queued with the row by
//! [`Notifier::send`](super::Notifier::send). The runner leases it, retries it with the
//! notifications' backoff and gives up after `notifications.max_attempts`; the row records each
//! attempt, so what was said and how it went outlives the job (finished jobs are pruned).

use std::time::Duration;

use chrono::Utc;
use sea_orm::{DatabaseConnection, DbErr};
use serde::{Deserialize, Serialize};

use super::{Channels, Failure};
use crate::{
    db::{self, entities::notification::NotificationStatus},
    jobs::{BackgroundJob, JobContext, JobError},
};

/// The job's payload: which outbox row to deliver (its words and recipients stay in the row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliverNotification {
    pub notification: String,
}

/// What every delivery needs.
pub struct Delivery {
    db: DatabaseConnection,
    channels: Channels,
}

impl Delivery {
    pub fn new(db: DatabaseConnection, channels: Channels) -> Self {
        Self { db, channels }
    }
}

fn db_trouble(e: DbErr) -> JobError {
    JobError::Retry(crate::vocab::redact::redact(&e.to_string()))
}

impl BackgroundJob for DeliverNotification {
    const JOB_NAME: &'static str = "deliver-notification";
    /// An attempt is one HTTP call of at most 10 s; longer means something hangs.
    const TIMEOUT: Option<Duration> = Some(Duration::from_secs(60));
    type Context = Delivery;

    async fn run(&self, d: &Delivery, job: &JobContext) -> Result<(), JobError> {
        let id = &self.notification;
        let Some(row) = db::notifications::find(&d.db, id)
            .await
            .map_err(db_trouble)?
        else {
            return Err(JobError::Permanent(format!("outbox row {id} is gone")));
        };
        // Settled already: the job runs again after its runner died past the settling.
        if matches!(
            row.status,
            NotificationStatus::Sent | NotificationStatus::Failed
        ) {
            return Ok(());
        }
        let Some(channel) = d.channels.iter().find(|c| c.name() == row.channel) else {
            return Err(JobError::Retry(format!(
                "channel {} is no longer configured on this replica",
                row.channel
            )));
        };
        db::notifications::sending(&d.db, id, job.attempt)
            .await
            .map_err(db_trouble)?;
        match channel.deliver(&row).await {
            Ok(()) => {
                tracing::info!(topic = %row.topic, channel = %row.channel, attempt = job.attempt, "notification delivered");
                db::notifications::sent(&d.db, id, Utc::now())
                    .await
                    .map_err(db_trouble)
            }
            Err(Failure::Final(e)) => {
                // Said once, when the channel found out; nothing to retry, so the job is done
                // and the row says why it was not delivered.
                tracing::debug!(topic = %row.topic, channel = %row.channel, error = %e, "notification not delivered");
                db::notifications::not_sent(&d.db, id, NotificationStatus::Failed, &e)
                    .await
                    .map_err(db_trouble)
            }
            Err(Failure::Retry(e)) => Err(JobError::Retry(e)),
        }
    }

    async fn retrying(&self, d: &Delivery, _: &JobContext, _: Duration, error: &str) {
        let r = db::notifications::not_sent(
            &d.db,
            &self.notification,
            NotificationStatus::Queued,
            error,
        )
        .await;
        if let Err(e) = r {
            tracing::warn!(notification = %self.notification, error = %e, "cannot record a failed delivery attempt");
        }
    }

    async fn failed(&self, d: &Delivery, _: &JobContext, error: &str) {
        tracing::error!(notification = %self.notification, error = %error, "notification given up");
        let r = db::notifications::not_sent(
            &d.db,
            &self.notification,
            NotificationStatus::Failed,
            error,
        )
        .await;
        if let Err(e) = r {
            tracing::warn!(notification = %self.notification, error = %e, "cannot record a given-up notification");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    };

    use sea_orm::{EntityTrait, TransactionTrait};

    use super::*;
    use crate::{
        db::entities::{job, notification},
        jobs::{Backoff, Outcome, Registry, Runner, RunnerSettings},
        notifications::{Channel, Delivered, Notification, Notifier, Severity, Topic},
    };

    /// A fake channel (the real ones need an HTTP peer): answers `Retry` to its first
    /// `fail_first` attempts, or `Final` to all when `refuses`, and records what it delivered.
    #[derive(Default)]
    struct Fake {
        fail_first: usize,
        refuses: bool,
        attempts: AtomicUsize,
        delivered: Mutex<Vec<String>>,
    }

    impl Channel for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn deliver<'a>(&'a self, row: &'a notification::Model) -> Delivered<'a> {
            Box::pin(async move {
                let n = self.attempts.fetch_add(1, Ordering::SeqCst);
                if self.refuses {
                    return Err(Failure::Final("cannot take it".into()));
                }
                if n < self.fail_first {
                    return Err(Failure::Retry(format!("503 on attempt {}", n + 1)));
                }
                let title = row.payload["title"].as_str().unwrap_or("").to_owned();
                self.delivered.lock().unwrap().push(title);
                Ok(())
            })
        }
    }

    struct Setup {
        db: DatabaseConnection,
        notifier: Notifier,
        runner: Runner,
        _dir: tempfile::TempDir,
    }

    async fn setup(fake: Arc<Fake>, max_attempts: i32) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let mut s = crate::config::Settings::default();
        s.database.url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("paved.db").display()
        );
        s.notifications.max_attempts = max_attempts;
        let db = crate::db::connect(&s.database).await.unwrap();
        crate::db::migrate(&db).await.unwrap();
        let notifier = Notifier::new(&s, vec![fake]);
        // No wait between attempts: `run_pending` runs them all, so no clock is needed.
        let instant = Backoff {
            base: Duration::ZERO,
            max: Duration::ZERO,
        };
        let registry = Registry::new().register_with_backoff::<DeliverNotification>(
            Arc::new(notifier.delivery(db.clone())),
            instant,
        );
        let runner = Runner::new(
            db.clone(),
            registry,
            RunnerSettings {
                lease: Duration::from_secs(60),
                poll: Duration::from_secs(60),
                retry_base: Duration::from_secs(3600),
                retry_max: Duration::from_secs(3600),
                retention: Duration::from_secs(3600),
            },
            crate::jobs::Wake::default(),
        );
        Setup {
            db,
            notifier,
            runner,
            _dir: dir,
        }
    }

    fn notice(title: &str) -> Notification {
        Notification {
            topic: Topic::RequestSucceeded,
            recipients: vec!["user:default/alice".into()],
            title: title.into(),
            description: "done".into(),
            link: None,
            severity: Severity::Normal,
            scope: None,
        }
    }

    async fn rows(db: &DatabaseConnection) -> Vec<notification::Model> {
        notification::Entity::find().all(db).await.unwrap()
    }

    async fn jobs_of(db: &DatabaseConnection) -> Vec<job::Model> {
        job::Entity::find().all(db).await.unwrap()
    }

    #[tokio::test]
    async fn a_failed_delivery_is_retried_by_the_runner_until_it_arrives() {
        let fake = Arc::new(Fake {
            fail_first: 2,
            ..Default::default()
        });
        let t = setup(fake.clone(), 5).await;
        t.notifier.send(&t.db, notice("first")).await;
        let out = t.runner.run_pending("w").await.unwrap();
        assert_eq!(
            out,
            vec![
                Outcome::Retrying {
                    delay: Duration::ZERO,
                    error: "503 on attempt 1".into()
                },
                Outcome::Retrying {
                    delay: Duration::ZERO,
                    error: "503 on attempt 2".into()
                },
                Outcome::Done
            ]
        );
        assert_eq!(*fake.delivered.lock().unwrap(), vec!["first".to_owned()]);
        let rows = rows(&t.db).await;
        let first = &rows[0];
        assert_eq!(
            (first.status, first.attempts, first.last_error.as_deref()),
            (NotificationStatus::Sent, 3, None)
        );
        assert!(first.sent_at.is_some());
        // A second notice is a second row with its own job.
        t.notifier.send(&t.db, notice("second")).await;
        assert_eq!(
            t.runner.run_pending("w").await.unwrap(),
            vec![Outcome::Done]
        );
        let rows = self::rows(&t.db).await;
        let jobs = jobs_of(&t.db).await;
        assert_eq!(jobs.len(), 2);
        for j in &jobs {
            assert_eq!(j.kind, DeliverNotification::JOB_NAME);
            assert_eq!(j.status, job::JobStatus::Done);
            // The payload names the row and nothing else: no words, no credentials.
            let payload: DeliverNotification = serde_json::from_value(j.payload.clone()).unwrap();
            assert!(rows.iter().any(|r| r.id == payload.notification));
        }
    }

    #[tokio::test]
    async fn a_delivery_is_given_up_after_its_attempts() {
        let fake = Arc::new(Fake {
            fail_first: usize::MAX,
            ..Default::default()
        });
        let t = setup(fake.clone(), 2).await;
        t.notifier.send(&t.db, notice("never")).await;
        let out = t.runner.run_pending("w").await.unwrap();
        assert_eq!(
            out.last(),
            Some(&Outcome::Failed("503 on attempt 2".into()))
        );
        let row = rows(&t.db).await.pop().unwrap();
        assert_eq!(
            (row.status, row.attempts, row.last_error.as_deref()),
            (NotificationStatus::Failed, 2, Some("503 on attempt 2"))
        );
        assert_eq!(fake.attempts.load(Ordering::SeqCst), 2);
        assert_eq!(jobs_of(&t.db).await[0].status, job::JobStatus::Failed);
    }

    #[tokio::test]
    async fn a_channel_that_cannot_take_it_is_not_retried() {
        let fake = Arc::new(Fake {
            refuses: true,
            ..Default::default()
        });
        let t = setup(fake.clone(), 5).await;
        t.notifier.send(&t.db, notice("refused")).await;
        assert_eq!(
            t.runner.run_pending("w").await.unwrap(),
            vec![Outcome::Done]
        );
        let row = rows(&t.db).await.pop().unwrap();
        assert_eq!(
            (row.status, row.attempts, row.last_error.as_deref()),
            (NotificationStatus::Failed, 1, Some("cannot take it"))
        );
        assert_eq!(fake.attempts.load(Ordering::SeqCst), 1);
    }

    /// Queued inside the caller's transaction: rolled back with it, nothing is told.
    #[tokio::test]
    async fn a_notification_is_queued_with_the_change_it_reports() {
        let fake = Arc::new(Fake::default());
        let t = setup(fake.clone(), 5).await;
        let txn = t.db.begin().await.unwrap();
        t.notifier.send(&txn, notice("rolled back")).await;
        txn.rollback().await.unwrap();
        assert!(rows(&t.db).await.is_empty());
        assert!(jobs_of(&t.db).await.is_empty());
        let txn = t.db.begin().await.unwrap();
        t.notifier.send(&txn, notice("committed")).await;
        txn.commit().await.unwrap();
        assert_eq!(
            (rows(&t.db).await.len(), jobs_of(&t.db).await.len()),
            (1, 1)
        );
        t.runner.run_pending("w").await.unwrap();
        assert_eq!(
            *fake.delivered.lock().unwrap(),
            vec!["committed".to_owned()]
        );
    }
}
