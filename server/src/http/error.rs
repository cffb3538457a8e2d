//! `ApiError`: every HTTP failure as a status and a JSON body
//! `{"code","message"}`. Internal details go to the log, not the client.

use crate::service::ServiceError;
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// An HTTP error with a snake_case code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// Machine-readable code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
}

/// Codes only the HTTP API gives; the others are [`ErrorCode`]s
/// shared with the WebSocket protocol.
///
/// [`ErrorCode`]: consult_protocol::ErrorCode
pub(super) const HTTP_ONLY_CODES: [&str; 6] = [
    "unsupported_media_type",
    "invalid_path",
    "invalid_query",
    "unauthorized",
    "clinic_mismatch",
    "method_not_allowed",
];

/// The JSON body of every error, as the OpenAPI document describes it: a
/// `code` from a closed list and a human-readable `message`.
pub(super) struct ErrorBody;

impl PartialSchema for ErrorBody {
    fn schema() -> RefOr<Schema> {
        let codes = consult_protocol::ErrorCode::ALL
            .iter()
            .map(|code| code.as_str())
            .chain(HTTP_ONLY_CODES);
        let code = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(codes))
            .description(Some(
                "Machine-readable reason (docs/http-api.md lists each)",
            ));
        let message = ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "Human-readable explanation; never echoes names or numbers",
            ));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("code", code)
            .property("message", message)
            .required("code")
            .required("message")
            .examples([
                serde_json::json!({"code": "invalid_value", "message": "limit must be 1 to 500"}),
            ])
            .into()
    }
}

impl ToSchema for ErrorBody {}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// An error with the given parts.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `invalid_value`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_value", message)
    }

    /// 409 `clinic_mismatch`: the user id is registered in another clinic.
    pub fn clinic_mismatch(user: &consult_protocol::UserId) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "clinic_mismatch",
            format!("user {user} is registered in another clinic; a user id belongs to one clinic"),
        )
    }

    /// 400 `invalid_value` when `value` is not an acceptable id (see
    /// [`consult_protocol::ids::id_problem`]); `field` names it.
    ///
    /// # Errors
    ///
    /// The refusal, naming the field and the rule (not the value).
    pub fn check_id(field: &str, value: &str) -> Result<(), Self> {
        match consult_protocol::ids::id_problem(value) {
            None => Ok(()),
            Some(problem) => Err(Self::invalid(format!("{field} {problem}"))),
        }
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500 `internal`, logging `error`.
    pub fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %error, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it has been logged",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_client_error() {
            // The code only: a message may echo what the client sent (a
            // phone number, a name), which never goes to the log.
            tracing::info!(
                status = self.status.as_u16(),
                code = self.code,
                "request refused"
            );
        }
        let body = Body {
            code: self.code,
            message: &self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        use consult_protocol::ErrorCode as Code;
        if error.is_internal() {
            return Self::internal(&error);
        }
        let code = error.code();
        let status = match code {
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::Forbidden => StatusCode::FORBIDDEN,
            Code::InvalidTransition
            | Code::ConsultationClosed
            | Code::NotReady
            | Code::DuplicateClientMsgId => StatusCode::CONFLICT,
            Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, code.as_str(), error.client_message())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        Self::internal(&error)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let code = if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            "unsupported_media_type"
        } else {
            "invalid_json"
        };
        Self::new(status, code, rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            rejection.body_text(),
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            rejection.body_text(),
        )
    }
}

/// The answer to a known path asked with another method.
pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path does not take that method",
    )
}

/// The fallback for unknown routes.
pub(super) async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}
