//! Delivered and read receipts: per member, the highest sequence number
//! acknowledged. Receipts only move forward; they are written by the
//! receipt batcher ([`super::receipt_batch`]), many per transaction.

use super::entities::receipt;
use super::{StoreError, to_u64};
use consult_protocol::{ConsultationId, UserId};
use sea_orm::{ConnectionTrait, EntityTrait};

/// A member's receipt positions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiptState {
    /// Highest delivered sequence number.
    pub delivered: u64,
    /// Highest read sequence number.
    pub read: u64,
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
