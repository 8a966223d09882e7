//! `mandate audit trace TASK_ID`: the tree of a task, its delegations and
//! every call, approval and revocation, read from the audit log alone.
//!
//! The log is searched once per task of the tree (records whose detail
//! mentions the task ID); `mandate_core::TraceBuilder` decides what belongs
//! where. Every record shown has its hash recomputed, and one that does not
//! match stops the command with exit code 3, as `audit verify` does: a trace
//! is evidence and is not printed from a tampered record. Whether records
//! are missing is only seen by walking the chains: `--verify` does that first.

use std::fmt::Write as _;

use mandate_core::{
    AuditKind, AuditRecord, ChainBreak, Relation, TaskTrace, TraceBuilder, TraceEvent, TracedTask,
};
use mandate_store::Store;
use serde_json::{Value, json};

use super::audit::format_time;

/// Records fetched per query.
const PAGE: u32 = 1000;

/// Longest task ID accepted (Mandate's are 37 characters).
const MAX_TASK_ID: usize = 256;

/// Checks what the user typed before it reaches a query.
pub(crate) fn check_task_id(task_id: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !task_id.is_empty() && task_id.len() <= MAX_TASK_ID,
        "a task ID has 1 to {MAX_TASK_ID} characters"
    );
    anyhow::ensure!(
        task_id
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace()),
        "a task ID has no spaces or control characters: {task_id:?}"
    );
    Ok(())
}

/// Searches `store` for the records of `task_id`'s tree and builds it.
pub(crate) async fn collect(store: &dyn Store, task_id: &str) -> anyhow::Result<TaskTrace> {
    let mut builder = TraceBuilder::new(task_id);
    while let Some(id) = builder.next_search() {
        let mut after = 0;
        loop {
            let page = store.audit_mentioning(&id, after, PAGE).await?;
            let full = page.len() == PAGE as usize;
            if let Some((row, _)) = page.last() {
                after = *row;
            }
            builder.add(&id, page.into_iter().map(|(_, record)| record));
            if !full {
                break;
            }
        }
    }
    Ok(builder.build()?)
}

/// Every record the trace shows, once.
fn records(trace: &TaskTrace) -> Vec<&AuditRecord> {
    let mut out: Vec<&AuditRecord> = Vec::new();
    for task in trace.root.tasks() {
        out.extend(task.issuance.iter());
        out.extend(task.events.iter().map(|e| &e.record));
    }
    out.sort_by(|a, b| (&a.node_id, a.seq).cmp(&(&b.node_id, b.seq)));
    out.dedup_by(|a, b| a.node_id == b.node_id && a.seq == b.seq);
    out
}

/// The first record of the trace whose contents no longer match its hash.
pub(crate) fn first_modified(trace: &TaskTrace) -> Option<ChainBreak> {
    records(trace)
        .into_iter()
        .find(|r| r.expected_hash() != r.hash)
        .map(|r| ChainBreak::Modified {
            node: r.node_id.clone(),
            seq: r.seq,
        })
}

