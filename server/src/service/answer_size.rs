//! Keeping an answer within what a connection can take: a list is cut to its
//! newest items whose encoded size fits the budget
//! (`SessionConfig::answer_budget_bytes`), so a long history or
//! notification list never overflows the socket's write ceiling (the socket
//! would be dropped); the caller says `has_more`. The answers that are not
//! cut fit by construction, checked here at their worst (`bounds` tests).

/// Keeps the newest items of `items` (oldest first) whose `size` together
/// fits in `budget`, at least one; true when older ones were dropped.
pub fn keep_newest_within<T>(
    items: &mut Vec<T>,
    budget: usize,
    size: impl Fn(&T) -> usize,
) -> bool {
    let mut used = 0_usize;
    let mut first_kept = items.len();
    for (index, item) in items.iter().enumerate().rev() {
        let item_size = size(item);
        if first_kept < items.len() && used.saturating_add(item_size) > budget {
            break;
        }
        used = used.saturating_add(item_size);
        first_kept = index;
    }
    items.drain(..first_kept);
    first_kept > 0
}

#[cfg(test)]
mod tests {
    use super::keep_newest_within;

    #[test]
    fn the_newest_items_within_the_budget_are_kept() {
        let mut items: Vec<u32> = (1..=10).collect();
        assert!(keep_newest_within(&mut items, 35, |_| 10));
        assert_eq!(items, [8, 9, 10]);
    }

    #[test]
    fn a_list_within_the_budget_is_untouched_and_one_item_always_stays() {
        let mut small: Vec<u32> = (1..=3).collect();
        assert!(!keep_newest_within(&mut small, 1 << 20, |_| 10));
        assert_eq!(small, [1, 2, 3]);
        let mut huge = vec![1_u32, 2];
        assert!(keep_newest_within(&mut huge, 10, |_| 5000));
        assert_eq!(huge, [2]);
        let mut empty: Vec<u32> = Vec::new();
        assert!(!keep_newest_within(&mut empty, 10, |_| 1));
    }
}

#[cfg(test)]
mod bounds {
    use crate::config::{MAX_DEVICES_PER_PATIENT, SessionConfig};
    use crate::service::access::MAX_LISTED;
    use chrono::Utc;
    use consult_protocol::ids::MAX_ID_LEN;
    use consult_protocol::{
        AlertChannel, CommandId, CommandResult, ConsultationStatus, ConsultationView,
        NotificationReason, NotificationStatus, NotificationView, Seq, ServerFrame,
    };

    fn longest_id() -> String {
        "x".repeat(MAX_ID_LEN)
    }

    fn encoded_size(result: CommandResult) -> usize {
        ServerFrame::ok(CommandId::from(longest_id().as_str()), Some(result))
            .to_json()
            .len()
    }

    #[test]
    fn the_longest_consultation_list_fits_in_one_answer() {
        let view = ConsultationView {
            id: longest_id().into(),
            clinic_id: longest_id().into(),
            provider_id: longest_id().into(),
            patient_id: longest_id().into(),
            status: ConsultationStatus::WaitingForPatient,
            scheduled_at: Utc::now(),
            waiting_since: Some(Utc::now()),
            staff_messaged_first: true,
            last_seq: Seq(u64::MAX),
            rev: u64::MAX,
        };
        let listed = usize::try_from(MAX_LISTED).unwrap();
        let size = encoded_size(CommandResult::Consultations {
            consultations: vec![view; listed],
        });
        assert!(
            size <= SessionConfig::default().answer_budget_bytes(),
            "{size} bytes"
        );
    }

    #[test]
    fn an_alerts_answer_for_the_most_devices_fits_in_one_answer() {
        let row = NotificationView {
            id: uuid::Uuid::new_v4().to_string(),
            consultation_id: longest_id().into(),
            recipient: longest_id().into(),
            channel: AlertChannel::Push,
            provider: "webhook".to_owned(),
            reason: NotificationReason::Escalation,
            status: NotificationStatus::Pending,
            attempts: u32::MAX,
            message_seq: Some(Seq(u64::MAX)),
            due_at: Utc::now(),
            updated_at: Utc::now(),
            error: Some(format!("retryable: {}", "e".repeat(120))),
        };
        // One push per device and one SMS.
        let rows = usize::try_from(MAX_DEVICES_PER_PATIENT).unwrap() + 1;
        let size = encoded_size(CommandResult::Notified {
            seq: Seq(u64::MAX),
            duplicate: false,
            sent_at: Utc::now(),
            notifications: vec![row; rows],
        });
        assert!(
            size <= SessionConfig::default().answer_budget_bytes(),
            "{size} bytes"
        );
    }
}
