//! `abuse`: the honest 1:1 chat load (a `fanout` run) measured alone and
//! again beside attackers, in interleaved rounds, so that what an attack
//! costs honest users is read from pairs taken minutes apart.
//!
//! The attackers, each kind sized by its own option (0 turns it off):
//! - handshake floods: WebSocket upgrades opened at a rate that never say
//!   `hello`; most send nothing (the hub closes them with 4000 after its
//!   handshake timeout), every [`CHATTY_EVERY`]th sends commands instead
//!   (the hub closes it with 4001 at the eleventh frame);
//! - half-open HTTP: connections that send part of a request header and
//!   stall (closed after `http.header_read_timeout_secs`);
//! - slow readers: patients joined to a room their provider fills, reading
//!   nothing, with a small TCP receive buffer; each pings now and then
//!   without reading, so that a failed write tells it the hub dropped it
//!   (4003, or a write timeout), and then connects again;
//! - device floods: patients registering push devices as fast as the hub
//!   answers over several connections each (past the per-user connection
//!   cap: 4007), refused once over the registration limit, closed with 4004
//!   after too many refusals in a row; they reconnect and go on.
//!
//! Per phase the report gives the honest run's delivery latency, loss,
//! failed connection tries and hub CPU, and the hub's own counts of what it
//! refused and closed (from `/metrics`, before and after); per round what
//! the attackers held and met: HTTP refusals by status and code, close
//! codes, answers by code.

use super::fanout::{self, FanoutOptions, FanoutResult};
use super::run_tag;
use crate::api::{Api, NewConsultation, TokenRequest};
use crate::hub_metrics::{self, CONNECTION_GAUGES, REFUSAL_COUNTERS, Reading};
use crate::target::{Node, Target};
use anyhow::{Result, bail};
use consult_protocol::Role;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_util::sync::CancellationToken;

/// The most handshake-flood connections held open at once.
const MAX_FLOOD_OPEN: usize = 4000;
/// Every this many flood connections one sends commands before `hello`
/// instead of nothing.
pub const CHATTY_EVERY: u64 = 4;
/// Commands a chatty flood connection sends: one more than the hub takes
/// before `hello`.
const CHATTY_FRAMES: u64 = 11;
/// Receive buffer of a slow reader's socket (the kernel doubles it).
const SLOW_READER_RCVBUF: u32 = 4096;
/// Body of the messages slow readers are sent: near the 4,000-character
/// limit, so their buffers fill fast.
const SLOW_READER_BODY: usize = 3900;
/// How often a slow reader writes a ping to learn whether it was dropped.
const SLOW_READER_PROBE: Duration = Duration::from_secs(1);
/// Wait before an attacker connects again after a refusal or a close.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);
/// How long an attacker waits for the hub's answer or close at the end.
const FINAL_READ: Duration = Duration::from_secs(3);
/// Pause after the attackers stop, so the hub has let go of them before the
/// next phase.
const SETTLE: Duration = Duration::from_secs(2);
/// How often the hub's connection gauges are read during a phase.
const GAUGE_EVERY: Duration = Duration::from_secs(1);
/// Tries each honest connection gets (failed ones are counted).
pub const HONEST_CONNECT_ATTEMPTS: u32 = 5;

/// The hub's default command rate limit, restored for a started hub (the
/// harness otherwise raises it out of the way of its load).
pub const DEFAULT_LIMITS: &[(&str, &str)] = &[
    ("CONSULT_SESSION__RATE_LIMIT_PER_SEC", "20"),
    ("CONSULT_SESSION__RATE_LIMIT_BURST", "40"),
];

/// How big each attack is.
#[derive(Debug, Clone, Serialize)]
pub struct AbuseOptions {
    /// The honest load, run once per phase.
    pub honest: FanoutOptions,
    /// Rounds of (without, with) the attack.
    pub rounds: usize,
    /// Upgrades per second that never say `hello`.
    pub handshake_flood_per_sec: f64,
    /// Stalled half-sent HTTP requests held at once.
    pub half_open: usize,
    /// Patients that never read, each in a room its provider fills.
    pub slow_readers: usize,
    /// Messages per second sent to each slow reader's room.
    pub slow_reader_rate: f64,
    /// Patients registering devices without pause.
    pub device_floods: usize,
    /// Connections each of those patients registers over at once.
    pub device_flood_connections: usize,
}

