//! Open-loop, paced sending: message `i` is due at `start + i / rate`,
//! whether or not earlier ones have been answered, so a slow hub shows up
//! as latency rather than as a lower offered rate.
//!
//! Each message goes to room `i mod R` through that room's sender (a typed
//! client), stamped with its send time ([`crate::payload`]). Answers are
//! awaited in spawned tasks, at most `max_in_flight` at once; when that cap
//! is hit the pacer waits, and the wait shows up as pacing lag.

use crate::payload;
use crate::stats::{LatencyRecorder, LatencySummary, Timeline, unix_micros};
use consult_client::Client;
use consult_protocol::ConsultationId;
use indicatif::ProgressBar;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Where message `i` goes: `targets[i % targets.len()]`.
#[derive(Debug, Clone)]
pub struct Target {
    /// The sending connection (a provider of the room).
    pub client: Arc<Client>,
    /// The room.
    pub room: ConsultationId,
}

/// How to pace.
#[derive(Debug, Clone)]
pub struct PaceOptions {
    /// Messages per second, over all rooms.
    pub rate: f64,
    /// Stop after this many (`None`: until cancelled).
    pub limit: Option<u64>,
    /// Body length in bytes.
    pub body_bytes: usize,
    /// Sends awaiting their answer at once, at most.
    pub max_in_flight: usize,
}

/// What was sent.
#[derive(Debug, Clone, Serialize)]
pub struct SendStats {
    /// Messages the pacer issued.
    pub issued: u64,
    /// Sends answered `ok`.
    pub ok: u64,
    /// Sends answered with an error or not answered.
    pub failed: u64,
    /// The first failure, as an example.
    pub first_error: Option<String>,
    /// Wall time from the first send to the last answer, seconds.
    pub duration_secs: f64,
    /// `ok / duration_secs`.
    pub ok_per_sec: f64,
    /// Send to `ok`, µs.
    pub ack_latency: LatencySummary,
    /// How late each send was against its schedule, µs.
    pub pacing_lag: LatencySummary,
    /// Highest acknowledged `seq` per room (index as in the targets).
    pub last_seq: Vec<u64>,
    /// Sends answered `ok`, per second, by send time.
    pub timeline: Timeline,
    /// Send-to-`ok` distribution, for plots.
    #[serde(skip)]
    pub ack_recorder: LatencyRecorder,
}

#[derive(Debug)]
struct Tally {
    ok: u64,
    failed: u64,
    first_error: Option<String>,
    ack: LatencyRecorder,
    last_seq: Vec<u64>,
    timeline: Timeline,
}

/// Sends until `limit` messages were issued or `stop` is cancelled, then
/// waits for every answer.
pub async fn run(
    targets: &[Target],
    options: &PaceOptions,
    stop: &CancellationToken,
    bar: &ProgressBar,
) -> SendStats {
    let started_unix_us = unix_micros();
    let tally = Arc::new(Mutex::new(Tally {
        ok: 0,
        failed: 0,
        first_error: None,
        ack: LatencyRecorder::new(),
        last_seq: vec![0; targets.len()],
        timeline: Timeline::new(started_unix_us, 1000),
    }));
    let in_flight = Arc::new(Semaphore::new(options.max_in_flight.max(1)));
    let mut lag = LatencyRecorder::new();
    let start = Instant::now();
    let mut issued = 0u64;
    while !targets.is_empty() && options.limit.is_none_or(|limit| issued < limit) {
        let due = start + Duration::from_secs_f64(issued as f64 / options.rate.max(0.001));
        if due > Instant::now() {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep_until(due) => {}
            }
        } else if stop.is_cancelled() {
            break;
        }
        // The semaphore is never closed.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        lag.record(duration_us(Instant::now().saturating_duration_since(due)));
        let room_index = usize::try_from(issued).unwrap_or(0) % targets.len();
        let target = targets[room_index].clone();
        let sent_unix_us = unix_micros();
        let body = payload::body(sent_unix_us, issued, options.body_bytes);
        let client_msg_id = format!("m{issued}");
        let tally = tally.clone();
        tokio::spawn(async move {
            let outcome = target.client.send(&target.room, client_msg_id, body).await;
            let answered_unix_us = unix_micros();
            if let Ok(mut tally) = tally.lock() {
                tally.record(room_index, outcome, sent_unix_us, answered_unix_us);
            }
            drop(permit);
        });
        issued += 1;
        bar.inc(1);
    }
    // Wait for every answer: all permits back means nothing in flight.
    let all = u32::try_from(options.max_in_flight.max(1)).unwrap_or(u32::MAX);
    let _drained = in_flight.acquire_many(all).await;
    let duration_secs = (unix_micros().saturating_sub(started_unix_us)) as f64 / 1e6;
    let tally = match tally.lock() {
        Ok(tally) => tally,
        Err(poisoned) => poisoned.into_inner(),
    };
    SendStats {
        issued,
        ok: tally.ok,
        failed: tally.failed,
        first_error: tally.first_error.clone(),
        duration_secs,
        ok_per_sec: tally.ok as f64 / duration_secs.max(1e-9),
        ack_latency: tally.ack.summary(),
        pacing_lag: lag.summary(),
        last_seq: tally.last_seq.clone(),
        timeline: tally.timeline.clone(),
        ack_recorder: tally.ack.clone(),
    }
}

impl Tally {
    fn record(
        &mut self,
        room_index: usize,
        outcome: Result<(consult_protocol::Seq, bool), consult_client::ClientError>,
        sent_unix_us: u64,
        answered_unix_us: u64,
    ) {
        match outcome {
            Ok((seq, _duplicate)) => {
                self.ok += 1;
                self.ack
                    .record(answered_unix_us.saturating_sub(sent_unix_us));
                self.timeline.add(sent_unix_us, 1);
                if let Some(last) = self.last_seq.get_mut(room_index) {
                    *last = (*last).max(seq.get());
                }
            }
            Err(error) => {
                self.failed += 1;
                self.first_error.get_or_insert_with(|| error.to_string());
            }
        }
    }
}

fn duration_us(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}
