//! Runtime governance end to end, with the real gateway in front of the real
//! MCP reference servers (`server-filesystem` and `server-everything`, spoken
//! to over stdio) and the baseline policy pack in `policies/baseline/`:
//!
//! - the scenario of issue 6: an agent summarising the Q3 report reads a
//!   confidential file, is refused egress afterwards, drifts and is refused,
//!   delegates a narrower task that cannot be widened, has a destructive call
//!   held until a person approves it through the CLI (once: the same call is
//!   held again), cannot approve its own hold, runs out of budget, and is
//!   killed; `audit trace` shows the chain and `audit verify` passes;
//! - a hold that nobody decides times out as a deny, and the upstream never
//!   sees the call;
//! - 50 concurrent calls against a budget of 10: exactly 10 go through.
//!
//! The software comes from `bash scripts/test.sh`; `MANDATE_TEST_MCP=skip`
//! skips these tests, saying so.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::agents::{Agent, AgentNode, Token, mandate_env};
use common::mcp::{McpTools, mcp_tools, rpc, tools_call};
use common::{Backend, TestStore, audit_records, repo_root};
use serde_json::{Value, json};

const Q3_TEXT: &str = "Q3 revenue 4.2M, margin 31% (CONFIDENTIAL-Q3-FIGURES)\n";

/// The baseline pack, and the grants of this scenario beside it.
fn policies(dir: &Path) -> PathBuf {
    let policies = dir.join("policies");
    let baseline = policies.join("baseline");
    std::fs::create_dir_all(&baseline).unwrap();
    for entry in std::fs::read_dir(repo_root().join("policies/baseline")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), baseline.join(entry.file_name())).unwrap();
    }
    std::fs::write(
        policies.join("grants.cedar"),
        r#"
// Standing rights of dev agents: wider than any one task.
@id("dev-agents-hold-the-scenario-tools")
permit (principal is Agent, action == Action::"hold_tool", resource is Tool)
when {
  principal.env == "dev" &&
  [Tool::"fs.read_text_file", Tool::"fs.list_directory", Tool::"fs.write_file",
   Tool::"everything.echo", Tool::"everything.get-sum"].contains(resource)
};

@id("anyone-holds-reports")
permit (principal is Agent, action == Action::"hold_data_domain", resource == DataDomain::"reports");

@id("dev-agents-hold-every-capability")
permit (principal is Agent, action == Action::"hold_capability", resource is Capability)
when { principal.env == "dev" };

// Dev agents may call any tool: the baseline's forbids are what stands in
// the way (drift, classes, egress after a confidential read, approvals).
@id("dev-agents-call")
permit (principal is Agent, action == Action::"call", resource is Tool)
when { principal.env == "dev" };
"#,
    )
    .unwrap();
    policies
}

/// `fs`: server-filesystem on `root` (reading is labelled confidential,
/// writing is destructive); `everything`: server-everything, whose `echo`
/// stands in for a tool that sends data out (a mail, a post).
fn config(dir: &Path, tools: &McpTools, root: &Path, extra: &str) -> PathBuf {
    let path = dir.join("governance.toml");
    let fs = tools.npm_bin.join("mcp-server-filesystem");
    let everything = tools.npm_bin.join("mcp-server-everything");
    std::fs::write(
        &path,
        format!(
            r#"
{extra}

[[mcp_upstreams]]
name = "fs"
command = [{fs:?}, {root:?}]
timeout_ms = 15000

[[mcp_upstreams.tools]]
name = "read_text_file"
class = "read"
labels = ["Confidential"]

[[mcp_upstreams.tools]]
name = "list_directory"
class = "read"

[[mcp_upstreams.tools]]
name = "write_file"
class = "act"
destructive = true

[[mcp_upstreams]]
name = "everything"
command = [{everything:?}, "stdio"]
timeout_ms = 15000

[[mcp_upstreams.tools]]
name = "echo"
class = "read"
egress = true

[[mcp_upstreams.tools]]
name = "get-sum"
class = "read"
"#
        ),
    )
    .unwrap();
    path
}

/// `authorization_details` of one task.
fn task(purpose: &str, tools: &[&str], capabilities: &[&str], max_calls: Option<u64>) -> Value {
    let mut entry = json!({
        "type": "agent_task",
        "purpose": purpose,
        "tools": tools,
        "data_domains": ["reports"],
        "ttl_seconds": 600,
        "capabilities": capabilities,
    });
    if let Some(max) = max_calls {
        entry["max_calls"] = json!(max);
    }
    json!([entry])
}