/// Connections of one attacker kind open now, and the most at once.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Held {
    /// Open now.
    pub now: u64,
    /// The most open at once.
    pub peak: u64,
}

/// What the attackers held and met, by kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AttackTally {
    /// Upgrades opened by the handshake flood.
    pub flood_opened: u64,
    /// Flood connections held (upgraded, waiting to be closed).
    pub flood_held: Held,
    /// How those ended: `http <status> <code>`, `close <code>`, `reset`.
    pub flood_outcomes: BTreeMap<String, u64>,
    /// Half-sent requests opened.
    pub half_open_opened: u64,
    /// Half-sent requests the hub closed.
    pub half_open_closed: u64,
    /// Half-sent requests held.
    pub half_open_held: Held,
    /// Slow readers' connections that said `hello` and joined.
    pub slow_reader_joined: u64,
    /// Slow readers held.
    pub slow_reader_held: Held,
    /// Seconds each dropped slow reader had been connected when a write of
    /// its showed it was dropped.
    pub slow_reader_dropped_after_secs: Vec<f64>,
    /// How the slow readers' connections ended: `dropped: <how>` during the
    /// phase, `end: <how>` for those still connected when it ended.
    pub slow_reader_outcomes: BTreeMap<String, u64>,
    /// Device-flood connections held (after `welcome`).
    pub device_held: Held,
    /// `register_device` answers by kind (`ok` or the error code),
    /// `hello <code>` for a refused `hello`, and `close <code>` for the
    /// connections the hub closed.
    pub device_answers: BTreeMap<String, u64>,
}

/// One phase: the honest load, and what the hub counted meanwhile.
#[derive(Debug, Serialize)]
pub struct Phase {
    /// The honest load.
    pub honest: FanoutResult,
    /// How much each of the hub's refusal and close counters grew over the
    /// phase (from before the attackers started to the end of the honest
    /// run): `session_closes{code="4000"}`, `client_errors{code=…}`, …
    pub hub_counts: BTreeMap<String, u64>,
    /// The peak of the hub's connection gauges over the phase (read once a
    /// second).
    pub hub_peaks: BTreeMap<String, u64>,
}

/// One round: the honest load without and with the attack.
#[derive(Debug, Serialize)]
pub struct AbuseRound {
    /// Without the attack.
    pub calm: Phase,
    /// With it.
    pub attacked: Phase,
    /// What the attackers held and met.
    pub tally: AttackTally,
}

/// Every round.
#[derive(Debug, Serialize)]
pub struct AbuseResult {
    /// The options.
    pub options: AbuseOptions,
    /// The rounds, in order.
    pub rounds: Vec<AbuseRound>,
}

type Tally = Arc<Mutex<AttackTally>>;

fn count(tally: &Tally, update: impl FnOnce(&mut AttackTally)) {
    update(&mut tally.lock().unwrap_or_else(PoisonError::into_inner));
}

fn bump(map: &mut BTreeMap<String, u64>, key: String) {
    *map.entry(key).or_default() += 1;
}

/// Which [`Held`] of the tally a connection counts in.
type HeldField = fn(&mut AttackTally) -> &mut Held;

/// One open attacker connection, counted in its kind's [`Held`] until
/// dropped.
struct Holding {
    tally: Tally,
    field: HeldField,
}

impl Holding {
    fn new(tally: &Tally, field: HeldField) -> Self {
        count(tally, |t| {
            let held = field(t);
            held.now += 1;
            held.peak = held.peak.max(held.now);
        });
        Self {
            tally: tally.clone(),
            field,
        }
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        let field = self.field;
        count(&self.tally, |t| {
            let held = field(t);
            held.now = held.now.saturating_sub(1);
        });
    }
}

