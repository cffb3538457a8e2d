//! Unit tests for the measurement types.

use super::*;

#[test]
fn seq_tracker_counts_gaps_and_tail() {
    let mut tracker = SeqTracker::starting_at(10);
    for seq in [11, 12, 15, 15, 16] {
        tracker.observe(seq);
    }
    assert_eq!(tracker.in_order, 4);
    assert_eq!(tracker.gaps, 1);
    assert_eq!(tracker.skipped, 2);
    assert_eq!(tracker.stale, 1);
    assert_eq!(tracker.missed(18), 4);
}

#[test]
fn histogram_survives_bucket_round_trip() {
    let mut recorder = LatencyRecorder::new();
    for micros in [0, 5, 100, 2_000, 50_000] {
        recorder.record(micros);
    }
    let copy = LatencyRecorder::from_buckets(&recorder.to_buckets());
    assert_eq!(copy.summary(), recorder.summary());
}

#[test]
fn timelines_merge_by_wall_clock() {
    let mut a = Timeline::new(1_000_000, 1000);
    a.add(1_500_000, 2);
    let mut b = Timeline::new(2_000_000, 1000);
    b.add(2_100_000, 3);
    a.merge(&b);
    assert_eq!(a.counts, vec![2, 3]);
}

#[test]
fn a_latency_batch_records_everything_once_flushed_or_dropped() {
    let shared = Arc::new(Mutex::new(LatencyRecorder::new()));
    let mut direct = LatencyRecorder::new();
    let mut first = LatencyBatch::new(shared.clone());
    let mut second = LatencyBatch::new(shared.clone());
    for micros in 0..(LATENCY_BATCH as u64 * 3 + 5) {
        first.record(micros * 7);
        second.record(micros * 11);
        direct.record(micros * 7);
        direct.record(micros * 11);
    }
    assert_eq!(
        shared.lock().unwrap().count(),
        LATENCY_BATCH as u64 * 6,
        "whole batches are recorded as they fill"
    );
    first.flush();
    drop(second);
    let recorded = shared.lock().unwrap().clone();
    assert_eq!(recorded.count(), direct.count());
    assert_eq!(recorded.to_buckets().0, direct.to_buckets().0);
}
