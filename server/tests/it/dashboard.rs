//! The "Active and Waiting" dashboard: who may watch which list, what the
//! snapshot holds, the deltas that follow status changes, patient messages
//! and read receipts, and that unwatching stops them.

use crate::harness::{CLINIC, TestHub, expect_event, expect_no_event};
use consult_client::Client;
use consult_hub::store::dashboard_rows::{UnreadCounts, dashboard_entries_of};
use consult_protocol::{
    ConsultationId, ConsultationStatus as Status, ConsultationView, DashboardEntry, ErrorCode,
    ReceiptKind, Role, ServerFrame, UserId,
};
use std::collections::BTreeSet;
use std::time::Duration;

/// The next `dashboard` delta for `id` that `client` receives and that
/// `wanted` accepts.
async fn next_delta(
    client: &Client,
    id: &ConsultationId,
    mut wanted: impl FnMut(&DashboardEntry) -> bool,
) -> DashboardEntry {
    expect_event(client, |event| match event {
        ServerFrame::Dashboard { entry } if &entry.consultation_id == id && wanted(entry) => {
            Some(entry.clone())
        }
        _ => None,
    })
    .await
}

/// A consultation of dr-a with pat-a, waiting for the patient, and both
/// connected.
async fn waiting_with_both_connected(hub: &TestHub) -> (ConsultationId, Client, Client) {
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    (consultation.id, provider, patient)
}

fn ids(entries: &[DashboardEntry]) -> BTreeSet<String> {
    entries
        .iter()
        .map(|entry| entry.consultation_id.to_string())
        .collect()
}

fn set_of(consultations: &[&ConsultationView]) -> BTreeSet<String> {
    consultations.iter().map(|c| c.id.to_string()).collect()
}

