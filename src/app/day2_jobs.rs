//! The day-2 schedules as periodic jobs: each is queued once per interval across all replicas
//! (`jobs::enqueue_periodic`), then any runner takes it like any other job. The work itself is
//! in `provisioning::{lifecycle, drift, usage}`; these bind it to the app's state.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::AppState;
use crate::{
    day2::{drift, lifecycle, usage},
    jobs::{self, BackgroundJob, JobContext, JobError},
};

/// A failed round is recorded on its job row and not retried: the next period runs it anew.
const ONE_ATTEMPT: i32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReapExpired;

impl BackgroundJob for ReapExpired {
    const JOB_NAME: &'static str = "reap-expired";
    type Context = AppState;
    async fn run(&self, st: &AppState, _: &JobContext) -> Result<(), JobError> {
        let started = lifecycle::reap(
            st.db(),
            st.notifier(),
            st.settings().engine.max_attempts,
            st.now(),
        )
        .await
        .map_err(|e| JobError::Retry(format!("reaper round: {e}")))?;
        if !started.is_empty() {
            st.wake_workers();
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WarnExpiring;

impl BackgroundJob for WarnExpiring {
    const JOB_NAME: &'static str = "warn-expiring";
    type Context = AppState;
    async fn run(&self, st: &AppState, _: &JobContext) -> Result<(), JobError> {
        lifecycle::warn_expiring(
            st.db(),
            st.notifier(),
            &st.settings().ttl.warn_before_hours,
            st.now(),
        )
        .await
        .map(|_| ())
        .map_err(|e| JobError::Retry(format!("expiry warnings round: {e}")))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanDrift;

impl BackgroundJob for ScanDrift {
    const JOB_NAME: &'static str = "scan-drift";
    type Context = AppState;
    async fn run(&self, st: &AppState, job: &JobContext) -> Result<(), JobError> {
        // One "now" for the round, from the app's clock like every other day-2 decision.
        let now = st.now();
        // A Terraform check's run lives as long as this claim (as a provision job's does).
        let claim = crate::provisioning::drivers::context::RunContext {
            job_id: Some(job.id.clone()),
            job_attempt: Some(job.attempt),
            ..Default::default()
        };
        let scan = drift::scan(st.db(), st.drivers(), st.notifier(), now);
        let scanned = crate::provisioning::drivers::context::scope(claim, scan)
            .await
            .map_err(|e| JobError::Retry(format!("drift scan: {e}")))?;
        for (name, id) in &scanned.changed {
            st.refresh_entity(name, id);
        }
        for (rid, part, n) in &scanned.self_transactions {
            usage::record_self_activity(st.db(), rid, &[(part.clone(), *n)], now).await;
        }
        tracing::info!(
            checked = scanned.checked,
            drifted = scanned.drifted,
            "drift scan finished"
        );
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SampleUsage;

impl BackgroundJob for SampleUsage {
    const JOB_NAME: &'static str = "sample-usage";
    type Context = AppState;
    async fn run(&self, st: &AppState, _: &JobContext) -> Result<(), JobError> {
        let now = st.now();
        usage::sample(st.db(), st.drivers(), now)
            .await
            .map_err(|e| JobError::Retry(format!("usage sampling: {e}")))?;
        usage::notify_unused(
            st.db(),
            st.notifier(),
            st.settings().unused.window_hours,
            &st.pricebook().currency,
            now,
        )
        .await
        .map(|_| ())
        .map_err(|e| JobError::Retry(format!("unused-resource alerts: {e}")))
    }
}

/// Registers the day-2 job types.
pub fn register(registry: jobs::Registry, st: &AppState) -> jobs::Registry {
    let st = std::sync::Arc::new(st.clone());
    registry
        .register::<ReapExpired>(st.clone())
        .register::<WarnExpiring>(st.clone())
        .register::<ScanDrift>(st.clone())
        .register::<SampleUsage>(st)
}

/// Queues this period's run of every schedule this configuration turns on (an interval of 0
/// turns one off) unless a replica already did; true when any was queued here.
pub async fn enqueue_due(st: &AppState, now: chrono::DateTime<chrono::Utc>) -> bool {
    let s = st.settings();
    let every = Duration::from_secs;
    let db = st.db();
    let mut results = Vec::new();
    if s.ttl.reaper_interval_seconds > 0 {
        let e = every(s.ttl.reaper_interval_seconds);
        results.push(jobs::enqueue_periodic(db, &ReapExpired, e, ONE_ATTEMPT, now).await);
        results.push(jobs::enqueue_periodic(db, &WarnExpiring, e, ONE_ATTEMPT, now).await);
    }
    if s.drift.scan_interval_seconds > 0 {
        let e = every(s.drift.scan_interval_seconds);
        results.push(jobs::enqueue_periodic(db, &ScanDrift, e, ONE_ATTEMPT, now).await);
    }
    if s.unused.sample_interval_seconds > 0 {
        let e = every(s.unused.sample_interval_seconds);
        results.push(jobs::enqueue_periodic(db, &SampleUsage, e, ONE_ATTEMPT, now).await);
    }
    let mut queued = false;
    for r in results {
        match r {
            Ok(q) => queued |= q,
            Err(e) => {
                tracing::warn!(error = %crate::vocab::redact::redact(&e.to_string()), "cannot queue a day-2 job")
            }
        }
    }
    queued
}

/// Whether any schedule is on.
pub fn any_enabled(st: &AppState) -> bool {
    let s = st.settings();
    s.ttl.reaper_interval_seconds > 0
        || s.drift.scan_interval_seconds > 0
        || s.unused.sample_interval_seconds > 0
}
