//! Extractors whose rejections are [`ApiError`]s, and the API-key guard.

use super::error::ApiError;
use crate::app::AppState;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use std::sync::Arc;

/// `Json<T>` with JSON error bodies.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub(super) struct ApiJson<T>(pub(super) T);

/// `Path<T>` with JSON error bodies.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(super) struct ApiPath<T>(pub(super) T);

/// `Query<T>` with JSON error bodies.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(super) struct ApiQuery<T>(pub(super) T);

/// Proof that the request carried a valid API key in
/// `Authorization: Bearer <key>`. Keys are never accepted in the URL.
#[derive(Debug)]
pub(super) struct ApiKey;

impl FromRequestParts<Arc<AppState>> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        check_api_key(state, &parts.headers).map(|()| Self)
    }
}

/// Checks `Authorization: Bearer <key>` against the configured API keys.
///
/// # Errors
///
/// 401 `unauthorized` when the header is missing or the key unknown.
pub(super) fn check_api_key(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<(), ApiError> {
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the API key as Authorization: Bearer <key>",
            )
        })?;
    if state.auth.check_api_key(presented.trim()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown API key",
        ))
    }
}
