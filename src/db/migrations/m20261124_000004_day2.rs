//! Day-2 operations: schedule leases (one replica runs each schedule), notices sent once per
//! resource (expiry warnings, unused alerts), the notification outbox, drift findings and each
//! resource's drift state, and usage samples for unused-resource detection.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ScheduleLeases::Table)
                .col(string(ScheduleLeases::Name).primary_key())
                .col(string_null(ScheduleLeases::Holder))
                .col(timestamp_with_time_zone_null(ScheduleLeases::LockedUntil))
                .col(timestamp_with_time_zone_null(ScheduleLeases::LastStartedAt))
                .col(timestamp_with_time_zone_null(
                    ScheduleLeases::LastFinishedAt,
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ResourceNotices::Table)
                .col(big_pk_auto(ResourceNotices::Id))
                .col(string(ResourceNotices::ResourceId))
                .col(string(ResourceNotices::Kind))
                .col(string(ResourceNotices::NoticeKey))
                .col(timestamp_with_time_zone(ResourceNotices::SentAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_resource_notices")
                .table(ResourceNotices::Table)
                .col(ResourceNotices::ResourceId)
                .col(ResourceNotices::Kind)
                .col(ResourceNotices::NoticeKey)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Notifications::Table)
                .col(string(Notifications::Id).primary_key())
                .col(string(Notifications::Channel))
                .col(string(Notifications::Topic))
                .col(json(Notifications::Recipients))
                .col(json(Notifications::Payload))
                .col(string(Notifications::Status))
                .col(integer(Notifications::Attempts).default(0))
                .col(timestamp_with_time_zone(Notifications::NextAttemptAt))
                .col(timestamp_with_time_zone_null(Notifications::LockedUntil))
                .col(text_null(Notifications::LastError))
                .col(timestamp_with_time_zone(Notifications::CreatedAt))
                .col(timestamp_with_time_zone_null(Notifications::SentAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_notifications_due")
                .table(Notifications::Table)
                .col(Notifications::Status)
                .col(Notifications::NextAttemptAt)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(DriftFindings::Table)
                .col(big_pk_auto(DriftFindings::Id))
                .col(string(DriftFindings::ResourceId))
                .col(string(DriftFindings::Part))
                .col(string(DriftFindings::Field))
                .col(json_null(DriftFindings::Expected))
                .col(json_null(DriftFindings::Actual))
                .col(string(DriftFindings::Status))
                .col(timestamp_with_time_zone(DriftFindings::DetectedAt))
                .col(timestamp_with_time_zone(DriftFindings::LastSeenAt))
                .col(timestamp_with_time_zone_null(DriftFindings::ResolvedAt))
                .col(string_null(DriftFindings::ResolvedBy))
                .col(string_null(DriftFindings::RequestId))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_drift_findings_resource")
                .table(DriftFindings::Table)
                .col(DriftFindings::ResourceId)
                .col(DriftFindings::Status)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_drift_findings_detected")
                .table(DriftFindings::Table)
                .col(DriftFindings::DetectedAt)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(DriftStates::Table)
                .col(string(DriftStates::ResourceId).primary_key())
                .col(string(DriftStates::Status))
                .col(timestamp_with_time_zone(DriftStates::CheckedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(UsageSamples::Table)
                .col(big_pk_auto(UsageSamples::Id))
                .col(string(UsageSamples::ResourceId))
                .col(string(UsageSamples::Part))
                .col(string(UsageSamples::Kind))
                .col(timestamp_with_time_zone(UsageSamples::At))
                .col(big_integer(UsageSamples::Active))
                .col(big_integer(UsageSamples::Counter))
                .col(big_integer_null(UsageSamples::IdleSeconds))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_usage_samples_resource")
                .table(UsageSamples::Table)
                .col(UsageSamples::ResourceId)
                .col(UsageSamples::Part)
                .col(UsageSamples::At)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            UsageSamples::Table.into_iden(),
            DriftStates::Table.into_iden(),
            DriftFindings::Table.into_iden(),
            Notifications::Table.into_iden(),
            ResourceNotices::Table.into_iden(),
            ScheduleLeases::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum ScheduleLeases {
    Table,
    Name,
    Holder,
    LockedUntil,
    LastStartedAt,
    LastFinishedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum ResourceNotices {
    Table,
    Id,
    ResourceId,
    Kind,
    NoticeKey,
    SentAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Notifications {
    Table,
    Id,
    Channel,
    Topic,
    Recipients,
    Payload,
    Status,
    Attempts,
    NextAttemptAt,
    LockedUntil,
    LastError,
    CreatedAt,
    SentAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum DriftFindings {
    Table,
    Id,
    ResourceId,
    Part,
    Field,
    Expected,
    Actual,
    Status,
    DetectedAt,
    LastSeenAt,
    ResolvedAt,
    ResolvedBy,
    RequestId,
}

#[derive(DeriveIden, Clone, Copy)]
enum DriftStates {
    Table,
    ResourceId,
    Status,
    CheckedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum UsageSamples {
    Table,
    Id,
    ResourceId,
    Part,
    Kind,
    At,
    Active,
    Counter,
    IdleSeconds,
}
