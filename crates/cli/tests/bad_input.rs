//! Bad input over HTTP, against one node on SQLite with the Todo example: every
//! refusal has its exact status and error code, comes back at once, leaves the
//! node healthy and leaves nothing in the audit log. Afterwards the log verifies
//! and holds exactly one record per decision that was actually given.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Node, TestStore, audit_records, todo_policies, verified_record_count};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, WWW_AUTHENTICATE};
use serde_json::{Value, json};

/// Beth Smith, a viewer.
const BETH: &str = "CiRmZDM2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";
/// Morty Smith, an editor.
const MORTY: &str = "CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";

/// The body limit of the node under test: above the 100,000-item batch, below
/// the 10 MB body.
const MAX_BODY: usize = 8 * 1024 * 1024;
/// The batch item limit of the node under test.
const MAX_ITEMS: usize = 500;

fn beth_reads_todos() -> Value {
    json!({
        "subject": {"type": "user", "id": BETH},
        "action": {"name": "can_read_todos"},
        "resource": {"type": "todo", "id": "todo-1"}
    })
}

/// An answer, read whole.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

/// Sends `request`, asserts the answer came within 2 s and that the node is
/// still healthy afterwards.
async fn send(client: &reqwest::Client, node: &Node, request: reqwest::RequestBuilder) -> Answer {
    let started = Instant::now();
    let response = request.send().await.expect("request is answered");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(2),
        "answer {status} took {elapsed:?}: {text}"
    );
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    let health = client
        .get(node.url("/healthz"))
        .send()
        .await
        .expect("healthz answers");
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    Answer {
        status,
        headers,
        body,
    }
}

