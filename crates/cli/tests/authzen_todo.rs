//! The AuthZEN working group's Todo interop decisions (43 cases), over HTTP,
//! against `examples/authzen-todo`, on SQLite and on PostgreSQL. Then the audit
//! log of the run must verify and hold one record per decision.

mod common;

use common::{TestStore, backends, mandate, post_json, repo_root};
use serde_json::Value;

fn fixture() -> Value {
    // A verbatim copy of the working group's file (see SOURCE.md beside it).
    let path = repo_root().join("crates/cli/tests/fixtures/authzen-todo/decisions.json");
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn all_43_todo_interop_cases_pass_over_http_on_every_backend() {
    let cases = fixture();
    let single = cases["evaluation"].as_array().unwrap();
    let batches = cases["evaluations"].as_array().unwrap();
    assert_eq!(single.len() + batches.len(), 43);
    let client = reqwest::Client::new();
    for backend in backends() {
        let store = TestStore::new(backend).await;
        let mut node = store.start_todo_node();
        let mut records = 0;
        for (i, case) in single.iter().enumerate() {
            let (status, body) = post_json(
                &client,
                &node.url("/access/v1/evaluation"),
                &case["request"],
            )
            .await;
            assert_eq!(status, 200, "{backend:?} case {i}: {body}");
            assert_eq!(
                body["decision"], case["expected"],
                "{backend:?} case {i}: {}",
                case["request"]
            );
            records += 1;
        }
        for (i, case) in batches.iter().enumerate() {
            let (status, body) = post_json(
                &client,
                &node.url("/access/v1/evaluations"),
                &case["request"],
            )
            .await;
            assert_eq!(status, 200, "{backend:?} batch {i}: {body}");
            let got: Vec<Value> = body["evaluations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| serde_json::json!({"decision": e["decision"]}))
                .collect();
            assert_eq!(Value::Array(got), case["expected"], "{backend:?} batch {i}");
            // Items carry exactly `decision` and, optionally, `context`.
            for item in body["evaluations"].as_array().unwrap() {
                let keys: Vec<&String> = item.as_object().unwrap().keys().collect();
                assert!(
                    keys.iter().all(|k| *k == "decision" || *k == "context"),
                    "{item}"
                );
            }
            records += case["expected"].as_array().unwrap().len();
        }
        assert!(node.stop().success(), "{}", node.logs());
        let out = mandate(&["audit", "verify", "--database", &store.url]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{backend:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.starts_with(&format!(
                "audit log intact: {} records",
                records + common::FIRST_START_RECORDS
            )),
            "{backend:?}: {stdout}"
        );
        store.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_and_request_ids_follow_the_specification() {
    let store = TestStore::new(common::Backend::Sqlite).await;
    let node = store.start_todo_node();
    let client = reqwest::Client::new();
    let meta: Value = client
        .get(node.url("/.well-known/authzen-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["policy_decision_point"], node.base);
    assert_eq!(
        meta["access_evaluation_endpoint"],
        node.url("/access/v1/evaluation")
    );
    assert_eq!(
        meta["access_evaluations_endpoint"],
        node.url("/access/v1/evaluations")
    );

    let request = serde_json::json!({
        "subject": {"type": "user", "id": "CiRmZDM2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"},
        "action": {"name": "can_create_todo"},
        "resource": {"type": "todo", "id": "todo-1"}
    });
    let response = client
        .post(node.url("/access/v1/evaluation"))
        .header("x-request-id", "pep-trace-42")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "pep-trace-42");
    let body: Value = response.json().await.unwrap();
    // Beth is a viewer: denied, and told why.
    assert_eq!(body["decision"], false);
    assert_eq!(
        body["context"]["reason_admin"]["en"],
        "no permit policy matched (default deny)"
    );
    // Without an ID from the caller, one is made up and returned.
    let response = client
        .post(node.url("/access/v1/evaluation"))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"].len(), 36);
    drop(node);
    let tail = mandate(&[
        "audit",
        "tail",
        "--database",
        &store.url,
        "--json",
        "-n",
        "2",
    ]);
    let text = String::from_utf8_lossy(&tail.stdout);
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["request_id"], "pep-trace-42");
    assert_eq!(first["outcome"], "deny");
    store.cleanup().await;
}
