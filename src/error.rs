//! Errors as Backstage clients expect them.
//!
//! Every failure leaves paved in Backstage's error envelope
//! (`{"error":{"name","message"},"request":{"method","url"},"response":{"statusCode"}}`,
//! see docs/backstage-protocol.md §5). Handlers return [`ApiError`]; the envelope needs the
//! request's method and URL, which handlers do not have, so [`ApiError`] renders a bare response
//! carrying an [`ErrorPayload`] extension and the [`error_envelope`] middleware completes it.

use axum::{
    Json,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::{Map, Value};

/// Backstage error names (`@backstage/errors`), plus the two `http-errors` names Backstage's own
/// Express stack emits for 405 and 413.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorName {
    Input,
    Authentication,
    NotAllowed,
    NotFound,
    Conflict,
    MethodNotAllowed,
    PayloadTooLarge,
    NotImplemented,
    ServiceUnavailable,
    Internal,
}

impl ErrorName {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorName::Input => "InputError",
            ErrorName::Authentication => "AuthenticationError",
            ErrorName::NotAllowed => "NotAllowedError",
            ErrorName::NotFound => "NotFoundError",
            ErrorName::Conflict => "ConflictError",
            ErrorName::MethodNotAllowed => "MethodNotAllowedError",
            ErrorName::PayloadTooLarge => "PayloadTooLargeError",
            ErrorName::NotImplemented => "NotImplementedError",
            ErrorName::ServiceUnavailable => "ServiceUnavailableError",
            ErrorName::Internal => "Error",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorName::Input => StatusCode::BAD_REQUEST,
            ErrorName::Authentication => StatusCode::UNAUTHORIZED,
            ErrorName::NotAllowed => StatusCode::FORBIDDEN,
            ErrorName::NotFound => StatusCode::NOT_FOUND,
            ErrorName::Conflict => StatusCode::CONFLICT,
            ErrorName::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorName::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorName::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ErrorName::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorName::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error as the API reports it. `details` become extra fields of the `error` object (Backstage
/// keeps enumerable fields of serialized errors), e.g. the full list of schema violations.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub name: ErrorName,
    pub message: String,
    pub details: Map<String, Value>,
}

impl ApiError {
    /// The answer to an authorization refusal. `absent` is what a missing target answers: an
    /// invisible one answers exactly the same.
    pub fn denied(d: crate::access::Denied, absent: impl FnOnce() -> String) -> Self {
        use crate::access::Denied;
        match d {
            Denied::NotFound => Self::not_found(absent()),
            d @ Denied::Unauthenticated(_) => Self::new(ErrorName::Authentication, d.to_string()),
            Denied::Forbidden(m) => {
                Self::new(ErrorName::NotAllowed, m.clone()).with_reason_phrase(&m)
            }
        }
    }

