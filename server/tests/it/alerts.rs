//! "Alert Patient": the privacy check (names, health terms, numbers) that
//! stops an alert before anything is stored or sent, the channels a clean
//! alert goes out on, the channel and rate-limit refusals, and the
//! `notification` frames staff dashboards see as the rows are sent.

use crate::harness::providers::{
    FakeProviders, PATIENT_PHONE, ProviderRequest, TWILIO_FROM, audited, notifications,
    wait_for_status,
};
use crate::harness::{TestHub, expect_event, expect_no_event};
use consult_client::{Client, ClientError};
use consult_hub::config::RateLimit;
use consult_hub::domain::escalation::PUSH_TITLE;
use consult_protocol::{
    AlertChannel, ConsultationId, DevicePlatform, ErrorCode, MessageKind, NotificationReason,
    NotificationStatus, NotificationView, Role, ServerFrame,
};
use std::collections::BTreeMap;
use std::time::Duration;

const CLEAN: &str = "Please open the app now, your visit is about to start.";
const BOTH: &[AlertChannel] = &[AlertChannel::Push, AlertChannel::Sms];

/// A hub at the fake providers and a waiting consultation dr-a/pat-a, with
/// the patient connected and joined and the provider connected.
struct Alerting {
    fake: FakeProviders,
    hub: TestHub,
    id: ConsultationId,
    patient: Client,
    provider: Client,
}

impl Alerting {
    async fn start(adjust: impl FnOnce(&mut consult_hub::Config)) -> Self {
        let fake = FakeProviders::start().await;
        let hub = fake.hub(adjust).await;
        let consultation = hub
            .consultation("dr-a", "pat-a", "waiting_for_patient")
            .await;
        let patient = hub.connect("pat-a", Role::Patient).await;
        patient.join(&consultation.id, None).await.unwrap();
        let provider = hub.connect("dr-a", Role::Provider).await;
        Self {
            fake,
            hub,
            id: consultation.id,
            patient,
            provider,
        }
    }

    /// As [`Alerting::start`], with the patient reachable by push and SMS.
    async fn reachable(adjust: impl FnOnce(&mut consult_hub::Config)) -> Self {
        let alerting = Self::start(adjust).await;
        alerting.patient.set_sms_consent(true).await.unwrap();
        alerting
            .patient
            .register_device(DevicePlatform::Fcm, "fcm-pat-a", true)
            .await
            .unwrap();
        alerting
    }

    async fn alert(
        &self,
        body: &str,
        channels: &[AlertChannel],
        client_msg_id: &str,
    ) -> Result<consult_client::Notified, ClientError> {
        self.provider
            .alert(&self.id, body, channels, client_msg_id)
            .await
    }

