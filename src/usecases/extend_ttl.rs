//! Extending an ephemeral resource's time to live, within its offering's maximum lifetime.

use sea_orm::DbErr;
use serde_json::json;

use super::{Ctx, Refused, resource_for};
use crate::{
    access::Act,
    db::{self, entities::resource},
    templates::Catalog,
    vocab::{field_error::FieldError, principal::Principal, status::ResourceStatus},
};

#[derive(Debug, thiserror::Error)]
pub enum ExtendError {
    #[error("no resource with id {0:?}")]
    NotFound(String),
    #[error("{0}")]
    Refused(Refused),
    /// The resource cannot be extended in its state (no expiry, deleted, busy).
    #[error("{0}")]
    Conflict(String),
    /// The asked extension breaks a rule (named field and rule).
    #[error("{0}")]
    Invalid(FieldError),
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Extends `resource_id`'s expiry by `hours`, counted from its current expiry (or from now if
/// that has passed). The whole lifetime (creation to new expiry) stays within the offering's
/// `ttl.max_hours`. Members of the owning team and platform-admins may extend.
pub async fn extend(
    ctx: Ctx<'_>,
    offerings: &Catalog,
    who: &Principal,
    resource_id: &str,
    hours: i64,
) -> Result<resource::Model, ExtendError> {
    let now = ctx.now;
    let res = match resource_for(ctx.db, who, resource_id, |_| Act::Change).await? {
        Ok(res) => res,
        Err(None) => return Err(ExtendError::NotFound(resource_id.into())),
        Err(Some(r)) => return Err(ExtendError::Refused(r)),
    };
    let max_hours = offerings
        .get(&res.offering)
        .and_then(|o| o.spec.ttl.as_ref().map(|t| t.max_hours));
    if res.deleted_at.is_some() || res.status != ResourceStatus::Ready {
        return Err(ExtendError::Conflict(format!(
            "resource {resource_id} is {}; only ready resources can be extended",
            if res.deleted_at.is_some() {
                ResourceStatus::Deleted
            } else {
                res.status
            }
        )));
    }
    let Some(current) = res.expires_at else {
        return Err(ExtendError::Conflict(format!(
            "resource {resource_id} does not expire (its offering {} has no TTL)",
            res.offering
        )));
    };
    let Some(max_hours) = max_hours else {
        return Err(ExtendError::Conflict(format!(
            "offering {} declares no maximum TTL (ttl.max_hours), so its resources cannot be extended",
            res.offering
        )));
    };
    let invalid = |rule: &str, message: String| {
        ExtendError::Invalid(FieldError {
            field: "hours".into(),
            rule: rule.into(),
            message,
        })
    };
    if hours < 1 {
        return Err(invalid("minimum", "must be at least 1".into()));
    }
    let limit = res.created_at + chrono::Duration::hours(i64::from(max_hours));
    let from = current.max(now);
    let remaining = ((limit - from).num_minutes() / 60).max(0);
    if hours > i64::from(max_hours) || from + chrono::Duration::hours(hours) > limit {
        return Err(invalid(
            "maximum",
            format!(
                "must be <= {remaining}: {} allows at most {max_hours} hours from creation to expiry (until {})",
                res.offering,
                limit.to_rfc3339()
            ),
        ));
    }
    let new = from + chrono::Duration::hours(hours);
    // Conditional on the expiry we read: two extensions at once cannot both extend from it.
    if !db::resources::extend_expiry(ctx.db, resource_id, current, new, now).await? {
        return Err(ExtendError::Conflict(format!(
            "resource {resource_id} changed meanwhile; read it again and retry"
        )));
    }
    crate::audit::record_by(
        ctx.db,
        who,
        "resource.ttl_extended",
        &format!("resource:{resource_id}"),
        "extended",
        Some(json!({"hours": hours, "from": current, "to": new, "maxExpiresAt": limit})),
    )
    .await;
    let extended = db::resources::by_id(ctx.db, resource_id)
        .await?
        .ok_or_else(|| ExtendError::NotFound(resource_id.to_owned()))?;
    tracing::info!(resource_id, by = %who.subject, hours, expires_at = ?extended.expires_at, "expiry extended");
    Ok(extended)
}
