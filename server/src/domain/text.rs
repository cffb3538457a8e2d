//! Validation of message bodies and client message ids.

use consult_protocol::ErrorCode;

/// Longest accepted client message id, in bytes.
pub const MAX_CLIENT_MSG_ID_BYTES: usize = 128;

/// Checks a chat body: not blank, at most `max_chars` characters, no control
/// characters other than newline and tab.
///
/// # Errors
///
/// `invalid_value` with the reason.
pub fn check_body(body: &str, max_chars: usize) -> Result<(), (ErrorCode, String)> {
    if body.trim().is_empty() {
        return Err((ErrorCode::InvalidValue, "body must not be empty".to_owned()));
    }
    let chars = body.chars().count();
    if chars > max_chars {
        return Err((
            ErrorCode::InvalidValue,
            format!("body is {chars} characters; the limit is {max_chars}"),
        ));
    }
    if body
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err((
            ErrorCode::InvalidValue,
            "body must not contain control characters".to_owned(),
        ));
    }
    Ok(())
}

/// Checks a client message id: 1 to 128 bytes of visible ASCII.
///
/// # Errors
///
/// `invalid_value` with the reason.
pub fn check_client_msg_id(id: &str) -> Result<(), (ErrorCode, String)> {
    if id.is_empty() || id.len() > MAX_CLIENT_MSG_ID_BYTES {
        return Err((
            ErrorCode::InvalidValue,
            format!("client_msg_id must be 1 to {MAX_CLIENT_MSG_ID_BYTES} bytes"),
        ));
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err((
            ErrorCode::InvalidValue,
            "client_msg_id must be visible ASCII".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_text_with_newlines() {
        assert!(check_body("Running 10 minutes late.\nSorry!", 100).is_ok());
    }

    #[test]
    fn refuses_blank_long_and_control_text() {
        assert!(check_body("   ", 100).is_err());
        assert!(check_body(&"x".repeat(101), 100).is_err());
        assert!(check_body("bell\u{7}", 100).is_err());
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert!(check_body(&"é".repeat(100), 100).is_ok());
    }

    #[test]
    fn client_msg_ids_are_short_visible_ascii() {
        assert!(check_client_msg_id("m-1").is_ok());
        assert!(check_client_msg_id("").is_err());
        assert!(check_client_msg_id("has space").is_err());
        assert!(check_client_msg_id(&"a".repeat(129)).is_err());
    }
}
