//! Deleting a resource: a `delete` request that destroys each part, then unpublishes it.

use sea_orm::DbErr;
use serde_json::json;

use super::{Ctx, Refused, resource_for};
use crate::{
    access::Act,
    provisioning::requests::{self, Request},
    vocab::{principal::Principal, status::ResourceStatus},
};

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("no resource with id {id:?}")]
    NotFound { id: String },
    #[error("{0}")]
    Refused(Refused),
    /// Production resources are deleted only by a platform-admin who overrides protection.
    #[error("{0}")]
    Protected(String),
    #[error("resource {id} is already deleted")]
    AlreadyDeleted { id: String },
    /// Another request (not a deletion) is open for it.
    #[error("resource {id} is busy with request {request}; wait for it to finish or cancel it")]
    Busy { id: String, request: String },
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Starts the deletion of resource `id` for `who`. Asking again while its deletion runs
/// returns that same request.
pub async fn delete(
    ctx: Ctx<'_>,
    who: &Principal,
    id: &str,
    override_protection: bool,
) -> Result<Request, DeleteError> {
    let act = |production| Act::Delete {
        production,
        override_protection,
    };
    let res = match resource_for(ctx.db, who, id, |r| act(r.environment == "prod")).await? {
        Ok(res) => res,
        Err(None) => return Err(DeleteError::NotFound { id: id.into() }),
        Err(Some(Refused::Forbidden(m))) => {
            // Refused only because it is production: deletion protection, not membership.
            let member = resource_for(ctx.db, who, id, |_| act(false)).await?.is_ok();
            return Err(if member {
                DeleteError::Protected(m)
            } else {
                DeleteError::Refused(Refused::Forbidden(m))
            });
        }
        Err(Some(r)) => return Err(DeleteError::Refused(r)),
    };
    if res.deleted_at.is_some() {
        return Err(DeleteError::AlreadyDeleted { id: id.into() });
    }
    if let Some(open) = requests::open_for_resource(ctx.db, id).await?
        && res.status != ResourceStatus::Deleting
    {
        return Err(DeleteError::Busy {
            id: id.into(),
            request: open,
        });
    }
    let r = requests::create_delete(ctx.db, &res, &who.subject, ctx.max_attempts).await?;
    tracing::info!(resource_id = %id, request_id = %r.id, by = %who.subject, "deletion requested");
    crate::audit::record_by(
        ctx.db,
        who,
        "resource.delete_requested",
        &format!("resource:{id}"),
        "accepted",
        Some(json!({"requestId": r.id, "override": override_protection})),
    )
    .await;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        notifications::Notifier,
        usecases::testkit::{self, admin, audit_of, member, outsider},
        vocab::status::{Operation, RequestStatus},
    };

    fn ctx<'a>(db: &'a sea_orm::DatabaseConnection, n: &'a Notifier) -> Ctx<'a> {
        Ctx {
            db,
            now: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            max_attempts: 3,
            notifier: n,
        }
    }

    #[tokio::test]
    async fn a_member_starts_one_deletion_and_it_is_audited() {
        let t = testkit::db().await;
        let n = Notifier::disabled();
        testkit::resource(&t.db, "r1", "dev").await;
        let r = delete(ctx(&t.db, &n), &member(), "r1", false)
            .await
            .unwrap();
        assert_eq!(r.operation, Operation::Delete);
        assert_eq!(r.status, RequestStatus::Pending);
        assert_eq!(r.resource_id.as_deref(), Some("r1"));
        // Asking again while it runs answers the same request, and is audited again.
        let again = delete(ctx(&t.db, &n), &member(), "r1", false)
            .await
            .unwrap();
        assert_eq!(again.id, r.id);
        let events = audit_of(&t.db, "resource:r1").await;
        assert_eq!(
            events,
            vec![
                (
                    "resource.delete_requested".into(),
                    "user:default/alice".into(),
                    "accepted".into()
                );
                2
            ]
        );
    }

    #[tokio::test]
    async fn production_is_protected_and_another_teams_resource_is_absent() {
        let t = testkit::db().await;
        let n = Notifier::disabled();
        testkit::resource(&t.db, "p1", "prod").await;
        let e = delete(ctx(&t.db, &n), &member(), "p1", true)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, DeleteError::Protected(m) if m.contains("deletion protection")),
            "{e:?}"
        );
        let e = delete(ctx(&t.db, &n), &outsider(), "p1", false)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, DeleteError::NotFound { id } if id == "p1"),
            "{e:?}"
        );
        assert!(audit_of(&t.db, "resource:p1").await.is_empty());
        delete(ctx(&t.db, &n), &admin(), "p1", true).await.unwrap();
        assert_eq!(audit_of(&t.db, "resource:p1").await.len(), 1);
    }

    #[tokio::test]
    async fn a_deleted_resource_is_already_deleted_and_a_busy_one_names_its_request() {
        let t = testkit::db().await;
        let n = Notifier::disabled();
        let gone = testkit::resource(&t.db, "g1", "dev").await;
        crate::db::resources::mark_deleted(&t.db, &gone.id, chrono::Utc::now())
            .await
            .unwrap();
        let e = delete(ctx(&t.db, &n), &member(), "g1", false)
            .await
            .unwrap_err();
        assert!(matches!(e, DeleteError::AlreadyDeleted { .. }), "{e:?}");

        // An open request while the resource is not being deleted (an update, say) keeps it
        // busy.
        let busy = testkit::resource(&t.db, "b1", "dev").await;
        let first = requests::create_delete(&t.db, &busy, "user:default/alice", 3)
            .await
            .unwrap();
        crate::db::resources::set_status(
            &t.db,
            &busy.id,
            ResourceStatus::Ready,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        let e = delete(ctx(&t.db, &n), &member(), "b1", false)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, DeleteError::Busy { request, .. } if *request == first.id),
            "{e:?}"
        );
    }
}
