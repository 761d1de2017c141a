//! Background schedules that must run once per interval across all replicas (the reaper,
//! expiry warnings, drift scans, usage sampling).
//!
//! Each schedule has a row in `schedule_leases`. A replica runs a round only if one conditional
//! `UPDATE` moves the row to it: the lease is free (or its holder died: `locked_until` passed)
//! and the last round started at least one interval ago. The statement is atomic on PostgreSQL
//! and SQLite alike, so no advisory lock is needed and exactly one replica wins each round;
//! the others skip it. A running round renews its lease; a replica that dies mid-round leaves
//! the lease to expire and another takes the next round.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    sea_query::Expr,
};
use tokio::sync::watch;

use crate::db::entities::schedule_lease;

/// Takes the round of schedule `name` for `holder` if it is due (`every` since the last start)
/// and nobody holds it. True: this caller runs the round and must call [`finish`].
pub async fn try_begin(
    db: &DatabaseConnection,
    name: &str,
    holder: &str,
    every: Duration,
    hold: Duration,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    // The row exists once; racing inserts are fine (the loser does nothing).
    schedule_lease::Entity::insert(schedule_lease::ActiveModel {
        name: Set(name.to_owned()),
        holder: Set(None),
        locked_until: Set(None),
        last_started_at: Set(None),
        last_finished_at: Set(None),
    })
    .on_conflict_do_nothing_on([schedule_lease::Column::Name])
    .exec(db)
    .await?;
    let due_before = now - chrono::Duration::from_std(every).unwrap_or_default();
    let until = now + chrono::Duration::from_std(hold).unwrap_or_default();
    let res = schedule_lease::Entity::update_many()
        .col_expr(schedule_lease::Column::Holder, Expr::value(holder))
        .col_expr(schedule_lease::Column::LockedUntil, Expr::value(until))
        .col_expr(schedule_lease::Column::LastStartedAt, Expr::value(now))
        .filter(schedule_lease::Column::Name.eq(name))
        .filter(
            Condition::any()
                .add(schedule_lease::Column::LockedUntil.is_null())
                .add(schedule_lease::Column::LockedUntil.lt(now)),
        )
        .filter(
            Condition::any()
                .add(schedule_lease::Column::LastStartedAt.is_null())
                .add(schedule_lease::Column::LastStartedAt.lte(due_before)),
        )
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Keeps a running round's lease; false when it was lost (it expired and another took it).
pub async fn renew(
    db: &DatabaseConnection,
    name: &str,
    holder: &str,
    hold: Duration,
) -> Result<bool, DbErr> {
    let until = Utc::now() + chrono::Duration::from_std(hold).unwrap_or_default();
    let res = schedule_lease::Entity::update_many()
        .col_expr(schedule_lease::Column::LockedUntil, Expr::value(until))
        .filter(schedule_lease::Column::Name.eq(name))
        .filter(schedule_lease::Column::Holder.eq(holder))
        .filter(schedule_lease::Column::LockedUntil.is_not_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Ends the round `holder` ran: the lease is free for the next one.
pub async fn finish(db: &DatabaseConnection, name: &str, holder: &str) -> Result<(), DbErr> {
    schedule_lease::Entity::update_many()
        .col_expr(
            schedule_lease::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            schedule_lease::Column::LastFinishedAt,
            Expr::value(Utc::now()),
        )
        .filter(schedule_lease::Column::Name.eq(name))
        .filter(schedule_lease::Column::Holder.eq(holder))
        .exec(db)
        .await?;
    Ok(())
}

/// One round of a schedule's work.
pub type Round = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A named schedule and what each round does.
pub struct Schedule {
    pub name: &'static str,
    pub every: Duration,
    pub round: Round,
}

/// Runs `schedule` on this replica until `stop`: checks every `check` whether the round is
/// due and free, runs it if this replica won it, renews the lease while it runs.
pub async fn run(
    db: DatabaseConnection,
    holder: String,
    schedule: Schedule,
    check: Duration,
    hold: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let check = check.min(schedule.every).max(Duration::from_millis(200));
    loop {
        if *stop.borrow() {
            return;
        }
        match try_begin(
            &db,
            schedule.name,
            &holder,
            schedule.every,
            hold,
            Utc::now(),
        )
        .await
        {
            Ok(true) => {
                tracing::debug!(schedule = schedule.name, holder = %holder, "schedule round started");
                let (db2, name, h) = (db.clone(), schedule.name, holder.clone());
                let keep = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(hold / 3).await;
                        match renew(&db2, name, &h, hold).await {
                            Ok(true) => {}
                            Ok(false) => return,
                            Err(e) => {
                                tracing::warn!(schedule = name, error = %e, "cannot renew the schedule lease")
                            }
                        }
                    }
                });
                (schedule.round)().await;
                keep.abort();
                if let Err(e) = finish(&db, schedule.name, &holder).await {
                    tracing::warn!(schedule = schedule.name, error = %e, "cannot release the schedule lease; it expires by itself");
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(schedule = schedule.name, error = %crate::vocab::redact::redact(&e.to_string()), "cannot check the schedule")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(check) => {}
            _ = stop.changed() => {}
        }
    }
}