/// The consultation as stored, through the REST API.
async fn stored(hub: &TestHub, id: &ConsultationId) -> ConsultationView {
    let (code, body) = hub.api_get(&format!("/v1/consultations/{id}")).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

/// Creates a waiting consultation in `clinic` (the harness helper always
/// uses [`CLINIC`]).
#[tokio::test]
async fn a_provider_snapshot_holds_only_its_active_and_waiting_consultations() {
    let hub = TestHub::start().await;
    let provider = hub.connect("dr-a", Role::Provider).await;

    let scheduled = hub.consultation("dr-a", "pat-s", "scheduled").await;
    let waiting = hub
        .consultation("dr-a", "pat-w", "waiting_for_patient")
        .await;
    let ready = hub
        .consultation("dr-a", "pat-r", "waiting_for_patient")
        .await;
    let started = hub
        .consultation("dr-a", "pat-p", "waiting_for_patient")
        .await;
    let ended = hub
        .consultation("dr-a", "pat-e", "waiting_for_patient")
        .await;
    let cancelled = hub
        .consultation("dr-a", "pat-c", "waiting_for_patient")
        .await;
    let someone_elses = hub
        .consultation("dr-b", "pat-o", "waiting_for_patient")
        .await;

    let patient_r = hub.connect("pat-r", Role::Patient).await;
    patient_r.ready(&ready.id).await.unwrap();
    let patient_p = hub.connect("pat-p", Role::Patient).await;
    patient_p.ready(&started.id).await.unwrap();
    provider.enter(&started.id).await.unwrap();
    patient_p.send(&started.id, "p-1", "hello?").await.unwrap();
    patient_p
        .send(&started.id, "p-2", "can you hear me")
        .await
        .unwrap();
    provider.enter(&ended.id).await.unwrap();
    provider.end(&ended.id).await.unwrap();
    provider.cancel(&cancelled.id).await.unwrap();

    let entries = provider.watch_dashboard(None).await.unwrap();
    assert_eq!(ids(&entries), set_of(&[&waiting, &ready, &started]));
    for excluded in [&scheduled, &ended, &cancelled, &someone_elses] {
        assert!(!ids(&entries).contains(excluded.id.as_str()));
    }
    let order: Vec<_> = entries.iter().map(|e| e.consultation_id.clone()).collect();
    assert_eq!(
        order,
        [waiting.id.clone(), ready.id.clone(), started.id.clone()],
        "longest waiting first"
    );

    let expected = [
        (&waiting, "Patient pat-w", Status::WaitingForPatient, 0),
        (&ready, "Patient pat-r", Status::PatientReady, 0),
        (&started, "Patient pat-p", Status::InProgress, 2),
    ];
    for (entry, (created, name, status, unread)) in entries.iter().zip(expected) {
        let row_now = stored(&hub, &created.id).await;
        assert_eq!(entry.provider_id.as_str(), "dr-a");
        assert_eq!(entry.patient_id, created.patient_id);
        assert_eq!(entry.patient_name, name);
        assert_eq!(entry.status, status);
        assert_eq!(entry.unread, unread, "{name}");
        assert!(entry.waiting_since.is_some());
        assert_eq!(entry.waiting_since, created.waiting_since);
        assert_eq!(entry.rev, row_now.rev);
    }
}

/// A provider's read that leaves messages unread: the delta counts from the
/// read, and the patient's next message adds to that count (on a SQLite
/// file the writer counts a patient message's row from its memo, which the
/// read must not leave behind).
#[tokio::test]
async fn a_partial_read_counts_unread_from_the_read_and_later_messages_add_to_it() {
    let hub = TestHub::start().await;
    let (id, provider, patient) = waiting_with_both_connected(&hub).await;
    let id = &id;
    provider.watch_dashboard(None).await.unwrap();
    patient.ready(id).await.unwrap();
    next_delta(&provider, id, |entry| entry.status == Status::PatientReady).await;

    let mut seqs = Vec::new();
    for n in 1..=3 {
        let (seq, _) = patient
            .send(id, &format!("p-{n}"), "A question")
            .await
            .unwrap();
        seqs.push(seq);
    }
    let three = next_delta(&provider, id, |entry| entry.unread == 3).await;

    provider.ack(id, seqs[1], ReceiptKind::Read).await.unwrap();
    let read = next_delta(&provider, id, |entry| entry.rev > three.rev).await;
    assert_eq!(read.unread, 1, "one message after the read");

    let (last, _) = patient.send(id, "p-4", "Another").await.unwrap();
    let more = next_delta(&provider, id, |entry| entry.rev > read.rev).await;
    assert_eq!(more.unread, 2, "the read's count and the new message");

    provider.ack(id, last, ReceiptKind::Read).await.unwrap();
    let all = next_delta(&provider, id, |entry| entry.rev > more.rev).await;
    assert_eq!(all.unread, 0, "the provider read everything");
}

#[tokio::test]
async fn ready_messages_reads_and_the_end_reach_the_watching_provider_as_deltas() {
    let hub = TestHub::start().await;
    let (id, provider, patient) = waiting_with_both_connected(&hub).await;
    let id = &id;
    let snapshot = provider.watch_dashboard(None).await.unwrap();
    assert_eq!(snapshot.len(), 1);
    let first = &snapshot[0];
    assert_eq!((first.status, first.unread), (Status::WaitingForPatient, 0));

    patient.ready(id).await.unwrap();
    // The creation's own delta may still arrive after the snapshot; a client
    // keeps the highest revision, and so does this test.
    let green = next_delta(&provider, id, |entry| entry.rev > first.rev).await;
    assert_eq!(green.status, Status::PatientReady);
    assert!(green.rev > first.rev);
    assert_eq!(green.patient_name, "Patient pat-a");

    let (seq, _) = patient.send(id, "p-1", "I'm here").await.unwrap();
    let unread = next_delta(&provider, id, |entry| entry.unread == 1).await;
    assert!(unread.rev > green.rev);
    assert_eq!(unread.status, Status::PatientReady);

    provider.ack(id, seq, ReceiptKind::Read).await.unwrap();
    let read = next_delta(&provider, id, |entry| entry.rev > unread.rev).await;
    assert_eq!(read.unread, 0, "the provider read everything");

    provider.enter(id).await.unwrap();
    let started = next_delta(&provider, id, |entry| entry.rev > read.rev).await;
    assert_eq!(started.status, Status::InProgress);

    provider.end(id).await.unwrap();
    let gone = next_delta(&provider, id, |entry| entry.rev > started.rev).await;
    assert_eq!(gone.status, Status::Ended);
    assert!(
        !gone.status.is_active_or_waiting(),
        "the client drops rows that are no longer active"
    );
    let again = provider.watch_dashboard(None).await.unwrap();
    assert!(again.is_empty(), "{again:?}");
}

#[tokio::test]
async fn a_clinic_admin_sees_every_provider_or_narrows_to_one() {
    let hub = TestHub::start().await;
    let for_a = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let for_b = hub
        .consultation("dr-b", "pat-b", "waiting_for_patient")
        .await;
    let elsewhere = hub
        .consultation_in("clinic-2", "dr-c", "pat-c", "waiting_for_patient")
        .await;
    let admin = hub.connect("adm-1", Role::Admin).await;

    let clinic = admin.watch_dashboard(None).await.unwrap();
    assert_eq!(ids(&clinic), set_of(&[&for_a, &for_b]));
    assert!(!ids(&clinic).contains(elsewhere.id.as_str()));
    let patient_b = hub.connect("pat-b", Role::Patient).await;
    patient_b.ready(&for_b.id).await.unwrap();
    let delta = next_delta(&admin, &for_b.id, |entry| entry.rev > for_b.rev).await;
    assert_eq!(delta.status, Status::PatientReady);
    assert_eq!(delta.provider_id.as_str(), "dr-b");

    let one = admin
        .watch_dashboard(Some(UserId::from("dr-b")))
        .await
        .unwrap();
    assert_eq!(ids(&one), set_of(&[&for_b]));
    assert_eq!(one[0].status, Status::PatientReady);
}

#[tokio::test]
async fn a_provider_may_not_watch_another_providers_list_and_a_patient_has_none() {
    let hub = TestHub::start().await;
    hub.consultation("dr-b", "pat-b", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let error = provider
        .watch_dashboard(Some(UserId::from("dr-b")))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::Forbidden));
    let own = provider
        .watch_dashboard(Some(UserId::from("dr-a")))
        .await
        .expect("naming oneself is fine");
    assert!(own.is_empty(), "{own:?}");

    let patient = hub.connect("pat-b", Role::Patient).await;
    for provider_id in [None, Some(UserId::from("dr-b"))] {
        let error = patient.watch_dashboard(provider_id).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::Forbidden));
        patient.ping().await.expect("connection still works");
    }
}

