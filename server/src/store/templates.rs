//! Quick Message templates: clinic defaults (seeded on first use) and
//! providers' own.

use super::StoreError;
use super::entities::quick_template;
use crate::domain::templates::{CLINIC_DEFAULTS, variables};
use chrono::Utc;
use consult_protocol::{ClinicId, QuickTemplate, UserId};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

/// Creates the clinic's default templates if they do not exist yet. Ids are
/// deterministic, so seeding twice (or from two nodes) is harmless.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn seed_defaults(db: &impl ConnectionTrait, clinic: &ClinicId) -> Result<(), StoreError> {
    let now = Utc::now();
    let rows = CLINIC_DEFAULTS
        .iter()
        .zip(0..)
        .map(
            |((key, title, body), position)| quick_template::ActiveModel {
                id: Set(format!("{clinic}:{key}")),
                clinic_id: Set(clinic.to_string()),
                provider_id: Set(None),
                title: Set((*title).to_owned()),
                body: Set((*body).to_owned()),
                position: Set(position * 10),
                created_at: Set(now),
                updated_at: Set(now),
            },
        );
    quick_template::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::column(quick_template::Column::Id)
                .do_nothing()
                .to_owned(),
        )
        .do_nothing()
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// The clinic's defaults plus, when `provider` is given, that provider's own
/// templates (listed first), each group in position order.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn list(
    db: &impl ConnectionTrait,
    clinic: &ClinicId,
    provider: Option<&UserId>,
) -> Result<Vec<QuickTemplate>, StoreError> {
    let mut scope = Condition::any().add(quick_template::Column::ProviderId.is_null());
    if let Some(provider) = provider {
        scope = scope.add(quick_template::Column::ProviderId.eq(provider.to_string()));
    }
    let rows = quick_template::Entity::find()
        .filter(quick_template::Column::ClinicId.eq(clinic.to_string()))
        .filter(scope)
        .order_by_asc(quick_template::Column::Position)
        .order_by_asc(quick_template::Column::Title)
        .all(db)
        .await?;
    let mut templates: Vec<QuickTemplate> = rows.into_iter().map(from_row).collect();
    templates.sort_by_key(|t| t.provider_id.is_none());
    Ok(templates)
}

/// One template.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn find(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<QuickTemplate>, StoreError> {
    Ok(quick_template::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .map(from_row))
}

/// Inserts or updates a template.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn save(db: &impl ConnectionTrait, template: &QuickTemplate) -> Result<(), StoreError> {
    let now = Utc::now();
    let row = quick_template::ActiveModel {
        id: Set(template.id.clone()),
        clinic_id: Set(template.clinic_id.to_string()),
        provider_id: Set(template.provider_id.as_ref().map(ToString::to_string)),
        title: Set(template.title.clone()),
        body: Set(template.body.clone()),
        position: Set(template.position),
        created_at: Set(now),
        updated_at: Set(now),
    };
    quick_template::Entity::insert(row)
        .on_conflict(
            OnConflict::column(quick_template::Column::Id)
                .update_columns([
                    quick_template::Column::Title,
                    quick_template::Column::Body,
                    quick_template::Column::Position,
                    quick_template::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Deletes a template. Returns whether it existed.
///
/// # Errors
///
/// [`StoreError::Db`] on database failure.
pub async fn delete(db: &impl ConnectionTrait, id: &str) -> Result<bool, StoreError> {
    let result = quick_template::Entity::delete_by_id(id.to_owned())
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

fn from_row(row: quick_template::Model) -> QuickTemplate {
    QuickTemplate {
        variables: variables(&row.body),
        id: row.id,
        clinic_id: ClinicId(row.clinic_id),
        provider_id: row.provider_id.map(UserId),
        title: row.title,
        body: row.body,
        position: row.position,
    }
}
