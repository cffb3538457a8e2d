//! `sms_preferences`: a patient's SMS consent and STOP opt-out, per clinic.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sms_preferences")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub clinic_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    pub consent: bool,
    pub opted_out: bool,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
