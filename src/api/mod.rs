//! The HTTP layer: routes, OpenAPI document, middleware. Handlers stay thin; the work happens
//! in the domain modules.

mod actions;
mod audit;
mod catalog;
mod drift;
mod extract;
mod guardrails;
mod health;
mod http_metrics;
mod keys;
mod offerings;
pub mod page;
mod reports;
mod requests;
mod resources;
pub mod state;
mod storable;
mod terraform;

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request},
    http::HeaderName,
    middleware,
    routing::get,
};
use tower::ServiceBuilder;
use tower_http::{
    classify::ServerErrorsFailureClass,
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::Level;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};
use utoipa_swagger_ui::SwaggerUi;

use crate::{api::state::AppState, error};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "paved",
        description = "Self-service infrastructure for Backstage: offerings (Software Templates), provisioning requests, resources, guardrails.\n\nErrors use Backstage's envelope: `{\"error\":{\"name\",\"message\"},\"request\":{\"method\",\"url\"},\"response\":{\"statusCode\"}}`.",
        license(name = "Apache-2.0")
    ),
    servers((url = "/api/paved", description = "paved's plugin base path (plugin id `paved`)")),
    tags(
        (name = "offerings", description = "What developers can order: the bundled Software Templates"),
        (name = "requests", description = "Provisioning requests"),
        (name = "resources", description = "What paved provisioned, and its credentials"),
        (name = "guardrails", description = "Cost estimates, team budgets and spend, policies"),
        (name = "drift", description = "Differences between what paved provisioned and what exists, and resolving them"),
        (name = "audit", description = "The append-only record of every state change"),
        (name = "catalog", description = "What paved publishes in Backstage's catalog, as a change feed for its entity provider")
    )
)]
struct ApiDoc;

/// The plugin API (relative paths) and its OpenAPI document, from one definition.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(offerings::list))
        .routes(routes!(offerings::get))
        .routes(routes!(requests::create, requests::list))
        .routes(routes!(requests::get))
        .routes(routes!(requests::approve))
        .routes(routes!(requests::reject))
        .routes(routes!(requests::list_approvals))
        .routes(routes!(requests::logs))
        .routes(routes!(requests::cancel))
        .routes(routes!(resources::list))
        .routes(routes!(
            resources::get,
            resources::delete,
            resources::update
        ))
        .routes(routes!(resources::credentials))
        .routes(routes!(resources::extend))
        .routes(routes!(drift::get))
        .routes(routes!(drift::check))
        .routes(routes!(drift::revert))
        .routes(routes!(drift::accept))
        .routes(routes!(guardrails::estimate))
        .routes(routes!(guardrails::get_budget, guardrails::set_budget))
        .routes(routes!(guardrails::spend))
        .routes(routes!(reports::unused))
        .routes(routes!(reports::platform))
        .routes(routes!(reports::entity_cost))
        .routes(routes!(guardrails::resource_cost))
        .routes(routes!(guardrails::policies))
        .routes(routes!(guardrails::evaluate))
        .routes(routes!(audit::list))
        .routes(routes!(catalog::changes))
        .split_for_parts();
    document_common_errors(&mut doc);
    document_security(&mut doc);
    (router, doc)
}

/// The OpenAPI document the code describes (`paved openapi`, `openapi/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

/// Every operation takes a bearer token: a Backstage user or plugin token, or a static paved
/// token. Declared so generated clients and the reference page can send one.
fn document_security(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{
        HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
    };
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "A Backstage user or plugin token, or a static paved token (`auth.static_tokens`). Without one, only where `auth.allow_anonymous` lets the caller in.",
                ))
                .build(),
        ),
    );
    doc.security = Some(vec![SecurityRequirement::new(
        "bearer",
        Vec::<String>::new(),
    )]);
}

/// Answers every operation can give besides its own: malformed input (400), a refused or
/// missing token (401), still starting (503). Added here once, so no operation documents
/// fewer than it really returns (schemathesis checks that in CI).
fn document_common_errors(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                    .build(),
            )
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let responses = &mut op.responses.responses;
            // OpenAPI requires a description on every response; most say it with their body.
            for (code, response) in responses.iter_mut() {
                if let utoipa::openapi::RefOr::T(r) = response
                    && r.description.is_empty()
                {
                    r.description = code
                        .parse::<u16>()
                        .ok()
                        .and_then(|c| axum::http::StatusCode::from_u16(c).ok())
                        .and_then(|c| c.canonical_reason())
                        .unwrap_or("Response")
                        .to_owned();
                }
            }
            for (code, description) in [
                (
                    "400",
                    "Invalid input: the message names the field and the rule",
                ),
                ("401", "Missing or invalid credentials"),
                ("503", "paved is starting or its database is unavailable"),
            ] {
                responses
                    .entry(code.to_owned())
                    .or_insert_with(|| error(description).into());
            }
        }
    }
}

