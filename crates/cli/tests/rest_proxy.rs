//! The HTTP reverse proxy end to end: the real binary in front of a recording
//! REST upstream spawned here. An allowed call reaches the upstream with the
//! configured credential (from the secrets broker) and never the agent's
//! token, proof or cookies, and its answer comes back as the upstream gave it;
//! a call outside the task, a path no rule matches, and paths made to confuse
//! the matching are refused and never reach the upstream. Bodies stream both
//! ways: the upstream sees an upload begin before the agent has sent all of
//! it, and the agent reads a download before the upstream has finished it;
//! 8 MiB uploads arrive intact. Oversized bodies, a dead upstream and a slow
//! one get 413, 502 and 504. Every decision is in an audit log that verifies.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use common::agents::{AgentNode, Token, copy_agent_policies, now};
use common::{Backend, TestStore, audit_records, backends, verified_record_count};
use http_body_util::{BodyExt, Channel};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Path and query.
    target: String,
    headers: HeaderMap,
    len: u64,
    sha256: String,
    /// False when the body broke off.
    complete: bool,
}

/// The recording upstream's shared state.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
    /// Bytes of request bodies received so far, counted as they arrive.
    progress: AtomicU64,
    /// Lets the streamed download finish.
    release: Notify,
}

impl Recorder {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Whether any request to a target containing `needle` arrived.
    fn saw(&self, needle: &str) -> bool {
        self.seen().iter().any(|s| s.target.contains(needle))
    }

    fn last(&self) -> Seen {
        self.seen()
            .last()
            .cloned()
            .expect("the upstream saw a request")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Records the request (its body read frame by frame) and answers JSON.
async fn record(State(recorder): State<Arc<Recorder>>, request: Request) -> Response {
    let (parts, mut body) = request.into_parts();
    let (mut len, mut hash, mut complete) = (0u64, Sha256::new(), true);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    len += data.len() as u64;
                    recorder
                        .progress
                        .fetch_add(data.len() as u64, Ordering::SeqCst);
                    hash.update(&data);
                }
            }
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    let seen = Seen {
        method: parts.method.to_string(),
        target: parts.uri.to_string(),
        headers: parts.headers,
        len,
        sha256: hex(&hash.finalize()),
        complete,
    };
    recorder.seen.lock().unwrap().push(seen.clone());
    if seen.target.contains("/slow") {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    (
        [
            ("x-upstream", "recorder"),
            ("set-cookie", "upstream-session=secret"),
        ],
        Json(json!({"target": seen.target, "len": seen.len, "sha256": seen.sha256})),
    )
        .into_response()
}

/// A download in two parts, the second only once the test lets it go.
async fn download(State(recorder): State<Arc<Recorder>>) -> Response {
    let (mut tx, body) = Channel::<Bytes>::new(1);
    tokio::spawn(async move {
        let _ = tx.send_data(Bytes::from_static(b"first line\n")).await;
        recorder.release.notified().await;
        let _ = tx.send_data(Bytes::from_static(b"second line\n")).await;
    });
    ([("content-type", "text/plain")], Body::new(body)).into_response()
}

/// Starts the recording upstream on a loopback port: its base URL and state.
async fn recording_upstream() -> (String, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let app = Router::new()
        .route("/api/repos/{owner}/{repo}/logs", get(download))
        .fallback(record)
        .with_state(Arc::clone(&recorder));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), recorder)
}

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The test's actions, declared beside the shipped schema (whose github
/// example declares `Repo`, `list_issues` and `create_issue`).
const TEST_SCHEMA: &str = r#"
entity Asset, Api;
action list_pulls, download_log in [proxy] appliesTo {
  principal: Agent, resource: Repo,
  context: { task: Task, session: Session, http: HttpRequest,
             params: { owner: String, repo: String }, tool: ToolCall, tool_entity: Tool },
};
action upload_asset in [proxy] appliesTo {
  principal: Agent, resource: Asset,
  context: { task: Task, session: Session, http: HttpRequest,
             params: { owner: String, repo: String, name: String }, tool: ToolCall, tool_entity: Tool },
};
action upload, ping, wait in [proxy] appliesTo {
  principal: Agent, resource: Api,
  context: { task: Task, session: Session, http: HttpRequest, params: {}, tool: ToolCall,
             tool_entity: Tool },
};
"#;

