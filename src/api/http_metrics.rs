//! Prometheus metrics for every HTTP request, labelled by route template (not raw path, which
//! would explode cardinality) and status.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::app::AppState;

/// Inner layer (route_layer): only it can see which route matched; it hands the template to
/// the outer layer through the response.
pub async fn remember_route(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let mut res = next.run(req).await;
    if let Some(r) = route {
        res.extensions_mut().insert(r);
    }
    res
}

/// Outer layer: counts and times every request, unmatched ones included.
pub async fn record(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let res = next.run(req).await;
    let route = res
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let labels = [
        ("method", method),
        ("route", route),
        ("status", res.status().as_u16().to_string()),
    ];
    metrics::counter!("paved_http_requests_total", &labels).increment(1);
    metrics::histogram!("paved_http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    res
}

pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    // Platform gauges are computed at scrape time from paved's tables.
    if state.schema_ready() {
        let window = chrono::Duration::hours(state.settings().reports.window_hours as i64);
        match crate::reports::platform(state.db(), window, state.now(), &state.pricebook().currency)
            .await
        {
            Ok(m) => crate::reports::publish_gauges(&m),
            Err(e) => tracing::warn!(error = %e, "platform metrics unavailable for this scrape"),
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(),
    )
}
