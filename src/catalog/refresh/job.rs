//! One refresh or removal of one catalog entity is a job: `refresh-catalog`. A failed call to
//! Backstage is retried by the runner with backoff (1 s, 2 s, 4 s ... up to a minute, as
//! registered in `app`), and given up after [`ATTEMPTS`]: Backstage's own processing cycle
//! catches up then. The job's id is the entity's, so an entity has one job waiting at most.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Refresher, Removal};
use crate::jobs::{BackgroundJob, Backoff, JobContext, JobError};

/// About two minutes of retries with [`BACKOFF`].
pub const ATTEMPTS: i32 = 8;

/// The wait after a failed call: Backstage restarting takes seconds, not hours.
pub const BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    max: Duration::from_secs(60),
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshCatalog {
    pub entity_ref: String,
    /// The resource the entity belongs to (`paved.dev/resource-id`).
    pub resource_id: String,
    /// The resource is gone: delete the entity (when it is paved's) instead of refreshing it.
    #[serde(default)]
    pub remove: bool,
}

impl BackgroundJob for RefreshCatalog {
    const JOB_NAME: &'static str = "refresh-catalog";
    /// A few HTTP calls of at most 10 s each.
    const TIMEOUT: Option<Duration> = Some(Duration::from_secs(60));
    type Context = Refresher;

    async fn run(&self, r: &Refresher, job: &JobContext) -> Result<(), JobError> {
        let (entity, id) = (&self.entity_ref, &self.resource_id);
        if self.remove {
            match r.remove_once(entity, id).await.map_err(JobError::Retry)? {
                Removal::LeftToCatalog(why) => {
                    tracing::info!(entity = %entity, reason = %why, "left to Backstage's orphan cleanup");
                    r.refresh_once(entity, id).await.map_err(JobError::Retry)?;
                }
                Removal::Deleted | Removal::Absent => {}
            }
            tracing::debug!(entity = %entity, attempt = job.attempt, "catalog removal done");
        } else {
            r.refresh_once(entity, id).await.map_err(JobError::Retry)?;
            tracing::debug!(entity = %entity, attempt = job.attempt, "catalog refresh done");
        }
        Ok(())
    }

    async fn failed(&self, _: &Refresher, _: &JobContext, error: &str) {
        tracing::warn!(entity = %self.entity_ref, error = %error, "catalog refresh gave up; Backstage will catch up at its next cycle");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
    use sea_orm::{DatabaseConnection, EntityTrait};
    use serde_json::Value;

    use super::*;
    use crate::{
        auth::signing::Outgoing,
        db::entities::job::{self, JobStatus},
        jobs::{Outcome, Registry, Runner, RunnerSettings},
    };

    /// A stand-in for Backstage's `POST /api/catalog/refresh`: records each call and answers
    /// 500 to the first `fail_first`.
    type Seen = Arc<Mutex<(usize, Vec<Value>)>>;

    async fn stand_in(fail_first: usize) -> (String, Seen) {
        async fn refresh(State(seen): State<Seen>, Json(body): Json<Value>) -> StatusCode {
            let mut s = seen.lock().unwrap();
            s.1.push(body);
            if s.0 > 0 {
                s.0 -= 1;
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            }
        }
        let seen: Seen = Arc::new(Mutex::new((fail_first, Vec::new())));
        let app = Router::new()
            .route("/api/catalog/refresh", post(refresh))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, seen)
    }

    struct Setup {
        db: DatabaseConnection,
        refresher: Refresher,
        runner: Runner,
        _dir: tempfile::TempDir,
    }

