//! `fanout`: R rooms, a provider per room sending (paced, open-loop) at an
//! aggregate rate, K members per room (the patient and admins) receiving.
//!
//! Measures delivered messages per second, loss and gaps per member by
//! `seq`, delivery latency from the send time in each body, and, when the
//! hub's pids are known, hub CPU per delivered message and hub memory.
//! Room r's sender is on node r; its members on the nodes after it, round
//! robin, so with two nodes the patient (the first member) is always on the
//! other node and every message to it crosses the broker.
//!
//! With `--receipts` every member acknowledges what it receives as the
//! patient app does: a `delivered` receipt for each message and a `read`
//! one for every [`READ_EVERY`]th; the run then reports the receipts sent,
//! answered and refused, and what the hub counted for them (receipts
//! recorded, receipt flushes, message writer commits), read
//! from its `/metrics` before and after.
//!
//! The harness shares the machine with the hub, so members cost it as
//! little as it can: each is a [`RawConnection`] read by one task, which
//! decodes the frame and counts it with nothing queued between the socket
//! and the counts, and keeps its own counts, merged at the end; latencies
//! go into one shared histogram a batch at a time. Providers use the typed
//! client, which the pacer drives.

use super::{HubUsage, HubWatch, per, run_tag};
use crate::api::{Api, NewConsultation, TokenRequest};
use crate::disk_probe::{DiskProbe, SlowSync};
use crate::pacer::{self, PaceOptions, SendStats};
use crate::payload;
use crate::procstat::MachineTimes;
use crate::progress;
use crate::raw::{self, Inbound, RawConnection, loopback_sources};
use crate::report::{self, Plot, latency_line};
use crate::stats::{
    LatencyBatch, LatencyRecorder, LatencySummary, SeqTracker, Timeline, unix_micros,
};
use crate::target::Target;
use anyhow::{Context, Result};
use consult_client::{Client, ClientConfig};
use consult_protocol::{ConsultationId, ReceiptKind, Role};
use futures_util::{StreamExt, stream};
use serde::Serialize;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Connections opened at once while setting up.
const CONNECT_CONCURRENCY: usize = 64;
/// Events a provider's client buffers before it gives up (its own copies,
/// when it joined): far more than the hub's own per-connection queue, so
/// the hub's limit is the one measured.
const SENDER_EVENTS_CAPACITY: usize = 1 << 16;
/// Members per 127.0.0.x source address towards a hub on the loopback: well
/// under the ~28,000 ephemeral ports each address has.
const MEMBERS_PER_SOURCE: usize = 10_000;
/// Wait after a failed connection try, times the tries so far.
const RETRY_BACKOFF: Duration = Duration::from_millis(250);
/// With receipts, every this many messages (by `seq`) also get a `read`.
pub const READ_EVERY: u64 = 4;
/// How long one read of a hub's `/metrics` may take.
const METRICS_TIMEOUT: Duration = Duration::from_secs(5);

/// Parameters of a fanout run.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutOptions {
    /// Rooms (consultations), one sending provider each.
    pub rooms: usize,
    /// Receiving members per room (1 patient, the rest admins).
    pub members: usize,
    /// Messages sent per second, all rooms together.
    pub rate: f64,
    /// Messages sent in total.
    pub messages: u64,
    /// Body length in bytes.
    pub body_bytes: usize,
    /// Sends awaiting their answer at once, at most.
    pub max_in_flight: usize,
    /// How long members may take, after the last answer, to receive all.
    pub drain_timeout_secs: u64,
    /// Whether each provider joins its room before sending, as the console
    /// does (the hub then skips the per-send membership lookup, and sends
    /// the provider its own copy, which is read and not counted).
    pub senders_join: bool,
    /// Whether the patient sends and the provider receives (the first
    /// member), instead of the other way round.
    pub patients_send: bool,
    /// Tries each connection (a member's connect and join, a provider's
    /// connect and join) gets before the run fails, a little apart; every
    /// failed try is counted. 1: the first failure ends the run.
    pub connect_attempts: u32,
    /// Members acknowledge each message received (`delivered`, and `read`
    /// for every [`READ_EVERY`]th), as the patient app does.
    pub receipts: bool,
}

