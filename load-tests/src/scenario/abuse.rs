//! `abuse`: the honest 1:1 chat load (a `fanout` run) measured alone and
//! again beside attackers, in interleaved rounds, so that what an attack
//! costs honest users is read from pairs taken minutes apart.
//!
//! The attackers, each kind sized by its own option (0 turns it off):
//! - handshake floods: WebSocket upgrades opened at a rate that never say
//!   `hello` (the hub closes them after its handshake timeout);
//! - half-open HTTP: connections that send part of a request header and
//!   stall (closed after `http.header_read_timeout_secs`);
//! - slow readers: patients joined to a room their provider fills, reading
//!   nothing, with a small TCP receive buffer (kicked with 4003, or dropped
//!   when a write times out);
//! - device floods: patients registering push devices as fast as the hub
//!   answers (capped per patient, rate-limited, closed with 4004 after too
//!   many refusals in a row; they reconnect and go on).
//!
//! The report gives, per round, the honest run's delivery latency, loss and
//! hub CPU with and without the attack, and what the attackers met: HTTP
//! refusals by status, close codes, answers by code.

use super::fanout::{self, FanoutOptions, FanoutResult};
use super::run_tag;
use crate::api::{Api, NewConsultation, TokenRequest};
use crate::target::{Node, Target};
use anyhow::{Result, bail};
use consult_protocol::Role;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// The most handshake-flood connections held open at once.
const MAX_FLOOD_OPEN: usize = 4000;
/// Receive buffer of a slow reader's socket (the kernel doubles it).
const SLOW_READER_RCVBUF: u32 = 4096;
/// Body of the messages slow readers are sent.
const SLOW_READER_BODY: usize = 3000;

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
}

/// What the attackers met, by kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AttackTally {
    /// Upgrades opened by the handshake flood.
    pub flood_opened: u64,
    /// How those ended: `http <status> <code>`, `close <code>`, `reset`.
    pub flood_outcomes: BTreeMap<String, u64>,
    /// Half-sent requests the hub closed.
    pub half_open_closed: u64,
    /// Half-sent requests opened.
    pub half_open_opened: u64,
    /// How the slow readers' connections ended.
    pub slow_reader_outcomes: BTreeMap<String, u64>,
    /// `register_device` answers by kind (`ok` or the error code), and
    /// `close <code>` for the connections the hub closed.
    pub device_answers: BTreeMap<String, u64>,
}

/// One round: the honest load without and with the attack.
#[derive(Debug, Serialize)]
pub struct AbuseRound {
    /// Without the attack.
    pub calm: FanoutResult,
    /// With it.
    pub attacked: FanoutResult,
    /// What the attackers met.
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

/// Runs the rounds.
///
/// # Errors
///
/// When the hub cannot be set up or a fanout run fails.
pub async fn run(target: &Target, options: &AbuseOptions, quiet: bool) -> Result<AbuseResult> {
    let Some(node) = target.nodes.first() else {
        bail!("no hub node");
    };
    let api = Api::new(&node.http_base, &target.api_key);
    let mut rounds = Vec::with_capacity(options.rounds);
    for round in 0..options.rounds.max(1) {
        if !quiet {
            eprintln!("round {}: without the attack", round + 1);
        }
        let calm = fanout::run(target, &options.honest, quiet).await?;
        if !quiet {
            eprintln!("round {}: with the attack", round + 1);
        }
        let tally = Tally::default();
        let stop = CancellationToken::new();
        let attackers = start_attackers(&api, node, options, &tally, &stop).await?;
        let attacked = fanout::run(target, &options.honest, quiet).await;
        stop.cancel();
        for attacker in attackers {
            let _finished = attacker.await;
        }
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

async fn start_attackers(
    api: &Api,
    node: &Node,
    options: &AbuseOptions,
    tally: &Tally,
    stop: &CancellationToken,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
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
            tasks.push(tokio::spawn(slow_reader(
                address,
                node.ws_url.clone(),
                room.to_string(),
                (patient, provider),
                options.slow_reader_rate,
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
        tasks.push(tokio::spawn(device_flood(
            node.ws_url.clone(),
            token,
            i,
            tally.clone(),
            stop.clone(),
        )));
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
fn close_key(frame: Option<&tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> String {
    frame.map_or_else(
        || "close none".to_owned(),
        |f| format!("close {}", u16::from(f.code)),
    )
}

/// Opens upgrades at `per_sec` that never say `hello`, each held until the
/// hub closes it.
async fn handshake_flood(url: String, per_sec: f64, tally: Tally, stop: CancellationToken) {
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_FLOOD_OPEN));
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / per_sec.max(0.001)));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = pace.tick() => {}
        }
        let Ok(permit) = open.clone().try_acquire_owned() else {
            continue;
        };
        let (url, tally, stop) = (url.clone(), tally.clone(), stop.clone());
        tokio::spawn(async move {
            let _held = permit;
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
                Ok((mut socket, _)) => loop {
                    tokio::select! {
                        () = stop.cancelled() => break "still open at the end".to_owned(),
                        next = socket.next() => match next {
                            Some(Ok(Message::Close(frame))) => break close_key(frame.as_ref()),
                            Some(Ok(_)) => {}
                            Some(Err(_)) | None => break "reset".to_owned(),
                        },
                    }
                },
            };
            count(&tally, |t| {
                *t.flood_outcomes.entry(outcome).or_default() += 1
            });
        });
    }
}

/// Holds one half-sent HTTP request open, opening another each time the
/// hub closes one.
async fn half_open(address: SocketAddr, tally: Tally, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let Ok(mut stream) = TcpStream::connect(address).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        count(&tally, |t| t.half_open_opened += 1);
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
                    Ok(_) => {}
                },
            }
        }
    }
}

