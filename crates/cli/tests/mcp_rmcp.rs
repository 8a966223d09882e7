//! The official MCP Rust SDK (`rmcp`) as the agent, through Mandate's MCP
//! gateway, against real MCP servers: `server-everything` over Streamable
//! HTTP, `server-filesystem` spawned over stdio, and the recording upstream
//! (the official Python SDK's server) that writes down every request it gets.
//!
//! rmcp's Streamable HTTP transport runs over `common::rmcp_dpop::DpopHttpClient`,
//! which sends the task token and a fresh DPoP proof with every POST, GET and
//! DELETE. Through Mandate the client lists only its task's tools, gets the
//! upstream's own results for granted calls, and is refused (-31001) an
//! ungranted tool and a granted tool whose arguments policy forbids; the
//! refused calls never reach the upstream. The 2025-11-25 session's GET
//! stream and DELETE pass through; 2026-07-28 works stateless. A missing or
//! stolen token, a foreign key, a stale or replayed proof and a revoked task
//! are refused with a 401 rmcp surfaces as an authorization error.
//!
//! The software comes from `bash scripts/test.sh` (`MANDATE_TEST_NPM_BIN`,
//! `MANDATE_TEST_PYTHON`); `MANDATE_TEST_MCP=skip` skips these tests, saying so.

mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::agents::{AgentNode, Token, agent_policies, copy_agent_policies, now};
use common::mcp::{
    HttpUpstream, McpTools, assert_upstream_saw, calls_of, mcp_tools, recorded, recorded_header,
    recorded_rpc, task_for,
};
use common::rmcp_dpop::DpopHttpClient;
use common::{Backend, TestStore, audit_records, backends};
use mandate_tokens::DpopKey;
use rmcp::model::{CallToolRequestParams, ErrorData, ProtocolVersion};
use rmcp::service::{ClientInitializeError, RunningService};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceError};
use serde_json::{Value, json};

/// Mandate's JSON-RPC error for a call policy denies.
const DENIED_BY_POLICY: i32 = -31001;

/// The value of the secret `everything-key`: the upstream's credential.
const UPSTREAM_CREDENTIAL: &str = "upstream-credential-7";

/// Every rmcp step gets this long; a hang fails the test instead of stalling it.
const STEP_LIMIT: Duration = Duration::from_secs(30);

/// An rmcp client session over Streamable HTTP.
type McpClient = RunningService<RoleClient, ()>;

/// Awaits `step`, failing after [`STEP_LIMIT`].
async fn within<T>(what: &str, step: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP_LIMIT, step)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {STEP_LIMIT:?}"))
}

/// The legacy handshake: `initialize`, 2025-11-25, a session.
fn initialize() -> ClientLifecycleMode {
    ClientLifecycleMode::Initialize
}

/// `server/discover` for 2026-07-28, falling back to `initialize` for an
/// older server (rmcp's automatic mode).
fn auto() -> ClientLifecycleMode {
    ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: None,
    }
}

/// `server/discover` only: 2026-07-28, stateless.
fn discover() -> ClientLifecycleMode {
    ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    }
}

/// rmcp connected to `url` over `http` with `lifecycle`.
async fn connect<C: StreamableHttpClient>(
    url: &str,
    http: C,
    lifecycle: ClientLifecycleMode,
) -> Result<McpClient, ClientInitializeError> {
    let transport = StreamableHttpClientTransport::with_client(
        http,
        StreamableHttpClientTransportConfig::with_uri(url),
    );
    within("connecting", ().serve_with_lifecycle(transport, lifecycle)).await
}

/// The DPoP client of `token`'s holder: its token, proofs signed with its key.
fn holder(token: &Token) -> DpopHttpClient {
    DpopHttpClient::new(
        reqwest::Client::new(),
        &token.access_token,
        holder_key(token),
    )
    .unwrap()
}

/// The protocol revision rmcp negotiated.
fn protocol(mcp: &McpClient) -> Option<ProtocolVersion> {
    mcp.peer_info().map(|info| info.protocol_version.clone())
}

/// The names of the tools `tools/list` shows, sorted.
async fn listed(mcp: &McpClient) -> Vec<String> {
    let tools = within("tools/list", mcp.list_all_tools())
        .await
        .expect("tools/list is answered");
    let mut names: Vec<String> = tools.into_iter().map(|t| t.name.into_owned()).collect();
    names.sort_unstable();
    names
}

