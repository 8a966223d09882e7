//! Fail closed: while the audit store refuses writes, a node gives no decision
//! at all (503 `audit_unavailable`), on both evaluation endpoints and every
//! backend; once the store recovers, decisions resume on the same chain, which
//! then verifies and holds exactly the decisions that were given.

mod common;

use common::{Backend, Node, TestStore, audit_records, backends, verified_record_count};
use serde_json::{Value, json};

/// Morty Smith, an editor.
const MORTY: &str = "CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";

fn block_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "CREATE TRIGGER block_audit BEFORE INSERT ON audit_records
             BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;"
        }
        Backend::Postgres => {
            "CREATE FUNCTION block_audit() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$;
             CREATE TRIGGER block_audit BEFORE INSERT ON audit_records
               FOR EACH ROW EXECUTE FUNCTION block_audit();"
        }
    }
}

fn unblock_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "DROP TRIGGER block_audit;",
        Backend::Postgres => {
            "DROP TRIGGER block_audit ON audit_records; DROP FUNCTION block_audit();"
        }
    }
}

/// Sends `body` to `path` tagged with `request_id`; returns (status, body).
async fn evaluate(
    client: &reqwest::Client,
    node: &Node,
    path: &str,
    request_id: &str,
    body: &Value,
) -> (u16, Value) {
    let response = client
        .post(node.url(path))
        .header("x-request-id", request_id)
        .json(body)
        .send()
        .await
        .expect("request is answered");
    (response.status().as_u16(), response.json().await.unwrap())
}

fn single() -> Value {
    json!({
        "subject": {"type": "user", "id": MORTY},
        "action": {"name": "can_create_todo"},
        "resource": {"type": "todo", "id": "todo-1"}
    })
}

fn batch() -> Value {
    json!({
        "subject": {"type": "user", "id": MORTY},
        "resource": {"type": "todo", "id": "todo-1"},
        "evaluations": [
            {"action": {"name": "can_read_todos"}},
            {"action": {"name": "can_create_todo"}},
            {"action": {"name": "can_delete_todo"}}
        ]
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn no_decision_is_given_while_the_audit_store_refuses_writes_on_every_backend() {
    let client = reqwest::Client::new();
    for backend in backends() {
        let store = TestStore::new(backend).await;
        let mut node = store.start_todo_node();
        let mut recorded: Vec<String> = Vec::new();

        let (status, body) =
            evaluate(&client, &node, "/access/v1/evaluation", "before", &single()).await;
        assert_eq!(
            (status, &body),
            (200, &json!({"decision": true})),
            "{backend:?}"
        );
        recorded.push("before".into());

        store.exec(block_sql(backend)).await;
        let refused = [
            ("/access/v1/evaluation", "blocked-single", single()),
            ("/access/v1/evaluations", "blocked-batch", batch()),
            // A batch without items stands for one evaluation; refused the same way.
            ("/access/v1/evaluations", "blocked-batch-single", single()),
            ("/access/v1/evaluation", "blocked-single-again", single()),
        ];
        for (path, id, body) in &refused {
            let (status, answer) = evaluate(&client, &node, path, id, body).await;
            assert_eq!(status, 503, "{backend:?} {path}: {answer}");
            assert_eq!(
                answer,
                json!({
                    "error": "audit_unavailable",
                    "message": "the decision could not be recorded in the audit log, so it is not given"
                }),
                "{backend:?} {path}"
            );
            // The node stays up and says its store answers.
            let ready = client.get(node.url("/readyz")).send().await.unwrap();
            assert_eq!(ready.status().as_u16(), 200, "{backend:?}");
        }
        assert!(
            node.logs().contains("audit write failed"),
            "{backend:?}: {}",
            node.logs()
        );

        store.exec(unblock_sql(backend)).await;
        let (status, body) = evaluate(
            &client,
            &node,
            "/access/v1/evaluation",
            "after-single",
            &single(),
        )
        .await;
        assert_eq!(
            (status, &body),
            (200, &json!({"decision": true})),
            "{backend:?}"
        );
        recorded.push("after-single".into());
        let (status, body) = evaluate(
            &client,
            &node,
            "/access/v1/evaluations",
            "after-batch",
            &batch(),
        )
        .await;
        assert_eq!(status, 200, "{backend:?}: {body}");
        let decisions: Vec<&Value> = body["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["decision"])
            .collect();
        assert_eq!(decisions, [true, true, false], "{backend:?}");
        recorded.extend([
            "after-batch".into(),
            "after-batch".into(),
            "after-batch".into(),
        ]);

        assert!(node.stop().success(), "{backend:?}: {}", node.logs());
        assert_eq!(
            verified_record_count(&store.url),
            recorded.len() + common::FIRST_START_RECORDS,
            "{backend:?}"
        );
        let ids: Vec<String> = audit_records(&store.url)
            .iter()
            .filter(|r| r["kind"] == "decision")
            .map(|r| r["request_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, recorded, "{backend:?}");
        store.cleanup().await;
    }
}
