//! Logs (tracing: human by default, JSON by config) and Prometheus metrics.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::{LogFormat, LogSettings};

/// Installs the global log subscriber. `RUST_LOG` overrides `log.level`. Safe to call twice
/// (tests start several apps in one process): the first call wins.
pub fn init_logs(settings: &LogSettings) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(&settings.level));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match settings.format {
        // Colour only for a person at a terminal: escapes in a shipped log file are noise.
        LogFormat::Human => registry
            .with(
                fmt::layer()
                    .with_target(true)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
    };
}

/// Buckets for HTTP latency, in seconds: from sub-millisecond API reads to bounded action waits.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];

/// Order to finish, in seconds: a cache in a second, an approval in hours.
const FINISH_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0, 604800.0,
];

/// What each metric means, so `/metrics` carries a HELP line for it.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "paved_http_requests_total",
        "HTTP requests answered, by method, route template and status"
    );
    describe_histogram!(
        "paved_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request"
    );
    describe_counter!(
        "paved_requests_finished_total",
        "Provisioning requests this replica's workers finished, by operation and outcome"
    );
    describe_histogram!(
        "paved_request_time_to_finish_seconds",
        Unit::Seconds,
        "Order to finish of the requests this replica's workers finished (approval waits included)"
    );
    describe_gauge!(
        "paved_jobs_queued",
        "Jobs waiting for a worker, by job type (database-wide: the same on every replica)"
    );
    describe_gauge!(
        "paved_jobs_running",
        "Jobs a worker holds, by job type (database-wide)"
    );
    describe_gauge!(
        "paved_jobs_oldest_queued_age_seconds",
        Unit::Seconds,
        "Age of the oldest job due and waiting for a worker, by job type (database-wide; 0 when none)"
    );
    describe_gauge!(
        "paved_time_to_infrastructure_seconds",
        Unit::Seconds,
        "Order to ready of create requests that succeeded in the report window, by statistic (database-wide)"
    );
    describe_gauge!(
        "paved_request_success_ratio",
        "Succeeded over finished requests in the report window (database-wide)"
    );
    describe_gauge!(
        "paved_requests_finished",
        "Requests that finished in the report window, by outcome (database-wide)"
    );
    describe_gauge!(
        "paved_requests_by_team",
        "Requests placed in the report window, by team (database-wide)"
    );
    describe_gauge!(
        "paved_policy_decisions",
        "Policy decisions in the report window, by kind and rule (database-wide)"
    );
    describe_gauge!(
        "paved_approvals_pending",
        "Approvals waiting for a decision (database-wide)"
    );
    describe_gauge!(
        "paved_approvals_oldest_age_seconds",
        Unit::Seconds,
        "Age of the oldest pending approval (database-wide; 0 when none)"
    );
    describe_gauge!(
        "paved_resources_active",
        "Live resources, by team and offering (database-wide)"
    );
    describe_gauge!(
        "paved_resources_monthly_cost",
        "Monthly cost of live resources in the price book's currency, by team and offering (database-wide)"
    );
    describe_gauge!(
        "paved_drift_incidents",
        "Drift findings detected in the report window (database-wide)"
    );
    describe_gauge!("paved_drift_open", "Open drift findings (database-wide)");
    describe_gauge!(
        "paved_cleanup_monthly_savings",
        "Monthly cost of resources cleaned up in the report window (database-wide)"
    );
}

/// The process-wide Prometheus recorder. The `metrics` facade has one global recorder, so every
/// app instance in a process shares it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_duration_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .expect("static bucket list is not empty")
                .set_buckets_for_metric(
                    Matcher::Full("paved_request_time_to_finish_seconds".into()),
                    FINISH_BUCKETS,
                )
                .expect("static bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Only one global recorder can exist; if something else installed one first, ours
            // records nothing, and /metrics would silently be empty.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            handle
        })
        .clone()
}
