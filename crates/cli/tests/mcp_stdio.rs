//! Stdio MCP upstreams behind the HTTP gateway, end to end with real MCP
//! software: `server-filesystem` and `server-everything` (npm), spawned by
//! the node and spoken to over stdio, and the official MCP Python SDK as the
//! agent (crates/cli/tests/mcp/client.py).
//!
//! A policy on `context.args` keeps the file-system server to one file (a
//! refused read never reaches it), a spawned server gets its credential in
//! its environment and nothing of the agent's, and a killed server fails the
//! calls waiting on it at once and is spawned again for the next ones.
//!
//! The software comes from `bash scripts/test.sh` (`MANDATE_TEST_NPM_BIN`,
//! `MANDATE_TEST_PYTHON`); `MANDATE_TEST_MCP=skip` skips these tests, saying so.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::agents::{AgentNode, READ_REPORTS_CALL_WITHIN_TASK, Token, schema_and_policies};
use common::mcp::{McpTools, mcp_tools, rpc, run_sdk_script, task_for, tools_call};
use common::{Backend, TestStore, audit_records};
use serde_json::{Value, json};

fn policies(dir: &Path, allowed: &Path) -> PathBuf {
    let holds = r#"
@id("dev-agents-hold-stdio-tools")
permit (principal is Agent, action == Action::"hold_tool", resource is Tool)
when {
  principal.env == "dev" &&
  [Tool::"fs.read_text_file", Tool::"everything.echo", Tool::"everything.get-env",
   Tool::"everything.trigger-long-running-operation"].contains(resource)
};
"#;
    let only_the_notes = format!(
        r#"
@id("fs-reads-only-the-notes")
forbid (principal, action == Action::"call", resource == Tool::"fs.read_text_file")
unless {{ context has args && context.args.contains({{path: "path", value: {allowed:?}}}) }};
"#
    );
    schema_and_policies(
        dir,
        "stdio",
        &[holds, READ_REPORTS_CALL_WITHIN_TASK, &only_the_notes],
    )
}

/// A config with the stdio upstreams `fs` (server-filesystem on `root`) and
/// `everything` (server-everything, with `EVERYTHING_TOKEN` from the secret
/// `everything-token` and `STDIO_TEST_MARKER=<marker>` in its environment).
fn config(dir: &Path, tools: &McpTools, root: &Path, marker: &str) -> PathBuf {
    let path = dir.join("stdio.toml");
    let fs = tools.npm_bin.join("mcp-server-filesystem");
    let everything = tools.npm_bin.join("mcp-server-everything");
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
labels = ["public"]

[[mcp_upstreams]]
name = "everything"
command = [{everything:?}, "stdio"]
env = {{ STDIO_TEST_MARKER = "{marker}" }}
credential = {{ env = "EVERYTHING_TOKEN", secret = "everything-token", format = "tok-{{secret}}" }}
timeout_ms = 10000

[[mcp_upstreams.tools]]
name = "echo"
class = "read"

[[mcp_upstreams.tools]]
name = "get-env"
class = "read"

[[mcp_upstreams.tools]]
name = "trigger-long-running-operation"
class = "read"
"#
        ),
    )
    .unwrap();
    path
}

/// Writes the agent's key where client.py reads it.
fn write_key(node_agent: &common::agents::Agent, dir: &Path) -> PathBuf {
    let key = dir.join(format!("{}.key", node_agent.name));
    std::fs::write(&key, &node_agent.key_pem).unwrap();
    key
}

