//! The OpenAPI 3.1 document of the REST API, generated from the handlers'
//! `#[utoipa::path]` annotations and the types they carry, and served at
//! `GET /v1/openapi.json` without an API key. This module owns what every
//! operation shares: the API-key security scheme, the error body and the
//! error responses any request can meet, the tags, and the links that walk
//! from a created consultation to its reads.

use super::error::ErrorBody;
use axum::Extension;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response as ApiResponse, ResponseBuilder};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr};
use utoipa::{OpenApi, ToSchema};

/// The name of the API-key security scheme.
pub(super) const API_KEY_SCHEME: &str = "api_key";
/// The name of Twilio's request signature, the other way into inbound SMS.
pub(super) const TWILIO_SCHEME: &str = "twilio_signature";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "consult-hub REST API",
        description = "The host platform's back end drives consult-hub over `/v1/`: participants, \
            consultations, message history and platform messages, presence, Quick Message \
            templates, escalation policies, devices and SMS consent, tokens and revocations. \
            Every call carries an API key as `Authorization: Bearer <key>`. Errors are a status \
            and a JSON body `{\"code\", \"message\"}`. Real-time traffic goes over the WebSocket \
            at `/v1/ws` (see docs/protocol.md), which this document does not describe.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "participants", description = "Patients, providers and clinic admins"),
        (name = "consultations", description = "Consultations (one room each) and their status"),
        (name = "messages", description = "Message history and messages from the platform"),
        (name = "presence", description = "Who is connected, across the cluster"),
        (name = "templates", description = "Quick Message templates"),
        (name = "notifications", description = "Escalation policies, devices, SMS consent, outcomes"),
        (name = "tokens", description = "WebSocket tokens and their revocation"),
        (name = "meta", description = "This document"),
    )
)]
pub(super) struct ApiDoc;

/// Adds what every operation shares (see the module comment) once the
/// routes' own paths are in the document.
pub(super) fn finish(document: &mut Document) {
    document.security = Some(vec![SecurityRequirement::new(
        API_KEY_SCHEME,
        Vec::<String>::new(),
    )]);
    {
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            API_KEY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from `auth.api_keys` (or the key file), as \
                         `Authorization: Bearer <key>`. Never in the URL.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            TWILIO_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Twilio-Signature",
                "Twilio's signature of the request, when Twilio is configured",
            ))),
        );
        for item in document.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                add_shared_responses(operation);
            }
        }
        add_links(document);
    }
}

/// The error responses any operation may give besides its own: a malformed
/// path or query (400), no key (401), a server failure (500), a retry-later
/// (503), and for a JSON body also 413, 415 and 422.
fn add_shared_responses(operation: &mut Operation) {
    let open = operation
        .security
        .as_ref()
        .is_some_and(|list| list.iter().any(is_empty_requirement));
    let mut shared: Vec<(&str, &str)> = vec![
        (
            "400",
            "A path segment, query parameter or value is malformed or out of range \
             (`invalid_path`, `invalid_query`, `invalid_value`, `invalid_json`)",
        ),
        (
            "500",
            "Unexpected failure (`internal`); details only in the hub's log",
        ),
        ("503", "Retry later (`unavailable`)"),
    ];
    if !open {
        shared.push(("401", "No or unknown API key (`unauthorized`)"));
    }
    if operation.request_body.is_some() {
        shared.push(("413", "The body is larger than the hub accepts"));
        shared.push((
            "415",
            "The body is not sent with its media type (`unsupported_media_type`)",
        ));
        shared.push((
            "422",
            "A field is missing, unknown or of the wrong type (`invalid_json`)",
        ));
    }
    for (status, description) in shared {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| error_response(description));
    }
}

fn is_empty_requirement(requirement: &SecurityRequirement) -> bool {
    serde_json::to_value(requirement)
        .is_ok_and(|value| value.as_object().is_some_and(|m| m.is_empty()))
}

/// A response carrying [`ErrorBody`].
pub(super) fn error_response(description: &str) -> RefOr<ApiResponse> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build(),
        )
        .build()
        .into()
}

/// Links from a created consultation to reading it, its messages and its
/// presence, and from a stored participant to its reads and its devices,
/// so that a client (and a stateful test) can walk from one to the others.
fn add_links(document: &mut Document) {
    add_links_from(
        document,
        "/v1/consultations",
        "201",
        &[
            "get_consultation",
            "list_messages",
            "post_message",
            "consultation_presence",
            "list_notifications",
            "list_audit",
            "open_consultation",
            "cancel_consultation",
        ],
    );
    add_links_from(
        document,
        "/v1/participants/{id}",
        "200",
        &[
            "get_participant",
            "participant_presence",
            "register_device",
            "put_sms_consent",
        ],
    );
}

/// Links the `status` answer of the POST (or else PUT) at `path` to each of
/// `operation_ids`, passing the answer's `id` as their `id`.
fn add_links_from(document: &mut Document, path: &str, status: &str, operation_ids: &[&str]) {
    let Some(item) = document.paths.paths.get_mut(path) else {
        return;
    };
    let Some(operation) = item.post.as_mut().or(item.put.as_mut()) else {
        return;
    };
    let Some(RefOr::T(answer)) = operation.responses.responses.get_mut(status) else {
        return;
    };
    for operation_id in operation_ids {
        answer.links.insert(
            (*operation_id).to_owned(),
            LinkBuilder::new()
                .operation_id(*operation_id)
                .parameter("id", "$response.body#/id")
                .build()
                .into(),
        );
    }
}

/// The document, serialised once.
#[derive(Clone)]
pub(super) struct Served(pub(super) Arc<String>);

impl Served {
    pub(super) fn new(document: &Document) -> Self {
        let text = document.to_pretty_json().unwrap_or_else(|error| {
            tracing::error!(error = %error, "the OpenAPI document could not be serialised");
            String::from("{}")
        });
        Self(Arc::new(text))
    }
}

/// `GET /v1/openapi.json`: this document. No API key needed.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    operation_id = "get_openapi",
    security(()),
    responses((status = 200, description = "This OpenAPI document", content_type = "application/json", body = Object))
)]
pub(super) async fn get_openapi(Extension(served): Extension<Served>) -> Response {
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        served.0.as_str().to_owned(),
    )
        .into_response()
}
