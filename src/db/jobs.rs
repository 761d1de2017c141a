//! Where jobs live: the `jobs` table. Runners claim a job with a lease, keep it alive with
//! heartbeats, and a job whose runner died is claimed again once its lease expires. On
//! PostgreSQL the claim uses `FOR UPDATE SKIP LOCKED`, so several replicas share the work; on
//! SQLite (one process) a conditional update decides between in-process runners.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType, OnConflict},
};
use serde_json::Value;
use uuid::Uuid;

use super::entities::job::{self, JobStatus};

/// The PostgreSQL channel replicas listen on for new jobs.
pub const WAKE_CHANNEL: &str = "paved_jobs";

/// Wakes idle workers of every replica (once the caller's transaction commits).
async fn notify<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        conn.execute_unprepared(&format!("NOTIFY {WAKE_CHANNEL}"))
            .await?;
    }
    Ok(())
}

/// Adds a job (inside the caller's transaction when given one).
pub async fn enqueue<C: ConnectionTrait>(
    conn: &C,
    kind: &str,
    request_id: &str,
    max_attempts: i32,
    payload: Value,
) -> Result<String, DbErr> {
    let now = Utc::now();
    let id = Uuid::now_v7().to_string();
    job::Entity::insert(queued_row(
        &id,
        kind,
        Some(request_id),
        max_attempts,
        payload,
        now,
    ))
    .exec(conn)
    .await?;
    notify(conn).await?;
    Ok(id)
}

/// Adds a job under a fixed `id` unless a job with that id exists; true when this call added
/// it. Periodic jobs use an id per job name and period, so of every replica asking for the
/// same period exactly one row is made (the primary key decides, on PostgreSQL and SQLite).
pub async fn enqueue_unique<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    kind: &str,
    max_attempts: i32,
    payload: Value,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let inserted = job::Entity::insert(queued_row(id, kind, None, max_attempts, payload, now))
        .on_conflict(OnConflict::column(job::Column::Id).do_nothing().to_owned())
        .exec_without_returning(conn)
        .await?;
    if inserted == 1 {
        notify(conn).await?;
    }
    Ok(inserted == 1)
}

/// One waiting job per `id`, the latest `payload` winning: adds the job, or, when a job with
/// that id waits (queued, maybe backing off) or finished, makes it a fresh job with this
/// payload, due now and with all its attempts. A job running right now is left alone (its
/// runner settles it); false then.
pub async fn enqueue_latest<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    kind: &str,
    key: &str,
    max_attempts: i32,
    payload: Value,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    use job::Column as C;
    let upsert = OnConflict::column(C::Id)
        .update_columns([
            C::RequestId,
            C::Payload,
            C::Status,
            C::RunAt,
            C::Attempts,
            C::MaxAttempts,
            C::LockedBy,
            C::LockedUntil,
            C::LastError,
            C::UpdatedAt,
        ])
        .action_and_where(Expr::col((job::Entity, C::Status)).ne(JobStatus::Running))
        .to_owned();
    let written = job::Entity::insert(queued_row(id, kind, Some(key), max_attempts, payload, now))
        .on_conflict(upsert)
        .exec_without_returning(conn)
        .await?;
    if written == 1 {
        notify(conn).await?;
    }
    Ok(written == 1)
}

fn claimable(now: DateTime<Utc>, kinds: &[&str]) -> Condition {
    let due = Condition::any()
        .add(
            Condition::all()
                .add(job::Column::Status.eq(JobStatus::Queued))
                .add(job::Column::RunAt.lte(now)),
        )
        // A running job whose lease ran out: its worker died.
        .add(
            Condition::all()
                .add(job::Column::Status.eq(JobStatus::Running))
                .add(job::Column::LockedUntil.lt(now)),
        );
    // A runner only takes the kinds it knows how to run.
    Condition::all()
        .add(due)
        .add(job::Column::Kind.is_in(kinds.iter().copied()))
}

/// Claims the oldest runnable job of one of `kinds` for `worker`, or None. One statement:
/// `UPDATE ... WHERE id IN (SELECT ... LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING *` on
/// PostgreSQL, so replicas claim different jobs without waiting on each other; SQLite has no
/// row locks and needs none (one writer at a time runs the whole statement).
pub async fn claim(
    db: &DatabaseConnection,
    worker: &str,
    kinds: &[&str],
    lease: Duration,
) -> Result<Option<job::Model>, DbErr> {
    let now = Utc::now();
    let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
    let oldest = job::Entity::find()
        .select_only()
        .column(job::Column::Id)
        .filter(claimable(now, kinds))
        .order_by_asc(job::Column::RunAt)
        .limit(1)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .into_query();
    let mut claimed = job::Entity::update_many()
        .col_expr(job::Column::Status, Expr::value(JobStatus::Running))
        .col_expr(job::Column::LockedBy, Expr::value(worker))
        .col_expr(job::Column::LockedUntil, Expr::value(until))
        .col_expr(
            job::Column::Attempts,
            Expr::col(job::Column::Attempts).add(1),
        )
        .col_expr(job::Column::UpdatedAt, Expr::value(now))
        .filter(job::Column::Id.in_subquery(oldest))
        .exec_with_returning(db)
        .await?;
    Ok(claimed.pop())
}

