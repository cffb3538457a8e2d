//! `outbox`: every push and SMS, written in the same transaction as the
//! message that caused it, then sent by the outbox worker.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub idempotency_key: String,
    pub consultation_id: String,
    pub message_seq: Option<i64>,
    pub recipient_id: String,
    pub channel: String,
    pub provider: String,
    pub target: String,
    pub title: String,
    pub body: String,
    pub reason: String,
    pub cancel_rule: String,
    pub status: String,
    pub attempts: i32,
    pub due_at: ChronoDateTimeUtc,
    pub next_attempt_at: ChronoDateTimeUtc,
    pub lease_until: Option<ChronoDateTimeUtc>,
    pub last_error: Option<String>,
    pub provider_message_id: Option<String>,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
