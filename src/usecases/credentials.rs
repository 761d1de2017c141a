//! Reading a resource's credentials: members of the owning team and platform-admins. Every
//! read, and every refused attempt, is on the audit trail.

use sea_orm::{DatabaseConnection, DbErr};
use serde_json::Value;

use super::Refused;
use crate::{
    access::{self, Act, Target},
    db,
    provisioning::engine,
    vocab::{principal::Principal, secret_box::SecretBox},
};

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("no resource with id {0:?}")]
    NotFound(String),
    #[error("{0}")]
    Refused(Refused),
    #[error("resource {0} has no credentials (yet)")]
    NotYet(String),
    /// They could not be opened (the cause is for paved's log, never for the caller).
    #[error("{0}")]
    Unreadable(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// The credentials of resource `id`, per part (host, port, username, password, url).
pub async fn read(
    db: &DatabaseConnection,
    secrets: &SecretBox,
    who: &Principal,
    id: &str,
) -> Result<Value, CredentialsError> {
    let target = format!("resource:{id}");
    let Some(res) = db::resources::by_id(db, id).await? else {
        return Err(CredentialsError::NotFound(id.into()));
    };
    let asked = Target::Resource { owner: &res.owner };
    if let Err(d) = access::authorize(who, Act::ReadCredentials, asked) {
        // Refused attempts are on the record too.
        crate::audit::record_by(db, who, "credentials.read", &target, "denied", None).await;
        return Err(match Refused::of(d) {
            None => CredentialsError::NotFound(id.into()),
            Some(r) => CredentialsError::Refused(r),
        });
    }
    let creds = engine::credentials(db, secrets, id)
        .await
        .map_err(CredentialsError::Unreadable)?
        .ok_or_else(|| CredentialsError::NotYet(id.into()))?;
    tracing::info!(resource_id = %id, reader = %who.subject, "credentials read");
    crate::audit::record_by(db, who, "credentials.read", &target, "read", None).await;
    Ok(creds)
}
