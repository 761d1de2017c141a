//! Approvals: requests the policies sent to a human wait in `awaiting_approval` until someone
//! with the named role decides. Nobody decides their own request.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use serde::Serialize;

use super::requests::{self, Request, RequestStatus};
use crate::{
    access::{self, Act, Target},
    auth::Principal,
    db::entities::{approval, request},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    pub id: String,
    pub required_role: String,
    /// Why the policy asked for it.
    pub reason: String,
    pub status: String,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    pub decided_at: Option<chrono::DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("no request with id {0:?}")]
    NotFound(String),
    #[error("request {id} is {status}, not awaiting approval")]
    NotAwaiting { id: String, status: String },
    #[error("nobody approves or rejects their own request")]
    OwnRequest,
    #[error("{0}")]
    NotAllowed(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// One page of a request's approvals in the order they were asked for (ids are
/// time-ordered): at most `limit`, after the approval `after` when given.
pub async fn list_page(
    db: &DatabaseConnection,
    request_id: &str,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<Approval>, DbErr> {
    use sea_orm::QuerySelect;
    let mut q = approval::Entity::find()
        .filter(approval::Column::RequestId.eq(request_id))
        .order_by_asc(approval::Column::Id);
    if let Some(after) = after {
        q = q.filter(approval::Column::Id.gt(after));
    }
    Ok(q.limit(limit)
        .all(db)
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
    Ok(approval::Entity::find()
        .filter(approval::Column::RequestId.eq(request_id))
        .order_by_asc(approval::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(to_api)
        .collect())
}

/// Records `who`'s decision. Approving decides every pending approval `who` may decide; once
/// none is left the request continues (`pending`). Rejecting ends the request.
pub async fn decide(
    db: &DatabaseConnection,
    request_id: &str,
    who: &Principal,
    decision: Decision,
    reason: Option<String>,
    max_attempts: i32,
    notifier: &crate::notifications::Notifier,
) -> Result<Request, DecideError> {
    // IMMEDIATE on SQLite: this transaction reads, then writes; a deferred one would fail with
    // "database is locked" (SQLITE_BUSY_SNAPSHOT) if another connection wrote in between,
    // instead of waiting for its turn. (PostgreSQL ignores the option and uses the row lock.)
    let txn = db
        .begin_with_options(sea_orm::TransactionOptions {
            sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await?;
    let decided_in = decide_in(
        &txn,
        request_id,
        who,
        decision,
        reason.clone(),
        max_attempts,
    )
    .await;
    match decided_in {
        Ok(()) => txn.commit().await?,
        Err(e) => {
            txn.rollback().await.ok();
            return Err(e);
        }
    }
    let decided = requests::get(db, request_id)
        .await?
        .ok_or_else(|| DecideError::NotFound(request_id.to_owned()))?;
    notify_decided(db, notifier, &decided, decision, who, reason.as_deref()).await;
    Ok(decided)
}

async fn decide_in(
    txn: &sea_orm::DatabaseTransaction,
    request_id: &str,
    who: &Principal,
    decision: Decision,
    reason: Option<String>,
    max_attempts: i32,
) -> Result<(), DecideError> {
    let id = request_id.to_owned();
    // Row lock (PostgreSQL): deciders and cancels on one request take turns, so two
    // approvals cannot both enqueue, and a cancel is never overwritten.
    let req = request::Entity::find_by_id(id.clone())
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or_else(|| DecideError::NotFound(id.clone()))?;
    if req.status != RequestStatus::AwaitingApproval.as_str() {
        return Err(DecideError::NotAwaiting {
            id,
            status: req.status,
        });
    }
    if req.requester == who.subject {
        return Err(DecideError::OwnRequest);
    }
    let pending: Vec<approval::Model> = approval::Entity::find()
        .filter(approval::Column::RequestId.eq(id.clone()))
        .filter(approval::Column::Status.eq("pending"))
        .all(txn)
        .await?;
    let target = Target::Request {
        owner: &req.owner,
        requester: &req.requester,
    };
    let decide = |a: &approval::Model| {
        access::authorize(
            who,
            Act::Decide {
                role: &a.required_role,
            },
            target,
        )
    };
    let (mine, others): (Vec<_>, Vec<_>) = pending.iter().partition(|a| decide(a).is_ok());
    if mine.is_empty() {
        let why = others
            .first()
            .and_then(|a| decide(a).err())
            .map_or_else(|| "nothing is left to decide".to_owned(), |d| d.to_string());
        return Err(DecideError::NotAllowed(why));
    }
    let now = Utc::now();
    let outcome = if decision == Decision::Approve {
        "approved"
    } else {
        "rejected"
    };
    for a in mine {
        let mut a = a.clone().into_active_model();
        a.status = Set(outcome.into());
        a.decided_by = Set(Some(who.subject.clone()));
        a.decision_reason = Set(reason.clone());
        a.decided_at = Set(Some(now));
        a.update(txn).await?;
    }
    let mut r = req.into_active_model();
    r.updated_at = Set(now);
    match decision {
        Decision::Reject => {
            r.status = Set(RequestStatus::Rejected.as_str().into());
            r.completed_at = Set(Some(now));
            r.error = Set(Some(format!(
                "rejected by {}{}",
                who.subject,
                reason
                    .as_deref()
                    .map(|x| format!(": {x}"))
                    .unwrap_or_default()
            )));
        }
        Decision::Approve if others.is_empty() => {
            r.status = Set(RequestStatus::Pending.as_str().into());
            super::queue::enqueue(
                txn,
                super::queue::PROVISION,
                &id,
                max_attempts,
                serde_json::Value::Null,
            )
            .await?;
        }
        Decision::Approve => {}
    }
    r.update(txn).await?;
    Ok(())
}

/// The requester and the owning team hear when a request was rejected, or approved by the
/// last approver it waited for.
async fn notify_decided(
    db: &DatabaseConnection,
    notifier: &crate::notifications::Notifier,
    r: &Request,
    decision: Decision,
    who: &Principal,
    reason: Option<&str>,
) {
    use crate::notifications::{Notification, Severity, Topic};
    let (topic, verb, severity) = match (decision, r.status) {
        (Decision::Reject, _) => (Topic::RequestRejected, "rejected", Severity::High),
        (Decision::Approve, RequestStatus::Pending) => {
            (Topic::RequestApproved, "approved", Severity::Normal)
        }
        // Still waiting for another approver: nothing to tell yet.
        _ => return,
    };
    let mut recipients = vec![r.owner.clone()];
    if r.requester.starts_with("user:") {
        recipients.push(r.requester.clone());
    }
    let name = r
        .spec
        .as_ref()
        .and_then(|s| s.pointer("/resource/name"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or(&r.offering);
    notifier
        .send(
            db,
            Notification {
                topic,
                recipients,
                title: format!("Request for {name} {verb}"),
                description: format!(
                    "{} {verb} the {} of {name} ({}){}.{}",
                    who.subject,
                    r.operation.as_str(),
                    r.offering,
                    reason.map(|x| format!(": {x}")).unwrap_or_default(),
                    if verb == "approved" {
                        " paved provisions it now."
                    } else {
                        ""
                    }
                ),
                link: Some(notifier.request_link(&r.id)),
                severity,
                scope: Some(format!("paved:request:{}", r.id)),
            },
        )
        .await;
}
