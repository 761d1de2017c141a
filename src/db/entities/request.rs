use sea_orm::entity::prelude::*;

use crate::{
    cost::Estimate,
    policy::PolicyDecision,
    vocab::status::{Operation, RequestStatus},
};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "requests")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub offering: String,
    pub template_version: String,
    pub operation: Operation,
    pub status: RequestStatus,
    pub requester: String,
    pub owner: String,
    /// Unique per owner (`uq_requests_owner_idempotency_key`), not globally.
    pub idempotency_key: Option<String>,
    pub parameters: Json,
    pub spec: Option<Json>,
    pub resource_id: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
    /// The cost estimate it was accepted with (none for a delete).
    pub estimate: Option<Estimate>,
    /// The policy decision it was stored with (none for a delete).
    pub decision: Option<PolicyDecision>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::request_step::Entity")]
    Steps,
}

impl Related<super::request_step::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Steps.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
