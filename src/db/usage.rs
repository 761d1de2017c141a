//! Usage samples: the drivers' readings of a resource's parts, and the activity paved itself
//! caused on them.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::NotSet, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter, QueryOrder,
};

use super::entities::usage_sample::{self, SampleKind};

/// One reading (or one record of paved's own activity) of a part.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSample<'a> {
    pub resource_id: &'a str,
    pub part: &'a str,
    pub kind: SampleKind,
    pub at: DateTime<Utc>,
    pub active: i64,
    pub counter: i64,
    pub idle_seconds: Option<i64>,
}

fn row(s: &NewSample<'_>) -> usage_sample::ActiveModel {
    usage_sample::ActiveModel {
        id: NotSet,
        resource_id: Set(s.resource_id.to_owned()),
        part: Set(s.part.to_owned()),
        kind: Set(s.kind.as_str().to_owned()),
        at: Set(s.at),
        active: Set(s.active),
        counter: Set(s.counter),
        idle_seconds: Set(s.idle_seconds),
    }
}

/// Stores `samples` (nothing when empty).
pub async fn record<C: ConnectionTrait>(db: &C, samples: &[NewSample<'_>]) -> Result<(), DbErr> {
    if samples.is_empty() {
        return Ok(());
    }
    usage_sample::Entity::insert_many(samples.iter().map(row))
        .exec(db)
        .await?;
    Ok(())
}

/// One stored row of a part, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub kind: SampleKind,
    pub at: DateTime<Utc>,
    pub active: i64,
    pub counter: i64,
    pub idle_seconds: Option<i64>,
}

/// A part's samples up to `until`, oldest first. An unknown stored kind is an error.
pub async fn of_part<C: ConnectionTrait>(
    db: &C,
    resource_id: &str,
    part: &str,
    until: DateTime<Utc>,
) -> Result<Vec<Sample>, DbErr> {
    usage_sample::Entity::find()
        .filter(usage_sample::Column::ResourceId.eq(resource_id))
        .filter(usage_sample::Column::Part.eq(part))
        .filter(usage_sample::Column::At.lte(until))
        .order_by_asc(usage_sample::Column::At)
        .order_by_asc(usage_sample::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|m| {
            Ok(Sample {
                kind: SampleKind::parse(&m.kind)?,
                at: m.at,
                active: m.active,
                counter: m.counter,
                idle_seconds: m.idle_seconds,
            })
        })
        .collect()
}
