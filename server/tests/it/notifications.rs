//! The notification pipeline end to end: outbox rows written with their
//! message, retries with backoff under one idempotency key, permanent
//! failures, the audit of every outcome, a crashed sender's row; escalation
//! from in-app to push and SMS and what cancels it; the offline fallback;
//! and STOP/START from inbound SMS behind Twilio's signature.

use crate::harness::providers::{
    FakeProviders, INBOUND_URL, PATIENT_PHONE, TWILIO_AUTH_TOKEN, TWILIO_FROM, api, audit, audited,
    notifications, register_device, sms_consent, twilio_signature, wait_for_status,
};
use crate::harness::{CLINIC, TestHub, expect_event};
use consult_client::{Client, ClientError};
use consult_hub::domain::PersonKey;
use consult_hub::domain::escalation::{CancelRule, GENERIC_PUSH_BODY, GENERIC_SMS_BODY};
use consult_hub::notify::providers::verify_inbound_signature;
use consult_hub::notify::worker::OutboxWorker;
use consult_hub::store::outbox::{self, NewNotification};
use consult_protocol::{
    AlertChannel, ChatMessage, ConsultationId, DevicePlatform, ErrorCode, NotificationReason,
    NotificationStatus, NotificationView, ReceiptKind, Role, ServerFrame, UserId,
};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const ALERT: &str = "Please open the app now, your visit is about to start.";
const CHAT: &str = "I will be with you shortly.";

/// A waiting consultation dr-a/`patient`; the patient connected and joined.
async fn joined(hub: &TestHub, patient: &str) -> (ConsultationId, Client) {
    let consultation = hub
        .consultation("dr-a", patient, "waiting_for_patient")
        .await;
    let client = hub.connect(patient, Role::Patient).await;
    client.join(&consultation.id, None).await.unwrap();
    (consultation.id, client)
}

/// [`joined`], with the patient's FCM device `token` registered.
async fn joined_with_push(hub: &TestHub, token: &str) -> (ConsultationId, Client) {
    let (id, patient) = joined(hub, "pat-a").await;
    patient
        .register_device(DevicePlatform::Fcm, token, true)
        .await
        .unwrap();
    (id, patient)
}

/// Sends an alert with the fixed text on `channel` and waits until its
/// notification reaches `status`; returns that notification.
async fn alert_until(
    hub: &TestHub,
    provider: &Client,
    id: &ConsultationId,
    channel: AlertChannel,
    key: &str,
    status: NotificationStatus,
) -> NotificationView {
    let sent = provider.alert(id, ALERT, &[channel], key).await.unwrap();
    wait_for_status(hub, id, &sent.notifications[0].id, status).await
}

/// The next message `patient` receives.
async fn next_message(patient: &Client) -> ChatMessage {
    expect_event(patient, |event| match event {
        ServerFrame::Message { message } => Some(message.clone()),
        _ => None,
    })
    .await
}

/// The only notification of the consultation.
async fn only_notification(hub: &TestHub, id: &ConsultationId) -> NotificationView {
    let rows = notifications(hub, id).await;
    let [row] = rows.as_slice() else {
        panic!("expected one notification: {rows:?}");
    };
    row.clone()
}

async fn put_policy(hub: &TestHub, policy: Value) {
    let path = format!("/v1/clinics/{CLINIC}/policy");
    let (status, body) = api(hub, Method::PUT, &path, policy.clone()).await;
    assert_eq!(status, 200, "{body}");
    let (_, stored) = api(hub, Method::GET, &path, Value::Null).await;
    assert_eq!(stored, policy);
}

fn code(result: Result<consult_client::Notified, ClientError>) -> ErrorCode {
    result.unwrap_err().code().expect("a hub refusal")
}

// ---- Pipeline ----

#[tokio::test]
async fn a_503_is_retried_with_backoff_under_the_same_idempotency_token_then_sent() {
    let fake = FakeProviders::start().await;
    let hub = fake.hub(|_| {}).await;
    let (id, patient) = joined(&hub, "pat-a").await;
    patient.set_sms_consent(true).await.unwrap();
    let provider = hub.connect("dr-a", Role::Provider).await;
    fake.fail_next(
        1,
        503,
        json!({"code": 20500, "message": "Service unavailable"}),
    );

    let sent = provider
        .alert(&id, ALERT, &[AlertChannel::Sms], "a1")
        .await
        .unwrap();

    let attempts = fake.wait_for_sms(2).await;
    assert_eq!(
        attempts.iter().map(|sms| sms.status).collect::<Vec<_>>(),
        [503, 201]
    );
    assert_eq!(
        attempts[0].idempotency_token, attempts[1].idempotency_token,
        "a retry must not send twice"
    );
    let gap = attempts[1].received_at - attempts[0].received_at;
    assert!(
        gap >= chrono::Duration::milliseconds(50),
        "retried after {gap}, before the 50 ms backoff"
    );
    let row = wait_for_status(
        &hub,
        &id,
        &sent.notifications[0].id,
        NotificationStatus::Sent,
    )
    .await;
    assert_eq!(row.attempts, 2);
    assert_eq!(row.error, None);
    let retries = audited(&hub, &id, "notification.retry").await;
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert!(
        retries[0]["detail"]["error"]
            .as_str()
            .unwrap()
            .starts_with("retryable")
    );
    assert_eq!(fake.sms().len(), 2);
}

