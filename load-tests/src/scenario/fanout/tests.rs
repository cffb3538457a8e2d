//! Unit tests for the fanout scenario's plumbing.

use super::*;

#[test]
fn members_connect_from_the_loopback_sources_only_towards_a_loopback_hub() {
    let loopback = loopback_sources(2);
    let local = "ws://127.0.0.1:8080/v1/ws";
    assert_eq!(member_source(local, 0, &loopback).ok(), Some(loopback[0]));
    assert_eq!(member_source(local, 3, &loopback).ok(), Some(loopback[1]));
    let remote = "ws://10.1.2.3:8080/v1/ws";
    assert_eq!(
        member_source(remote, 0, &loopback).ok(),
        Some(Ipv4Addr::UNSPECIFIED)
    );
    assert!(member_source("ws://hub.example:8080/v1/ws", 0, &loopback).is_err());
}

#[tokio::test]
async fn connection_tries_are_repeated_up_to_the_limit_and_every_failure_counted() {
    let failures = ConnectFailures::default();
    let tries = std::sync::atomic::AtomicU32::new(0);
    let third_succeeds = retrying(5, &failures, || async {
        let n = tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if n < 3 {
            anyhow::bail!("refused {n}")
        }
        Ok(n)
    })
    .await;
    assert_eq!(third_succeeds.ok(), Some(3));
    assert_eq!(failures.take(), (2, Some("refused 1".to_owned())));

    let never: Result<()> = retrying(2, &failures, || async { anyhow::bail!("down") }).await;
    assert!(never.is_err());
    assert_eq!(failures.take(), (2, Some("down".to_owned())));
}