/// The receipts members sent and how the hub answered them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReceiptStats {
    /// `ack` commands sent.
    pub sent: u64,
    /// Answered `ok`.
    pub ok: u64,
    /// Answered with an error.
    pub refused: u64,
    /// The first error.
    pub first_refusal: Option<String>,
    /// What the hubs counted over the run (their `/metrics`, all nodes).
    pub hub: HubReceiptCounts,
    /// Receipt write transactions per receipt answered `ok`, when the hubs
    /// count them.
    pub writes_per_receipt: Option<f64>,
}

/// Counters read from the hubs' `/metrics` before and after the run: each
/// the growth over the run, `None` when a hub does not export it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HubReceiptCounts {
    /// `consult_receipts_total`.
    pub receipts_recorded: Option<u64>,
    /// `consult_receipt_flushes_total`: receipt flushes committed.
    pub receipt_flushes: Option<u64>,
    /// `consult_sqlite_commit_seconds_count`: the SQLite message writer's
    /// commits.
    pub message_commits: Option<u64>,
}

/// The counters of [`HubReceiptCounts`] at one moment, summed over nodes.
#[derive(Debug, Clone, Copy, Default)]
struct HubCountsAt {
    receipts_recorded: Option<f64>,
    receipt_flushes: Option<f64>,
    message_commits: Option<f64>,
}

/// What a fanout run measured.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutResult {
    /// The parameters.
    pub options: FanoutOptions,
    /// Hub nodes used.
    pub nodes: usize,
    /// The senders' side.
    pub sent: SendStats,
    /// Deliveries the acknowledged sends call for (sum over members).
    pub expected: u64,
    /// Messages members received in `seq` order.
    pub delivered: u64,
    /// Messages members never received.
    pub lost: u64,
    /// Jumps in `seq` seen by members.
    pub gaps: u64,
    /// Messages received twice or out of order.
    pub stale: u64,
    /// Members that lost at least one message.
    pub members_with_loss: u64,
    /// Members whose connection closed during the run, with why (first 10).
    pub closed_members: Vec<String>,
    /// Connection tries (members' and providers') that failed, each tried
    /// again while [`FanoutOptions::connect_attempts`] allowed.
    pub connect_failures: u64,
    /// The first of those failures.
    pub first_connect_error: Option<String>,
    /// Receipts, when members sent them.
    pub receipts: Option<ReceiptStats>,
    /// Delivered messages per second, first send to last delivery.
    pub delivered_per_sec: f64,
    /// Median of the per-second delivery counts, without the first and last.
    pub delivered_per_sec_steady: f64,
    /// Delivery latency: send time in the body to receipt by the member.
    pub latency: LatencySummary,
    /// The hub's CPU and memory over the sending and draining.
    pub hub: Option<HubUsage>,
    /// Hub CPU per delivered message, µs.
    pub hub_cpu_us_per_delivered: Option<f64>,
    /// Hub CPU per sent (acknowledged) message, µs.
    pub hub_cpu_us_per_sent: Option<f64>,
    /// This harness process's own CPU over the same window, percent of one
    /// core: on a small machine it competes with the hub.
    pub harness_cpu_percent_of_core: Option<f64>,
    /// CPU of the Redis server started for the run, percent of one core.
    pub redis_cpu_percent_of_core: Option<f64>,
    /// CPU used by the whole machine over the window, percent of one core:
    /// what exceeds hub + harness + Redis was someone else's.
    pub machine_cpu_percent_of_core: Option<f64>,
    /// The disk's own sync latency over the same window, probed beside the
    /// SQLite file of a hub the harness started, or in a started hub's
    /// folder with another database ([`DiskProbe`]).
    pub disk_sync: Option<LatencySummary>,
    /// The probe's syncs that took [`LATE_AFTER_US`] or more, with when they
    /// began: the moments the disk itself stood still, to set beside
    /// `late_timeline`.
    #[serde(default)]
    pub disk_sync_slow: Vec<SlowSync>,
    /// Deliveries per second over the run.
    pub delivered_timeline: Timeline,
    /// Deliveries later than [`LATE_AFTER_US`], by when they were sent, in
    /// [`LATE_BUCKET_MS`] buckets: whether the tail is spread over the run
    /// or comes in stalls, and when.
    #[serde(default)]
    pub late_timeline: Timeline,
    /// The latency distribution, for plots.
    #[serde(skip)]
    pub latency_recorder: LatencyRecorder,
}

