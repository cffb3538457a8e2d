//! Delivered and read receipts: per member, the highest sequence number
//! acknowledged. Receipts only move forward.

use super::entities::receipt;
use super::{StoreError, to_i64, to_u64};
use chrono::Utc;
use consult_protocol::{ConsultationId, ReceiptKind, UserId};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ConnectionTrait, EntityTrait, Set};

/// A member's receipt positions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiptState {
    /// Highest delivered sequence number.
    pub delivered: u64,
    /// Highest read sequence number.
    pub read: u64,
}

/// Records that `user` acknowledged up to `seq`. A read implies delivered.
/// Returns the state after the update and whether it moved.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn record(
    db: &impl ConnectionTrait,
    consultation: &ConsultationId,
    user: &UserId,
    kind: ReceiptKind,
    seq: u64,
) -> Result<(ReceiptState, bool), StoreError> {
    let before = find(db, consultation, user).await?;
    let after = ReceiptState {
        delivered: before.delivered.max(seq),
        read: match kind {
            ReceiptKind::Read => before.read.max(seq),
            ReceiptKind::Delivered => before.read,
        },
    };
    if after == before {
        return Ok((before, false));
    }
    let row = receipt::ActiveModel {
        consultation_id: Set(consultation.to_string()),
        user_id: Set(user.to_string()),
        delivered_seq: Set(to_i64(after.delivered)),
        read_seq: Set(to_i64(after.read)),
        updated_at: Set(Utc::now()),
    };
    // GREATEST/MAX keeps receipts monotonic even when two acks race.
    let max_fn = if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        "GREATEST"
    } else {
        "MAX"
    };
    receipt::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([receipt::Column::ConsultationId, receipt::Column::UserId])
                .value(
                    receipt::Column::DeliveredSeq,
                    Expr::cust(format!(
                        "{max_fn}(receipts.delivered_seq, excluded.delivered_seq)"
                    )),
                )
                .value(
                    receipt::Column::ReadSeq,
                    Expr::cust(format!("{max_fn}(receipts.read_seq, excluded.read_seq)")),
                )
                .update_column(receipt::Column::UpdatedAt)
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok((after, true))
}

/// The receipt state of `user` in `consultation` (zeros when none).
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn find(
    db: &impl ConnectionTrait,
    consultation: &ConsultationId,
    user: &UserId,
) -> Result<ReceiptState, StoreError> {
    Ok(
        receipt::Entity::find_by_id((consultation.to_string(), user.to_string()))
            .one(db)
            .await?
            .map(|row| ReceiptState {
                delivered: to_u64(row.delivered_seq),
                read: to_u64(row.read_seq),
            })
            .unwrap_or_default(),
    )
}
