//! The OpenAPI document: served at `/v1/openapi.json` without a key,
//! identical to the committed `docs/openapi.json`, and in step with the
//! router and with docs/http-api.md's route table.

use crate::harness::TestHub;
use std::collections::BTreeSet;

/// The committed copy; `CONSULT_UPDATE_OPENAPI=1` rewrites it.
const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

fn served() -> serde_json::Value {
    serde_json::from_str(&consult_hub::http::openapi_json()).unwrap()
}

#[test]
fn the_committed_document_is_the_one_the_hub_serves() {
    let generated = consult_hub::http::openapi_json() + "\n";
    if std::env::var_os("CONSULT_UPDATE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json differs from the generated document; run \
         CONSULT_UPDATE_OPENAPI=1 cargo nextest run -p consult-hub --test it openapi and commit it"
    );
}

/// (method, path) of every operation in the document.
fn operations(document: &serde_json::Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                found.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    found
}

/// (method, path) of every `/v1/` REST route in docs/http-api.md's table.
fn documented_in_markdown() -> BTreeSet<(String, String)> {
    let text = include_str!("../../../docs/http-api.md");
    text.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let method = cells.get(1)?.trim_matches('`');
            let path = cells.get(2)?.trim_matches('`');
            (["GET", "PUT", "POST", "DELETE"].contains(&method) && path.starts_with("/v1/"))
                .then(|| (method.to_owned(), path.to_owned()))
        })
        .filter(|(_, path)| path != "/v1/ws")
        .collect()
}

#[test]
fn every_route_of_the_markdown_table_is_in_the_document_and_no_other() {
    let in_document = operations(&served());
    let in_markdown = documented_in_markdown();
    assert!(in_markdown.len() >= 25, "{in_markdown:?}");
    assert_eq!(in_document, in_markdown);
}

#[test]
fn the_router_registers_rest_routes_only_with_their_documentation() {
    // A route added with a plain `.route(…)` would be served but missing
    // from the document: only the four outside the REST API may be.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http");
    let mut plain = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines().filter(|line| line.contains(".route(")) {
            plain.push(line.trim().to_owned());
        }
    }
    plain.sort();
    assert_eq!(
        plain,
        [
            r#".route("/healthz", get(health::healthz))"#,
            r#".route("/metrics", get(health::metrics))"#,
            r#".route("/readyz", get(health::readyz))"#,
            r#".route("/v1/ws", get(ws::upgrade))"#,
        ]
    );
}

#[tokio::test]
async fn the_document_is_served_without_a_key_and_every_operation_in_it_is_routed() {
    let hub = TestHub::start().await;
    let http = reqwest::Client::new();
    let answer = http.get(hub.url("/v1/openapi.json")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "application/json");
    let document: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(document, served());
    assert_eq!(document["openapi"], "3.1.0");
    // Every operation exists in the router: without a key each is refused
    // 401 (not 404 or 405), the inbound SMS included (no Twilio here).
    for (method, path) in operations(&document) {
        if path == "/v1/openapi.json" {
            continue;
        }
        let url = hub.url(&path.replace('{', "x").replace('}', ""));
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let answer = http.request(method.clone(), &url).send().await.unwrap();
        assert_eq!(answer.status(), 401, "{method} {path}");
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized", "{method} {path}");
    }
}

#[tokio::test]
async fn a_known_path_with_another_method_gets_a_json_405() {
    let hub = TestHub::start().await;
    let answer = reqwest::Client::new()
        .delete(hub.url("/v1/consultations"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 405);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["code"], "method_not_allowed");
}
