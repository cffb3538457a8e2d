//! `messages`: every chat, quick, alert and system message, ordered by its
//! per-consultation `seq`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub consultation_id: String,
    pub seq: i64,
    pub sender_id: String,
    pub sender_role: String,
    pub kind: String,
    pub body: String,
    pub client_msg_id: Option<String>,
    pub created_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