#[tokio::test]
async fn a_permanent_provider_error_fails_the_row_without_a_retry() {
    let fake = FakeProviders::start().await;
    let hub = fake.hub(|_| {}).await;
    let (id, patient) = joined(&hub, "pat-a").await;
    patient.set_sms_consent(true).await.unwrap();
    let provider = hub.connect("dr-a", Role::Provider).await;
    let invalid_number = json!({
        "code": 21211,
        "message": format!("The 'To' number {PATIENT_PHONE} is not a valid phone number."),
        "status": 400,
    });
    fake.fail_next(1, 400, invalid_number);

    let row = alert_until(
        &hub,
        &provider,
        &id,
        AlertChannel::Sms,
        "a1",
        NotificationStatus::Failed,
    )
    .await;
    assert_eq!(row.attempts, 1);
    let error = row.error.unwrap();
    assert!(
        error.starts_with("permanent") && error.contains("21211"),
        "{error}"
    );
    assert!(!error.contains("5550001111"), "no phone number: {error}");
    let sms = fake.sms();
    assert_eq!(sms.len(), 1, "not retried: {sms:?}");
    assert_eq!(sms[0].status, 400);
}

#[tokio::test]
async fn an_unregistered_push_token_fails_and_the_device_is_forgotten_at_once() {
    let fake = FakeProviders::start().await;
    let hub = fake.hub(|_| {}).await;
    let (id, _patient) = joined_with_push(&hub, "fcm-gone").await;
    fake.unregister("fcm-gone");
    let provider = hub.connect("dr-a", Role::Provider).await;

    let row = alert_until(
        &hub,
        &provider,
        &id,
        AlertChannel::Push,
        "a1",
        NotificationStatus::Failed,
    )
    .await;

    assert!(row.error.unwrap().contains("UNREGISTERED"));
    let again = provider
        .alert(&id, ALERT, &[AlertChannel::Push], "a2")
        .await;
    assert_eq!(
        code(again),
        ErrorCode::ChannelUnavailable,
        "the dead token is no longer a way to reach the patient"
    );
    assert_eq!(fake.pushes().len(), 1);
}

/// The devices registered under `token`, as (clinic, user) pairs.
async fn registrations_of(hub: &TestHub, token: &str) -> Vec<(String, String)> {
    use sea_orm::{ConnectionTrait, Statement};
    let db = hub.state.store.connection();
    let rows = db
        .query_all(Statement::from_sql_and_values(
            db.get_database_backend(),
            match db.get_database_backend() {
                sea_orm::DatabaseBackend::Postgres => {
                    "SELECT clinic_id, user_id FROM devices WHERE token = $1 ORDER BY clinic_id"
                }
                _ => "SELECT clinic_id, user_id FROM devices WHERE token = ? ORDER BY clinic_id",
            },
            [token.into()],
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            (
                row.try_get::<String>("", "clinic_id").unwrap(),
                row.try_get::<String>("", "user_id").unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_dead_push_token_is_forgotten_in_the_failing_clinic_only() {
    let fake = FakeProviders::start().await;
    let hub = fake.hub(|_| {}).await;
    let (id, _patient) = joined_with_push(&hub, "fcm-shared").await;
    // The same phone, registered by its owner's account in another clinic.
    let elsewhere = hub.connect_in("pat-z", Role::Patient, "clinic-2").await;
    elsewhere
        .register_device(DevicePlatform::Fcm, "fcm-shared", true)
        .await
        .unwrap();
    fake.unregister("fcm-shared");
    let provider = hub.connect("dr-a", Role::Provider).await;

    alert_until(
        &hub,
        &provider,
        &id,
        AlertChannel::Push,
        "a1",
        NotificationStatus::Failed,
    )
    .await;

    assert_eq!(
        registrations_of(&hub, "fcm-shared").await,
        [("clinic-2".to_owned(), "pat-z".to_owned())],
        "the other clinic's record is its own"
    );
}

#[tokio::test]
async fn a_permanent_push_error_that_is_not_about_the_device_keeps_it() {
    let fake = FakeProviders::start().await;
    let hub = fake.hub(|_| {}).await;
    let (id, _patient) = joined_with_push(&hub, "fcm-kept").await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    fake.fail_next(
        1,
        400,
        json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
                         "message": "Request contains an invalid argument."}}),
    );

    let row = alert_until(
        &hub,
        &provider,
        &id,
        AlertChannel::Push,
        "a1",
        NotificationStatus::Failed,
    )
    .await;
    assert!(row.error.unwrap().contains("INVALID_ARGUMENT"));
    assert_eq!(registrations_of(&hub, "fcm-kept").await.len(), 1);

    alert_until(
        &hub,
        &provider,
        &id,
        AlertChannel::Push,
        "a2",
        NotificationStatus::Sent,
    )
    .await;
}

#[tokio::test]
async fn outbox_rows_are_written_with_their_message_and_listed_to_staff_only() {
    let fake = FakeProviders::start().await;
    let hub = fake.hub(|_| {}).await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let id = consultation.id;
    register_device(&hub, "pat-a", "fcm-pat-a", true).await;
    let provider = hub.connect("dr-a", Role::Provider).await;

    let sent = provider.send(&id, "c1", CHAT).await.unwrap();

    let listed = notifications(&hub, &id).await;
    let [row] = listed.as_slice() else {
        panic!("one offline push queued with the message: {listed:?}");
    };
    assert_eq!(row.message_seq, Some(sent.0));
    assert_eq!(
        (row.channel, row.reason, row.status, row.attempts),
        (
            AlertChannel::Push,
            NotificationReason::Offline,
            NotificationStatus::Pending,
            0
        )
    );
    assert_eq!(row.recipient, UserId::from("pat-a"));
    assert_eq!(provider.list_notifications(&id).await.unwrap(), listed);
    let text = serde_json::to_string(&listed).unwrap();
    assert!(
        !text.contains("fcm-pat-a") && !text.contains("shortly"),
        "staff see neither token nor text: {text}"
    );
    let patient = hub.connect("pat-a", Role::Patient).await;
    let refused = patient.list_notifications(&id).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::Forbidden));
}

