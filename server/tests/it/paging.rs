//! Cursor paging on every REST list route: walking `next_cursor` from the
//! first page visits every row once, in the listing's order, each page at
//! most `limit` long, the last without a cursor; a made-up cursor and a
//! limit out of range are refused with 400 `invalid_value`.

use crate::harness::TestHub;
use crate::harness::providers::register_device;
use serde_json::{Value, json};

/// Which way a list's pages go.
#[derive(Clone, Copy)]
enum Order {
    /// Oldest first: each page follows the one before.
    Forward,
    /// Newest page first (messages, notifications): each page holds rows
    /// older than the one before, itself oldest first.
    Backward,
}

/// Walks `path` (which already has a `?`) page by page with `limit`;
/// returns every row of `key`, in the list's order.
async fn walk(hub: &TestHub, path: &str, key: &str, limit: usize, order: Order) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let url = match &cursor {
            None => format!("{path}&limit={limit}"),
            Some(cursor) => format!("{path}&limit={limit}&cursor={cursor}"),
        };
        let (status, page) = hub.api_get(&url).await;
        assert_eq!(status, 200, "{url}: {page}");
        let items = page[key].as_array().unwrap().clone();
        assert!(items.len() <= limit, "{page}");
        match order {
            Order::Forward => rows.extend(items),
            Order::Backward => rows.splice(0..0, items).for_each(drop),
        }
        match page.get("next_cursor").and_then(Value::as_str) {
            Some(next) => cursor = Some(next.to_owned()),
            None => return rows,
        }
    }
    panic!("{path}: no last page after 100");
}

/// Every row of `key` in one page.
async fn whole(hub: &TestHub, path: &str, key: &str) -> Vec<Value> {
    let (status, page) = hub.api_get(&format!("{path}&limit=200")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.get("next_cursor").is_none(), "{page}");
    page[key].as_array().unwrap().clone()
}

async fn assert_pages_walk_the_whole_list(
    hub: &TestHub,
    path: &str,
    key: &str,
    at_least: usize,
    order: Order,
) {
    let all = whole(hub, path, key).await;
    assert!(all.len() >= at_least, "{path}: {} rows", all.len());
    for limit in [1, 2, 3] {
        assert_eq!(
            walk(hub, path, key, limit, order).await,
            all,
            "{path} by {limit}"
        );
    }
}

#[tokio::test]
async fn consultations_page_by_scheduled_time_then_id() {
    let hub = TestHub::start().await;
    // Two share a scheduled time: the id orders them, and a page may end
    // between them.
    for (n, at) in [
        (1, "2026-12-05T09:00:00Z"),
        (2, "2026-12-05T09:00:00Z"),
        (3, "2026-12-05T08:00:00.123456Z"),
        (4, "2026-12-05T10:00:00Z"),
        (5, "2026-12-05T09:00:00Z"),
    ] {
        let (status, created) = hub
            .api_post(
                "/v1/consultations",
                json!({
                    "clinic_id": "clinic-pages",
                    "provider": {"id": "dr-pages", "display_name": "Dr P"},
                    "patient": {"id": format!("pat-pages-{n}"), "display_name": "Pat"},
                    "scheduled_at": at,
                }),
            )
            .await;
        assert_eq!(status, 201, "{created}");
    }
    let path = "/v1/consultations?clinic_id=clinic-pages";
    assert_pages_walk_the_whole_list(&hub, path, "consultations", 5, Order::Forward).await;
    let all = whole(&hub, path, "consultations").await;
    let times: Vec<&str> = all
        .iter()
        .map(|c| c["scheduled_at"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_unstable();
    assert_eq!(times, sorted);
}

#[tokio::test]
async fn messages_audit_notifications_and_templates_page_too() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-p", "pat-p", "waiting_for_patient")
        .await;
    let id = &consultation.id;
    // Three devices and an offline patient: each platform message queues
    // three push notifications.
    for token in ["tok-1", "tok-2", "tok-3"] {
        register_device(&hub, "pat-p", token, true).await;
    }
    for n in 0..4 {
        let (status, posted) = hub
            .api_post(
                &format!("/v1/consultations/{id}/messages"),
                json!({"client_msg_id": format!("m-{n}"), "body": "The clinic will call you."}),
            )
            .await;
        assert_eq!(status, 201, "{posted}");
    }
    for n in 0..3 {
        let (status, created) = hub
            .api_post(
                "/v1/clinics/clinic-1/templates",
                json!({"title": format!("Note {n}"), "body": "See you soon.", "position": 5,
                       "provider_id": if n == 0 { json!("dr-p") } else { Value::Null }}),
            )
            .await;
        assert_eq!(status, 201, "{created}");
    }

    let messages = format!("/v1/consultations/{id}/messages?");
    assert_pages_walk_the_whole_list(&hub, &messages, "messages", 4, Order::Backward).await;
    let all = walk(&hub, &messages, "messages", 1, Order::Backward).await;
    let seqs: Vec<u64> = all.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    let (_, page) = hub.api_get(&format!("{messages}limit=2")).await;
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!((seqs, &page["has_more"]), (vec![3, 4], &json!(true)));

    assert_pages_walk_the_whole_list(
        &hub,
        &format!("/v1/consultations/{id}/audit?"),
        "entries",
        5,
        Order::Forward,
    )
    .await;
    assert_pages_walk_the_whole_list(
        &hub,
        &format!("/v1/consultations/{id}/notifications?"),
        "notifications",
        12,
        Order::Backward,
    )
    .await;
    assert_pages_walk_the_whole_list(
        &hub,
        "/v1/clinics/clinic-1/templates?provider_id=dr-p",
        "templates",
        6,
        Order::Forward,
    )
    .await;
}

#[tokio::test]
async fn a_made_up_cursor_or_a_limit_out_of_range_is_refused() {
    let hub = TestHub::start().await;
    let consultation = hub
        .consultation("dr-q", "pat-q", "waiting_for_patient")
        .await;
    let id = &consultation.id;
    let lists = [
        "/v1/consultations?".to_owned(),
        format!("/v1/consultations/{id}/messages?"),
        format!("/v1/consultations/{id}/audit?"),
        format!("/v1/consultations/{id}/notifications?"),
        "/v1/clinics/clinic-1/templates?".to_owned(),
    ];
    // Not base64, base64 of something else, and a cursor of another list.
    let foreign = "WyIxNyJd"; // ["17"]: a one-part position
    for path in &lists {
        for cursor in ["%21%21", "e30", foreign, "WyJ4IiwieSIsInoiLCJ3Il0"] {
            let url = format!("{path}cursor={cursor}");
            let (status, body) = hub.api_get(&url).await;
            // A one-part position is a real messages or audit cursor shape:
            // its number is taken as a position there.
            if cursor == foreign && (path.contains("/messages") || path.contains("/audit")) {
                assert_eq!(status, 200, "{url}: {body}");
                continue;
            }
            assert_eq!(
                (status, &body["code"]),
                (400, &json!("invalid_value")),
                "{url}"
            );
        }
        for limit in ["0", "1000"] {
            let url = format!("{path}limit={limit}");
            let (status, body) = hub.api_get(&url).await;
            assert_eq!(
                (status, &body["code"]),
                (400, &json!("invalid_value")),
                "{url}"
            );
        }
    }
    let (status, body) = hub
        .api_get(&format!(
            "/v1/consultations/{id}/messages?before=3&cursor=WyIzIl0"
        ))
        .await;
    assert_eq!((status, &body["code"]), (400, &json!("invalid_value")));
}
