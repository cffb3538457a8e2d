//! `clinic_policies`: a clinic's escalation policy, overriding the hub's
//! defaults.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "clinic_policies")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub clinic_id: String,
    pub push_after_ms: i64,
    pub offline_grace_ms: i64,
    pub sms_after_unread_ms: Option<i64>,
    pub push_include_text: bool,
    pub updated_at: ChronoDateTimeUtc,
    pub message_retention_days: Option<i32>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