/// A patient that joins its room and never reads, and its provider, which
/// sends into the room at `rate` and reads its own answers.
async fn slow_reader(
    address: SocketAddr,
    url: String,
    room: String,
    (patient_token, provider_token): (String, String),
    rate: f64,
    tally: Tally,
    stop: CancellationToken,
) {
    let outcome = match slow_patient(address, &url, &room, &patient_token).await {
        Ok(mut patient) => {
            let sender = tokio::spawn(fill_room(
                url.clone(),
                room.clone(),
                provider_token,
                rate,
                stop.clone(),
            ));
            stop.cancelled().await;
            sender.abort();
            // Now read what the hub left: the frames, then how it ended.
            let drained = tokio::time::timeout(Duration::from_secs(3), async {
                loop {
                    match patient.next().await {
                        Some(Ok(Message::Close(frame))) => break close_key(frame.as_ref()),
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break "reset".to_owned(),
                    }
                }
            })
            .await;
            drained.unwrap_or_else(|_| "still open at the end".to_owned())
        }
        Err(error) => format!("setup failed: {error}"),
    };
    count(&tally, |t| {
        *t.slow_reader_outcomes.entry(outcome).or_default() += 1;
    });
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn slow_patient(address: SocketAddr, url: &str, room: &str, token: &str) -> Result<WsStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(SLOW_READER_RCVBUF)?;
    let tcp = socket.connect(address).await?;
    let (mut ws, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp)).await?;
    command(&mut ws, json!({"type": "hello", "token": token})).await?;
    command(
        &mut ws,
        json!({"type": "join", "id": "j", "consultation_id": room}),
    )
    .await?;
    Ok(ws)
}

/// Sends `frame` and waits for the answer (the first text frame).
async fn command(ws: &mut WsStream, frame: Value) -> Result<Value> {
    ws.send(Message::text(frame.to_string())).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text)?),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
            None => bail!("closed before an answer"),
        }
    }
}

async fn fill_room(url: String, room: String, token: String, rate: f64, stop: CancellationToken) {
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
        return;
    };
    if command(&mut ws, json!({"type": "hello", "token": token}))
        .await
        .is_err()
    {
        return;
    }
    let (mut sink, mut stream) = ws.split();
    // Answers are read (and dropped) so that the provider is no slow reader.
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

/// Registers devices as fast as the hub answers; reconnects after a close.
async fn device_flood(
    url: String,
    token: String,
    flooder: usize,
    tally: Tally,
    stop: CancellationToken,
) {
    let mut device = 0_u64;
    while !stop.is_cancelled() {
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if command(&mut ws, json!({"type": "hello", "token": token}))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let ended = loop {
            if stop.is_cancelled() {
                break None;
            }
            device += 1;
            let frame = json!({"type": "register_device", "id": format!("d{device}"),
                "platform": "fcm", "token": format!("flood-{flooder}-{device}"),
                "notifications_enabled": true});
            if ws.send(Message::text(frame.to_string())).await.is_err() {
                break Some("reset".to_owned());
            }
            let answer = loop {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => break Ok(text),
                    Some(Ok(Message::Close(frame))) => break Err(close_key(frame.as_ref())),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break Err("reset".to_owned()),
                }
            };
            match answer {
                Ok(text) => {
                    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    let key = match answer["type"].as_str() {
                        Some("ok") => "ok".to_owned(),
                        _ => answer["code"].as_str().unwrap_or("other").to_owned(),
                    };
                    count(&tally, |t| *t.device_answers.entry(key).or_default() += 1);
                }
                Err(ended) => break Some(ended),
            }
        };
        if let Some(ended) = ended {
            count(&tally, |t| *t.device_answers.entry(ended).or_default() += 1);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl AbuseResult {
    /// The lines printed (and put in the report): per round, the honest
    /// load without and with the attack, then what the attackers met.
    pub fn summary_lines(&self) -> Vec<String> {
        let o = &self.options;
        let mut lines = vec![format!(
            "honest load: {} rooms, {} msgs/s, {} messages per phase; attack: {} upgrades/s without hello, {} half-open requests, {} slow readers at {} msgs/s, {} device floods",
            o.honest.rooms,
            o.honest.rate,
            o.honest.messages,
            o.handshake_flood_per_sec,
            o.half_open,
            o.slow_readers,
            o.slow_reader_rate,
            o.device_floods
        )];
        for (index, round) in self.rounds.iter().enumerate() {
            for (phase, result) in [("attacked", &round.attacked), ("calm", &round.calm)] {
                lines.push(format!(
                    "round {} {phase:>8}: delivered {}/{} (lost {}), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, hub CPU {} us/msg",
                    index + 1,
                    result.delivered,
                    result.expected,
                    result.lost,
                    result.latency.p50_us as f64 / 1000.0,
                    result.latency.p99_us as f64 / 1000.0,
                    result.latency.max_us as f64 / 1000.0,
                    result
                        .hub_cpu_us_per_sent
                        .map_or_else(|| "-".to_owned(), |us| format!("{us:.0}")),
                ));
            }
            let t = &round.tally;
            lines.push(format!(
                "round {} attackers: flood opened {} -> {:?}; half-open opened {}, closed by the hub {}; slow readers {:?}; device answers {:?}",
                index + 1,
                t.flood_opened,
                t.flood_outcomes,
                t.half_open_opened,
                t.half_open_closed,
                t.slow_reader_outcomes,
                t.device_answers
            ));
        }
        lines
    }

    /// Honest messages lost over every phase.
    pub fn lost(&self) -> u64 {
        self.rounds
            .iter()
            .map(|round| round.calm.lost + round.attacked.lost)
            .sum()
    }
}