/// Runs the rounds.
///
/// # Errors
///
/// When the hub cannot be set up, its `/metrics` cannot be read, or a
/// fanout run fails.
pub async fn run(target: &Target, options: &AbuseOptions, quiet: bool) -> Result<AbuseResult> {
    let Some(node) = target.nodes.first() else {
        bail!("no hub node");
    };
    let api = Api::new(&node.http_base, &target.api_key);
    let http = reqwest::Client::new();
    let mut rounds = Vec::with_capacity(options.rounds);
    for round in 0..options.rounds.max(1) {
        if !quiet {
            eprintln!("round {}: without the attack", round + 1);
        }
        let before = hub_metrics::read(&http, &node.http_base).await?;
        let peaks = GaugePeaks::start(&http, &node.http_base);
        let calm = fanout::run(target, &options.honest, quiet).await?;
        let calm = Phase::finish(calm, &http, &node.http_base, &before, peaks).await?;

        if !quiet {
            eprintln!("round {}: with the attack", round + 1);
        }
        let tally = Tally::default();
        let stop = CancellationToken::new();
        let before = hub_metrics::read(&http, &node.http_base).await?;
        let peaks = GaugePeaks::start(&http, &node.http_base);
        let attackers = start_attackers(&api, node, options, &tally, &stop).await?;
        let attacked = fanout::run(target, &options.honest, quiet).await;
        let attacked = match attacked {
            Ok(honest) => Phase::finish(honest, &http, &node.http_base, &before, peaks).await,
            Err(error) => Err(error),
        };
        stop.cancel();
        for attacker in attackers {
            let _finished = attacker.await;
        }
        tokio::time::sleep(SETTLE).await;
        let tally = tally.lock().unwrap_or_else(PoisonError::into_inner).clone();
        rounds.push(AbuseRound {
            calm,
            attacked: attacked?,
            tally,
        });
    }
    Ok(AbuseResult {
        options: options.clone(),
        rounds,
    })
}

/// Reads the hub's connection gauges once a second and keeps their peaks.
struct GaugePeaks {
    stop: CancellationToken,
    task: JoinHandle<BTreeMap<String, u64>>,
}

impl GaugePeaks {
    fn start(http: &reqwest::Client, http_base: &str) -> Self {
        let stop = CancellationToken::new();
        let (http, base, until) = (http.clone(), http_base.to_owned(), stop.clone());
        let task = tokio::spawn(async move {
            let mut peaks = BTreeMap::new();
            let mut every = tokio::time::interval(GAUGE_EVERY);
            loop {
                tokio::select! {
                    () = until.cancelled() => break,
                    _ = every.tick() => {}
                }
                // A missed reading under load is skipped, not fatal.
                let Ok(reading) = hub_metrics::read(&http, &base).await else {
                    continue;
                };
                for gauge in CONNECTION_GAUGES {
                    let value = reading.total(gauge).max(0.0).round() as u64;
                    let peak = peaks.entry((*gauge).to_owned()).or_insert(0);
                    *peak = value.max(*peak);
                }
            }
            peaks
        });
        Self { stop, task }
    }

    async fn finish(self) -> BTreeMap<String, u64> {
        self.stop.cancel();
        self.task.await.unwrap_or_default()
    }
}

impl Phase {
    async fn finish(
        honest: FanoutResult,
        http: &reqwest::Client,
        http_base: &str,
        before: &Reading,
        peaks: GaugePeaks,
    ) -> Result<Self> {
        let after = hub_metrics::read(http, http_base).await?;
        Ok(Self {
            honest,
            hub_counts: after.grown_since(before, REFUSAL_COUNTERS),
            hub_peaks: peaks
                .finish()
                .await
                .into_iter()
                .map(|(gauge, peak)| (short_gauge(&gauge), peak))
                .collect(),
        })
    }
}

fn short_gauge(name: &str) -> String {
    name.strip_prefix("consult_").unwrap_or(name).to_owned()
}

