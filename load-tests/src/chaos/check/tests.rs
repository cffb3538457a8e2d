use super::*;
use crate::chaos::provider::ProviderMode;

fn message(seq: u64, id: &str) -> StoredMessage {
    StoredMessage {
        seq,
        sender: "dr-0".to_owned(),
        client_msg_id: Some(id.to_owned()),
    }
}

fn room(messages: Vec<StoredMessage>) -> RoomFacts {
    RoomFacts {
        index: 0,
        consultation: "k".to_owned(),
        messages,
        notifications: vec![StoredNotification {
            id: "n1".to_owned(),
            status: "failed".to_owned(),
            attempts: 5,
            message_seq: Some(1),
        }],
    }
}

fn ok(id: &str, seq: u64) -> OpRecord {
    OpRecord {
        at_ms: 0,
        actor: 0,
        node: None,
        room: 0,
        kind: "chat",
        client_msg_id: Some(id.to_owned()),
        outcome: Outcome::Ok {
            seq: Some(seq),
            duplicate: false,
        },
    }
}

fn request(key: &str, at_ms: u64, node: usize) -> ProviderRequest {
    ProviderRequest {
        key: key.to_owned(),
        node: Some(node),
        at_ms,
        mode: ProviderMode::Normal,
        accepted: true,
        accepted_in_time: true,
    }
}

fn kinds(findings: &Findings) -> Vec<&'static str> {
    findings
        .anomalies
        .iter()
        .map(|anomaly| anomaly.kind)
        .collect()
}

#[test]
fn a_clean_room_has_no_anomalies() {
    let rooms = [room(vec![message(1, "a"), message(2, "b")])];
    let member = MemberFacts {
        actor: 1,
        room: 0,
        received: vec![
            Some(("dr-0".to_owned(), Some("a".to_owned()))),
            Some(("dr-0".to_owned(), Some("b".to_owned()))),
        ],
    };
    let findings = check(&rooms, &[member], &[ok("a", 1), ok("b", 2)], &[], &[], 5);
    assert!(findings.anomalies.is_empty(), "{:?}", findings.anomalies);
}

#[test]
fn a_lost_ack_a_reused_seq_and_a_short_member_are_found() {
    let rooms = [room(vec![message(1, "a"), message(2, "c")])];
    let member = MemberFacts {
        actor: 1,
        room: 0,
        received: vec![Some(("dr-0".to_owned(), Some("b".to_owned())))],
    };
    let findings = check(&rooms, &[member], &[ok("a", 1), ok("b", 2)], &[], &[], 5);
    let found = kinds(&findings);
    assert!(found.contains(&"lost_ack"), "{found:?}");
    assert!(found.contains(&"seq_reused"), "{found:?}");
    assert!(found.contains(&"undelivered"), "{found:?}");
}

#[test]
fn a_second_acceptance_needs_a_fault_that_explains_it() {
    let rooms = [room(Vec::new())];
    let requests = [request("k:1:0", 1000, 0), request("k:1:0", 15_000, 1)];
    let findings = check(&rooms, &[], &[], &requests, &[], 5);
    assert_eq!(kinds(&findings), ["duplicate_send"]);
    let kill = FaultRecord {
        at_ms: 1200,
        until_ms: 4000,
        kind: "kill_node",
        target: "node 0".to_owned(),
        node: Some(0),
        detail: String::new(),
    };
    let findings = check(&rooms, &[], &[], &requests, &[kill], 5);
    assert!(findings.anomalies.is_empty());
    assert_eq!(
        findings
            .documented_resends
            .get("node_killed_before_recording"),
        Some(&1)
    );
}

#[test]
fn more_requests_than_attempts_is_an_anomaly() {
    let rooms = [room(Vec::new())];
    let mut requests: Vec<ProviderRequest> = (0..3).map(|at| request("k:1:0", at, 0)).collect();
    for request in &mut requests {
        request.accepted = false;
        request.accepted_in_time = false;
    }
    let findings = check(&rooms, &[], &[], &requests, &[], 2);
    assert_eq!(kinds(&findings), ["over_attempts"]);
}

#[test]
fn a_key_without_a_stored_notification_is_found() {
    let rooms = [room(Vec::new())];
    let findings = check(&rooms, &[], &[], &[request("k:9:0", 10, 0)], &[], 5);
    assert_eq!(kinds(&findings), ["unknown_key"]);
}

#[test]
fn keys_name_their_message() {
    assert_eq!(message_of("abc-1:12:0"), Some(("abc-1".to_owned(), 12)));
    assert_eq!(message_of("nonsense"), None);
}
