//! The reconnect schedule: the pure delay formula, and the waits the client
//! really takes under paused time.

use super::*;
use tokio::time::Instant;

#[test]
fn delays_double_from_base_to_the_cap() {
    let backoff = config().backoff;
    let delays: Vec<Duration> = (1..=5).map(|attempt| backoff.delay(attempt, 0.7)).collect();
    assert_eq!(delays, [ms(100), ms(200), ms(400), ms(400), ms(400)]);
    assert_eq!(backoff.delay(u32::MAX, 0.0), ms(400), "no overflow");
}

#[test]
fn jitter_shortens_each_delay_by_at_most_its_share() {
    let backoff = Backoff {
        jitter: 0.5,
        ..config().backoff
    };
    assert_eq!(backoff.delay(2, 0.0), ms(200));
    assert_eq!(backoff.delay(2, 0.5), ms(150));
    assert!(backoff.delay(2, 0.999_999) > ms(100));
    let full = Backoff {
        jitter: 7.0,
        ..config().backoff
    };
    assert_eq!(full.delay(1, 1.0), Duration::ZERO, "jitter is clamped to 1");
}

/// The delays of the `Reconnecting` states in `events`.
fn delays(events: &[ResilientEvent]) -> Vec<Duration> {
    states(events)
        .into_iter()
        .filter_map(|state| match state {
            ConnectionState::Reconnecting { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_client_waits_as_scheduled_and_resets_after_a_stable_connection() {
    let hub = FakeHub::default();
    let client = start(&hub, config()).await;
    hub.state().refuse = true;
    hub.kill(Kill::Drop);
    let two_failures = |event: &ResilientEvent| {
        matches!(
            event,
            ResilientEvent::State(ConnectionState::Reconnecting { attempt: 3, .. })
        )
    };
    let mut events = until(&client, two_failures).await;
    hub.state().refuse = false;
    let started = Instant::now();
    events.extend(until(&client, is_resumed).await);
    assert_eq!(started.elapsed(), ms(400), "the third wait");
    assert_eq!(delays(&events), [ms(100), ms(200), ms(400)]);

    // Dropped again at once: the schedule goes on from where it was.
    hub.kill(Kill::Drop);
    assert_eq!(delays(&until(&client, is_resumed).await), [ms(400)]);

    // Dropped after staying up: it starts again from the base.
    tokio::time::sleep(Duration::from_secs(11)).await;
    hub.kill(Kill::Drop);
    assert_eq!(delays(&until(&client, is_resumed).await), [ms(100)]);
}

#[tokio::test(start_paused = true)]
async fn max_attempts_gives_up_with_the_last_error() {
    let hub = FakeHub::default();
    let limited = ResilientConfig {
        backoff: Backoff {
            max_attempts: Some(2),
            ..config().backoff
        },
        ..config()
    };
    let client = start(&hub, limited).await;
    hub.state().refuse = true;
    hub.kill(Kill::Drop);
    let info = client.closed().await;
    assert!(info.reason.starts_with("gave up after 2"), "{info}");
    assert_eq!(client.stats().attempts, 2);
}
