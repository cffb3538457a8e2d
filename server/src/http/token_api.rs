//! `POST /v1/tokens`: the host platform's back end asks for a WebSocket
//! token for one of its users (behind an API key); the issue is audited.

use super::api::ensure_in_clinic;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiKey};
use crate::app::AppState;
use crate::auth::Principal;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use consult_protocol::{ClinicId, Role, UserId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Longest token lifetime the API issues: 24 hours.
const MAX_TOKEN_TTL_SECS: u64 = 24 * 60 * 60;

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(issue_token))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    user: UserId,
    role: Role,
    clinic: ClinicId,
    /// Lifetime in seconds (default 3600), at most `auth.max_token_lifetime_secs` and a day.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    ttl_secs: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
struct TokenResponse {
    token: String,
    expires_at: DateTime<Utc>,
    /// The token's id, for `POST /v1/revocations/tokens`.
    jti: Option<String>,
}

/// Issues a WebSocket token for a user.
#[utoipa::path(post, path = "/tokens", tag = "tokens", operation_id = "issue_token",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "The token", body = TokenResponse),
        (status = 409, description = "The user is registered in another clinic (`clinic_mismatch`)", body = ErrorBody),
    ))]
async fn issue_token(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let ttl = body.ttl_secs.unwrap_or(3600);
    let max_ttl = MAX_TOKEN_TTL_SECS.min(state.config.auth.max_token_lifetime_secs);
    if ttl == 0 || ttl > max_ttl {
        return Err(ApiError::invalid(format!(
            "ttl_secs must be 1 to {max_ttl}"
        )));
    }
    ApiError::check_id("user", body.user.as_str())?;
    ApiError::check_id("clinic", body.clinic.as_str())?;
    ensure_in_clinic(&state, &body.user, &body.clinic).await?;
    let principal = Principal {
        user: body.user,
        role: body.role,
        clinic: body.clinic,
    };
    let issued = state
        .auth
        .issue_token(&principal, ttl)
        .map_err(|error| ApiError::internal(&error))?;
    crate::service::revocations::audit_issued(&state, &issued.claims).await?;
    let expires_at = i64::try_from(issued.claims.exp)
        .ok()
        .and_then(|exp| DateTime::from_timestamp(exp, 0))
        .unwrap_or_else(|| Utc::now() + chrono::Duration::seconds(3600));
    Ok(Json(TokenResponse {
        token: issued.token,
        expires_at,
        jti: issued.claims.jti,
    }))
}
