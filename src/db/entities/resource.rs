use sea_orm::entity::prelude::*;

use crate::vocab::status::ResourceStatus;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "resources")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    #[sea_orm(unique)]
    pub entity_name: String,
    pub offering: String,
    pub offering_version: String,
    pub resource_type: String,
    pub environment: String,
    pub owner: String,
    pub system: Option<String>,
    pub component: Option<String>,
    pub status: ResourceStatus,
    pub desired: Json,
    pub outputs: Json,
    pub monthly_cost_cents: Option<i64>,
    pub expires_at: Option<DateTimeUtc>,
    pub request_id: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub deleted_at: Option<DateTimeUtc>,
    /// `vocab::bucket::bucket_of(id)`: which catalog page publishes this resource.
    pub catalog_bucket: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
