//! `consultations`: one row per consultation (room), with its status, the
//! last message sequence number and the dashboard revision.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "consultations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub clinic_id: String,
    pub provider_id: String,
    pub patient_id: String,
    pub status: String,
    pub scheduled_at: ChronoDateTimeUtc,
    pub waiting_since: Option<ChronoDateTimeUtc>,
    pub staff_messaged_first: bool,
    pub last_seq: i64,
    pub rev: i64,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
    pub ended_at: Option<ChronoDateTimeUtc>,
    pub messages_purged_at: Option<ChronoDateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
