//! `mandate mcp stdio` end to end: the official MCP Python SDK's stdio client
//! (crates/cli/tests/mcp/stdio_client.py) spawns the real binary as a desktop
//! client would, and the wrapper takes every message through the node's MCP
//! gateway with a task token it obtained with the agent's SVID (or was given)
//! and a fresh DPoP proof per request. The upstream is `server-everything`,
//! spawned by the node over stdio. The agent sees only its task's tools, a
//! granted call returns the server's own result, an ungranted one is refused
//! by policy (`-31001`), and the calls are audited.
//!
//! At the stdio edge, with the wrapper's stdin fed directly: a malformed line
//! is answered with a parse error and the wrapper keeps going, an HTTP error
//! from the node becomes a JSON-RPC error for the request's id, concurrent
//! requests are all answered, only JSON-RPC lines reach stdout, and EOF ends
//! it with status 0.
//!
//! The MCP software comes from `bash scripts/test.sh` (`MANDATE_TEST_NPM_BIN`,
//! `MANDATE_TEST_PYTHON`); `MANDATE_TEST_MCP=skip` skips the SDK test, saying
//! so. The stdin test needs no MCP software and always runs.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::agents::{
    AgentNode, READ_REPORTS_CALL_WITHIN_TASK, agent_policies, schema_and_policies, task,
};
use common::mcp::{McpTools, mcp_tools, run_sdk_script, wait, write_svid};
use common::{Backend, TestStore, audit_records};
use serde_json::{Value, json};

/// Policies: dev agents may hold everything's echo, get-sum and get-env, and
/// a call is allowed for the task's tools.
fn policies(dir: &Path) -> PathBuf {
    let holds = r#"
@id("dev-agents-hold-everything")
permit (principal is Agent, action == Action::"hold_tool", resource is Tool)
when {
  principal.env == "dev" &&
  [Tool::"everything.echo", Tool::"everything.get-sum", Tool::"everything.get-env"].contains(resource)
};
"#;
    schema_and_policies(dir, "wrapper", &[holds, READ_REPORTS_CALL_WITHIN_TASK])
}

/// A config with the stdio upstream `everything` (server-everything).
fn config(dir: &Path, tools: &McpTools) -> PathBuf {
    let path = dir.join("wrapper.toml");
    let everything = tools.npm_bin.join("mcp-server-everything");
    std::fs::write(
        &path,
        format!(
            r#"
[[mcp_upstreams]]
name = "everything"
command = [{everything:?}, "stdio"]
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
"#
        ),
    )
    .unwrap();
    path
}

/// `mandate mcp stdio` arguments obtaining a token as the agent in `svid`.
fn svid_args(node: &AgentNode, upstream: &str, svid: &Path, tools: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "mcp",
        "stdio",
        "--server",
        node.base(),
        "--upstream",
        upstream,
        "--svid",
        svid.to_str().unwrap(),
        "--tls-server",
        node.tls(),
        "--purpose",
        "a desktop session",
        "--data-domain",
        "reports",
        "--capability",
        "read",
        "--ttl",
        "600",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for tool in tools {
        args.extend(["--tool".to_owned(), tool.to_string()]);
    }
    args
}

/// A node on a fresh SQLite store with the shipped policies and one upstream,
/// `dead`, at a port nothing listens on (its config written into `dir`).
async fn dead_upstream_node(dir: &Path) -> AgentNode {
    let config = dir.join("dead.toml");
    std::fs::write(
        &config,
        "[[mcp_upstreams]]\nname = \"dead\"\nurl = \"http://127.0.0.1:9/mcp\"\n",
    )
    .unwrap();
    AgentNode::start_with_config(
        TestStore::new(Backend::Sqlite).await,
        &config,
        &agent_policies(),
    )
}