#[tokio::test]
async fn every_notification_outcome_is_audited_without_text_or_contact_details() {
    let fake = FakeProviders::start().await;
    let hub = fake.hub(|config| config.notify.push_after_ms = 1_000).await;
    let (id, patient) = joined(&hub, "pat-a").await;
    patient.set_sms_consent(true).await.unwrap();
    patient
        .register_device(DevicePlatform::Fcm, "fcm-pat-a", true)
        .await
        .unwrap();
    let provider = hub.connect("dr-a", Role::Provider).await;

    fake.fail_next(1, 400, json!({"code": 21211, "message": "bad number"}));
    let failed = provider
        .alert(&id, ALERT, &[AlertChannel::Sms], "a1")
        .await
        .unwrap();
    let failed = &failed.notifications[0];
    wait_for_status(&hub, &id, &failed.id, NotificationStatus::Failed).await;
    let pushed = provider
        .alert(&id, ALERT, &[AlertChannel::Push], "a2")
        .await
        .unwrap();
    let pushed = &pushed.notifications[0];
    wait_for_status(&hub, &id, &pushed.id, NotificationStatus::Sent).await;
    provider.send(&id, "c1", CHAT).await.unwrap();
    let seq = loop {
        let seq = next_message(&patient).await.seq;
        if seq.get() == 3 {
            break seq;
        }
    };
    patient.ack(&id, seq, ReceiptKind::Delivered).await.unwrap();
    let escalation = notifications(&hub, &id).await.pop().unwrap();
    assert_eq!(escalation.reason, NotificationReason::Escalation);
    wait_for_status(&hub, &id, &escalation.id, NotificationStatus::Cancelled).await;

    for (action, row) in [
        ("notification.failed", failed),
        ("notification.sent", pushed),
        ("notification.cancelled", &escalation),
    ] {
        let entries = audited(&hub, &id, action).await;
        let [entry] = entries.as_slice() else {
            panic!("one {action}: {entries:?}");
        };
        assert_eq!(entry["actor_id"], "hub");
        assert_eq!(entry["detail"]["notification_id"], row.id.as_str());
        assert_eq!(entry["detail"]["channel"], json!(row.channel));
    }
    let trail = serde_json::to_string(&audit(&hub, &id).await).unwrap();
    for secret in [ALERT, CHAT, PATIENT_PHONE, "fcm-pat-a"] {
        assert!(!trail.contains(secret), "audit holds {secret:?}: {trail}");
    }
}