/// A delivery this late (microseconds) counts in `late_timeline`.
pub const LATE_AFTER_US: u64 = 20_000;
/// Width of `late_timeline`'s buckets, milliseconds.
pub const LATE_BUCKET_MS: u64 = 100;

/// Slow disk syncs listed by name in the summary at most.
const SLOW_SYNCS_LISTED: usize = 10;

/// The probe's slow syncs as a summary line: when each began (seconds after
/// sending started, as `late_timeline` counts) and how long it took.
fn slow_syncs_line(slow: &[SlowSync], started_unix_us: u64) -> String {
    let listed: Vec<String> = slow
        .iter()
        .take(SLOW_SYNCS_LISTED)
        .map(|sync| {
            // Signed: the probe starts a moment before the sending does.
            let at_secs = (i128::from(sync.at_unix_us) - i128::from(started_unix_us)) as f64 / 1e6;
            format!("{at_secs:.1} s ({:.0} ms)", sync.took_us as f64 / 1e3)
        })
        .collect();
    let more = slow.len().saturating_sub(SLOW_SYNCS_LISTED);
    format!(
        "disk syncs of {} ms or more: {}{}{}",
        LATE_AFTER_US / 1000,
        slow.len(),
        if listed.is_empty() {
            String::new()
        } else {
            format!(", at {}", listed.join(", "))
        },
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        },
    )
}

/// One receiving member.
struct Member {
    connection: RawConnection,
    room: usize,
    room_id: ConsultationId,
    start_seq: u64,
}

/// Runs the scenario.
///
/// # Errors
///
/// When setup fails (REST calls, connecting, joining); problems during the
/// run are counted instead.
pub async fn run(target: &Target, options: &FanoutOptions, quiet: bool) -> Result<FanoutResult> {
    let api = Api::new(&target.nodes[0].http_base, &target.api_key);
    let tag = run_tag();
    let clinic = format!("load-fanout-{tag}");
    let (rooms, sender_tokens, member_tokens) = setup(&api, &clinic, &tag, options, quiet).await?;
    let failures = ConnectFailures::default();
    let members = connect_members(target, &rooms, member_tokens, options, &failures).await?;
    let senders = connect_senders(target, &rooms, sender_tokens, options, &failures).await?;

    let http = reqwest::Client::new();
    let counts_before = if options.receipts {
        Some(hub_counts(&http, target).await)
    } else {
        None
    };
    let watch = HubWatch::start(&target.hub_pids)?;
    let harness_watch = HubWatch::start(&[std::process::id()])?;
    let broker_watch = HubWatch::start(&target.broker_pids())?;
    let disk_probe = target
        .disk_probe_folder()
        .map(|folder| DiskProbe::start(folder, LATE_AFTER_US))
        .transpose()?;
    let machine_start = MachineTimes::now()?;
    let started_unix_us = unix_micros();
    let latency = Arc::new(Mutex::new(LatencyRecorder::new()));
    let (final_tx, final_rx) = watch::channel(None);
    let drain = Duration::from_secs(options.drain_timeout_secs);
    let receivers: Vec<_> = members
        .into_iter()
        .map(|member| {
            let latency = LatencyBatch::new(latency.clone());
            tokio::spawn(receive(
                member,
                latency,
                final_rx.clone(),
                started_unix_us,
                drain,
                options.receipts,
            ))
        })
        .collect();

    let bar = progress::bar(options.messages, "sending", quiet);
    let pace = PaceOptions {
        rate: options.rate,
        limit: Some(options.messages),
        body_bytes: options.body_bytes,
        max_in_flight: options.max_in_flight,
    };
    let sent = pacer::run(&senders, &pace, &CancellationToken::new(), &bar).await;
    bar.finish_and_clear();
    final_tx.send_replace(Some(Arc::new(sent.last_seq.clone())));
    for sender in &senders {
        sender.client.close().await;
    }

    let mut outcomes = Vec::with_capacity(receivers.len());
    for receiver in receivers {
        outcomes.push(receiver.await.context("a member task failed")?);
    }
    let hub = watch.finish().await?;
    let harness = harness_watch.finish().await?;
    let broker = broker_watch.finish().await?;
    let machine = MachineTimes::now()?.busy_percent_of_core_since(&machine_start);
    let disk_sync = disk_probe.map(DiskProbe::finish).transpose()?;
    let latency_recorder = latency
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut result = summarize(
        options,
        target.nodes.len(),
        sent,
        &outcomes,
        hub,
        latency_recorder,
        started_unix_us,
    );
    (result.connect_failures, result.first_connect_error) = failures.take();
    result.harness_cpu_percent_of_core = harness.map(|usage| usage.cpu_percent_of_core);
    result.redis_cpu_percent_of_core = broker.map(|usage| usage.cpu_percent_of_core);
    result.machine_cpu_percent_of_core = Some(machine);
    if let Some(syncs) = disk_sync {
        result.disk_sync = Some(syncs.summary);
        result.disk_sync_slow = syncs.slow;
    }
    if let Some(before) = counts_before {
        let after = hub_counts(&http, target).await;
        let mut receipts = ReceiptStats::default();
        for outcome in &outcomes {
            receipts.sent += outcome.receipts.sent;
            receipts.ok += outcome.receipts.ok;
            receipts.refused += outcome.receipts.refused;
            if receipts.first_refusal.is_none() {
                receipts
                    .first_refusal
                    .clone_from(&outcome.receipts.first_refusal);
            }
        }
        let grown = |before: Option<f64>, after: Option<f64>| {
            Some((after? - before.unwrap_or(0.0)).max(0.0).round() as u64)
        };
        receipts.hub = HubReceiptCounts {
            receipts_recorded: grown(before.receipts_recorded, after.receipts_recorded),
            receipt_flushes: grown(before.receipt_flushes, after.receipt_flushes),
            message_commits: grown(before.message_commits, after.message_commits),
        };
        receipts.writes_per_receipt = receipts
            .hub
            .receipt_flushes
            .and_then(|flushes| per(flushes as f64, receipts.ok));
        result.receipts = Some(receipts);
    }
    Ok(result)
}

