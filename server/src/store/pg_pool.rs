//! The PostgreSQL connection pool: sea-orm's, built by hand so that a
//! connection is pinged before use only when it sat idle.
//!
//! sqlx pings every connection when it is given back to the pool (and
//! closes one whose ping fails). Its `test_before_acquire` pings it again
//! when it is taken: a second round trip for every query, the message
//! writer's batches included. Here that second ping is made only for a
//! connection idle for at least [`PING_WHEN_IDLE_FOR`], the only one that
//! may have broken unnoticed since its last ping (PostgreSQL restarted, a
//! firewall dropped the socket); under load connections are taken again
//! within milliseconds and skip it.

use sea_orm::sqlx::postgres::{PgConnectOptions, Postgres};
use sea_orm::sqlx::{ConnectOptions as _, Connection as _};
use sea_orm::{ConnectOptions, DatabaseConnection, DbErr, RuntimeErr, SqlxPostgresConnector};
use std::time::Duration;

/// A connection idle this long is pinged before it is handed out.
pub const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

/// Opens the pool `options` describe (its URL, sizes and timeouts), with
/// statement logging off and the ping rule above.
///
/// # Errors
///
/// [`DbErr::Conn`] when the URL is not a PostgreSQL URL or the database
/// cannot be reached.
pub async fn connect(options: &ConnectOptions) -> Result<DatabaseConnection, DbErr> {
    let connect = options
        .get_url()
        .parse::<PgConnectOptions>()
        .map_err(|error| DbErr::Conn(RuntimeErr::SqlxError(error)))?
        .disable_statement_logging();
    let pool = options
        .clone()
        .sqlx_pool_options::<Postgres>()
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_WHEN_IDLE_FOR {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(connect)
        .await
        .map_err(|error| DbErr::Conn(RuntimeErr::SqlxError(error)))?;
    Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
}
