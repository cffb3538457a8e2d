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
