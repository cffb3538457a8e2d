//! The `[http]` section: how long a client may take to send a request's
//! headers, how many WebSocket connections the node keeps open (in all, and
//! from one address), and how much the kernel buffers towards each.

use serde::{Deserialize, Serialize};

/// Time to send a request's headers, in seconds.
pub const HEADER_READ_TIMEOUT_SECS: u64 = 10;
/// Connections one user may hold on a node: a console in a few tabs and a
/// phone or two, with room to spare.
pub const MAX_CONNECTIONS_PER_USER: u64 = 20;
/// Descriptors kept back from WebSocket connections when their cap is
/// derived from the open-file limit: for HTTP requests (health checks,
/// metrics, the REST API), the database, Redis and logs.
pub const DESCRIPTOR_RESERVE: u64 = 256;

/// The kernel's send buffer per connection, bytes (Linux doubles it): a
/// client that stops reading holds at most this much kernel memory before
/// the hub's own bounds (its queue, the write timeout) notice it.
pub const SOCKET_SEND_BUFFER_BYTES: u32 = 256 * 1024;

/// HTTP serving limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// A connection that has not sent a whole request's headers this long
    /// after it opened (or after its previous request) is closed, seconds.
    pub header_read_timeout_secs: u64,
    /// WebSocket connections open at once on this node at most; 0 derives
    /// the cap from the process's open-file limit (the limit less
    /// [`DESCRIPTOR_RESERVE`]). Past it an upgrade is answered 503.
    pub max_connections: u64,
    /// WebSocket connections open at once from one IP address at most; 0
    /// means no cap (the default: patients behind a carrier's NAT share
    /// addresses). Past it an upgrade is answered 429.
    pub max_connections_per_ip: u64,
    /// Authenticated connections one user may hold on this node at most; 0
    /// means no cap. Past it `hello` is answered `too_many_connections` and
    /// the connection closed with 4007.
    pub max_connections_per_user: u64,
    /// The kernel send buffer of every accepted connection, bytes; 0
    /// leaves the kernel's autotuning (up to `net.ipv4.tcp_wmem`'s maximum,
    /// often 4 MiB per connection).
    pub socket_send_buffer_bytes: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: HEADER_READ_TIMEOUT_SECS,
            max_connections: 0,
            max_connections_per_ip: 0,
            max_connections_per_user: MAX_CONNECTIONS_PER_USER,
            socket_send_buffer_bytes: SOCKET_SEND_BUFFER_BYTES,
        }
    }
}

impl HttpConfig {
    /// The cap on WebSocket connections: the configured one, else the
    /// open-file limit `descriptors` less the reserve (at least 1).
    #[must_use]
    pub fn connection_cap(&self, descriptors: u64) -> u64 {
        if self.max_connections > 0 {
            self.max_connections
        } else {
            descriptors.saturating_sub(DESCRIPTOR_RESERVE).max(1)
        }
    }

    pub(super) fn validate(&self, problems: &mut Vec<String>) {
        if self.header_read_timeout_secs == 0 {
            problems.push("http.header_read_timeout_secs must be at least 1".into());
        }
    }
}
