//! The MCP gateway end to end, with real MCP software on both sides: the
//! reference server `server-everything` (npm) and a recording server built on
//! the official MCP Python SDK as upstreams, and the official MCP Python SDK's
//! Streamable HTTP client as the agent, authenticating with
//! `mandate_client.MandateAuth` (clients/python): a task token and a fresh DPoP
//! proof on every request.
//!
//! The agent sees only its task's tools, a granted call returns the upstream's
//! own result, an ungranted one is refused with "denied by policy" and never
//! reaches the upstream, which gets the configured credential (read from the
//! secrets broker at call time) and never the agent's token or proofs. Both
//! protocol revisions are driven, 2025-11-25 (initialize handshake) and
//! 2026-07-28 (stateless). At the HTTP edge: 401 with an RFC 9728 pointer,
//! 403 for a foreign Origin, 400 for malformed JSON-RPC and batches, 413 for
//! an oversized body, and the node stays up.
//!
//! The software comes from `bash scripts/test.sh`, which installs it into a
//! cache and sets `MANDATE_TEST_NPM_BIN` and `MANDATE_TEST_PYTHON`.
//! `MANDATE_TEST_MCP=skip` skips these tests, saying so.

mod common;

use std::path::{Path, PathBuf};

use common::agents::{AgentNode, READ_REPORTS_CALL_WITHIN_TASK, Token, now, schema_and_policies};
use common::mcp::{
    HttpUpstream, assert_upstream_saw, calls_of, mcp_tools, recorded, recorded_rpc, run_sdk_script,
    task_for, write_svid,
};
use common::{Backend, TestStore, audit_records, backends};
use serde_json::{Value, json};

/// A policy directory for these tests: the example schema, development agents
/// may hold the upstreams' echo, get-sum and get-env tools, and a call is
/// allowed for the tools the task holds.
fn gateway_policies(dir: &Path) -> PathBuf {
    let holds = r#"
@id("dev-agents-hold-upstream-tools")
permit (principal is Agent, action == Action::"hold_tool", resource is Tool)
when {
  principal.env == "dev" &&
  [Tool::"everything.echo", Tool::"everything.get-sum", Tool::"everything.get-env",
   Tool::"recorder.echo", Tool::"recorder.get-sum", Tool::"recorder.get-env"].contains(resource)
};
"#;
    schema_and_policies(dir, "gateway", &[holds, READ_REPORTS_CALL_WITHIN_TASK])
}

/// A config file with one upstream `name` at `url`, its credential in header
/// `X-Upstream-Key` from secret `<name>-key`, and its three tools.
fn gateway_config(dir: &Path, name: &str, url: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
mcp_allowed_origins = ["http://localhost:3000"]

[[mcp_upstreams]]
name = "{name}"
url = "{url}"
credential = {{ header = "X-Upstream-Key", secret = "{name}-key", format = "Key {{secret}}" }}
timeout_ms = 10000

[[mcp_upstreams.tools]]
name = "echo"
class = "read"
labels = ["public"]
egress = false

[[mcp_upstreams.tools]]
name = "get-sum"
class = "read"
labels = ["public"]

[[mcp_upstreams.tools]]
name = "get-env"
class = "read"
labels = ["confidential"]
"#
        ),
    )
    .unwrap();
    path
}

/// A node on a fresh `backend` store serving upstream `name` at `url` (see
/// [`gateway_config`]) with the gateway policies, both written into `work`.
async fn start_node(work: &Path, backend: Backend, name: &str, url: &str) -> AgentNode {
    AgentNode::start_with_config(
        TestStore::new(backend).await,
        &gateway_config(work, name, url),
        &gateway_policies(work),
    )
}

/// The steps every SDK run takes: list, two granted calls, one refused.
fn steps() -> Value {
    json!([
        {"op": "list_tools"},
        {"op": "call_tool", "name": "echo", "arguments": {"message": "hello through mandate"}},
        {"op": "call_tool", "name": "get-sum", "arguments": {"a": 2, "b": 3}},
        {"op": "call_tool", "name": "get-env", "arguments": {}},
    ])
}

