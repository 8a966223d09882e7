//! `GET /admin/v1/posture` and `mandate posture` against a real node, on
//! SQLite and PostgreSQL: each finding appears for a state crafted to cause
//! it and disappears when the cause is fixed; the JSON keeps its shape; the
//! report is for administrators only.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::agents::{
    AgentNode, Token, assert_allowed, copy_agent_policies, mandate_env, ok, task,
};
use common::{Backend, TestStore, backends};
use reqwest::Method;
use serde_json::{Value, json};

/// Upstreams whose catalogs make up the standing rights: two MCP tools and
/// two REST endpoints. Nothing listens there; posture only reads the catalog.
const CATALOG: &str = r#"
[[mcp_upstreams]]
name = "everything"
url = "http://127.0.0.1:9/mcp"

[[mcp_upstreams.tools]]
name = "echo"
class = "read"

[[mcp_upstreams.tools]]
name = "get-sum"
class = "read"

[[http_upstreams]]
name = "github"
url = "http://127.0.0.1:9"

[[http_upstreams.rules]]
method = "GET"
path = "/repos/{owner}/{repo}/issues"
action = "list_issues"
resource_type = "Repo"
resource_id = "{owner}/{repo}"
class = "read"

[[http_upstreams.rules]]
method = "POST"
path = "/repos/{owner}/{repo}/issues"
action = "create_issue"
resource_type = "Repo"
resource_id = "{owner}/{repo}"
class = "act"
"#;

/// A node on `backend` with a copy of the example policies (so a test can
/// narrow them), the catalog above and `envs`.
async fn start(backend: Backend, envs: &[(&str, &str)]) -> (AgentNode, tempfile::TempDir) {
    let store = TestStore::new(backend).await;
    let policies = tempfile::tempdir().unwrap();
    copy_agent_policies(policies.path());
    let config = store.dir.path().join("mandate.toml");
    std::fs::write(&config, CATALOG).unwrap();
    let node = AgentNode::start_with_policies(
        store,
        policies.path(),
        &["--config", config.to_str().unwrap()],
        envs,
    );
    (node, policies)
}

async fn report(node: &AgentNode) -> Value {
    let (status, body) = node
        .admin_call(Method::GET, "/admin/v1/posture", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_schema(&body);
    body
}

/// The subjects of the findings with `id`.
fn subjects(report: &Value, id: &str) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == id)
        .map(|f| f["subject"].as_str().unwrap().to_owned())
        .collect()
}

fn finding<'a>(report: &'a Value, id: &str, subject: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id && f["subject"] == subject)
        .unwrap_or_else(|| panic!("no {id} finding for {subject}: {report:#}"))
}

/// Every finding has its fields, a known severity and its three mappings;
/// the summary counts them.
#[track_caller]
fn assert_schema(report: &Value) {
    let findings = report["findings"].as_array().expect("findings");
    assert!(report["generated_at"].is_string());
    for key in ["since", "idle_days", "secret_max_age_days", "complete"] {
        assert!(!report["window"][key].is_null(), "window.{key}: {report}");
    }
    let mut counts = std::collections::HashMap::new();
    for f in findings {
        for key in ["id", "title", "subject", "remediation"] {
            assert!(f[key].as_str().is_some_and(|s| !s.is_empty()), "{key}: {f}");
        }
        assert!(f["detail"].is_object(), "{f}");
        let severity = f["severity"].as_str().unwrap();
        assert!(["high", "medium", "low"].contains(&severity), "{f}");
        *counts.entry(severity.to_owned()).or_insert(0u64) += 1;
        let m = &f["mappings"];
        for (key, prefix) in [
            ("owasp_agentic", "ASI"),
            ("owasp_nhi", "NHI"),
            ("nist_ai_rmf", ""),
        ] {
            let list = m[key].as_array().unwrap_or_else(|| panic!("{key}: {f}"));
            assert!(!list.is_empty(), "{key}: {f}");
            assert!(
                list.iter()
                    .all(|v| v.as_str().is_some_and(|s| s.starts_with(prefix))),
                "{key}: {f}"
            );
        }
    }
    assert_eq!(report["summary"]["total"], findings.len());
    for severity in ["high", "medium", "low"] {
        assert_eq!(
            report["summary"][severity],
            counts.get(severity).copied().unwrap_or(0),
            "{severity}"
        );
    }
}

