use super::*;

const KEY_A: &[u8] = b"key-a-0123456789abcdef0123456789abcdef";
const KEY_B: &[u8] = b"key-b-0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_800_000_000_000;

fn keys(primary: &[u8], secondary: Option<&[u8]>) -> ClusterKeys {
    ClusterKeys::new(primary, secondary).unwrap()
}

#[test]
fn round_trips_with_and_without_seq() {
    let keys = keys(KEY_A, None);
    for seq in [Some(42), None] {
        let bytes = encode(&keys, "room:c", "node-a", seq, br#"{"type":"x"}"#, NOW);
        let envelope = open(&keys, "room:c", bytes, NOW).unwrap();
        assert_eq!(envelope.node, "node-a");
        assert_eq!(envelope.seq, seq);
        assert_eq!(&envelope.frame[..], br#"{"type":"x"}"#);
    }
}

#[test]
fn a_frame_with_newlines_survives() {
    let keys = keys(KEY_A, None);
    let bytes = encode(&keys, "t", "n", Some(1), b"a\nb\n", NOW);
    assert_eq!(&open(&keys, "t", bytes, NOW).unwrap().frame[..], b"a\nb\n");
}

#[test]
fn garbage_is_rejected_not_a_panic() {
    let keys = keys(KEY_A, None);
    for bad in [
        &b""[..],
        b"no newline",
        b"n\n1\n{}",
        b"c1\nn\n1\n",
        b"c2\nn\n1\n5\n\n{}",
    ] {
        assert_eq!(
            open(&keys, "t", Bytes::copy_from_slice(bad), NOW),
            Err(Rejection::Malformed),
            "{bad:?}"
        );
    }
}

#[test]
fn an_unsigned_envelope_is_refused_when_a_key_is_set() {
    let unsigned = encode(&ClusterKeys::insecure_none(), "t", "n", Some(1), b"{}", NOW);
    assert_eq!(
        open(&keys(KEY_A, None), "t", unsigned, NOW),
        Err(Rejection::Unsigned)
    );
}

#[test]
fn another_key_a_changed_field_or_another_topic_breaks_the_tag() {
    let signed = encode(
        &keys(KEY_B, None),
        "room:c",
        "n",
        Some(7),
        b"{\"a\":1}",
        NOW,
    );
    assert_eq!(
        open(&keys(KEY_A, None), "room:c", signed.clone(), NOW),
        Err(Rejection::BadSignature)
    );
    let keys_b = keys(KEY_B, None);
    assert_eq!(
        open(&keys_b, "room:other", signed.clone(), NOW),
        Err(Rejection::BadSignature),
        "replayed onto another topic"
    );
    let text = String::from_utf8(signed.to_vec()).unwrap();
    for tampered in [
        text.replacen("\n7\n", "\n999999\n", 1),
        text.replacen("\nn\n", "\nm\n", 1),
        text.replacen("{\"a\":1}", "{\"a\":2}", 1),
        text.replacen(&format!("\n{NOW}\n"), &format!("\n{}\n", NOW + 1), 1),
    ] {
        assert_ne!(tampered, text);
        assert_eq!(
            open(&keys_b, "room:c", Bytes::from(tampered), NOW),
            Err(Rejection::BadSignature)
        );
    }
}

#[test]
fn during_rotation_both_keys_are_accepted_and_the_first_signs() {
    let old = keys(KEY_A, None);
    let rotating = keys(KEY_B, Some(KEY_A));
    let from_old = encode(&old, "t", "n", None, b"{}", NOW);
    assert!(open(&rotating, "t", from_old, NOW).is_ok());
    let from_rotating = encode(&rotating, "t", "n", None, b"{}", NOW);
    assert!(open(&keys(KEY_B, None), "t", from_rotating.clone(), NOW).is_ok());
    assert_eq!(
        open(&old, "t", from_rotating, NOW),
        Err(Rejection::BadSignature),
        "signed with the first key, not the second"
    );
}

#[test]
fn an_old_or_future_envelope_is_stale() {
    let keys = keys(KEY_A, None);
    for sent in [NOW - MAX_SKEW_MS - 1, NOW + MAX_SKEW_MS + 1] {
        let bytes = encode(&keys, "t", "n", None, b"{}", sent);
        assert_eq!(open(&keys, "t", bytes, NOW), Err(Rejection::Stale));
    }
    let edge = encode(&keys, "t", "n", None, b"{}", NOW - MAX_SKEW_MS);
    assert!(open(&keys, "t", edge, NOW).is_ok());
}

#[test]
fn without_keys_nothing_is_signed_or_checked() {
    let none = ClusterKeys::insecure_none();
    let signed = encode(&keys(KEY_A, None), "t", "n", Some(3), b"{}", NOW);
    assert_eq!(open(&none, "t", signed, NOW).unwrap().seq, Some(3));
    let unsigned = encode(&none, "t", "n", Some(3), b"{}", NOW);
    assert!(String::from_utf8_lossy(&unsigned).contains(&format!("{NOW}\n\n{{}}")));
}

#[test]
fn short_keys_are_refused() {
    assert!(ClusterKeys::new(b"short", None).is_err());
    assert!(ClusterKeys::new(KEY_A, Some(b"short")).is_err());
}

#[test]
fn the_configuration_needs_a_key_or_the_explicit_opt_out() {
    let mut config = BrokerConfig::default();
    let error = ClusterKeys::from_config(&config).unwrap_err();
    assert!(error.to_string().contains("broker.cluster_key"), "{error}");
    config.cluster_key = Some(SecretString::from(String::new()));
    assert!(ClusterKeys::from_config(&config).is_err(), "empty is unset");
    config.insecure_no_cluster_key = true;
    assert!(!ClusterKeys::from_config(&config).unwrap().is_enabled());
    config.cluster_key = Some(SecretString::from(
        String::from_utf8(KEY_A.to_vec()).unwrap(),
    ));
    assert!(ClusterKeys::from_config(&config).unwrap().is_enabled());
}