async fn start_attackers(
    api: &Api,
    node: &Node,
    options: &AbuseOptions,
    tally: &Tally,
    stop: &CancellationToken,
) -> Result<Vec<JoinHandle<()>>> {
    let address = socket_address(node)?;
    let mut tasks = Vec::new();
    if options.handshake_flood_per_sec > 0.0 {
        tasks.push(tokio::spawn(handshake_flood(
            node.ws_url.clone(),
            options.handshake_flood_per_sec,
            tally.clone(),
            stop.clone(),
        )));
    }
    for _ in 0..options.half_open {
        tasks.push(tokio::spawn(half_open(
            address,
            tally.clone(),
            stop.clone(),
        )));
    }
    let tag = run_tag();
    let clinic = format!("abuse-{tag}");
    if options.slow_readers > 0 {
        let specs: Vec<NewConsultation> = (0..options.slow_readers)
            .map(|i| NewConsultation {
                clinic: clinic.clone(),
                provider: format!("abuse-{tag}-dr-{i}"),
                patient: format!("abuse-{tag}-slow-{i}"),
            })
            .collect();
        let rooms = api.create_consultations(&specs, || {}).await?;
        for (spec, room) in specs.iter().zip(rooms) {
            let patient = token(api, &spec.patient, Role::Patient, &clinic).await?;
            let provider = token(api, &spec.provider, Role::Provider, &clinic).await?;
            let room = room.to_string();
            tasks.push(tokio::spawn(fill_room(
                node.ws_url.clone(),
                room.clone(),
                provider,
                options.slow_reader_rate,
                stop.clone(),
            )));
            tasks.push(tokio::spawn(slow_reader(
                address,
                node.ws_url.clone(),
                room,
                patient,
                tally.clone(),
                stop.clone(),
            )));
        }
    }
    for i in 0..options.device_floods {
        let patient = format!("abuse-{tag}-devices-{i}");
        // A patient exists once it is part of a consultation.
        api.create_consultation(&NewConsultation {
            clinic: clinic.clone(),
            provider: format!("abuse-{tag}-dr-devices-{i}"),
            patient: patient.clone(),
        })
        .await?;
        let token = token(api, &patient, Role::Patient, &clinic).await?;
        for connection in 0..options.device_flood_connections.max(1) {
            tasks.push(tokio::spawn(device_flood(
                node.ws_url.clone(),
                token.clone(),
                format!("{i}-{connection}"),
                tally.clone(),
                stop.clone(),
            )));
        }
    }
    Ok(tasks)
}

async fn token(api: &Api, user: &str, role: Role, clinic: &str) -> Result<String> {
    api.issue_token(&TokenRequest {
        user: user.to_owned(),
        role,
        clinic: clinic.to_owned(),
    })
    .await
}

fn socket_address(node: &Node) -> Result<SocketAddr> {
    let Some(host) = node.http_base.strip_prefix("http://") else {
        bail!("hub URL must start with http:// (got {})", node.http_base);
    };
    Ok(host.parse()?)
}

