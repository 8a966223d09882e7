//! `kill -9` under load: every decision a caller received is in the audit log,
//! the log still verifies, and a new node on the same data directory and store
//! carries on the same chain.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    Node, TestStore, audit_records, backends, post_json, todo_policies, verified_record_count,
};
use serde_json::{Value, json};

const TASKS: usize = 16;
/// Bounds on each task's loop, whatever happens to the node.
const MAX_REQUESTS_PER_TASK: usize = 20_000;
const MAX_LOAD_TIME: Duration = Duration::from_secs(15);

/// Morty Smith, an editor.
const MORTY: &str = "CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";

fn request(n: usize) -> Value {
    let action = ["can_read_todos", "can_create_todo", "can_delete_todo"][n % 3];
    json!({
        "subject": {"type": "user", "id": MORTY},
        "action": {"name": action},
        "resource": {"type": "todo", "id": format!("todo-{n}")}
    })
}

/// Sends evaluations until the node stops answering; returns the request IDs
/// that were answered with a decision.
async fn load(client: reqwest::Client, url: Arc<str>, task: usize) -> Vec<String> {
    let started = Instant::now();
    let mut acknowledged = Vec::new();
    for n in 0..MAX_REQUESTS_PER_TASK {
        if started.elapsed() > MAX_LOAD_TIME {
            break;
        }
        let id = format!("crash-{task}-{n}");
        let sent = client
            .post(&*url)
            .header("x-request-id", &id)
            .json(&request(n))
            .send()
            .await;
        let Ok(response) = sent else { break };
        if response.status().as_u16() != 200 {
            break;
        }
        let Ok(body) = response.json::<Value>().await else {
            break;
        };
        if body["decision"].is_boolean() {
            acknowledged.push(id);
        }
    }
    acknowledged
}

#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_decision_survives_kill_9_and_the_chain_continues() {
    for backend in backends() {
        let store = TestStore::new(backend).await;
        let data = store.dir.path().join("data");
        let mut node = Node::start(&data, &store.url, &todo_policies(), &[]);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let url: Arc<str> = node.url("/access/v1/evaluation").into();
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| tokio::spawn(load(client.clone(), Arc::clone(&url), task)))
            .collect();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let status = node.kill9();
        assert!(!status.success(), "{backend:?}: {status}");
        let mut acknowledged = HashSet::new();
        for task in tasks {
            acknowledged.extend(task.await.unwrap());
        }
        assert!(
            acknowledged.len() > 100,
            "{backend:?}: only {} decisions under load",
            acknowledged.len()
        );

        let recorded = verified_record_count(&store.url);
        let records = audit_records(&store.url);
        assert_eq!(records.len(), recorded, "{backend:?}");
        let ids: HashSet<String> = records
            .iter()
            .map(|r| r["request_id"].as_str().unwrap().to_owned())
            .collect();
        let lost: Vec<&String> = acknowledged.difference(&ids).collect();
        assert!(
            lost.is_empty(),
            "{backend:?}: {} acknowledged decisions lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        // Decisions in flight at the kill may be recorded without having been
        // acknowledged, never the other way round.
        assert!(recorded >= acknowledged.len(), "{backend:?}");
        let node_id = records[0]["node_id"].clone();
        let last_seq = records
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .max()
            .unwrap();

        // A new node on the same data directory appends to the same chain.
        let mut node = Node::start(&data, &store.url, &todo_policies(), &[]);
        let response = client
            .post(node.url("/access/v1/evaluation"))
            .header("x-request-id", "after-restart")
            .json(&request(0))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{backend:?}");
        let (status, _) = post_json(&client, &node.url("/access/v1/evaluation"), &request(1)).await;
        assert_eq!(status, 200, "{backend:?}");
        assert!(node.stop().success(), "{backend:?}: {}", node.logs());
        assert_eq!(
            verified_record_count(&store.url),
            recorded + 2,
            "{backend:?}"
        );
        let records = audit_records(&store.url);
        let restarted = records
            .iter()
            .find(|r| r["request_id"] == "after-restart")
            .unwrap();
        assert_eq!(restarted["node_id"], node_id, "{backend:?}");
        assert_eq!(restarted["seq"].as_u64(), Some(last_seq + 1), "{backend:?}");
        eprintln!(
            "{backend:?}: {} acknowledged, {recorded} recorded before restart",
            acknowledged.len()
        );
        store.cleanup().await;
    }
}
