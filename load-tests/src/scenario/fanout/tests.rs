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

#[test]
fn slow_disk_syncs_are_listed_from_the_sending_start_and_the_rest_counted() {
    let start = 10_000_000;
    assert_eq!(
        slow_syncs_line(&[], start),
        "disk syncs of 20 ms or more: 0"
    );
    let slow = [
        SlowSync {
            at_unix_us: start - 200_000,
            took_us: 31_000,
        },
        SlowSync {
            at_unix_us: start + 10_300_000,
            took_us: 154_400,
        },
    ];
    assert_eq!(
        slow_syncs_line(&slow, start),
        "disk syncs of 20 ms or more: 2, at -0.2 s (31 ms), 10.3 s (154 ms)"
    );
    let many: Vec<SlowSync> = (0..12)
        .map(|i| SlowSync {
            at_unix_us: start + i * 1_000_000,
            took_us: 20_000,
        })
        .collect();
    let line = slow_syncs_line(&many, start);
    assert!(
        line.starts_with("disk syncs of 20 ms or more: 12, at 0.0 s (20 ms), 1.0 s"),
        "{line}"
    );
    assert!(line.ends_with("9.0 s (20 ms) and 2 more"), "{line}");
}