/// The close code of a WebSocket close frame, as a tally key.
fn close_key(frame: Option<&CloseFrame>) -> String {
    frame.map_or_else(
        || "close none".to_owned(),
        |f| format!("close {}", u16::from(f.code)),
    )
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads until the connection ends: its close code, `reset`, or `open`
/// when `stop` comes first. Frames before the end are dropped.
async fn read_to_end(ws: &mut WsStream, stop: &CancellationToken) -> String {
    loop {
        tokio::select! {
            () = stop.cancelled() => return "open".to_owned(),
            next = ws.next() => match next {
                Some(Ok(Message::Close(frame))) => return close_key(frame.as_ref()),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return "reset".to_owned(),
            },
        }
    }
}

/// Opens upgrades at `per_sec` that never say `hello`, each held until the
/// hub closes it; every [`CHATTY_EVERY`]th sends commands in its place.
async fn handshake_flood(url: String, per_sec: f64, tally: Tally, stop: CancellationToken) {
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_FLOOD_OPEN));
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / per_sec.max(0.001)));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut opened = 0_u64;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = pace.tick() => {}
        }
        let Ok(permit) = open.clone().try_acquire_owned() else {
            continue;
        };
        opened += 1;
        let chatty = opened % CHATTY_EVERY == 0;
        let (url, tally, stop) = (url.clone(), tally.clone(), stop.clone());
        tokio::spawn(async move {
            let _permit = permit;
            count(&tally, |t| t.flood_opened += 1);
            let outcome = match tokio_tungstenite::connect_async(url.as_str()).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    let code = response
                        .body()
                        .as_deref()
                        .and_then(|body| serde_json::from_slice::<Value>(body).ok())
                        .and_then(|body| body["code"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    format!("http {} {code}", response.status().as_u16())
                }
                Err(_) => "connect failed".to_owned(),
                Ok((mut socket, _)) => {
                    let _held = Holding::new(&tally, |t| &mut t.flood_held);
                    if chatty {
                        for i in 0..CHATTY_FRAMES {
                            let frame = json!({"type": "ping", "id": format!("p{i}")});
                            if socket.send(Message::text(frame.to_string())).await.is_err() {
                                break;
                            }
                        }
                    }
                    let end = read_to_end(&mut socket, &stop).await;
                    let kind = if chatty { "chatty" } else { "silent" };
                    format!("{kind} {end}")
                }
            };
            count(&tally, |t| bump(&mut t.flood_outcomes, outcome));
        });
    }
}

/// Holds one half-sent HTTP request open, opening another each time the
/// hub closes one.
async fn half_open(address: SocketAddr, tally: Tally, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let Ok(mut stream) = TcpStream::connect(address).await else {
            tokio::time::sleep(RECONNECT_PAUSE).await;
            continue;
        };
        count(&tally, |t| t.half_open_opened += 1);
        let _held = Holding::new(&tally, |t| &mut t.half_open_held);
        let partial = b"GET /v1/ws HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\n";
        if stream.write_all(partial).await.is_err() {
            continue;
        }
        let mut buffer = [0_u8; 512];
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                read = stream.read(&mut buffer) => match read {
                    Ok(0) | Err(_) => {
                        count(&tally, |t| t.half_open_closed += 1);
                        break;
                    }
                    // A 408 before the close, say.
                    Ok(_) => {}
                },
            }
        }
    }
}

/// A patient that joins its room and never reads. It writes a ping every
/// [`SLOW_READER_PROBE`] (reading nothing), so a failed write shows that
/// the hub dropped it; it then connects and joins again.
async fn slow_reader(
    address: SocketAddr,
    url: String,
    room: String,
    token: String,
    tally: Tally,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let mut patient = match slow_patient(address, &url, &room, &token).await {
            Ok(patient) => patient,
            Err(error) => {
                let why = format!("setup failed: {error:#}");
                count(&tally, |t| bump(&mut t.slow_reader_outcomes, why));
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        count(&tally, |t| t.slow_reader_joined += 1);
        let held = Holding::new(&tally, |t| &mut t.slow_reader_held);
        let connected = Instant::now();
        let mut probe = tokio::time::interval(SLOW_READER_PROBE);
        let dropped = loop {
            tokio::select! {
                () = stop.cancelled() => break false,
                _ = probe.tick() => {}
            }
            if patient
                .send(Message::Ping(Vec::new().into()))
                .await
                .is_err()
            {
                break true;
            }
        };
        // Now read what the hub left: the frames, then how it ended.
        let reading = CancellationToken::new();
        let end = tokio::time::timeout(FINAL_READ, read_to_end(&mut patient, &reading))
            .await
            .unwrap_or_else(|_| "open".to_owned());
        drop(held);
        let secs = connected.elapsed().as_secs_f64();
        count(&tally, |t| {
            if dropped {
                t.slow_reader_dropped_after_secs.push(secs);
                bump(&mut t.slow_reader_outcomes, format!("dropped: {end}"));
            } else {
                bump(&mut t.slow_reader_outcomes, format!("end: {end}"));
            }
        });
    }
}

async fn slow_patient(address: SocketAddr, url: &str, room: &str, token: &str) -> Result<WsStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(SLOW_READER_RCVBUF)?;
    let tcp = socket.connect(address).await?;
    let (mut ws, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp)).await?;
    let welcome = command(&mut ws, json!({"type": "hello", "token": token})).await?;
    if welcome["type"] != "welcome" {
        bail!("hello refused: {}", welcome["code"]);
    }
    let joined = command(
        &mut ws,
        json!({"type": "join", "id": "j", "consultation_id": room}),
    )
    .await?;
    if joined["type"] != "ok" {
        bail!("join refused: {}", joined["code"]);
    }
    Ok(ws)
}