#[tokio::test(flavor = "multi_thread")]
async fn server_filesystem_over_stdio_reads_only_what_the_policy_allows() {
    let Some(tools) = mcp_tools(
        "mcp_stdio",
        "server_filesystem_over_stdio_reads_only_what_the_policy_allows",
        &["mcp-server-everything", "mcp-server-filesystem"],
    ) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("fsroot");
    std::fs::create_dir_all(root.join("allowed")).unwrap();
    std::fs::create_dir_all(root.join("private")).unwrap();
    let allowed = root.join("allowed/notes.txt");
    std::fs::write(&allowed, "the notes, read over stdio\n").unwrap();
    std::fs::write(root.join("private/secret.txt"), "TOP SECRET").unwrap();
    let missing = root.join("private/missing.txt");

    let config = config(work.path(), &tools, &root, "fs-test");
    let node = AgentNode::start_with_config(
        TestStore::new(Backend::Sqlite).await,
        &config,
        &policies(work.path(), &allowed),
    );
    let database = node.store.url.clone();
    let agent = node.agent("reader").await;
    let token = node
        .root_token(
            &agent,
            &task_for("check stdio upstreams", &["fs.read_text_file"]),
        )
        .await;
    let key = write_key(&agent, work.path());
    let url = node.node.url("/mcp/fs");
    let read = |path: &Path| json!({"op": "call_tool", "name": "read_text_file", "arguments": {"path": path}});
    for mode in ["auto", "legacy"] {
        let run = run_sdk_script(
            &tools,
            "client.py",
            &json!({
                "url": url, "key": key, "token": token.access_token, "mode": mode,
                "steps": [{"op": "list_tools"}, read(&allowed), read(&root.join("private/secret.txt")), read(&missing)],
            }),
        );
        let steps = &run["steps"];
        assert_eq!(
            steps[0],
            json!({"tools": ["read_text_file"]}),
            "{mode}: {run}"
        );
        assert_eq!(
            steps[1],
            json!({"ok": true, "is_error": false, "text": ["the notes, read over stdio\n"]}),
            "{mode}: the allowed file is read by the server: {run}"
        );
        for refused in [&steps[2], &steps[3]] {
            // Mandate's denial, not the server's ENOENT: it never got the call.
            assert_eq!(refused["ok"], false, "{mode}: {run}");
            assert_eq!(refused["code"], -31001, "{mode}: {run}");
            assert!(
                refused["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("denied by policy"),
                "{mode}: {run}"
            );
        }
        assert!(!run.to_string().contains("TOP SECRET"));
        assert!(!run.to_string().contains("ENOENT"));
    }
    node.finish_keep(|| {
        let records = audit_records(&database);
        let calls: Vec<&Value> = records
            .iter()
            .filter(|r| r["resource"] == "Tool::\"fs.read_text_file\"")
            .collect();
        let allowed: Vec<&&Value> = calls.iter().filter(|r| r["outcome"] == "allow").collect();
        let denied: Vec<&&Value> = calls.iter().filter(|r| r["outcome"] == "deny").collect();
        assert_eq!(allowed.len(), 2, "{calls:#?}");
        assert_eq!(denied.len(), 4, "{calls:#?}");
        assert!(
            allowed
                .iter()
                .all(|r| r["detail"]["upstream_status"] == 200),
            "{calls:#?}"
        );
        assert!(
            denied
                .iter()
                .all(|r| r["detail"]["upstream_status"].is_null()),
            "{calls:#?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spawned_server_gets_its_credential_in_its_environment_and_nothing_of_the_agent() {
    let Some(tools) = mcp_tools(
        "mcp_stdio",
        "a_spawned_server_gets_its_credential_in_its_environment_and_nothing_of_the_agent",
        &["mcp-server-everything", "mcp-server-filesystem"],
    ) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let config = config(work.path(), &tools, work.path(), "env-test");
    let node = AgentNode::start_with_config(
        TestStore::new(Backend::Sqlite).await,
        &config,
        &policies(work.path(), Path::new("/nowhere")),
    );
    let database = node.store.url.clone();
    node.put_secret("everything-token", "stdio-credential-42")
        .await;
    let agent = node.agent("envy").await;
    let token = node
        .root_token(
            &agent,
            &task_for("check stdio upstreams", &["everything.get-env"]),
        )
        .await;
    let key = write_key(&agent, work.path());
    let run = run_sdk_script(
        &tools,
        "client.py",
        &json!({
            "url": node.node.url("/mcp/everything"), "key": key, "token": token.access_token,
            "steps": [{"op": "list_tools"}, {"op": "call_tool", "name": "get-env", "arguments": {}}],
        }),
    );
    let steps = &run["steps"];
    assert_eq!(steps[0], json!({"tools": ["get-env"]}), "{run}");
    assert_eq!(steps[1]["ok"], true, "{run}");
    let text = steps[1]["text"][0].as_str().expect("get-env's text");
    let env: serde_json::Map<String, Value> =
        serde_json::from_str(text).expect("get-env prints the environment as JSON");
    assert_eq!(env["EVERYTHING_TOKEN"], "tok-stdio-credential-42", "{text}");
    assert_eq!(env["STDIO_TEST_MARKER"], "env-test", "{text}");
    assert!(!text.contains(&token.access_token));
    // Nothing of the node's own environment but the basics.
    assert!(
        env.keys().all(|k| !k.starts_with("MANDATE_")),
        "the node's environment leaks: {text}"
    );
    node.finish_keep(|| {
        let text = serde_json::to_string(&audit_records(&database)).unwrap();
        assert!(!text.contains("stdio-credential-42"));
    })
    .await;
}

/// The pid of the process whose environment holds `STDIO_TEST_MARKER=<marker>`.
fn pid_with_marker(marker: &str) -> Option<u32> {
    let needle = format!("STDIO_TEST_MARKER={marker}\0");
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let entry = entry.ok()?;
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let environ = std::fs::read(entry.path().join("environ")).ok()?;
        let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
        (!status.contains("State:\tZ")
            && environ
                .windows(needle.len())
                .any(|w| w == needle.as_bytes()))
        .then_some(pid)
    })
}

/// How long a JSON-RPC message may take through the gateway.
const RPC_LIMIT: Duration = Duration::from_secs(20);

fn echo(id: &str) -> Value {
    tools_call(id, "echo", json!({"message": id}))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_stdio_server_fails_what_waits_and_is_spawned_again() {
    let Some(tools) = mcp_tools(
        "mcp_stdio",
        "a_killed_stdio_server_fails_what_waits_and_is_spawned_again",
        &["mcp-server-everything", "mcp-server-filesystem"],
    ) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let marker = format!("crash-{}", std::process::id());
    let config = config(work.path(), &tools, work.path(), &marker);
    let node = AgentNode::start_with_config(
        TestStore::new(Backend::Sqlite).await,
        &config,
        &policies(work.path(), Path::new("/nowhere")),
    );
    node.put_secret("everything-token", "x").await;
    let agent = node.agent("crasher").await;
    let token = node
        .root_token(
            &agent,
            &task_for(
                "check stdio upstreams",
                &[
                    "everything.echo",
                    "everything.trigger-long-running-operation",
                ],
            ),
        )
        .await;
    let url = node.node.url("/mcp/everything");
    let http = reqwest::Client::new();

    // A client's initialize is answered from the cached result, with its id.
    let (status, init) = rpc(
        &http,
        &token,
        &url,
        &json!({"jsonrpc": "2.0", "id": 7, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}}),
        RPC_LIMIT,
    )
    .await;
    assert_eq!(status, 200, "{init}");
    assert_eq!(init["id"], 7, "{init}");
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
    let (status, answer) = rpc(&http, &token, &url, &echo("first"), RPC_LIMIT).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["id"], "first");
    assert_eq!(answer["result"]["content"][0]["text"], "Echo: first");
    // No GET stream for a stdio upstream.
    let get = http
        .get(&url)
        .header("authorization", format!("DPoP {}", token.access_token))
        .header(
            "dpop",
            token.key.proof(
                "GET",
                &url,
                Some(&token.access_token),
                common::agents::now(),
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);

    let first = pid_with_marker(&marker).expect("the spawned server is running");
    // A long call is waiting when the server is killed: it fails at once.
    let long = tokio::spawn({
        let (http, url) = (http.clone(), url.clone());
        let token = Token::from_answer(&token.answer, agent.dpop_key());
        async move {
            let started = Instant::now();
            let answer = rpc(
                &http,
                &token,
                &url,
                &tools_call(
                    99,
                    "trigger-long-running-operation",
                    json!({"duration": 8, "steps": 2}),
                ),
                RPC_LIMIT,
            )
            .await;
            (answer, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let killed = Command::new("kill")
        .args(["-9", &first.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let ((status, answer), took) = long.await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["id"], 99, "{answer}");
    assert_eq!(answer["error"]["code"], -31003, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exited"),
        "{answer}"
    );
    assert!(
        took < Duration::from_secs(6),
        "failed at once, not after the operation: {took:?}"
    );

    // The next calls spawn it again; within a few seconds they work.
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (status, answer) = rpc(
            &http,
            &token,
            &url,
            &echo(&format!("again-{attempt}")),
            RPC_LIMIT,
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        if answer["result"]["content"][0]["text"] == format!("Echo: again-{attempt}") {
            break;
        }
        assert_eq!(
            answer["error"]["code"], -31003,
            "only 'unavailable' until it is back: {answer}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the server is not back after 10 s: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let second = pid_with_marker(&marker).expect("the server runs again");
    assert_ne!(first, second);
    node.finish().await;
    // Stopping the node stopped its server.
    let stopped = Instant::now();
    while pid_with_marker(&marker).is_some() {
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "the spawned server outlives the node"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
