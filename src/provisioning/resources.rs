//! Provisioned resources as the API shows them.

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};
use serde::Serialize;
use serde_json::Value;

use crate::{db, db::entities::resource, vocab::status::ResourceStatus};

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    pub id: String,
    /// The `Resource` entity's `metadata.name`.
    pub name: String,
    pub offering: String,
    pub offering_version: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub environment: String,
    pub owner: String,
    pub system: Option<String>,
    pub component: Option<String>,
    /// provisioning, ready, failed, deleting, deleted.
    #[schema(value_type = String)]
    pub status: ResourceStatus,
    /// Non-secret outputs per part (host, port, database, username, key prefix).
    #[schema(value_type = Object)]
    pub outputs: Value,
    pub monthly_cost: Option<f64>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The request that created it.
    pub request_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub fn to_api(m: resource::Model) -> Resource {
    Resource {
        // A deleted resource gave its name back (see the engine's unpublish step).
        name: if m.deleted_at.is_some() {
            m.desired
                .pointer("/resource/name")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or(m.entity_name)
        } else {
            m.entity_name
        },
        id: m.id,
        offering: m.offering,
        offering_version: m.offering_version,
        resource_type: m.resource_type,
        environment: m.environment,
        owner: m.owner,
        system: m.system,
        component: m.component,
        status: if m.deleted_at.is_some() {
            ResourceStatus::Deleted
        } else {
            m.status
        },
        outputs: m.outputs,
        monthly_cost: m.monthly_cost_cents.map(|c| c as f64 / 100.0),
        expires_at: m.expires_at,
        request_id: m.request_id,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

pub async fn get(db: &DatabaseConnection, id: &str) -> Result<Option<Resource>, DbErr> {
    Ok(db::resources::by_id(db, id).await?.map(to_api))
}

/// Active resources, newest first, optionally of one owner and only of `visible` owners: at
/// most `limit`, older than `before` when given (ids are time-ordered, so the id is the
/// keyset and resources created meanwhile never shift a page).
pub async fn list_visible(
    db: &DatabaseConnection,
    owner: Option<&str>,
    visible: Option<&std::collections::BTreeSet<String>>,
    before: Option<&str>,
    limit: u64,
) -> Result<Vec<Resource>, DbErr> {
    Ok(db::resources::list_live(db, owner, visible, before, limit)
        .await?
        .into_iter()
        .map(to_api)
        .collect())
}