#[tokio::test]
async fn a_consultation_created_waiting_appears_on_the_providers_dashboard() {
    let hub = TestHub::start().await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    assert!(provider.watch_dashboard(None).await.unwrap().is_empty());

    // A scheduled one publishes nothing; frames arrive in order, so the first
    // delta must be the waiting one.
    hub.consultation("dr-a", "pat-s", "scheduled").await;
    let created = hub
        .consultation("dr-a", "pat-w", "waiting_for_patient")
        .await;
    let entry = expect_event(&provider, |event| match event {
        ServerFrame::Dashboard { entry } => Some(entry.clone()),
        _ => None,
    })
    .await;
    assert_eq!(entry.consultation_id, created.id);
    assert_eq!(entry.status, Status::WaitingForPatient);
    assert_eq!(entry.patient_name, "Patient pat-w");
    assert_eq!(entry.waiting_since, created.waiting_since);
    assert!(entry.waiting_since.is_some());
    assert_eq!(entry.unread, 0);
}

#[tokio::test]
async fn unwatching_stops_the_deltas() {
    let hub = TestHub::start().await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    provider.watch_dashboard(None).await.unwrap();
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let id = &consultation.id;
    // Positive control: deltas reach this connection while watching.
    next_delta(&provider, id, |_| true).await;

    provider.unwatch_dashboard().await.unwrap();
    provider.join(id, None).await.unwrap();
    let patient = hub.connect("pat-a", Role::Patient).await;
    patient.ready(id).await.unwrap();
    // The room still hears the change, and the dashboard delta was published
    // before `ready` was answered, so it would have come right behind.
    expect_event(&provider, |event| match event {
        ServerFrame::Status { status, .. } if *status == Status::PatientReady => Some(()),
        _ => None,
    })
    .await;
    expect_no_event(&provider, Duration::from_millis(300), |event| {
        matches!(event, ServerFrame::Dashboard { .. })
    })
    .await;
}