/// Sends `frame` and waits for its answer: the frame carrying its `id`, or
/// for `hello` (which has none) a `welcome` or an `error` without `id`.
/// Other frames (events of a joined room, say) are skipped.
async fn command(ws: &mut WsStream, frame: Value) -> Result<Value> {
    let id = frame["id"].clone();
    ws.send(Message::text(frame.to_string())).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let answer: Value = serde_json::from_str(&text)?;
                let answers = if id.is_null() {
                    answer["type"] == "welcome"
                        || (answer["type"] == "error" && answer["id"].is_null())
                } else {
                    answer["id"] == id
                };
                if answers {
                    return Ok(answer);
                }
            }
            Some(Ok(Message::Close(frame))) => bail!("{}", close_key(frame.as_ref())),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
            None => bail!("closed before an answer"),
        }
    }
}

/// The provider of a slow reader's room: sends into it at `rate` for the
/// whole phase and reads its own answers (so it is no slow reader itself).
async fn fill_room(url: String, room: String, token: String, rate: f64, stop: CancellationToken) {
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
        return;
    };
    match command(&mut ws, json!({"type": "hello", "token": token})).await {
        Ok(welcome) if welcome["type"] == "welcome" => {}
        _ => return,
    }
    let (mut sink, mut stream) = ws.split();
    let reader = tokio::spawn(async move { while stream.next().await.is_some() {} });
    let body = "x".repeat(SLOW_READER_BODY);
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
    let mut i = 0_u64;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = pace.tick() => {}
        }
        i += 1;
        let frame = json!({"type": "send", "id": format!("s{i}"), "consultation_id": room,
            "client_msg_id": format!("fill-{i}"), "body": body});
        if sink.send(Message::text(frame.to_string())).await.is_err() {
            break;
        }
    }
    reader.abort();
}

