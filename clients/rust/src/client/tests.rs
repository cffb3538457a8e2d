//! The client over in-memory sockets: `hello`, answers and events, close
//! handshakes, timeouts and the events-queue policy.

use super::*;
use crate::connection::ClosedBy;
use chrono::Utc;
use consult_protocol::{ClinicId, ConsultationId, ErrorCode, Role, UserId};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::DuplexStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role as WsRole};

type Hub = WebSocketStream<DuplexStream>;

async fn sockets() -> (WebSocketStream<DuplexStream>, Hub) {
    let (client_io, hub_io) = tokio::io::duplex(64 * 1024);
    let client = WebSocketStream::from_raw_socket(client_io, WsRole::Client, None).await;
    let hub = WebSocketStream::from_raw_socket(hub_io, WsRole::Server, None).await;
    (client, hub)
}

fn welcome_frame() -> ServerFrame {
    ServerFrame::Welcome {
        protocol: 1,
        conn_id: "n1".to_owned(),
        user: UserId::from("u1"),
        role: Role::Patient,
        clinic: ClinicId::from("cl1"),
        heartbeat_secs: 30,
        max_frame_bytes: 65_536,
        server_time: Utc::now(),
        expires_at: None,
    }
}

fn presence() -> ServerFrame {
    ServerFrame::Presence {
        consultation_id: ConsultationId::from("k1"),
        user: UserId::from("u2"),
        role: Role::Provider,
        online: true,
    }
}

async fn send(hub: &mut Hub, frame: &ServerFrame) {
    hub.send(Message::text(frame.to_json())).await.unwrap();
}

async fn recv_json(hub: &mut Hub) -> Value {
    loop {
        match hub.next().await.unwrap().unwrap() {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected text, got {other:?}"),
        }
    }
}

async fn close_from_hub(hub: &mut Hub, code: u16) {
    let frame = CloseFrame {
        code: code.into(),
        reason: "bye".into(),
    };
    hub.send(Message::Close(Some(frame))).await.unwrap();
}

/// Reads until the close handshake is done and drops the socket, as the hub
/// drops TCP, returning the close code the client sent.
async fn read_to_close(mut hub: Hub) -> Option<u16> {
    let mut code = None;
    while let Some(Ok(message)) = hub.next().await {
        if let Message::Close(frame) = message {
            code = frame.map(|frame| u16::from(frame.code));
        }
    }
    code
}

async fn connected(config: ClientConfig) -> (Client, Hub) {
    let (socket, mut hub) = sockets().await;
    let hub_side = async {
        recv_json(&mut hub).await;
        send(&mut hub, &welcome_frame()).await;
    };
    let (opened, ()) = tokio::join!(Client::over_socket(socket, "secret", config), hub_side);
    let (client, _welcome) = opened.unwrap();
    (client, hub)
}

#[tokio::test]
async fn hello_carries_the_token_and_welcome_is_returned() {
    let (socket, mut hub) = sockets().await;
    let hub_side = async {
        let hello = recv_json(&mut hub).await;
        send(&mut hub, &welcome_frame()).await;
        hello
    };
    let (opened, hello) = tokio::join!(
        Client::over_socket(socket, "secret", ClientConfig::default()),
        hub_side
    );
    assert_eq!(hello, json!({"type": "hello", "token": "secret"}));
    let (client, welcome) = opened.unwrap();
    assert_eq!(welcome.conn_id, "n1");
    assert_eq!(client.welcome().user, UserId::from("u1"));
}

#[tokio::test]
async fn refused_hello_reports_the_code_and_the_close_code() {
    let (socket, mut hub) = sockets().await;
    let hub_side = async {
        recv_json(&mut hub).await;
        let refusal = ServerFrame::error(None, ErrorCode::InvalidToken, "bad token");
        send(&mut hub, &refusal).await;
        close_from_hub(&mut hub, 4001).await;
    };
    let (opened, ()) = tokio::join!(
        Client::over_socket(socket, "forged", ClientConfig::default()),
        hub_side
    );
    let error = opened.unwrap_err();
    assert!(matches!(
        error,
        ClientError::Rejected {
            code: ErrorCode::InvalidToken,
            close_code: Some(4001),
            ..
        }
    ));
}