/// A hub whose own worker idles (tests step it by hand), a consultation
/// with pat-a consented to SMS, and `count` SMS outbox rows for its first
/// message.
async fn sms_rows(
    fake: &FakeProviders,
    count: usize,
    adjust: impl FnOnce(&mut consult_hub::Config),
) -> (TestHub, Vec<outbox::OutboxRow>) {
    let hub = fake
        .hub(|config| {
            config.notify.poll_interval_ms = 60_000;
            adjust(config);
        })
        .await;
    let (id, patient) = joined(&hub, "pat-a").await;
    sms_consent(&hub, "pat-a", true).await;
    let (seq, _) = patient.send(&id, "p1", "hello").await.unwrap();
    let sms = NewNotification {
        recipient: UserId::from("pat-a"),
        channel: AlertChannel::Sms,
        provider: "twilio".to_owned(),
        target: PATIENT_PHONE.to_owned(),
        title: String::new(),
        body: ALERT.to_owned(),
        reason: NotificationReason::Alert,
        cancel: CancelRule::Never,
        delay: Duration::ZERO,
    };
    let rows = outbox::insert_for_message(
        hub.state.store.connection(),
        &id,
        seq.get(),
        &vec![sms; count],
    )
    .await
    .unwrap();
    (hub, rows)
}

/// [`sms_rows`] with one row.
async fn one_sms_row(
    fake: &FakeProviders,
    adjust: impl FnOnce(&mut consult_hub::Config),
) -> (TestHub, outbox::OutboxRow) {
    let (hub, mut rows) = sms_rows(fake, 1, adjust).await;
    (hub, rows.remove(0))
}

#[tokio::test]
async fn the_backlog_counts_due_rows_nobody_claimed_and_dates_the_oldest() {
    let fake = FakeProviders::start().await;
    let (hub, rows) = sms_rows(&fake, 3, |_| {}).await;
    let db = hub.state.store.connection();
    let now = chrono::Utc::now();
    let (due, oldest) = outbox::backlog(db, now).await.unwrap();
    assert_eq!(due, 3);
    let oldest = oldest.unwrap();
    assert!(oldest <= now, "{oldest} is after {now}");
    assert!(now - oldest < chrono::Duration::seconds(30), "{oldest}");
    // A claimed row is no longer waiting; nothing is due an hour ago.
    outbox::claim(db, &rows[0], now, now + chrono::Duration::seconds(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outbox::backlog(db, now).await.unwrap().0, 2);
    assert_eq!(
        outbox::backlog(db, now - chrono::Duration::hours(1))
            .await
            .unwrap(),
        (0, None)
    );
}

#[tokio::test]
async fn a_row_left_sending_by_a_crashed_sender_is_sent_exactly_once_after_its_lease() {
    let fake = FakeProviders::start().await;
    let (hub, rows) = sms_rows(&fake, 2, |_| {}).await;
    let db = hub.state.store.connection();
    let now = chrono::Utc::now();
    let expired = now - chrono::Duration::seconds(1);
    let live = now + chrono::Duration::seconds(60);
    // Row 0: its sender claimed it and died. Row 1: its sender is still busy.
    assert!(
        outbox::claim(db, &rows[0], now, expired)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        outbox::claim(db, &rows[1], now, live)
            .await
            .unwrap()
            .is_some()
    );

    let worker = OutboxWorker::new(hub.state.clone());
    let first = worker.step().await.unwrap();
    let second = worker.step().await.unwrap();

    assert_eq!((first.sent, first.handled()), (1, 1));
    assert_eq!(second.handled(), 0, "nothing left to do");
    let sent = fake.sms();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].idempotency_token, rows[0].idempotency_key);
    assert_eq!(sent[0].body, ALERT);
    let stored = outbox::find(db, &rows[0].id).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.attempts),
        (NotificationStatus::Sent, 2)
    );
    let busy = outbox::find(db, &rows[1].id).await.unwrap().unwrap();
    assert_eq!(busy.status, NotificationStatus::Sending, "its lease holds");
}

/// A sender whose lease runs out while its provider is slow to answer: a
/// second worker reclaims and sends the row. Both sends reached the
/// provider, and both are in the audit trail (the late one marked
/// `lease_expired`), while the row keeps the second worker's outcome.
#[tokio::test]
async fn a_send_accepted_after_its_lease_ran_out_is_audited_too() {
    let fake = FakeProviders::start().await;
    let (hub, row) = one_sms_row(&fake, |config| config.notify.lease_secs = 1).await;
    fake.delay_next_sends(1, Duration::from_millis(2_500));
    let slow = OutboxWorker::new(hub.state.clone());
    let slow = tokio::spawn(async move { slow.step().await });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let worker = OutboxWorker::new(hub.state.clone());
    assert_eq!(worker.step().await.unwrap().sent, 1, "reclaimed and sent");
    assert_eq!(slow.await.unwrap().unwrap().sent, 0, "fenced off");

    assert_eq!(fake.sms().len(), 2, "the provider took both sends");
    let sent = audited(&hub, &row.consultation_id, "notification.sent").await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    let late: Vec<&Value> = sent
        .iter()
        .filter(|entry| entry["detail"]["lease_expired"] == true)
        .collect();
    assert_eq!(late.len(), 1, "{sent:?}");
    assert_eq!(late[0]["detail"]["notification_id"], row.id.as_str());
    let stored = outbox::find(hub.state.store.connection(), &row.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, NotificationStatus::Sent);
}