    pub fn new(name: ErrorName, message: impl Into<String>) -> Self {
        Self {
            name,
            message: message.into(),
            details: Map::new(),
        }
    }
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(ErrorName::Input, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorName::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorName::Conflict, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorName::ServiceUnavailable, message)
    }
    /// An unexpected failure: the cause is logged, the client gets a generic message so that no
    /// internal detail (connection strings, SQL) leaks.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            ErrorName::Internal,
            "internal error; see paved's log for this request id",
        )
    }
    /// Puts a readable summary on the HTTP/1.1 status line. Backstage's scaffolder shows only
    /// `Request failed with <status> <reason phrase>` in the task log, so this is where the
    /// reason a developer needs must go.
    pub fn with_reason_phrase(self, phrase: &str) -> Self {
        let clean: String = phrase
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .take(200)
            .collect();
        self.with_detail(REASON_PHRASE_KEY, clean)
    }

    pub fn with_detail(mut self, key: &str, value: impl Serialize) -> Self {
        self.details.insert(
            key.to_owned(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

/// What [`ApiError`] leaves on the response for [`error_envelope`] to render.
#[derive(Debug, Clone)]
pub struct ErrorPayload(pub ApiError);

/// Detail key carrying the status-line text; moved to the status line, not into the body.
const REASON_PHRASE_KEY: &str = "__reasonPhrase";

impl IntoResponse for ApiError {
    fn into_response(mut self) -> Response {
        let mut res = self.name.status().into_response();
        if let Some(Value::String(phrase)) = self.details.remove(REASON_PHRASE_KEY)
            && let Ok(p) = hyper::ext::ReasonPhrase::try_from(phrase.into_bytes())
        {
            res.extensions_mut().insert(p);
        }
        res.extensions_mut().insert(ErrorPayload(self));
        res
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        match err {
            sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_) => {
                tracing::error!(error = %err, "database unavailable");
                ApiError::unavailable("database unavailable; try again shortly")
            }
            other => ApiError::internal(other),
        }
    }
}

/// Middleware: turns every error response into Backstage's envelope, whatever produced it
/// (handlers, extractor rejections, the router's fallbacks, body limits). Its state is the
/// plugin base path (`/api/<plugin id>`), which Backstage strips before reporting
/// `request.url` ("relative to the plugin router").
pub async fn error_envelope(
    axum::extract::State(plugin_base): axum::extract::State<std::sync::Arc<str>>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().to_string();
    let uri = req.uri();
    let full = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| uri.path().to_owned());
    let url = match full.strip_prefix(&*plugin_base) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') => {
            if rest.is_empty() {
                "/".to_owned()
            } else {
                rest.to_owned()
            }
        }
        _ => full,
    };

    let mut res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let payload = match res.extensions_mut().remove::<ErrorPayload>() {
        Some(ErrorPayload(err)) => err,
        None => {
            // Produced by something other than a handler: keep the status, name it.
            if res.extensions().get::<KeepBody>().is_some() {
                return res;
            }
            fallback_error(status)
        }
    };
    let mut error = Map::new();
    error.insert("name".into(), Value::String(payload.name.as_str().into()));
    error.insert("message".into(), Value::String(payload.message.clone()));
    for (k, v) in payload.details {
        error.entry(k).or_insert(v);
    }
    let body = serde_json::json!({
        "error": error,
        "request": {"method": method, "url": url},
        "response": {"statusCode": status.as_u16()},
    });
    let (mut parts, _) = res.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Json(body).into_response().into_body())
}

/// Marks a non-2xx response whose body already has the shape Backstage uses for it (health
/// checks answer `{"status":"error","message"}`, not the error envelope).
#[derive(Debug, Clone, Copy)]
pub struct KeepBody;

fn fallback_error(status: StatusCode) -> ApiError {
    let name = match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => ErrorName::Input,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorName::Input,
        StatusCode::UNAUTHORIZED => ErrorName::Authentication,
        StatusCode::FORBIDDEN => ErrorName::NotAllowed,
        StatusCode::NOT_FOUND => ErrorName::NotFound,
        StatusCode::CONFLICT => ErrorName::Conflict,
        StatusCode::METHOD_NOT_ALLOWED => ErrorName::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorName::PayloadTooLarge,
        StatusCode::NOT_IMPLEMENTED => ErrorName::NotImplemented,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => {
            ErrorName::ServiceUnavailable
        }
        _ => ErrorName::Internal,
    };
    let message = match name {
        ErrorName::NotFound => "no such route".to_owned(),
        ErrorName::MethodNotAllowed => "method not allowed on this route".to_owned(),
        ErrorName::PayloadTooLarge => "request body is larger than the configured limit".to_owned(),
        _ => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_owned(),
    };
    ApiError::new(name, message)
}

