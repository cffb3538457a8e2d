//! Opening one more connection: [`TokenProvider`], asked for a token before
//! every attempt, and the crate-private [`Connect`] seam that lets unit tests
//! connect over in-memory streams instead of TCP.

use crate::client::Client;
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::handshake::Welcome;
use std::future::Future;

/// Supplies the token for each connection attempt, so that a long-lived
/// client can present a fresh one after a reconnect.
///
/// Implemented for `String` (the same token every time) and for closures
/// returning a future: `|| async { Ok::<_, ClientError>(fetch().await) }`.
pub trait TokenProvider: Send + Sync + 'static {
    /// A token for the next `hello`.
    ///
    /// # Errors
    ///
    /// Any error; the attempt fails and is retried with backoff.
    /// [`ClientError::Token`] is the natural one.
    fn token(&self) -> impl Future<Output = Result<String, ClientError>> + Send;
}

impl TokenProvider for String {
    async fn token(&self) -> Result<String, ClientError> {
        Ok(self.clone())
    }
}

impl<F, Fut> TokenProvider for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, ClientError>> + Send,
{
    fn token(&self) -> impl Future<Output = Result<String, ClientError>> + Send {
        self()
    }
}

/// Opens one authenticated connection.
pub(crate) trait Connect: Send + Sync + 'static {
    fn connect(&self) -> impl Future<Output = Result<(Client, Welcome), ClientError>> + Send;

    /// A fresh token for an in-band `refresh`; `None` when this connector
    /// has no token provider.
    fn fresh_token(&self) -> impl Future<Output = Result<Option<String>, ClientError>> + Send {
        std::future::ready(Ok(None))
    }
}

/// Connects over TCP to a `ws://` URL with a token from `tokens`.
#[derive(Debug)]
pub(crate) struct WsConnector<T> {
    pub(crate) url: String,
    pub(crate) tokens: T,
    pub(crate) config: ClientConfig,
}

impl<T: TokenProvider> Connect for WsConnector<T> {
    async fn connect(&self) -> Result<(Client, Welcome), ClientError> {
        let token = self.tokens.token().await?;
        Client::connect_with(&self.url, &token, self.config.clone()).await
    }

    async fn fresh_token(&self) -> Result<Option<String>, ClientError> {
        self.tokens.token().await.map(Some)
    }
}
