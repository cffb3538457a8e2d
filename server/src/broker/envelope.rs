//! The bytes an event travels in through Redis:
//! `<node id>\n<seq or empty>\n<frame>`. The node id lets a node skip its
//! own events (it delivered them locally already); the frame is sliced out
//! without copying.

use bytes::{BufMut, Bytes, BytesMut};

/// A decoded envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The publishing node.
    pub node: String,
    /// The message sequence number, if any.
    pub seq: Option<u64>,
    /// The encoded frame.
    pub frame: Bytes,
}

/// Encodes an envelope.
pub fn encode(node: &str, seq: Option<u64>, frame: &[u8]) -> Bytes {
    let seq_text = seq.map(|seq| seq.to_string()).unwrap_or_default();
    let mut buffer = BytesMut::with_capacity(node.len() + seq_text.len() + frame.len() + 2);
    buffer.put_slice(node.as_bytes());
    buffer.put_u8(b'\n');
    buffer.put_slice(seq_text.as_bytes());
    buffer.put_u8(b'\n');
    buffer.put_slice(frame);
    buffer.freeze()
}

/// Decodes an envelope; `None` for bytes that are not one.
pub fn decode(payload: Bytes) -> Option<Envelope> {
    let first = payload.iter().position(|&b| b == b'\n')?;
    let second = first + 1 + payload[first + 1..].iter().position(|&b| b == b'\n')?;
    let node = std::str::from_utf8(&payload[..first]).ok()?.to_owned();
    let seq_text = std::str::from_utf8(&payload[first + 1..second]).ok()?;
    let seq = if seq_text.is_empty() {
        None
    } else {
        Some(seq_text.parse().ok()?)
    };
    Some(Envelope {
        node,
        seq,
        frame: payload.slice(second + 1..),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_and_without_seq() {
        for seq in [Some(42), None] {
            let bytes = encode("node-a", seq, br#"{"type":"x"}"#);
            let envelope = decode(bytes).unwrap();
            assert_eq!(envelope.node, "node-a");
            assert_eq!(envelope.seq, seq);
            assert_eq!(&envelope.frame[..], br#"{"type":"x"}"#);
        }
    }

    #[test]
    fn a_frame_with_newlines_survives() {
        let envelope = decode(encode("n", Some(1), b"a\nb\n")).unwrap();
        assert_eq!(&envelope.frame[..], b"a\nb\n");
    }

    #[test]
    fn garbage_is_rejected_not_a_panic() {
        for bad in [&b""[..], b"no newline", b"n\nnot-a-number\n{}"] {
            assert_eq!(decode(Bytes::copy_from_slice(bad)), None);
        }
    }
}
