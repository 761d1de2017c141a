//! Prometheus metrics for every HTTP request, labelled by route template (not raw path, which
//! would explode cardinality) and status.

use std::time::{Duration, Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{
    api::state::AppState,
    error::{ApiError, ErrorName},
};

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

/// `/metrics` carries every team's costs and activity: it answers the scrape token
/// (`server.metrics_token_sha256`) and platform-admins. Without credentials: 401; a caller
/// who may not read them learns nothing more than that the route is not theirs (404).
pub async fn render(State(state): State<AppState>, mut parts: Parts) -> Response {
    if !is_scraper(&state, &parts) {
        use axum::extract::FromRequestParts;
        let who = match crate::vocab::principal::Principal::from_request_parts(&mut parts, &state)
            .await
        {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
        if who.is_anonymous() {
            return ApiError::new(
                ErrorName::Authentication,
                "/metrics needs the scrape token (server.metrics_token_sha256) or a platform-admin's credentials",
            )
            .into_response();
        }
        use crate::access::{Act, Target, authorize};
        if authorize(&who, Act::ReadPlatform, Target::Platform).is_err() {
            return ApiError::not_found("no such route").into_response();
        }
    }
    metrics_text(&state).await.into_response()
}

/// Whether the request carries the configured scrape token (compared by hash, in constant
/// time, like static tokens).
fn is_scraper(state: &AppState, parts: &Parts) -> bool {
    let expected = state.settings().server.metrics_token_sha256.as_deref();
    expected
        .zip(crate::auth::bearer(&parts.headers))
        .is_some_and(|(hash, token)| crate::auth::matches_hash(token, hash))
}

/// How old the gauges computed from paved's tables may be when a scrape renders them. Their
/// queries read every request of the report window, so scrapes closer together than this
/// (several Prometheus servers, an operator's `curl` loop, a load test) share one computation
/// instead of each adding a full read to the database's load. Far below any scrape interval.
pub const GAUGES_MAX_AGE: Duration = Duration::from_secs(1);

async fn metrics_text(state: &AppState) -> impl IntoResponse {
    // Platform gauges are computed at scrape time from paved's tables, at most once per
    // GAUGES_MAX_AGE; a scrape that arrives while they are computed waits for them.
    let mut computed = state.0.gauges_computed.lock().await;
    if state.schema_ready() && computed.is_none_or(|at| at.elapsed() >= GAUGES_MAX_AGE) {
        let started = Instant::now();
        if publish_table_gauges(state).await {
            *computed = Some(started);
        }
    }
    drop(computed);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(),
    )
}

/// Publishes the gauges read from paved's tables; false when a query failed (the next scrape
/// tries again).
async fn publish_table_gauges(state: &AppState) -> bool {
    let mut ok = true;
    let window = chrono::Duration::hours(state.settings().reports.window_hours as i64);
    match crate::reports::platform(state.db(), window, state.now(), &state.pricebook().currency)
        .await
    {
        Ok(m) => crate::reports::publish_gauges(&m),
        Err(e) => {
            ok = false;
            tracing::warn!(error = %e, "platform metrics unavailable for this scrape");
        }
    }
    match crate::jobs::storage::depth_by_kind(state.db(), state.now()).await {
        Ok(kinds) => {
            // One series per job type: its queue, what runs, how long the oldest waits.
            for (kind, d) in kinds {
                metrics::gauge!("paved_jobs_queued", "job" => kind.clone()).set(d.queued as f64);
                metrics::gauge!("paved_jobs_running", "job" => kind.clone()).set(d.running as f64);
                metrics::gauge!("paved_jobs_oldest_queued_age_seconds", "job" => kind)
                    .set(d.oldest_queued_age_seconds);
            }
        }
        Err(e) => {
            ok = false;
            tracing::warn!(error = %e, "queue depth unavailable for this scrape");
        }
    }
    ok
}
