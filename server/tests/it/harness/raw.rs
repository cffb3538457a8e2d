//! A raw WebSocket for writing malformed frames and watching close codes,
//! below what the typed client allows.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

pub(crate) struct RawSocket {
    pub(crate) stream: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
}

/// What came back.
#[derive(Debug)]
pub(crate) enum Received {
    Json(Value),
    Closed(Option<u16>),
}

impl RawSocket {
    pub(crate) async fn connect(url: &str) -> Self {
        let (stream, _) = connect_async(url).await.expect("ws connects");
        Self { stream }
    }

    /// Connects to `ws://address/v1/ws` with a TCP receive buffer of about
    /// `bytes` (the kernel rounds it), so that what the hub writes while
    /// this client does not read stays on the hub's side of the connection.
    pub(crate) async fn connect_with_receive_buffer(
        address: std::net::SocketAddr,
        bytes: u32,
    ) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        let tcp = socket.connect(address).await.expect("tcp connects");
        let url = format!("ws://{address}/v1/ws");
        let (stream, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp))
            .await
            .expect("ws connects");
        Self { stream }
    }

    /// Connects and completes hello with `token`, returning the welcome.
    pub(crate) async fn authenticated(url: &str, token: &str) -> Self {
        let mut socket = Self::connect(url).await;
        socket
            .send_json(serde_json::json!({"type": "hello", "token": token}))
            .await;
        let welcome = socket.recv_json().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        socket
    }

    pub(crate) async fn send_text(&mut self, text: impl Into<String>) {
        self.stream
            .send(Message::text(text.into()))
            .await
            .expect("send");
    }

    pub(crate) async fn send_json(&mut self, value: Value) {
        self.send_text(value.to_string()).await;
    }

    /// A text frame whose payload is not UTF-8, which the typed APIs
    /// cannot build.
    pub(crate) async fn send_invalid_utf8_text(&mut self) {
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        let payload: &[u8] = b"{\"type\":\"ping\",\"id\":\"\xff\xfe\"}";
        self.stream
            .send(Message::Frame(Frame::message(
                payload.to_vec(),
                OpCode::Data(Data::Text),
                true,
            )))
            .await
            .expect("send");
    }

    pub(crate) async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.stream
            .send(Message::binary(bytes))
            .await
            .expect("send");
    }

    /// The next text frame or the close, skipping pings, within 10 s.
    pub(crate) async fn recv(&mut self) -> Received {
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
                .await
                .expect("frame within 10 s");
            match next {
                Some(Ok(Message::Text(text))) => {
                    return Received::Json(serde_json::from_str(&text).expect("hub sends JSON"));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Received::Closed(frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Received::Closed(None),
            }
        }
    }

    /// The next text frame as JSON; panics on close.
    pub(crate) async fn recv_json(&mut self) -> Value {
        match self.recv().await {
            Received::Json(value) => value,
            Received::Closed(code) => panic!("closed with {code:?} while expecting a frame"),
        }
    }

    /// Skips frames until the close; returns its code.
    pub(crate) async fn recv_close(&mut self) -> Option<u16> {
        loop {
            if let Received::Closed(code) = self.recv().await {
                return code;
            }
        }
    }

    /// Sends `hello` with `token` and returns the next frame (`welcome` or
    /// `error`).
    pub(crate) async fn hello(&mut self, token: &str) -> Value {
        self.send_json(serde_json::json!({"type": "hello", "token": token}))
            .await;
        self.recv_json().await
    }

    /// The next `ok` or `error` frame, whatever its id, skipping events.
    pub(crate) async fn recv_answer(&mut self) -> Value {
        loop {
            let frame = self.recv_json().await;
            if frame["type"] == "ok" || frame["type"] == "error" {
                return frame;
            }
        }
    }

    /// Sends a command and returns its answer (`ok` or `error` with that id),
    /// skipping events.
    pub(crate) async fn command(&mut self, mut command: Value, id: &str) -> Value {
        command["id"] = Value::from(id);
        self.send_json(command).await;
        loop {
            let frame = self.recv_json().await;
            if frame["id"] == id && (frame["type"] == "ok" || frame["type"] == "error") {
                return frame;
            }
        }
    }
}
