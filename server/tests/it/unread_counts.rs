//! The dashboard refresher's unread counts carried on from one read of a
//! consultation to the next (`store::dashboard_rows`): the figure a count
//! from scratch gives, across patient and staff messages, several messages
//! between two reads and a provider's read receipt; and a carried count
//! counts only what came after it.

use crate::harness::{TestHub, new_chat_message as message};
use consult_hub::store::batch_append::append_batch;
use consult_hub::store::dashboard_rows::{UnreadCounts, dashboard_entries_of};
use consult_protocol::{ConsultationId, ReceiptKind, Role, Seq};
use sea_orm::{ConnectionTrait, Statement};

/// Stores `keys` in `id`, each from `sender` in `role`, through the pool.
async fn store(hub: &TestHub, id: &ConsultationId, sender: &str, role: Role, keys: &[&str]) {
    for key in keys {
        let new = message(id, sender, role, Some(key), key);
        append_batch(hub.state.store.connection(), &[&new])
            .await
            .unwrap();
    }
}

/// The unread count of `id` read with `counts`.
async fn unread(hub: &TestHub, id: &ConsultationId, counts: &mut UnreadCounts) -> u64 {
    let rows = dashboard_entries_of(
        hub.state.store.connection(),
        std::slice::from_ref(id),
        counts,
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    rows[0].1.unread
}

/// The unread count of `id` carried on in `carried`, and counted from
/// scratch.
async fn carried_and_fresh(
    hub: &TestHub,
    id: &ConsultationId,
    carried: &mut UnreadCounts,
) -> (u64, u64) {
    let fresh = unread(hub, id, &mut UnreadCounts::default()).await;
    (unread(hub, id, carried).await, fresh)
}

/// The provider of `id` reads up to `seq`.
async fn provider_reads(hub: &TestHub, id: &ConsultationId, seq: u64) {
    let provider = hub.connect("dr-a", Role::Provider).await;
    provider.join(id, None).await.unwrap();
    provider.ack(id, Seq(seq), ReceiptKind::Read).await.unwrap();
}

#[tokio::test]
async fn carried_counts_match_a_fresh_count_across_messages_and_a_read_receipt() {
    let hub = TestHub::start().await;
    let id = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await
        .id;
    let mut carried = UnreadCounts::default();
    let mut seen = Vec::new();
    seen.push(carried_and_fresh(&hub, &id, &mut carried).await);
    store(&hub, &id, "pat-a", Role::Patient, &["p1"]).await;
    seen.push(carried_and_fresh(&hub, &id, &mut carried).await);
    store(&hub, &id, "pat-a", Role::Patient, &["p2"]).await;
    seen.push(carried_and_fresh(&hub, &id, &mut carried).await);
    store(&hub, &id, "dr-a", Role::Provider, &["s1"]).await;
    seen.push(carried_and_fresh(&hub, &id, &mut carried).await);
    store(&hub, &id, "pat-a", Role::Patient, &["p3"]).await;
    seen.push(carried_and_fresh(&hub, &id, &mut carried).await);
    // Up to p2 (seq 2) is read: p3 and what follows stay unread.
    provider_reads(&hub, &id, 2).await;
    seen.push(carried_and_fresh(&hub, &id, &mut carried).await);
    // Several between two reads, staff among them.
    store(&hub, &id, "pat-a", Role::Patient, &["p4"]).await;
    store(&hub, &id, "dr-a", Role::Provider, &["s2"]).await;
    store(&hub, &id, "pat-a", Role::Patient, &["p5", "p6"]).await;
    seen.push(carried_and_fresh(&hub, &id, &mut carried).await);

    let fresh: Vec<u64> = seen.iter().map(|(_, fresh)| *fresh).collect();
    assert_eq!(fresh, [0, 1, 2, 2, 3, 1, 4]);
    let carried_counts: Vec<u64> = seen.iter().map(|(carried, _)| *carried).collect();
    assert_eq!(carried_counts, fresh);
    assert_eq!(carried.len(), 1);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_carried_count_counts_only_the_messages_after_it_until_a_new_receipt() {
    let hub = TestHub::start().await;
    let id = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await
        .id;
    store(&hub, &id, "pat-a", Role::Patient, &["p1", "p2", "p3"]).await;
    let mut carried = UnreadCounts::default();
    assert_eq!(unread(&hub, &id, &mut carried).await, 3);

    // A message counted before is taken away behind the memo's back: the
    // carried count keeps it, a count from scratch does not.
    let db = hub.state.store.connection();
    let backend = db.get_database_backend();
    let delete = match backend {
        sea_orm::DatabaseBackend::Postgres => {
            "DELETE FROM messages WHERE consultation_id = $1 AND seq = 1"
        }
        _ => "DELETE FROM messages WHERE consultation_id = ? AND seq = 1",
    };
    db.execute(Statement::from_sql_and_values(
        backend,
        delete,
        [id.to_string().into()],
    ))
    .await
    .unwrap();
    store(&hub, &id, "pat-a", Role::Patient, &["p4"]).await;
    let (kept, fresh) = carried_and_fresh(&hub, &id, &mut carried).await;
    assert_eq!((kept, fresh), (4, 3));

    // A new read receipt counts again from it.
    provider_reads(&hub, &id, 2).await;
    assert_eq!(carried_and_fresh(&hub, &id, &mut carried).await, (2, 2));
    hub.shutdown().await;
}
