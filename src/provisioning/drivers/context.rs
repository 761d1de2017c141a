//! What run a driver call belongs to (request, resource, step, job claim), for drivers that
//! report as they go or tie what they hold to the job's lease: the Terraform driver streams
//! the CLI's lines into the step's log and gives its state backend a run bound to the claim.
//!
//! A task-local set by the `provision` job and the engine around their driver calls, so the
//! [`super::Provisioner`] calls keep their shape; outside one (tools, tests, day-2), it is empty.

use std::future::Future;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunContext {
    pub request_id: Option<String>,
    pub resource_id: Option<String>,
    /// The step's name (`create db`), when a step is running.
    pub step: Option<String>,
    /// The job claim the call runs under: the job's id and its attempt (claim) number.
    pub job_id: Option<String>,
    pub job_attempt: Option<i32>,
}

tokio::task_local! {
    static CURRENT: RunContext;
}

/// The context of the calling task (empty outside one).
pub fn current() -> RunContext {
    CURRENT.try_with(Clone::clone).unwrap_or_default()
}

/// Runs `f` with `ctx` as its context.
pub async fn scope<F: Future>(ctx: RunContext, f: F) -> F::Output {
    CURRENT.scope(ctx, f).await
}

/// Runs `f` in step `step` of resource `resource_id`, keeping the rest of the current context.
pub async fn in_step<F: Future>(step: &str, resource_id: Option<&str>, f: F) -> F::Output {
    let mut ctx = current();
    ctx.step = Some(step.to_owned());
    if let Some(r) = resource_id {
        ctx.resource_id = Some(r.to_owned());
    }
    scope(ctx, f).await
}

/// Runs `f` on resource `resource_id` outside any request (a drift check), keeping the rest
/// of the current context.
pub async fn on_resource<F: Future>(resource_id: &str, f: F) -> F::Output {
    let mut ctx = current();
    ctx.resource_id = Some(resource_id.to_owned());
    scope(ctx, f).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_step_keeps_the_job_and_request_of_its_run() {
        assert_eq!(current(), RunContext::default());
        let run = RunContext {
            request_id: Some("r1".into()),
            job_id: Some("j1".into()),
            job_attempt: Some(2),
            ..Default::default()
        };
        let seen = scope(run, in_step("create db", Some("res1"), async { current() })).await;
        assert_eq!(seen.request_id.as_deref(), Some("r1"));
        assert_eq!(seen.job_attempt, Some(2));
        assert_eq!(seen.step.as_deref(), Some("create db"));
        assert_eq!(seen.resource_id.as_deref(), Some("res1"));
    }
}
