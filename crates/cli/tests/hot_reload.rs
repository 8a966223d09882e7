//! Policy hot reload on a running node: an edit saved the way editors save
//! (write beside, rename over) takes effect within a couple of polls; a broken
//! edit keeps the previous policies serving and is reported on `/readyz` and
//! `/metrics` until it is fixed; SIGHUP reloads without any file change.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Backend, Node, TestStore, todo_policies};
use serde_json::{Value, json};

/// Beth Smith, a viewer: may read todos but not create them.
const BETH: &str = "CiRmZDM2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";
const EDITORS_CREATE: &str = r#"principal in Role::"admin" || principal in Role::"editor""#;
const VIEWERS_CREATE_TOO: &str =
    r#"principal in Role::"admin" || principal in Role::"editor" || principal in Role::"viewer""#;

/// Saves `text` as `dir/todo.cedar` the way an editor does: written in full to a
/// file the loader ignores, then renamed over the original.
fn save_policy(dir: &Path, text: &str) {
    let temp = dir.join("todo.cedar.saving");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, dir.join("todo.cedar")).unwrap();
}

async fn beth_may_create(client: &reqwest::Client, node: &Node) -> bool {
    let request = json!({
        "subject": {"type": "user", "id": BETH},
        "action": {"name": "can_create_todo"},
        "resource": {"type": "todo", "id": "todo-1"}
    });
    let (status, body) =
        common::post_json(client, &node.url("/access/v1/evaluation"), &request).await;
    assert_eq!(status, 200, "{body}");
    body["decision"]
        .as_bool()
        .unwrap_or_else(|| panic!("no decision: {body}"))
}

async fn readyz(client: &reqwest::Client, node: &Node) -> Value {
    let response = client.get(node.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.unwrap()
}

/// The value of an unlabelled metric, or `None` if it is not exported yet.
async fn metric(client: &reqwest::Client, node: &Node, name: &str) -> Option<f64> {
    let text = client
        .get(node.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map(|value| value.trim().parse().unwrap())
        .next()
}

/// Polls `check` every 100 ms until it holds, failing after 2 s.
async fn within_2s<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "not within 2 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn saved_edits_take_effect_and_broken_ones_keep_the_previous_policies() {
    let store = TestStore::new(Backend::Sqlite).await;
    let policies = store.dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    for file in ["todo.cedar", "todo.cedarschema", "entities.json"] {
        std::fs::copy(todo_policies().join(file), policies.join(file)).unwrap();
    }
    let original = std::fs::read_to_string(policies.join("todo.cedar")).unwrap();
    assert!(original.contains(EDITORS_CREATE));
    let config = store.dir.path().join("mandate.toml");
    std::fs::write(&config, "policy_poll_ms = 200\n").unwrap();
    let mut node = Node::start(
        &store.dir.path().join("data"),
        &store.url,
        &policies,
        &["--config", config.to_str().unwrap()],
    );
    let client = reqwest::Client::new();
    assert!(!beth_may_create(&client, &node).await);
    let ready = readyz(&client, &node).await;
    assert_eq!(ready["policies"]["generation"], 1);
    assert_eq!(ready["policies"]["last_reload_error"], Value::Null);

    // Viewers may now create too.
    save_policy(
        &policies,
        &original.replace(EDITORS_CREATE, VIEWERS_CREATE_TOO),
    );
    within_2s("the edit lets Beth create", async || {
        beth_may_create(&client, &node).await
    })
    .await;
    let ready = readyz(&client, &node).await;
    assert_eq!(ready["policies"]["generation"], 2);
    assert_eq!(ready["policies"]["count"], 7);

    // A broken edit: the policies in service stay, and the failure shows.
    save_policy(
        &policies,
        "permit (principal, action, resource) when { oops ;\n",
    );
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        assert!(
            beth_may_create(&client, &node).await,
            "a broken edit changed a decision"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = readyz(&client, &node).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["policies"]["generation"], 2);
    let error = ready["policies"]["last_reload_error"]
        .as_str()
        .unwrap_or_else(|| panic!("{ready}"));
    assert!(error.contains("todo.cedar"), "{error}");
    let errors = metric(&client, &node, "mandate_policy_reload_errors_total").await;
    assert!(errors >= Some(1.0), "{errors:?}");
    assert_eq!(
        metric(&client, &node, "mandate_policy_reload_healthy").await,
        Some(0.0)
    );
    assert!(
        node.logs().contains("policy reload failed"),
        "{}",
        node.logs()
    );

    // Fixed by restoring the original: the error clears and Beth is a plain viewer again.
    save_policy(&policies, &original);
    within_2s("the reload error clears", async || {
        readyz(&client, &node).await["policies"]["last_reload_error"].is_null()
    })
    .await;
    assert!(!beth_may_create(&client, &node).await);
    assert_eq!(readyz(&client, &node).await["policies"]["generation"], 3);
    assert_eq!(
        metric(&client, &node, "mandate_policy_reload_healthy").await,
        Some(1.0)
    );

    assert!(node.stop().success(), "{}", node.logs());
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_unchanged_policies_at_once() {
    let store = TestStore::new(Backend::Sqlite).await;
    let config = store.dir.path().join("mandate.toml");
    std::fs::write(&config, "policy_poll_ms = 200\n").unwrap();
    let mut node = Node::start(
        &store.dir.path().join("data"),
        &store.url,
        &todo_policies(),
        &["--config", config.to_str().unwrap()],
    );
    let client = reqwest::Client::new();
    let generation = async || {
        readyz(&client, &node).await["policies"]["generation"]
            .as_u64()
            .unwrap()
    };
    // Polling alone does not reload files that have not changed.
    let before = generation().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(generation().await, before);

    node.signal("HUP");
    within_2s("SIGHUP bumps the generation", async || {
        generation().await == before + 1
    })
    .await;
    node.signal("HUP");
    within_2s("a second SIGHUP bumps it again", async || {
        generation().await == before + 2
    })
    .await;
    let ready = readyz(&client, &node).await;
    assert_eq!(ready["policies"]["count"], 7);
    assert_eq!(ready["policies"]["last_reload_error"], Value::Null);
    assert!(!beth_may_create(&client, &node).await);
    assert!(node.stop().success(), "{}", node.logs());
    store.cleanup().await;
}
