//! Extractors whose rejections are [`ApiError`]s, and the API-key guard.

use super::error::ApiError;
use crate::app::AppState;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use consult_protocol::{ClinicId, ConsultationId, UserId};
use std::sync::Arc;

/// `Json<T>` with JSON error bodies.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub(super) struct ApiJson<T>(pub(super) T);

/// `Path<T>` with JSON error bodies, whose ids are checked as ids
/// ([`PathIds`]): 400 `invalid_value` before any handler runs, so both
/// stores answer a bad id alike.
#[derive(Debug)]
pub(super) struct ApiPath<T>(pub(super) T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: PathIds + serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        value.check_ids()?;
        Ok(Self(value))
    }
}

/// The ids in a path, checked by the id rule
/// ([`consult_protocol::ids::id_problem`]).
pub(super) trait PathIds {
    /// `400 invalid_value` naming the first id that breaks the rule.
    fn check_ids(&self) -> Result<(), ApiError>;
}

impl PathIds for ConsultationId {
    fn check_ids(&self) -> Result<(), ApiError> {
        ApiError::check_id("consultation id", self.as_str())
    }
}

impl PathIds for ClinicId {
    fn check_ids(&self) -> Result<(), ApiError> {
        ApiError::check_id("clinic", self.as_str())
    }
}

impl PathIds for UserId {
    fn check_ids(&self) -> Result<(), ApiError> {
        ApiError::check_id("user", self.as_str())
    }
}

/// A participant's id.
impl PathIds for String {
    fn check_ids(&self) -> Result<(), ApiError> {
        ApiError::check_id("id", self)
    }
}

/// A clinic and one of its templates: a template id is the hub's (a default
/// one joins the clinic id and a key, so it may be longer than an id) and is
/// only ever compared, never used as a key.
impl PathIds for (ClinicId, String) {
    fn check_ids(&self) -> Result<(), ApiError> {
        self.0.check_ids()
    }
}

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
