//! Approvals: requests the policies sent to a human wait in `awaiting_approval` until someone
//! with the named role decides. Nobody decides their own request. Deciding is a use case
//! (`usecases::decide`); this is what a request waits for, as the API and actions show it.

use chrono::Utc;
use sea_orm::{DatabaseConnection, DbErr};
use serde::Serialize;

use crate::{db, db::entities::approval, vocab::status::ApprovalStatus};

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    pub id: String,
    pub required_role: String,
    /// Why the policy asked for it.
    pub reason: String,
    #[schema(value_type = String)]
    pub status: ApprovalStatus,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    pub decided_at: Option<chrono::DateTime<Utc>>,
}

/// One page of a request's approvals in the order they were asked for (ids are
/// time-ordered): at most `limit`, after the approval `after` when given.
pub async fn list_page(
    db: &DatabaseConnection,
    request_id: &str,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<Approval>, DbErr> {
    Ok(db::approvals::page(db, request_id, after, limit)
        .await?
        .into_iter()
        .map(to_api)
        .collect())
}

fn to_api(a: approval::Model) -> Approval {
    Approval {
        id: a.id,
        required_role: a.required_role,
        reason: a.reason,
        status: a.status,
        decided_by: a.decided_by,
        decision_reason: a.decision_reason,
        decided_at: a.decided_at,
    }
}

pub async fn list(db: &DatabaseConnection, request_id: &str) -> Result<Vec<Approval>, DbErr> {
    Ok(db::approvals::of_request(db, request_id)
        .await?
        .into_iter()
        .map(to_api)
        .collect())
}