/// The receipt counters of every node now; a node that cannot be read, or
/// does not export a counter, adds nothing to it.
async fn hub_counts(http: &reqwest::Client, target: &Target) -> HubCountsAt {
    let mut counts = HubCountsAt::default();
    for node in &target.nodes {
        let url = format!("{}/metrics", node.http_base.trim_end_matches('/'));
        let text = match http.get(&url).timeout(METRICS_TIMEOUT).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(error) => {
                tracing::warn!(%url, %error, "cannot read the hub's metrics");
                continue;
            }
        };
        let add = |total: &mut Option<f64>, name: &str| {
            if let Some(value) = sample(&text, name) {
                *total = Some(total.unwrap_or(0.0) + value);
            }
        };
        add(&mut counts.receipts_recorded, "consult_receipts_total");
        add(&mut counts.receipt_flushes, "consult_receipt_flushes_total");
        add(
            &mut counts.message_commits,
            "consult_sqlite_commit_seconds_count",
        );
    }
    counts
}

/// The value of the unlabelled sample `name` in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

type Setup = (Vec<ConsultationId>, Vec<String>, Vec<String>);

async fn setup(
    api: &Api,
    clinic: &str,
    tag: &str,
    options: &FanoutOptions,
    quiet: bool,
) -> Result<Setup> {
    let specs: Vec<NewConsultation> = (0..options.rooms)
        .map(|r| NewConsultation {
            clinic: clinic.to_owned(),
            provider: format!("fan-{tag}-prov-{r}"),
            patient: format!("fan-{tag}-pat-{r}"),
        })
        .collect();
    let bar = progress::bar(specs.len() as u64, "rooms", quiet);
    let rooms = api.create_consultations(&specs, || bar.inc(1)).await?;
    bar.finish_and_clear();
    let token = |user: String, role| TokenRequest {
        user,
        role,
        clinic: clinic.to_owned(),
    };
    // The sender and the first member: provider and patient, or the other
    // way round when patients send.
    let pair = |spec: &NewConsultation| {
        let provider = (spec.provider.clone(), Role::Provider);
        let patient = (spec.patient.clone(), Role::Patient);
        if options.patients_send {
            (patient, provider)
        } else {
            (provider, patient)
        }
    };
    let senders: Vec<TokenRequest> = specs
        .iter()
        .map(|spec| {
            let ((user, role), _) = pair(spec);
            token(user, role)
        })
        .collect();
    let members: Vec<TokenRequest> = specs
        .iter()
        .enumerate()
        .flat_map(|(r, spec)| {
            let (_, first) = pair(spec);
            (0..options.members).map(move |k| match k {
                0 => first.clone(),
                _ => (format!("fan-{tag}-adm-{r}-{k}"), Role::Admin),
            })
        })
        .map(|(user, role)| token(user, role))
        .collect();
    let all: Vec<TokenRequest> = senders.iter().chain(&members).cloned().collect();
    let bar = progress::bar(all.len() as u64, "tokens", quiet);
    let mut tokens = api.issue_tokens(&all, || bar.inc(1)).await?;
    bar.finish_and_clear();
    let member_tokens = tokens.split_off(senders.len());
    Ok((rooms, tokens, member_tokens))
}

