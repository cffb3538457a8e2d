//! The Rust SDK keeps a connection alive past its token's expiry: the
//! `ResilientClient` asks its token provider for a fresh token and sends
//! `refresh` before `exp`, so the hub never closes it and it never
//! reconnects. Without in-band refresh it is closed with 4005 and
//! reconnects with a fresh token.

use crate::token_life::{hub_without_leeway, short_token};
use consult_client::{ClientError, ResilientClient, ResilientConfig, ResilientEvent};
use consult_protocol::{ConsultationId, Role, Seq, ServerFrame};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Waits for message `body` of `consultation`; returns the close codes of
/// any disconnection seen on the way.
async fn wait_for_message(
    client: &ResilientClient,
    consultation: &ConsultationId,
    body: &str,
) -> Vec<Option<u16>> {
    let mut closes = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), client.next_event())
            .await
            .expect("the message within 10 s")
            .expect("still open");
        match event {
            ResilientEvent::Frame(ServerFrame::Message { message })
                if &message.consultation_id == consultation && message.body == body =>
            {
                return closes;
            }
            ResilientEvent::State(consult_client::ConnectionState::Disconnected(info)) => {
                closes.push(info.code);
            }
            _ => {}
        }
    }
}

async fn run(refresh_before: Option<Duration>) -> (Vec<Option<u16>>, u32, u64) {
    let hub = Arc::new(hub_without_leeway().await);
    let consultation = hub
        .consultation("dr-a", "pat-a", "waiting_for_patient")
        .await;
    let issued = Arc::new(AtomicU32::new(0));
    let tokens = {
        let (hub, issued) = (hub.clone(), issued.clone());
        move || {
            let (hub, issued) = (hub.clone(), issued.clone());
            async move {
                issued.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ClientError>(short_token(&hub, "dr-a", Role::Provider, 3).0)
            }
        }
    };
    let config = ResilientConfig {
        refresh_before,
        ..ResilientConfig::default()
    };
    let (client, welcome) = ResilientClient::connect(hub.ws_url(), tokens, config)
        .await
        .unwrap();
    assert!(welcome.expires_at.is_some());
    client.join(&consultation.id, Some(Seq(0))).await.unwrap();
    let patient = hub.connect("pat-a", Role::Patient).await;
    // Past two lifetimes of the first token.
    tokio::time::sleep(Duration::from_secs(6)).await;
    patient
        .send(&consultation.id, "m-1", "six seconds later")
        .await
        .unwrap();
    let closes = wait_for_message(&client, &consultation.id, "six seconds later").await;
    (
        closes,
        issued.load(Ordering::SeqCst),
        client.stats().attempts,
    )
}

#[tokio::test]
async fn the_resilient_client_refreshes_in_band_and_never_reconnects() {
    let (closes, issued, attempts) = run(Some(Duration::from_secs(60))).await;
    assert_eq!(closes, Vec::<Option<u16>>::new());
    assert_eq!(attempts, 0);
    assert!(issued >= 3, "only {issued} tokens asked for");
}

#[tokio::test]
async fn without_refresh_the_client_is_closed_with_4005_and_reconnects() {
    let (closes, _, attempts) = run(None).await;
    assert!(closes.contains(&Some(4005)), "{closes:?}");
    assert!(attempts >= 1);
}

#[tokio::test]
async fn a_fixed_token_is_not_refreshed_over_and_over_and_ends_in_4001() {
    let hub = hub_without_leeway().await;
    let (token, _) = short_token(&hub, "dr-a", Role::Provider, 3);
    let (client, _) = ResilientClient::connect(hub.ws_url(), token, ResilientConfig::default())
        .await
        .unwrap();
    let info = tokio::time::timeout(Duration::from_secs(10), client.closed())
        .await
        .expect("closed for good once the token has expired");
    // Expired at the reconnect's hello: refused, which is final.
    assert_eq!(info.code, Some(4001), "{info}");
    let refreshes = crate::harness::metric(
        &hub.metrics_text().await,
        "consult_command_seconds_count{command=\"refresh\"}",
    );
    assert!(
        refreshes <= 1.0,
        "{refreshes} refreshes with the same token"
    );
}
