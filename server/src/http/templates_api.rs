//! The REST API for Quick Message templates, behind an API key: a clinic's
//! defaults and each provider's own, listed (paged by cursor), created,
//! updated and deleted as the clinic's admin.

use super::api::platform;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiKey, ApiPath, ApiQuery};
use super::paging;
use crate::app::AppState;
use crate::service::templates;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use consult_protocol::{ClinicId, QuickTemplate, UserId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_templates, create_template))
        .routes(routes!(update_template, delete_template))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TemplateQuery {
    /// Also this provider's own templates.
    #[serde(default)]
    provider_id: Option<UserId>,
    /// At most this many (default and most 500).
    #[serde(default)]
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u64>,
    /// Where to go on: the previous page's `next_cursor`.
    #[serde(default)]
    cursor: Option<String>,
}

/// Templates a page holds at most (more than one owner may save).
const MAX_TEMPLATE_PAGE: u64 = 500;

#[derive(Debug, Serialize, ToSchema)]
struct TemplateList {
    templates: Vec<QuickTemplate>,
    /// Present when more follow: pass it as `cursor` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// Lists the clinic's Quick Message templates: its defaults, and a
/// provider's own when `provider_id` is given.
#[utoipa::path(get, path = "/clinics/{clinic}/templates", tag = "templates", operation_id = "list_templates",
    params(("clinic" = ClinicId, Path, description = "The clinic"), TemplateQuery),
    responses((status = 200, description = "The templates, by position", body = TemplateList)))]
async fn list_templates(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(clinic): ApiPath<ClinicId>,
    ApiQuery(query): ApiQuery<TemplateQuery>,
) -> Result<Json<TemplateList>, ApiError> {
    ApiError::check_id("clinic", clinic.as_str())?;
    let limit = paging::limit(query.limit, MAX_TEMPLATE_PAGE, MAX_TEMPLATE_PAGE)?;
    let after = match &query.cursor {
        None => None,
        Some(cursor) => {
            let [group, position, title, id] = paging::decode(cursor)?;
            let default = match group.as_str() {
                "own" => false,
                "default" => true,
                _ => return Err(paging::refused()),
            };
            let position: i32 = paging::number(&position)?;
            Some((default, position, title, id))
        }
    };
    let mut templates = templates::list(&state, &platform(&clinic), query.provider_id).await?;
    // The listing's order (a provider's own before the clinic defaults, each
    // by position, then title), with the id to break ties.
    let key = |t: &QuickTemplate| {
        (
            t.provider_id.is_none(),
            t.position,
            t.title.clone(),
            t.id.clone(),
        )
    };
    templates.sort_by_key(key);
    if let Some(after) = after {
        templates.retain(|template| key(template) > after);
    }
    let more = templates.len() as u64 > limit;
    templates.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = more.then(|| templates.last()).flatten().map(|last| {
        let group = if last.provider_id.is_none() {
            "default"
        } else {
            "own"
        };
        let position = last.position.to_string();
        paging::encode([group, position.as_str(), &last.title, &last.id])
    });
    Ok(Json(TemplateList {
        templates,
        next_cursor,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TemplateBody {
    #[serde(default)]
    provider_id: Option<UserId>,
    /// Short label for the drop-down (1 to 80 characters).
    #[schema(min_length = 1, max_length = 80, pattern = r"\S")]
    title: String,
    /// The text, with `{variable}` placeholders (at most `session.max_body_chars` characters).
    #[schema(min_length = 1, pattern = r"\S")]
    body: String,
    #[serde(default)]
    position: Option<i32>,
}

/// Creates a template: a clinic default, or a provider's own.
#[utoipa::path(post, path = "/clinics/{clinic}/templates", tag = "templates", operation_id = "create_template",
    params(("clinic" = ClinicId, Path, description = "The clinic")), request_body = TemplateBody,
    responses(
        (status = 201, description = "The new template", body = QuickTemplate),
        (status = 404, description = "No such provider in the clinic (`not_found`)", body = ErrorBody),
    ))]
async fn create_template(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(clinic): ApiPath<ClinicId>,
    ApiJson(body): ApiJson<TemplateBody>,
) -> Result<(StatusCode, Json<QuickTemplate>), ApiError> {
    ApiError::check_id("clinic", clinic.as_str())?;
    let input = templates::TemplateInput {
        template_id: None,
        provider_id: body.provider_id,
        title: body.title,
        body: body.body,
        position: body.position,
    };
    let template = templates::save(&state, &platform(&clinic), input).await?;
    Ok((StatusCode::CREATED, Json(template)))
}

/// Replaces a template's title, body and position.
#[utoipa::path(put, path = "/clinics/{clinic}/templates/{id}", tag = "templates", operation_id = "update_template",
    params(("clinic" = ClinicId, Path, description = "The clinic"), ("id" = String, Path, description = "The template")), request_body = TemplateBody,
    responses(
        (status = 200, description = "The template after the change", body = QuickTemplate),
        (status = 404, description = "No such template (`not_found`)", body = ErrorBody),
    ))]
async fn update_template(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath((clinic, id)): ApiPath<(ClinicId, String)>,
    ApiJson(body): ApiJson<TemplateBody>,
) -> Result<Json<QuickTemplate>, ApiError> {
    ApiError::check_id("clinic", clinic.as_str())?;
    let input = templates::TemplateInput {
        template_id: Some(id),
        provider_id: body.provider_id,
        title: body.title,
        body: body.body,
        position: body.position,
    };
    Ok(Json(
        templates::save(&state, &platform(&clinic), input).await?,
    ))
}

/// Deletes a template.
#[utoipa::path(delete, path = "/clinics/{clinic}/templates/{id}", tag = "templates", operation_id = "delete_template",
    params(("clinic" = ClinicId, Path, description = "The clinic"), ("id" = String, Path, description = "The template")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such template (`not_found`)", body = ErrorBody),
    ))]
async fn delete_template(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath((clinic, id)): ApiPath<(ClinicId, String)>,
) -> Result<StatusCode, ApiError> {
    ApiError::check_id("clinic", clinic.as_str())?;
    templates::delete(&state, &platform(&clinic), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