#[tokio::test]
async fn a_sender_whose_lease_ran_out_cannot_overwrite_the_outcome_of_the_worker_that_reclaimed_it()
{
    let fake = FakeProviders::start().await;
    let (hub, row) = one_sms_row(&fake, |_| {}).await;
    let db = hub.state.store.connection();
    let now = chrono::Utc::now();
    // A slow sender claims the row; its lease runs out before it answers.
    let slow = outbox::claim(db, &row, now, now - chrono::Duration::seconds(1))
        .await
        .unwrap()
        .unwrap();
    let worker = OutboxWorker::new(hub.state.clone());
    assert_eq!(worker.step().await.unwrap().sent, 1);
    // The slow sender's late outcome is fenced off by its claim.
    let late = outbox::finish(
        db,
        &slow,
        outbox::Finish::Failed {
            error: "timeout".to_owned(),
        },
    )
    .await
    .unwrap();
    assert_eq!(late, None);
    let stored = outbox::find(db, &row.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.attempts),
        (NotificationStatus::Sent, 2)
    );
    assert_eq!(fake.sms().len(), 1);
}

#[tokio::test]
async fn a_row_reclaimed_with_no_attempt_left_fails_instead_of_being_sent_again() {
    let fake = FakeProviders::start().await;
    let (hub, row) = one_sms_row(&fake, |config| config.notify.max_attempts = 1).await;
    let db = hub.state.store.connection();
    let now = chrono::Utc::now();
    outbox::claim(db, &row, now, now - chrono::Duration::seconds(1))
        .await
        .unwrap()
        .unwrap();
    let worker = OutboxWorker::new(hub.state.clone());
    let step = worker.step().await.unwrap();
    assert_eq!((step.failed, step.sent), (1, 0));
    let stored = outbox::find(db, &row.id).await.unwrap().unwrap();
    assert_eq!(stored.status, NotificationStatus::Failed);
    assert_eq!(stored.last_error.as_deref(), Some("lease_expired"));
    assert_eq!(
        worker.step().await.unwrap().handled(),
        0,
        "and it stays failed"
    );
    assert!(fake.sms().is_empty(), "{:?}", fake.sms());
}

#[tokio::test]
async fn a_provider_id_longer_than_the_column_is_not_stored_and_the_send_still_counts() {
    let fake = FakeProviders::start().await;
    let (hub, row) = one_sms_row(&fake, |_| {}).await;
    let db = hub.state.store.connection();
    let now = chrono::Utc::now();
    let claim = outbox::claim(db, &row, now, now + chrono::Duration::seconds(60))
        .await
        .unwrap()
        .unwrap();
    let stored = outbox::finish(
        db,
        &claim,
        outbox::Finish::Sent {
            provider_message_id: "m".repeat(300),
        },
    )
    .await
    .unwrap()
    .unwrap();
    // PostgreSQL refused the whole write (varchar(200)) and the row was
    // sent again after its lease; now the outcome is recorded either way.
    assert_eq!(stored.status, NotificationStatus::Sent);
}

// ---- Escalation ----

#[tokio::test]
async fn a_connected_patient_who_never_acknowledges_gets_a_push_after_push_after_ms() {
    let fake = FakeProviders::start().await;
    let hub = fake.hub(|_| {}).await;
    let (id, patient) = joined_with_push(&hub, "fcm-pat-a").await;
    let provider = hub.connect("dr-a", Role::Provider).await;

    provider.send(&id, "c1", CHAT).await.unwrap();
    let message = next_message(&patient).await;

    let queued = only_notification(&hub, &id).await;
    assert_eq!(queued.reason, NotificationReason::Escalation);
    assert!(queued.due_at - message.sent_at >= chrono::Duration::milliseconds(400));
    let push = &fake.wait_for_pushes(1).await[0];
    assert!(
        push.received_at >= queued.due_at,
        "pushed before push_after_ms"
    );
    assert_eq!(push.body, GENERIC_PUSH_BODY);
    assert_eq!(push.consultation_id, id.as_str());
    wait_for_status(&hub, &id, &queued.id, NotificationStatus::Sent).await;
}

