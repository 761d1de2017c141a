use sea_orm::entity::prelude::*;

/// What became of a finding. Stored as today's text; an unknown stored value is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum FindingStatus {
    /// Still differs.
    #[sea_orm(string_value = "open")]
    Open,
    /// Gone by itself.
    #[sea_orm(string_value = "resolved")]
    Resolved,
    /// An update request re-applies the desired state.
    #[sea_orm(string_value = "reverted")]
    Reverted,
    /// The actual value became the expected one.
    #[sea_orm(string_value = "accepted")]
    Accepted,
    /// Changed again: a newer finding replaces it.
    #[sea_orm(string_value = "superseded")]
    Superseded,
}

impl FindingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Resolved => "resolved",
            Self::Reverted => "reverted",
            Self::Accepted => "accepted",
            Self::Superseded => "superseded",
        }
    }
}

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "drift_findings")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub resource_id: String,
    pub part: String,
    pub field: String,
    pub expected: Option<Json>,
    pub actual: Option<Json>,
    pub status: FindingStatus,
    pub detected_at: DateTimeUtc,
    pub last_seen_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
    pub resolved_by: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