#[tokio::test]
async fn an_admin_of_another_clinic_naming_a_provider_hears_nothing_of_this_clinic() {
    let hub = TestHub::start().await;
    let here = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    assert_eq!(here.clinic_id.as_str(), CLINIC);
    let outsider = hub.connect_in("adm-x", Role::Admin, "clinic-2").await;
    let snapshot = outsider
        .watch_dashboard(Some(UserId::from("dr-a")))
        .await
        .unwrap();
    assert!(snapshot.is_empty(), "{snapshot:?}");

    // Positive control: an admin of this clinic watching the same provider
    // hears the change; by then the outsider would have heard it too.
    let insider = hub.connect("adm-a", Role::Admin).await;
    insider
        .watch_dashboard(Some(UserId::from("dr-a")))
        .await
        .unwrap();
    let patient = hub.connect("pat-a", Role::Patient).await;
    patient.ready(&here.id).await.unwrap();
    next_delta(&insider, &here.id, |entry| {
        entry.status == Status::PatientReady
    })
    .await;
    expect_no_event(&outsider, Duration::from_millis(300), |event| {
        matches!(event, ServerFrame::Dashboard { .. })
    })
    .await;
}

#[tokio::test]
async fn several_rows_are_read_in_one_query_each_as_read_alone_and_unknown_ids_left_out() {
    let hub = TestHub::start().await;
    let first = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let second = hub
        .consultation("dr-b", "pat-b", "waiting_for_patient")
        .await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    for key in ["m-1", "m-2"] {
        patient.send(&first.id, key, "hello").await.unwrap();
    }
    let db = hub.state.store.connection();
    let unknown = ConsultationId::from("no-such-consultation");
    let rows = dashboard_entries_of(
        db,
        &[second.id.clone(), unknown, first.id.clone()],
        &mut UnreadCounts::default(),
    )
    .await
    .unwrap();
    let mut read: Vec<DashboardEntry> = rows.into_iter().map(|(_, entry)| entry).collect();
    read.sort_by(|a, b| a.consultation_id.as_str().cmp(b.consultation_id.as_str()));
    let mut alone = Vec::new();
    for id in [&first.id, &second.id] {
        let (_, entry) = consult_hub::store::consultations::dashboard_entry_of(db, id)
            .await
            .unwrap()
            .unwrap();
        alone.push(entry);
    }
    alone.sort_by(|a, b| a.consultation_id.as_str().cmp(b.consultation_id.as_str()));
    assert_eq!(read, alone);
    let unread: Vec<u64> = read.iter().map(|entry| entry.unread).collect();
    let expected: Vec<u64> = alone
        .iter()
        .map(|entry| {
            if entry.consultation_id == first.id {
                2
            } else {
                0
            }
        })
        .collect();
    assert_eq!(unread, expected);
    assert!(
        dashboard_entries_of(db, &[], &mut UnreadCounts::default())
            .await
            .unwrap()
            .is_empty()
    );
    hub.shutdown().await;
}
