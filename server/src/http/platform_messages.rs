//! `POST /v1/consultations/{id}/messages`: a message from the host
//! platform's back end, through the same path as a WebSocket `send`: stored
//! by the group-commit writer, idempotent by `client_msg_id`, seen live by
//! the room's members, its push and SMS notifications planned by the same
//! rules as a staff message, and audited (`message.platform`).
//!
//! Without `sender_id` the message is a `system` message from `platform`
//! (role `admin`); with the consultation's provider as `sender_id` it is a
//! chat message sent on the provider's behalf.

use super::api::{find_consultation, platform};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiKey, ApiPath};
use crate::app::AppState;
use crate::auth::Principal;
use crate::service::messaging::{self, Outgoing};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use consult_protocol::{ConsultationId, MessageKind, NotificationView, Role, Seq, UserId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(post_message))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PlatformMessage {
    /// The platform's idempotency key: a retry with the same key and body
    /// answers the stored message.
    #[schema(pattern = r"^[!-~]{1,128}$")]
    client_msg_id: String,
    /// The text (at most `session.max_body_chars` characters, 4,000 by default).
    #[schema(min_length = 1, pattern = r"\S")]
    body: String,
    /// Send on behalf of the consultation's provider (a chat message);
    /// absent: a system message from the platform.
    #[serde(default)]
    sender_id: Option<UserId>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Posted {
    consultation_id: ConsultationId,
    seq: Seq,
    client_msg_id: String,
    duplicate: bool,
    sent_at: DateTime<Utc>,
    notifications: Vec<NotificationView>,
}

/// Posts a message from the platform: a system message, or a chat
/// message on the provider's behalf. Idempotent by `client_msg_id`.
#[utoipa::path(post, path = "/consultations/{id}/messages", tag = "messages", operation_id = "post_message",
    params(("id" = ConsultationId, Path, description = "The consultation")),
    request_body = PlatformMessage,
    responses(
        (status = 201, description = "Stored and delivered live", body = Posted),
        (status = 200, description = "A retry of a stored message (`duplicate`: true)", body = Posted),
        (status = 404, description = "No such consultation (`not_found`)", body = ErrorBody),
        (status = 409, description = "The consultation is closed (`consultation_closed`), or the key was used with another body (`duplicate_client_msg_id`)", body = ErrorBody),
    ))]
async fn post_message(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<ConsultationId>,
    ApiJson(request): ApiJson<PlatformMessage>,
) -> Result<(StatusCode, Json<Posted>), ApiError> {
    let consultation = find_consultation(&state, &id).await?;
    let (principal, kind) = match &request.sender_id {
        None => (platform(&consultation.clinic_id), MessageKind::System),
        Some(sender) if *sender == consultation.provider_id => (
            Principal {
                user: sender.clone(),
                role: Role::Provider,
                clinic: consultation.clinic_id.clone(),
            },
            MessageKind::Chat,
        ),
        Some(_) => {
            return Err(ApiError::invalid(
                "sender_id must be the consultation's provider, or absent",
            ));
        }
    };
    let outgoing = Outgoing {
        consultation_id: id.clone(),
        kind,
        body: request.body,
        client_msg_id: Some(request.client_msg_id.clone()),
        notifications: Vec::new(),
        audit: None,
    };
    let detail = serde_json::json!({
        "client_msg_id": request.client_msg_id,
        "sender_id": principal.user,
    });
    let sent = messaging::send_audited(
        &state,
        &principal,
        outgoing,
        &consultation,
        "message.platform",
        detail,
    )
    .await?;
    let status = if sent.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(Posted {
            consultation_id: id,
            seq: sent.seq,
            client_msg_id: request.client_msg_id,
            duplicate: sent.duplicate,
            sent_at: sent.sent_at,
            notifications: sent.notifications,
        }),
    ))
}
