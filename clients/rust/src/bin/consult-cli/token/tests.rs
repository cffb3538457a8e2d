//! Where the token comes from, and which URLs are refused.

use super::*;
use std::io::Write as _;

#[test]
fn the_file_wins_over_the_environment_and_is_trimmed() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "  file-token  ").unwrap();
    let token = resolve_token(Some(file.path()), Some("env-token".to_owned())).unwrap();
    assert_eq!(token, "file-token");
}

#[test]
fn the_environment_is_used_without_a_file() {
    assert_eq!(
        resolve_token(None, Some("env-token\n".to_owned())).unwrap(),
        "env-token"
    );
}

#[test]
fn no_token_is_a_clear_failure() {
    let missing = resolve_token(None, None).unwrap_err();
    assert_eq!(missing.code, "token_missing");
    assert!(missing.message.contains("--token-file"), "{missing}");

    let empty = resolve_token(None, Some("  ".to_owned())).unwrap_err();
    assert_eq!(empty.code, "token_missing");

    let unreadable = resolve_token(Some(Path::new("/nonexistent/t")), None).unwrap_err();
    assert_eq!(unreadable.code, "token_file");
}

#[test]
fn urls_carry_no_credentials() {
    check_url("ws://127.0.0.1:8080/v1/ws").unwrap();
    check_url("wss://hub.example.com/v1/ws").unwrap();
    for bad in [
        "http://127.0.0.1:8080/v1/ws",
        "ws:///v1/ws",
        "ws://127.0.0.1:8080/v1/ws?token=abc",
        "ws://user:secret@127.0.0.1/v1/ws",
        "ws://127.0.0.1/v1/ws#abc",
    ] {
        assert_eq!(check_url(bad).unwrap_err().code, "invalid_url", "{bad}");
    }
}