/// Calls `name` with `arguments`: the text blocks of a result, or the JSON-RPC
/// error.
async fn call(mcp: &McpClient, name: &str, arguments: Value) -> Result<Vec<String>, ErrorData> {
    let Value::Object(arguments) = arguments else {
        panic!("arguments are an object")
    };
    let params = CallToolRequestParams::new(name.to_owned()).with_arguments(arguments);
    match within(name, mcp.call_tool(params)).await {
        Ok(result) => {
            assert_ne!(result.is_error, Some(true), "{name} failed: {result:?}");
            Ok(result
                .content
                .iter()
                .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                .collect())
        }
        Err(ServiceError::McpError(error)) => Err(error),
        Err(other) => panic!("{name}: not a JSON-RPC answer: {other:?}"),
    }
}

/// Asserts that `got` is Mandate's policy denial, with a reason (`data.reason`).
#[track_caller]
fn assert_denied(got: &Result<Vec<String>, ErrorData>, what: &str) {
    let Err(error) = got else {
        panic!("{what} must be refused, got {got:?}")
    };
    assert_eq!(error.code.0, DENIED_BY_POLICY, "{what}: {error:?}");
    let reason = error.data.as_ref().and_then(|d| d["reason"].as_str());
    assert!(
        reason.is_some_and(|r| !r.is_empty()) && !error.message.is_empty(),
        "{what}: the refusal says why: {error:?}"
    );
}

