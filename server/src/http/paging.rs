//! Cursor paging for the REST list routes. A list answer carries
//! `next_cursor` when more follow; the client passes it back as `cursor` to
//! get the next page, with the same filters. A cursor is opaque to clients:
//! the position where the previous page ended (a key of the listing's
//! order, so rows added meanwhile are neither skipped nor repeated), as a
//! JSON array of strings in unpadded base64url. A cursor this hub did not
//! give is refused with 400 `invalid_value`.

use super::error::ApiError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, Utc};
use std::str::FromStr;

/// Longest cursor accepted, in characters.
const MAX_CURSOR_CHARS: usize = 1024;

/// The cursor for a page that ended at `position`.
pub(super) fn encode<const N: usize>(position: [&str; N]) -> String {
    let json = serde_json::to_vec(position.as_slice()).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// The position a cursor names.
///
/// # Errors
///
/// 400 `invalid_value` when it is not a cursor of this shape.
pub(super) fn decode<const N: usize>(cursor: &str) -> Result<[String; N], ApiError> {
    if cursor.len() > MAX_CURSOR_CHARS {
        return Err(refused());
    }
    let json = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| refused())?;
    let parts: Vec<String> = serde_json::from_slice(&json).map_err(|_| refused())?;
    parts.try_into().map_err(|_| refused())
}

/// 400 `invalid_value` for a cursor this hub did not give.
pub(super) fn refused() -> ApiError {
    ApiError::invalid("cursor is not one this hub gave; start without it")
}

/// A time as a cursor part: RFC 3339 with every digit the store keeps.
pub(super) fn time_part(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A cursor part written by [`time_part`].
///
/// # Errors
///
/// [`refused`] when it is not one.
pub(super) fn time(part: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(part)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| refused())
}

/// A number as a cursor part.
///
/// # Errors
///
/// [`refused`] when it is not one.
pub(super) fn number<T: FromStr>(part: &str) -> Result<T, ApiError> {
    part.parse().map_err(|_| refused())
}

/// `limit`, or `default` when absent.
///
/// # Errors
///
/// 400 `invalid_value` outside 1 to `max`.
pub(super) fn limit(limit: Option<u64>, default: u64, max: u64) -> Result<u64, ApiError> {
    let limit = limit.unwrap_or(default);
    if limit == 0 || limit > max {
        return Err(ApiError::invalid(format!("limit must be 1 to {max}")));
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_gives_back_its_position() {
        let cursor = encode(["2026-12-05T10:00:00Z", "c-1|x"]);
        assert!(
            cursor
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(
            decode::<2>(&cursor).unwrap(),
            ["2026-12-05T10:00:00Z", "c-1|x"]
        );
    }

    #[test]
    fn a_cursor_of_another_shape_or_made_up_is_refused() {
        let one = encode(["17"]);
        for bad in [one.as_str(), "", "!!", "e30", &"A".repeat(2000)] {
            let refused = decode::<2>(bad).unwrap_err();
            assert_eq!(refused.code, "invalid_value", "{bad}");
        }
    }

    #[test]
    fn limits_outside_the_range_are_refused() {
        assert_eq!(limit(None, 100, 500).unwrap(), 100);
        assert_eq!(limit(Some(500), 100, 500).unwrap(), 500);
        assert!(limit(Some(0), 100, 500).is_err());
        assert!(limit(Some(501), 100, 500).is_err());
    }
}