    /// Sends a refused alert and returns the refusal.
    async fn refused(&self, body: &str, channels: &[AlertChannel]) -> (ErrorCode, String) {
        match self.alert(body, channels, "refused").await {
            Err(ClientError::Command { code, message }) => (code, message),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// Nothing stored: no chat message and no outbox row.
    async fn assert_nothing_stored(&self) {
        let (messages, _) = self.patient.history(&self.id, None, None).await.unwrap();
        assert!(messages.is_empty(), "{messages:?}");
        let rows = notifications(&self.hub, &self.id).await;
        assert!(rows.is_empty(), "{rows:?}");
    }

    /// Waits until every notification in `queued` is sent.
    async fn wait_all_sent(&self, queued: &[NotificationView]) {
        for row in queued {
            wait_for_status(&self.hub, &self.id, &row.id, NotificationStatus::Sent).await;
        }
    }
}

/// Proves the pipeline works after refusals: a clean push alert is the one
/// and only request the providers ever see.
async fn assert_only_clean_alert_goes_out(alerting: &Alerting) {
    let sent = alerting
        .alert(CLEAN, &[AlertChannel::Push], "clean")
        .await
        .unwrap();
    alerting.wait_all_sent(&sent.notifications).await;
    let requests = alerting.fake.requests();
    let [ProviderRequest::Push(push)] = requests.as_slice() else {
        panic!("exactly the clean push: {requests:?}");
    };
    assert_eq!(push.body, CLEAN);
}

#[tokio::test]
async fn an_alert_naming_the_patient_is_refused_naming_the_span_and_nothing_is_stored_or_sent() {
    let alerting = Alerting::reachable(|_| {}).await;

    // The harness names the patient "Patient pat-a".
    let (code, message) = alerting
        .refused("Hello Pat, your visit is starting", BOTH)
        .await;

    assert_eq!(code, ErrorCode::PrivacyViolation);
    assert!(message.contains("a name"), "{message}");
    assert!(message.contains("6..9"), "{message}");
    assert!(
        !message.contains("Pat"),
        "the span is not quoted: {message}"
    );
    alerting.assert_nothing_stored().await;
    expect_no_event(&alerting.patient, Duration::from_millis(100), |event| {
        matches!(event, ServerFrame::Message { .. })
    })
    .await;
    assert_only_clean_alert_goes_out(&alerting).await;
}

#[tokio::test]
async fn an_alert_with_the_patients_preferred_name_is_refused() {
    let alerting = Alerting::reachable(|_| {}).await;
    let (code, body) = crate::harness::providers::api(
        &alerting.hub,
        reqwest::Method::PUT,
        "/v1/participants/pat-a",
        serde_json::json!({"clinic_id": crate::harness::CLINIC, "role": "patient",
               "display_name": "Patient pat-a", "preferred_name": "Lexi"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["preferred_name"], "Lexi");

    let (code, message) = alerting
        .refused("L\u{0435}xi's visit is starting", BOTH)
        .await;

    assert_eq!(code, ErrorCode::PrivacyViolation);
    assert!(message.contains("a name at characters 0..4"), "{message}");
    alerting.assert_nothing_stored().await;
}

#[tokio::test]
async fn an_alert_with_a_health_term_is_refused_and_nothing_is_stored_or_sent() {
    let alerting = Alerting::reachable(|_| {}).await;

    let (code, message) = alerting
        .refused("your Diabetes results are ready", BOTH)
        .await;

    assert_eq!(code, ErrorCode::PrivacyViolation);
    assert!(message.contains("a health detail"), "{message}");
    assert!(message.contains("5..13;"), "{message}");
    assert!(!message.contains("Diabetes"), "{message}");
    alerting.assert_nothing_stored().await;
    assert_only_clean_alert_goes_out(&alerting).await;
}

#[tokio::test]
async fn an_alert_with_a_configured_health_term_is_refused() {
    let alerting = Alerting::reachable(|config| {
        config.notify.health_terms = vec!["dialysis".to_owned()];
    })
    .await;

    let (code, message) = alerting.refused("About your dialysis slot", BOTH).await;

    assert_eq!(code, ErrorCode::PrivacyViolation);
    assert!(message.contains("characters 11..19;"), "{message}");
    alerting.assert_nothing_stored().await;
}

#[tokio::test]
async fn an_alert_with_a_phone_number_or_a_date_is_refused_and_nothing_is_stored_or_sent() {
    let alerting = Alerting::reachable(|_| {}).await;

    for (text, excerpt) in [
        ("Call us on 555-123-4567 today", "11..23;"),
        ("See you on 03/04/2025 at the clinic", "11..21;"),
        ("Your record 12345 is ready", "12..17;"),
    ] {
        let (code, message) = alerting.refused(text, BOTH).await;
        assert_eq!(code, ErrorCode::PrivacyViolation, "{text}");
        assert!(message.contains("looks like a date"), "{message}");
        assert!(message.contains(excerpt), "{message}");
    }

    alerting.assert_nothing_stored().await;
    assert_only_clean_alert_goes_out(&alerting).await;
}

#[tokio::test]
async fn a_clean_alert_is_stored_and_sent_exactly_once_by_push_and_by_sms() {
    let alerting = Alerting::reachable(|_| {}).await;

    let sent = alerting.alert(CLEAN, BOTH, "a1").await.unwrap();

    let mut queued: Vec<(AlertChannel, &str, NotificationReason, NotificationStatus)> = sent
        .notifications
        .iter()
        .map(|n| (n.channel, n.provider.as_str(), n.reason, n.status))
        .collect();
    queued.sort_by_key(|row| row.0);
    assert_eq!(
        queued,
        [
            (
                AlertChannel::Push,
                "fcm",
                NotificationReason::Alert,
                NotificationStatus::Pending
            ),
            (
                AlertChannel::Sms,
                "twilio",
                NotificationReason::Alert,
                NotificationStatus::Pending
            ),
        ]
    );
    assert!(
        sent.notifications
            .iter()
            .all(|n| n.message_seq == Some(sent.seq))
    );
    let message = expect_event(&alerting.patient, |event| match event {
        ServerFrame::Message { message } => Some(message.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (message.kind, message.body.as_str()),
        (MessageKind::Alert, CLEAN)
    );
    assert_eq!(message.seq, sent.seq);

    let push = &alerting.fake.wait_for_pushes(1).await[0];
    assert_eq!(
        (push.token.as_str(), push.title.as_str(), push.body.as_str()),
        ("fcm-pat-a", PUSH_TITLE, CLEAN)
    );
    assert_eq!(push.consultation_id, alerting.id.as_str());
    let sms = &alerting.fake.wait_for_sms(1).await[0];
    assert_eq!(
        (sms.to.as_str(), sms.from.as_str(), sms.body.as_str()),
        (PATIENT_PHONE, TWILIO_FROM, CLEAN)
    );
    assert!(
        sms.idempotency_token
            .starts_with(&format!("{}:{}:", alerting.id, sent.seq)),
        "{}",
        sms.idempotency_token
    );

    alerting.wait_all_sent(&sent.notifications).await;
    for row in notifications(&alerting.hub, &alerting.id).await {
        assert_eq!((row.status, row.attempts), (NotificationStatus::Sent, 1));
    }
    assert_eq!(alerting.fake.requests().len(), 2, "one request each");

    let again = alerting.alert(CLEAN, BOTH, "a1").await.unwrap();
    assert!(again.duplicate && again.notifications.is_empty());
    assert_eq!(notifications(&alerting.hub, &alerting.id).await.len(), 2);
}

#[tokio::test]
async fn an_sms_alert_without_consent_is_channel_unavailable_and_sends_nothing() {
    let alerting = Alerting::start(|_| {}).await;
    alerting
        .patient
        .register_device(DevicePlatform::Fcm, "fcm-pat-a", true)
        .await
        .unwrap();

    for channels in [&[AlertChannel::Sms][..], BOTH] {
        let (code, message) = alerting.refused(CLEAN, channels).await;
        assert_eq!(code, ErrorCode::ChannelUnavailable, "{channels:?}");
        assert!(message.contains("SMS"), "{message}");
    }
    alerting.patient.set_sms_consent(true).await.unwrap();
    alerting.patient.set_sms_consent(false).await.unwrap();
    let (code, _) = alerting.refused(CLEAN, &[AlertChannel::Sms]).await;
    assert_eq!(code, ErrorCode::ChannelUnavailable, "consent withdrawn");

    alerting.assert_nothing_stored().await;
    assert_only_clean_alert_goes_out(&alerting).await;
}

#[tokio::test]
async fn a_push_alert_without_a_device_with_notifications_on_is_channel_unavailable() {
    let alerting = Alerting::start(|_| {}).await;
    alerting.patient.set_sms_consent(true).await.unwrap();

    let (code, message) = alerting.refused(CLEAN, &[AlertChannel::Push]).await;
    assert_eq!(code, ErrorCode::ChannelUnavailable);
    assert!(message.contains("Push"), "{message}");
    alerting
        .patient
        .register_device(DevicePlatform::Fcm, "fcm-pat-a", false)
        .await
        .unwrap();
    let (code, _) = alerting.refused(CLEAN, BOTH).await;
    assert_eq!(code, ErrorCode::ChannelUnavailable, "notifications off");
    alerting.assert_nothing_stored().await;

    let sent = alerting
        .alert(CLEAN, &[AlertChannel::Sms], "sms")
        .await
        .unwrap();
    alerting.wait_all_sent(&sent.notifications).await;
    assert!(alerting.fake.pushes().is_empty());
    assert_eq!(alerting.fake.sms().len(), 1);
}

#[tokio::test]
async fn an_alert_needs_a_channel_and_at_most_160_characters() {
    let alerting = Alerting::reachable(|_| {}).await;

    let (code, _) = alerting.refused(CLEAN, &[]).await;
    assert_eq!(code, ErrorCode::InvalidValue);
    let (code, message) = alerting.refused(&"a".repeat(161), BOTH).await;
    assert_eq!(code, ErrorCode::InvalidValue);
    assert!(message.contains("160"), "{message}");

    alerting.assert_nothing_stored().await;
}

#[tokio::test]
async fn patients_cannot_alert() {
    let alerting = Alerting::reachable(|_| {}).await;

    let refused = alerting
        .patient
        .alert(&alerting.id, CLEAN, BOTH, "p1")
        .await
        .unwrap_err();

    assert_eq!(refused.code(), Some(ErrorCode::Forbidden));
    alerting.assert_nothing_stored().await;
}

#[tokio::test]
async fn an_sms_alert_over_the_clinics_limit_is_rate_limited_and_sends_nothing() {
    let alerting = Alerting::reachable(|config| {
        config.notify.alert_sms_limit = RateLimit {
            max: 1,
            window_secs: 600,
        };
    })
    .await;
    let first = alerting
        .alert(CLEAN, &[AlertChannel::Sms], "s1")
        .await
        .unwrap();

    for channels in [&[AlertChannel::Sms][..], BOTH] {
        let (code, message) = alerting.refused(CLEAN, channels).await;
        assert_eq!(code, ErrorCode::RateLimited, "{channels:?}");
        assert!(message.contains("at most 1 sms alerts"), "{message}");
    }
    let push_only = alerting
        .alert(CLEAN, &[AlertChannel::Push], "p1")
        .await
        .unwrap();

    alerting.wait_all_sent(&first.notifications).await;
    alerting.wait_all_sent(&push_only.notifications).await;
    assert_eq!(alerting.fake.sms().len(), 1);
    assert_eq!(alerting.fake.pushes().len(), 1);
    let (messages, _) = alerting
        .patient
        .history(&alerting.id, None, None)
        .await
        .unwrap();
    assert_eq!(messages.len(), 2, "the refused alert stored nothing");
}

#[tokio::test]
async fn staff_dashboards_see_alert_notifications_go_from_pending_to_sent() {
    let alerting = Alerting::reachable(|_| {}).await;
    alerting.provider.watch_dashboard(None).await.unwrap();
    let admin = alerting.hub.connect("admin-1", Role::Admin).await;
    admin.watch_dashboard(None).await.unwrap();

    let sent = alerting.alert(CLEAN, BOTH, "a1").await.unwrap();

    for watcher in [&alerting.provider, &admin] {
        let seen = notification_frames_until_sent(watcher, &sent.notifications).await;
        for (id, frames) in seen {
            let pending = frames
                .iter()
                .find(|n| n.status == NotificationStatus::Pending)
                .unwrap_or_else(|| panic!("no pending frame for {id}: {frames:?}"));
            let done = frames
                .iter()
                .find(|n| n.status == NotificationStatus::Sent)
                .unwrap();
            assert_eq!((pending.attempts, done.attempts), (0, 1));
            assert!(done.updated_at >= pending.updated_at);
            assert_eq!(done.consultation_id, alerting.id);
        }
    }
    expect_no_event(&alerting.patient, Duration::from_millis(100), |event| {
        matches!(
            event,
            ServerFrame::Notification { .. } | ServerFrame::Notifications { .. }
        )
    })
    .await;
}

/// Collects the views in `notifications` and `notification` frames for
/// `queued` until each has been seen sent; the `pending` views must all
/// come in one `notifications` frame.
async fn notification_frames_until_sent(
    watcher: &Client,
    queued: &[NotificationView],
) -> BTreeMap<String, Vec<NotificationView>> {
    let mut seen: BTreeMap<String, Vec<NotificationView>> = queued
        .iter()
        .map(|row| (row.id.clone(), Vec::new()))
        .collect();
    let all_sent = |seen: &BTreeMap<String, Vec<NotificationView>>| {
        seen.values()
            .all(|frames| frames.iter().any(|n| n.status == NotificationStatus::Sent))
    };
    let mut queued_frames = 0;
    while !all_sent(&seen) {
        let (queued_together, views) = expect_event(watcher, |event| match event {
            ServerFrame::Notification { notification } => Some((false, vec![notification.clone()])),
            ServerFrame::Notifications { notifications } => Some((true, notifications.clone())),
            _ => None,
        })
        .await;
        if queued_together {
            queued_frames += 1;
            assert_eq!(views.len(), queued.len(), "every queued row in one frame");
        }
        for view in views {
            seen.get_mut(&view.id)
                .unwrap_or_else(|| panic!("unexpected notification {view:?}"))
                .push(view);
        }
    }
    assert_eq!(queued_frames, 1, "one frame for what one alert queued");
    seen
}

#[tokio::test]
async fn a_retried_alert_is_answered_as_a_duplicate_even_at_the_rate_limit() {
    let alerting = Alerting::reachable(|config| {
        config.notify.alert_sms_limit = RateLimit {
            max: 1,
            window_secs: 600,
        };
    })
    .await;
    let first = alerting
        .alert(CLEAN, &[AlertChannel::Sms], "s1")
        .await
        .unwrap();
    let retry = alerting
        .alert(CLEAN, &[AlertChannel::Sms], "s1")
        .await
        .unwrap();
    assert!(retry.duplicate, "the retry is recognised, not rate limited");
    assert_eq!(retry.seq, first.seq);
    assert!(retry.notifications.is_empty(), "nothing new is queued");
    let (code, _) = alerting.refused(CLEAN, &[AlertChannel::Sms]).await;
    assert_eq!(code, ErrorCode::RateLimited, "a new alert still is");
    alerting.wait_all_sent(&first.notifications).await;
    assert_eq!(alerting.fake.sms().len(), 1);
}

#[tokio::test]
async fn alert_limits_count_alerts_not_devices() {
    let alerting = Alerting::reachable(|config| {
        config.notify.alert_push_limit = RateLimit {
            max: 2,
            window_secs: 600,
        };
    })
    .await;
    alerting
        .patient
        .register_device(DevicePlatform::Fcm, "fcm-pat-a-tablet", true)
        .await
        .unwrap();
    let first = alerting
        .alert(CLEAN, &[AlertChannel::Push], "p1")
        .await
        .unwrap();
    assert_eq!(first.notifications.len(), 2, "one push per device");
    let second = alerting
        .alert(CLEAN, &[AlertChannel::Push], "p2")
        .await
        .unwrap();
    assert_eq!(second.notifications.len(), 2);
    let (code, _) = alerting.refused(CLEAN, &[AlertChannel::Push]).await;
    assert_eq!(
        code,
        ErrorCode::RateLimited,
        "the third alert is over the limit"
    );
}

#[tokio::test]
async fn an_alert_is_stored_only_with_its_audit_entry() {
    let alerting = Alerting::reachable(|_| {}).await;
    // Take the audit table away under the running hub: the audit write,
    // which shares the message's transaction, now fails.
    let db = sea_orm::Database::connect(alerting.hub.database_url())
        .await
        .unwrap();
    use sea_orm::ConnectionTrait;
    db.execute_unprepared("ALTER TABLE audit_log RENAME TO audit_log_away")
        .await
        .unwrap();
    match alerting.alert(CLEAN, BOTH, "a-1").await {
        Err(ClientError::Command { code, .. }) => assert_eq!(code, ErrorCode::Internal),
        other => panic!("an alert that cannot be audited: {other:?}"),
    }
    alerting.assert_nothing_stored().await;

    db.execute_unprepared("ALTER TABLE audit_log_away RENAME TO audit_log")
        .await
        .unwrap();
    let sent = alerting.alert(CLEAN, BOTH, "a-1").await.unwrap();
    let entries = audited(&alerting.hub, &alerting.id, "alert.send").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["detail"]["seq"], sent.seq.get());
    let ids: Vec<&str> = sent.notifications.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(
        entries[0]["detail"]["notifications"],
        serde_json::json!(ids)
    );
}

/// Shutdown stays within its drain timeout while a provider is slow (each
/// send 4 s, under the provider timeout, four rows due): the send still
/// waiting is cut short and its row given back (`pending`, due at once),
/// the rows not started stay `pending`, and the next start sends them all
/// at once instead of after the 60 s lease. Before, shutdown sent every due
/// row first, one after the other.
#[tokio::test]
async fn shutdown_cuts_slow_sends_short_and_the_next_start_sends_them_at_once() {
    let alerting = Alerting::reachable(|config| {
        config.shutdown.drain_timeout_secs = 1;
        config.shutdown.unready_grace_ms = 0;
    })
    .await;
    for index in 2..=4 {
        alerting
            .patient
            .register_device(DevicePlatform::Fcm, format!("fcm-pat-a-{index}"), true)
            .await
            .unwrap();
    }
    alerting.fake.delay_next_sends(4, Duration::from_secs(4));
    let sent = alerting
        .alert(CLEAN, &[AlertChannel::Push], "slow")
        .await
        .unwrap();
    assert_eq!(sent.notifications.len(), 4, "{:?}", sent.notifications);
    let first = loop {
        let rows = notifications(&alerting.hub, &alerting.id).await;
        if let Some(row) = rows
            .iter()
            .find(|row| row.status == NotificationStatus::Sending)
        {
            break row.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let Alerting {
        fake,
        hub,
        id,
        patient,
        provider,
    } = alerting;
    drop((patient, provider));
    let started = tokio::time::Instant::now();
    let hub = tokio::time::timeout(
        Duration::from_secs(30),
        hub.restart_with(|config| {
            fake.configure(config);
            config.shutdown.drain_timeout_secs = 1;
        }),
    )
    .await
    .expect("the restart finished");
    let took = started.elapsed();
    fake.delay_next_sends(0, Duration::ZERO);
    assert!(
        took < Duration::from_secs(6),
        "shutdown and start took {took:?}"
    );
    for row in &sent.notifications {
        let after = wait_for_status(&hub, &id, &row.id, NotificationStatus::Sent).await;
        let expected = if row.id == first.id { 2 } else { 1 };
        assert_eq!(after.attempts, expected, "{after:?}");
    }
    // The attempt cut short may have reached the provider: it is audited.
    let released = audited(&hub, &id, "notification.released").await;
    assert_eq!(released.len(), 1, "{released:?}");
    assert_eq!(released[0]["detail"]["notification_id"], first.id.as_str());
    assert_eq!(released[0]["detail"]["attempts"], 1);
    assert_eq!(released[0]["detail"]["error"], "cut_short_by_shutdown");
}

/// A consultation's notification list is bounded by bytes as well as count,
/// over WebSocket and REST: the newest rows that fit, oldest first, with
/// `has_more` when older ones were left out (before, every row came back,
/// whatever the size, and a long list could overflow the socket).
#[tokio::test]
async fn a_long_notification_list_keeps_its_newest_rows_and_says_more_remain() {
    let alerting = Alerting::reachable(|config| {
        config.session.max_message_bytes = 4096;
        config.session.hard_message_bytes = 4096;
        config.notify.alert_push_limit = RateLimit {
            max: 10,
            window_secs: 600,
        };
    })
    .await;
    for index in 2..=10 {
        alerting
            .patient
            .register_device(DevicePlatform::Fcm, format!("fcm-pat-a-{index}"), true)
            .await
            .unwrap();
    }
    let mut queued = Vec::new();
    for round in 0..4 {
        let sent = alerting
            .alert(CLEAN, &[AlertChannel::Push], &format!("many-{round}"))
            .await
            .unwrap();
        queued.extend(sent.notifications.into_iter().map(|row| row.id));
    }
    assert_eq!(queued.len(), 40);
    // Half the write ceiling (4 × 4096 bytes) is 8 KiB: fewer than 40 rows.
    let (status, body) = alerting
        .hub
        .api_get(&format!("/v1/consultations/{}/notifications", alerting.id))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["has_more"], true, "{body}");
    let listed: Vec<NotificationView> =
        serde_json::from_value(body["notifications"].clone()).unwrap();
    assert!(!listed.is_empty() && listed.len() < 40, "{}", listed.len());
    // The rows and their commas fit; the array's brackets are outside.
    assert!(serde_json::to_vec(&listed).unwrap().len() <= 8 * 1024 + 2);
    let newest: Vec<&String> = queued[40 - listed.len()..].iter().collect();
    let mut got: Vec<&String> = listed.iter().map(|row| &row.id).collect();
    let mut expected = newest.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "the newest rows are the ones kept");
    let over_socket = alerting
        .provider
        .list_notifications(&alerting.id)
        .await
        .unwrap();
    assert_eq!(over_socket.len(), listed.len());
}