    async fn setup(url: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::config::DatabaseSettings {
            url: format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("paved.db").display()
            ),
            ..Default::default()
        };
        let db = crate::db::connect(&s).await.unwrap();
        crate::db::migrate(&db).await.unwrap();
        let refresher = Refresher::new(
            url,
            Outgoing::Static("t0ken".to_owned().into()),
            db.clone(),
            Default::default(),
        );
        // No wait between attempts: `run_pending` runs them all, so no clock is needed.
        let instant = Backoff {
            base: Duration::ZERO,
            max: Duration::ZERO,
        };
        let registry = Registry::new()
            .register_with_backoff::<RefreshCatalog>(Arc::new(refresher.clone()), instant);
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
            Default::default(),
        );
        Setup {
            db,
            refresher,
            runner,
            _dir: dir,
        }
    }

    fn refresh(entity: &str) -> RefreshCatalog {
        RefreshCatalog {
            entity_ref: entity.into(),
            resource_id: "r1".into(),
            remove: false,
        }
    }

    async fn jobs_of(db: &DatabaseConnection) -> Vec<job::Model> {
        job::Entity::find().all(db).await.unwrap()
    }

    #[tokio::test]
    async fn a_failed_refresh_is_retried_by_the_runner() {
        let (url, seen) = stand_in(2).await;
        let t = setup(&url).await;
        assert!(
            t.refresher
                .queue(&refresh("resource:default/a"))
                .await
                .unwrap()
        );
        let out = t.runner.run_pending("w").await.unwrap();
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(
            matches!(&out[0], Outcome::Retrying { error, .. } if error.starts_with("500")),
            "{out:?}"
        );
        assert_eq!(out[2], Outcome::Done);
        let calls = seen.lock().unwrap().1.clone();
        assert_eq!(calls.len(), 3);
        assert!(calls.iter().all(|c| c["entityRef"] == "resource:default/a"));
        let j = jobs_of(&t.db).await.pop().unwrap();
        assert_eq!((j.status, j.attempts), (JobStatus::Done, 3));
    }

    /// One entity has one job: queued twice it is refreshed once, with the latest change;
    /// once done, a new change queues it again.
    #[tokio::test]
    async fn refreshes_of_one_entity_are_one_job() {
        let (url, seen) = stand_in(0).await;
        let t = setup(&url).await;
        let a = "resource:default/a";
        assert!(t.refresher.queue(&refresh(a)).await.unwrap());
        let mut removal = refresh(a);
        removal.remove = true;
        removal.resource_id = "r2".into();
        assert!(t.refresher.queue(&removal).await.unwrap());
        assert!(
            t.refresher
                .queue(&refresh("resource:default/b"))
                .await
                .unwrap()
        );
        let jobs = jobs_of(&t.db).await;
        assert_eq!(jobs.len(), 2, "{jobs:?}");
        let of_a = jobs
            .iter()
            .find(|j| j.id == format!("refresh-catalog:{a}"))
            .unwrap();
        let waiting: RefreshCatalog = serde_json::from_value(of_a.payload.clone()).unwrap();
        assert_eq!(waiting, removal, "the latest change waits");
        assert_eq!(of_a.request_id.as_deref(), Some("r2"));

        // Refresh b alone (a's removal asks for the entity by name, which the stand-in lacks:
        // it is then absent, and done as well).
        t.runner.run_pending("w").await.unwrap();
        assert!(
            jobs_of(&t.db)
                .await
                .iter()
                .all(|j| j.status == JobStatus::Done)
        );
        let before = seen.lock().unwrap().1.len();
        assert!(t.refresher.queue(&refresh(a)).await.unwrap());
        let again = jobs_of(&t.db).await;
        assert_eq!(again.len(), 2, "the finished job is renewed, not a new row");
        let of_a = again
            .iter()
            .find(|j| j.id == format!("refresh-catalog:{a}"))
            .unwrap();
        assert_eq!((of_a.status, of_a.attempts), (JobStatus::Queued, 0));
        assert_eq!(
            t.runner.run_pending("w").await.unwrap(),
            vec![Outcome::Done]
        );
        assert_eq!(seen.lock().unwrap().1.len(), before + 1);
    }

    /// A change made while its entity's job runs is not lost to that run: it waits in a
    /// second job, which later changes join.
    #[tokio::test]
    async fn a_change_during_a_run_waits_for_its_own() {
        use sea_orm::{ActiveModelTrait, ActiveValue::Set};
        let (url, _seen) = stand_in(0).await;
        let t = setup(&url).await;
        let a = "resource:default/a";
        assert!(t.refresher.queue(&refresh(a)).await.unwrap());
        let mut running: job::ActiveModel = jobs_of(&t.db).await.pop().unwrap().into();
        running.status = Set(JobStatus::Running);
        running.update(&t.db).await.unwrap();
        assert!(t.refresher.queue(&refresh(a)).await.unwrap());
        assert!(t.refresher.queue(&refresh(a)).await.unwrap());
        let mut ids: Vec<(String, JobStatus)> = jobs_of(&t.db)
            .await
            .into_iter()
            .map(|j| (j.id, j.status))
            .collect();
        ids.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            ids,
            vec![
                (format!("refresh-catalog:{a}"), JobStatus::Running),
                (format!("refresh-catalog:{a}:again"), JobStatus::Queued),
            ]
        );
    }
}
