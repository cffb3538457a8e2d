//! `consult-cli` as a user runs it: the built binary against a scripted
//! WebSocket server on 127.0.0.1. Proves where the token comes from (and
//! that it travels only in `hello`), the output lines, and the
//! `error: <code>: <message>` report with a non-zero exit. Behaviour against
//! the real hub is covered by the hub's `client_resume` tests through the
//! same `ResilientClient`.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::Utc;
use consult_protocol::{
    ClientFrame, ClinicId, CommandResult, ErrorCode, QuickTemplate, Role, ServerFrame, UserId,
    decode_client_frame,
};
use futures_util::{SinkExt, StreamExt};
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// What the scripted server saw.
#[derive(Debug, Default)]
struct Seen {
    path: String,
    hello_token: String,
    commands: Vec<ClientFrame>,
}

/// Serves one connection: welcomes any `hello`, answers each command with
/// `answer`, and returns what it saw once the client leaves.
async fn serve_once(
    answer: impl Fn(&ClientFrame) -> ServerFrame + Send + 'static,
) -> (SocketAddr, JoinHandle<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut seen = Seen::default();
        let path = &mut seen.path;
        // The error type is tungstenite's, fixed by its callback trait.
        #[allow(clippy::result_large_err)]
        let record_path = |request: &Request, response: Response| {
            *path = request.uri().to_string();
            Ok(response)
        };
        let mut socket = tokio_tungstenite::accept_hdr_async(tcp, record_path)
            .await
            .unwrap();
        while let Some(Ok(message)) = socket.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let reply = match decode_client_frame(text.as_str()).unwrap() {
                ClientFrame::Hello { token } => {
                    seen.hello_token = token;
                    welcome()
                }
                command => {
                    let reply = answer(&command);
                    seen.commands.push(command);
                    reply
                }
            };
            socket.send(Message::text(reply.to_json())).await.unwrap();
        }
        seen
    });
    (addr, task)
}

fn welcome() -> ServerFrame {
    ServerFrame::Welcome {
        protocol: 1,
        conn_id: "n1".to_owned(),
        user: UserId::from("dr-a"),
        role: Role::Provider,
        clinic: ClinicId::from("cl1"),
        heartbeat_secs: 20,
        max_frame_bytes: 65_536,
        server_time: Utc::now(),
        expires_at: None,
    }
}

fn template() -> QuickTemplate {
    QuickTemplate {
        id: "t1".to_owned(),
        clinic_id: ClinicId::from("cl1"),
        provider_id: None,
        title: "Running late".to_owned(),
        body: "Running {minutes} minutes late".to_owned(),
        position: 1,
        variables: vec!["minutes".to_owned()],
    }
}

/// Runs the CLI with `args`, `CONSULT_TOKEN` set to `env_token` (or unset).
async fn cli(args: &[&str], env_token: Option<&str>) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_consult-cli"));
    command
        .args(args)
        .env_remove("CONSULT_TOKEN")
        .env_remove("CONSULT_URL");
    if let Some(token) = env_token {
        command.env("CONSULT_TOKEN", token);
    }
    tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("the CLI finishes within 30 s")
        .unwrap()
}

fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/v1/ws")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn templates_uses_the_environment_token_only_in_hello_and_prints_each_template() {
    let (addr, server) = serve_once(|command| {
        let templates = vec![template()];
        ServerFrame::ok(
            command.id().cloned().unwrap(),
            Some(CommandResult::Templates { templates }),
        )
    })
    .await;

    let output = cli(&["templates", "--url", &url(addr)], Some("env-jwt")).await;

    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "t1 (clinic) \"Running late\": Running {minutes} minutes late [needs: minutes]\n"
    );
    let seen = server.await.unwrap();
    assert_eq!(seen.hello_token, "env-jwt");
    assert_eq!(seen.path, "/v1/ws", "nothing but the path in the URL");
    assert!(matches!(
        seen.commands[..],
        [ClientFrame::ListTemplates {
            provider_id: None,
            ..
        }]
    ));
}

#[tokio::test]
async fn a_token_file_wins_and_send_prints_the_sequence_number() {
    let (addr, server) = serve_once(|command| {
        let sent = CommandResult::Sent {
            seq: consult_protocol::Seq(7),
            duplicate: false,
            sent_at: Utc::now(),
        };
        ServerFrame::ok(command.id().cloned().unwrap(), Some(sent))
    })
    .await;
    let mut token_file = tempfile::NamedTempFile::new().unwrap();
    writeln!(token_file, "file-jwt").unwrap();
    let token_path = token_file.path().to_str().unwrap();

    let args = [
        "send",
        "--consultation",
        "k1",
        "--text",
        "hello",
        "--client-msg-id",
        "m-1",
        "--token-file",
        token_path,
        "--url",
        &url(addr),
    ];
    let output = cli(&args, Some("env-jwt")).await;

    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "sent #7\n");
    let seen = server.await.unwrap();
    assert_eq!(seen.hello_token, "file-jwt");
    let [
        ClientFrame::Send {
            client_msg_id,
            body,
            ..
        },
    ] = &seen.commands[..]
    else {
        panic!("{:?}", seen.commands);
    };
    assert_eq!((client_msg_id.as_str(), body.as_str()), ("m-1", "hello"));
}

#[tokio::test]
async fn a_refused_alert_prints_the_hub_code_and_exits_non_zero() {
    let (addr, server) = serve_once(|command| {
        let id = command.id().cloned();
        ServerFrame::error(id, ErrorCode::PrivacyViolation, "no names in alerts")
    })
    .await;

    let args = [
        "alert",
        "--consultation",
        "k1",
        "--text",
        "Pat, your results",
        "--push",
        "--url",
        &url(addr),
    ];
    let output = cli(&args, Some("jwt")).await;

    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "error: privacy_violation: no names in alerts\n"
    );
    let seen = server.await.unwrap();
    let [ClientFrame::Alert { channels, .. }] = &seen.commands[..] else {
        panic!("{:?}", seen.commands);
    };
    assert_eq!(channels, &[consult_protocol::AlertChannel::Push]);
}

#[tokio::test]
async fn without_a_token_nothing_is_attempted() {
    let output = cli(&["templates", "--url", "ws://127.0.0.1:9/v1/ws"], None).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr(&output);
    assert!(stderr.starts_with("error: token_missing: "), "{stderr}");
}

#[tokio::test]
async fn a_url_with_a_query_is_refused() {
    let output = cli(
        &["templates", "--url", "ws://127.0.0.1:9/v1/ws?token=x"],
        Some("jwt"),
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("error: invalid_url: "),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn an_unreachable_hub_is_a_connect_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let output = cli(&["templates", "--url", &url(addr)], Some("jwt")).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("error: connect_failed: "),
        "{}",
        stderr(&output)
    );
}
