//! Joining a room while it is busy. A join subscribes before it reads the
//! room, so a first join without `since` needs no replay: every message
//! committed after the `joined` answer's `last_seq` arrives live, with no
//! gap and no duplicate. A refused join leaves nothing behind: no event of
//! the room reaches the refused connection, and it is never listed among
//! the room's members.

use crate::harness::{TestHub, expect_no_event};
use consult_protocol::{ErrorCode, Role, ServerFrame};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Messages the provider sends while others join.
const SENT: u64 = 1500;

async fn busy_hub() -> TestHub {
    TestHub::start_with(|config| {
        config.session.rate_limit_per_sec = 100_000;
        config.session.rate_limit_burst = 100_000;
    })
    .await
}

#[tokio::test]
async fn a_first_join_without_since_while_the_provider_sends_gets_every_later_message_once() {
    let hub = busy_hub().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let sender = {
        let id = consultation.id.clone();
        tokio::spawn(async move {
            for n in 0..SENT {
                provider
                    .send(&id, &format!("m-{n}"), "One moment please")
                    .await
                    .unwrap();
            }
            provider
        })
    };
    // Patients join one after another while the messages flow; each reads
    // what comes from then on.
    let mut readers = Vec::new();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let patient = hub.connect("pat-a", Role::Patient).await;
        let joined = patient.join(&consultation.id, None).await.unwrap();
        assert_eq!(joined.replayed, 0);
        let start = joined.consultation.last_seq.get();
        if start == SENT {
            break;
        }
        readers.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            while seqs.last().is_none_or(|last| *last < SENT) {
                let event = tokio::time::timeout(Duration::from_secs(10), patient.next_event())
                    .await
                    .unwrap_or_else(|_| panic!("joined at {start}: stalled after {seqs:?}"))
                    .expect("connection open");
                if let ServerFrame::Message { message } = event {
                    seqs.push(message.seq.get());
                }
            }
            (start, seqs)
        }));
    }
    sender.await.unwrap();
    let mut mid_stream = 0;
    for reader in readers {
        let (start, seqs) = reader.await.unwrap();
        let expected: Vec<u64> = (start + 1..=SENT).collect();
        assert_eq!(seqs, expected, "joined at {start}");
        mid_stream += usize::from(start > 0);
    }
    assert!(
        mid_stream >= 2,
        "only {mid_stream} joins happened mid-stream"
    );
}

#[tokio::test]
async fn a_refused_join_while_the_room_is_busy_gets_none_of_its_events_and_is_never_a_member() {
    let hub = busy_hub().await;
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let provider = hub.connect("dr-a", Role::Provider).await;
    let patient = hub.connect("pat-a", Role::Patient).await;
    provider.join(&consultation.id, None).await.unwrap();
    let sending = Arc::new(AtomicBool::new(true));
    let sender = {
        let (id, sending) = (consultation.id.clone(), sending.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while sending.load(Ordering::Relaxed) {
                provider
                    .send(&id, &format!("m-{n}"), "One moment please")
                    .await
                    .unwrap();
                provider.typing(&id, n % 2 == 0).await.unwrap();
                n += 1;
            }
        })
    };
    // Another clinic's admin and another patient of this clinic knock
    // while the patient joins and leaves, reading the members each time.
    let outsider = hub.connect_in("adm-x", Role::Admin, "clinic-2").await;
    let neighbour = hub.connect("pat-b", Role::Patient).await;
    let knocking = {
        let id = consultation.id.clone();
        tokio::spawn(async move {
            for _ in 0..60 {
                for intruder in [&outsider, &neighbour] {
                    let error = intruder.join(&id, None).await.unwrap_err();
                    assert_eq!(error.code(), Some(ErrorCode::Forbidden));
                }
            }
            (outsider, neighbour)
        })
    };
    for _ in 0..60 {
        let joined = patient.join(&consultation.id, None).await.unwrap();
        let users: Vec<&str> = joined.members.iter().map(|m| m.user.as_str()).collect();
        assert!(
            users.iter().all(|user| ["dr-a", "pat-a"].contains(user)),
            "members {users:?}"
        );
        patient.leave(&consultation.id).await.unwrap();
    }
    let (outsider, neighbour) = knocking.await.unwrap();
    sending.store(false, Ordering::Relaxed);
    sender.await.unwrap();
    for intruder in [&outsider, &neighbour] {
        expect_no_event(intruder, Duration::from_millis(300), |event| {
            matches!(
                event,
                ServerFrame::Message { .. }
                    | ServerFrame::Typing { .. }
                    | ServerFrame::Presence { .. }
            )
        })
        .await;
    }
}
