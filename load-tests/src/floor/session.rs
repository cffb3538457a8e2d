//! One floor connection: `hello` (the token is read, not checked), then
//! `join`, `leave`, `send`, `ack` and `ping`; anything else is refused with
//! an `error` frame. An `ack` in a joined room sends the room a `receipt`
//! frame, as a receipt that moved does on the hub (the floor stores no
//! receipts, in either of its stores). Frames queued for the connection are
//! written together with the answer that follows them and flushed once, as
//! the hub does with a send's `ok` and the sender's own copy.

use super::store::NewMessage;
use super::{Floor, Joined};
use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use chrono::Utc;
use consult_protocol::{
    ChatMessage, ClientFrame, ClinicId, CommandId, CommandResult, ConsultationId, ErrorCode,
    Member, MessageKind, PROTOCOL_VERSION, Role, Seq, ServerFrame, UserId, decode_client_frame,
};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Largest text frame accepted, as the hub's default.
const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Who a connection speaks for once `hello` named it.
struct Caller {
    user: UserId,
    role: Role,
}

/// Serves one upgraded connection until it closes.
pub(super) async fn run(socket: WebSocket, floor: Arc<Floor>, capacity: usize) {
    let conn = floor.next_conn();
    let (outbound_tx, mut outbound) = mpsc::channel::<Utf8Bytes>(capacity);
    let (mut sink, mut stream) = socket.split();
    let mut caller: Option<Caller> = None;
    let mut rooms: HashSet<ConsultationId> = HashSet::new();
    loop {
        let answer = tokio::select! {
            biased;
            queued = outbound.recv() => match queued {
                Some(frame) => {
                    if sink.feed(Message::Text(frame)).await.is_err() {
                        break;
                    }
                    None
                }
                None => break,
            },
            inbound = stream.next() => match inbound {
                Some(Ok(Message::Text(text))) => Some(
                    answer(&floor, conn, &text, &mut caller, &mut rooms, &outbound_tx).await,
                ),
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => None,
            },
        };
        if let Some(frame) = answer {
            if sink
                .feed(Message::Text(frame.to_json().into()))
                .await
                .is_err()
            {
                break;
            }
        }
        // Whatever was queued meanwhile (the sender's own copy) goes out
        // in the same flush.
        while let Ok(frame) = outbound.try_recv() {
            if sink.feed(Message::Text(frame)).await.is_err() {
                break;
            }
        }
        if sink.flush().await.is_err() {
            break;
        }
    }
    for room in &rooms {
        floor.leave(room, conn);
    }
}

async fn answer(
    floor: &Floor,
    conn: u64,
    text: &str,
    caller: &mut Option<Caller>,
    rooms: &mut HashSet<ConsultationId>,
    outbound: &mpsc::Sender<Utf8Bytes>,
) -> ServerFrame {
    if text.len() > MAX_FRAME_BYTES {
        return ServerFrame::error(None, ErrorCode::FrameTooLarge, "frame too large");
    }
    let frame = match decode_client_frame(text) {
        Ok(frame) => frame,
        Err(error) => return ServerFrame::error(error.id, error.code, error.message),
    };
    let ClientFrame::Hello { token } = &frame else {
        let Some(who) = caller.as_ref() else {
            return ServerFrame::error(
                frame.id().cloned(),
                ErrorCode::HelloRequired,
                "send hello first",
            );
        };
        return command(floor, conn, frame, who, rooms, outbound).await;
    };
    let Ok((user, role, clinic)) = serde_json::from_str::<(UserId, Role, ClinicId)>(token) else {
        return ServerFrame::error(None, ErrorCode::InvalidToken, "not a floor token");
    };
    *caller = Some(Caller {
        user: user.clone(),
        role,
    });
    ServerFrame::Welcome {
        protocol: PROTOCOL_VERSION,
        conn_id: conn.to_string(),
        user,
        role,
        clinic,
        heartbeat_secs: 30,
        max_frame_bytes: MAX_FRAME_BYTES,
        server_time: Utc::now(),
        expires_at: None,
    }
}

