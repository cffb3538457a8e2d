//! The floor answers what it serves and refuses the rest with an `error`
//! frame carrying a code, as the hub would.

use super::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as WsMessage;

async fn started() -> (String, String) {
    started_with(Floor::default()).await
}

async fn started_with(floor: Floor) -> (String, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router(Arc::new(floor)))
            .await
            .unwrap();
    });
    (format!("http://{address}"), format!("ws://{address}/v1/ws"))
}

async fn post(http: &str, path: &str, body: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{http}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A room of clinic `c1` between `dr` and `patient`; its id.
async fn new_room(http: &str, patient: &str) -> String {
    post(
        http,
        "/v1/consultations",
        json!({"clinic_id": "c1", "provider": {"id": "dr"}, "patient": {"id": patient}}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn exchange(socket: &mut Socket, frame: Value) -> Value {
    socket
        .send(WsMessage::text(frame.to_string()))
        .await
        .unwrap();
    next(socket).await
}

async fn next(socket: &mut Socket) -> Value {
    loop {
        if let WsMessage::Text(text) = socket.next().await.unwrap().unwrap() {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

#[tokio::test]
async fn commands_before_hello_unknown_rooms_and_commands_it_does_not_serve_are_refused() {
    let (http, ws) = started().await;
    let room = new_room(&http, "pat").await;
    let token = post(
        &http,
        "/v1/tokens",
        json!({"user": "dr", "role": "provider", "clinic": "c1"}),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws).await.unwrap();

    let early = exchange(
        &mut socket,
        json!({"type": "join", "id": "1", "consultation_id": room}),
    )
    .await;
    assert_eq!(early["type"], "error");
    assert_eq!(early["code"], "hello_required");
    let garbled = exchange(&mut socket, json!({"type": "no_such_frame", "id": "2"})).await;
    assert_eq!(garbled["type"], "error");
    assert_eq!(garbled["code"], "unknown_type");

    let welcome = exchange(&mut socket, json!({"type": "hello", "token": token})).await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["user"], "dr");
    let unknown = exchange(
        &mut socket,
        json!({"type": "join", "id": "3", "consultation_id": "floor-999"}),
    )
    .await;
    assert_eq!(unknown["code"], "not_found");
    assert_eq!(unknown["id"], "3");
    let unserved = exchange(
        &mut socket,
        json!({"type": "typing", "id": "4", "consultation_id": room, "active": true}),
    )
    .await;
    assert_eq!(unserved["code"], "unknown_type");
    assert_eq!(unserved["id"], "4");

    // Still served after every refusal: join, send, and the sender's own
    // copy after its `ok`.
    let joined = exchange(
        &mut socket,
        json!({"type": "join", "id": "5", "consultation_id": room}),
    )
    .await;
    assert_eq!(joined["type"], "ok");
    assert_eq!(joined["result"]["consultation"]["id"], room.as_str());
    let sent = exchange(
        &mut socket,
        json!({"type": "send", "id": "6", "consultation_id": room, "client_msg_id": "m1", "body": "hi"}),
    )
    .await;
    assert_eq!(sent["type"], "ok");
    assert_eq!(sent["result"]["seq"], 1);
    let copy = next(&mut socket).await;
    assert_eq!(copy["type"], "message");
    assert_eq!(copy["message"]["seq"], 1);
    assert_eq!(copy["message"]["body"], "hi");
}

/// A connected, greeted socket of `user` (`role`) in clinic `c1`.
async fn greeted(http: &str, ws: &str, user: &str, role: &str) -> Socket {
    let token = post(
        http,
        "/v1/tokens",
        json!({"user": user, "role": role, "clinic": "c1"}),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (mut socket, _) = tokio_tungstenite::connect_async(ws).await.unwrap();
    let welcome = exchange(&mut socket, json!({"type": "hello", "token": token})).await;
    assert_eq!(welcome["type"], "welcome");
    socket
}

#[tokio::test]
async fn an_ack_in_a_joined_room_sends_the_room_a_receipt_frame_and_elsewhere_only_its_ok() {
    let (http, ws) = started().await;
    let room = new_room(&http, "pat").await;
    let mut provider = greeted(&http, &ws, "dr", "provider").await;
    let mut patient = greeted(&http, &ws, "pat", "patient").await;
    for socket in [&mut provider, &mut patient] {
        let joined = exchange(
            socket,
            json!({"type": "join", "id": "j", "consultation_id": room}),
        )
        .await;
        assert_eq!(joined["type"], "ok");
    }

    // Not joined to this room: the `ack` is answered and nobody hears of it.
    let other = new_room(&http, "pat").await;
    let elsewhere = exchange(
        &mut patient,
        json!({"type": "ack", "id": "a0", "consultation_id": other, "seq": 1, "receipt": "delivered"}),
    )
    .await;
    assert_eq!(elsewhere["type"], "ok");
    assert_eq!(elsewhere["id"], "a0");

    let acked = exchange(
        &mut patient,
        json!({"type": "ack", "id": "a1", "consultation_id": room, "seq": 3, "receipt": "read"}),
    )
    .await;
    assert_eq!(acked["type"], "ok");
    assert_eq!(acked["id"], "a1");
    // The originator's own copy, after its `ok`, and the other member's.
    for socket in [&mut patient, &mut provider] {
        let receipt = next(socket).await;
        assert_eq!(receipt["type"], "receipt", "{receipt}");
        assert_eq!(receipt["consultation_id"], room.as_str());
        assert_eq!(receipt["user"], "pat");
        assert_eq!(receipt["role"], "patient");
        assert_eq!(receipt["seq"], 3);
        assert_eq!(receipt["receipt"], "read");
    }
    // The first receipt the provider got is that one: the `ack` in the
    // other room sent nothing (checked by the next frame being a pong).
    let pong = exchange(&mut provider, json!({"type": "ping", "id": "p"})).await;
    assert_eq!(pong["type"], "ok");
    assert_eq!(pong["id"], "p");
}

#[test]
fn the_stored_floor_reads_the_hubs_database_settings() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    };
    let config = StoreConfig::from_vars(
        StoreKind::Sqlite,
        vars(&[
            ("CONSULT_DATABASE__URL", "sqlite:///tmp/run/hub.db?mode=rwc"),
            ("CONSULT_DATABASE__SQLITE_SYNCHRONOUS", "normal"),
        ]),
    )
    .unwrap();
    assert_eq!(config.path, std::path::PathBuf::from("/tmp/run/hub.db"));
    assert_eq!(config.synchronous, "NORMAL");
    assert_eq!(config.linger, std::time::Duration::from_micros(500));
    let config = StoreConfig::from_vars(
        StoreKind::Sqlite,
        vars(&[
            ("CONSULT_DATABASE__URL", "sqlite://hub.db"),
            ("CONSULT_DATABASE__APPEND_LINGER_US", "0"),
        ]),
    )
    .unwrap();
    assert_eq!(config.synchronous, "FULL");
    assert!(config.linger.is_zero());
    for refused in [
        &[][..],
        &[("CONSULT_DATABASE__URL", "postgres://db/load")][..],
        &[("CONSULT_DATABASE__URL", "sqlite::memory:")][..],
        &[
            ("CONSULT_DATABASE__URL", "sqlite://hub.db"),
            ("CONSULT_DATABASE__SQLITE_SYNCHRONOUS", "off"),
        ][..],
    ] {
        assert!(
            StoreConfig::from_vars(StoreKind::Sqlite, vars(refused)).is_err(),
            "{refused:?}"
        );
    }
}

#[tokio::test]
async fn the_stored_floor_names_rooms_as_the_hub_does_and_writes_each_message_and_moves_last_seq() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("floor.db");
    let config = StoreConfig {
        kind: StoreKind::Sqlite,
        path: path.clone(),
        synchronous: "FULL".to_owned(),
        linger: std::time::Duration::from_micros(500),
    };
    let floor = Floor {
        store: Some(store::Store::start(&config).unwrap()),
        ..Floor::default()
    };
    let (http, ws) = started_with(floor).await;
    let room = new_room(&http, "pat").await;
    // Named as the hub names a consultation, so the stored keys are as wide.
    let parsed = uuid::Uuid::parse_str(&room).unwrap();
    assert_eq!(parsed.get_version_num(), 4);
    assert_ne!(room, new_room(&http, "pat2").await);
    let token = json!(["dr", "provider", "c1"]).to_string();
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws).await.unwrap();
    exchange(&mut socket, json!({"type": "hello", "token": token})).await;
    exchange(
        &mut socket,
        json!({"type": "join", "id": "1", "consultation_id": room}),
    )
    .await;
    for (index, body) in ["first", "second"].iter().enumerate() {
        let sent = exchange(
            &mut socket,
            json!({"type": "send", "id": format!("s{index}"), "consultation_id": room,
                   "client_msg_id": format!("m{index}"), "body": body}),
        )
        .await;
        assert_eq!(sent["type"], "ok");
        assert_eq!(sent["result"]["seq"], index + 1);
        let copy = next(&mut socket).await;
        assert_eq!(copy["message"]["seq"], index + 1);
    }
    let unknown = exchange(
        &mut socket,
        json!({"type": "send", "id": "x", "consultation_id": "floor-999",
               "client_msg_id": "mx", "body": "lost"}),
    )
    .await;
    assert_eq!(unknown["code"], "not_found");

    let db = rusqlite::Connection::open(&path).unwrap();
    let rows: Vec<(i64, String, String)> = db
        .prepare(
            "SELECT seq, body, sender_id FROM messages WHERE consultation_id = ?1 ORDER BY seq",
        )
        .unwrap()
        .query_map([room.as_str()], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        rows,
        [
            (1, "first".to_owned(), "dr".to_owned()),
            (2, "second".to_owned(), "dr".to_owned())
        ]
    );
    let last_seq: i64 = db
        .query_row(
            "SELECT last_seq FROM consultations WHERE id = ?1",
            [room.as_str()],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(last_seq, 2);
}

#[tokio::test]
async fn the_log_stored_floor_appends_each_message_with_its_rooms_next_seq() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        kind: StoreKind::Log,
        path: dir.path().join("floor.db"),
        synchronous: "FULL".to_owned(),
        linger: std::time::Duration::ZERO,
    };
    let floor = Floor {
        store: Some(store::Store::start(&config).unwrap()),
        ..Floor::default()
    };
    let (http, ws) = started_with(floor).await;
    let mut rooms = Vec::new();
    for patient in ["pat-1", "pat-2"] {
        rooms.push(new_room(&http, patient).await);
    }
    let token = json!(["dr", "provider", "c1"]).to_string();
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws).await.unwrap();
    exchange(&mut socket, json!({"type": "hello", "token": token})).await;
    let mut seqs = Vec::new();
    for (index, room) in [&rooms[0], &rooms[1], &rooms[0]].iter().enumerate() {
        let sent = exchange(
            &mut socket,
            json!({"type": "send", "id": format!("s{index}"), "consultation_id": room,
                   "client_msg_id": format!("m{index}"), "body": format!("body {index}")}),
        )
        .await;
        seqs.push(sent["result"]["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, [1, 1, 2]);

    let log = std::fs::read_to_string(dir.path().join("floor.messages")).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let written: Vec<(&str, u64, &str)> = lines
        .iter()
        .map(|line| {
            (
                line["room"].as_str().unwrap(),
                line["seq"].as_u64().unwrap(),
                line["body"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        written,
        [
            (rooms[0].as_str(), 1, "body 0"),
            (rooms[1].as_str(), 1, "body 1"),
            (rooms[0].as_str(), 2, "body 2")
        ]
    );
}
