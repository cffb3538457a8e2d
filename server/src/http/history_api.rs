//! The REST API's reads of a consultation's history, behind an API key:
//! its messages (newest page first) and its audit trail (oldest first),
//! both paged by cursor.

use super::api::{MAX_LIST_LIMIT, find_consultation};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiKey, ApiPath, ApiQuery};
use super::paging;
use crate::app::AppState;
use crate::service::messaging;
use crate::store::audit;
use axum::Json;
use axum::extract::State;
use consult_protocol::{ChatMessage, ConsultationId, Seq};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_messages))
        .routes(routes!(list_audit))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct MessagesQuery {
    /// Only messages before this `seq` (the same as a `cursor`).
    #[serde(default)]
    before: Option<u64>,
    /// At most this many (default 50).
    #[serde(default)]
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// Where to go on: the previous page's `next_cursor` (older messages).
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct MessagePage {
    messages: Vec<ChatMessage>,
    /// Older messages remain.
    has_more: bool,
    /// Present when older messages remain: pass it as `cursor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// A page of the consultation's message history, newest first.
#[utoipa::path(get, path = "/consultations/{id}/messages", tag = "messages", operation_id = "list_messages",
    params(("id" = ConsultationId, Path, description = "The consultation"), MessagesQuery),
    responses(
        (status = 200, description = "A page of messages, in `seq` order", body = MessagePage),
        (status = 404, description = "No such consultation (`not_found`)", body = ErrorBody),
    ))]
async fn list_messages(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<ConsultationId>,
    ApiQuery(query): ApiQuery<MessagesQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    let before = match (&query.cursor, query.before) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("give before or cursor, not both"));
        }
        (Some(cursor), None) => {
            let [seq] = paging::decode(cursor)?;
            Some(Seq(paging::number(&seq)?))
        }
        (None, before) => before.map(Seq),
    };
    find_consultation(&state, &id).await?;
    let (messages, has_more) = messaging::history(&state, &id, before, query.limit).await?;
    let next_cursor = has_more
        .then(|| messages.first())
        .flatten()
        .map(|oldest| paging::encode([oldest.seq.get().to_string().as_str()]));
    Ok(Json(MessagePage {
        messages,
        has_more,
        next_cursor,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// At most this many (default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u64>,
    /// Where to go on: the previous page's `next_cursor`.
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct AuditTrail {
    entries: Vec<audit::AuditRecord>,
    /// Present when more follow: pass it as `cursor` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// The consultation's audit trail, oldest first.
#[utoipa::path(get, path = "/consultations/{id}/audit", tag = "consultations", operation_id = "list_audit",
    params(("id" = ConsultationId, Path, description = "The consultation"), AuditQuery),
    responses(
        (status = 200, description = "The audit entries", body = AuditTrail),
        (status = 404, description = "No such consultation (`not_found`)", body = ErrorBody),
    ))]
async fn list_audit(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<ConsultationId>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditTrail>, ApiError> {
    let limit = paging::limit(query.limit, 100, MAX_LIST_LIMIT)?;
    let after = match &query.cursor {
        None => None,
        Some(cursor) => {
            let [position] = paging::decode(cursor)?;
            Some(paging::number(&position)?)
        }
    };
    find_consultation(&state, &id).await?;
    let (entries, last) =
        audit::for_consultation(state.store.connection(), &id, after, limit).await?;
    let next_cursor = last.map(|position| paging::encode([position.to_string().as_str()]));
    Ok(Json(AuditTrail {
        entries,
        next_cursor,
    }))
}
