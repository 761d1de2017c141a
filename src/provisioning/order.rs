//! Placing an order: check it against the guardrails, then store it with their verdict.
//! Shared by the REST API and the `paved:provision` action.

use serde_json::Value;

use super::requests::{self, CreateError, Created, IdempotencyKey, Request, Verdict};
use crate::{
    auth::Principal,
    guardrails::{self, AssessError, Assessment, Inputs},
    policy::Violation,
    templates::{FieldError, Offering},
};

#[derive(Debug)]
pub enum Placed {
    /// Stored (pending or awaiting approval); `new` is false for a repeated idempotency key.
    Accepted { request: Request, new: bool },
    /// Stored as denied; every deny is listed.
    Denied {
        request: Request,
        deny: Vec<Violation>,
    },
    /// Refused by the form; nothing stored.
    Invalid(Vec<FieldError>),
}

#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error(transparent)]
    Assess(#[from] AssessError),
    #[error(transparent)]
    Create(#[from] CreateError),
}

pub async fn place(
    inputs: &Inputs<'_>,
    offering: &Offering,
    values: &Value,
    requester: &Principal,
    key: Option<IdempotencyKey>,
) -> Result<Placed, PlaceError> {
    let (request, estimate, decision) =
        match guardrails::assess(inputs, offering, values, requester, key).await? {
            Assessment::Invalid(errors) => return Ok(Placed::Invalid(errors)),
            Assessment::Decided {
                request,
                estimate,
                decision,
                ..
            } => (request, estimate, decision),
        };
    let verdict = Verdict {
        estimate: serde_json::to_value(&estimate).expect("estimate serializes"),
        decision,
    };
    let (request, new) =
        match requests::create(inputs.db, *request, verdict, inputs.max_attempts).await? {
            Created::New(r) => (r, true),
            Created::Existing(r) => (r, false),
        };
    if request.status == requests::RequestStatus::Denied {
        // From what was stored, so a retried key answers as the first call did.
        let deny = request
            .decision
            .as_ref()
            .and_then(|d| d.get("deny"))
            .and_then(|d| serde_json::from_value::<Vec<StoredViolation>>(d.clone()).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|v| Violation {
                policy: v.policy,
                rule: v.rule,
                message: v.message,
            })
            .collect();
        return Ok(Placed::Denied { request, deny });
    }
    Ok(Placed::Accepted { request, new })
}

#[derive(serde::Deserialize)]
struct StoredViolation {
    policy: String,
    rule: String,
    message: String,
}
