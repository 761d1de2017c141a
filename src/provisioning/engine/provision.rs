//! The `provision` job: runs one request's steps (the engine does the work; this maps its
//! outcome onto the job system's).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Engine, Stop};
use crate::jobs::{BackgroundJob, JobContext, JobError};

/// Its payload is empty: the request is the job row's key (`request_id`), which request and
/// approval code set when they queue it in the transaction that makes the request pending.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Provision;

fn request_id(job: &JobContext) -> &str {
    job.key.as_deref().unwrap_or_default()
}

impl BackgroundJob for Provision {
    const JOB_NAME: &'static str = "provision";
    type Context = Engine;

    async fn run(&self, engine: &Engine, job: &JobContext) -> Result<(), JobError> {
        let request_id = request_id(job);
        match engine
            .provision(request_id, job.lease_flag(), job.stop_signal())
            .await
        {
            Ok(()) => Ok(()),
            Err(Stop::Cancelled) => {
                engine.clean_up_after(request_id).await;
                Ok(())
            }
            Err(Stop::HandOff) => Err(JobError::HandBack),
            Err(Stop::Transient(e)) => Err(JobError::Retry(e)),
            Err(Stop::Permanent(e)) => Err(JobError::Permanent(e)),
        }
    }

    async fn retrying(&self, engine: &Engine, job: &JobContext, delay: Duration, e: &str) {
        engine
            .log(
                request_id(job),
                None,
                "warn",
                &format!(
                    "attempt {} failed: {e}; retrying in {} ms",
                    job.attempt,
                    delay.as_millis()
                ),
            )
            .await;
    }

    async fn failed(&self, engine: &Engine, job: &JobContext, e: &str) {
        let request_id = request_id(job);
        engine.fail_request(request_id, e).await;
        engine.clean_up_after(request_id).await;
    }
}
