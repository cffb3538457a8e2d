use super::*;

#[test]
fn decodes_a_send_command() {
    let frame = decode_client_frame(
        r#"{"type":"send","id":"c1","consultation_id":"k1","client_msg_id":"m1","body":"hi"}"#,
    )
    .unwrap();
    assert_eq!(frame.id(), Some(&CommandId::from("c1")));
    assert_eq!(frame.kind(), "send");
}

#[test]
fn non_json_is_invalid_json() {
    let error = decode_client_frame("not json").unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidJson);
    assert_eq!(error.id, None);
}

#[test]
fn unknown_type_keeps_the_command_id() {
    let error = decode_client_frame(r#"{"type":"launch","id":"c9"}"#).unwrap_err();
    assert_eq!(error.code, ErrorCode::UnknownType);
    assert_eq!(error.id, Some(CommandId::from("c9")));
}

#[test]
fn missing_field_is_invalid_frame_naming_the_field() {
    let error =
        decode_client_frame(r#"{"type":"send","id":"c2","consultation_id":"k1"}"#).unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidFrame);
    assert!(error.message.contains("client_msg_id"), "{}", error.message);
    assert_eq!(error.id, Some(CommandId::from("c2")));
}

#[test]
fn missing_type_is_invalid_frame() {
    let error = decode_client_frame(r#"{"id":"c3"}"#).unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidFrame);
    assert!(error.message.contains("type"));
}

#[test]
fn a_json_array_is_invalid_frame() {
    let error = decode_client_frame("[1,2]").unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidFrame);
}

#[test]
fn every_known_type_round_trips_through_kind() {
    let frames = [
        ClientFrame::Ping { id: "a".into() },
        ClientFrame::UnwatchDashboard { id: "b".into() },
        ClientFrame::Hello { token: "t".into() },
    ];
    for frame in frames {
        assert!(is_known_type(frame.kind()));
        let text = serde_json::to_string(&frame).unwrap();
        assert_eq!(decode_client_frame(&text).unwrap(), frame);
    }
}

#[test]
fn every_listed_kind_is_a_frame_type_the_decoder_knows() {
    for kind in ClientFrame::KINDS {
        // Known types without their fields are malformed, not unknown.
        let refused = decode_client_frame(&format!("{{\"type\":\"{kind}\",\"id\":\"x\",\"x\":1}}"));
        if let Err(error) = refused {
            assert_ne!(error.code, crate::ErrorCode::UnknownType, "{kind}");
        }
    }
    let unknown = decode_client_frame("{\"type\":\"nope\",\"id\":\"x\"}");
    assert!(matches!(unknown, Err(ref e) if e.code == crate::ErrorCode::UnknownType));
}
