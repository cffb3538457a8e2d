//! The REST API for ending access, behind an API key: revoke one token by
//! its `jti`, revoke every token of a user in a clinic issued up to a time,
//! and disconnect a user's live sessions now.

use super::error::ApiError;
use super::extract::{ApiJson, ApiKey};
use crate::app::AppState;
use crate::auth::MAX_JTI_LEN;
use crate::auth::revocation::Revocation;
use crate::service::revocations;
use crate::store::audit::Actor;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use consult_protocol::{ClinicId, UserId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The platform acting through the API, as recorded in the audit log.
const PLATFORM: Actor<'static> = Actor {
    id: "platform",
    role: "admin",
};

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(revoke_token))
        .routes(routes!(revoke_user))
        .routes(routes!(disconnect_user))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RevokeToken {
    /// The token's id (its `jti` claim).
    #[schema(min_length = 1, max_length = 128)]
    jti: String,
    /// The token's expiry, when known: the revocation is forgotten after it.
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RevokeUser {
    clinic: ClinicId,
    user: UserId,
    /// Tokens issued at or before this time are revoked; when omitted, now
    /// plus the token clock leeway (`auth.leeway_secs`).
    #[serde(default)]
    issued_before: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Disconnect {
    clinic: ClinicId,
    user: UserId,
}

/// What a revocation did on the node that took it.
#[derive(Debug, Serialize, ToSchema)]
struct Revoked {
    /// Sessions this node closed; other nodes close theirs within a second.
    closed_here: usize,
}

/// Revokes one token by its `jti`, on every node.
#[utoipa::path(post, path = "/revocations/tokens", tag = "tokens", operation_id = "revoke_token",
    request_body = RevokeToken,
    responses((status = 200, description = "Revoked; its connections closed", body = Revoked)))]
async fn revoke_token(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<RevokeToken>,
) -> Result<Json<Revoked>, ApiError> {
    if body.jti.is_empty() || body.jti.len() > MAX_JTI_LEN {
        return Err(ApiError::invalid(format!(
            "jti must be 1 to {MAX_JTI_LEN} bytes"
        )));
    }
    let expires_at = body
        .expires_at
        .and_then(|at| u64::try_from(at.timestamp()).ok());
    let revocation = Revocation::Token {
        jti: body.jti,
        expires_at,
    };
    let closed_here = revocations::revoke(&state, PLATFORM, revocation).await?;
    Ok(Json(Revoked { closed_here }))
}

/// Revokes every token of a user in a clinic issued up to a time.
#[utoipa::path(post, path = "/revocations/users", tag = "tokens", operation_id = "revoke_user",
    request_body = RevokeUser,
    responses((status = 200, description = "Revoked; the user's connections closed", body = Revoked)))]
async fn revoke_user(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<RevokeUser>,
) -> Result<Json<Revoked>, ApiError> {
    require_ids(&body.clinic, &body.user)?;
    // Without a time, the cutoff is this node's clock plus the leeway that
    // `hello` allows a token's `iat` ahead of it: a token from an issuer
    // whose clock runs ahead is covered too (docs/http-api.md).
    let leeway = i64::try_from(state.auth.leeway_secs()).unwrap_or(i64::MAX);
    let before = body.issued_before.unwrap_or_else(|| {
        chrono::TimeDelta::try_seconds(leeway)
            .and_then(|ahead| Utc::now().checked_add_signed(ahead))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    });
    let issued_before = u64::try_from(before.timestamp())
        .map_err(|_| ApiError::invalid("issued_before must be after 1970"))?;
    let revocation = Revocation::User {
        clinic: body.clinic,
        user: body.user,
        issued_before,
    };
    let closed_here = revocations::revoke(&state, PLATFORM, revocation).await?;
    Ok(Json(Revoked { closed_here }))
}

/// Closes a user's live connections now, on every node, without revoking.
#[utoipa::path(post, path = "/disconnections", tag = "tokens", operation_id = "disconnect_user",
    request_body = Disconnect,
    responses((status = 200, description = "The connections closed here", body = Revoked)))]
async fn disconnect_user(
    _key: ApiKey,
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<Disconnect>,
) -> Result<Json<Revoked>, ApiError> {
    require_ids(&body.clinic, &body.user)?;
    let revocation = Revocation::Disconnect {
        clinic: body.clinic,
        user: body.user,
    };
    let closed_here = revocations::revoke(&state, PLATFORM, revocation).await?;
    Ok(Json(Revoked { closed_here }))
}

fn require_ids(clinic: &ClinicId, user: &UserId) -> Result<(), ApiError> {
    ApiError::check_id("clinic", clinic.as_str())?;
    ApiError::check_id("user", user.as_str())?;
    Ok(())
}