/// Waits until the node serves policy generation `generation` or later.
async fn wait_for_policies(node: &AgentNode, generation: u64) {
    let start = Instant::now();
    loop {
        let body: Value = node
            .http
            .get(node.node.url("/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["policies"]["generation"].as_u64() >= Some(generation) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no reload: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn generation(node: &AgentNode) -> u64 {
    let body: Value = node
        .http
        .get(node.node.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["policies"]["generation"].as_u64().unwrap()
}

/// Tasks, grants and standing rights, with the default 30-day window.
async fn tasks_and_rights(backend: Backend) {
    let (node, policies) = start(backend, &[]).await;
    let reader = node.agent("reader").await;
    let helper = node.agent("helper").await;
    let sleeper = node.agent("sleeper").await;

    // A task that uses everything it holds.
    let echo = node
        .root_token(&reader, &task(&["everything.echo"], &["read"], 300))
        .await;
    assert_allowed(&node.call_with(&echo, "everything.echo").await);
    assert_eq!(node.complete(&echo).await.0, 200);
    // A task that holds two tools and calls one.
    let files = node
        .root_token(
            &reader,
            &task(&["files.read", "files.list"], &["read"], 300),
        )
        .await;
    assert_allowed(&node.call_with(&files, "files.read").await);
    assert_eq!(node.complete(&files).await.0, 200);
    // A task left to expire, and a delegation tree left to expire.
    let lapsed = node
        .root_token(&reader, &task(&["files.read"], &["read"], 1))
        .await;
    let tree = node
        .root_token(&reader, &task(&["files.read"], &["read", "delegate"], 2))
        .await;
    let (status, body) = node
        .delegate(&tree, &helper, &task(&["files.read"], &["read"], 1))
        .await;
    assert_eq!(status, 200, "{body}");
    // A suspended agent that still holds a live task.
    let asleep: Token = node
        .root_token(&sleeper, &task(&["files.read"], &["read"], 300))
        .await;
    let (status, _) = node
        .admin_call(Method::POST, "/admin/v1/agents/sleeper/suspend", None)
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let r = report(&node).await;
    assert_eq!(r["window"]["complete"], true);
    // Standing rights: the dev policy lets reader hold all four catalogued
    // tools; its tasks were granted only everything.echo of them.
    let wide = finding(&r, "standing_rights_wider_than_tasks", "reader");
    assert_eq!(
        wide["detail"]["never_granted"],
        json!([
            "everything.get-sum",
            "github.create_issue",
            "github.list_issues"
        ])
    );
    assert_eq!(wide["severity"], "medium");
    assert_eq!(
        wide["mappings"]["owasp_nhi"],
        json!(["NHI5:2025 Overprivileged NHI"])
    );
    // Unused grants: files.list was never called.
    let unused = finding(&r, "grant_unused", "reader");
    assert_eq!(
        unused["detail"]["unused_tools"]["files.list"], 1,
        "{unused}"
    );
    assert!(
        unused["detail"]["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["task_id"] == files.task_id.as_str()),
        "{unused}"
    );
    assert!(
        unused["detail"]["unused_tools"]
            .get("everything.echo")
            .is_none()
    );
    // The lapsed task and the lapsed tree.
    let open = finding(&r, "task_left_open", "reader");
    assert_eq!(
        open["detail"]["tasks"][0]["task_id"],
        lapsed.task_id.as_str()
    );
    assert_eq!(
        open["detail"]["count"], 1,
        "the tree is reported on its own"
    );
    let open_tree = finding(&r, "delegation_tree_left_open", &tree.task_id);
    assert_eq!(open_tree["detail"]["tasks"][1]["agent"], "helper");
    // The suspended agent's live task.
    let held = finding(&r, "suspended_agent_holds_tasks", "sleeper");
    assert_eq!(held["severity"], "high");
    assert_eq!(
        held["detail"]["tasks"][0]["task_id"],
        asleep.task_id.as_str()
    );
    // A policy no decision used.
    assert!(never_matched(&r, "dev-agents-hold-github-issues"), "{r:#}");
    assert!(!never_matched(&r, "call-within-task"));
    let github = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["id"] == "policy_never_matched"
                && f["subject"]
                    .as_str()
                    .unwrap()
                    .ends_with("#dev-agents-hold-github-issues")
        })
        .unwrap();
    assert_eq!(github["detail"]["effect"], "permit", "{github}");
    // Agents registered just now are not idle.
    assert!(subjects(&r, "agent_idle").is_empty(), "{r:#}");

    // The CLI shows the same report.
    let env = node.admin_env();
    let text = ok(&mandate_env(&["posture"], &env), "mandate posture");
    assert!(text.starts_with("posture at "), "{text}");
    assert!(
        text.contains("HIGH    suspended_agent_holds_tasks  sleeper"),
        "{text}"
    );
    assert!(
        text.contains("OWASP Agentic: ASI10 Rogue Agents | OWASP NHI: NHI1:2025 Improper Offboarding | NIST AI RMF: MANAGE 2.4, MANAGE 4.1"),
        "{text}"
    );
    let json: Value = serde_json::from_str(&ok(
        &mandate_env(&["posture", "--json"], &env),
        "posture --json",
    ))
    .unwrap();
    assert_schema(&json);
    assert_eq!(json["summary"], r["summary"]);

    // Fix each cause.
    for task_id in [&lapsed.task_id, &tree.task_id, &asleep.task_id] {
        let (status, body) = node
            .admin_call(
                Method::POST,
                &format!("/admin/v1/tasks/{task_id}/revoke"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // Dev agents may hold the file tools and everything.echo, nothing more.
    let before = generation(&node).await;
    let text = std::fs::read_to_string(policies.path().join("examples/grants.cedar")).unwrap();
    let github = text
        .find(r#"@id("dev-agents-hold-github-issues")"#)
        .unwrap();
    let end = github + text[github..].find("};\n").unwrap() + 3;
    let narrowed = format!("{}{}", &text[..github], &text[end..]).replace(
        r#"Tool::"everything.echo", Tool::"everything.get-sum""#,
        r#"Tool::"everything.echo""#,
    );
    assert!(!narrowed.contains("get-sum") && !narrowed.contains("github.list_issues"));
    write_policy(policies.path(), &narrowed);
    wait_for_policies(&node, before + 1).await;

    let r = report(&node).await;
    for id in [
        "task_left_open",
        "delegation_tree_left_open",
        "suspended_agent_holds_tasks",
    ] {
        assert!(subjects(&r, id).is_empty(), "{id} after the fix: {r:#}");
    }
    // Reader's standing rights are now what its tasks were granted; helper
    // still may hold everything.echo, which none of its tasks asked for.
    assert_eq!(
        subjects(&r, "standing_rights_wider_than_tasks"),
        vec!["helper"],
        "{r:#}"
    );
    assert!(!never_matched(&r, "dev-agents-hold-github-issues"), "{r:#}");
    // The grants that were never used stay on record: that happened.
    assert!(subjects(&r, "grant_unused").contains(&"reader".to_owned()));

    // Only administrators see the report.
    let response = node
        .http
        .get(node.node.url("/admin/v1/posture"))
        .bearer_auth("mandate_admin_not-the-credential")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    node.finish().await;
}

/// Whether a `policy_never_matched` finding names the policy `@id(local)`.
fn never_matched(report: &Value, local: &str) -> bool {
    subjects(report, "policy_never_matched")
        .iter()
        .any(|id| id.ends_with(&format!("#{local}")))
}

fn write_policy(dir: &Path, text: &str) {
    // Written aside and renamed, so the watcher never reads half a file.
    let temp = dir.join("examples/grants.cedar.tmp");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, dir.join("examples/grants.cedar")).unwrap();
}

/// Idle agents and old secrets, with windows of a few seconds.
async fn agents_and_secrets_over_time(backend: Backend) {
    // 4 seconds, in days.
    let window = format!("{}", 4.0 / 86_400.0);
    let (node, _policies) = start(
        backend,
        &[
            ("MANDATE_POSTURE_IDLE_DAYS", window.as_str()),
            ("MANDATE_POSTURE_SECRET_MAX_AGE_DAYS", window.as_str()),
        ],
    )
    .await;
    let busy = node.agent("busy").await;
    node.agent("idle").await;
    node.put_secret("github-token", "ghp_first").await;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let token = node
        .root_token(&busy, &task(&["files.read"], &["read"], 60))
        .await;
    assert_allowed(&node.call_with(&token, "files.read").await);

    let r = report(&node).await;
    assert_eq!(subjects(&r, "agent_idle"), vec!["idle"], "{r:#}");
    let idle = finding(&r, "agent_idle", "idle");
    assert_eq!(idle["detail"]["never_used"], true);
    assert_eq!(
        idle["mappings"]["nist_ai_rmf"],
        json!(["GOVERN 1.6", "GOVERN 1.7"])
    );
    let secret = finding(&r, "secret_not_rotated", "github-token");
    assert_eq!(
        secret["mappings"]["owasp_nhi"],
        json!(["NHI7:2025 Long-Lived Secrets"])
    );
    assert!(secret["detail"]["rotated_at"].is_null());

    // Retire the idle agent, rotate the secret.
    let (status, _) = node
        .admin_call(Method::DELETE, "/admin/v1/agents/idle", None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = node
        .admin_call(
            Method::POST,
            "/admin/v1/secrets/github-token/rotate",
            Some(&json!({"value": "ghp_second"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let r = report(&node).await;
    assert!(subjects(&r, "agent_idle").is_empty(), "{r:#}");
    assert!(subjects(&r, "secret_not_rotated").is_empty(), "{r:#}");
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn posture_reports_tasks_and_rights_and_clears_when_fixed() {
    for backend in backends() {
        tasks_and_rights(backend).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn posture_reports_idle_agents_and_old_secrets_and_clears_when_fixed() {
    for backend in backends() {
        agents_and_secrets_over_time(backend).await;
    }
}
