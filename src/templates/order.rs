//! An order checked against its offering: values validated against the form, the plan
//! rendered and checked, the owner parsed. Only [`NewRequest::prepare`] makes one.

use serde_json::Value;

use super::{Offering, RenderError, RenderedSpec, Renderer, ValidValues};
use crate::vocab::{entity_ref::EntityRef, field_error::FieldError, status::Operation};

/// A client-chosen key that makes a create safe to retry (Backstage re-runs steps on task
/// recovery and passes `${{ context.task.id }}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 200 {
            return Err("must be 1-200 characters".into());
        }
        if s.chars().any(|c| c.is_control()) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Everything a create needs, already checked: values validated against the template, the
/// plan rendered, owner parsed.
#[derive(Debug)]
pub struct NewRequest {
    pub offering: String,
    pub template_version: String,
    /// The form values, validated, defaults applied.
    pub values: ValidValues,
    pub spec: RenderedSpec,
    pub owner: EntityRef,
    pub requester: String,
    pub idempotency_key: Option<IdempotencyKey>,
    /// Create, or update of `resource_id`.
    pub operation: Operation,
    pub resource_id: Option<String>,
}

/// Why a request could not be prepared.
#[derive(Debug)]
pub enum PrepareError {
    /// The values break the template's rules (every violation listed).
    Invalid(Vec<FieldError>),
    /// The template itself cannot render its plan (an author's bug, not the requester's).
    Template(RenderError),
}

impl NewRequest {
    /// Validates `values` against the offering's form, renders its plan and checks the result.
    pub fn prepare(
        offering: &Offering,
        renderer: &Renderer,
        values: &Value,
        requester: String,
        idempotency_key: Option<IdempotencyKey>,
    ) -> Result<Self, PrepareError> {
        let valid = offering.validate(values).map_err(PrepareError::Invalid)?;
        let mut spec = offering
            .render(renderer, &valid)
            .map_err(PrepareError::Template)?;
        let owner = spec.check().map_err(PrepareError::Invalid)?;
        Ok(Self {
            offering: offering.name.clone(),
            template_version: offering.version.clone(),
            values: valid,
            spec,
            owner,
            requester,
            idempotency_key,
            operation: Operation::Create,
            resource_id: None,
        })
    }
}