/// Paths outside the OpenAPI document. The router is built from these names, and the access
/// test walks them with the document's routes, so a route without an authorization row fails.
pub mod paths {
    /// Under the plugin base path (`/api/paved`).
    pub const ACTIONS_LIST: &str = "/.backstage/actions/v1/actions";
    pub const ACTIONS_INVOKE_V1: &str = "/.backstage/actions/v1/actions/{id}/invoke";
    pub const ACTIONS_INVOKE_V2: &str = "/.backstage/actions/v2/actions/{id}/invoke";
    pub const COST_INSIGHTS_SPLIT: &str =
        "/v1/cost-insights/entity/{namespace}/{kind}/{name}/{r}/{p}/{d}";
    pub const CATALOG_INDEX: &str = "/catalog/entities.yaml";
    pub const CATALOG_PAGE: &str = "/catalog/pages/{file}";
    pub const CATALOG_RESOURCE: &str = "/catalog/resources/{file}";
    pub const JWKS: &str = "/.backstage/auth/v1/jwks.json";
    /// Terraform's http state backend (GET, POST, LOCK, UNLOCK), for paved's own CLI runs.
    pub const TERRAFORM_STATE: &str = "/terraform/state/{resource}/{part}";
    /// The API reference and its document (also under the plugin base path).
    pub const DOCS: &str = "/docs";
    pub const OPENAPI: &str = "/openapi.json";
    /// At the root.
    pub const LIVENESS: &str = "/.backstage/health/v1/liveness";
    pub const READINESS: &str = "/.backstage/health/v1/readiness";
    pub const METRICS: &str = "/metrics";

    /// (method, path) of every route under the plugin base path that the document leaves out.
    pub const UNDER_PLUGIN: &[(&str, &str)] = &[
        ("GET", ACTIONS_LIST),
        ("POST", ACTIONS_INVOKE_V1),
        ("POST", ACTIONS_INVOKE_V2),
        ("GET", COST_INSIGHTS_SPLIT),
        ("GET", CATALOG_INDEX),
        ("GET", CATALOG_PAGE),
        ("GET", CATALOG_RESOURCE),
        ("GET", JWKS),
        ("GET", TERRAFORM_STATE),
        ("POST", TERRAFORM_STATE),
        ("LOCK", TERRAFORM_STATE),
        ("UNLOCK", TERRAFORM_STATE),
        ("GET", DOCS),
        ("GET", OPENAPI),
    ];
    /// (method, path) of the routes at the root.
    pub const AT_ROOT: &[(&str, &str)] = &[("GET", LIVENESS), ("GET", READINESS), ("GET", METRICS)];
}

