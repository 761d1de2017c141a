//! Cancelling a request that has not finished: at once while pending or awaiting approval,
//! between steps while running.

use sea_orm::{DatabaseConnection, DbErr};

use super::Refused;
use crate::{
    access::{self, Act, Target},
    provisioning::requests::{self, Request},
    vocab::principal::Principal,
};

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no request with id {id:?}")]
    NotFound { id: String },
    #[error("{0}")]
    Refused(Refused),
    #[error("request {id} is {status} and can no longer be cancelled")]
    Finished { id: String, status: String },
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Cancels request `id` for `who`: its requester, members of the owning team and
/// platform-admins may.
pub async fn cancel(
    db: &DatabaseConnection,
    who: &Principal,
    id: &str,
) -> Result<Request, CancelError> {
    let not_found = || CancelError::NotFound { id: id.into() };
    let r = requests::get(db, id).await?.ok_or_else(not_found)?;
    let target = Target::Request {
        owner: &r.owner,
        requester: &r.requester,
    };
    if let Err(d) = access::authorize(who, Act::Cancel, target) {
        return Err(Refused::of(d).map_or_else(not_found, CancelError::Refused));
    }
    match requests::cancel(db, id, &who.subject).await? {
        None => Err(not_found()),
        Some(Err(status)) => Err(CancelError::Finished {
            id: id.into(),
            status,
        }),
        Some(Ok(r)) => {
            tracing::info!(request_id = %id, by = %who.subject, "request cancelled");
            crate::audit::record_by(
                db,
                who,
                "request.cancelled",
                &format!("request:{id}"),
                "cancelled",
                None,
            )
            .await;
            Ok(r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        usecases::testkit::{self, audit_of, member, outsider, person},
        vocab::status::RequestStatus,
    };

    #[tokio::test]
    async fn a_member_cancels_once_then_the_request_is_finished() {
        let t = testkit::db().await;
        let res = testkit::resource(&t.db, "r1", "dev").await;
        let r = requests::create_delete(&t.db, &res, "user:default/carol", 3)
            .await
            .unwrap();
        let cancelled = cancel(&t.db, &member(), &r.id).await.unwrap();
        assert_eq!(cancelled.status, RequestStatus::Cancelled);
        let target = format!("request:{}", r.id);
        assert_eq!(
            audit_of(&t.db, &target).await,
            vec![(
                "request.cancelled".into(),
                "user:default/alice".into(),
                "cancelled".into()
            )]
        );
        let e = cancel(&t.db, &member(), &r.id).await.unwrap_err();
        assert!(
            matches!(&e, CancelError::Finished { status, .. } if status == "cancelled"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "request {} is cancelled and can no longer be cancelled",
                r.id
            )
        );
        assert_eq!(audit_of(&t.db, &target).await.len(), 1);
    }

    #[tokio::test]
    async fn others_see_nothing_and_the_anonymous_caller_cancels_nothing() {
        let t = testkit::db().await;
        let res = testkit::resource(&t.db, "r1", "dev").await;
        let r = requests::create_delete(&t.db, &res, "anonymous", 3)
            .await
            .unwrap();
        let e = cancel(&t.db, &outsider(), &r.id).await.unwrap_err();
        assert!(matches!(e, CancelError::NotFound { .. }), "{e:?}");
        // The anonymous caller sees its own request, and still may not cancel it.
        let e = cancel(
            &t.db,
            &crate::vocab::principal::Principal::anonymous(),
            &r.id,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(e, CancelError::Refused(Refused::Unauthenticated(_))),
            "{e:?}"
        );
        let e = cancel(&t.db, &person("user:default/x", &[], &[]), "nope")
            .await
            .unwrap_err();
        assert!(matches!(e, CancelError::NotFound { .. }), "{e:?}");
        let now = requests::get(&t.db, &r.id).await.unwrap().unwrap();
        assert_eq!(now.status, RequestStatus::Pending);
        assert!(
            audit_of(&t.db, &format!("request:{}", r.id))
                .await
                .is_empty()
        );
    }
}