async fn command(
    floor: &Floor,
    conn: u64,
    frame: ClientFrame,
    caller: &Caller,
    rooms: &mut HashSet<ConsultationId>,
    outbound: &mpsc::Sender<Utf8Bytes>,
) -> ServerFrame {
    let ok = |id: CommandId, result: Option<CommandResult>| ServerFrame::Ok { id, result };
    match frame {
        ClientFrame::Join {
            id,
            consultation_id,
            ..
        } => {
            let member = Member {
                user: caller.user.clone(),
                role: caller.role,
            };
            let joined = Joined::new(conn, member, outbound.clone());
            match floor.join(&consultation_id, joined) {
                Some((consultation, members)) => {
                    rooms.insert(consultation_id);
                    ok(
                        id,
                        Some(CommandResult::Joined {
                            consultation,
                            members,
                            replayed: 0,
                        }),
                    )
                }
                None => not_found(id, &consultation_id),
            }
        }
        ClientFrame::Leave {
            id,
            consultation_id,
        } => {
            floor.leave(&consultation_id, conn);
            rooms.remove(&consultation_id);
            ok(id, None)
        }
        ClientFrame::Send {
            id,
            consultation_id,
            client_msg_id,
            body,
        } => {
            let (seq, sent_at, members) = if let Some(store) = &floor.store {
                if !floor.has_room(&consultation_id) {
                    return not_found(id, &consultation_id);
                }
                let stored = store
                    .append(NewMessage {
                        room: consultation_id.to_string(),
                        sender: caller.user.to_string(),
                        sender_role: caller.role.as_str(),
                        body: body.clone(),
                        client_msg_id: client_msg_id.clone(),
                    })
                    .await;
                match stored {
                    Ok((seq, sent_at)) => {
                        let seq = Seq(seq);
                        (seq, sent_at, floor.stored(&consultation_id, seq))
                    }
                    Err(error) => {
                        return ServerFrame::error(Some(id), ErrorCode::Internal, error);
                    }
                }
            } else {
                let Some((seq, members)) = floor.next_seq(&consultation_id) else {
                    return not_found(id, &consultation_id);
                };
                (seq, Utc::now(), members)
            };
            let message = ServerFrame::Message {
                message: ChatMessage {
                    consultation_id,
                    seq,
                    sender: caller.user.clone(),
                    sender_role: caller.role,
                    kind: MessageKind::Chat,
                    body,
                    client_msg_id: Some(client_msg_id),
                    sent_at,
                },
            };
            let encoded = Utf8Bytes::from(message.to_json());
            for member in &members {
                member.deliver(&encoded);
            }
            ok(
                id,
                Some(CommandResult::Sent {
                    seq,
                    duplicate: false,
                    sent_at,
                }),
            )
        }
        ClientFrame::Ack {
            id,
            consultation_id,
            seq,
            receipt,
        } => {
            // As the hub does for a receipt that moved: one `receipt` frame
            // to every connection joined to the room, the originator's
            // included (its copy goes out in the flush of its `ok`). The
            // floor keeps no positions, so every `ack` of a joined caller
            // moves.
            if rooms.contains(&consultation_id) {
                let frame = ServerFrame::Receipt {
                    consultation_id: consultation_id.clone(),
                    user: caller.user.clone(),
                    role: caller.role,
                    seq,
                    receipt,
                };
                let encoded = Utf8Bytes::from(frame.to_json());
                for member in floor.members(&consultation_id) {
                    member.deliver(&encoded);
                }
            }
            ok(id, None)
        }
        ClientFrame::Ping { id } => ok(
            id,
            Some(CommandResult::Pong {
                server_time: Utc::now(),
            }),
        ),
        other => ServerFrame::error(
            other.id().cloned(),
            ErrorCode::UnknownType,
            "the floor answers hello, join, leave, send, ack and ping only",
        ),
    }
}

fn not_found(id: CommandId, room: &ConsultationId) -> ServerFrame {
    ServerFrame::error(Some(id), ErrorCode::NotFound, format!("no room {room}"))
}
