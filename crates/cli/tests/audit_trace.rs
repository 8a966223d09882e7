//! `mandate audit trace` against a real node's log, on SQLite and
//! PostgreSQL: a task with calls, a delegated child, a refused widening, a
//! completion that ends both and a use of the ended child's token, as text
//! and as JSON; a child traced alone; an unknown task; a tampered record.

mod common;

use common::agents::{AgentNode, assert_allowed, assert_oauth_error, assert_token_refused, task};
use common::{Backend, TestStore, backends, mandate};
use serde_json::Value;

fn trace(url: &str, task_id: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["audit", "trace", task_id, "--database", url];
    args.extend_from_slice(extra);
    mandate(&args)
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The (kind, relation) of each event of a task in the JSON trace.
fn events(task: &Value) -> Vec<(String, String)> {
    task["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["record"]["kind"].as_str().unwrap().to_owned(),
                e["relation"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

async fn case(backend: Backend) {
    let node = AgentNode::start(TestStore::new(backend).await, &[], &[]);
    let url = node.store.url.clone();
    let planner = node.agent("planner").await;
    let writer = node.agent("writer").await;
    let root = node
        .root_token(
            &planner,
            &task(&["files.read", "files.list"], &["read", "delegate"], 300),
        )
        .await;
    assert_allowed(&node.call_with(&root, "files.read").await);
    let (_, denied) = node.call_with(&root, "mail.send").await;
    assert_eq!(denied["decision"], false, "{denied}");
    let (status, body) = node
        .delegate(&root, &writer, &task(&["files.read"], &["read"], 120))
        .await;
    assert_eq!(status, 200, "{body}");
    let child = common::agents::Token::from_answer(&body, writer.dpop_key());
    // The sub-agent tries to widen: refused, and recorded under the parent.
    let widened = node
        .delegate(
            &root,
            &writer,
            &task(&["files.read", "mail.send"], &["read"], 60),
        )
        .await;
    assert_oauth_error(&widened, 400, "invalid_authorization_details", "mail.send");
    assert_allowed(&node.call_with(&child, "files.read").await);
    let (status, done) = node.complete(&root).await;
    assert_eq!(status, 200, "{done}");
    // The ended child's token is refused, and the attempt is in the trace.
    assert_token_refused(&node.call_with(&child, "files.read").await, "has ended");

    // Text: the tree, each delegation where it happened.
    let out = trace(&url, &root.task_id, &[]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("task {}", root.task_id), "{text}");
    let position = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
    };
    let child_header = position(&format!(
        "    task {} (delegated from {}, depth 1)",
        child.task_id, root.task_id
    ));
    let delegation = position(&format!("delegated {} to", child.task_id));
    assert_eq!(child_header, delegation + 1, "{text}");
    assert!(lines[position("purpose")].ends_with("prepare the weekly report"));
    assert!(text.contains(r#"ALLOW Action::"call" Tool::"files.read"  reason=permitted"#));
    // Not in the task: the baseline's drift rule.
    assert!(text.contains(r#"DENY Action::"call" Tool::"mail.send"  reason=forbidden"#));
    let refused = position("REFUSED invalid_authorization_details");
    assert!(
        refused > child_header,
        "the refusal comes after the child's block: {text}"
    );
    assert!(
        !lines[refused].starts_with("      "),
        "it is the parent's event"
    );
    let rejected = position("(the token claimed this task; unverified)");
    assert!(
        lines[rejected].starts_with("      ") && rejected < refused,
        "{text}"
    );
    assert_eq!(
        text.matches("state     completed").count(),
        2,
        "both tasks ended by the completion: {text}"
    );
    assert!(
        lines
            .last()
            .unwrap()
            .contains("each checked against its hash"),
        "{text}"
    );

    // JSON: the same tree.
    let out = trace(&url, &root.task_id, &["--json", "--verify"]);
    assert!(out.status.success(), "{out:?}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["trace_version"], 1);
    assert_eq!(json["tasks"], 2);
    assert_eq!(json["integrity"]["chains_verified"], true);
    let r = &json["root"];
    assert_eq!(r["task_id"], root.task_id.as_str());
    assert_eq!(r["agent"], format!("Agent::\"{}\"", planner.spiffe_id));
    assert_eq!(r["state"], "completed");
    assert_eq!(
        r["grant"]["tools"],
        serde_json::json!(["files.read", "files.list"])
    );
    assert_eq!(r["issuance"]["kind"], "token_issued");
    assert_eq!(
        events(r),
        pairs(&[
            ("decision", "subject"),
            // mail.send, outside the task: the baseline's drift rule.
            ("drift", "subject"),
            ("token_delegated", "parent"),
            ("token_refused", "parent"),
            ("task_completed", "subject"),
        ])
    );
    assert_eq!(r["events"][0]["record"]["outcome"], "allow");
    assert_eq!(r["events"][1]["record"]["resource"], r#"Tool::"mail.send""#);
    let c = &r["events"][2]["delegated"];
    assert_eq!(c["task_id"], child.task_id.as_str());
    assert_eq!(c["agent"], format!("Agent::\"{}\"", writer.spiffe_id));
    assert_eq!(c["parent_task_id"], root.task_id.as_str());
    assert_eq!(c["state"], "completed");
    assert_eq!(
        events(c),
        pairs(&[
            ("decision", "subject"),
            ("task_completed", "affected"),
            ("token_rejected", "claimed"),
        ])
    );
    // Events are in time order.
    let times: Vec<i64> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["record"]["time_us"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // The child alone: its parent is named, not traced.
    let out = trace(&url, &child.task_id, &["--json"]);
    assert!(out.status.success(), "{out:?}");
    let alone: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(alone["tasks"], 1);
    assert_eq!(alone["root"]["parent_task_id"], root.task_id.as_str());
    assert_eq!(alone["root"]["events"], c["events"]);

    // An unknown task: a clear error, exit 1.
    let out = trace(&url, "task-00000000000000000000000000000000", &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(r#"no audit record names task "task-00000000000000000000000000000000""#),
        "{out:?}"
    );

    // A record changed behind Mandate's back: the trace is not printed.
    node.store
        .exec(&format!(
            "UPDATE audit_records SET outcome = 'allow' WHERE kind = 'drift' \
             AND resource = 'Tool::\"mail.send\"' AND detail LIKE '%{}%'",
            root.task_id
        ))
        .await;
    let out = trace(&url, &root.task_id, &[]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        stdout(&out).starts_with("audit log BROKEN at record"),
        "{out:?}"
    );
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_tree_is_traced_from_the_audit_log_on_every_backend() {
    for backend in backends() {
        case(backend).await;
    }
}