#[tokio::test]
async fn a_delivered_receipt_before_push_after_ms_cancels_the_escalation_push() {
    let fake = FakeProviders::start().await;
    let hub = fake.hub(|config| config.notify.push_after_ms = 1_000).await;
    let (id, patient) = joined_with_push(&hub, "fcm-pat-a").await;
    let provider = hub.connect("dr-a", Role::Provider).await;

    provider.send(&id, "c1", CHAT).await.unwrap();
    let seq = next_message(&patient).await.seq;
    patient.ack(&id, seq, ReceiptKind::Delivered).await.unwrap();

    let queued = only_notification(&hub, &id).await;
    let row = wait_for_status(&hub, &id, &queued.id, NotificationStatus::Cancelled).await;
    assert_eq!(row.error.as_deref(), Some("acknowledged"));
    assert!(fake.pushes().is_empty());
}

#[tokio::test]
async fn the_clinic_policy_sends_the_generic_unread_sms_while_the_message_stays_unread() {
    let fake = FakeProviders::start().await;
    let hub = fake.hub(|_| {}).await;
    put_policy(
        &hub,
        json!({"push_after_ms": 1000, "offline_grace_ms": 300,
               "sms_after_unread_ms": 400, "push_include_text": false}),
    )
    .await;
    let (id, patient) = joined(&hub, "pat-a").await;
    patient.set_sms_consent(true).await.unwrap();
    let provider = hub.connect("dr-a", Role::Provider).await;

    provider.send(&id, "c1", CHAT).await.unwrap();
    let seq = next_message(&patient).await.seq;
    // Delivered is not read: the SMS still goes.
    patient.ack(&id, seq, ReceiptKind::Delivered).await.unwrap();

    let queued = only_notification(&hub, &id).await;
    assert_eq!(
        (queued.channel, queued.reason),
        (AlertChannel::Sms, NotificationReason::Unread)
    );
    let sms = &fake.wait_for_sms(1).await[0];
    assert!(sms.received_at >= queued.due_at);
    assert_eq!(
        (sms.to.as_str(), sms.from.as_str(), sms.body.as_str()),
        (PATIENT_PHONE, TWILIO_FROM, GENERIC_SMS_BODY)
    );
    wait_for_status(&hub, &id, &queued.id, NotificationStatus::Sent).await;
}

#[tokio::test]
async fn a_read_receipt_before_the_policys_sms_time_cancels_the_unread_sms() {
    let fake = FakeProviders::start().await;
    let hub = fake.hub(|_| {}).await;
    put_policy(
        &hub,
        json!({"push_after_ms": 1000, "offline_grace_ms": 300,
               "sms_after_unread_ms": 1000, "push_include_text": false}),
    )
    .await;
    let (id, patient) = joined(&hub, "pat-a").await;
    patient.set_sms_consent(true).await.unwrap();
    let provider = hub.connect("dr-a", Role::Provider).await;

    provider.send(&id, "c1", CHAT).await.unwrap();
    let seq = next_message(&patient).await.seq;
    patient.ack(&id, seq, ReceiptKind::Read).await.unwrap();

    let queued = only_notification(&hub, &id).await;
    assert_eq!(queued.reason, NotificationReason::Unread);
    let row = wait_for_status(&hub, &id, &queued.id, NotificationStatus::Cancelled).await;
    assert_eq!(row.error.as_deref(), Some("acknowledged"));
    assert!(fake.sms().is_empty());
}

// ---- Offline fallback ----

#[tokio::test]
async fn an_offline_patient_who_reconnects_within_the_grace_window_gets_no_push() {
    let fake = FakeProviders::start().await;
    let hub = fake
        .hub(|config| config.notify.offline_grace_ms = 1_000)
        .await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    register_device(&hub, "pat-a", "fcm-pat-a", true).await;
    let provider = hub.connect("dr-a", Role::Provider).await;

    provider.send(&consultation.id, "c1", CHAT).await.unwrap();
    let queued = only_notification(&hub, &consultation.id).await;
    assert_eq!(queued.reason, NotificationReason::Offline);
    let _patient = hub.connect("pat-a", Role::Patient).await;

    let row = wait_for_status(
        &hub,
        &consultation.id,
        &queued.id,
        NotificationStatus::Cancelled,
    )
    .await;
    assert_eq!(row.error.as_deref(), Some("reconnected"));
    assert!(fake.pushes().is_empty());
}