/// Backstage's error envelope, as documented in the OpenAPI document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorObject,
    pub request: ErrorRequest,
    pub response: ErrorResponse,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorObject {
    /// InputError, AuthenticationError, NotAllowedError, NotFoundError, ConflictError,
    /// MethodNotAllowedError, PayloadTooLargeError, ServiceUnavailableError or Error.
    pub name: String,
    pub message: String,
    /// For schema violations: every violated rule (`field`, `rule`, `message`).
    #[schema(value_type = Option<Vec<crate::vocab::field_error::FieldError>>)]
    pub errors: Option<Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorRequest {
    pub method: String,
    /// Path and query, relative to the plugin base (`/api/paved`).
    pub url: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorResponse {
    pub status_code: u16,
}

// The one mapping from the use cases' typed errors to what the API answers. Messages and
// statuses are part of the API: tests assert them.

use crate::{
    policy::Violation,
    provisioning::requests::{CreateError, Request as PavedRequest},
    usecases::{
        Refused, assess::AssessError, budget::BudgetError, cancel::CancelError,
        credentials::CredentialsError, decide::DecideError, delete::DeleteError,
        extend_ttl::ExtendError, place::PlaceError, update::UpdateError,
    },
    vocab::field_error::FieldError,
};

impl ApiError {
    /// 403 with the reason on the status line (all Backstage shows).
    fn forbidden(m: String) -> Self {
        Self::new(ErrorName::NotAllowed, m.clone()).with_reason_phrase(&m)
    }

    /// Values that break `offering`'s form: every violation in the body.
    pub fn invalid_values(offering: &str, errors: &[FieldError]) -> Self {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        Self::input(format!(
            "values do not match the form of {offering}: {}",
            list.join("; ")
        ))
        .with_detail("errors", errors)
        .with_reason_phrase(&format!("Invalid values: {}", list.join("; ")))
    }

    /// 403 with every deny in the body and the first one on the status line.
    pub fn policy_denied(request: &PavedRequest, deny: &[Violation]) -> Self {
        let first = deny
            .first()
            .map(|v| format!("Policy {} denied: {}", v.rule, v.message))
            .unwrap_or_else(|| "Denied by policy".into());
        let all: Vec<String> = deny
            .iter()
            .map(|v| format!("{}: {}", v.rule, v.message))
            .collect();
        Self::new(
            ErrorName::NotAllowed,
            format!(
                "request {} denied by policy: {}",
                request.id,
                all.join("; ")
            ),
        )
        .with_detail("requestId", &request.id)
        .with_detail("errors", deny)
        .with_reason_phrase(&first)
    }

    /// An order of `offering` that could not be placed.
    pub fn place(offering: &str, e: PlaceError) -> Self {
        match e {
            PlaceError::NotAllowed(m) => Self::forbidden(m),
            PlaceError::Create(e @ CreateError::KeyReused { .. }) => Self::conflict(e.to_string()),
            PlaceError::NameTaken(t) => {
                let m = t.message();
                let mut e = Self::conflict(m.clone())
                    .with_reason_phrase(&format!("Name taken: {m}"))
                    .with_detail("entityRef", t.entity_ref())
                    .with_detail("errors", [t.field_error()]);
                if let Some(by) = &t.existing {
                    e = e.with_detail("resourceId", &by.id);
                }
                e
            }
            PlaceError::Create(CreateError::Db(e)) | PlaceError::Assess(AssessError::Db(e)) => {
                e.into()
            }
            PlaceError::Assess(AssessError::Rule(crate::guardrails::RuleError::Template(e))) => {
                Self::new(
                    ErrorName::Internal,
                    format!(
                        "template {offering} cannot render or price its provisioning spec ({e}); the platform team must fix the template"
                    ),
                )
            }
            PlaceError::Assess(AssessError::Rule(e @ crate::guardrails::RuleError::Policy(_))) => {
                Self::new(ErrorName::Internal, e.to_string())
            }
            // A plan that could not run now (busy, its lock, the CLI's start) may next time; one
            // that failed names its cause (a module's variable validation, its error).
            PlaceError::Assess(
                e @ AssessError::Plan {
                    error: crate::provisioning::drivers::DriverError::Transient(_),
                    ..
                },
            ) => Self::unavailable(e.to_string()),
            PlaceError::Assess(e @ AssessError::Plan { .. }) => Self::input(e.to_string()),
        }
    }

    /// A field of the input that breaks a rule, named with the rule.
    pub fn field(e: FieldError) -> Self {
        Self::input(e.to_string())
            .with_reason_phrase(&format!("Invalid input: {e}"))
            .with_detail("errors", [e])
    }
}

/// A refusal of a visible target (an invisible one is each use case's `NotFound`).
impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        match r {
            r @ Refused::Unauthenticated(_) => Self::new(ErrorName::Authentication, r.to_string()),
            Refused::Forbidden(m) => Self::forbidden(m),
        }
    }
}