/// Development agents may also hold the test's tools and `act`.
const TEST_POLICIES: &str = r#"
@id("dev-agents-hold-test-tools")
permit (principal is Agent, action == Action::"hold_tool", resource is Tool)
when {
  principal.env == "dev" &&
  [Tool::"github.list_pulls", Tool::"github.download_log", Tool::"github.upload_asset",
   Tool::"tiny.upload", Tool::"down.ping", Tool::"slow.wait"].contains(resource)
};

@id("dev-agents-may-act")
permit (principal is Agent, action == Action::"hold_capability", resource == Capability::"act")
when { principal.env == "dev" };
"#;

/// The example policies and schema, and the test's.
fn policies(dir: &Path) -> PathBuf {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    copy_agent_policies(&policies);
    std::fs::write(policies.join("proxy-test.cedarschema"), TEST_SCHEMA).unwrap();
    std::fs::write(policies.join("proxy-test.cedar"), TEST_POLICIES).unwrap();
    policies
}

/// The upstreams: `github` (the docs' example and the test's endpoints)
/// under `<recorder>/api`, `tiny` with a 4 KiB body limit, `down` where
/// nothing listens, and `slow` with a 300 ms timeout.
fn config(dir: &Path, recorder: &str) -> PathBuf {
    let rule = |method: &str, path: &str, action: &str, kind: &str, id: &str, class: &str| {
        format!(
            "\n[[http_upstreams.rules]]\nmethod = \"{method}\"\npath = \"{path}\"\naction = \"{action}\"\n\
             resource_type = \"{kind}\"\nresource_id = \"{id}\"\nclass = \"{class}\"\n"
        )
    };
    let mut text = format!(
        "[[http_upstreams]]\nname = \"github\"\nurl = \"{recorder}/api/\"\n\
         credential = {{ header = \"Authorization\", secret = \"github-token\", format = \"Bearer {{secret}}\" }}\n\
         max_body_bytes = 33554432\n"
    );
    let repo = "{owner}/{repo}";
    for (method, path, action, kind, id, class) in [
        (
            "GET",
            "/repos/{owner}/{repo}/issues",
            "list_issues",
            "Repo",
            repo,
            "read",
        ),
        (
            "POST",
            "/repos/{owner}/{repo}/issues",
            "create_issue",
            "Repo",
            repo,
            "act",
        ),
        (
            "GET",
            "/repos/{owner}/{repo}/pulls",
            "list_pulls",
            "Repo",
            repo,
            "read",
        ),
        (
            "GET",
            "/repos/{owner}/{repo}/logs",
            "download_log",
            "Repo",
            repo,
            "read",
        ),
        (
            "POST",
            "/repos/{owner}/{repo}/assets/{name}",
            "upload_asset",
            "Asset",
            "{owner}/{repo}/{name}",
            "act",
        ),
    ] {
        text.push_str(&rule(method, path, action, kind, id, class));
    }
    text.push_str(&format!(
        "\n[[http_upstreams]]\nname = \"tiny\"\nurl = \"{recorder}/tiny\"\nmax_body_bytes = 4096\n"
    ));
    text.push_str(&rule("POST", "/upload", "upload", "Api", "tiny", "act"));
    text.push_str(&format!(
        "\n[[http_upstreams]]\nname = \"down\"\nurl = \"http://127.0.0.1:{}\"\n",
        dead_port()
    ));
    text.push_str(&rule("GET", "/ping", "ping", "Api", "down", "read"));
    text.push_str(&format!(
        "\n[[http_upstreams]]\nname = \"slow\"\nurl = \"{recorder}\"\ntimeout_ms = 300\n"
    ));
    text.push_str(&rule("GET", "/slow", "wait", "Api", "slow", "read"));
    let path = dir.join("proxy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A request through the proxy with `token` and a fresh proof for it.
fn through(
    node: &AgentNode,
    token: &Token,
    method: reqwest::Method,
    path: &str,
) -> reqwest::RequestBuilder {
    let url = node.node.url(path);
    let htu = url.split('?').next().unwrap().to_owned();
    node.http
        .request(method.clone(), &url)
        .header("Authorization", format!("DPoP {}", token.access_token))
        .header(
            "DPoP",
            token
                .key
                .proof(method.as_str(), &htu, Some(&token.access_token), now()),
        )
}

async fn answer(response: reqwest::Response) -> (u16, Value) {
    common::agents::answer(response).await
}

/// Sends `method path` through the proxy with `token` and no body: the status
/// and body of the answer.
async fn send(
    node: &AgentNode,
    token: &Token,
    method: reqwest::Method,
    path: &str,
) -> (u16, Value) {
    answer(through(node, token, method, path).send().await.unwrap()).await
}

/// `METHOD target` written by hand (reqwest would normalize `..` and `%2e`),
/// with the token and a proof for exactly that target: the status and body.
async fn raw(node: &AgentNode, token: &Token, method: &str, target: &str) -> (u16, String) {
    let base = node.base();
    let host = base.strip_prefix("http://").unwrap();
    let proof = token.key.proof(
        method,
        &format!("{base}{target}"),
        Some(&token.access_token),
        now(),
    );
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: DPoP {}\r\nDPoP: {proof}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n",
        token.access_token
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {reply:?}"));
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `len` bytes of a simple pattern.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_forwards_what_the_task_allows_and_nothing_else() {
    for backend in backends() {
        proxy_case(backend).await;
    }
}

async fn proxy_case(backend: Backend) {
    let (upstream, recorder) = recording_upstream().await;
    let store = TestStore::new(backend).await;
    let config = config(store.dir.path(), &upstream);
    let policy_dir = policies(store.dir.path());
    let node = AgentNode::start_with_policies(
        store,
        &policy_dir,
        &["--config", config.to_str().unwrap()],
        &[],
    );
    node.put_secret("github-token", "gh-secret-123").await;
    let agent = node.agent("triager").await;
    let token = node
        .root_token(
            &agent,
            &json!([{
                "type": "agent_task",
                "purpose": "triage the web issues",
                "tools": ["github.list_issues", "github.create_issue", "github.download_log",
                          "github.upload_asset", "tiny.upload", "down.ping", "slow.wait"],
                "data_domains": ["reports"],
                "ttl_seconds": 300,
                "capabilities": ["read", "act"],
            }]),
        )
        .await;
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    // Allowed: reaches the upstream with the credential and none of the
    // agent's; the answer comes back as it was.
    let response = through(
        &node,
        &token,
        get.clone(),
        "/proxy/github/repos/acme/web/issues?state=open&per_page=5",
    )
    .header("Cookie", "agent-session=1")
    .header("X-Request-Id", "req-42")
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-upstream"], "recorder");
    assert!(response.headers().get("set-cookie").is_none());
    let (_, body) = answer(response).await;
    assert_eq!(
        body["target"],
        "/api/repos/acme/web/issues?state=open&per_page=5"
    );
    let seen = recorder.last();
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("GET", "/api/repos/acme/web/issues?state=open&per_page=5")
    );
    assert_eq!(header(&seen, "authorization"), Some("Bearer gh-secret-123"));
    assert_eq!(seen.headers.get_all("authorization").iter().count(), 1);
    assert_eq!(header(&seen, "dpop"), None);
    assert_eq!(header(&seen, "cookie"), None);
    assert_eq!(header(&seen, "x-request-id"), Some("req-42"));
    let leaked = format!("{:?}", seen.headers);
    assert!(!leaked.contains(&token.access_token), "{leaked}");

    // An acting endpoint with a JSON body, under a task holding `act`.
    let (status, body) = answer(
        through(
            &node,
            &token,
            post.clone(),
            "/proxy/github/repos/acme/web/issues",
        )
        .json(&json!({"title": "flaky test"}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = recorder.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.len, br#"{"title":"flaky test"}"#.len() as u64);
    assert_eq!(header(&seen, "content-type"), Some("application/json"));

    // Not the task's tool: denied as drift, and the upstream never hears of it.
    let (status, body) = send(
        &node,
        &token,
        get.clone(),
        "/proxy/github/repos/acme/web/pulls",
    )
    .await;
    assert_eq!(
        (status, &body["error"], &body["reason"], &body["policies"]),
        (
            403,
            &json!("denied_by_policy"),
            &json!("drift"),
            &json!(["baseline/drift.cedar#drift"])
        ),
        "{body}"
    );
    assert!(!recorder.saw("/pulls"));

    // No rule: refused (default deny).
    let (status, body) = send(
        &node,
        &token,
        reqwest::Method::DELETE,
        "/proxy/github/repos/acme/web",
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (403, &json!("no_route")),
        "{body}"
    );
    assert_eq!(
        body["message"],
        "no rule of this upstream matches DELETE /repos/acme/web"
    );

    // Paths made to be read as another path upstream: refused before any rule.
    for target in [
        "/proxy/github/repos/acme/../../admin/issues",
        "/proxy/github/repos/acme/web/../pulls/../issues",
        "/proxy/github/repos/acme/%2e%2e/issues",
        "/proxy/github/repos/acme%2Fweb/x/issues",
        "/proxy/github/repos/acme%2fweb%2f..%2fpulls/x/issues",
        "/proxy/github/repos//acme/web/issues",
        "/proxy/github/repos/acme%00/web/issues",
        "/proxy/github/repos/..;/web/issues",
        "/proxy/github/repos/%252e%252e/web/issues",
    ] {
        let (status, body) = raw(&node, &token, "GET", target).await;
        assert_eq!(status, 400, "{target}: {body}");
        assert!(body.contains("\"error\":\"bad_path\""), "{target}: {body}");
    }
    assert!(!recorder.saw("admin"));
    assert!(!recorder.saw(".."));
    assert!(!recorder.saw("%"));

    // No token, or an unknown upstream.
    let response = node
        .http
        .get(node.node.url("/proxy/github/repos/acme/web/issues"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    let (status, _) = send(
        &node,
        &token,
        get.clone(),
        "/proxy/gitlab/repos/acme/web/issues",
    )
    .await;
    assert_eq!(status, 404);
    let requests_so_far = recorder.seen().len();
    assert_eq!(requests_so_far, 2, "{:?}", recorder.seen());

    // A download streams: the first part arrives before the upstream sends the rest.
    let mut response = through(
        &node,
        &token,
        get.clone(),
        "/proxy/github/repos/acme/web/logs",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(10), response.chunk())
        .await
        .expect("the first part arrives while the upstream holds the rest")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first line\n");
    recorder.release.notify_one();
    let rest = response.bytes().await.unwrap();
    assert_eq!(&rest[..], b"second line\n");

    // An upload streams: the upstream has the first MiB before the agent
    // sends the rest; 8 MiB arrive intact (chunked, as sent).
    let data = payload(8 * 1024 * 1024);
    let (mut tx, body) = Channel::<Bytes>::new(4);
    let before = recorder.progress.load(Ordering::SeqCst);
    let sending = tokio::spawn(
        through(
            &node,
            &token,
            post.clone(),
            "/proxy/github/repos/acme/web/assets/blob.bin",
        )
        .body(reqwest::Body::wrap(body))
        .send(),
    );
    let mib = 1024 * 1024;
    tx.send_data(Bytes::copy_from_slice(&data[..mib]))
        .await
        .unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while recorder.progress.load(Ordering::SeqCst) < before + mib as u64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "the upstream did not get the first MiB before the rest was sent"
    );
    for chunk in data[mib..].chunks(64 * 1024) {
        tx.send_data(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    drop(tx);
    let (status, body) = answer(sending.await.unwrap().unwrap()).await;
    let digest = hex(&Sha256::digest(&data));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["len"].as_u64(), body["sha256"].as_str()),
        (Some(data.len() as u64), Some(digest.as_str()))
    );
    let seen = recorder.last();
    assert!(seen.complete);
    assert_eq!(header(&seen, "content-length"), None);

    // With a Content-Length, the upstream gets it too.
    let (status, body) = answer(
        through(
            &node,
            &token,
            post.clone(),
            "/proxy/github/repos/acme/web/assets/blob2.bin",
        )
        .body(data.clone())
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["sha256"].as_str()),
        (200, Some(digest.as_str()))
    );
    assert_eq!(
        header(&recorder.last(), "content-length"),
        Some(data.len().to_string().as_str())
    );

    // Past the upstream's limit: 413, declared or counted while streaming.
    let (status, body) = answer(
        through(&node, &token, post.clone(), "/proxy/tiny/upload")
            .body(payload(10_000))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (413, &json!("payload_too_large")),
        "{body}"
    );
    assert!(!recorder.saw("/tiny"));
    let (mut tx, body) = Channel::<Bytes>::new(4);
    let sending = tokio::spawn(
        through(&node, &token, post.clone(), "/proxy/tiny/upload")
            .body(reqwest::Body::wrap(body))
            .send(),
    );
    for chunk in payload(10_000).chunks(1000) {
        if tx.send_data(Bytes::copy_from_slice(chunk)).await.is_err() {
            break;
        }
    }
    drop(tx);
    let (status, body) = answer(sending.await.unwrap().unwrap()).await;
    assert_eq!(
        (status, &body["error"]),
        (413, &json!("payload_too_large")),
        "{body}"
    );
    assert!(
        !recorder
            .seen()
            .iter()
            .any(|s| s.target.contains("/tiny") && s.complete),
        "{:?}",
        recorder.seen()
    );

    // A dead upstream and a slow one.
    let (status, body) = send(&node, &token, get.clone(), "/proxy/down/ping").await;
    assert_eq!(
        (status, &body["error"]),
        (502, &json!("upstream_unavailable")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("upstream down cannot be reached: "),
        "{message}"
    );
    let (status, body) = send(&node, &token, get.clone(), "/proxy/slow/slow").await;
    assert_eq!(
        (status, &body),
        (
            504,
            &json!({"error": "upstream_timeout", "message": "upstream slow did not answer within 300 ms"})
        )
    );

    // The node is still up, and every decision is in a log that verifies.
    let url = node.store.url.clone();
    node.finish_keep(|| {
        let records = audit_records(&url);
        let proxy: Vec<&Value> = records
            .iter()
            .filter(|r| r["detail"]["endpoint"] == "proxy")
            .collect();
        let find = |action: &str, outcome: &str| {
            proxy
                .iter()
                .find(|r| r["action"] == action && r["outcome"] == outcome)
                .unwrap_or_else(|| panic!("no {outcome} record of {action}: {proxy:#?}"))
        };
        let allowed = find("Action::\"list_issues\"", "allow");
        assert_eq!(allowed["resource"], "Repo::\"acme/web\"");
        assert_eq!(
            allowed["policies"],
            json!(["examples/grants.cedar#proxy-within-task"])
        );
        assert_eq!(allowed["detail"]["upstream"], "github");
        assert_eq!(allowed["detail"]["method"], "GET");
        assert_eq!(allowed["detail"]["path"], "/repos/acme/web/issues");
        assert_eq!(allowed["detail"]["upstream_status"], 200);
        assert_eq!(allowed["detail"]["task_id"], token.task_id.as_str());
        let denied = find("Action::\"list_pulls\"", "deny");
        assert_eq!(denied["detail"]["upstream_status"], Value::Null);
        let no_route = find("DELETE", "deny");
        assert_eq!(no_route["resource"], "github:/repos/acme/web");
        assert_eq!(
            proxy
                .iter()
                .filter(|r| r["detail"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("is refused")))
                .count(),
            9
        );
        assert_eq!(
            find("Action::\"ping\"", "allow")["detail"]["upstream_status"],
            502
        );
        assert_eq!(
            find("Action::\"wait\"", "allow")["detail"]["upstream_status"],
            504
        );
        let text = serde_json::to_string(&records).unwrap();
        assert!(!text.contains("gh-secret-123"));
        assert!(
            !text.contains("state=open"),
            "queries are digested, not kept"
        );
        verified_record_count(&url);
    })
    .await;
}
