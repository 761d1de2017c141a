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
                .build_recorder();
            let handle = recorder.handle();
            // Only one global recorder can exist; if something else installed one first, ours
            // records nothing, and /metrics would silently be empty.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}
