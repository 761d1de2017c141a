use sea_orm::entity::prelude::*;

/// A checked resource's drift. Stored as today's text; an unknown stored value is an error.
/// (A resource never checked has no row: the API calls that `unknown`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum DriftStatus {
    #[sea_orm(string_value = "detected")]
    Detected,
    #[sea_orm(string_value = "none")]
    None,
}

impl DriftStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Detected => "detected",
            Self::None => "none",
        }
    }
}

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "drift_states")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub resource_id: String,
    pub status: DriftStatus,
    pub checked_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
