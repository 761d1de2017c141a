//! Time-to-live of ephemeral resources: owners extend it within the offering's maximum, the
//! reaper deletes expired resources through the normal delete request (steps, audit, catalog
//! update), and owners are warned before expiry, once per configured offset.

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};
use serde_json::json;

use crate::provisioning::requests;
use crate::{
    audit::{self, Target},
    db::{self, entities::resource_notice::NoticeKind},
    notifications::{Notification, Notifier, Severity, Topic},
};

use crate::vocab::actor::REAPER;

/// Starts a delete request for every ready resource whose expiry has passed. A resource busy
/// with another request is left for a later round. Returns the delete requests started.
pub async fn reap(
    db: &DatabaseConnection,
    notifier: &Notifier,
    max_attempts: i32,
    now: DateTime<Utc>,
) -> Result<Vec<String>, DbErr> {
    let expired = db::day2::expired(db, now).await?;
    let mut started = Vec::new();
    for res in expired {
        if let Some(open) = requests::open_for_resource(db, &res.id).await? {
            tracing::info!(resource_id = %res.id, request_id = %open, "expired, but busy with a request; reaping later");
            continue;
        }
        let req = requests::create_delete(db, &res, REAPER, max_attempts).await?;
        audit::record(
            db,
            REAPER,
            "resource.expired",
            Target::resource(&res.id),
            "deleting",
            Some(json!({"expiredAt": res.expires_at, "requestId": req.id})),
        )
        .await;
        audit::record(
            db,
            REAPER,
            "request.created",
            Target::request(&req.id),
            req.status.as_str(),
            Some(json!({"offering": req.offering, "operation": req.operation, "owner": req.owner, "resourceId": res.id})),
        )
        .await;
        tracing::info!(resource_id = %res.id, request_id = %req.id, "expired resource: deletion requested");
        notifier
            .send(
                db,
                Notification::to_owner_of(
                    Topic::ResourceExpired,
                    Severity::Normal,
                    (&res.owner, &res.entity_name, &res.id),
                    "expiry",
                    format!("{} expired and is being deleted", res.entity_name),
                    format!(
                        "The {} {} ({}) reached its expiry {} and paved is deleting it (request {}).",
                        res.offering,
                        res.entity_name,
                        res.environment,
                        res.expires_at.map(|e| e.to_rfc3339()).unwrap_or_default(),
                        req.id
                    ),
                ),
            )
            .await;
        started.push(req.id);
    }
    Ok(started)
}

/// Warns the owners of resources that expire soon: for each resource, once per offset in
/// `warn_before_hours` (the smallest offset that is due; one that is reached together with a
/// smaller one is not sent separately). A new expiry (after an extension) warns again.
/// Returns how many warnings were sent.
pub async fn warn_expiring(
    db: &DatabaseConnection,
    notifier: &Notifier,
    warn_before_hours: &[f64],
    now: DateTime<Utc>,
) -> Result<usize, DbErr> {
    let offsets: Vec<i64> = warn_before_hours
        .iter()
        .map(|h| (h * 3600.0).round() as i64)
        .filter(|s| *s > 0)
        .collect();
    let Some(widest) = offsets.iter().max().copied() else {
        return Ok(0);
    };
    let soon = db::day2::expiring(db, now, now + chrono::Duration::seconds(widest)).await?;
    let mut sent = 0;
    for res in soon {
        let Some(expires) = res.expires_at else {
            continue;
        };
        let left = (expires - now).num_seconds();
        let Some(offset) = offsets.iter().filter(|o| **o >= left).min().copied() else {
            continue;
        };
        // The unique index makes this once per resource, expiry and offset, across replicas.
        let key = format!("{}/{offset}", expires.to_rfc3339());
        if !db::notices::first_time(db, &res.id, NoticeKind::ExpiryWarning, &key, now).await? {
            continue;
        }
        let in_words = human_duration(left);
        audit::record(
            db,
            REAPER,
            "resource.expiry_warned",
            Target::resource(&res.id),
            "warned",
            Some(json!({"expiresAt": expires, "offsetSeconds": offset})),
        )
        .await;
        notifier
            .send(
                db,
                Notification::to_owner_of(
                    Topic::ExpiryWarning,
                    if left <= 2 * 3600 {
                        Severity::High
                    } else {
                        Severity::Normal
                    },
                    (&res.owner, &res.entity_name, &res.id),
                    "expiry",
                    format!("{} expires in {in_words}", res.entity_name),
                    format!(
                        "The {} {} ({}) expires at {} and will then be deleted with everything in it. Extend it with the paved:extend-ttl action or POST {}/v1/resources/{}/extend if you still need it.",
                        res.offering,
                        res.entity_name,
                        res.environment,
                        expires.to_rfc3339(),
                        notifier.plugin_base_path(),
                        res.id
                    ),
                ),
            )
            .await;
        sent += 1;
    }
    Ok(sent)
}

/// `2 hours`, `45 minutes`, `1 day 3 hours`.
pub fn human_duration(seconds: i64) -> String {
    let minutes = (seconds.max(0) + 59) / 60;
    let (days, hours, mins) = (minutes / 1440, (minutes % 1440) / 60, minutes % 60);
    let unit = |n: i64, one: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {one}s")
        }
    };
    match (days, hours, mins) {
        (0, 0, m) => unit(m, "minute"),
        (0, h, 0) => unit(h, "hour"),
        (0, h, m) => format!("{} {}", unit(h, "hour"), unit(m, "minute")),
        (d, 0, _) => unit(d, "day"),
        (d, h, _) => format!("{} {}", unit(d, "day"), unit(h, "hour")),
    }
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(human_duration(30), "1 minute");
        assert_eq!(human_duration(45 * 60), "45 minutes");
        assert_eq!(human_duration(3600), "1 hour");
        assert_eq!(human_duration(3600 + 120), "1 hour 2 minutes");
        assert_eq!(human_duration(26 * 3600), "1 day 2 hours");
        assert_eq!(human_duration(48 * 3600), "2 days");
    }
}
