//! The `provision` job: runs one request's steps (the engine does the work; this maps its
//! outcome onto the job system's).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Engine, Stop};
use crate::{
    jobs::{BackgroundJob, JobContext, JobError},
    provisioning::drivers::context::{self, RunContext},
};

/// Its payload is empty: the request is the job row's key (`request_id`), which request and
/// approval code set when they queue it in the transaction that makes the request pending.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Provision;

fn request_id(job: &JobContext) -> &str {
    job.key.as_deref().unwrap_or_default()
}

/// What the drivers' calls of a claim run under: its request and this claim of its job (a
/// Terraform run holds its state lock only while this claim's lease lives).
fn run_context(job: &JobContext) -> RunContext {
    RunContext {
        request_id: Some(request_id(job).to_owned()),
        job_id: Some(job.id.clone()),
        job_attempt: Some(job.attempt),
        ..Default::default()
    }
}

impl BackgroundJob for Provision {
    const JOB_NAME: &'static str = "provision";
    type Context = Engine;

    async fn run(&self, engine: &Engine, job: &JobContext) -> Result<(), JobError> {
        context::scope(run_context(job), Self::run_claimed(engine, job)).await
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
        context::scope(run_context(job), engine.clean_up_after(request_id)).await;
    }
}

impl Provision {
    async fn run_claimed(engine: &Engine, job: &JobContext) -> Result<(), JobError> {
        let request_id = request_id(job);
        match engine
            .provision(request_id, job.lease_flag(), job.stop_signal())
            .await
        {
            Ok(()) => Ok(()),
            Err(Stop::Cancelled(_)) => {
                engine.clean_up_after(request_id).await;
                Ok(())
            }
            Err(Stop::HandOff) => Err(JobError::HandBack),
            Err(Stop::Transient(e)) => Err(JobError::Retry(e)),
            Err(Stop::Permanent(e)) => Err(JobError::Permanent(e)),
        }
    }
}