/// CORS for the Backstage apps listed in `server.cors_origins` (none: no CORS headers). The
/// browser sends the user's Backstage token as a header, never a cookie, so no credentials mode.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderValue, Method, header};
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        // Checked at load (`config::check`): each is an ASCII origin.
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([HeaderName::from_static("x-request-id")])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// The whole HTTP app.
pub fn router(state: AppState) -> Router {
    let base = state.settings().plugin_base_path();
    let (api, mut doc) = api();
    doc.servers = Some(vec![utoipa::openapi::Server::new(base.clone())]);
    let request_id = HeaderName::from_static("x-request-id");
    let body_limit = state.settings().server.body_limit_bytes;

    let plugin = Router::new()
        .merge(api)
        .route(paths::ACTIONS_LIST, get(actions::list))
        .route(
            paths::ACTIONS_INVOKE_V1,
            axum::routing::post(actions::invoke_v1),
        )
        .route(
            paths::ACTIONS_INVOKE_V2,
            axum::routing::post(actions::invoke_v2),
        )
        .route(paths::COST_INSIGHTS_SPLIT, get(reports::entity_cost_split))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_schema,
        ))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .route_layer(middleware::from_fn(http_metrics::remember_route));
    // Catalog documents: Backstage's URL reader sends no token.
    let catalog = Router::new()
        .route(paths::CATALOG_INDEX, get(catalog::all))
        .route(paths::CATALOG_PAGE, get(catalog::page))
        .route(paths::CATALOG_RESOURCE, get(catalog::one))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_schema,
        ));
    let catalog = if state.settings().catalog.public {
        catalog
    } else {
        catalog.route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
    };
    // Backstage fetches paved's public keys without a token.
    let keys = Router::new()
        .route(paths::JWKS, get(keys::jwks))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_schema,
        ));
    // Terraform's state backend: a run's basic credentials, checked by the handler, not a
    // user's or plugin's token.
    let terraform = Router::new()
        .route(paths::TERRAFORM_STATE, axum::routing::any(terraform::state))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_schema,
        ));
    let plugin = plugin
        .merge(catalog.route_layer(middleware::from_fn(http_metrics::remember_route)))
        .merge(keys.route_layer(middleware::from_fn(http_metrics::remember_route)))
        .merge(terraform.route_layer(middleware::from_fn(http_metrics::remember_route)));
    Router::new()
        .nest(&base, plugin)
        .route(paths::LIVENESS, get(health::liveness))
        .route(paths::READINESS, get(health::readiness))
        .route(paths::METRICS, get(http_metrics::render))
        .route_layer(middleware::from_fn(storable::refuse_unstorable))
        .route_layer(middleware::from_fn(http_metrics::remember_route))
        .merge(
            SwaggerUi::new(format!("{base}{}", paths::DOCS))
                .url(format!("{base}{}", paths::OPENAPI), doc),
        )
        .fallback(|| async { error::ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request| {
                            let id = req
                                .headers()
                                .get("x-request-id")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-");
                            tracing::info_span!("http", request_id = %id, method = %req.method(), path = %req.uri().path())
                        })
                        .on_response(DefaultOnResponse::new().level(Level::INFO).latency_unit(tower_http::LatencyUnit::Millis))
                        // A 503 (starting, draining, a dependency down) is expected and
                        // already logged above with its status, not an error.
                        .on_failure(|class: ServerErrorsFailureClass, _: std::time::Duration, _: &tracing::Span| {
                            if !matches!(class, ServerErrorsFailureClass::StatusCode(s) if s == axum::http::StatusCode::SERVICE_UNAVAILABLE) {
                                tracing::error!(classification = %class, "response failed");
                            }
                        }),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(middleware::from_fn(http_metrics::record))
                .layer(middleware::from_fn_with_state(
                    std::sync::Arc::<str>::from(base.as_str()),
                    error::error_envelope,
                ))
                // A panicking handler answers 500 in Backstage's shape instead of dropping
                // the connection (and is logged).
                .layer(tower_http::catch_panic::CatchPanicLayer::custom(
                    |_: Box<dyn std::any::Any + Send>| {
                        axum::response::IntoResponse::into_response(error::ApiError::internal(
                            "a request handler panicked",
                        ))
                    },
                ))
                .layer(RequestBodyLimitLayer::new(body_limit)),
        )
        // Outermost, so a browser's preflight is answered before routing and authentication.
        .layer(tower::util::option_layer(cors(
            &state.settings().server.cors_origins,
        )))
        .with_state(state)
}

/// Authenticates every plugin route once: a presented token must be valid whatever the route,
/// and where anonymous access is off a token is required. The caller is left in the request's
/// extensions for handlers. Health and the API reference stay public; `/metrics` checks its
/// own credentials (the scrape token or a platform-admin).
async fn authenticate(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: middleware::Next,
) -> axum::response::Response {
    use axum::extract::FromRequestParts;
    let (mut parts, body) = req.into_parts();
    match crate::vocab::principal::Principal::from_request_parts(&mut parts, &state).await {
        Ok(principal) => {
            parts.extensions.insert(principal);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}

/// Until the schema is current, API calls would fail on missing tables: answer 503 instead.
async fn require_schema(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: middleware::Next,
) -> axum::response::Response {
    if state.schema_ready() {
        next.run(req).await
    } else {
        axum::response::IntoResponse::into_response(error::ApiError::unavailable(
            "paved is starting: database migrations have not been applied yet",
        ))
    }
}
