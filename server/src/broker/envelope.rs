//! The bytes an event travels in through Redis, and their authentication:
//!
//! ```text
//! c1\n<node id>\n<seq or empty>\n<sent at, ms since the epoch>\n<tag>\n<frame>
//! ```
//!
//! The tag is HMAC-SHA256, in lower-case hex, under the cluster key, over
//! the channel the envelope is published on and every field above
//! (length-prefixed, so no two field lists share an input): an envelope
//! cannot be forged, altered, or replayed onto another topic by anyone
//! without the key. One sent more than [`MAX_SKEW_MS`] ago (or ahead) is
//! refused, which bounds replays on the same topic. Two keys may be
//! accepted at once while the key is rotated; the first signs.
//!
//! The node id lets a node skip its own events (it delivered them locally
//! already); the frame is sliced out without copying.

use super::BrokerError;
use crate::config::BrokerConfig;
use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Format marker at the start of every envelope.
const VERSION: &[u8] = b"c1";
/// Domain separation for the tag.
const TAG_CONTEXT: &[u8] = b"consult-hub broker envelope c1";
/// Hex length of a tag.
const TAG_HEX_LEN: usize = 64;
/// How far an envelope's sending time may be from the receiver's clock.
pub const MAX_SKEW_MS: u64 = 60_000;
/// Shortest cluster key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// A decoded, authenticated envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The publishing node.
    pub node: String,
    /// The message sequence number, if any.
    pub seq: Option<u64>,
    /// The encoded frame; empty for a resync marker.
    pub frame: Bytes,
}

/// Why an incoming envelope was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not an envelope of this format.
    Malformed,
    /// No tag, while this node requires one.
    Unsigned,
    /// A tag that no accepted key produces.
    BadSignature,
    /// Sent too long ago, or in the future.
    Stale,
}

impl Rejection {
    /// The `reason` label of `consult_broker_rejected_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Unsigned => "unsigned",
            Self::BadSignature => "bad_signature",
            Self::Stale => "stale",
        }
    }
}

/// The cluster keys: the first signs, every one is accepted. None at all
/// only when the operator opted out (`broker.insecure_no_cluster_key`):
/// then nothing is signed and nothing checked.
#[derive(Clone)]
pub struct ClusterKeys {
    keys: Vec<HmacSha256>,
}

impl std::fmt::Debug for ClusterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterKeys")
            .field("keys", &self.keys.len())
            .finish()
    }
}

fn non_empty(secret: Option<&SecretString>) -> Option<&str> {
    secret
        .map(ExposeSecret::expose_secret)
        .filter(|key| !key.is_empty())
}

impl ClusterKeys {
    /// Signs with `primary`; accepts `primary` and `secondary`.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Setup`] for a key shorter than [`MIN_KEY_BYTES`].
    pub fn new(primary: &[u8], secondary: Option<&[u8]>) -> Result<Self, BrokerError> {
        let mut keys = Vec::with_capacity(2);
        for key in std::iter::once(primary).chain(secondary) {
            if key.len() < MIN_KEY_BYTES {
                return Err(BrokerError::Setup(format!(
                    "a broker cluster key must be at least {MIN_KEY_BYTES} bytes"
                )));
            }
            let mac = HmacSha256::new_from_slice(key)
                .map_err(|_| BrokerError::Setup("unusable broker cluster key".to_owned()))?;
            keys.push(mac);
        }
        Ok(Self { keys })
    }

    /// No keys: envelopes go unsigned and arrive unchecked.
    pub fn insecure_none() -> Self {
        Self { keys: Vec::new() }
    }

    /// The keys `broker.cluster_key` and `broker.cluster_key_secondary`
    /// name; none with `broker.insecure_no_cluster_key`.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Setup`] when no key is set and the opt-out is not, or
    /// a key is too short.
    pub fn from_config(config: &BrokerConfig) -> Result<Self, BrokerError> {
        let primary = non_empty(config.cluster_key.as_ref());
        let secondary = non_empty(config.cluster_key_secondary.as_ref());
        match primary {
            Some(primary) => Self::new(primary.as_bytes(), secondary.map(str::as_bytes)),
            None if config.insecure_no_cluster_key && secondary.is_none() => {
                Ok(Self::insecure_none())
            }
            None => Err(BrokerError::Setup(
                "broker.cluster_key is required with broker.kind = \"redis\" or \"redis-cluster\""
                    .to_owned(),
            )),
        }
    }

