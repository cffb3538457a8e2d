//! Test data through the hub's REST API: consultations and tokens.
//!
//! Only the two calls the scenarios need (`POST /v1/consultations`,
//! `POST /v1/tokens`), with the API key in the `Authorization` header, plus
//! helpers that run many of them concurrently.

use anyhow::{Context, Result, bail};
use consult_protocol::{ConsultationId, Role};
use futures_util::StreamExt;
use futures_util::stream;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::future::Future;

/// REST calls in flight at once while setting up.
const SETUP_CONCURRENCY: usize = 32;
/// Lifetime of tokens issued for a run (the API's maximum, 24 hours).
const TOKEN_TTL_SECS: u64 = 86_400;

/// A REST client for one hub node.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    api_key: String,
}

/// A consultation to create.
#[derive(Debug, Clone)]
pub struct NewConsultation {
    /// Its clinic.
    pub clinic: String,
    /// Its provider's user id.
    pub provider: String,
    /// Its patient's user id.
    pub patient: String,
}

/// A token to issue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRequest {
    /// User id (`sub`).
    pub user: String,
    /// Role.
    pub role: Role,
    /// Clinic.
    pub clinic: String,
}

#[derive(Deserialize)]
struct Created {
    id: ConsultationId,
}

#[derive(Deserialize)]
struct Issued {
    token: String,
}

impl Api {
    /// A client for the node at `base` (`http://HOST:PORT`).
    pub fn new(base: &str, api_key: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
        }
    }

    /// Creates a consultation in status `scheduled`, with its clinic and
    /// people, and returns its id.
    ///
    /// # Errors
    ///
    /// When the request fails or the hub refuses it.
    pub async fn create_consultation(&self, spec: &NewConsultation) -> Result<ConsultationId> {
        let body = json!({
            "clinic_id": spec.clinic,
            "provider": {"id": spec.provider, "display_name": spec.provider},
            "patient": {"id": spec.patient, "display_name": spec.patient},
            "status": "scheduled",
        });
        let created: Created = self.post("/v1/consultations", &body).await?;
        Ok(created.id)
    }

    /// Issues a WebSocket token.
    ///
    /// # Errors
    ///
    /// When the request fails or the hub refuses it.
    pub async fn issue_token(&self, request: &TokenRequest) -> Result<String> {
        let body = json!({
            "user": request.user,
            "role": request.role,
            "clinic": request.clinic,
            "ttl_secs": TOKEN_TTL_SECS,
        });
        let issued: Issued = self.post("/v1/tokens", &body).await?;
        Ok(issued.token)
    }

    async fn post<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.api_key)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            bail!("POST {url}: {status}: {text}");
        }
        response
            .json()
            .await
            .with_context(|| format!("decoding the answer to POST {url}"))
    }

    /// Creates every consultation, a few at a time, in order.
    ///
    /// # Errors
    ///
    /// On the first failure.
    pub async fn create_consultations(
        &self,
        specs: &[NewConsultation],
        on_done: impl Fn() + Send + Sync,
    ) -> Result<Vec<ConsultationId>> {
        concurrently(specs, |spec| self.create_consultation(spec), &on_done).await
    }

    /// Issues every token, a few at a time, in order.
    ///
    /// # Errors
    ///
    /// On the first failure.
    pub async fn issue_tokens(
        &self,
        requests: &[TokenRequest],
        on_done: impl Fn() + Send + Sync,
    ) -> Result<Vec<String>> {
        concurrently(requests, |request| self.issue_token(request), &on_done).await
    }
}

async fn concurrently<'a, I, O, F, Fut>(
    items: &'a [I],
    call: F,
    on_done: &(impl Fn() + Send + Sync),
) -> Result<Vec<O>>
where
    F: Fn(&'a I) -> Fut,
    Fut: Future<Output = Result<O>>,
{
    let results: Vec<Result<O>> = stream::iter(items.iter().map(|item| {
        let call = &call;
        async move {
            let result = call(item).await;
            on_done();
            result
        }
    }))
    .buffered(SETUP_CONCURRENCY)
    .collect()
    .await;
    results.into_iter().collect()
}