/// Where a task is, as the log tells it at `now_us`.
fn state(task: &TracedTask, now_us: i64) -> &'static str {
    match task.end().map(|e| e.record.event.kind) {
        Some(AuditKind::TaskCompleted) => "completed",
        Some(AuditKind::AgentKilled) => "killed",
        Some(_) => "revoked",
        None => match task.expires_us() {
            Some(exp) if exp <= now_us => "expired",
            Some(_) => "active",
            None => "unknown",
        },
    }
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn list(value: Option<&Value>) -> String {
    let items: Vec<String> = value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

/// What one event says, after its time and kind.
fn describe(event: &TraceEvent) -> String {
    let e = &event.record.event;
    let d = &e.detail;
    let mut out = String::new();
    match (e.kind, event.relation) {
        (AuditKind::TokenDelegated, Relation::Parent) => {
            let child = text(d, "task_id").unwrap_or("?");
            let _ = write!(out, "delegated {child} to {}", e.subject);
        }
        (AuditKind::TokenRefused, _) => {
            let _ = write!(
                out,
                "REFUSED {}: {}",
                text(d, "error").unwrap_or("?"),
                text(d, "reason").unwrap_or("")
            );
            if !e.subject.is_empty() {
                let _ = write!(out, " (asked by {})", e.subject);
            }
        }
        (AuditKind::TokenRejected, _) => {
            let _ = write!(
                out,
                "REJECTED at {}: {}",
                text(d, "endpoint").unwrap_or("?"),
                text(d, "reason").unwrap_or("")
            );
        }
        (AuditKind::TaskCompleted | AuditKind::TaskRevoked, _) => {
            let _ = write!(out, "{} by {}", e.outcome.to_uppercase(), e.subject);
            if let Some(by) = text(d, "by") {
                let _ = write!(out, " ({by})");
            }
            let _ = write!(out, "; ended {}", list(d.get("ended")));
        }
        (AuditKind::AgentKilled, _) => {
            let _ = write!(
                out,
                "KILLED agent {}; tasks {}",
                text(d, "agent").unwrap_or(&e.subject),
                list(d.get("task_ids"))
            );
        }
        (AuditKind::ApprovalRequested | AuditKind::ApprovalDecided, _) => {
            let _ = write!(
                out,
                "{} {} {}",
                e.outcome.to_uppercase(),
                e.action,
                e.resource
            );
            for key in ["approval_id", "approver"] {
                if let Some(v) = text(d, key) {
                    let _ = write!(out, "  {key}={v}");
                }
            }
        }
        _ => {
            let _ = write!(
                out,
                "{} {} {}",
                e.outcome.to_uppercase(),
                e.action,
                e.resource
            );
            if let Some(reason) = text(d, "reason") {
                let _ = write!(out, "  reason={reason}");
            }
            if let Some(upstream) = text(d, "upstream") {
                let _ = write!(out, "  upstream={upstream}");
                if let Some(status) = d.get("upstream_status").and_then(Value::as_u64) {
                    let _ = write!(out, " ({status})");
                }
            }
        }
    }
    if !e.policies.is_empty() && e.kind != AuditKind::TokenDelegated {
        let _ = write!(out, "  policies={}", e.policies.join(","));
    }
    match event.relation {
        Relation::Affected => {
            if let Some(via) = text(d, "task_id") {
                let _ = write!(out, "  (through {via})");
            }
        }
        Relation::Claimed => out.push_str("  (the token claimed this task; unverified)"),
        Relation::Subject | Relation::Parent => {}
    }
    out
}

fn grant_line(grant: &Value) -> String {
    let mut line = format!(
        "tools {}; data domains {}; capabilities {}",
        list(grant.get("tools")),
        list(grant.get("data_domains")),
        list(grant.get("capabilities"))
    );
    if let Some(ttl) = grant.get("ttl_seconds").and_then(Value::as_u64) {
        let _ = write!(line, "; ttl {ttl} s");
    }
    if let Some(max) = grant.get("max_calls").and_then(Value::as_u64) {
        let _ = write!(line, "; max calls {max}");
    }
    line
}

fn render_task(task: &TracedTask, depth: usize, now_us: i64, out: &mut String) {
    let pad = "    ".repeat(depth);
    let _ = write!(out, "{pad}task {}", task.task_id);
    if let Some(parent) = task.parent_task_id() {
        let _ = write!(out, " (delegated from {parent}");
        if let Some(d) = task.depth() {
            let _ = write!(out, ", depth {d}");
        }
        out.push(')');
    }
    out.push('\n');
    let mut field = |name: &str, value: String| {
        let _ = writeln!(out, "{pad}  {name:<8}  {value}");
    };
    match &task.issuance {
        Some(issued) => {
            field("agent", task.agent().unwrap_or("?").to_owned());
            if let Some(grant) = task.grant() {
                field("purpose", text(grant, "purpose").unwrap_or("").to_owned());
                field("granted", grant_line(grant));
            }
            let mut line = format!(
                "{}  {}#{}",
                format_time(issued.event.time_us),
                issued.node_id,
                issued.seq
            );
            if !issued.event.policies.is_empty() {
                let _ = write!(line, "  policies={}", issued.event.policies.join(","));
            }
            field("issued", line);
            if let Some(exp) = task.expires_us() {
                field("expires", format_time(exp));
            }
        }
        None => field(
            "issued",
            "(no issuance record in the log: run `mandate audit verify`)".to_owned(),
        ),
    }
    let mut line = state(task, now_us).to_owned();
    if let Some(end) = task.end() {
        let _ = write!(line, " {}", format_time(end.record.event.time_us));
    }
    field("state", line);
    for event in &task.events {
        let r = &event.record;
        let _ = writeln!(
            out,
            "{pad}  {}  {}#{}  {:<17} {}",
            format_time(r.event.time_us),
            r.node_id,
            r.seq,
            r.event.kind.as_str(),
            describe(event)
        );
        if let Some(child) = &event.delegated {
            render_task(child, depth + 1, now_us, out);
        }
    }
}

/// The trace as indented text.
pub(crate) fn render_text(trace: &TaskTrace, now_us: i64) -> String {
    let mut out = String::new();
    render_task(&trace.root, 0, now_us, &mut out);
    out
}

fn record_json(record: &AuditRecord) -> Value {
    let mut value = serde_json::to_value(record).unwrap_or(Value::Null);
    value["time"] = Value::from(format_time(record.event.time_us));
    value
}

fn task_json(task: &TracedTask, now_us: i64) -> Value {
    let grant = task.grant();
    json!({
        "task_id": task.task_id,
        "parent_task_id": task.parent_task_id(),
        "depth": task.depth(),
        "agent": task.agent(),
        "purpose": grant.and_then(|g| text(g, "purpose")),
        "grant": grant,
        "issued_at": task.issued_us().map(format_time),
        "expires_at": task.expires_us().map(format_time),
        "state": state(task, now_us),
        "ended_at": task.end().map(|e| format_time(e.record.event.time_us)),
        "issuance": task.issuance.as_ref().map(record_json),
        "events": task.events.iter().map(|e| {
            let mut event = json!({
                "relation": e.relation.as_str(),
                "record": record_json(&e.record),
            });
            if let Some(child) = &e.delegated {
                event["delegated"] = task_json(child, now_us);
            }
            event
        }).collect::<Vec<_>>(),
    })
}

/// The trace as JSON (`trace_version` 1; the README documents the shape).
pub(crate) fn render_json(trace: &TaskTrace, now_us: i64, chains_verified: bool) -> Value {
    json!({
        "trace_version": 1,
        "task_id": trace.root.task_id,
        "tasks": trace.root.tasks().len(),
        "records": trace.records,
        "integrity": {
            "record_hashes_checked": records(trace).len(),
            "chains_verified": chains_verified,
        },
        "root": task_json(&trace.root, now_us),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mandate_core::{AuditEvent, ChainHead};

    const T0: i64 = 1_764_064_800_000_000; // 2025-11-25T10:00:00Z

    fn rec(
        seq: u64,
        secs: i64,
        kind: AuditKind,
        subject: &str,
        outcome: &str,
        detail: Value,
    ) -> AuditRecord {
        AuditRecord::seal(
            "node-a",
            ChainHead {
                seq: seq - 1,
                hash: [0; 32],
            },
            AuditEvent {
                time_us: T0 + secs * 1_000_000,
                kind,
                request_id: String::new(),
                subject: subject.into(),
                action: r#"Action::"call""#.into(),
                resource: String::new(),
                outcome: outcome.into(),
                policies: Vec::new(),
                request_digest: String::new(),
                detail,
            },
        )
    }

    const PLANNER: &str = r#"Agent::"spiffe://mandate.local/agent/planner""#;
    const WRITER: &str = r#"Agent::"spiffe://mandate.local/agent/writer""#;

    fn sample() -> TaskTrace {
        let grant = |tools: &[&str]| {
            json!({"type": "agent_task", "purpose": "weekly report", "tools": tools,
                   "data_domains": ["reports"], "ttl_seconds": 300, "capabilities": ["read", "delegate"]})
        };
        let mut issued = rec(
            1,
            0,
            AuditKind::TokenIssued,
            PLANNER,
            "issued",
            json!({"task_id": "task-root", "parent_task_id": null, "depth": 0,
                   "exp": T0 / 1_000_000 + 300, "granted": grant(&["files.read", "files.list"])}),
        );
        issued.event.policies = vec!["agents.cedar#dev".into()];
        issued = AuditRecord::seal("node-a", ChainHead::GENESIS, issued.event);
        let mut call = rec(
            2,
            1,
            AuditKind::Decision,
            PLANNER,
            "allow",
            json!({"task_id": "task-root", "reason": "permitted"}),
        );
        call.event.resource = r#"Tool::"files.read""#.into();
        call.event.policies = vec!["agents.cedar#call-within-task".into()];
        call = AuditRecord::seal(
            "node-a",
            ChainHead {
                seq: 1,
                hash: [0; 32],
            },
            call.event,
        );
        let log = [
            issued,
            call,
            rec(
                3,
                2,
                AuditKind::TokenDelegated,
                WRITER,
                "issued",
                json!({"task_id": "task-child", "parent_task_id": "task-root", "depth": 1,
                       "exp": T0 / 1_000_000 + 200, "granted": grant(&["files.read"])}),
            ),
            rec(
                4,
                3,
                AuditKind::TokenRefused,
                WRITER,
                "refused",
                json!({"error": "invalid_authorization_details",
                       "reason": "delegation refused: tool \"mail.send\" is not in the parent task",
                       "parent_task_id": "task-root"}),
            ),
            rec(
                5,
                4,
                AuditKind::TaskCompleted,
                PLANNER,
                "completed",
                json!({"task_id": "task-root", "ended": ["task-root", "task-child"]}),
            ),
            rec(
                6,
                5,
                AuditKind::TokenRejected,
                "",
                "rejected",
                json!({"endpoint": "evaluation", "reason": "task task-child has ended",
                       "claimed": {"task_id": "task-child", "verified": false}}),
            ),
        ];
        let mut builder = TraceBuilder::new("task-root");
        while let Some(id) = builder.next_search() {
            let found = log
                .iter()
                .filter(|r| r.event.detail.to_string().contains(&id))
                .cloned();
            builder.add(&id, found);
        }
        builder.build().unwrap()
    }

    #[test]
    fn text_shows_the_tree_with_each_delegation_where_it_happened() {
        let text = render_text(&sample(), T0 + 3_600_000_000);
        let expected = r#"task task-root
  agent     Agent::"spiffe://mandate.local/agent/planner"
  purpose   weekly report
  granted   tools files.read, files.list; data domains reports; capabilities read, delegate; ttl 300 s
  issued    2025-11-25T10:00:00Z  node-a#1  policies=agents.cedar#dev
  expires   2025-11-25T10:05:00Z
  state     completed 2025-11-25T10:00:04Z
  2025-11-25T10:00:01Z  node-a#2  decision          ALLOW Action::"call" Tool::"files.read"  reason=permitted  policies=agents.cedar#call-within-task
  2025-11-25T10:00:02Z  node-a#3  token_delegated   delegated task-child to Agent::"spiffe://mandate.local/agent/writer"
    task task-child (delegated from task-root, depth 1)
      agent     Agent::"spiffe://mandate.local/agent/writer"
      purpose   weekly report
      granted   tools files.read; data domains reports; capabilities read, delegate; ttl 300 s
      issued    2025-11-25T10:00:02Z  node-a#3
      expires   2025-11-25T10:03:20Z
      state     completed 2025-11-25T10:00:04Z
      2025-11-25T10:00:04Z  node-a#5  task_completed    COMPLETED by Agent::"spiffe://mandate.local/agent/planner"; ended task-root, task-child  (through task-root)
      2025-11-25T10:00:05Z  node-a#6  token_rejected    REJECTED at evaluation: task task-child has ended  (the token claimed this task; unverified)
  2025-11-25T10:00:03Z  node-a#4  token_refused     REFUSED invalid_authorization_details: delegation refused: tool "mail.send" is not in the parent task (asked by Agent::"spiffe://mandate.local/agent/writer")
  2025-11-25T10:00:04Z  node-a#5  task_completed    COMPLETED by Agent::"spiffe://mandate.local/agent/planner"; ended task-root, task-child
"#;
        assert_eq!(text, expected, "got:\n{text}");
    }

    #[test]
    fn json_is_a_tree_of_tasks_with_ordered_events() {
        let trace = sample();
        let json = render_json(&trace, T0 + 60_000_000, false);
        assert_eq!(json["trace_version"], 1);
        assert_eq!(json["tasks"], 2);
        assert_eq!(json["records"], 6);
        assert_eq!(json["integrity"]["record_hashes_checked"], 6);
        let root = &json["root"];
        assert_eq!(root["task_id"], "task-root");
        assert_eq!(root["state"], "completed");
        assert_eq!(root["grant"]["tools"], json!(["files.read", "files.list"]));
        assert_eq!(root["issuance"]["seq"], 1);
        assert_eq!(root["issuance"]["time"], "2025-11-25T10:00:00Z");
        let kinds: Vec<(&str, &str)> = root["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["record"]["kind"].as_str().unwrap(),
                    e["relation"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("decision", "subject"),
                ("token_delegated", "parent"),
                ("token_refused", "parent"),
                ("task_completed", "subject"),
            ]
        );
        let child = &root["events"][1]["delegated"];
        assert_eq!(child["task_id"], "task-child");
        assert_eq!(child["parent_task_id"], "task-root");
        assert_eq!(child["depth"], 1);
        assert_eq!(child["events"][1]["relation"], "claimed");
        assert!(root["events"][0].get("delegated").is_none());
    }

    #[test]
    fn an_open_task_is_active_until_it_expires() {
        let mut builder = TraceBuilder::new("t");
        builder.add(
            "t",
            [rec(
                1,
                0,
                AuditKind::TokenIssued,
                PLANNER,
                "issued",
                json!({"task_id": "t", "exp": T0 / 1_000_000 + 10}),
            )],
        );
        let trace = builder.build().unwrap();
        assert_eq!(state(&trace.root, T0), "active");
        assert_eq!(state(&trace.root, T0 + 10_000_000), "expired");
    }

    #[test]
    fn a_modified_record_is_named() {
        let mut trace = sample();
        assert_eq!(first_modified(&trace), None);
        trace.root.events[0].record.event.outcome = "deny".into();
        assert_eq!(
            first_modified(&trace),
            Some(ChainBreak::Modified {
                node: "node-a".into(),
                seq: 2
            })
        );
    }

    #[test]
    fn task_ids_with_spaces_or_control_characters_are_refused() {
        assert!(check_task_id("task-0192").is_ok());
        assert!(check_task_id("").is_err());
        assert!(check_task_id("a b").is_err());
        assert!(check_task_id("a\u{0}").is_err());
        assert!(check_task_id(&"x".repeat(300)).is_err());
    }
}
