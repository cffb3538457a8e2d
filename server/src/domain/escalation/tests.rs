use super::*;

fn policy() -> Policy {
    Policy {
        push_after: Duration::from_secs(30),
        offline_grace: Duration::from_secs(10),
        sms_after_unread: None,
        push_include_text: false,
    }
}

fn reach(online: bool, foreground: bool) -> Reach {
    Reach {
        online,
        foreground,
        devices: vec![
            (DevicePlatform::Fcm, "fcm-token".into()),
            (DevicePlatform::Apns, "apns-token".into()),
        ],
        sms_phone: Some("+15550100001".into()),
    }
}

#[test]
fn an_offline_patient_gets_a_push_per_device_after_the_grace_window() {
    let planned = plan(Trigger::Chat, &reach(false, false), &policy());
    assert_eq!(planned.len(), 2);
    for notification in &planned {
        assert_eq!(notification.channel, AlertChannel::Push);
        assert_eq!(notification.delay, Duration::from_secs(10));
        assert_eq!(notification.reason, NotificationReason::Offline);
        assert_eq!(notification.cancel, CancelRule::OnlineOrDelivered);
        assert!(!notification.full_text);
    }
}

#[test]
fn a_connected_patient_is_pushed_only_without_a_delivered_receipt() {
    let planned = plan(Trigger::Chat, &reach(true, true), &policy());
    assert!(planned.iter().all(|n| n.delay == Duration::from_secs(30)
        && n.cancel == CancelRule::Delivered
        && n.reason == NotificationReason::Escalation));
}

#[test]
fn a_quick_message_to_a_backgrounded_app_pushes_at_once() {
    let planned = plan(Trigger::Quick, &reach(true, false), &policy());
    assert!(!planned.is_empty());
    assert!(planned.iter().all(|n| n.delay == Duration::ZERO
        && n.reason == NotificationReason::Quick
        && n.cancel == CancelRule::Never));
    let foreground = plan(Trigger::Quick, &reach(true, true), &policy());
    assert!(
        foreground
            .iter()
            .all(|n| n.reason == NotificationReason::Escalation)
    );
}

#[test]
fn unread_messages_escalate_to_sms_only_when_the_policy_says_so() {
    assert!(
        plan(Trigger::Chat, &reach(true, true), &policy())
            .iter()
            .all(|n| n.channel == AlertChannel::Push)
    );
    let with_sms = Policy {
        sms_after_unread: Some(Duration::from_secs(120)),
        ..policy()
    };
    let sms: Vec<_> = plan(Trigger::Chat, &reach(true, true), &with_sms)
        .into_iter()
        .filter(|n| n.channel == AlertChannel::Sms)
        .collect();
    assert_eq!(sms.len(), 1);
    assert_eq!(sms[0].delay, Duration::from_secs(120));
    assert_eq!(sms[0].cancel, CancelRule::Read);
    assert!(!sms[0].full_text, "escalation SMS carries a generic line");
}

#[test]
fn an_alert_goes_out_at_once_on_exactly_the_ticked_channels() {
    let push_only = plan(
        Trigger::Alert {
            push: true,
            sms: false,
        },
        &reach(true, true),
        &policy(),
    );
    assert_eq!(push_only.len(), 2);
    assert!(
        push_only
            .iter()
            .all(|n| n.channel == AlertChannel::Push && n.delay.is_zero())
    );
    let sms_only = plan(
        Trigger::Alert {
            push: false,
            sms: true,
        },
        &reach(true, true),
        &policy(),
    );
    assert_eq!(sms_only.len(), 1);
    assert_eq!(sms_only[0].target, Target::Phone("+15550100001".into()));
    assert!(sms_only[0].full_text);
}

#[test]
fn no_devices_and_no_phone_plan_nothing() {
    let unreachable = Reach {
        online: false,
        ..Reach::default()
    };
    let with_sms = Policy {
        sms_after_unread: Some(Duration::from_secs(60)),
        ..policy()
    };
    assert!(plan(Trigger::Chat, &unreachable, &with_sms).is_empty());
}

#[test]
fn cancel_rules_stop_as_soon_as_the_patient_acknowledges() {
    assert!(!CancelRule::Never.cancels(5, 9, 9, true));
    assert!(CancelRule::Delivered.cancels(5, 5, 0, false));
    assert!(!CancelRule::Delivered.cancels(5, 4, 0, true));
    assert!(CancelRule::Read.cancels(5, 9, 5, false));
    assert!(!CancelRule::Read.cancels(5, 9, 4, false));
    assert!(CancelRule::OnlineOrDelivered.cancels(5, 0, 0, true));
    assert!(CancelRule::OnlineOrDelivered.cancels(5, 5, 0, false));
    assert!(!CancelRule::OnlineOrDelivered.cancels(5, 4, 0, false));
    for rule in [
        CancelRule::Never,
        CancelRule::Delivered,
        CancelRule::Read,
        CancelRule::OnlineOrDelivered,
    ] {
        assert_eq!(CancelRule::parse(rule.as_str()), rule);
    }
}