/// Extends the lease; false when the job is no longer ours (it expired and was taken).
pub async fn heartbeat(
    db: &DatabaseConnection,
    id: &str,
    worker: &str,
    lease: Duration,
) -> Result<bool, DbErr> {
    let until = Utc::now() + chrono::Duration::from_std(lease).unwrap_or_default();
    let res = job::Entity::update_many()
        .col_expr(job::Column::LockedUntil, Expr::value(until))
        .filter(job::Column::Id.eq(id))
        .filter(job::Column::LockedBy.eq(worker))
        .filter(job::Column::Status.eq(JobStatus::Running))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

async fn settle(
    db: &DatabaseConnection,
    id: &str,
    worker: &str,
    status: JobStatus,
    run_at: Option<DateTime<Utc>>,
    error: Option<String>,
) -> Result<(), DbErr> {
    let now = Utc::now();
    let mut q = job::Entity::update_many()
        .col_expr(job::Column::Status, Expr::value(status))
        .col_expr(job::Column::LockedBy, Expr::value(Option::<String>::None))
        .col_expr(
            job::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(job::Column::LastError, Expr::value(error))
        .col_expr(job::Column::UpdatedAt, Expr::value(now));
    if let Some(at) = run_at {
        q = q.col_expr(job::Column::RunAt, Expr::value(at));
    }
    q.filter(job::Column::Id.eq(id))
        .filter(job::Column::LockedBy.eq(worker))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn finish(db: &DatabaseConnection, id: &str, worker: &str) -> Result<(), DbErr> {
    settle(db, id, worker, JobStatus::Done, None, None).await
}

pub async fn retry_later(
    db: &DatabaseConnection,
    id: &str,
    worker: &str,
    delay: Duration,
    error: String,
) -> Result<(), DbErr> {
    let at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
    settle(db, id, worker, JobStatus::Queued, Some(at), Some(error)).await
}

/// Gives a running job back to the queue, due now and without counting the attempt: its
/// worker is stopping between two steps, so the job did not fail.
pub async fn hand_back(db: &DatabaseConnection, id: &str, worker: &str) -> Result<(), DbErr> {
    let now = Utc::now();
    job::Entity::update_many()
        .col_expr(job::Column::Status, Expr::value(JobStatus::Queued))
        .col_expr(job::Column::LockedBy, Expr::value(Option::<String>::None))
        .col_expr(
            job::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(job::Column::RunAt, Expr::value(now))
        .col_expr(
            job::Column::Attempts,
            Expr::col(job::Column::Attempts).sub(1),
        )
        .col_expr(job::Column::UpdatedAt, Expr::value(now))
        .filter(job::Column::Id.eq(id))
        .filter(job::Column::LockedBy.eq(worker))
        .exec(db)
        .await?;
    // Another replica's idle workers take it now rather than at their next poll.
    notify(db).await
}

pub async fn fail(
    db: &DatabaseConnection,
    id: &str,
    worker: &str,
    error: String,
) -> Result<(), DbErr> {
    settle(db, id, worker, JobStatus::Failed, None, Some(error)).await
}

/// How deep the queue is right now (for `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Depth {
    pub queued: u64,
    pub running: u64,
    /// Of the oldest job that is due and waits for a worker; 0 when none does.
    pub oldest_queued_age_seconds: f64,
}

/// [`Depth`] of the jobs `scope` selects.
async fn depth_of(
    db: &DatabaseConnection,
    scope: Condition,
    now: DateTime<Utc>,
) -> Result<Depth, DbErr> {
    let of = || job::Entity::find().filter(scope.clone());
    let queued = of()
        .filter(job::Column::Status.eq(JobStatus::Queued))
        .count(db)
        .await?;
    let running = of()
        .filter(job::Column::Status.eq(JobStatus::Running))
        .count(db)
        .await?;
    let oldest = of()
        .filter(job::Column::Status.eq(JobStatus::Queued))
        .filter(job::Column::RunAt.lte(now))
        .order_by_asc(job::Column::RunAt)
        .one(db)
        .await?;
    Ok(Depth {
        queued,
        running,
        oldest_queued_age_seconds: oldest.map_or(0.0, |j| {
            ((now - j.run_at).num_milliseconds() as f64).max(0.0) / 1000.0
        }),
    })
}

pub async fn depth(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<Depth, DbErr> {
    depth_of(db, Condition::all(), now).await
}

/// [`Depth`] of each job kind that has rows, by kind.
pub async fn depth_by_kind(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
) -> Result<Vec<(String, Depth)>, DbErr> {
    let kinds: Vec<String> = job::Entity::find()
        .select_only()
        .column(job::Column::Kind)
        .distinct()
        .into_tuple()
        .all(db)
        .await?;
    let mut out = Vec::with_capacity(kinds.len());
    for kind in kinds {
        let scope = Condition::all().add(job::Column::Kind.eq(kind.clone()));
        out.push((kind, depth_of(db, scope, now).await?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Deletes finished jobs (done or failed) last touched before `before`; how many went.
/// Queued and running jobs stay whatever their age.
pub async fn prune(db: &DatabaseConnection, before: DateTime<Utc>) -> Result<u64, DbErr> {
    let res = job::Entity::delete_many()
        .filter(job::Column::Status.is_in([JobStatus::Done, JobStatus::Failed]))
        .filter(job::Column::UpdatedAt.lt(before))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// A job row waiting to run from `now`, as every enqueue writes it.
fn queued_row(
    id: &str,
    kind: &str,
    request_id: Option<&str>,
    max_attempts: i32,
    payload: Value,
    now: DateTime<Utc>,
) -> job::ActiveModel {
    job::ActiveModel {
        id: Set(id.to_owned()),
        kind: Set(kind.into()),
        request_id: Set(request_id.map(str::to_owned)),
        payload: Set(payload),
        status: Set(JobStatus::Queued),
        run_at: Set(now),
        attempts: Set(0),
        max_attempts: Set(max_attempts),
        locked_by: Set(None),
        locked_until: Set(None),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
}