/// Asserts `answer` is the JSON error `code` with `status`, and returns its message.
fn refusal(answer: &Answer, status: u16, code: &str) -> String {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.body["error"], code, "{}", answer.body);
    assert!(answer.body.get("decision").is_none(), "{}", answer.body);
    answer.body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {}", answer.body))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_are_refused_at_once_and_leave_no_audit_record() {
    let store = TestStore::new(Backend::Sqlite).await;
    let max_body = MAX_BODY.to_string();
    let max_items = MAX_ITEMS.to_string();
    let mut node = Node::start_with_env(
        &store.dir.path().join("data"),
        &store.url,
        &todo_policies(),
        &[],
        &[
            ("MANDATE_MAX_BODY_BYTES", &max_body),
            ("MANDATE_MAX_BATCH_ITEMS", &max_items),
        ],
    );
    let client = reqwest::Client::new();
    let one = node.url("/access/v1/evaluation");
    let many = node.url("/access/v1/evaluations");
    let json_post = |url: &str, body: String| {
        client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
    };
    let mut decisions = 0;

    // A good request first, so the log is not trivially empty.
    let answer = send(&client, &node, client.post(&one).json(&beth_reads_todos())).await;
    assert_eq!(
        (answer.status, &answer.body),
        (200, &json!({"decision": true}))
    );
    decisions += 1;

    // Malformed JSON.
    let answer = send(&client, &node, json_post(&one, r#"{"subject":"#.to_owned())).await;
    let message = refusal(&answer, 400, "bad_request");
    assert_eq!(
        message,
        "invalid request body: EOF while parsing a value at line 1 column 11"
    );

    // Wrong type: subject.id is a number.
    let mut request = beth_reads_todos();
    request["subject"]["id"] = json!(42);
    let answer = send(&client, &node, client.post(&one).json(&request)).await;
    let message = refusal(&answer, 400, "bad_request");
    assert!(
        message.contains("invalid type: integer `42`, expected a string"),
        "{message}"
    );

    // Missing field.
    let mut request = beth_reads_todos();
    request.as_object_mut().unwrap().remove("resource");
    let answer = send(&client, &node, client.post(&one).json(&request)).await;
    let message = refusal(&answer, 400, "bad_request");
    assert!(message.contains("missing field `resource`"), "{message}");

    // A float, which Cedar cannot hold, named by its path.
    let mut request = beth_reads_todos();
    request["resource"]["properties"] = json!({"priority": 1.5});
    let answer = send(&client, &node, client.post(&one).json(&request)).await;
    let message = refusal(&answer, 400, "bad_request");
    assert_eq!(
        message,
        "resource.properties.priority: 1.5 is not a 64-bit integer; Cedar has no floating point (send it as a string, e.g. for decimal())"
    );

    // A 10 MB body, over the 8 MiB limit.
    let mut huge = String::with_capacity(10_000_000);
    huge.push_str(r#"{"subject":{"type":"user","id":""#);
    huge.push_str(&"x".repeat(10_000_000));
    huge.push_str(r#""}}"#);
    let answer = send(&client, &node, json_post(&one, huge)).await;
    let message = refusal(&answer, 413, "payload_too_large");
    assert_eq!(
        message,
        format!("request body is larger than the limit of {MAX_BODY} bytes")
    );
    // The unread rest of the body makes the connection unusable: said so.
    assert_eq!(answer.headers["connection"], "close");

    // 100,000 items. Under the default 1 MiB body limit this ~6 MB batch would be
    // refused as too large (413) before its items are counted; this node's 8 MiB
    // limit lets it through to the item limit, so the answer is the 400 of the
    // item limit, and deterministic.
    let item = json!({"action": {"name": "can_read_todos"}, "resource": {"type": "todo", "id": "todo-123456"}});
    let batch =
        json!({"subject": {"type": "user", "id": BETH}, "evaluations": vec![item; 100_000]});
    let body = serde_json::to_string(&batch).unwrap();
    assert!(
        (1024 * 1024..MAX_BODY).contains(&body.len()),
        "{} bytes",
        body.len()
    );
    let answer = send(&client, &node, json_post(&many, body)).await;
    let message = refusal(&answer, 400, "bad_request");
    assert_eq!(
        message,
        format!("a batch may hold at most {MAX_ITEMS} evaluations; this one has 100000")
    );

    // One item over the limit, in a small body.
    let batch = json!({
        "subject": {"type": "user", "id": BETH},
        "action": {"name": "can_read_todos"},
        "resource": {"type": "todo", "id": "todo-1"},
        "evaluations": vec![json!({}); MAX_ITEMS + 1]
    });
    let answer = send(&client, &node, client.post(&many).json(&batch)).await;
    let message = refusal(&answer, 400, "bad_request");
    assert_eq!(
        message,
        format!(
            "a batch may hold at most {MAX_ITEMS} evaluations; this one has {}",
            MAX_ITEMS + 1
        )
    );

    // Exactly at the limit is fine.
    let batch = json!({
        "subject": {"type": "user", "id": BETH},
        "action": {"name": "can_read_todos"},
        "resource": {"type": "todo", "id": "todo-1"},
        "evaluations": vec![json!({}); MAX_ITEMS]
    });
    let answer = send(&client, &node, client.post(&many).json(&batch)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let items = answer.body["evaluations"].as_array().unwrap();
    assert_eq!(items.len(), MAX_ITEMS);
    assert!(items.iter().all(|i| *i == json!({"decision": true})));
    decisions += MAX_ITEMS;

    // Not declared as JSON: no Content-Type at all, then text/plain.
    let text = beth_reads_todos().to_string();
    let answer = send(&client, &node, client.post(&one).body(text.clone())).await;
    let message = refusal(&answer, 415, "unsupported_media_type");
    assert_eq!(message, "Content-Type must be application/json");
    let answer = send(
        &client,
        &node,
        client
            .post(&one)
            .header(CONTENT_TYPE, "text/plain")
            .body(text),
    )
    .await;
    refusal(&answer, 415, "unsupported_media_type");

    // Unknown path, and a GET on a POST endpoint.
    let answer = send(
        &client,
        &node,
        client
            .post(node.url("/access/v2/evaluation"))
            .json(&beth_reads_todos()),
    )
    .await;
    assert_eq!(refusal(&answer, 404, "not_found"), "no such endpoint");
    let answer = send(&client, &node, client.get(node.url("/nothing/here"))).await;
    refusal(&answer, 404, "not_found");
    let answer = send(&client, &node, client.get(&one)).await;
    assert_eq!(answer.status, 405, "{}", answer.body);
    assert_eq!(answer.headers["allow"], "POST");

    // A batch with bad items: each bad item is denied on its own, with its
    // error, and the others are decided normally.
    let batch = json!({
        "subject": {"type": "user", "id": MORTY},
        "evaluations": [
            {"action": {"name": "can_read_todos"}, "resource": {"type": "todo", "id": "todo-1"}},
            {"action": {"name": "can_create_todo"}},
            {"action": {"name": "can_create_todo"}, "resource": {"type": "todo", "id": "todo-2"}},
            {"action": {"name": "can_read_todos"}, "resource": {"type": "todo", "id": "todo-3", "properties": {"weight": 0.5}}},
            {"action": {"name": "can_delete_todo"}, "resource": {"type": "todo", "id": "todo-4", "properties": {"ownerID": "rick@the-citadel.com"}}}
        ]
    });
    let answer = send(&client, &node, client.post(&many).json(&batch)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let items = answer.body["evaluations"].as_array().unwrap();
    assert_eq!(items.len(), 5, "{}", answer.body);
    assert_eq!(items[0], json!({"decision": true}));
    assert_eq!(
        items[1],
        json!({"decision": false, "context": {"error": {
            "status": 400,
            "message": "resource is missing (in the item and in the batch defaults)"
        }}})
    );
    assert_eq!(items[2], json!({"decision": true}));
    assert_eq!(
        items[3],
        json!({"decision": false, "context": {"error": {
            "status": 400,
            "message": "resource.properties.weight: 0.5 is not a 64-bit integer; Cedar has no floating point (send it as a string, e.g. for decimal())"
        }}})
    );
    // Morty may not delete Rick's todo: an ordinary deny, explained.
    assert_eq!(items[4]["decision"], false);
    assert!(
        items[4]["context"]["reason_admin"].is_object(),
        "{}",
        items[4]
    );
    decisions += 5;

    assert!(node.stop().success(), "{}", node.logs());
    assert_eq!(
        verified_record_count(&store.url),
        decisions + common::FIRST_START_RECORDS
    );
    // The two bad items are recorded as denies with their reason.
    let records = audit_records(&store.url);
    let last: Vec<&str> = records[records.len() - 5..]
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(last, ["allow", "deny", "allow", "deny", "deny"]);
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn evaluation_endpoints_need_the_bearer_key_and_health_does_not() {
    const KEY: &str = "correct-horse-battery-staple";
    let store = TestStore::new(Backend::Sqlite).await;
    let mut node = Node::start_with_env(
        &store.dir.path().join("data"),
        &store.url,
        &todo_policies(),
        &[],
        &[("MANDATE_AUTHZEN_API_KEY", KEY)],
    );
    let client = reqwest::Client::new();
    let one = node.url("/access/v1/evaluation");
    let many = node.url("/access/v1/evaluations");
    let batch = json!({"evaluations": [beth_reads_todos()]});

    for request in [
        client.post(&one).json(&beth_reads_todos()),
        client.post(&many).json(&batch),
        client
            .post(&one)
            .header(AUTHORIZATION, "Bearer not-the-right-key-at-all")
            .json(&beth_reads_todos()),
        client
            .post(&one)
            .header(AUTHORIZATION, format!("Bearer {KEY}x"))
            .json(&beth_reads_todos()),
        client
            .post(&one)
            .header(AUTHORIZATION, format!("Basic {KEY}"))
            .json(&beth_reads_todos()),
        // The key is checked before anything else about the request.
        client.post(&one).body("not json"),
    ] {
        let answer = send(&client, &node, request).await;
        assert_eq!(
            refusal(&answer, 401, "unauthorized"),
            "a valid bearer key is required"
        );
        assert_eq!(answer.headers[WWW_AUTHENTICATE], "Bearer");
    }

    let answer = send(
        &client,
        &node,
        client.post(&one).bearer_auth(KEY).json(&beth_reads_todos()),
    )
    .await;
    assert_eq!(
        (answer.status, &answer.body),
        (200, &json!({"decision": true}))
    );
    let answer = send(
        &client,
        &node,
        client.post(&many).bearer_auth(KEY).json(&batch),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, json!({"evaluations": [{"decision": true}]}));
    // `send` checked /healthz without a key after every request; readiness needs none either.
    let ready = client.get(node.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);

    assert!(node.stop().success(), "{}", node.logs());
    assert_eq!(
        verified_record_count(&store.url),
        2 + common::FIRST_START_RECORDS
    );
    store.cleanup().await;
}
