//! Stored token revocations, so that they survive a restart. Every node
//! loads them all at start and again after a broker resync.

use super::StoreError;
use super::entities::token_revocation;
use crate::auth::revocation::Revocation;
use chrono::Utc;
use consult_protocol::{ClinicId, UserId};
use sea_orm::{ActiveValue::NotSet, ConnectionTrait, EntityTrait, QueryOrder, Set};

/// Stores a revocation. A `Disconnect` is not stored (it is not lasting).
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn insert(db: &impl ConnectionTrait, revocation: &Revocation) -> Result<(), StoreError> {
    let mut row = token_revocation::ActiveModel {
        id: NotSet,
        kind: NotSet,
        jti: Set(None),
        clinic_id: Set(None),
        user_id: Set(None),
        issued_before: Set(None),
        expires_at: Set(None),
        created_at: Set(Utc::now()),
    };
    match revocation {
        Revocation::Token { jti, expires_at } => {
            row.kind = Set("token".to_owned());
            row.jti = Set(Some(jti.clone()));
            row.expires_at = Set(expires_at.and_then(|exp| i64::try_from(exp).ok()));
        }
        Revocation::User {
            clinic,
            user,
            issued_before,
        } => {
            row.kind = Set("user".to_owned());
            row.clinic_id = Set(Some(clinic.to_string()));
            row.user_id = Set(Some(user.to_string()));
            row.issued_before = Set(Some(i64::try_from(*issued_before).unwrap_or(i64::MAX)));
        }
        Revocation::Disconnect { .. } => return Ok(()),
    }
    token_revocation::Entity::insert(row)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Every stored revocation, oldest first. Rows that cannot be read back
/// (an unknown kind) are skipped.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn all(db: &impl ConnectionTrait) -> Result<Vec<Revocation>, StoreError> {
    let rows = token_revocation::Entity::find()
        .order_by_asc(token_revocation::Column::Id)
        .all(db)
        .await?;
    Ok(rows.into_iter().filter_map(from_row).collect())
}

fn from_row(row: token_revocation::Model) -> Option<Revocation> {
    match row.kind.as_str() {
        "token" => Some(Revocation::Token {
            jti: row.jti?,
            expires_at: row.expires_at.and_then(|exp| u64::try_from(exp).ok()),
        }),
        "user" => Some(Revocation::User {
            clinic: ClinicId(row.clinic_id?),
            user: UserId(row.user_id?),
            issued_before: u64::try_from(row.issued_before?).unwrap_or(0),
        }),
        _ => None,
    }
}
