use sea_orm::entity::prelude::*;

/// What an owner was told once (the unique index on resource, kind and key makes it once).
/// Stored as today's text; an unknown stored value is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum NoticeKind {
    #[sea_orm(string_value = "unused")]
    Unused,
    #[sea_orm(string_value = "expiry-warning")]
    ExpiryWarning,
}

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "resource_notices")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub resource_id: String,
    pub kind: NoticeKind,
    pub notice_key: String,
    pub sent_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