    /// True when envelopes are signed and checked.
    pub fn is_enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    fn tag(mac: &HmacSha256, topic: &str, fields: &Fields<'_>) -> HmacSha256 {
        let mut mac = mac.clone();
        mac.update(TAG_CONTEXT);
        for field in [
            topic.as_bytes(),
            fields.node,
            fields.seq,
            fields.sent_at,
            fields.frame,
        ] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        mac
    }
}

/// The fields of an envelope, as their bytes on the wire.
struct Fields<'a> {
    node: &'a [u8],
    seq: &'a [u8],
    sent_at: &'a [u8],
    frame: &'a [u8],
}

/// Encodes an envelope for `topic`, sent at `now_ms`, signed with the first
/// key (unsigned when there is none).
pub fn encode(
    keys: &ClusterKeys,
    topic: &str,
    node: &str,
    seq: Option<u64>,
    frame: &[u8],
    now_ms: u64,
) -> Bytes {
    let seq_text = seq.map(|seq| seq.to_string()).unwrap_or_default();
    let sent_text = now_ms.to_string();
    let fields = Fields {
        node: node.as_bytes(),
        seq: seq_text.as_bytes(),
        sent_at: sent_text.as_bytes(),
        frame,
    };
    let tag = keys.keys.first().map(|mac| {
        hex::encode(
            ClusterKeys::tag(mac, topic, &fields)
                .finalize()
                .into_bytes(),
        )
    });
    let tag = tag.unwrap_or_default();
    let mut buffer = BytesMut::with_capacity(
        VERSION.len() + node.len() + seq_text.len() + sent_text.len() + tag.len() + frame.len() + 5,
    );
    for field in [
        VERSION,
        node.as_bytes(),
        seq_text.as_bytes(),
        sent_text.as_bytes(),
        tag.as_bytes(),
    ] {
        buffer.put_slice(field);
        buffer.put_u8(b'\n');
    }
    buffer.put_slice(frame);
    buffer.freeze()
}

/// Splits off the next `\n`-terminated field.
fn next_field<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let end = rest.iter().position(|&b| b == b'\n')?;
    let field = &rest[..end];
    *rest = &rest[end + 1..];
    Some(field)
}

/// Decodes and authenticates an envelope that arrived on `topic` at
/// `now_ms`.
///
/// # Errors
///
/// The [`Rejection`] that says why it must be dropped.
pub fn open(
    keys: &ClusterKeys,
    topic: &str,
    payload: Bytes,
    now_ms: u64,
) -> Result<Envelope, Rejection> {
    let mut rest = &payload[..];
    let mut field = || next_field(&mut rest).ok_or(Rejection::Malformed);
    let (version, node, seq, sent_at, tag) = (field()?, field()?, field()?, field()?, field()?);
    if version != VERSION {
        return Err(Rejection::Malformed);
    }
    let frame_start = payload.len() - rest.len();
    let fields = Fields {
        node,
        seq,
        sent_at,
        frame: rest,
    };
    if keys.is_enabled() {
        if tag.is_empty() {
            return Err(Rejection::Unsigned);
        }
        if tag.len() != TAG_HEX_LEN {
            return Err(Rejection::BadSignature);
        }
        let tag = hex::decode(tag).map_err(|_| Rejection::BadSignature)?;
        let authentic = keys.keys.iter().any(|mac| {
            ClusterKeys::tag(mac, topic, &fields)
                .verify_slice(&tag)
                .is_ok()
        });
        if !authentic {
            return Err(Rejection::BadSignature);
        }
    }
    let sent_at: u64 = std::str::from_utf8(sent_at)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(Rejection::Malformed)?;
    if now_ms.abs_diff(sent_at) > MAX_SKEW_MS {
        return Err(Rejection::Stale);
    }
    let node = std::str::from_utf8(node)
        .map_err(|_| Rejection::Malformed)?
        .to_owned();
    let seq_text = std::str::from_utf8(seq).map_err(|_| Rejection::Malformed)?;
    let seq = if seq_text.is_empty() {
        None
    } else {
        Some(seq_text.parse().map_err(|_| Rejection::Malformed)?)
    };
    Ok(Envelope {
        node,
        seq,
        frame: payload.slice(frame_start..),
    })
}

/// Milliseconds since the Unix epoch, by this node's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
