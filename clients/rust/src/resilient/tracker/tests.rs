//! De-duplication cursors, resume plans and rollback of failed joins.

use super::*;
use chrono::Utc;
use consult_protocol::{ChatMessage, MessageKind, Role};

fn room() -> ConsultationId {
    ConsultationId::from("k1")
}

fn message(consultation: &str, seq: u64) -> ServerFrame {
    ServerFrame::Message {
        message: ChatMessage {
            consultation_id: ConsultationId::from(consultation),
            seq: Seq(seq),
            sender: UserId::from("dr-a"),
            sender_role: Role::Provider,
            kind: MessageKind::Chat,
            body: format!("m{seq}"),
            client_msg_id: None,
            sent_at: Utc::now(),
        },
    }
}

#[test]
fn messages_at_or_below_the_delivered_seq_are_dropped() {
    let mut tracker = Tracker::default();
    tracker.joining(&room(), Some(Seq(2)));
    let admitted: Vec<bool> = [1, 2, 3, 3, 4, 2]
        .into_iter()
        .map(|seq| tracker.admit(&message("k1", seq)))
        .collect();
    assert_eq!(admitted, [false, false, true, false, true, false]);
}

#[test]
fn untracked_rooms_and_other_frames_pass_through() {
    let mut tracker = Tracker::default();
    assert!(tracker.admit(&message("k9", 1)));
    assert!(tracker.admit(&message("k9", 1)));
    let typing = ServerFrame::Typing {
        consultation_id: room(),
        user: UserId::from("u"),
        role: Role::Patient,
        active: true,
    };
    tracker.joining(&room(), None);
    assert!(tracker.admit(&typing));
}

#[test]
fn resume_uses_the_highest_of_delivered_and_the_join_baseline() {
    let mut tracker = Tracker::default();
    tracker.joining(&room(), None);
    tracker.joined(&room(), Seq(10));
    assert_eq!(tracker.plan().rooms, [(room(), Some(Seq(10)))]);

    assert!(tracker.admit(&message("k1", 11)));
    assert!(tracker.admit(&message("k1", 12)));
    assert_eq!(tracker.plan().rooms, [(room(), Some(Seq(12)))]);
}

#[test]
fn a_failed_join_restores_what_was_there() {
    let mut tracker = Tracker::default();
    let previous = tracker.joining(&room(), Some(Seq(0)));
    tracker.restore(&room(), previous);
    assert!(tracker.plan().rooms.is_empty());

    tracker.joining(&room(), Some(Seq(4)));
    tracker.joined(&room(), Seq(4));
    let previous = tracker.joining(&room(), Some(Seq(9)));
    tracker.restore(&room(), previous);
    assert_eq!(tracker.plan().rooms, [(room(), Some(Seq(4)))]);
}

#[test]
fn left_rooms_and_unwatched_dashboards_are_not_restored() {
    let mut tracker = Tracker::default();
    tracker.joining(&room(), Some(Seq(1)));
    tracker.set_dashboard(Some(Some(UserId::from("dr-a"))));
    assert_eq!(tracker.plan().dashboard, Some(Some(UserId::from("dr-a"))));

    tracker.left(&room());
    tracker.set_dashboard(None);
    assert_eq!(
        tracker.plan(),
        ResumePlan {
            rooms: Vec::new(),
            dashboard: None
        }
    );
}