#[tokio::test]
async fn a_patient_who_disconnected_gets_the_offline_push_after_the_grace_window() {
    let fake = FakeProviders::start().await;
    let hub = fake.hub(|_| {}).await;
    let (id, patient) = joined_with_push(&hub, "fcm-pat-a").await;
    patient.close().await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    // The hub notices the close asynchronously: wait until it counts the
    // patient as gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while hub
        .state
        .presence
        .is_online(&PersonKey::new(&CLINIC.into(), &UserId::from("pat-a")))
        .await
    {
        assert!(tokio::time::Instant::now() < deadline, "still online");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    provider.send(&id, "c1", CHAT).await.unwrap();

    let queued = only_notification(&hub, &id).await;
    assert_eq!(queued.reason, NotificationReason::Offline);
    let push = &fake.wait_for_pushes(1).await[0];
    assert!(push.received_at >= queued.due_at);
    assert_eq!(push.body, GENERIC_PUSH_BODY);
    wait_for_status(&hub, &id, &queued.id, NotificationStatus::Sent).await;
}

// ---- STOP and START ----

/// Posts an inbound SMS as Twilio would, signed with `signature` (none when
/// `None`); returns the status.
async fn inbound(hub: &TestHub, params: &[(&str, &str)], signature: Option<&str>) -> u16 {
    let mut request = hub.http.post(hub.url("/v1/sms/inbound")).form(params);
    if let Some(signature) = signature {
        request = request.header("X-Twilio-Signature", signature);
    }
    let response = request.send().await.unwrap();
    response.status().as_u16()
}

const MESSAGE_SID: &str = "SM0123456789abcdef0123456789abcdef";

fn keyword_params(body: &str) -> [(&'static str, &str); 4] {
    keyword_params_with_sid(MESSAGE_SID, body)
}

fn keyword_params_with_sid<'a>(sid: &'a str, body: &'a str) -> [(&'static str, &'a str); 4] {
    [
        ("MessageSid", sid),
        ("From", PATIENT_PHONE),
        ("To", TWILIO_FROM),
        ("Body", body),
    ]
}

/// Posts a correctly signed STOP or START, as a new message (a fresh
/// `MessageSid`), and checks the TwiML answer. Returns the signed form.
async fn signed_keyword(hub: &TestHub, body: &str) -> Vec<(String, String)> {
    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    let params = keyword_params_with_sid(&sid, body);
    post_signed(hub, &params).await;
    params
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

/// Posts `params` with a valid signature and checks the TwiML answer.
async fn post_signed(hub: &TestHub, params: &[(&str, &str)]) {
    let signature = twilio_signature(INBOUND_URL, params);
    let response = hub
        .http
        .post(hub.url("/v1/sms/inbound"))
        .header("X-Twilio-Signature", signature)
        .form(params)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/xml"), "{content_type}");
    assert!(response.text().await.unwrap().contains("<Response>"));
}

async fn sms_alert(
    provider: &Client,
    id: &ConsultationId,
    key: &str,
) -> Result<consult_client::Notified, ClientError> {
    provider.alert(id, ALERT, &[AlertChannel::Sms], key).await
}

async fn stop_hub(fake: &FakeProviders) -> TestHub {
    fake.hub(|_| {}).await
}

#[tokio::test]
async fn inbound_sms_without_a_valid_twilio_signature_is_refused_and_changes_nothing() {
    let fake = FakeProviders::start().await;
    let hub = stop_hub(&fake).await;
    let (id, _patient) = joined(&hub, "pat-a").await;
    sms_consent(&hub, "pat-a", true).await;
    let stop = keyword_params("STOP");
    let good = twilio_signature(INBOUND_URL, &stop);
    let owned: Vec<(String, String)> = stop
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    assert!(
        verify_inbound_signature(TWILIO_AUTH_TOKEN, INBOUND_URL, &owned, &good),
        "the harness signs as the hub verifies"
    );

    let other_url = twilio_signature("https://elsewhere.test/v1/sms/inbound", &stop);
    let other_body = twilio_signature(INBOUND_URL, &keyword_params("HELLO"));
    for signature in [
        None,
        Some("bm90IGEgc2lnbmF0dXJl"),
        Some(&*other_url),
        Some(&*other_body),
    ] {
        assert_eq!(inbound(&hub, &stop, signature).await, 401, "{signature:?}");
    }
    let with_api_key = hub
        .http
        .post(hub.url("/v1/sms/inbound"))
        .bearer_auth(crate::harness::API_KEY)
        .form(&stop)
        .send()
        .await
        .unwrap();
    assert_eq!(
        with_api_key.status().as_u16(),
        401,
        "with Twilio configured only its signature counts"
    );

    let provider = hub.connect("dr-a", Role::Provider).await;
    alert_until(
        &hub,
        &provider,
        &id,
        AlertChannel::Sms,
        "a1",
        NotificationStatus::Sent,
    )
    .await;
    assert_eq!(fake.sms().len(), 1, "SMS still reach the patient");
}

#[tokio::test]
async fn a_signed_stop_opts_the_patient_out_and_cancels_pending_sms() {
    let fake = FakeProviders::start().await;
    let hub = stop_hub(&fake).await;
    put_policy(
        &hub,
        json!({"push_after_ms": 1000, "offline_grace_ms": 300,
               "sms_after_unread_ms": 1000, "push_include_text": false}),
    )
    .await;
    let (id, patient) = joined(&hub, "pat-a").await;
    patient.set_sms_consent(true).await.unwrap();
    let provider = hub.connect("dr-a", Role::Provider).await;
    provider.send(&id, "c1", CHAT).await.unwrap();
    let unread = only_notification(&hub, &id).await;
    assert_eq!(unread.channel, AlertChannel::Sms);

    signed_keyword(&hub, "Stop").await;

    let refused = provider.alert(&id, ALERT, &[AlertChannel::Sms], "a1").await;
    assert_eq!(code(refused), ErrorCode::ChannelUnavailable);
    let row = wait_for_status(&hub, &id, &unread.id, NotificationStatus::Cancelled).await;
    assert_eq!(row.error.as_deref(), Some("sms_opted_out"));
    assert!(fake.sms().is_empty());
}

#[tokio::test]
async fn start_lifts_a_stop_but_never_stands_in_for_consent() {
    let fake = FakeProviders::start().await;
    let hub = stop_hub(&fake).await;
    // Both patients have the same phone number; only pat-a consented.
    let (consented, _a) = joined(&hub, "pat-a").await;
    let (never_asked, _b) = joined(&hub, "pat-b").await;
    sms_consent(&hub, "pat-a", true).await;
    let provider = hub.connect("dr-a", Role::Provider).await;

    signed_keyword(&hub, "STOP").await;
    assert_eq!(
        code(sms_alert(&provider, &consented, "a1").await),
        ErrorCode::ChannelUnavailable
    );
    signed_keyword(&hub, "START").await;

    let sent = sms_alert(&provider, &consented, "a2").await.unwrap();
    wait_for_status(
        &hub,
        &consented,
        &sent.notifications[0].id,
        NotificationStatus::Sent,
    )
    .await;
    assert_eq!(
        code(sms_alert(&provider, &never_asked, "b1").await),
        ErrorCode::ChannelUnavailable,
        "START is not consent"
    );
    sms_consent(&hub, "pat-b", true).await;
    let sent = sms_alert(&provider, &never_asked, "b2").await.unwrap();
    wait_for_status(
        &hub,
        &never_asked,
        &sent.notifications[0].id,
        NotificationStatus::Sent,
    )
    .await;
    assert_eq!(fake.sms().len(), 2);
}

#[tokio::test]
async fn a_replayed_signed_stop_is_acknowledged_and_ignored() {
    let fake = FakeProviders::start().await;
    let hub = stop_hub(&fake).await;
    let (id, _patient) = joined(&hub, "pat-a").await;
    sms_consent(&hub, "pat-a", true).await;
    let provider = hub.connect("dr-a", Role::Provider).await;

    let stop = signed_keyword(&hub, "STOP").await;
    signed_keyword(&hub, "START").await;
    sms_consent(&hub, "pat-a", true).await;
    // Someone who captured the STOP sends it again, signature and all.
    let replay: Vec<(&str, &str)> = stop
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    post_signed(&hub, &replay).await;

    let sent = sms_alert(&provider, &id, "a1").await.unwrap();
    wait_for_status(
        &hub,
        &id,
        &sent.notifications[0].id,
        NotificationStatus::Sent,
    )
    .await;
    assert_eq!(
        hub.metric("consult_sms_inbound_total{outcome=\"replayed\"}")
            .await,
        1.0
    );
    // The replay applied nothing: one STOP, one START.
    for keyword in ["stop", "start"] {
        assert_eq!(
            hub.metric(&format!(
                "consult_sms_keywords_total{{keyword=\"{keyword}\"}}"
            ))
            .await,
            1.0,
            "{keyword}"
        );
    }
    // A signed request without a MessageSid cannot be told from a replay.
    let without_sid = [
        ("From", PATIENT_PHONE),
        ("To", TWILIO_FROM),
        ("Body", "STOP"),
    ];
    let signature = twilio_signature(INBOUND_URL, &without_sid);
    assert_eq!(inbound(&hub, &without_sid, Some(&signature)).await, 400);
}

#[tokio::test]
async fn without_twilio_the_platform_relays_inbound_sms_with_its_api_key() {
    let hub = TestHub::start().await;
    let (id, _patient) = joined(&hub, "pat-a").await;
    sms_consent(&hub, "pat-a", true).await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let stop = keyword_params("STOP");
    let post = |key: Option<&'static str>| {
        let mut request = hub.http.post(hub.url("/v1/sms/inbound")).form(&stop);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };

    for key in [None, Some("not-the-key")] {
        assert_eq!(post(key).await.unwrap().status().as_u16(), 401, "{key:?}");
    }
    let sent = sms_alert(&provider, &id, "a1").await.unwrap();
    assert_eq!(sent.notifications[0].provider, "log");
    let relayed = post(Some(crate::harness::API_KEY)).await.unwrap();
    assert_eq!(relayed.status().as_u16(), 200);

    assert_eq!(
        code(sms_alert(&provider, &id, "a2").await),
        ErrorCode::ChannelUnavailable
    );
}
