use sea_orm::entity::prelude::*;

/// A run of the Terraform CLI allowed to use one part's state.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "terraform_runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub resource_id: String,
    pub part: String,
    pub token_sha256: String,
    pub request_id: Option<String>,
    pub job_id: Option<String>,
    pub job_attempt: Option<i32>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
