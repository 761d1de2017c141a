//! Deciding an approval: approve or reject a request that waits for one. The decision is
//! stored, the requester and team are told, and the decision is audited, in this one place.

use chrono::Utc;
use sea_orm::{DatabaseConnection, DbErr, TransactionTrait};

use super::{Ctx, Refused};
use crate::{
    access::{self, Act, Target},
    db::{self, entities::approval, requests::Decided},
    provisioning::requests::{self, Request},
    vocab::{
        principal::Principal,
        status::{ApprovalStatus, RequestStatus},
    },
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
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
    /// Refused before any approval is looked at (the anonymous caller).
    #[error("{0}")]
    Refused(Refused),
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Records `who`'s `decision` on request `id`. Which of its approvals `who` may decide is
/// checked per approval, under the request's lock, by [`store`].
pub async fn decide(
    ctx: Ctx<'_>,
    who: &Principal,
    id: &str,
    decision: Decision,
    reason: Option<String>,
) -> Result<Request, DecideError> {
    let r = requests::get(ctx.db, id)
        .await?
        .ok_or_else(|| DecideError::NotFound(id.into()))?;
    let target = Target::Request {
        owner: &r.owner,
        requester: &r.requester,
    };
    // Visibility and the caller's standing first.
    if access::authorize(who, Act::Read, target).is_err() {
        return Err(DecideError::NotFound(id.into()));
    }
    if who.is_anonymous() {
        return Err(DecideError::Refused(Refused::Unauthenticated(
            "deciding an approval",
        )));
    }
    let decided = store(
        ctx.db,
        id,
        who,
        decision,
        reason,
        ctx.max_attempts,
        ctx.notifier,
    )
    .await?;
    tracing::info!(request_id = %decided.id, decided_by = %who.subject, status = decided.status.as_str(), "approval decided");
    let event = match decision {
        Decision::Approve => "approval.approved",
        Decision::Reject => "approval.rejected",
    };
    crate::audit::record_by(
        ctx.db,
        who,
        event,
        &format!("request:{}", decided.id),
        decided.status.as_str(),
        None,
    )
    .await;
    Ok(decided)
}

/// Stores `who`'s decision. Approving decides every pending approval `who` may decide; once
/// none is left the request continues (`pending`). Rejecting ends the request.
async fn store(
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
    let req = db::requests::by_id_locked(txn, &id)
        .await?
        .ok_or_else(|| DecideError::NotFound(id.clone()))?;
    if req.status != RequestStatus::AwaitingApproval {
        return Err(DecideError::NotAwaiting {
            id,
            status: req.status.as_str().to_owned(),
        });
    }
    if req.requester == who.subject {
        return Err(DecideError::OwnRequest);
    }
    let pending: Vec<approval::Model> = db::approvals::pending_of(txn, &id).await?;
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
    let outcome = match decision {
        Decision::Approve => ApprovalStatus::Approved,
        Decision::Reject => ApprovalStatus::Rejected,
    };
    for a in mine {
        db::approvals::decide(txn, a.clone(), outcome, &who.subject, reason.clone(), now).await?;
    }
    if decision == Decision::Reject {
        // A rejected request waits for nobody: the approvals others were asked for go too.
        let why = format!("the request was rejected by {}", who.subject);
        db::approvals::withdraw_pending(txn, &id, &who.subject, &why, now).await?;
    }
    let decided = match decision {
        Decision::Reject => Decided::Rejected(format!(
            "rejected by {}{}",
            who.subject,
            reason
                .as_deref()
                .map(|x| format!(": {x}"))
                .unwrap_or_default()
        )),
        Decision::Approve if others.is_empty() => {
            // Pending and queued in one transaction: a pending request always has its job.
            crate::jobs::enqueue_job(
                txn,
                &crate::provisioning::engine::Provision,
                &id,
                max_attempts,
            )
            .await?;
            Decided::Approved
        }
        Decision::Approve => Decided::StillWaiting,
    };
    db::requests::decide(txn, req, decided, now).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        notifications::Notifier,
        usecases::testkit::{self, TEAM_A, audit_of, member, outsider, person},
    };

    /// A delete request by alice (a member of team-a) that waits for a lead's approval.
    async fn awaiting(db: &DatabaseConnection) -> Request {
        let res = testkit::resource(db, "r1", "dev").await;
        let now = Utc::now();
        let r = db::requests::insert(
            db,
            crate::db::entities::request::Model {
                id: uuid::Uuid::now_v7().to_string(),
                offering: res.offering.clone(),
                template_version: res.offering_version.clone(),
                operation: crate::vocab::status::Operation::Delete,
                status: RequestStatus::AwaitingApproval,
                requester: "user:default/alice".into(),
                owner: res.owner.clone(),
                idempotency_key: None,
                parameters: serde_json::json!({}),
                spec: Some(res.desired.clone()),
                resource_id: Some(res.id.clone()),
                error: None,
                created_at: now,
                updated_at: now,
                completed_at: None,
                estimate: None,
                decision: None,
            },
        )
        .await
        .unwrap();
        db::approvals::insert(
            db,
            vec![approval::Model {
                id: uuid::Uuid::now_v7().to_string(),
                request_id: r.id.clone(),
                required_role: "lead".into(),
                reason: "deletes need a lead".into(),
                status: ApprovalStatus::Pending,
                decided_by: None,
                decision_reason: None,
                decided_at: None,
                created_at: now,
            }],
        )
        .await
        .unwrap();
        requests::get(db, &r.id).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn a_lead_approves_and_the_decision_is_audited_once() {
        let t = testkit::db().await;
        let n = Notifier::disabled();
        let ctx = Ctx {
            db: &t.db,
            now: Utc::now(),
            max_attempts: 3,
            notifier: &n,
        };
        let r = awaiting(&t.db).await;
        let target = format!("request:{}", r.id);

        let e = decide(ctx, &member(), &r.id, Decision::Approve, None)
            .await
            .unwrap_err();
        assert!(matches!(e, DecideError::OwnRequest), "{e:?}");
        let e = decide(ctx, &outsider(), &r.id, Decision::Approve, None)
            .await
            .unwrap_err();
        assert!(matches!(e, DecideError::NotFound(_)), "{e:?}");
        assert!(audit_of(&t.db, &target).await.is_empty());

        let lead = person("user:default/lea", &["developer", "lead"], &[TEAM_A]);
        let approved = decide(ctx, &lead, &r.id, Decision::Approve, Some("ok".into()))
            .await
            .unwrap();
        assert_eq!(approved.status, RequestStatus::Pending);
        assert_eq!(
            audit_of(&t.db, &target).await,
            vec![(
                "approval.approved".into(),
                "user:default/lea".into(),
                "pending".into()
            )]
        );
        let e = decide(ctx, &lead, &r.id, Decision::Reject, None)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, DecideError::NotAwaiting { status, .. } if status == "pending"),
            "{e:?}"
        );
    }

    /// A rejection ends the request: an approval another role was asked for is withdrawn, not
    /// left pending for nobody.
    #[tokio::test]
    async fn a_rejection_withdraws_the_approvals_others_were_asked_for() {
        let t = testkit::db().await;
        let n = Notifier::disabled();
        let ctx = Ctx {
            db: &t.db,
            now: Utc::now(),
            max_attempts: 3,
            notifier: &n,
        };
        let r = awaiting(&t.db).await;
        let now = Utc::now();
        db::approvals::insert(
            &t.db,
            vec![approval::Model {
                id: uuid::Uuid::now_v7().to_string(),
                request_id: r.id.clone(),
                required_role: "platform-admin".into(),
                reason: "over budget".into(),
                status: ApprovalStatus::Pending,
                decided_by: None,
                decision_reason: None,
                decided_at: None,
                created_at: now,
            }],
        )
        .await
        .unwrap();
        let lead = person("user:default/lea", &["developer", "lead"], &[TEAM_A]);
        let rejected = decide(ctx, &lead, &r.id, Decision::Reject, Some("no".into()))
            .await
            .unwrap();
        assert_eq!(rejected.status, RequestStatus::Rejected);
        let statuses: Vec<(String, ApprovalStatus)> = db::approvals::of_request(&t.db, &r.id)
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.required_role, a.status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("lead".to_owned(), ApprovalStatus::Rejected),
                ("platform-admin".to_owned(), ApprovalStatus::Cancelled)
            ]
        );
        assert!(
            db::approvals::pending_of(&t.db, &r.id)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
