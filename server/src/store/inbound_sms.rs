//! Inbound SMS already acted on, by Twilio `MessageSid`: the replay guard of
//! `POST /v1/sms/inbound`.

use super::StoreError;
use chrono::Utc;
use sea_orm::sea_query::{Alias, OnConflict, Query};
use sea_orm::{ConnectionTrait, DbErr};

/// The longest `MessageSid` stored (Twilio's are 34 characters).
pub const MAX_MESSAGE_SID_LEN: usize = 64;

/// Records `message_sid`; `true` the first time it is seen, `false` for a
/// replay. One statement, so two nodes receiving the same request at once
/// cannot both see it first.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn first_sight(db: &impl ConnectionTrait, message_sid: &str) -> Result<bool, StoreError> {
    let mut insert = Query::insert();
    insert
        .into_table(Alias::new("inbound_sms"))
        .columns([Alias::new("message_sid"), Alias::new("received_at")])
        .values([message_sid.into(), Utc::now().into()])
        .map_err(|error| DbErr::Custom(error.to_string()))?
        .on_conflict(
            OnConflict::column(Alias::new("message_sid"))
                .do_nothing()
                .to_owned(),
        );
    let result = db.execute(db.get_database_backend().build(&insert)).await?;
    Ok(result.rows_affected() == 1)
}
