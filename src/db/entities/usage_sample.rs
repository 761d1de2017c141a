use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_samples")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub resource_id: String,
    pub part: String,
    /// `sample` (a reading of the driver's usage) or `self` (activity paved itself caused).
    pub kind: String,
    pub at: DateTimeUtc,
    pub active: i64,
    pub counter: i64,
    pub idle_seconds: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