/// A sub-agent's task: reading for the summary, 2 calls, 5 minutes.
fn child_task_of(tools: &[&str]) -> Value {
    let mut details = task(
        "read the Q3 report for the summary",
        tools,
        &["read"],
        Some(2),
    );
    details[0]["ttl_seconds"] = json!(300);
    details
}

/// One `tools/call` through the gateway, waiting up to a minute (a held
/// call waits for its person).
async fn call(
    http: &reqwest::Client,
    token: &Token,
    url: &str,
    tool: &str,
    arguments: Value,
) -> (u16, Value) {
    let body = tools_call(1, tool, arguments);
    rpc(http, token, url, &body, Duration::from_secs(60)).await
}

/// The answer's text, or a panic naming what came instead.
fn text_of(answer: &(u16, Value)) -> String {
    assert_eq!(answer.0, 200, "{answer:?}");
    answer.1["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a tool result: {answer:?}"))
        .to_owned()
}

/// Asserts a refusal by Mandate with `reason`.
fn assert_refused(answer: &(u16, Value), reason: &str) {
    assert_eq!(answer.0, 200, "{answer:?}");
    assert_eq!(answer.1["error"]["code"], -31001, "{answer:?}");
    assert_eq!(answer.1["error"]["data"]["reason"], reason, "{answer:?}");
}

/// Runs the CLI off the async workers.
async fn cli(args: Vec<String>, envs: Vec<(String, String)>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        mandate_env(&args, &envs)
    })
    .await
    .unwrap()
}

