//! Quick Message template management: clinic defaults (admins) and
//! providers' own templates (the provider, or an admin for it).

use super::ServiceError;
use crate::app::AppState;
use crate::auth::Principal;
use crate::domain::templates;
use crate::store::audit::{self, AuditEntry};
use crate::store::templates as stored;
use consult_protocol::{ErrorCode, QuickTemplate, Role, UserId};

/// Most templates one provider (or the clinic) may have.
pub const MAX_TEMPLATES: usize = 50;

/// The most text (titles and bodies, as JSON encodes them) one owner's
/// templates may hold: a quarter of the answer budget
/// (`SessionConfig::answer_budget_bytes`, so 128 KiB by default). A
/// `list_templates` answer carries the clinic's and one provider's, so it
/// always fits in one answer.
pub fn owner_text_budget(state: &AppState) -> usize {
    state.config.session.answer_budget_bytes() / 4
}

/// A template's title and body as JSON encodes them.
fn encoded_text_size(template: &QuickTemplate) -> usize {
    [&template.title, &template.body]
        .into_iter()
        .map(|text| serde_json::to_string(text).map_or(usize::MAX, |encoded| encoded.len()))
        .fold(0, usize::saturating_add)
}

/// Refuses `template` when its owner's templates, it included, would hold
/// more text than [`owner_text_budget`].
async fn check_owner_text(state: &AppState, template: &QuickTemplate) -> Result<(), ServiceError> {
    let siblings = stored::list(
        state.store.connection(),
        &template.clinic_id,
        template.provider_id.as_ref(),
    )
    .await?;
    let used = siblings
        .iter()
        .filter(|other| other.provider_id == template.provider_id && other.id != template.id)
        .map(encoded_text_size)
        .fold(encoded_text_size(template), usize::saturating_add);
    let budget = owner_text_budget(state);
    if used > budget {
        return Err(ServiceError::refused(
            ErrorCode::InvalidValue,
            format!(
                "one owner's templates may hold at most {} KiB of text; shorten or delete some",
                budget / 1024
            ),
        ));
    }
    Ok(())
}

/// The templates `principal` can use: clinic defaults plus the provider's
/// own (for an admin, those of `provider` if named).
///
/// # Errors
///
/// `forbidden` for patients or a provider naming another provider; a store
/// failure.
pub async fn list(
    state: &AppState,
    principal: &Principal,
    provider: Option<UserId>,
) -> Result<Vec<QuickTemplate>, ServiceError> {
    ServiceError::check_optional_id("provider_id", provider.as_ref())?;
    let owner = owner_scope(principal, provider)?;
    let db = state.store.connection();
    stored::seed_defaults(db, &principal.clinic).await?;
    Ok(stored::list(db, &principal.clinic, owner.as_ref()).await?)
}

/// Which provider's templates `principal` may see or change.
fn owner_scope(
    principal: &Principal,
    provider: Option<UserId>,
) -> Result<Option<UserId>, ServiceError> {
    match (principal.role, provider) {
        (Role::Patient, _) => Err(ServiceError::refused(
            ErrorCode::Forbidden,
            "patients have no Quick Messages",
        )),
        (Role::Provider, None) => Ok(Some(principal.user.clone())),
        (Role::Provider, Some(other)) if other == principal.user => Ok(Some(other)),
        (Role::Provider, Some(_)) => Err(ServiceError::refused(
            ErrorCode::Forbidden,
            "a provider may manage only its own templates",
        )),
        (Role::Admin, provider) => Ok(provider),
    }
}

/// A template to create or update.
#[derive(Debug, Clone)]
pub struct TemplateInput {
    /// The template to update; `None` creates one.
    pub template_id: Option<String>,
    /// Its provider; `None` for a clinic default.
    pub provider_id: Option<UserId>,
    /// Label.
    pub title: String,
    /// Text.
    pub body: String,
    /// Order.
    pub position: Option<i32>,
}

/// Creates or updates a template.
///
/// # Errors
///
/// `forbidden` (patients; providers touching clinic defaults or others'
/// templates), `not_found`, `invalid_value`; a store failure.
pub async fn save(
    state: &AppState,
    principal: &Principal,
    input: TemplateInput,
) -> Result<QuickTemplate, ServiceError> {
    templates::check(
        &input.title,
        &input.body,
        state.config.session.max_body_chars,
    )?;
    ServiceError::check_optional_id("provider_id", input.provider_id.as_ref())?;
    let db = state.store.connection();
    stored::seed_defaults(db, &principal.clinic).await?;
    let template = match &input.template_id {
        Some(id) => {
            let existing = stored::find(db, id)
                .await?
                .filter(|t| t.clinic_id == principal.clinic)
                .ok_or_else(|| {
                    ServiceError::refused(ErrorCode::NotFound, format!("no template {id}"))
                })?;
            may_change(principal, &existing)?;
            QuickTemplate {
                title: input.title.trim().to_owned(),
                body: input.body,
                position: input.position.unwrap_or(existing.position),
                variables: Vec::new(),
                ..existing
            }
        }
        None => {
            let owner = match input.provider_id {
                None if principal.role == Role::Admin => None,
                None => owner_scope(principal, None)?,
                Some(provider) => owner_scope(principal, Some(provider))?,
            };
            let count = stored::list(db, &principal.clinic, owner.as_ref())
                .await?
                .iter()
                .filter(|t| t.provider_id == owner)
                .count();
            if count >= MAX_TEMPLATES {
                return Err(ServiceError::refused(
                    ErrorCode::InvalidValue,
                    format!("at most {MAX_TEMPLATES} templates"),
                ));
            }
            QuickTemplate {
                id: uuid::Uuid::new_v4().to_string(),
                clinic_id: principal.clinic.clone(),
                provider_id: owner,
                title: input.title.trim().to_owned(),
                body: input.body,
                position: input.position.unwrap_or(1000),
                variables: Vec::new(),
            }
        }
    };
    check_owner_text(state, &template).await?;
    stored::save(db, &template).await?;
    audit::record(
        db,
        AuditEntry {
            actor: principal.into(),
            action: "template.save",
            consultation: None,
            detail: serde_json::json!({ "template_id": template.id, "provider_id": template.provider_id }),
        },
    )
    .await?;
    stored::find(db, &template.id)
        .await?
        .ok_or_else(|| ServiceError::refused(ErrorCode::NotFound, "template vanished"))
}

/// Deletes a template.
///
/// # Errors
///
/// `forbidden`, `not_found`; a store failure.
pub async fn delete(state: &AppState, principal: &Principal, id: &str) -> Result<(), ServiceError> {
    let db = state.store.connection();
    let existing = stored::find(db, id)
        .await?
        .filter(|t| t.clinic_id == principal.clinic)
        .ok_or_else(|| ServiceError::refused(ErrorCode::NotFound, format!("no template {id}")))?;
    may_change(principal, &existing)?;
    stored::delete(db, id).await?;
    audit::record(
        db,
        AuditEntry {
            actor: principal.into(),
            action: "template.delete",
            consultation: None,
            detail: serde_json::json!({ "template_id": id }),
        },
    )
    .await?;
    Ok(())
}

fn may_change(principal: &Principal, template: &QuickTemplate) -> Result<(), ServiceError> {
    let allowed = match principal.role {
        Role::Admin => true,
        Role::Provider => template.provider_id.as_ref() == Some(&principal.user),
        Role::Patient => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(ServiceError::refused(
            ErrorCode::Forbidden,
            "only a clinic admin changes clinic defaults, and providers only their own",
        ))
    }
}