#[tokio::test]
async fn answer_reaches_its_caller_and_room_frames_become_events() {
    let (client, mut hub) = connected(ClientConfig::default()).await;
    let hub_side = async {
        let ping = recv_json(&mut hub).await;
        assert_eq!(ping["type"], "ping");
        let id = CommandId::new(ping["id"].as_str().unwrap());
        send(&mut hub, &presence()).await;
        let pong = CommandResult::Pong {
            server_time: Utc::now(),
        };
        send(&mut hub, &ServerFrame::ok(id, Some(pong))).await;
    };
    let (pong, ()) = tokio::join!(client.ping(), hub_side);
    pong.unwrap();
    assert_eq!(client.next_event().await, Some(presence()));
}

#[tokio::test]
async fn error_answer_is_a_command_error() {
    let (client, mut hub) = connected(ClientConfig::default()).await;
    let hub_side = async {
        let leave = recv_json(&mut hub).await;
        let id = CommandId::new(leave["id"].as_str().unwrap());
        let refusal = ServerFrame::error(Some(id), ErrorCode::NotJoined, "join first");
        send(&mut hub, &refusal).await;
    };
    let consultation = ConsultationId::from("k1");
    let (left, ()) = tokio::join!(client.leave(&consultation), hub_side);
    assert_eq!(left.unwrap_err().code(), Some(ErrorCode::NotJoined));
}

#[tokio::test]
async fn hub_close_fails_waiting_commands_and_ends_events() {
    let (client, mut hub) = connected(ClientConfig::default()).await;
    let hub_side = async move {
        recv_json(&mut hub).await;
        send(&mut hub, &presence()).await;
        close_from_hub(&mut hub, 4003).await;
        read_to_close(hub).await
    };
    let (pong, _) = tokio::join!(client.ping(), hub_side);
    assert!(matches!(pong, Err(ClientError::Closed)));
    assert_eq!(client.next_event().await, Some(presence()));
    assert_eq!(client.next_event().await, None);

    let info = client.close_info().unwrap();
    assert_eq!((info.by, info.code), (ClosedBy::Hub, Some(4003)));
    assert!(matches!(client.ping().await, Err(ClientError::Closed)));
}

#[tokio::test(start_paused = true)]
async fn unanswered_command_times_out() {
    let config = ClientConfig {
        request_timeout: Duration::from_secs(1),
        ..ClientConfig::default()
    };
    let (client, _hub) = connected(config).await;
    assert!(matches!(client.ping().await, Err(ClientError::Timeout)));
}

#[tokio::test]
async fn close_sends_normal_close_and_reports_it() {
    let (client, hub) = connected(ClientConfig::default()).await;
    let (info, hub_saw) = tokio::join!(client.close(), read_to_close(hub));
    assert_eq!(hub_saw, Some(1000));
    assert_eq!((info.by, info.code), (ClosedBy::Client, Some(1000)));
    assert_eq!(client.next_event().await, None);
}

#[tokio::test]
async fn full_events_queue_closes_the_connection() {
    let config = ClientConfig {
        events_capacity: 1,
        ..ClientConfig::default()
    };
    let (client, mut hub) = connected(config).await;
    send(&mut hub, &presence()).await;
    send(&mut hub, &presence()).await;
    let (info, hub_saw) = tokio::join!(client.closed(), read_to_close(hub));
    assert_eq!(hub_saw, Some(1008));
    assert_eq!((info.by, info.code), (ClosedBy::Client, Some(1008)));
}

#[tokio::test]
async fn raw_text_is_sent_verbatim_and_its_answer_is_an_event() {
    let (client, mut hub) = connected(ClientConfig::default()).await;
    client
        .send_raw_text("{\"type\":\"launch\",\"id\":\"x1\"}")
        .await
        .unwrap();
    assert_eq!(
        recv_json(&mut hub).await,
        json!({"type": "launch", "id": "x1"})
    );

    let refusal = ServerFrame::error(Some("x1".into()), ErrorCode::UnknownType, "?");
    send(&mut hub, &refusal).await;
    assert_eq!(client.next_event().await, Some(refusal));
}

#[tokio::test]
async fn hello_cannot_be_sent_as_a_request() {
    let (client, _hub) = connected(ClientConfig::default()).await;
    let hello = ClientFrame::Hello {
        token: "secret".to_owned(),
    };
    assert!(matches!(
        client.request(hello).await,
        Err(ClientError::Protocol(_))
    ));
}