fn admin_env(node: &AgentNode) -> Vec<(String, String)> {
    node.admin_env()
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Waits until the approvals queue holds a pending hold for `resource`, and
/// returns it (as `mandate approvals list --json` prints it).
async fn pending_hold(node: &AgentNode, resource: &str) -> Value {
    for _ in 0..200 {
        let out = cli(
            vec!["approvals".into(), "list".into(), "--json".into()],
            admin_env(node),
        )
        .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
        let holds = listed
            .get("approvals")
            .cloned()
            .unwrap_or(listed)
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(hold) = holds
            .into_iter()
            .find(|h| h["resource"] == resource && h["state"] == "pending")
        {
            return hold;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no pending hold for {resource}");
}

/// `mandate approvals approve|deny ID`.
async fn decide(node: &AgentNode, verb: &str, id: &str) {
    let out = cli(
        vec!["approvals".into(), verb.into(), id.into()],
        admin_env(node),
    )
    .await;
    assert!(
        out.status.success(),
        "approvals {verb} {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_q3_report_scenario_end_to_end() {
    let Some(tools) = mcp_tools(
        "governance",
        "the_q3_report_scenario_end_to_end",
        &["mcp-server-everything", "mcp-server-filesystem"],
    ) else {
        return;
    };
    for backend in common::backends() {
        scenario(&tools, backend).await;
    }
}

async fn scenario(tools: &McpTools, backend: Backend) {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("fsroot");
    std::fs::create_dir_all(root.join("reports")).unwrap();
    std::fs::create_dir_all(root.join("outbox")).unwrap();
    let q3 = root.join("reports/q3.txt");
    std::fs::write(&q3, Q3_TEXT).unwrap();
    let summary = root.join("outbox/summary.txt");

    let config = config(work.path(), tools, &root, "");
    let node = AgentNode::start_with_config(
        TestStore::new(backend).await,
        &config,
        &policies(work.path()),
    );
    let database = node.store.url.clone();
    let http = reqwest::Client::new();
    let fs = node.node.url("/mcp/fs");
    let everything = node.node.url("/mcp/everything");

    let summariser = node.agent("summariser").await;
    let token = node
        .root_token(
            &summariser,
            &task(
                "summarise the Q3 report",
                &["fs.read_text_file", "fs.write_file", "everything.echo"],
                &["read", "act", "delegate"],
                Some(8),
            ),
        )
        .await;
    let task_id = token.claims()["task_id"].as_str().unwrap().to_owned();

    // Before any confidential read, sending data out is fine (a dev agent).
    let sent = call(
        &http,
        &token,
        &everything,
        "echo",
        json!({"message": "starting"}),
    )
    .await;
    assert_eq!(text_of(&sent), "Echo: starting");

    // 1. The confidential report is read: the real file comes back.
    let read = call(&http, &token, &fs, "read_text_file", json!({"path": q3})).await;
    assert_eq!(text_of(&read), Q3_TEXT);

    // ... and from then on no egress in this task.
    let leak = call(
        &http,
        &token,
        &everything,
        "echo",
        json!({"message": "Q3 revenue 4.2M"}),
    )
    .await;
    assert_refused(&leak, "egress_after_confidential");

    // 2. A tool outside the task is drift, though the agent's standing
    //    rights would grant it for another task.
    let drift = call(&http, &token, &fs, "list_directory", json!({"path": root})).await;
    assert_refused(&drift, "drift");
    assert!(
        drift.1["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("drift:"),
        "{drift:?}"
    );

    // 3. Delegation: a sub-agent gets a narrower task and cannot widen it.
    let helper = node.agent("helper").await;
    let (status, child) = node
        .delegate(
            &token,
            &helper,
            &child_task_of(&["fs.read_text_file", "everything.echo"]),
        )
        .await;
    assert_eq!(status, 200, "{child}");
    let child = Token::from_answer(&child, helper.dpop_key());
    let child_task = child.claims()["task_id"].as_str().unwrap().to_owned();
    let (status, wider) = node
        .delegate(
            &token,
            &helper,
            &child_task_of(&["fs.read_text_file", "fs.list_directory"]),
        )
        .await;
    assert_ne!(status, 200, "a child task wider than its parent: {wider}");
    let child_read = call(&http, &child, &fs, "read_text_file", json!({"path": q3})).await;
    assert_eq!(text_of(&child_read), Q3_TEXT);
    // The child's session is its parent's: the confidential read before the
    // delegation keeps the child from sending data out too.
    assert_refused(
        &call(&http, &child, &everything, "echo", json!({"message": "x"})).await,
        "egress_after_confidential",
    );
    // And it drifts like any task.
    assert_refused(
        &call(&http, &child, &fs, "list_directory", json!({"path": root})).await,
        "drift",
    );

    // 4. A destructive call is held until a person approves it, through the CLI.
    let write = |text: &str| json!({"path": summary, "content": text});
    let held = tokio::spawn({
        let (http, fs) = (http.clone(), fs.clone());
        let token = Token::from_answer(&token.answer, summariser.dpop_key());
        let args = write("Q3: revenue up.");
        async move { call(&http, &token, &fs, "write_file", args).await }
    });
    let hold = pending_hold(&node, "Tool::\"fs.write_file\"").await;
    let hold_id = hold["id"].as_str().unwrap().to_owned();
    assert_eq!(hold["task_id"], task_id.as_str(), "{hold}");
    // Not yet written: the upstream has not seen the call.
    assert!(!summary.exists());
    // The agent cannot approve its own hold, with its token or its certificate.
    let approve_url = node
        .node
        .url(&format!("/admin/v1/approvals/{hold_id}/approve"));
    let own = http
        .post(&approve_url)
        .header("authorization", format!("DPoP {}", token.access_token))
        .header("dpop", token.proof_for(&approve_url))
        .send()
        .await
        .unwrap();
    assert!(
        [401, 403].contains(&own.status().as_u16()),
        "an agent approving its own hold: {}",
        own.status()
    );
    let tls_approve = format!("{}/admin/v1/approvals/{hold_id}/approve", node.tls());
    let own = summariser
        .mtls()
        .post(&tls_approve)
        .bearer_auth(&node.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(
        own.status().as_u16(),
        403,
        "an agent's certificate with an admin credential still cannot approve"
    );
    assert!(!summary.exists());
    decide(&node, "approve", &hold_id).await;
    let written = held.await.unwrap();
    assert_eq!(written.0, 200, "{written:?}");
    assert!(written.1.get("error").is_none(), "{written:?}");
    assert_eq!(
        std::fs::read_to_string(&summary).unwrap(),
        "Q3: revenue up."
    );

    // The approval covered that one call: the same call is held again; a
    // person denies it and the file stays as it was.
    let again = tokio::spawn({
        let (http, fs) = (http.clone(), fs.clone());
        let token = Token::from_answer(&token.answer, summariser.dpop_key());
        let args = write("Q3: revenue up.");
        async move { call(&http, &token, &fs, "write_file", args).await }
    });
    let second = pending_hold(&node, "Tool::\"fs.write_file\"").await;
    assert_ne!(second["id"], hold_id.as_str());
    std::fs::write(&summary, "untouched").unwrap();
    decide(&node, "deny", second["id"].as_str().unwrap()).await;
    assert_refused(&again.await.unwrap(), "approval_denied");
    assert_eq!(std::fs::read_to_string(&summary).unwrap(), "untouched");

    // 5. The budget: 8 calls, of which echo, read, write and the child's read
    //    were counted (the child's counts against the parent's budget too).
    let mut counted = 4;
    loop {
        let answer = call(&http, &token, &fs, "read_text_file", json!({"path": q3})).await;
        if answer.1.get("error").is_some() {
            assert_refused(&answer, "budget_exhausted");
            break;
        }
        counted += 1;
        assert!(counted <= 8, "more calls than the budget allows");
    }
    assert_eq!(counted, 8);

    // 6. Kill: the agent also holds a second task, with a call of it held
    //    for a person; one command stops all of it.
    let tidy = node
        .root_token(
            &summariser,
            &task("tidy the outbox", &["fs.write_file"], &["act"], None),
        )
        .await;
    let tidy_task = tidy.claims()["task_id"].as_str().unwrap().to_owned();
    let in_flight = tokio::spawn({
        let (http, fs) = (http.clone(), fs.clone());
        let args = write("never");
        async move { call(&http, &tidy, &fs, "write_file", args).await }
    });
    let pending = pending_hold(&node, "Tool::\"fs.write_file\"").await;
    assert_eq!(pending["task_id"], tidy_task.as_str());
    let out = cli(
        vec![
            "agent".into(),
            "kill".into(),
            "summariser".into(),
            "--json".into(),
        ],
        admin_env(&node),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let killed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let revoked: Vec<&str> = killed["tasks_revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(revoked.contains(&task_id.as_str()), "{killed}");
    assert!(revoked.contains(&child_task.as_str()), "{killed}");
    assert!(revoked.contains(&tidy_task.as_str()), "{killed}");
    // Whichever comes first, the kill's cancellation or the cut call
    // withdrawing its hold, the hold is cancelled and can never be approved.
    let shown = cli(
        vec![
            "approvals".into(),
            "show".into(),
            pending["id"].as_str().unwrap().into(),
            "--json".into(),
        ],
        admin_env(&node),
    )
    .await;
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    let shown = shown.get("approval").cloned().unwrap_or(shown);
    assert_eq!(shown["state"], "cancelled", "{shown}");
    let cut = in_flight.await.unwrap();
    assert_eq!(cut.1["error"]["code"], -31001, "{cut:?}");
    assert!(
        ["approval_cancelled", "agent_killed"]
            .contains(&cut.1["error"]["data"]["reason"].as_str().unwrap_or("")),
        "{cut:?}"
    );
    assert_eq!(std::fs::read_to_string(&summary).unwrap(), "untouched");
    for (who, t) in [("parent", &token), ("child", &child)] {
        let (status, _) = call(&http, t, &fs, "read_text_file", json!({"path": q3})).await;
        assert_eq!(status, 401, "the {who}'s token after the kill");
    }

    // 7. The trace tells the story, from the audit log alone.
    node.finish_keep(|| {
        let out = mandate_env(
            &[
                "audit",
                "trace",
                &task_id,
                "--database",
                &database,
                "--json",
            ],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let trace = String::from_utf8_lossy(&out.stdout).into_owned();
        for needle in [
            "token_issued",
            "token_delegated",
            "egress_after_confidential",
            "drift",
            "approval_requested",
            "approval_decided",
            "budget_exhausted",
            "agent_killed",
            child_task.as_str(),
        ] {
            assert!(trace.contains(needle), "the trace lacks {needle}: {trace}");
        }
        let text = mandate_env(&["audit", "trace", &task_id, "--database", &database], &[]);
        assert!(text.status.success());
        let verify = mandate_env(&["audit", "verify", "--database", &database], &[]);
        assert!(
            verify.status.success(),
            "{}",
            String::from_utf8_lossy(&verify.stdout)
        );
        let records = audit_records(&database);
        assert!(
            records
                .iter()
                .any(|r| r["kind"] == "drift" && r["detail"]["task_id"] == task_id.as_str()),
            "drift is its own audit kind"
        );
        // The report's content never lands in the audit log.
        assert!(
            !serde_json::to_string(&records)
                .unwrap()
                .contains("CONFIDENTIAL-Q3-FIGURES")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hold_nobody_decides_times_out_as_a_deny_and_never_reaches_the_upstream() {
    let Some(tools) = mcp_tools(
        "governance",
        "a_hold_nobody_decides_times_out_as_a_deny_and_never_reaches_the_upstream",
        &["mcp-server-everything", "mcp-server-filesystem"],
    ) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("fsroot");
    std::fs::create_dir_all(&root).unwrap();
    let target = root.join("note.txt");
    // A held call outlives request_timeout_ms: it waits for its person.
    let config = config(
        work.path(),
        &tools,
        &root,
        "approval_timeout_seconds = 2\nrequest_timeout_ms = 1000",
    );
    let node = AgentNode::start_with_config(
        TestStore::new(Backend::Sqlite).await,
        &config,
        &policies(work.path()),
    );
    let agent = node.agent("writer").await;
    let token = node
        .root_token(
            &agent,
            &task("write a note", &["fs.write_file"], &["act"], None),
        )
        .await;
    let started = std::time::Instant::now();
    let answer = call(
        &http_client(),
        &token,
        &node.node.url("/mcp/fs"),
        "write_file",
        json!({"path": target, "content": "held"}),
    )
    .await;
    assert_refused(&answer, "approval_expired");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(!target.exists(), "the held call reached the upstream");
    node.finish().await;
}

fn http_client() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_calls_against_a_budget_of_ten_let_exactly_ten_through() {
    let Some(tools) = mcp_tools(
        "governance",
        "fifty_concurrent_calls_against_a_budget_of_ten_let_exactly_ten_through",
        &["mcp-server-everything", "mcp-server-filesystem"],
    ) else {
        return;
    };
    for backend in common::backends() {
        let work = tempfile::tempdir().unwrap();
        let config = config(
            work.path(),
            &tools,
            work.path(),
            "agent_max_concurrent_calls = 100\nagent_rate_burst = 100",
        );
        let node = AgentNode::start_with_config(
            TestStore::new(backend).await,
            &config,
            &policies(work.path()),
        );
        let agent: Agent = node.agent("busy").await;
        let token = node
            .root_token(
                &agent,
                &task("add numbers", &["everything.get-sum"], &["read"], Some(10)),
            )
            .await;
        let url = node.node.url("/mcp/everything");
        let http = http_client();
        let mut calls = Vec::new();
        for n in 0..50 {
            let (http, url) = (http.clone(), url.clone());
            let token = Token::from_answer(&token.answer, agent.dpop_key());
            calls.push(tokio::spawn(async move {
                call(&http, &token, &url, "get-sum", json!({"a": n, "b": 1})).await
            }));
        }
        let (mut allowed, mut spent) = (0, 0);
        for c in calls {
            let answer = c.await.unwrap();
            if answer.1.get("error").is_some() {
                assert_refused(&answer, "budget_exhausted");
                spent += 1;
            } else {
                assert!(text_of(&answer).contains("sum"), "{answer:?}");
                allowed += 1;
            }
        }
        assert_eq!((allowed, spent), (10, 40), "{backend:?}");
        node.finish().await;
    }
}

/// AuthZEN callers ask before they act: a held request is answered as a deny
/// that says an approval is pending; once a person approves, the same
/// request is allowed once, and then held again. A session's labels reach
/// AuthZEN decisions too, and `context.session` cannot be forged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn authzen_callers_see_a_pending_approval_and_poll_it() {
    for backend in common::backends() {
        let work = tempfile::tempdir().unwrap();
        let policies = policies(work.path());
        std::fs::write(
            policies.join("deploys.cedar"),
            r#"
@id("dev-agents-hold-deploy")
permit (principal is Agent, action == Action::"hold_tool", resource == Tool::"ci.deploy");

@id("deploys-need-a-person")
@approval("a deployment changes production")
forbid (principal, action == Action::"call", resource == Tool::"ci.deploy");
"#,
        )
        .unwrap();
        let node = AgentNode::start_with_config(
            TestStore::new(backend).await,
            &config(work.path(), &fake_tools(), work.path(), ""),
            &policies,
        );
        let agent = node.agent("deployer").await;
        let token = node
            .root_token(
                &agent,
                &task("ship the release", &["ci.deploy"], &["act"], None),
            )
            .await;

        let (status, first) = node.call_with(&token, "ci.deploy").await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(first["decision"], false, "{first}");
        let approval = &first["context"]["approval"];
        assert_eq!(approval["status"], "pending", "{first}");
        let id = approval["id"].as_str().unwrap().to_owned();
        assert!(approval["poll"].as_str().unwrap().contains("again"));
        // Asking again before anyone decides finds the same pending hold.
        let (_, again) = node.call_with(&token, "ci.deploy").await;
        assert_eq!(again["decision"], false);
        assert_eq!(again["context"]["approval"]["id"], id.as_str(), "{again}");

        decide(&node, "approve", &id).await;
        let (_, allowed) = node.call_with(&token, "ci.deploy").await;
        assert_eq!(allowed["decision"], true, "{allowed}");
        assert_eq!(allowed["context"]["approval"]["status"], "approved");
        assert_eq!(allowed["context"]["approval"]["id"], id.as_str());
        // Spent: the next ask opens a new hold.
        let (_, next) = node.call_with(&token, "ci.deploy").await;
        assert_eq!(next["decision"], false, "{next}");
        assert_eq!(next["context"]["approval"]["status"], "pending");
        assert_ne!(next["context"]["approval"]["id"], id.as_str());

        // context.session is Mandate's to fill in.
        let url = format!("{}/access/v1/evaluation", node.base());
        let forged = node
            .http
            .post(&url)
            .json(&json!({
                "subject": {"type": "task_token", "id": token.access_token,
                            "properties": {"dpop_proof": token.proof_for(&url)}},
                "action": {"name": "call"},
                "resource": {"type": "Tool", "id": "ci.deploy"},
                "context": {"session": {"labels": []}},
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 400);
        node.finish().await;
    }
}

/// Tool paths for a config whose upstreams are never started (no call goes
/// to them).
fn fake_tools() -> McpTools {
    McpTools {
        npm_bin: PathBuf::from("/nonexistent"),
        python: PathBuf::from("/nonexistent"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_over_its_rate_is_refused_and_the_upstream_never_sees_it() {
    let Some(tools) = mcp_tools(
        "governance",
        "an_agent_over_its_rate_is_refused_and_the_upstream_never_sees_it",
        &["mcp-server-everything", "mcp-server-filesystem"],
    ) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let config = config(
        work.path(),
        &tools,
        work.path(),
        "agent_rate_per_second = 1\nagent_rate_burst = 2",
    );
    let node = AgentNode::start_with_config(
        TestStore::new(Backend::Sqlite).await,
        &config,
        &policies(work.path()),
    );
    let database = node.store.url.clone();
    let agent = node.agent("hasty").await;
    let token = node
        .root_token(
            &agent,
            &task("add numbers", &["everything.get-sum"], &["read"], None),
        )
        .await;
    let url = node.node.url("/mcp/everything");
    let http = http_client();
    let sum = |n: i64| json!({"a": n, "b": 1});
    // The first call spawns the server; then the bucket refills to its burst.
    assert!(text_of(&call(&http, &token, &url, "get-sum", sum(0)).await).contains("sum"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let calls: Vec<_> = (1..=3)
        .map(|n| {
            let (http, url) = (http.clone(), url.clone());
            let token = Token::from_answer(&token.answer, agent.dpop_key());
            tokio::spawn(async move { call(&http, &token, &url, "get-sum", sum(n)).await })
        })
        .collect();
    let mut answers = Vec::new();
    for c in calls {
        answers.push(c.await.unwrap());
    }
    let refused: Vec<&(u16, Value)> = answers
        .iter()
        .filter(|a| a.1.get("error").is_some())
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "a burst of 2 lets 2 of 3 through: {answers:?}"
    );
    let third = refused[0];
    assert_refused(third, "rate_limited");
    assert!(
        third.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("retry in"),
        "{third:?}"
    );
    // Another agent has its own rate.
    let other = node.agent("patient").await;
    let other_token = node
        .root_token(
            &other,
            &task("add numbers", &["everything.get-sum"], &["read"], None),
        )
        .await;
    assert!(text_of(&call(&http, &other_token, &url, "get-sum", sum(3)).await).contains("sum"));
    node.finish_keep(|| {
        let records = audit_records(&database);
        let refused: Vec<&Value> = records
            .iter()
            .filter(|r| r["detail"]["reason"] == "rate_limited")
            .collect();
        assert_eq!(refused.len(), 1, "{records:#?}");
        assert!(refused[0]["detail"]["upstream_status"].is_null());
    })
    .await;
}
