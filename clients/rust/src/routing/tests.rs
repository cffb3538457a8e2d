//! Routing answers to waiting callers, and command ids.

use super::*;
use consult_protocol::{ConsultationId, ErrorCode, Role, UserId};

fn presence() -> ServerFrame {
    ServerFrame::Presence {
        consultation_id: ConsultationId::from("k1"),
        user: UserId::from("u1"),
        role: Role::Patient,
        online: true,
    }
}

#[test]
fn command_ids_count_up_from_one() {
    let ids = CommandIds::default();
    assert_eq!(ids.next(), CommandId::from("c1"));
    assert_eq!(ids.next(), CommandId::from("c2"));
}

#[test]
fn command_ids_are_unique_across_threads() {
    let ids = CommandIds::default();
    let mut all: Vec<CommandId> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| (0..250).map(|_| ids.next()).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    });
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 1000);
}

#[test]
fn ok_goes_to_the_waiting_caller() {
    let mut routes = Routes::default();
    let (reply_tx, mut reply_rx) = oneshot::channel();
    assert!(routes.insert(CommandId::from("c1"), reply_tx));

    assert_eq!(routes.route(ServerFrame::ok("c1".into(), None)), None);
    assert!(matches!(reply_rx.try_recv(), Ok(Ok(None))));
}

#[test]
fn error_with_a_waiting_id_becomes_a_command_error() {
    let mut routes = Routes::default();
    let (reply_tx, mut reply_rx) = oneshot::channel();
    routes.insert(CommandId::from("c1"), reply_tx);

    let frame = ServerFrame::error(Some("c1".into()), ErrorCode::Forbidden, "no");
    assert_eq!(routes.route(frame), None);
    let error = reply_rx.try_recv().unwrap().unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::Forbidden));
}

#[test]
fn unclaimed_answers_and_room_frames_are_events() {
    let mut routes = Routes::default();
    let unknown_ok = ServerFrame::ok("x9".into(), None);
    let unknown_error = ServerFrame::error(Some("x9".into()), ErrorCode::UnknownType, "?");
    let anonymous_error = ServerFrame::error(None, ErrorCode::InvalidJson, "?");

    for frame in [unknown_ok, unknown_error, anonymous_error, presence()] {
        assert_eq!(routes.route(frame.clone()), Some(frame));
    }
}

#[test]
fn an_answer_is_delivered_once() {
    let mut routes = Routes::default();
    let (reply_tx, _reply_rx) = oneshot::channel();
    routes.insert(CommandId::from("c1"), reply_tx);

    assert_eq!(routes.route(ServerFrame::ok("c1".into(), None)), None);
    let again = ServerFrame::ok("c1".into(), None);
    assert_eq!(routes.route(again.clone()), Some(again));
}

#[test]
fn late_answer_for_a_caller_that_gave_up_is_not_an_event() {
    let mut routes = Routes::default();
    let (reply_tx, reply_rx) = oneshot::channel();
    routes.insert(CommandId::from("c1"), reply_tx);
    drop(reply_rx);

    assert_eq!(routes.route(ServerFrame::ok("c1".into(), None)), None);
}

#[test]
fn duplicate_id_is_refused_and_the_first_caller_keeps_waiting() {
    let mut routes = Routes::default();
    let (first_tx, mut first_rx) = oneshot::channel();
    let (second_tx, mut second_rx) = oneshot::channel();
    assert!(routes.insert(CommandId::from("c1"), first_tx));
    assert!(!routes.insert(CommandId::from("c1"), second_tx));

    assert!(matches!(
        second_rx.try_recv(),
        Ok(Err(ClientError::Protocol(_)))
    ));
    routes.route(ServerFrame::ok("c1".into(), None));
    assert!(matches!(first_rx.try_recv(), Ok(Ok(None))));
}

#[test]
fn fail_all_releases_every_caller() {
    let mut routes = Routes::default();
    let (reply_tx, mut reply_rx) = oneshot::channel();
    routes.insert(CommandId::from("c1"), reply_tx);

    routes.fail_all();
    assert!(matches!(
        reply_rx.try_recv(),
        Err(oneshot::error::TryRecvError::Closed)
    ));
}
