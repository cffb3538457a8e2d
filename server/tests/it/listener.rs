//! The listener's accept backlog: a burst of connects larger than the
//! standard library's 128 is held by the kernel until the hub accepts it,
//! instead of losing SYNs that clients retry only after a second. And every
//! accepted connection has Nagle's algorithm off.

use consult_hub::app::bind_listener;
use consult_hub::http::serve::without_nagle;
use futures_util::future::join_all;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::timeout;

const BURST: usize = 300;

/// Connects `BURST` clients at once without the listener accepting any;
/// returns those whose handshake completed within a second.
async fn burst(address: SocketAddr) -> Vec<TcpStream> {
    let connects = (0..BURST).map(|_| async move {
        timeout(Duration::from_secs(1), TcpStream::connect(address))
            .await
            .ok()
            .and_then(Result::ok)
    });
    join_all(connects).await.into_iter().flatten().collect()
}

#[tokio::test]
async fn a_burst_larger_than_128_connects_at_once_with_the_configured_backlog() {
    let listener = bind_listener("127.0.0.1:0".parse().unwrap(), 1024, 0).unwrap();
    let connected = burst(listener.local_addr().unwrap()).await;
    assert_eq!(connected.len(), BURST, "every handshake completed");
    for _ in 0..BURST {
        timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("the queued connection is accepted")
            .unwrap();
    }
}

#[tokio::test]
async fn a_small_backlog_leaves_most_of_the_burst_waiting() {
    let listener = bind_listener("127.0.0.1:0".parse().unwrap(), 16, 0).unwrap();
    let connected = burst(listener.local_addr().unwrap()).await;
    assert!(
        connected.len() < BURST / 2,
        "{} of {BURST} connected past a backlog of 16",
        connected.len()
    );
}

#[tokio::test]
async fn accepted_connections_have_nagle_off() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let plain = TcpStream::connect(address).await.unwrap();
    let (accepted_plain, _) = listener.accept().await.unwrap();
    assert!(
        !accepted_plain.nodelay().unwrap(),
        "a plain accept leaves Nagle on, so the wrapper is what turns it off"
    );
    let _client = TcpStream::connect(address).await.unwrap();
    let (accepted, _) = without_nagle(
        timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("the connection is accepted")
            .unwrap(),
    );
    assert!(accepted.nodelay().unwrap());
    drop(plain);
}