/// A config serving `everything` at `url` (its credential from the secret
/// `everything-key`) with its echo, get-sum and get-env in the catalog.
fn everything_config(dir: &Path, url: &str) -> PathBuf {
    let path = dir.join("everything.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[mcp_upstreams]]
name = "everything"
url = "{url}"
credential = {{ header = "X-Upstream-Key", secret = "everything-key", format = "Key {{secret}}" }}
timeout_ms = 10000

[[mcp_upstreams.tools]]
name = "echo"
class = "read"

[[mcp_upstreams.tools]]
name = "get-sum"
class = "read"

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

/// A node on a fresh `backend` store with the shipped policies (a dev agent
/// may hold `everything.echo` and `everything.get-sum`, not get-env),
/// serving the upstream `everything` at `url`.
async fn everything_node(work: &Path, backend: Backend, url: &str) -> AgentNode {
    let node = AgentNode::start_with_config(
        TestStore::new(backend).await,
        &everything_config(work, url),
        &agent_policies(),
    );
    node.put_secret("everything-key", UPSTREAM_CREDENTIAL).await;
    node
}

/// A task token of a new dev agent `name` that asked for echo, get-sum and
/// get-env; the shipped policies grant the first two.
async fn everything_token(node: &AgentNode, name: &str) -> Token {
    let agent = node.agent(name).await;
    let token = node
        .root_token(
            &agent,
            &task_for(
                "check the gateway with rmcp",
                &[
                    "everything.echo",
                    "everything.get-sum",
                    "everything.get-env",
                ],
            ),
        )
        .await;
    assert_eq!(
        token.answer["authorization_details"][0]["tools"],
        json!(["everything.echo", "everything.get-sum"]),
        "policy grants echo and get-sum only: {}",
        token.answer
    );
    token
}

/// Lists, calls echo and get-sum (granted) and get-env (not granted), and
/// checks what rmcp got back.
async fn assert_gated(mcp: &McpClient, what: &str) {
    assert_eq!(
        listed(mcp).await,
        ["echo", "get-sum"],
        "{what}: only the task's tools are listed"
    );
    assert_eq!(
        call(mcp, "echo", json!({"message": "hello through rmcp"})).await,
        Ok(vec!["Echo: hello through rmcp".to_owned()]),
        "{what}: the upstream's own echo"
    );
    assert_eq!(
        call(mcp, "get-sum", json!({"a": 2, "b": 3})).await,
        Ok(vec!["The sum of 2 and 3 is 5.".to_owned()]),
        "{what}: the upstream's own sum"
    );
    let refused = call(mcp, "get-env", json!({})).await;
    assert_denied(&refused, &format!("{what}: get-env, not in the task"));
}

#[tokio::test(flavor = "multi_thread")]
async fn rmcp_reaches_server_everything_only_for_its_task() {
    let Some(tools) = mcp_tools(
        "mcp_rmcp",
        "rmcp_reaches_server_everything_only_for_its_task",
        &["mcp-server-everything"],
    ) else {
        return;
    };
    for backend in backends() {
        let work = tempfile::tempdir().unwrap();
        let upstream = HttpUpstream::everything(&tools, work.path());
        let node = everything_node(work.path(), backend, &upstream.url).await;
        let database = node.store.url.clone();
        let token = everything_token(&node, "rmcp-reporter").await;
        let url = node.node.url("/mcp/everything");

        // rmcp's default handshake, then its automatic mode (a server/discover
        // probe the gateway forwards; server-everything answers it as unknown
        // and rmcp falls back). Either way: 2025-11-25 with a session.
        for (mode, lifecycle) in [("initialize", initialize()), ("auto", auto())] {
            let what = format!("{backend:?} {mode}");
            let mcp = connect(&url, holder(&token), lifecycle)
                .await
                .unwrap_or_else(|e| panic!("{what}: rmcp connects: {e:?}"));
            assert_eq!(
                protocol(&mcp),
                Some(ProtocolVersion::V_2025_11_25),
                "{what}"
            );
            assert_gated(&mcp, &what).await;
            within("closing", mcp.cancel()).await.unwrap();
        }

        node.finish_keep(|| {
            // Each decided call is on the record, the refusal with no upstream
            // status: it was never forwarded.
            let records = audit_records(&database);
            let calls: Vec<&Value> = records
                .iter()
                .filter(|r| r["action"] == "Action::\"call\"" && r["detail"]["endpoint"] == "mcp")
                .collect();
            let of = |tool: &str, outcome: &str| {
                calls_of(&calls, &format!("everything.{tool}"), outcome)
            };
            assert_eq!(of("echo", "allow").len(), 2, "{calls:#?}");
            assert_eq!(of("get-sum", "allow").len(), 2, "{calls:#?}");
            assert_eq!(of("get-env", "allow").len(), 0, "{calls:#?}");
            let denied = of("get-env", "deny");
            assert_eq!(denied.len(), 2, "{calls:#?}");
            for record in denied {
                assert!(
                    record["detail"]["upstream_status"].is_null(),
                    "a refused call was forwarded: {record}"
                );
                assert_eq!(record["detail"]["task_id"], token.task_id.as_str());
            }
            for record in of("echo", "allow") {
                assert_eq!(record["detail"]["upstream_status"], 200, "{record}");
            }
            let text = serde_json::to_string(&records).unwrap();
            assert!(!text.contains(&token.access_token));
            assert!(!text.contains(UPSTREAM_CREDENTIAL));
        })
        .await;
        drop(upstream);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rmcp_sessions_pass_through_and_refused_calls_never_reach_the_upstream() {
    let Some(tools) = mcp_tools(
        "mcp_rmcp",
        "rmcp_sessions_pass_through_and_refused_calls_never_reach_the_upstream",
        &[],
    ) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let record = work.path().join("recorded.jsonl");
    // The recording upstream serves the same three tools, under the name the
    // shipped policies know.
    let upstream = HttpUpstream::recording(&tools, work.path(), &record);
    let node = everything_node(work.path(), Backend::Sqlite, &upstream.url).await;
    let token = everything_token(&node, "rmcp-recorded").await;
    let url = node.node.url("/mcp/everything");

    // 2025-11-25: a session, rmcp's GET stream beside it, DELETE at the end.
    let mcp = connect(&url, holder(&token), initialize())
        .await
        .expect("rmcp connects");
    assert_eq!(protocol(&mcp), Some(ProtocolVersion::V_2025_11_25));
    assert_gated(&mcp, "2025-11-25").await;
    within("closing", mcp.cancel()).await.unwrap();
    let legacy = recorded(&record);
    assert_upstream_saw(&legacy, UPSTREAM_CREDENTIAL, &token, "2025-11-25");
    let session = recorded_header(&legacy[0], "mcp-session-id");
    assert_eq!(
        session, None,
        "initialize opens the session: {:?}",
        legacy[0]
    );
    let sessions: std::collections::BTreeSet<&str> = legacy[1..]
        .iter()
        .map(|r| {
            recorded_header(r, "mcp-session-id").expect("every later request is in the session")
        })
        .collect();
    assert_eq!(sessions.len(), 1, "one session: {legacy:#?}");
    let methods: Vec<&str> = legacy
        .iter()
        .map(|r| r["method"].as_str().unwrap())
        .collect();
    assert!(
        methods.contains(&"GET"),
        "rmcp's GET stream reached the upstream: {methods:?}"
    );
    assert_eq!(
        methods.last(),
        Some(&"DELETE"),
        "closing the session reached the upstream: {methods:?}"
    );

    // 2026-07-28: stateless, no session header, no GET, no DELETE.
    let mcp = connect(&url, holder(&token), discover())
        .await
        .expect("rmcp connects");
    assert_eq!(protocol(&mcp), Some(ProtocolVersion::V_2026_07_28));
    assert_gated(&mcp, "2026-07-28").await;
    within("closing", mcp.cancel()).await.unwrap();
    let modern = &recorded(&record)[legacy.len()..];
    assert_upstream_saw(modern, UPSTREAM_CREDENTIAL, &token, "2026-07-28");
    for request in modern {
        assert_eq!(request["method"], "POST", "{request}");
        assert_eq!(
            recorded_header(request, "mcp-session-id"),
            None,
            "{request}"
        );
        assert_eq!(
            recorded_header(request, "mcp-protocol-version"),
            Some("2026-07-28"),
            "{request}"
        );
    }
    node.finish().await;
    drop(upstream);
}

#[tokio::test(flavor = "multi_thread")]
async fn rmcp_without_a_valid_token_and_proof_is_refused() {
    let Some(tools) = mcp_tools(
        "mcp_rmcp",
        "rmcp_without_a_valid_token_and_proof_is_refused",
        &[],
    ) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let record = work.path().join("recorded.jsonl");
    let upstream = HttpUpstream::recording(&tools, work.path(), &record);
    let node = everything_node(work.path(), Backend::Sqlite, &upstream.url).await;
    let token = everything_token(&node, "rmcp-refused").await;
    let url = node.node.url("/mcp/everything");
    let metadata = node
        .node
        .url("/.well-known/oauth-protected-resource/mcp/everything");
    let refused = |got: Result<McpClient, ClientInitializeError>, what: &str| {
        let Err(error) = got else {
            panic!("{what}: rmcp connected")
        };
        assert!(error.is_authorization_required(), "{what}: {error:?}");
        let challenge = error.auth_challenge().unwrap_or_default();
        assert!(
            challenge.starts_with("DPoP ")
                && challenge.contains(&format!("resource_metadata=\"{metadata}\"")),
            "{what}: a 401 pointing at the resource metadata, got {challenge:?}"
        );
    };

    // No token at all: rmcp's plain reqwest client.
    refused(
        connect(&url, reqwest::Client::new(), initialize()).await,
        "no token",
    );
    // The token alone, as rmcp sends it (Bearer), without its proof: what a
    // thief who copied the token has.
    let transport = StreamableHttpClientTransport::with_client(
        reqwest::Client::new(),
        StreamableHttpClientTransportConfig::with_uri(url.as_str())
            .auth_header(token.access_token.clone()),
    );
    refused(
        within(
            "connecting",
            ().serve_with_lifecycle(transport, initialize()),
        )
        .await,
        "the token as a bearer token",
    );
    // The token with proofs from another key.
    let thief = DpopHttpClient::new(
        reqwest::Client::new(),
        &token.access_token,
        DpopKey::generate_es256().unwrap(),
    )
    .unwrap();
    refused(
        connect(&url, thief, initialize()).await,
        "proofs from another key",
    );
    // The holder's key, but every proof an hour old.
    let stale = {
        let (key, access) = (holder_key(&token), token.access_token.clone());
        DpopHttpClient::with_signer(
            reqwest::Client::new(),
            &token.access_token,
            Arc::new(move |method: &str, htu: &str| {
                key.proof(method, htu, Some(&access), now() - 3600)
            }),
        )
        .unwrap()
    };
    refused(connect(&url, stale, initialize()).await, "stale proofs");
    assert!(
        recorded(&record).is_empty(),
        "refused requests reached the upstream: {:#?}",
        recorded(&record)
    );

    // A proof sent again for the next POST (same method and URL): in the
    // handshake, the initialize passes and its follow-up is refused (rmcp
    // then reports its closed channel, not the 401) ...
    let replay = Arc::new(AtomicBool::new(true));
    let got = connect(&url, replaying(&token, Arc::clone(&replay)), initialize()).await;
    assert!(
        got.is_err(),
        "a replayed proof in the handshake: rmcp connected"
    );
    assert_eq!(
        recorded(&record)
            .iter()
            .map(|r| recorded_rpc(r)["method"].clone())
            .collect::<Vec<Value>>(),
        [json!("initialize")],
        "only the request with the fresh proof reached the upstream"
    );
    // ... and in a session, the replayed call is refused with the 401's
    // challenge.
    replay.store(false, Ordering::SeqCst);
    let mcp = connect(&url, replaying(&token, Arc::clone(&replay)), initialize())
        .await
        .expect("rmcp connects with fresh proofs");
    assert_eq!(
        call(&mcp, "echo", json!({"message": "fresh"})).await,
        Ok(vec!["Echo: fresh".to_owned()])
    );
    replay.store(true, Ordering::SeqCst);
    assert_refused_in_session(&mcp, "replayed", "a replayed proof").await;
    let _ = within("closing", mcp.cancel()).await;

    // A task revoked mid-session: the next call is refused with a 401, and
    // never forwarded.
    let mcp = connect(&url, holder(&token), initialize())
        .await
        .expect("rmcp connects with a valid token");
    assert_eq!(
        call(&mcp, "echo", json!({"message": "before"})).await,
        Ok(vec!["Echo: before".to_owned()])
    );
    assert_eq!(node.admin_revoke(&token.access_token).await, 200);
    assert_refused_in_session(&mcp, "after", "a revoked task").await;
    let _ = within("closing", mcp.cancel()).await;
    let echoes: Vec<Value> = recorded(&record)
        .iter()
        .map(recorded_rpc)
        .filter(|m| m["method"] == "tools/call")
        .map(|m| m["params"]["arguments"]["message"].clone())
        .collect();
    assert_eq!(
        echoes,
        [json!("fresh"), json!("before")],
        "a refused call was forwarded"
    );
    node.finish().await;
    drop(upstream);
}

/// The holder's client that, while `replay` is set, sends its last POST
/// proof again instead of a fresh one.
fn replaying(token: &Token, replay: Arc<AtomicBool>) -> DpopHttpClient {
    let (key, access) = (holder_key(token), token.access_token.clone());
    let last: Mutex<Option<String>> = Mutex::new(None);
    DpopHttpClient::with_signer(
        reqwest::Client::new(),
        &token.access_token,
        Arc::new(move |method: &str, htu: &str| {
            let mut last = last.lock().unwrap();
            match (&*last, method) {
                (Some(proof), "POST") if replay.load(Ordering::SeqCst) => proof.clone(),
                _ => {
                    let proof = key.proof(method, htu, Some(&access), now());
                    if method == "POST" {
                        *last = Some(proof.clone());
                    }
                    proof
                }
            }
        }),
    )
    .unwrap()
}

/// Asserts that an echo of `message` in `mcp`'s session is refused with a
/// DPoP challenge (a 401), not answered.
async fn assert_refused_in_session(mcp: &McpClient, message: &str, what: &str) {
    let params = CallToolRequestParams::new("echo")
        .with_arguments(json!({"message": message}).as_object().unwrap().clone());
    let error = within(what, mcp.call_tool(params))
        .await
        .expect_err(&format!("{what}: the call is refused"));
    let challenge = error.auth_challenge().unwrap_or_default();
    assert!(
        challenge.starts_with("DPoP "),
        "{what}: a 401 challenge, got {error:?}"
    );
}

/// A copy of the key `token` is bound to.
fn holder_key(token: &Token) -> DpopKey {
    DpopKey::from_pkcs8_pem(&token.key.to_pkcs8_pem().unwrap()).unwrap()
}

/// Policies for the file-system upstream: the shipped policies, plus holding
/// `fs.read_text_file` and reading only `allowed` with it.
fn fs_policies(dir: &Path, allowed: &Path) -> PathBuf {
    let policies = dir.join("policies");
    copy_agent_policies(&policies);
    std::fs::write(
        policies.join("fs.cedar"),
        format!(
            r#"
@id("dev-agents-hold-fs-read")
permit (principal is Agent, action == Action::"hold_tool", resource == Tool::"fs.read_text_file")
when {{ principal.env == "dev" }};

@id("fs-reads-only-the-notes")
forbid (principal, action == Action::"call", resource == Tool::"fs.read_text_file")
unless {{ context has args && context.args.contains({{path: "path", value: {allowed:?}}}) }};
"#
        ),
    )
    .unwrap();
    policies
}

/// A config with the stdio upstream `fs`: server-filesystem on `root`.
fn fs_config(dir: &Path, tools: &McpTools, root: &Path) -> PathBuf {
    let path = dir.join("fs.toml");
    let fs = tools.npm_bin.join("mcp-server-filesystem");
    std::fs::write(
        &path,
        format!(
            r#"
[[mcp_upstreams]]
name = "fs"
command = [{fs:?}, {root:?}]
timeout_ms = 10000

[[mcp_upstreams.tools]]
name = "read_text_file"
class = "read"
"#
        ),
    )
    .unwrap();
    path
}

/// A time well before now, to set as a file's access time.
fn long_ago() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000)
}

fn set_atime(path: &Path, at: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_accessed(at))
        .unwrap();
}

fn atime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().accessed().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn rmcp_reads_through_server_filesystem_only_what_the_policy_allows() {
    let Some(tools) = mcp_tools(
        "mcp_rmcp",
        "rmcp_reads_through_server_filesystem_only_what_the_policy_allows",
        &["mcp-server-filesystem"],
    ) else {
        return;
    };
    for backend in backends() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("fsroot");
        std::fs::create_dir_all(root.join("allowed")).unwrap();
        std::fs::create_dir_all(root.join("private")).unwrap();
        let allowed = root.join("allowed/notes.txt");
        let secret = root.join("private/secret.txt");
        std::fs::write(&allowed, "the notes, read by rmcp\n").unwrap();
        std::fs::write(&secret, "TOP SECRET").unwrap();
        let planted = root.join("allowed/planted.txt");
        // An access time before the files' modification: a read (even under
        // relatime) moves it, so an unchanged one means never read.
        set_atime(&allowed, long_ago());
        set_atime(&secret, long_ago());

        let node = AgentNode::start_with_config(
            TestStore::new(backend).await,
            &fs_config(work.path(), &tools, &root),
            &fs_policies(work.path(), &allowed),
        );
        let database = node.store.url.clone();
        let agent = node.agent("rmcp-reader").await;
        let token = node
            .root_token(
                &agent,
                &task_for("read the notes with rmcp", &["fs.read_text_file"]),
            )
            .await;
        let url = node.node.url("/mcp/fs");
        let what = format!("{backend:?}");

        let mcp = connect(&url, holder(&token), initialize())
            .await
            .unwrap_or_else(|e| panic!("{what}: rmcp connects: {e:?}"));
        // server-filesystem has a dozen tools; the task holds one.
        assert_eq!(listed(&mcp).await, ["read_text_file"], "{what}");
        let read = |path: &Path| json!({"path": path});
        assert_eq!(
            call(&mcp, "read_text_file", read(&allowed)).await,
            Ok(vec!["the notes, read by rmcp\n".to_owned()]),
            "{what}: the allowed file, read by the server"
        );
        for (path, why) in [
            (secret.clone(), "a file outside the allowed one"),
            (
                root.join("allowed/../private/secret.txt"),
                "the secret by a path through the allowed directory",
            ),
            (root.join("private/missing.txt"), "a missing file"),
        ] {
            // Mandate's denial, not the server's answer (a missing file would
            // be ENOENT from the server).
            assert_denied(
                &call(&mcp, "read_text_file", read(&path)).await,
                &format!("{what}: {why}"),
            );
        }
        // A tool of the server that the task does not hold, and that would
        // leave a trace had it been forwarded.
        assert_denied(
            &call(
                &mcp,
                "write_file",
                json!({"path": planted, "content": "planted"}),
            )
            .await,
            &format!("{what}: write_file, not in the task"),
        );
        within("closing", mcp.cancel()).await.unwrap();

        assert_ne!(
            atime(&allowed),
            long_ago(),
            "{what}: the allowed read moved its access time (else this file system ignores atime and the check below proves nothing)"
        );
        assert_eq!(
            atime(&secret),
            long_ago(),
            "{what}: the secret file was read"
        );
        assert!(!planted.exists(), "{what}: write_file reached the server");

        node.finish_keep(|| {
            let records = audit_records(&database);
            let calls: Vec<&Value> = records
                .iter()
                .filter(|r| r["action"] == "Action::\"call\"")
                .collect();
            let allowed: Vec<&&Value> = calls.iter().filter(|r| r["outcome"] == "allow").collect();
            let denied: Vec<&&Value> = calls.iter().filter(|r| r["outcome"] == "deny").collect();
            assert_eq!(allowed.len(), 1, "{calls:#?}");
            assert_eq!(allowed[0]["resource"], "Tool::\"fs.read_text_file\"");
            assert_eq!(allowed[0]["detail"]["upstream_status"], 200, "{calls:#?}");
            assert_eq!(denied.len(), 4, "{calls:#?}");
            assert!(
                denied
                    .iter()
                    .all(|r| r["detail"]["upstream_status"].is_null()),
                "{calls:#?}"
            );
            assert!(
                denied
                    .iter()
                    .any(|r| r["resource"] == "Tool::\"fs.write_file\""),
                "{calls:#?}"
            );
        })
        .await;
    }
}