/// Registers devices as fast as the hub answers; connects again after a
/// refusal or a close.
async fn device_flood(
    url: String,
    token: String,
    flooder: String,
    tally: Tally,
    stop: CancellationToken,
) {
    let mut device = 0_u64;
    while !stop.is_cancelled() {
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
            count(&tally, |t| {
                bump(&mut t.device_answers, "connect failed".to_owned());
            });
            tokio::time::sleep(RECONNECT_PAUSE).await;
            continue;
        };
        match command(&mut ws, json!({"type": "hello", "token": token})).await {
            Ok(welcome) if welcome["type"] == "welcome" => {}
            Ok(refused) => {
                let code = refused["code"].as_str().unwrap_or("other").to_owned();
                let end = tokio::time::timeout(FINAL_READ, read_to_end(&mut ws, &stop))
                    .await
                    .unwrap_or_else(|_| "open".to_owned());
                count(&tally, |t| {
                    bump(&mut t.device_answers, format!("hello {code}"));
                    bump(&mut t.device_answers, end);
                });
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
            Err(error) => {
                count(&tally, |t| {
                    bump(&mut t.device_answers, format!("hello failed: {error}"));
                });
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        }
        let _held = Holding::new(&tally, |t| &mut t.device_held);
        let ended = loop {
            if stop.is_cancelled() {
                break None;
            }
            device += 1;
            let frame = json!({"type": "register_device", "id": format!("d{device}"),
                "platform": "fcm", "token": format!("flood-{flooder}-{device}"),
                "notifications_enabled": true});
            match command(&mut ws, frame).await {
                Ok(answer) => {
                    let key = match answer["type"].as_str() {
                        Some("ok") => "ok".to_owned(),
                        _ => answer["code"].as_str().unwrap_or("other").to_owned(),
                    };
                    count(&tally, |t| bump(&mut t.device_answers, key));
                }
                Err(error) => {
                    let text = error.to_string();
                    break Some(if text.starts_with("close ") {
                        text
                    } else {
                        "reset".to_owned()
                    });
                }
            }
        };
        if let Some(ended) = ended {
            count(&tally, |t| bump(&mut t.device_answers, ended));
            tokio::time::sleep(RECONNECT_PAUSE).await;
        }
    }
}

/// Smallest, median and largest of `values`, `-` when there are none.
fn spread(values: &[f64]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match (sorted.first(), sorted.get(sorted.len() / 2), sorted.last()) {
        (Some(min), Some(median), Some(max)) => format!("{min:.1}/{median:.1}/{max:.1} s"),
        _ => "-".to_owned(),
    }
}

fn phase_line(round: usize, name: &str, phase: &Phase) -> String {
    let honest = &phase.honest;
    let ms = |us: u64| us as f64 / 1000.0;
    let cpu = honest.hub.as_ref().map_or_else(
        || "-".to_owned(),
        |hub| {
            format!(
                "{:.0}% of a core, {:.0} us/msg",
                hub.cpu_percent_of_core,
                honest.hub_cpu_us_per_sent.unwrap_or(0.0)
            )
        },
    );
    format!(
        "round {round} {name:>8}: delivered {}/{} (lost {}), sends failed {}, connection tries failed {}, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, hub CPU {cpu}; hub peaks {:?}; hub counted {:?}",
        honest.delivered,
        honest.expected,
        honest.lost,
        honest.sent.failed,
        honest.connect_failures,
        ms(honest.latency.p50_us),
        ms(honest.latency.p99_us),
        ms(honest.latency.max_us),
        phase.hub_peaks,
        phase.hub_counts,
    )
}

impl AbuseResult {
    /// The lines printed (and put in the report): per round, the honest
    /// load with and without the attack, then what the attackers met.
    pub fn summary_lines(&self) -> Vec<String> {
        let o = &self.options;
        let mut lines = vec![format!(
            "honest load: {} rooms, {} msgs/s, {} messages per phase; attack: {} upgrades/s without hello (1 in {CHATTY_EVERY} sending commands), {} half-open requests, {} slow readers at {} msgs/s, {} device floods x {} connections",
            o.honest.rooms,
            o.honest.rate,
            o.honest.messages,
            o.handshake_flood_per_sec,
            o.half_open,
            o.slow_readers,
            o.slow_reader_rate,
            o.device_floods,
            o.device_flood_connections,
        )];
        for (index, round) in self.rounds.iter().enumerate() {
            let number = index + 1;
            lines.push(phase_line(number, "attacked", &round.attacked));
            lines.push(phase_line(number, "calm", &round.calm));
            let t = &round.tally;
            lines.push(format!(
                "round {number} attackers: flood opened {} (peak held {}) -> {:?}; half-open opened {} (peak held {}), closed by the hub {}; slow readers joined {} (peak held {}), dropped {} after {} -> {:?}; device floods (peak held {}) {:?}",
                t.flood_opened,
                t.flood_held.peak,
                t.flood_outcomes,
                t.half_open_opened,
                t.half_open_held.peak,
                t.half_open_closed,
                t.slow_reader_joined,
                t.slow_reader_held.peak,
                t.slow_reader_dropped_after_secs.len(),
                spread(&t.slow_reader_dropped_after_secs),
                t.slow_reader_outcomes,
                t.device_held.peak,
                t.device_answers
            ));
        }
        lines
    }

    /// Honest messages lost over every phase.
    pub fn lost(&self) -> u64 {
        self.rounds
            .iter()
            .map(|round| round.calm.honest.lost + round.attacked.honest.lost)
            .sum()
    }
}
