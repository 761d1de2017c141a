//! The initial schema: everything paved keeps (product.md, "Data").
//! Never edit a migration once released; add a new one instead.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Requests::Table)
                .col(string(Requests::Id).primary_key())
                .col(string(Requests::Offering))
                .col(string(Requests::TemplateVersion))
                .col(string(Requests::Operation))
                .col(string(Requests::Status))
                .col(string(Requests::Requester))
                .col(string(Requests::Owner))
                .col(string_null(Requests::IdempotencyKey).unique_key())
                .col(json(Requests::Parameters))
                .col(json_null(Requests::Spec))
                .col(string_null(Requests::ResourceId))
                .col(text_null(Requests::Error))
                .col(timestamp_with_time_zone(Requests::CreatedAt))
                .col(timestamp_with_time_zone(Requests::UpdatedAt))
                .col(timestamp_with_time_zone_null(Requests::CompletedAt))
                .to_owned(),
        )
        .await?;
        index(
            m,
            Requests::Table,
            "idx_requests_owner_created",
            &[Requests::Owner, Requests::CreatedAt],
        )
        .await?;
        index(
            m,
            Requests::Table,
            "idx_requests_status",
            &[Requests::Status],
        )
        .await?;

        m.create_table(
            Table::create()
                .table(RequestSteps::Table)
                .col(big_pk_auto(RequestSteps::Id))
                .col(string(RequestSteps::RequestId))
                .col(integer(RequestSteps::Position))
                .col(string(RequestSteps::Name))
                .col(string(RequestSteps::Status))
                .col(integer(RequestSteps::Attempts).default(0))
                .col(timestamp_with_time_zone_null(RequestSteps::StartedAt))
                .col(timestamp_with_time_zone_null(RequestSteps::FinishedAt))
                .col(text_null(RequestSteps::Error))
                .foreign_key(
                    ForeignKey::create()
                        .from(RequestSteps::Table, RequestSteps::RequestId)
                        .to(Requests::Table, Requests::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        unique(
            m,
            RequestSteps::Table,
            "uq_request_steps_position",
            &[RequestSteps::RequestId, RequestSteps::Position],
        )
        .await?;

        m.create_table(
            Table::create()
                .table(RequestLogs::Table)
                .col(big_pk_auto(RequestLogs::Id))
                .col(string(RequestLogs::RequestId))
                .col(string_null(RequestLogs::Step))
                .col(string(RequestLogs::Level))
                .col(text(RequestLogs::Message))
                .col(timestamp_with_time_zone(RequestLogs::At))
                .foreign_key(
                    ForeignKey::create()
                        .from(RequestLogs::Table, RequestLogs::RequestId)
                        .to(Requests::Table, Requests::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        index(
            m,
            RequestLogs::Table,
            "idx_request_logs_request",
            &[RequestLogs::RequestId, RequestLogs::Id],
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Resources::Table)
                .col(string(Resources::Id).primary_key())
                .col(string_uniq(Resources::EntityName))
                .col(string(Resources::Offering))
                .col(string(Resources::OfferingVersion))
                .col(string(Resources::ResourceType))
                .col(string(Resources::Environment))
                .col(string(Resources::Owner))
                .col(string_null(Resources::System))
                .col(string_null(Resources::Component))
                .col(string(Resources::Status))
                .col(json(Resources::Desired))
                .col(json(Resources::Outputs))
                .col(big_integer_null(Resources::MonthlyCostCents))
                .col(timestamp_with_time_zone_null(Resources::ExpiresAt))
                .col(string(Resources::RequestId))
                .col(timestamp_with_time_zone(Resources::CreatedAt))
                .col(timestamp_with_time_zone(Resources::UpdatedAt))
                .col(timestamp_with_time_zone_null(Resources::DeletedAt))
                .to_owned(),
        )
        .await?;
        index(
            m,
            Resources::Table,
            "idx_resources_owner",
            &[Resources::Owner],
        )
        .await?;
        index(
            m,
            Resources::Table,
            "idx_resources_expires",
            &[Resources::ExpiresAt],
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Secrets::Table)
                .col(string(Secrets::Id).primary_key())
                .col(string(Secrets::ResourceId))
                .col(string(Secrets::Name))
                .col(string(Secrets::KeyId))
                .col(blob(Secrets::Nonce))
                .col(blob(Secrets::Ciphertext))
                .col(timestamp_with_time_zone(Secrets::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Secrets::Table, Secrets::ResourceId)
                        .to(Resources::Table, Resources::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        unique(
            m,
            Secrets::Table,
            "uq_secrets_resource_name",
            &[Secrets::ResourceId, Secrets::Name],
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Approvals::Table)
                .col(string(Approvals::Id).primary_key())
                .col(string(Approvals::RequestId))
                .col(string(Approvals::RequiredRole))
                .col(text(Approvals::Reason))
                .col(string(Approvals::Status))
                .col(string_null(Approvals::DecidedBy))
                .col(text_null(Approvals::DecisionReason))
                .col(timestamp_with_time_zone_null(Approvals::DecidedAt))
                .col(timestamp_with_time_zone(Approvals::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Approvals::Table, Approvals::RequestId)
                        .to(Requests::Table, Requests::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        index(
            m,
            Approvals::Table,
            "idx_approvals_status",
            &[Approvals::Status, Approvals::CreatedAt],
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Budgets::Table)
                .col(string(Budgets::Team).primary_key())
                .col(big_integer(Budgets::MonthlyLimitCents))
                .col(string(Budgets::UpdatedBy))
                .col(timestamp_with_time_zone(Budgets::UpdatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(AuditEvents::Table)
                .col(big_pk_auto(AuditEvents::Id))
                .col(timestamp_with_time_zone(AuditEvents::At))
                .col(string(AuditEvents::Actor))
                .col(string_null(AuditEvents::OnBehalfOf))
                .col(string(AuditEvents::EventType))
                .col(string(AuditEvents::Target))
                .col(string(AuditEvents::Outcome))
                .col(json_null(AuditEvents::Details))
                .to_owned(),
        )
        .await?;
        index(
            m,
            AuditEvents::Table,
            "idx_audit_target",
            &[AuditEvents::Target, AuditEvents::At],
        )
        .await?;
        index(
            m,
            AuditEvents::Table,
            "idx_audit_actor",
            &[AuditEvents::Actor, AuditEvents::At],
        )
        .await?;
        index(
            m,
            AuditEvents::Table,
            "idx_audit_type",
            &[AuditEvents::EventType, AuditEvents::At],
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Jobs::Table)
                .col(string(Jobs::Id).primary_key())
                .col(string(Jobs::Kind))
                .col(string_null(Jobs::RequestId))
                .col(json(Jobs::Payload))
                .col(string(Jobs::Status))
                .col(timestamp_with_time_zone(Jobs::RunAt))
                .col(integer(Jobs::Attempts).default(0))
                .col(integer(Jobs::MaxAttempts))
                .col(string_null(Jobs::LockedBy))
                .col(timestamp_with_time_zone_null(Jobs::LockedUntil))
                .col(text_null(Jobs::LastError))
                .col(timestamp_with_time_zone(Jobs::CreatedAt))
                .col(timestamp_with_time_zone(Jobs::UpdatedAt))
                .to_owned(),
        )
        .await?;
        index(
            m,
            Jobs::Table,
            "idx_jobs_claim",
            &[Jobs::Status, Jobs::RunAt],
        )
        .await?;

        m.create_table(
            Table::create()
                .table(SigningKeys::Table)
                .col(string(SigningKeys::Kid).primary_key())
                .col(string(SigningKeys::Algorithm))
                .col(blob(SigningKeys::PrivateKey))
                .col(json(SigningKeys::PublicJwk))
                .col(timestamp_with_time_zone(SigningKeys::CreatedAt))
                .col(timestamp_with_time_zone(SigningKeys::ExpiresAt))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            SigningKeys::Table.into_iden(),
            Jobs::Table.into_iden(),
            AuditEvents::Table.into_iden(),
            Budgets::Table.into_iden(),
            Approvals::Table.into_iden(),
            Secrets::Table.into_iden(),
            Resources::Table.into_iden(),
            RequestLogs::Table.into_iden(),
            RequestSteps::Table.into_iden(),
            Requests::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

async fn index<T: IntoIden + Copy + 'static, C: IntoIden + Copy + 'static>(
    m: &SchemaManager<'_>,
    table: T,
    name: &str,
    cols: &[C],
) -> Result<(), DbErr> {
    let mut stmt = Index::create();
    stmt.name(name).table(table);
    for c in cols {
        stmt.col(*c);
    }
    m.create_index(stmt.to_owned()).await
}

async fn unique<T: IntoIden + Copy + 'static, C: IntoIden + Copy + 'static>(
    m: &SchemaManager<'_>,
    table: T,
    name: &str,
    cols: &[C],
) -> Result<(), DbErr> {
    let mut stmt = Index::create();
    stmt.name(name).table(table).unique();
    for c in cols {
        stmt.col(*c);
    }
    m.create_index(stmt.to_owned()).await
}

#[derive(DeriveIden, Clone, Copy)]
enum Requests {
    Table,
    Id,
    Offering,
    TemplateVersion,
    Operation,
    Status,
    Requester,
    Owner,
    IdempotencyKey,
    Parameters,
    Spec,
    ResourceId,
    Error,
    CreatedAt,
    UpdatedAt,
    CompletedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum RequestSteps {
    Table,
    Id,
    RequestId,
    Position,
    Name,
    Status,
    Attempts,
    StartedAt,
    FinishedAt,
    Error,
}

#[derive(DeriveIden, Clone, Copy)]
enum RequestLogs {
    Table,
    Id,
    RequestId,
    Step,
    Level,
    Message,
    At,
}

#[derive(DeriveIden, Clone, Copy)]
enum Resources {
    Table,
    Id,
    EntityName,
    Offering,
    OfferingVersion,
    ResourceType,
    Environment,
    Owner,
    System,
    Component,
    Status,
    Desired,
    Outputs,
    MonthlyCostCents,
    ExpiresAt,
    RequestId,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Secrets {
    Table,
    Id,
    ResourceId,
    Name,
    KeyId,
    Nonce,
    Ciphertext,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Approvals {
    Table,
    Id,
    RequestId,
    RequiredRole,
    Reason,
    Status,
    DecidedBy,
    DecisionReason,
    DecidedAt,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Budgets {
    Table,
    Team,
    MonthlyLimitCents,
    UpdatedBy,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum AuditEvents {
    Table,
    Id,
    At,
    Actor,
    OnBehalfOf,
    EventType,
    Target,
    Outcome,
    Details,
}

#[derive(DeriveIden, Clone, Copy)]
enum Jobs {
    Table,
    Id,
    Kind,
    RequestId,
    Payload,
    Status,
    RunAt,
    Attempts,
    MaxAttempts,
    LockedBy,
    LockedUntil,
    LastError,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum SigningKeys {
    Table,
    Kid,
    Algorithm,
    PrivateKey,
    PublicJwk,
    CreatedAt,
    ExpiresAt,
}