fn steps_of(run: &Value) -> &Vec<Value> {
    run["steps"].as_array().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_stdio_client_through_the_wrapper_sees_and_calls_only_the_task_tools() {
    let Some(tools) = mcp_tools(
        "mcp_stdio_wrapper",
        "the_sdk_stdio_client_through_the_wrapper_sees_and_calls_only_the_task_tools",
        &["mcp-server-everything"],
    ) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let store = TestStore::new(Backend::Sqlite).await;
    let node =
        AgentNode::start_with_config(store, &config(work.path(), &tools), &policies(work.path()));
    let database = node.store.url.clone();
    let agent = node.agent("desktop").await;
    let svid = write_svid(&agent, work.path());
    let granted = ["everything.echo", "everything.get-sum"];

    // A token given: the same task, obtained beforehand.
    let given = node
        .root_token(&agent, &task(&granted, &["read"], 600))
        .await;
    let token_file = work.path().join("token.txt");
    std::fs::write(&token_file, &given.access_token).unwrap();
    let token_args: Vec<String> = [
        "mcp",
        "stdio",
        "--server",
        node.base(),
        "--upstream",
        "everything",
        "--token-file",
        token_file.to_str().unwrap(),
        "--key",
        svid.join("svid.key").to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    let steps = json!([
        {"op": "list_tools"},
        {"op": "call_tool", "name": "echo", "arguments": {"message": "hello over stdio"}},
        {"op": "call_tool", "name": "get-sum", "arguments": {"a": 2, "b": 3}},
        {"op": "call_tool", "name": "get-env", "arguments": {}},
    ]);
    for (what, args, mode) in [
        (
            "svid, auto",
            svid_args(&node, "everything", &svid, &granted),
            "auto",
        ),
        (
            "svid, legacy",
            svid_args(&node, "everything", &svid, &granted),
            "legacy",
        ),
        ("token file, legacy", token_args.clone(), "legacy"),
    ] {
        let run = run_sdk_script(
            &tools,
            "stdio_client.py",
            &json!({
                "command": env!("CARGO_BIN_EXE_mandate"), "args": args, "mode": mode,
                "steps": steps,
            }),
        );
        let steps = steps_of(&run);
        let mut listed: Vec<&str> = steps[0]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no tools listed: {run}"))
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        listed.sort_unstable();
        assert_eq!(
            listed,
            ["echo", "get-sum"],
            "{what}: only the task's tools: {run}"
        );
        assert_eq!(
            steps[1],
            json!({"ok": true, "is_error": false, "text": ["Echo: hello over stdio"]}),
            "{what}: granted echo: {run}"
        );
        assert_eq!(
            steps[2],
            json!({"ok": true, "is_error": false, "text": ["The sum of 2 and 3 is 5."]}),
            "{what}: granted get-sum: {run}"
        );
        let refused = &steps[3];
        assert_eq!(refused["ok"], false, "{what}: get-env refused: {run}");
        assert_eq!(refused["code"], -31001, "{what}: {run}");
        assert!(
            refused["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("denied by policy"),
            "{what}: {refused}"
        );
    }
    node.finish_keep(|| {
        let records = audit_records(&database);
        let of = |tool: &str, outcome: &str| {
            records
                .iter()
                .filter(|r| {
                    r["resource"] == format!("Tool::\"everything.{tool}\"")
                        && r["outcome"] == outcome
                })
                .count()
        };
        assert_eq!(of("echo", "allow"), 3, "{records:#?}");
        assert_eq!(of("get-sum", "allow"), 3, "{records:#?}");
        assert_eq!(of("get-env", "deny"), 3, "{records:#?}");
        assert!(
            records
                .iter()
                .filter(|r| r["resource"] == "Tool::\"everything.echo\"")
                .all(|r| r["principal"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(&agent.spiffe_id)
                    || r.to_string().contains(&agent.spiffe_id)),
            "the calls are the agent's: {records:#?}"
        );
    })
    .await;
}

/// Runs `mandate ARGS` with `input` on stdin and returns its output (30 s at most).
fn wrapper_with_input(args: &[String], input: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("MANDATE_SERVER")
        .env_remove("MANDATE_TLS_SERVER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mandate runs");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
        // Dropping stdin is the EOF.
    });
    let out = wait(&mut child, Duration::from_secs(30), "mandate mcp stdio");
    feeder.join().unwrap();
    out
}

fn lines(out: &std::process::Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout holds a line that is not JSON ({e}): {line:?}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn fed_directly_the_wrapper_answers_bad_lines_and_http_errors_and_exits_at_eof() {
    let node = AgentNode::sqlite().await;
    let agent = node.agent("feeder").await;
    let work = tempfile::tempdir().unwrap();
    let svid = write_svid(&agent, work.path());
    // The example policies grant files.read; the node has no MCP upstream
    // `nowhere`, so every request is answered by the node with an HTTP error.
    let args = svid_args(&node, "nowhere", &svid, &["files.read"]);
    let mut input = Vec::new();
    input.extend_from_slice(b"this is not JSON\n");
    input.extend_from_slice(b"\n");
    input.extend_from_slice(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    input.extend_from_slice(b"\r\n");
    input.extend_from_slice(b"{\"jsonrpc\": \"2.0\", \"id\": 2, \"meth\n");
    input.extend_from_slice(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    input.push(b'\n');
    for id in 3..8 {
        input.extend_from_slice(
            format!(r#"{{"jsonrpc":"2.0","id":"r{id}","method":"tools/list"}}"#).as_bytes(),
        );
        input.push(b'\n');
    }
    // The last line has no newline: EOF ends it.
    input.extend_from_slice(br#"{"jsonrpc":"2.0","id":99,"method":"ping"}"#);
    let out = wrapper_with_input(&args, &input);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    let got = lines(&out);
    let parse_errors: Vec<&Value> = got
        .iter()
        .filter(|l| l["error"]["code"] == -32700)
        .collect();
    assert_eq!(parse_errors.len(), 2, "two malformed lines: {got:#?}");
    for error in &parse_errors {
        assert_eq!(error["jsonrpc"], "2.0");
        assert!(error.get("result").is_none());
    }
    // Every request with an id is answered, once, with the node's HTTP error.
    let mut ids: Vec<String> = got
        .iter()
        .filter(|l| l["error"]["code"] != -32700)
        .map(|l| l["id"].to_string())
        .collect();
    ids.sort();
    let mut want: Vec<String> = ["1", "99"]
        .iter()
        .map(|s| s.to_string())
        .chain((3..8).map(|i| format!("\"r{i}\"")))
        .collect();
    want.sort();
    assert_eq!(ids, want, "{got:#?}\n{stderr}");
    for answer in got.iter().filter(|l| l["error"]["code"] != -32700) {
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("HTTP 404") || answer["error"]["data"]["http_status"] == 404,
            "{answer}"
        );
    }
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_token_is_a_json_rpc_error_naming_the_reason() {
    let work = tempfile::tempdir().unwrap();
    // An upstream that is never reached: the token is refused first.
    let node = dead_upstream_node(work.path()).await;
    let key = work.path().join("key.pem");
    let agent = node.agent("holder").await;
    std::fs::write(&key, &agent.key_pem).unwrap();
    let token_file = work.path().join("token.txt");
    std::fs::write(&token_file, "not-a-token\n").unwrap();
    let args: Vec<String> = [
        "mcp",
        "stdio",
        "--server",
        node.base(),
        "--upstream",
        "dead",
        "--token-file",
        token_file.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = wrapper_with_input(
        &args,
        b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"initialize\",\"params\":{}}\n",
    );
    assert!(out.status.success(), "{out:?}");
    let got = lines(&out);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0]["id"], 5);
    let error = &got[0]["error"];
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("Mandate answered HTTP 401: invalid_token"),
        "{error}"
    );
    assert_eq!(error["data"]["http_status"], 401, "{error}");
    assert!(
        error["data"]["www_authenticate"]
            .as_str()
            .unwrap_or_default()
            .contains("/.well-known/oauth-protected-resource/mcp/dead"),
        "{error}"
    );
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_it_obtained_is_obtained_again_before_it_expires() {
    let work = tempfile::tempdir().unwrap();
    // An upstream that is down: a request with a valid token gets the
    // gateway's -31003, one with an expired token a 401.
    let node = dead_upstream_node(work.path()).await;
    let agent = node.agent("renewer").await;
    let svid = write_svid(&agent, work.path());
    let mut args = svid_args(&node, "dead", &svid, &["files.read"]);
    let ttl = args.iter().position(|a| a == "--ttl").unwrap() + 1;
    args[ttl] = "4".to_owned();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(&args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mandate runs");
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        stdin
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n")
            .unwrap();
        // Past the first token's four seconds.
        std::thread::sleep(Duration::from_secs(6));
        stdin
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n")
            .unwrap();
    });
    let out = wait(&mut child, Duration::from_secs(60), "mandate mcp stdio");
    feeder.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    let got = lines(&out);
    assert_eq!(got.len(), 2, "{got:#?}");
    for answer in &got {
        assert_eq!(answer["error"]["code"], -31003, "not a 401: {answer}");
    }
    node.finish().await;
}
