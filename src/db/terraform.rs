//! Terraform state kept by paved: sealed versions (the history), one lock per state, and the
//! runs allowed to use a state. Only ciphertext passes through here.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    sea_query::Expr,
};

use super::entities::{
    job::{self, JobStatus},
    terraform_lock, terraform_run, terraform_state,
};
use crate::vocab::secret_box::Sealed;

/// A state's lock key: `<resource id>/<part>`.
pub fn state_key(resource_id: &str, part: &str) -> String {
    format!("{resource_id}/{part}")
}

pub async fn insert_run<C: ConnectionTrait>(
    db: &C,
    run: terraform_run::Model,
) -> Result<(), DbErr> {
    terraform_run::Entity::insert(terraform_run::ActiveModel {
        id: Set(run.id),
        resource_id: Set(run.resource_id),
        part: Set(run.part),
        token_sha256: Set(run.token_sha256),
        request_id: Set(run.request_id),
        job_id: Set(run.job_id),
        job_attempt: Set(run.job_attempt),
        created_at: Set(run.created_at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Forgets the runs of `job_id`'s earlier claims (their worker is gone: the job was claimed
/// again), so a crash leaves no run behind for long.
pub async fn delete_runs_of_earlier_claims<C: ConnectionTrait>(
    db: &C,
    job_id: &str,
    attempt: i32,
) -> Result<(), DbErr> {
    terraform_run::Entity::delete_many()
        .filter(terraform_run::Column::JobId.eq(job_id))
        .filter(terraform_run::Column::JobAttempt.lt(attempt))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn run_by_id<C: ConnectionTrait>(
    db: &C,
    id: &str,
) -> Result<Option<terraform_run::Model>, DbErr> {
    terraform_run::Entity::find_by_id(id.to_owned())
        .one(db)
        .await
}

pub async fn delete_run<C: ConnectionTrait>(db: &C, id: &str) -> Result<(), DbErr> {
    terraform_run::Entity::delete_by_id(id.to_owned())
        .exec(db)
        .await?;
    Ok(())
}

/// Whether job `job_id` is still claimed as attempt `attempt`, with its lease not run out: a
/// run of that claim may act, one of an earlier claim (its worker died, the job was claimed
/// again) or of a finished job may not.
pub async fn claim_is_live<C: ConnectionTrait>(
    db: &C,
    job_id: &str,
    attempt: i32,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let Some(j) = job::Entity::find_by_id(job_id.to_owned()).one(db).await? else {
        return Ok(false);
    };
    Ok(j.status == JobStatus::Running
        && j.attempts == attempt
        && j.locked_until.is_some_and(|u| u > now))
}

pub async fn lock_of<C: ConnectionTrait>(
    db: &C,
    state: &str,
) -> Result<Option<terraform_lock::Model>, DbErr> {
    terraform_lock::Entity::find_by_id(state.to_owned())
        .one(db)
        .await
}

/// Takes a free lock; `false` when someone holds it (the insert met the primary key).
pub async fn take_free_lock<C: ConnectionTrait>(
    db: &C,
    lock: terraform_lock::Model,
) -> Result<bool, DbErr> {
    let r = terraform_lock::Entity::insert(terraform_lock::ActiveModel {
        state: Set(lock.state),
        lock_id: Set(lock.lock_id),
        info: Set(lock.info),
        run_id: Set(lock.run_id),
        created_at: Set(lock.created_at),
    })
    .exec_without_returning(db)
    .await;
    match r {
        Ok(_) => Ok(true),
        Err(e) if super::is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Takes over a lock still held as `held_id` (its holder is gone); `false` when it changed
/// meanwhile (someone else took it over or released it first).
pub async fn take_over_lock<C: ConnectionTrait>(
    db: &C,
    held_id: &str,
    lock: terraform_lock::Model,
) -> Result<bool, DbErr> {
    let r = terraform_lock::Entity::update_many()
        .col_expr(terraform_lock::Column::LockId, Expr::value(lock.lock_id))
        .col_expr(terraform_lock::Column::Info, Expr::value(lock.info))
        .col_expr(terraform_lock::Column::RunId, Expr::value(lock.run_id))
        .col_expr(
            terraform_lock::Column::CreatedAt,
            Expr::value(lock.created_at),
        )
        .filter(terraform_lock::Column::State.eq(lock.state))
        .filter(terraform_lock::Column::LockId.eq(held_id))
        .exec(db)
        .await?;
    Ok(r.rows_affected == 1)
}

/// Releases the lock if it is held as `lock_id`; whether it was.
pub async fn release_lock<C: ConnectionTrait>(
    db: &C,
    state: &str,
    lock_id: &str,
) -> Result<bool, DbErr> {
    let r = terraform_lock::Entity::delete_many()
        .filter(terraform_lock::Column::State.eq(state))
        .filter(terraform_lock::Column::LockId.eq(lock_id))
        .exec(db)
        .await?;
    Ok(r.rows_affected == 1)
}

/// The newest version of a state.
pub async fn latest_state<C: ConnectionTrait>(
    db: &C,
    resource_id: &str,
    part: &str,
) -> Result<Option<terraform_state::Model>, DbErr> {
    terraform_state::Entity::find()
        .filter(terraform_state::Column::ResourceId.eq(resource_id))
        .filter(terraform_state::Column::Part.eq(part))
        .order_by_desc(terraform_state::Column::Version)
        .one(db)
        .await
}

/// Every version of a state, oldest first.
pub async fn history<C: ConnectionTrait>(
    db: &C,
    resource_id: &str,
    part: &str,
) -> Result<Vec<terraform_state::Model>, DbErr> {
    terraform_state::Entity::find()
        .filter(terraform_state::Column::ResourceId.eq(resource_id))
        .filter(terraform_state::Column::Part.eq(part))
        .order_by_asc(terraform_state::Column::Version)
        .all(db)
        .await
}

/// A new version of a state, as sealed.
pub struct NewVersion<'a> {
    pub resource_id: &'a str,
    pub part: &'a str,
    pub version: i32,
    pub serial: i64,
    pub lineage: &'a str,
    pub sealed: &'a Sealed,
    pub request_id: Option<&'a str>,
    pub at: DateTime<Utc>,
}

pub async fn insert_state<C: ConnectionTrait>(db: &C, v: NewVersion<'_>) -> Result<(), DbErr> {
    terraform_state::Entity::insert(terraform_state::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        resource_id: Set(v.resource_id.to_owned()),
        part: Set(v.part.to_owned()),
        version: Set(v.version),
        serial: Set(v.serial),
        lineage: Set(v.lineage.to_owned()),
        key_id: Set(v.sealed.key_id.clone()),
        nonce: Set(v.sealed.nonce.clone()),
        ciphertext: Set(v.sealed.ciphertext.clone()),
        request_id: Set(v.request_id.map(str::to_owned)),
        created_at: Set(v.at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub fn sealed_of(m: &terraform_state::Model) -> Sealed {
    Sealed {
        key_id: m.key_id.clone(),
        nonce: m.nonce.clone(),
        ciphertext: m.ciphertext.clone(),
    }
}

/// State versions: how many each key id seals.
pub async fn count_by_key<C: ConnectionTrait>(db: &C) -> Result<Vec<(String, i64)>, DbErr> {
    use sea_orm::QuerySelect;
    terraform_state::Entity::find()
        .select_only()
        .column(terraform_state::Column::KeyId)
        .column_as(terraform_state::Column::Id.count(), "n")
        .group_by(terraform_state::Column::KeyId)
        .into_tuple()
        .all(db)
        .await
}

/// State versions sealed with another key than `key_id`, by id after `after`.
pub async fn page_not_sealed_with<C: ConnectionTrait>(
    db: &C,
    key_id: &str,
    after: &str,
    limit: u64,
) -> Result<Vec<terraform_state::Model>, DbErr> {
    use sea_orm::QuerySelect;
    terraform_state::Entity::find()
        .filter(terraform_state::Column::KeyId.ne(key_id))
        .filter(terraform_state::Column::Id.gt(after))
        .order_by_asc(terraform_state::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// Replaces a version's sealed bytes by `new`, only if the row still holds what was read.
pub async fn reseal<C: ConnectionTrait>(
    db: &C,
    old: &terraform_state::Model,
    new: Sealed,
) -> Result<bool, DbErr> {
    let done = terraform_state::Entity::update_many()
        .col_expr(terraform_state::Column::KeyId, Expr::value(new.key_id))
        .col_expr(terraform_state::Column::Nonce, Expr::value(new.nonce))
        .col_expr(
            terraform_state::Column::Ciphertext,
            Expr::value(new.ciphertext),
        )
        .filter(terraform_state::Column::Id.eq(old.id.as_str()))
        .filter(terraform_state::Column::KeyId.eq(old.key_id.as_str()))
        .filter(terraform_state::Column::Nonce.eq(old.nonce.clone()))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}
