//! The batcher's window: what one flush takes, and when.

use super::{Batcher, FLUSH_AFTER, Job, NewReceipt, Request};
use consult_protocol::{ConsultationId, ReceiptKind, Role, UserId};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

fn receipt(seq: u64) -> Request {
    let (reply, _answer) = oneshot::channel();
    Request::Record(Job {
        receipt: NewReceipt {
            consultation_id: ConsultationId::from("consultation-1"),
            user: UserId::from("patient-1"),
            role: Role::Patient,
            kind: ReceiptKind::Delivered,
            seq,
            known_stored: seq,
            bumps_rev: false,
        },
        reply,
        queued_at: Instant::now(),
    })
}

/// A batcher that publishes nothing, and its queue.
fn batcher() -> (mpsc::Sender<Request>, Batcher) {
    let (requests, incoming) = mpsc::channel(64);
    let batcher = Batcher {
        incoming,
        on_commit: Box::new(|_| {}),
        stopping: None,
    };
    (requests, batcher)
}

fn seqs(jobs: &[Job]) -> Vec<u64> {
    jobs.iter().map(|job| job.receipt.seq).collect()
}

/// Receipts every 2 ms, without a pause: each flush takes what came within
/// 5 ms of its first receipt, and is taken then, not once the queue falls
/// quiet.
#[tokio::test(start_paused = true)]
async fn a_flush_takes_what_came_within_its_first_receipts_window_and_no_more() {
    let (requests, mut batcher) = batcher();
    let sender = tokio::spawn(async move {
        for seq in 0..10 {
            requests.send(receipt(seq)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        requests
    });
    let started = Instant::now();
    let first = batcher.next_batch().await.unwrap();
    assert_eq!(seqs(&first), [0, 1, 2], "sent at 0, 2 and 4 ms");
    assert_eq!(started.elapsed(), FLUSH_AFTER);
    let second = batcher.next_batch().await.unwrap();
    assert_eq!(seqs(&second), [3, 4, 5], "sent at 6, 8 and 10 ms");
    assert_eq!(started.elapsed(), Duration::from_millis(6) + FLUSH_AFTER);
    drop(sender.await.unwrap());
    let mut rest = Vec::new();
    while let Some(batch) = batcher.next_batch().await {
        rest.extend(seqs(&batch));
    }
    assert_eq!(rest, [6, 7, 8, 9]);
}

/// A stop is answered after what was queued before it is taken, without
/// waiting out a window.
#[tokio::test(start_paused = true)]
async fn a_stop_takes_what_is_queued_without_waiting() {
    let (requests, mut batcher) = batcher();
    let (done, _stopped) = oneshot::channel();
    requests.send(receipt(1)).await.unwrap();
    requests.send(Request::Stop(done)).await.unwrap();
    let started = Instant::now();
    let batch = batcher.next_batch().await.unwrap();
    assert_eq!(seqs(&batch), [1]);
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert!(batcher.stopping.is_some());
    assert!(batcher.next_batch().await.is_none());
}
