//! Updating a resource (resize, connection limit, ...): an `update` request that goes through
//! the form, cost and policies again, then converges each part. Reverting drift is the same
//! update with no changed values.

use serde_json::Value;

use super::{
    Refused,
    assess::Inputs,
    place::{self, PlaceError, Placed},
    resource_for,
};
use crate::{
    access::Act,
    policy::Violation,
    provisioning::requests::{self, Request},
    templates::Catalog,
    vocab::{field_error::FieldError, principal::Principal, status::ResourceStatus},
};

/// Why the update is asked for: it words what a resource that cannot take it is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Change,
    /// Re-apply the desired state over drift; `open_findings` says whether there is any.
    Revert {
        open_findings: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("no resource with id {0:?}")]
    NotFound(String),
    #[error("{0}")]
    Refused(Refused),
    #[error("resource {id} is {status}; only ready resources can be {verb}")]
    NotReady {
        id: String,
        status: ResourceStatus,
        verb: &'static str,
    },
    #[error("resource {0} has no open drift findings; check it first (POST …/drift/check)")]
    NoDrift(String),
    #[error("resource {id} is busy with request {request}; wait for it to finish")]
    Busy { id: String, request: String },
    #[error("no offering named {0:?}")]
    NoOffering(String),
    /// Stored as denied by policy; every deny is listed.
    #[error("request {} denied by policy", request.id)]
    Denied {
        request: Box<Request>,
        deny: Vec<Violation>,
    },
    #[error("values do not match the form of {offering}")]
    Invalid {
        offering: String,
        errors: Vec<FieldError>,
    },
    #[error("{error}")]
    Place { offering: String, error: PlaceError },
    /// paved's own inconsistency: a ready resource always has a successful request.
    #[error("resource {0} has no successful request")]
    NoCurrentValues(String),
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
}

/// Starts an update of resource `id` for `who` with `values` (the changed ones; the rest stay
/// as ordered).
pub async fn update(
    inputs: &Inputs<'_>,
    offerings: &Catalog,
    who: &Principal,
    id: &str,
    values: &Value,
    purpose: Purpose,
) -> Result<Request, UpdateError> {
    let res = match resource_for(inputs.db, who, id, |_| Act::Change).await? {
        Ok(res) => res,
        Err(None) => return Err(UpdateError::NotFound(id.into())),
        Err(Some(r)) => return Err(UpdateError::Refused(r)),
    };
    if res.deleted_at.is_some() || res.status != ResourceStatus::Ready {
        return Err(UpdateError::NotReady {
            id: id.into(),
            status: res.status,
            verb: match purpose {
                Purpose::Change => "changed",
                Purpose::Revert { .. } => "reverted",
            },
        });
    }
    if purpose
        == (Purpose::Revert {
            open_findings: false,
        })
    {
        return Err(UpdateError::NoDrift(id.into()));
    }
    if let Some(open) = requests::open_for_resource(inputs.db, id).await? {
        return Err(UpdateError::Busy {
            id: id.into(),
            request: open,
        });
    }
    let current = requests::current_values(inputs.db, id)
        .await?
        .ok_or_else(|| UpdateError::NoCurrentValues(id.into()))?;
    let offering = offerings
        .get(&res.offering)
        .ok_or_else(|| UpdateError::NoOffering(res.offering.clone()))?;
    let placed = place::place_update(inputs, &offering, &res, &current, values, who)
        .await
        .map_err(|error| UpdateError::Place {
            offering: offering.name.clone(),
            error,
        })?;
    match placed {
        Placed::Accepted { request, .. } => {
            tracing::info!(resource_id = %id, request_id = %request.id, by = %who.subject, ?purpose, "update requested");
            Ok(request)
        }
        Placed::Denied { request, deny } => Err(UpdateError::Denied {
            request: Box::new(request),
            deny,
        }),
        Placed::Invalid(errors) => Err(UpdateError::Invalid {
            offering: offering.name.clone(),
            errors,
        }),
    }
}
