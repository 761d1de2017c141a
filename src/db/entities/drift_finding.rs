use sea_orm::entity::prelude::*;

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
    pub status: String,
    pub detected_at: DateTimeUtc,
    pub last_seen_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
    pub resolved_by: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