/// Failed connection tries, counted across members and providers.
#[derive(Debug, Default)]
struct ConnectFailures(Mutex<(u64, Option<String>)>);

impl ConnectFailures {
    fn record(&self, error: &anyhow::Error) {
        let mut failures = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        failures.0 += 1;
        failures.1.get_or_insert_with(|| format!("{error:#}"));
    }

    fn take(&self) -> (u64, Option<String>) {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Runs `attempt` up to `attempts` times (at least once) until it succeeds,
/// waiting a little longer after each failure, and counts the failures.
async fn retrying<T, F, Fut>(attempts: u32, failures: &ConnectFailures, attempt: F) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut tried = 0;
    loop {
        tried += 1;
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => {
                failures.record(&error);
                if tried >= attempts.max(1) {
                    return Err(error);
                }
                tokio::time::sleep(RETRY_BACKOFF * tried).await;
            }
        }
    }
}

async fn connect_members(
    target: &Target,
    rooms: &[ConsultationId],
    tokens: Vec<String>,
    options: &FanoutOptions,
    failures: &ConnectFailures,
) -> Result<Vec<Member>> {
    let per_room = options.members.max(1);
    let loopback = loopback_sources(tokens.len().div_ceil(MEMBERS_PER_SOURCE));
    let joins = tokens.into_iter().enumerate().map(|(index, token)| {
        let room = index / per_room;
        // The room's sender is on node `room`; its first member (the
        // patient) on the next one, so with two nodes every message to the
        // patient crosses the broker.
        let url = target.node_for(room + 1 + index % per_room).ws_url.clone();
        let room_id = rooms[room].clone();
        let source = member_source(&url, index, &loopback);
        async move {
            let source = source?;
            let (url, token, room_id) = (&url, &token, &room_id);
            retrying(options.connect_attempts, failures, || async move {
                let mut connection = RawConnection::connect(url, source, token)
                    .await
                    .with_context(|| format!("member {index} connecting to {url} from {source}"))?;
                connection
                    .send_join(room_id, None)
                    .await
                    .with_context(|| format!("member {index} joining"))?;
                // Nothing is sent before every member has joined, and nothing
                // is replayed without `since`.
                let (start_seq, _replayed) = connection
                    .joined(|_| {})
                    .await
                    .with_context(|| format!("member {index} joining"))?;
                Ok::<_, anyhow::Error>(Member {
                    connection,
                    room,
                    room_id: room_id.clone(),
                    start_seq,
                })
            })
            .await
        }
    });
    stream::iter(joins)
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// The address member `index` connects from: towards a hub on the
/// loopback one of `loopback` (127.0.0.2 up), as the fleet scenarios do,
/// each with its own ephemeral ports; towards any other, the wildcard
/// address, the kernel choosing.
///
/// # Errors
///
/// When `ws_url`'s host is not an IP address.
fn member_source(ws_url: &str, index: usize, loopback: &[Ipv4Addr]) -> Result<Ipv4Addr> {
    let hub = raw::socket_addr(ws_url)?;
    Ok(
        match (hub.ip(), loopback.get(index % loopback.len().max(1))) {
            (IpAddr::V4(ip), Some(&source)) if ip.is_loopback() => source,
            _ => Ipv4Addr::UNSPECIFIED,
        },
    )
}

async fn connect_senders(
    target: &Target,
    rooms: &[ConsultationId],
    tokens: Vec<String>,
    options: &FanoutOptions,
    failures: &ConnectFailures,
) -> Result<Vec<pacer::Target>> {
    let config = ClientConfig {
        request_timeout: Duration::from_secs(30),
        commands_capacity: 1024,
        events_capacity: SENDER_EVENTS_CAPACITY,
        ..ClientConfig::default()
    };
    let join = options.senders_join;
    let connects = tokens.into_iter().enumerate().map(|(r, token)| {
        let url = target.node_for(r).ws_url.clone();
        let config = &config;
        let room = rooms[r].clone();
        async move {
            let (url, token, room_ref) = (&url, &token, &room);
            let client = retrying(options.connect_attempts, failures, || async move {
                let (client, _welcome) = Client::connect_with(url, token, config.clone())
                    .await
                    .with_context(|| format!("provider {r} connecting to {url}"))?;
                if join {
                    client
                        .join(room_ref, None)
                        .await
                        .with_context(|| format!("provider {r} joining"))?;
                }
                Ok::<_, anyhow::Error>(client)
            })
            .await?;
            let client = Arc::new(client);
            if join {
                // Its own copies: read and dropped; the task ends when the
                // connection is closed after sending.
                let echoes = client.clone();
                tokio::spawn(async move { while echoes.next_event().await.is_some() {} });
            }
            Ok::<_, anyhow::Error>(pacer::Target { client, room })
        }
    });
    stream::iter(connects)
        .buffered(CONNECT_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// What one member saw.
struct MemberOutcome {
    room: usize,
    start_seq: u64,
    last_delivery_unix_us: u64,
    tracker: SeqTracker,
    timeline: Timeline,
    late: Timeline,
    closed: Option<String>,
    receipts: MemberReceipts,
}

/// One member's receipts.
#[derive(Debug, Default)]
struct MemberReceipts {
    sent: u64,
    ok: u64,
    refused: u64,
    first_refusal: Option<String>,
}

impl MemberReceipts {
    fn unanswered(&self) -> u64 {
        self.sent.saturating_sub(self.ok + self.refused)
    }
}

/// Reads a member's frames until it has its room's final `seq` (and, with
/// `receipts`, every receipt it sent is answered), its connection ends, or
/// the drain time after the final `seq` is known runs out; then closes the
/// connection. With `receipts` it acknowledges each message as it arrives.
async fn receive(
    mut member: Member,
    mut latency: LatencyBatch,
    mut final_rx: watch::Receiver<Option<Arc<Vec<u64>>>>,
    started_unix_us: u64,
    drain: Duration,
    receipts: bool,
) -> MemberOutcome {
    let mut tracker = SeqTracker::starting_at(member.start_seq);
    let mut timeline = Timeline::new(started_unix_us, 1000);
    let mut late = Timeline::new(started_unix_us, LATE_BUCKET_MS);
    let mut closed = None;
    let mut deadline = None;
    let mut last_delivery_unix_us = 0;
    let mut acks = MemberReceipts::default();
    loop {
        let target = final_rx
            .borrow()
            .as_ref()
            .and_then(|seqs| seqs.get(member.room).copied());
        if let Some(target) = target {
            if tracker.last >= target && acks.unanswered() == 0 {
                break;
            }
            deadline.get_or_insert_with(|| tokio::time::Instant::now() + drain);
        }
        let sleep_until = deadline.unwrap_or_else(far_future);
        // All branch futures are cancel-safe: `RawConnection::next` loses
        // no frame when dropped (at worst a pong waits for the next read).
        tokio::select! {
            inbound = member.connection.next() => match inbound {
                Inbound::Message { seq, body, .. } => {
                    let now = unix_micros();
                    tracker.observe(seq);
                    timeline.add(now, 1);
                    last_delivery_unix_us = now;
                    if let Some(sent) = payload::sent_at(&body) {
                        latency.record(now.saturating_sub(sent));
                        if now.saturating_sub(sent) > LATE_AFTER_US {
                            late.add(sent, 1);
                        }
                    }
                    if receipts {
                        if let Err(error) = acknowledge(&mut member, seq, &mut acks).await {
                            closed = Some(format!("{error:#}"));
                            break;
                        }
                    }
                }
                Inbound::Answered => acks.ok += 1,
                Inbound::Refused { why, .. } => {
                    acks.refused += 1;
                    acks.first_refusal.get_or_insert(why);
                }
                Inbound::Closed(why) => {
                    closed = Some(why);
                    break;
                }
                Inbound::Joined { .. }
                | Inbound::Sent { .. }
                | Inbound::Watching
                | Inbound::Dashboard
                | Inbound::Other => {}
            },
            changed = final_rx.changed(), if deadline.is_none() => {
                if changed.is_err() {
                    break;
                }
            }
            () = tokio::time::sleep_until(sleep_until), if deadline.is_some() => break,
        }
    }
    latency.flush();
    member.connection.close().await;
    MemberOutcome {
        room: member.room,
        start_seq: member.start_seq,
        last_delivery_unix_us,
        tracker,
        timeline,
        late,
        closed,
        receipts: acks,
    }
}

/// Sends the receipts for message `seq`: `delivered`, and `read` for every
/// [`READ_EVERY`]th.
async fn acknowledge(member: &mut Member, seq: u64, acks: &mut MemberReceipts) -> Result<()> {
    member
        .connection
        .send_ack(&member.room_id, seq, ReceiptKind::Delivered)
        .await?;
    acks.sent += 1;
    if seq % READ_EVERY == 0 {
        member
            .connection
            .send_ack(&member.room_id, seq, ReceiptKind::Read)
            .await?;
        acks.sent += 1;
    }
    Ok(())
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400)
}

fn summarize(
    options: &FanoutOptions,
    nodes: usize,
    sent: SendStats,
    outcomes: &[MemberOutcome],
    hub: Option<HubUsage>,
    latency_recorder: LatencyRecorder,
    started_unix_us: u64,
) -> FanoutResult {
    let mut delivered_timeline = Timeline::new(started_unix_us, 1000);
    let mut late_timeline = Timeline::new(started_unix_us, LATE_BUCKET_MS);
    let (mut expected, mut delivered, mut lost, mut gaps, mut stale, mut with_loss) =
        (0, 0, 0, 0, 0, 0);
    let mut last_delivery_unix_us = started_unix_us;
    let mut closed_members = Vec::new();
    for outcome in outcomes {
        let final_seq = sent.last_seq.get(outcome.room).copied().unwrap_or(0);
        let missed = outcome.tracker.missed(final_seq);
        expected += final_seq.saturating_sub(outcome.start_seq);
        delivered += outcome.tracker.in_order;
        lost += missed;
        gaps += outcome.tracker.gaps;
        stale += outcome.tracker.stale;
        with_loss += u64::from(missed > 0);
        last_delivery_unix_us = last_delivery_unix_us.max(outcome.last_delivery_unix_us);
        delivered_timeline.merge(&outcome.timeline);
        late_timeline.merge(&outcome.late);
        if closed_members.len() < 10 {
            closed_members.extend(outcome.closed.clone());
        }
    }
    let window_secs = last_delivery_unix_us.saturating_sub(started_unix_us) as f64 / 1e6;
    let cpu = hub.as_ref().map(|usage| usage.cpu_us as f64);
    FanoutResult {
        options: options.clone(),
        nodes,
        expected,
        delivered,
        lost,
        gaps,
        stale,
        members_with_loss: with_loss,
        closed_members,
        connect_failures: 0,
        first_connect_error: None,
        delivered_per_sec: delivered as f64 / window_secs.max(1e-3),
        delivered_per_sec_steady: delivered_timeline.steady_rate(),
        receipts: None,
        latency: latency_recorder.summary(),
        hub_cpu_us_per_delivered: cpu.and_then(|cpu| per(cpu, delivered)),
        hub_cpu_us_per_sent: cpu.and_then(|cpu| per(cpu, sent.ok)),
        harness_cpu_percent_of_core: None,
        redis_cpu_percent_of_core: None,
        machine_cpu_percent_of_core: None,
        disk_sync: None,
        disk_sync_slow: Vec::new(),
        hub,
        sent,
        delivered_timeline,
        late_timeline,
        latency_recorder,
    }
}

impl FanoutResult {
    /// One line per key figure, for the console and the report.
    pub fn summary_lines(&self) -> Vec<String> {
        let o = &self.options;
        let mut lines = vec![
            format!(
                "{} rooms x {} members on {} node(s){}{}; {} messages offered at {}/s, {} ok, {} failed{}",
                o.rooms,
                o.members,
                self.nodes,
                match (o.senders_join, o.patients_send) {
                    (true, false) => ", providers send (joined)",
                    (false, false) => ", providers send (not joined)",
                    (true, true) => ", patients send (joined)",
                    (false, true) => ", patients send (not joined)",
                },
                if o.receipts {
                    ", members acknowledge"
                } else {
                    ""
                },
                self.sent.issued,
                o.rate,
                self.sent.ok,
                self.sent.failed,
                self.sent
                    .first_error
                    .as_ref()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default()
            ),
            format!(
                "delivered {} of {} expected: lost {}, gaps {}, stale {}, members with loss {}",
                self.delivered,
                self.expected,
                self.lost,
                self.gaps,
                self.stale,
                self.members_with_loss
            ),
            format!(
                "delivered/s {:.0} overall, {:.0} steady (median second); sends ok/s {:.0}",
                self.delivered_per_sec, self.delivered_per_sec_steady, self.sent.ok_per_sec
            ),
            latency_line("delivery latency", &self.latency),
            latency_line("send->ok latency", &self.sent.ack_latency),
            latency_line("pacing lag", &self.sent.pacing_lag),
        ];
        if let Some(disk_sync) = &self.disk_sync {
            lines.push(latency_line(
                "disk sync in the hub's folder (4 KiB + fdatasync every 10 ms)",
                disk_sync,
            ));
            lines.push(slow_syncs_line(
                &self.disk_sync_slow,
                self.late_timeline.start_unix_us,
            ));
        }
        if let Some(receipts) = &self.receipts {
            let count =
                |value: Option<u64>| value.map_or_else(|| "-".to_owned(), |v| v.to_string());
            lines.push(format!(
                "receipts sent {}, ok {}, refused {}{}; hub: {} recorded, {} receipt flushes ({} per receipt), {} message writer commits",
                receipts.sent,
                receipts.ok,
                receipts.refused,
                receipts
                    .first_refusal
                    .as_ref()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default(),
                count(receipts.hub.receipts_recorded),
                count(receipts.hub.receipt_flushes),
                receipts
                    .writes_per_receipt
                    .map_or_else(|| "-".to_owned(), |w| format!("{w:.3}")),
                count(receipts.hub.message_commits),
            ));
        }
        if let Some(hub) = &self.hub {
            lines.push(format!(
                "hub CPU {:.1} us/delivered, {:.1} us/sent, {:.0}% of one core; RSS {} -> {} KiB (peak {})",
                self.hub_cpu_us_per_delivered.unwrap_or(0.0),
                self.hub_cpu_us_per_sent.unwrap_or(0.0),
                hub.cpu_percent_of_core,
                hub.start.rss_kib,
                hub.end.rss_kib,
                hub.end.rss_peak_kib
            ));
        }
        if let Some(harness) = self.harness_cpu_percent_of_core {
            lines.push(format!("harness CPU {harness:.0}% of one core"));
        }
        if let Some(redis) = self.redis_cpu_percent_of_core {
            lines.push(format!("redis-server CPU {redis:.0}% of one core"));
        }
        if let Some(machine) = self.machine_cpu_percent_of_core {
            lines.push(format!(
                "whole machine CPU {machine:.0}% of one core (other processes included)"
            ));
        }
        if !self.closed_members.is_empty() {
            lines.push(format!("closed members: {:?}", self.closed_members));
        }
        if self.connect_failures > 0 {
            lines.push(format!(
                "connection tries failed and retried: {} (first: {})",
                self.connect_failures,
                self.first_connect_error.as_deref().unwrap_or("-")
            ));
        }
        lines
    }

    /// Latency distribution, throughput over time and hub resources.
    pub fn plots(&self) -> Vec<Plot> {
        let mut plots = vec![
            Plot {
                name: "latency",
                chart: report::latency_chart(
                    "fanout: latency by percentile",
                    &[
                        ("delivery (send -> member)", &self.latency_recorder),
                        ("send -> ok", &self.sent.ack_recorder),
                    ],
                ),
            },
            Plot {
                name: "throughput",
                chart: report::rate_chart(
                    "fanout: messages per second",
                    "messages/s",
                    &[
                        ("sent (acknowledged)", &self.sent.timeline),
                        ("delivered", &self.delivered_timeline),
                    ],
                ),
            },
        ];
        if let Some(hub) = &self.hub {
            plots.push(Plot {
                name: "hub",
                chart: report::resources_chart("fanout: hub CPU and memory", &hub.samples),
            });
        }
        plots
    }
}

#[cfg(test)]
mod tests;