impl From<DeleteError> for ApiError {
    fn from(e: DeleteError) -> Self {
        match e {
            DeleteError::NotFound { id } => Self::not_found(format!("no resource with id {id:?}")),
            DeleteError::Refused(r) => r.into(),
            DeleteError::Protected(m) => Self::forbidden(m),
            e @ (DeleteError::AlreadyDeleted { .. } | DeleteError::Busy { .. }) => {
                Self::conflict(e.to_string())
            }
            DeleteError::Db(e) => e.into(),
        }
    }
}

impl From<UpdateError> for ApiError {
    fn from(e: UpdateError) -> Self {
        match e {
            e @ UpdateError::NotFound(_) => Self::not_found(e.to_string()),
            UpdateError::Refused(r) => r.into(),
            e @ (UpdateError::NotReady { .. }
            | UpdateError::NoDrift(_)
            | UpdateError::Busy { .. }) => Self::conflict(e.to_string()),
            e @ UpdateError::NoOffering(_) => Self::not_found(e.to_string()),
            UpdateError::Denied { request, deny } => Self::policy_denied(&request, &deny),
            UpdateError::Invalid { offering, errors } => Self::invalid_values(&offering, &errors),
            UpdateError::Place { offering, error } => Self::place(&offering, error),
            e @ UpdateError::NoCurrentValues(_) => Self::internal(e),
            UpdateError::Db(e) => e.into(),
        }
    }
}

impl From<ExtendError> for ApiError {
    fn from(e: ExtendError) -> Self {
        match e {
            e @ ExtendError::NotFound(_) => Self::not_found(e.to_string()),
            ExtendError::Refused(r) => r.into(),
            ExtendError::Conflict(m) => Self::conflict(m.clone()).with_reason_phrase(&m),
            ExtendError::Invalid(e) => Self::input(e.to_string())
                .with_detail("errors", [&e])
                .with_reason_phrase(&format!("Invalid input: {e}")),
            ExtendError::Db(e) => e.into(),
        }
    }
}

impl From<CancelError> for ApiError {
    fn from(e: CancelError) -> Self {
        match e {
            e @ CancelError::NotFound { .. } => Self::not_found(e.to_string()),
            CancelError::Refused(r) => r.into(),
            e @ CancelError::Finished { .. } => Self::conflict(e.to_string()),
            CancelError::Db(e) => e.into(),
        }
    }
}

impl From<DecideError> for ApiError {
    fn from(e: DecideError) -> Self {
        match e {
            e @ DecideError::NotFound(_) => Self::not_found(e.to_string()),
            e @ DecideError::NotAwaiting { .. } => Self::conflict(e.to_string()),
            e @ (DecideError::OwnRequest | DecideError::NotAllowed(_)) => {
                Self::new(ErrorName::NotAllowed, e.to_string())
            }
            DecideError::Refused(r) => r.into(),
            DecideError::Db(e) => e.into(),
        }
    }
}

impl From<BudgetError> for ApiError {
    fn from(e: BudgetError) -> Self {
        match e {
            e @ BudgetError::NotFound { .. } => Self::not_found(e.to_string()),
            BudgetError::Refused(r) => r.into(),
            e @ BudgetError::InvalidLimit => Self::input(e.to_string()),
            BudgetError::Db(e) => e.into(),
        }
    }
}

impl From<CredentialsError> for ApiError {
    fn from(e: CredentialsError) -> Self {
        match e {
            e @ (CredentialsError::NotFound(_) | CredentialsError::NotYet(_)) => {
                Self::not_found(e.to_string())
            }
            CredentialsError::Refused(r) => r.into(),
            CredentialsError::Unreadable(cause) => Self::internal(cause),
            CredentialsError::Db(e) => e.into(),
        }
    }
}
