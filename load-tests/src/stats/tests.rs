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
