//! The text lines, and the dashboard list's ordering by `rev`.

use super::*;
use chrono::{TimeZone, Utc};
use consult_protocol::{
    AlertChannel, ChatMessage, ConsultationStatus, NotificationReason, NotificationStatus,
    ReceiptKind, Role, Seq, UserId,
};

fn room() -> ConsultationId {
    ConsultationId::from("k1")
}

fn entry(status: ConsultationStatus, rev: u64) -> DashboardEntry {
    DashboardEntry {
        consultation_id: room(),
        provider_id: UserId::from("dr-a"),
        patient_id: UserId::from("pat-a"),
        patient_name: "Pat A".to_owned(),
        status,
        scheduled_at: Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0).unwrap(),
        waiting_since: Some(Utc.with_ymd_and_hms(2026, 11, 28, 9, 5, 0).unwrap()),
        unread: 2,
        rev,
    }
}

#[test]
fn messages_show_room_seq_sender_and_kind() {
    let mut message = ChatMessage {
        consultation_id: room(),
        seq: Seq(5),
        sender: UserId::from("dr-a"),
        sender_role: Role::Provider,
        kind: MessageKind::Chat,
        body: "hello".to_owned(),
        client_msg_id: None,
        sent_at: Utc::now(),
    };
    let line = |message: &ChatMessage| {
        frame_line(&ServerFrame::Message {
            message: message.clone(),
        })
    };
    assert_eq!(line(&message).unwrap(), "[k1 #5] dr-a (provider): hello");
    message.kind = MessageKind::Alert;
    assert_eq!(
        line(&message).unwrap(),
        "[k1 #5] dr-a (provider) [alert]: hello"
    );
}

#[test]
fn status_receipts_typing_and_presence_are_one_line_each() {
    let status = ServerFrame::Status {
        consultation_id: room(),
        status: ConsultationStatus::PatientReady,
        previous: ConsultationStatus::WaitingForPatient,
        changed_by: UserId::from("pat-a"),
        at: Utc::now(),
        rev: 3,
    };
    let receipt = ServerFrame::Receipt {
        consultation_id: room(),
        user: UserId::from("pat-a"),
        role: Role::Patient,
        seq: Seq(5),
        receipt: ReceiptKind::Read,
    };
    let typing = ServerFrame::Typing {
        consultation_id: room(),
        user: UserId::from("dr-a"),
        role: Role::Provider,
        active: true,
    };
    let lines: Vec<String> = [status, receipt, typing]
        .iter()
        .filter_map(frame_line)
        .collect();
    assert_eq!(
        lines,
        [
            "[k1] status waiting_for_patient -> patient_ready (by pat-a, rev 3)",
            "[k1] pat-a (patient) read up to #5",
            "[k1] dr-a (provider) is typing",
        ]
    );
    let unclaimed = ServerFrame::ok("c9".into(), None);
    assert_eq!(frame_line(&unclaimed), None);
}

#[test]
fn dashboard_rows_name_the_patient_status_and_wait() {
    assert_eq!(
        dashboard_row(&entry(ConsultationStatus::PatientReady, 4)),
        "k1 patient_ready patient \"Pat A\" (pat-a) provider dr-a unread 2, waiting since 09:05:00 rev 4"
    );
}

#[test]
fn the_list_keeps_the_newest_row_and_drops_rows_that_left() {
    let mut list = DashboardList::default();
    list.replace(&[entry(ConsultationStatus::WaitingForPatient, 2)]);
    assert_eq!(
        list.apply(&entry(ConsultationStatus::PatientReady, 1)),
        Change::Ignored
    );
    assert_eq!(
        list.apply(&entry(ConsultationStatus::PatientReady, 3)),
        Change::Updated
    );
    assert_eq!(
        list.apply(&entry(ConsultationStatus::Ended, 5)),
        Change::Removed
    );
    assert_eq!(
        list.apply(&entry(ConsultationStatus::InProgress, 4)),
        Change::Ignored,
        "a late delta does not bring a removed row back"
    );
    list.replace(&[]);
    assert_eq!(
        list.apply(&entry(ConsultationStatus::InProgress, 4)),
        Change::Ignored
    );

    let mut fresh = DashboardList::default();
    assert_eq!(
        fresh.apply(&entry(ConsultationStatus::InProgress, 1)),
        Change::Added
    );
    assert_eq!(
        change_line(Change::Ignored, &entry(ConsultationStatus::Ended, 1)),
        None
    );
}

#[test]
fn a_snapshot_prints_a_header_then_rows() {
    let lines = snapshot_lines(
        &[entry(ConsultationStatus::InProgress, 1)],
        "Active and Waiting",
    );
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], "Active and Waiting (1)");
    assert!(lines[1].starts_with("  k1 in_progress"), "{}", lines[1]);
}

#[test]
fn notified_lists_the_message_then_each_notification() {
    let notification = NotificationView {
        id: "n1".to_owned(),
        consultation_id: room(),
        recipient: UserId::from("pat-a"),
        channel: AlertChannel::Sms,
        provider: "twilio".to_owned(),
        reason: NotificationReason::Alert,
        status: NotificationStatus::Pending,
        attempts: 0,
        message_seq: Some(Seq(7)),
        due_at: Utc::now(),
        updated_at: Utc::now(),
        error: None,
    };
    let notified = Notified {
        seq: Seq(7),
        duplicate: false,
        sent_at: Utc::now(),
        notifications: vec![notification],
    };
    assert_eq!(
        notified_lines(&notified),
        [
            "sent #7",
            "notification n1 [k1] sms via twilio (alert): pending, attempts 0"
        ]
    );
    assert_eq!(
        sent_line(7, true),
        "sent #7 (already stored; not sent again)"
    );
}