/// Asserts what the agent saw in one SDK run of [`steps`].
#[track_caller]
fn assert_gated(run: &Value, what: &str) {
    let steps = &run["steps"];
    let mut listed: Vec<&str> = steps[0]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: tools/list failed: {run}"))
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        ["echo", "get-sum"],
        "{what}: only the task's tools are listed: {run}"
    );
    assert_eq!(
        steps[1],
        json!({"ok": true, "is_error": false, "text": ["Echo: hello through mandate"]}),
        "{what}: granted echo: {run}"
    );
    assert_eq!(
        steps[2],
        json!({"ok": true, "is_error": false, "text": ["The sum of 2 and 3 is 5."]}),
        "{what}: granted get-sum: {run}"
    );
    let refused = &steps[3];
    assert_eq!(
        refused["ok"],
        json!(false),
        "{what}: get-env is not in the task and must be refused: {run}"
    );
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("denied by policy"),
        "{what}: the refusal says why: {refused}"
    );
    assert!(
        refused["code"].as_i64().is_some_and(|c| c < 0),
        "{what}: a JSON-RPC error code: {refused}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_python_sdk_reaches_server_everything_only_for_its_task() {
    let Some(tools) = mcp_tools(
        "mcp_gateway",
        "the_official_python_sdk_reaches_server_everything_only_for_its_task",
        &["mcp-server-everything"],
    ) else {
        return;
    };
    for backend in backends() {
        let work = tempfile::tempdir().unwrap();
        let upstream = HttpUpstream::everything(&tools, work.path());
        let node = start_node(work.path(), backend, "everything", &upstream.url).await;
        let database = node.store.url.clone();
        // The upstream's credential is set after the node started: it is read
        // when a call is forwarded.
        node.put_secret("everything-key", "everything-credential-1")
            .await;

        let agent = node.agent("reporter").await;
        let token = node
            .root_token(
                &agent,
                &task_for(
                    "check the gateway",
                    &["everything.echo", "everything.get-sum"],
                ),
            )
            .await;
        let svid = write_svid(&agent, work.path());
        let url = node.node.url("/mcp/everything");

        // The SDK's default (it probes server/discover, which the gateway lets
        // through, and falls back to the initialize handshake: server-everything
        // speaks 2025-11-25), then forced to the 2025-11-25 handshake.
        for mode in ["auto", "legacy"] {
            let run = run_sdk_script(
                &tools,
                "client.py",
                &json!({
                    "url": url, "key": svid.join("svid.key"), "token": token.access_token,
                    "mode": mode, "steps": steps(),
                }),
            );
            assert_eq!(run["protocol_version"], "2025-11-25", "{mode}: {run}");
            assert_gated(&run, &format!("{backend:?} {mode}"));
        }

        // The agent gets its own token with mandate_client.TaskTokenSource
        // (mTLS with its SVID, a DPoP proof) and uses it at once.
        let run = run_sdk_script(
            &tools,
            "client.py",
            &json!({
                "url": url, "key": svid.join("svid.key"),
                "svid_dir": svid, "token_url": format!("{}/oauth/token", node.tls()),
                "authorization_details": task_for("check the gateway", &["everything.echo", "everything.get-sum"]),
                "steps": steps(),
            }),
        );
        assert_gated(&run, &format!("{backend:?} TaskTokenSource"));
        let python_task = run["task_id"].as_str().expect("a task id").to_owned();
        assert_ne!(python_task, token.task_id);

        node.finish_keep(|| {
            // Each decided call is on the record: allowed or refused, by whom,
            // for which task. The refused one with the policy's reason.
            let records = audit_records(&database);
            let calls: Vec<&Value> = records
                .iter()
                .filter(|r| r["detail"]["endpoint"] == "mcp")
                .collect();
            let of = |tool: &str, outcome: &str| {
                calls_of(&calls, &format!("everything.{tool}"), outcome).len()
            };
            assert_eq!(of("echo", "allow"), 3, "{calls:#?}");
            assert_eq!(of("get-sum", "allow"), 3, "{calls:#?}");
            assert_eq!(of("get-env", "deny"), 3, "{calls:#?}");
            assert_eq!(of("get-env", "allow"), 0, "{calls:#?}");
            let tasks: std::collections::BTreeSet<&str> = calls
                .iter()
                .filter_map(|r| r["detail"]["task_id"].as_str())
                .collect();
            assert_eq!(
                tasks,
                [token.task_id.as_str(), python_task.as_str()]
                    .into_iter()
                    .collect(),
            );
            // Neither the token nor the credential is written in the log.
            let text = serde_json::to_string(&records).unwrap();
            assert!(!text.contains(&token.access_token));
            assert!(!text.contains("everything-credential-1"));
        })
        .await;
        drop(upstream);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upstream_gets_its_credential_and_never_the_agents_token_nor_a_refused_call() {
    let Some(tools) = mcp_tools(
        "mcp_gateway",
        "the_upstream_gets_its_credential_and_never_the_agents_token_nor_a_refused_call",
        &["mcp-server-everything"],
    ) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let record = work.path().join("recorded.jsonl");
    let upstream = HttpUpstream::recording(&tools, work.path(), &record);
    let node = start_node(work.path(), Backend::Sqlite, "recorder", &upstream.url).await;
    let agent = node.agent("reporter").await;
    let token = node
        .root_token(
            &agent,
            &task_for("check the gateway", &["recorder.echo", "recorder.get-sum"]),
        )
        .await;
    let svid = write_svid(&agent, work.path());
    let url = node.node.url("/mcp/recorder");

    // Before its secret exists, nothing is forwarded: the upstream would get a
    // request without its credential.
    let response = raw(
        &reqwest::Client::new(),
        reqwest::Method::POST,
        &url,
        Some(&token),
        &[],
        Some(INITIALIZE.as_bytes().to_vec()),
    )
    .await;
    let status = response.status();
    let answer = response.text().await.unwrap();
    assert!(
        answer.contains("\"error\""),
        "no credential, no forwarding: {status} {answer}"
    );
    assert!(
        recorded(&record).is_empty(),
        "the upstream got a request without its credential: {:?}",
        recorded(&record)
    );

    let plan = |mode: &str| {
        json!({
            "url": url, "key": svid.join("svid.key"), "token": token.access_token,
            "mode": mode, "steps": steps(),
        })
    };

    node.put_secret("recorder-key", "credential-one").await;

    // The SDK's default mode negotiates 2026-07-28 with this server; legacy
    // forces the 2025-11-25 handshake.
    let mut seen = 0;
    for (mode, version) in [("auto", "2026-07-28"), ("legacy", "2025-11-25")] {
        let run = run_sdk_script(&tools, "client.py", &plan(mode));
        assert_eq!(run["protocol_version"], version, "{mode}: {run}");
        assert_gated(&run, mode);
        let requests = recorded(&record);
        assert_upstream_saw(&requests[seen..], "credential-one", &token, mode);
        seen = requests.len();
    }

    // The credential is read when a call is forwarded: rotated, the next
    // requests carry the new value. Pinned to 2026-07-28 this time.
    let (status, body) = node
        .admin_call(
            reqwest::Method::POST,
            "/admin/v1/secrets/recorder-key/rotate",
            Some(&json!({"value": "credential-two"})),
        )
        .await;
    assert!(status == 200 || status == 201, "rotate: {status} {body}");
    let run = run_sdk_script(&tools, "client.py", &plan("2026-07-28"));
    assert_eq!(run["protocol_version"], "2026-07-28", "{run}");
    assert_gated(&run, "2026-07-28");
    let requests = recorded(&record);
    assert_upstream_saw(
        &requests[seen..],
        "credential-two",
        &token,
        "after rotation",
    );
    // The upstream listed get-env; the agent never saw it (assert_gated), and
    // the upstream itself answered tools/list with all three.
    assert!(
        requests
            .iter()
            .map(recorded_rpc)
            .any(|m| m["method"] == "tools/list"),
        "tools/list was forwarded"
    );
    node.finish().await;
    drop(upstream);
}

/// One raw request to the gateway: `method` on `url` with `token` (and a fresh
/// proof for it) unless `None`, extra `headers`, and `body`.
async fn raw(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&Token>,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> reqwest::Response {
    let mut request = http
        .request(method.clone(), url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(token) = token {
        request = request
            .header("authorization", format!("DPoP {}", token.access_token))
            .header(
                "dpop",
                token
                    .key
                    .proof(method.as_str(), url, Some(&token.access_token), now()),
            );
    }
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    request.send().await.expect("the gateway answers")
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_refuses_bad_http_and_stays_up() {
    let Some(tools) = mcp_tools(
        "mcp_gateway",
        "the_gateway_refuses_bad_http_and_stays_up",
        &["mcp-server-everything"],
    ) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let record = work.path().join("recorded.jsonl");
    let upstream = HttpUpstream::recording(&tools, work.path(), &record);
    let node = start_node(work.path(), Backend::Sqlite, "recorder", &upstream.url).await;
    node.put_secret("recorder-key", "credential-one").await;
    let agent = node.agent("reporter").await;
    let token = node
        .root_token(&agent, &task_for("check the gateway", &["recorder.echo"]))
        .await;
    let http = reqwest::Client::new();
    let url = node.node.url("/mcp/recorder");
    let post = reqwest::Method::POST;
    let init = || Some(INITIALIZE.as_bytes().to_vec());

    // No token: 401, pointing at the resource metadata (RFC 9728), which names
    // this resource and Mandate as its authorization server.
    for method in [
        reqwest::Method::POST,
        reqwest::Method::GET,
        reqwest::Method::DELETE,
    ] {
        let response = raw(&http, method.clone(), &url, None, &[], init()).await;
        assert_eq!(response.status(), 401, "{method} without a token");
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let metadata = node
            .node
            .url("/.well-known/oauth-protected-resource/mcp/recorder");
        assert!(
            challenge.starts_with("DPoP ")
                && challenge.contains(&format!("resource_metadata=\"{metadata}\"")),
            "{method}: WWW-Authenticate {challenge:?}"
        );
    }
    let metadata: Value = http
        .get(
            node.node
                .url("/.well-known/oauth-protected-resource/mcp/recorder"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["resource"], url, "{metadata}");
    assert!(
        metadata["authorization_servers"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{metadata}"
    );

    // A proof for another URL, or a replayed proof: 401.
    let other = node.node.url("/mcp/elsewhere");
    let response = http
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("DPoP {}", token.access_token))
        .header("dpop", token.proof_for(&other))
        .body(INITIALIZE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "a proof for another URL");
    let proof = token.proof_for(&url);
    let send_with = |proof: String| {
        http.post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", format!("DPoP {}", token.access_token))
            .header("dpop", proof)
            .body(INITIALIZE)
            .send()
    };
    assert_eq!(send_with(proof.clone()).await.unwrap().status(), 200);
    assert_eq!(
        send_with(proof).await.unwrap().status(),
        401,
        "a replayed proof"
    );

    let before = recorded(&record).len();

    // A browser page from a foreign origin: 403, even with a good token. A
    // configured origin is let through.
    let response = raw(
        &http,
        post.clone(),
        &url,
        Some(&token),
        &[("origin", "https://evil.example")],
        init(),
    )
    .await;
    assert_eq!(response.status(), 403, "a foreign Origin");
    let response = raw(
        &http,
        post.clone(),
        &url,
        Some(&token),
        &[("origin", "http://localhost:3000")],
        init(),
    )
    .await;
    assert_eq!(response.status(), 200, "an allowed Origin");
    assert_eq!(recorded(&record).len(), before + 1);
    let before = before + 1;

    // Malformed JSON: 400 with a JSON-RPC parse error.
    let response = raw(
        &http,
        post.clone(),
        &url,
        Some(&token),
        &[],
        Some(br#"{"jsonrpc":"2.0","id":1,"method":"#.to_vec()),
    )
    .await;
    assert_eq!(response.status(), 400, "malformed JSON");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["jsonrpc"], "2.0", "{answer}");
    assert_eq!(answer["error"]["code"], -32700, "{answer}");
    assert_eq!(answer["id"], Value::Null, "{answer}");

    // A batch: refused with a JSON-RPC error (batching is not in these revisions).
    let batch = format!("[{INITIALIZE}]");
    let response = raw(
        &http,
        post.clone(),
        &url,
        Some(&token),
        &[],
        Some(batch.into_bytes()),
    )
    .await;
    assert_eq!(response.status(), 400, "a batch");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("batch")),
        "{answer}"
    );

    // A body over max_body_bytes (1 MiB by default): 413.
    let mut huge = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'a', 2 * 1024 * 1024));
    huge.extend_from_slice(br#""}}}"#);
    let response = raw(&http, post.clone(), &url, Some(&token), &[], Some(huge)).await;
    assert_eq!(response.status(), 413, "an oversized body");

    // An unknown upstream: 404.
    let nowhere = node.node.url("/mcp/nowhere");
    let response = raw(&http, post.clone(), &nowhere, Some(&token), &[], init()).await;
    assert_eq!(response.status(), 404, "an unknown upstream");

    // None of these reached the upstream.
    assert_eq!(
        recorded(&record).len(),
        before,
        "refused requests never reach the upstream"
    );

    // The node is still up and serving, the gateway included.
    let health = http.get(node.node.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let run = run_sdk_script(
        &tools,
        "client.py",
        &json!({
            "url": url, "key": write_svid(&agent, work.path()).join("svid.key"),
            "token": token.access_token, "mode": "legacy",
            "steps": [{"op": "call_tool", "name": "echo", "arguments": {"message": "still up"}}],
        }),
    );
    assert_eq!(
        run["steps"][0],
        json!({"ok": true, "is_error": false, "text": ["Echo: still up"]}),
        "{run}"
    );
    node.finish().await;
    drop(upstream);
}
