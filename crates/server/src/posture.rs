//! Governance posture: what among agents, tasks, secrets and policies needs
//! attention, each finding mapped to the OWASP Top 10 for Agentic
//! Applications (2026), the OWASP Non-Human Identities Top 10 (2025) and the
//! NIST AI RMF 1.0 subcategories it addresses.
//!
//! Every rule is a pure function over an [`Inventory`] (plain records, a
//! [`Usage`] summary of the audit window, the standing rights policy gives
//! each agent), so it is tested without a store or a clock; the admin handler
//! gathers the inventory. [`RULES`] is the one mapping table; the README
//! repeats it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use std::str::FromStr;

use mandate_core::{AuditKind, AuditRecord};
use mandate_policy::PolicySources;
use mandate_policy::cedar_policy::{Effect, PolicySet};
use mandate_store::{AgentRecord, AgentStatus, SecretRecord, TaskRecord, TaskState};
use serde_json::{Value, json};

use crate::admin::rfc3339;

/// Microseconds in a day.
pub(crate) const DAY_US: f64 = 86_400_000_000.0;

/// Longest list of tasks a finding quotes; the count says how many there were.
const MAX_LISTED: usize = 20;

/// The windows the rules use, from `posture_idle_days` and
/// `posture_secret_max_age_days`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PostureSettings {
    /// Days without use after which an agent is idle; also the audit window.
    pub(crate) idle_days: f64,
    /// Days after which a secret not rotated since is reported.
    pub(crate) secret_max_age_days: f64,
}

impl PostureSettings {
    /// The idle window in microseconds.
    pub(crate) fn window_us(&self) -> i64 {
        (self.idle_days * DAY_US) as i64
    }

    fn secret_max_age_us(&self) -> i64 {
        (self.secret_max_age_days * DAY_US) as i64
    }
}

/// How urgent a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

/// One kind of finding and the risks it is evidence of.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) id: &'static str,
    severity: Severity,
    title: &'static str,
    owasp_agentic: &'static [&'static str],
    owasp_nhi: &'static [&'static str],
    nist_ai_rmf: &'static [&'static str],
    remediation: &'static str,
}

const ASI02: &str = "ASI02 Tool Misuse and Exploitation";
const ASI03: &str = "ASI03 Identity and Privilege Abuse";
const ASI08: &str = "ASI08 Cascading Failures";
const ASI10: &str = "ASI10 Rogue Agents";
const NHI1: &str = "NHI1:2025 Improper Offboarding";
const NHI5: &str = "NHI5:2025 Overprivileged NHI";
const NHI7: &str = "NHI7:2025 Long-Lived Secrets";

/// Every rule, in the order the README lists them.
pub(crate) const RULES: [Rule; 9] = [
    Rule {
        id: "agent_without_owner",
        severity: Severity::High,
        title: "agent without an accountable owner",
        owasp_agentic: &[ASI10],
        owasp_nhi: &[NHI1],
        nist_ai_rmf: &["GOVERN 2.1", "GOVERN 1.6"],
        remediation: "Record the person accountable for the agent (an e-mail address); an agent nobody answers for is never offboarded.",
    },
    Rule {
        id: "suspended_agent_holds_tasks",
        severity: Severity::High,
        title: "suspended agent still holds unexpired tasks",
        owasp_agentic: &[ASI10],
        owasp_nhi: &[NHI1],
        nist_ai_rmf: &["MANAGE 2.4", "MANAGE 4.1"],
        remediation: "Revoke the tasks (POST /admin/v1/tasks/{id}/revoke): resuming the agent would bring them back to life.",
    },
    Rule {
        id: "agent_idle",
        severity: Severity::Medium,
        title: "agent without recent use",
        owasp_agentic: &[ASI03],
        owasp_nhi: &[NHI1],
        nist_ai_rmf: &["GOVERN 1.6", "GOVERN 1.7"],
        remediation: "Delete the agent if it is retired, or suspend it until it is needed: an unused identity that still works is a way in.",
    },
    Rule {
        id: "standing_rights_wider_than_tasks",
        severity: Severity::Medium,
        title: "standing tool rights wider than any task the agent ran",
        owasp_agentic: &[ASI03, ASI02],
        owasp_nhi: &[NHI5],
        nist_ai_rmf: &["MEASURE 2.7"],
        remediation: "Narrow the hold_tool policies for this agent to the tools its tasks use; a hijacked agent can ask for anything policy lets it hold.",
    },
    Rule {
        id: "delegation_tree_left_open",
        severity: Severity::Medium,
        title: "delegation tree never ended: it expired with its delegates open",
        owasp_agentic: &[ASI03, ASI08],
        owasp_nhi: &[NHI1],
        nist_ai_rmf: &["MANAGE 4.1"],
        remediation: "Have the root agent complete its task (POST /tasks/{id}/complete), which ends every delegate at once.",
    },
    Rule {
        id: "task_left_open",
        severity: Severity::Low,
        title: "tasks never completed: they stayed open until their ttl ran out",
        owasp_agentic: &[ASI03],
        owasp_nhi: &[NHI1],
        nist_ai_rmf: &["MANAGE 4.1"],
        remediation: "Make the agent complete each task when it is done (POST /tasks/{id}/complete) and ask for shorter ttls.",
    },
    Rule {
        id: "secret_not_rotated",
        severity: Severity::Medium,
        title: "secret not rotated within the maximum age",
        owasp_agentic: &[ASI03],
        owasp_nhi: &[NHI7],
        nist_ai_rmf: &["MEASURE 2.7"],
        remediation: "Rotate it at the upstream, then `mandate secret rotate NAME`.",
    },
    Rule {
        id: "grant_unused",
        severity: Severity::Low,
        title: "granted tools never called",
        owasp_agentic: &[ASI03],
        owasp_nhi: &[NHI5],
        nist_ai_rmf: &["MEASURE 2.7"],
        remediation: "Have the agent ask only for the tools the task needs; narrow the hold_tool policies if it keeps asking for more.",
    },
    Rule {
        id: "policy_never_matched",
        severity: Severity::Low,
        title: "policy matched no decision in the window",
        owasp_agentic: &[ASI03],
        owasp_nhi: &[NHI5],
        nist_ai_rmf: &["GOVERN 1.5"],
        remediation: "Remove a permit nobody needs; keep a forbid that is a guardrail, and check that it is written to match what it should.",
    },
];

fn rule(id: &str) -> &'static Rule {
    RULES
        .iter()
        .find(|r| r.id == id)
        .expect("every rule used is in RULES")
}

/// One thing that needs attention.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    pub(crate) rule: &'static Rule,
    /// What it is about: an agent's name, a task, a secret, a policy ID.
    pub(crate) subject: String,
    pub(crate) detail: Value,
}

impl Finding {
    fn new(id: &str, subject: impl Into<String>, detail: Value) -> Finding {
        Finding {
            rule: rule(id),
            subject: subject.into(),
            detail,
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        let r = self.rule;
        json!({
            "id": r.id,
            "severity": r.severity.as_str(),
            "title": r.title,
            "subject": self.subject,
            "detail": self.detail,
            "mappings": {
                "owasp_agentic": r.owasp_agentic,
                "owasp_nhi": r.owasp_nhi,
                "nist_ai_rmf": r.nist_ai_rmf,
            },
            "remediation": r.remediation,
        })
    }
}

/// What the audit records of the window say was used.
#[derive(Debug, Clone, Default)]
pub(crate) struct Usage {
    /// Latest token issued to, or call by, each agent (by SPIFFE ID).
    pub(crate) last_active_us: HashMap<String, i64>,
    /// Every policy that determined some outcome.
    pub(crate) policies_matched: HashSet<String>,
    /// The tools each task called and was allowed.
    pub(crate) tools_called: HashMap<String, BTreeSet<String>>,
    /// Records read.
    pub(crate) records: usize,
}

impl Usage {
    /// Takes one record of the window into account.
    pub(crate) fn observe(&mut self, record: &AuditRecord) {
        self.records += 1;
        let event = &record.event;
        self.policies_matched.extend(event.policies.iter().cloned());
        let acted = matches!(
            event.kind,
            AuditKind::TokenIssued
                | AuditKind::TokenDelegated
                | AuditKind::Decision
                | AuditKind::Drift
        );
        if acted && let Some(("Agent", spiffe_id)) = entity(&event.subject) {
            let latest = self.last_active_us.entry(spiffe_id).or_insert(i64::MIN);
            *latest = (*latest).max(event.time_us);
        }
        if event.kind == AuditKind::Decision
            && event.outcome == "allow"
            && let Some(task_id) = event.detail.get("task_id").and_then(Value::as_str)
            && let Some(tool) = tool_called(record)
        {
            self.tools_called
                .entry(task_id.to_owned())
                .or_default()
                .insert(tool);
        }
    }
}

/// Splits a Cedar entity reference `Type::"id"` (as Cedar prints it, with
/// `\"` and `\\` escaped) into type and id.
fn entity(uid: &str) -> Option<(&str, String)> {
    let (kind, rest) = uid.split_once("::\"")?;
    let quoted = rest.strip_suffix('"')?;
    let mut id = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            id.push(chars.next()?);
        } else {
            id.push(c);
        }
    }
    Some((kind, id))
}

/// The tool a decision record is about: `<upstream>.<action>` for the REST
/// proxy, the `Tool` resource otherwise (MCP gateway, AuthZEN).
fn tool_called(record: &AuditRecord) -> Option<String> {
    let event = &record.event;
    if event.detail.get("endpoint").and_then(Value::as_str) == Some("proxy") {
        let upstream = event.detail.get("upstream").and_then(Value::as_str)?;
        let (_, action) = entity(&event.action)?;
        return Some(format!("{upstream}.{action}"));
    }
    match entity(&event.resource)? {
        ("Tool", tool) => Some(tool),
        _ => None,
    }
}

/// The tools of a stored grant.
fn granted_tools(task: &TaskRecord) -> Vec<String> {
    serde_json::from_str::<Value>(&task.grant_json)
        .ok()
        .and_then(|g| {
            g.get("tools").and_then(Value::as_array).map(|tools| {
                tools
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Everything the rules look at.
#[derive(Debug)]
pub(crate) struct Inventory<'a> {
    pub(crate) now_us: i64,
    pub(crate) settings: PostureSettings,
    pub(crate) agents: &'a [AgentRecord],
    /// Tasks issued in the window.
    pub(crate) tasks: &'a [TaskRecord],
    pub(crate) secrets: &'a [SecretRecord],
    /// The policies in service.
    pub(crate) policy_ids: &'a [String],
    /// `permit` or `forbid` by policy ID, as the policy files say.
    pub(crate) policy_effects: &'a HashMap<String, &'static str>,
    pub(crate) usage: &'a Usage,
    /// For agents without activity in the window: when their latest task
    /// ever was issued (`None`: never), by SPIFFE ID.
    pub(crate) last_task_us: &'a HashMap<String, Option<i64>>,
    /// The catalogued tools policy lets each agent hold, by SPIFFE ID.
    pub(crate) standing_tools: &'a HashMap<String, Vec<String>>,
    /// Unexpired active tasks of suspended agents, by SPIFFE ID.
    pub(crate) suspended_tasks: &'a HashMap<String, Vec<TaskRecord>>,
}

impl Inventory<'_> {
    fn since_us(&self) -> i64 {
        self.now_us.saturating_sub(self.settings.window_us())
    }

    fn days(&self, us: i64) -> f64 {
        ((us as f64 / DAY_US) * 100.0).round() / 100.0
    }

    fn agent_name(&self, spiffe_id: &str) -> String {
        self.agents
            .iter()
            .find(|a| a.spiffe_id == spiffe_id)
            .map_or_else(|| spiffe_id.to_owned(), |a| a.name.clone())
    }
}

/// Agents whose owner is not an e-mail address (registration requires one,
/// so only a store changed outside Mandate has them).
pub(crate) fn agents_without_owner(inv: &Inventory<'_>) -> Vec<Finding> {
    inv.agents
        .iter()
        .filter(|a| {
            let owner = a.owner.trim();
            !owner
                .find('@')
                .is_some_and(|at| at > 0 && at + 1 < owner.len())
        })
        .map(|a| {
            Finding::new(
                "agent_without_owner",
                &a.name,
                json!({"spiffe_id": a.spiffe_id, "owner": a.owner}),
            )
        })
        .collect()
}

/// Suspended agents whose active tasks have not expired.
pub(crate) fn suspended_agents_holding_tasks(inv: &Inventory<'_>) -> Vec<Finding> {
    inv.agents
        .iter()
        .filter(|a| a.status == AgentStatus::Suspended)
        .filter_map(|a| {
            let live: Vec<&TaskRecord> = inv
                .suspended_tasks
                .get(&a.spiffe_id)?
                .iter()
                .filter(|t| t.state == TaskState::Active && t.expires_us > inv.now_us)
                .collect();
            (!live.is_empty()).then(|| {
                Finding::new(
                    "suspended_agent_holds_tasks",
                    &a.name,
                    json!({
                        "spiffe_id": a.spiffe_id,
                        "suspended_at": rfc3339(a.updated_us),
                        "tasks": live.iter().map(|t| json!({
                            "task_id": t.task_id, "expires_at": rfc3339(t.expires_us),
                        })).collect::<Vec<_>>(),
                    }),
                )
            })
        })
        .collect()
}

/// Agents registered before the window with no token issued and no call in
/// it.
pub(crate) fn idle_agents(inv: &Inventory<'_>) -> Vec<Finding> {
    let since = inv.since_us();
    inv.agents
        .iter()
        .filter(|a| a.created_us < since)
        .filter(|a| {
            inv.usage
                .last_active_us
                .get(&a.spiffe_id)
                .is_none_or(|t| *t < since)
        })
        .map(|a| {
            let last = inv.last_task_us.get(&a.spiffe_id).copied().flatten();
            Finding::new(
                "agent_idle",
                &a.name,
                json!({
                    "spiffe_id": a.spiffe_id,
                    "owner": a.owner,
                    "status": a.status.as_str(),
                    "registered_at": rfc3339(a.created_us),
                    "never_used": last.is_none(),
                    "last_task_issued_at": last.map(rfc3339),
                    "idle_days": inv.settings.idle_days,
                }),
            )
        })
        .collect()
}

/// Agents that policy lets hold catalogued tools none of their tasks in the
/// window was granted.
pub(crate) fn standing_rights_wider_than_tasks(inv: &Inventory<'_>) -> Vec<Finding> {
    let mut granted: HashMap<&str, (BTreeSet<String>, usize)> = HashMap::new();
    for task in inv.tasks {
        let entry = granted.entry(task.agent.as_str()).or_default();
        entry.0.extend(granted_tools(task));
        entry.1 += 1;
    }
    let mut out = Vec::new();
    for agent in inv.agents {
        let Some(standing) = inv.standing_tools.get(&agent.spiffe_id) else {
            continue;
        };
        let (used, tasks) = granted
            .get(agent.spiffe_id.as_str())
            .cloned()
            .unwrap_or_default();
        let unused: BTreeSet<&String> = standing.iter().filter(|t| !used.contains(*t)).collect();
        if unused.is_empty() {
            continue;
        }
        out.push(Finding::new(
            "standing_rights_wider_than_tasks",
            &agent.name,
            json!({
                "spiffe_id": agent.spiffe_id,
                "standing_tools": standing.iter().collect::<BTreeSet<_>>(),
                "granted_tools": used,
                "never_granted": unused,
                "tasks_examined": tasks,
            }),
        ));
    }
    out
}

/// Tasks of the window that expired while still active, per agent; trees
/// whose root and delegates all stayed open are reported as such.
pub(crate) fn tasks_left_open(inv: &Inventory<'_>) -> Vec<Finding> {
    let open: Vec<&TaskRecord> = inv
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::Active && t.expires_us <= inv.now_us)
        .collect();
    let mut trees: BTreeMap<&str, Vec<&TaskRecord>> = BTreeMap::new();
    for task in &open {
        trees.entry(&task.root_task_id).or_default().push(task);
    }
    let mut out = Vec::new();
    let mut by_agent: BTreeMap<&str, Vec<&TaskRecord>> = BTreeMap::new();
    for (root, members) in trees {
        let root_open = members.iter().any(|t| t.task_id == root);
        if root_open && members.len() > 1 {
            let mut members = members;
            members.sort_by_key(|t| (t.depth, t.task_id.clone()));
            out.push(Finding::new(
                "delegation_tree_left_open",
                root,
                json!({
                    "root_agent": inv.agent_name(&members[0].agent),
                    "expired_at": rfc3339(members[0].expires_us),
                    "tasks": members.iter().map(|t| json!({
                        "task_id": t.task_id,
                        "agent": inv.agent_name(&t.agent),
                        "depth": t.depth,
                    })).collect::<Vec<_>>(),
                }),
            ));
        } else {
            for task in members {
                by_agent.entry(&task.agent).or_default().push(task);
            }
        }
    }
    for (agent, tasks) in by_agent {
        out.push(Finding::new(
            "task_left_open",
            inv.agent_name(agent),
            json!({
                "spiffe_id": agent,
                "count": tasks.len(),
                "tasks": tasks.iter().take(MAX_LISTED).map(|t| json!({
                    "task_id": t.task_id, "expired_at": rfc3339(t.expires_us),
                })).collect::<Vec<_>>(),
            }),
        ));
    }
    out
}

/// Secrets whose last rotation (or creation) is older than the maximum age.
pub(crate) fn secrets_not_rotated(inv: &Inventory<'_>) -> Vec<Finding> {
    let max_age = inv.settings.secret_max_age_us();
    inv.secrets
        .iter()
        .filter_map(|s| {
            let since = s.rotated_us.unwrap_or(s.created_us);
            let age = inv.now_us.saturating_sub(since);
            (age > max_age).then(|| {
                Finding::new(
                    "secret_not_rotated",
                    &s.name,
                    json!({
                        "version": s.version,
                        "created_at": rfc3339(s.created_us),
                        "rotated_at": s.rotated_us.map(rfc3339),
                        "age_days": inv.days(age),
                        "max_age_days": inv.settings.secret_max_age_days,
                    }),
                )
            })
        })
        .collect()
}

/// Ended or expired tasks of the window whose granted tools were never
/// called, per agent. A tool delegated to a child task counts as used:
/// handing it on is what the grant was for.
pub(crate) fn grants_unused(inv: &Inventory<'_>) -> Vec<Finding> {
    let mut delegated: HashMap<&str, BTreeSet<String>> = HashMap::new();
    for task in inv.tasks {
        if let Some(parent) = &task.parent_task_id {
            delegated
                .entry(parent.as_str())
                .or_default()
                .extend(granted_tools(task));
        }
    }
    let empty = BTreeSet::new();
    let mut by_agent: BTreeMap<&str, Vec<(&TaskRecord, Vec<String>)>> = BTreeMap::new();
    let mut examined: HashMap<&str, usize> = HashMap::new();
    for task in inv.tasks {
        let over = task.state != TaskState::Active || task.expires_us <= inv.now_us;
        if !over {
            continue;
        }
        *examined.entry(&task.agent).or_default() += 1;
        let called = inv.usage.tools_called.get(&task.task_id).unwrap_or(&empty);
        let handed_on = delegated.get(task.task_id.as_str()).unwrap_or(&empty);
        let unused: Vec<String> = granted_tools(task)
            .into_iter()
            .filter(|t| !called.contains(t) && !handed_on.contains(t))
            .collect();
        if !unused.is_empty() {
            by_agent
                .entry(&task.agent)
                .or_default()
                .push((task, unused));
        }
    }
    by_agent
        .into_iter()
        .map(|(agent, tasks)| {
            let mut per_tool: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, unused) in &tasks {
                for tool in unused {
                    *per_tool.entry(tool).or_default() += 1;
                }
            }
            Finding::new(
                "grant_unused",
                inv.agent_name(agent),
                json!({
                    "spiffe_id": agent,
                    "tasks_examined": examined.get(agent).copied().unwrap_or(0),
                    "tasks_with_unused_tools": tasks.len(),
                    "unused_tools": per_tool,
                    "tasks": tasks.iter().take(MAX_LISTED).map(|(t, unused)| json!({
                        "task_id": t.task_id, "unused_tools": unused,
                    })).collect::<Vec<_>>(),
                }),
            )
        })
        .collect()
}

/// Each policy's effect (`permit` or `forbid`) by the ID the bundle gives it
/// (`<file>#<@id>`, else `<file>#<position>`): the bundle does not expose
/// effects, and a forbid that never matched is a guardrail more often than
/// a mistake. Files that do not parse are left out.
pub(crate) fn policy_effects(sources: &PolicySources) -> HashMap<String, &'static str> {
    let mut effects = HashMap::new();
    for file in &sources.policies {
        let Ok(parsed) = PolicySet::from_str(&file.text) else {
            continue;
        };
        for policy in parsed.policies() {
            let local = policy
                .annotation("id")
                .map_or_else(|| policy.id().to_string(), str::to_owned);
            let effect = match policy.effect() {
                Effect::Permit => "permit",
                Effect::Forbid => "forbid",
            };
            effects.insert(format!("{}#{local}", file.name), effect);
        }
    }
    effects
}

/// Policies in service that determined no outcome in the window.
pub(crate) fn policies_never_matched(inv: &Inventory<'_>) -> Vec<Finding> {
    inv.policy_ids
        .iter()
        .filter(|id| !inv.usage.policies_matched.contains(*id))
        .map(|id| {
            Finding::new(
                "policy_never_matched",
                id,
                json!({
                    "effect": inv.policy_effects.get(id),
                    "window_days": inv.settings.idle_days,
                }),
            )
        })
        .collect()
}

/// Every rule's findings, most severe first.
pub(crate) fn findings(inv: &Inventory<'_>) -> Vec<Finding> {
    let mut all: Vec<Finding> = [
        agents_without_owner(inv),
        suspended_agents_holding_tasks(inv),
        idle_agents(inv),
        standing_rights_wider_than_tasks(inv),
        tasks_left_open(inv),
        secrets_not_rotated(inv),
        grants_unused(inv),
        policies_never_matched(inv),
    ]
    .into_iter()
    .flatten()
    .collect();
    all.sort_by(|a, b| {
        (std::cmp::Reverse(a.rule.severity), a.rule.id, &a.subject).cmp(&(
            std::cmp::Reverse(b.rule.severity),
            b.rule.id,
            &b.subject,
        ))
    });
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use mandate_core::{AuditEvent, ChainHead};

    const NOW: i64 = 1_800_000_000_000_000;
    const DAY: i64 = 86_400_000_000;

    fn settings() -> PostureSettings {
        PostureSettings {
            idle_days: 30.0,
            secret_max_age_days: 90.0,
        }
    }

    fn agent(name: &str, created_days_ago: i64) -> AgentRecord {
        AgentRecord {
            name: name.into(),
            spiffe_id: format!("spiffe://mandate.local/agent/{name}"),
            owner: format!("{name}@example.com"),
            env: "dev".into(),
            function: "test".into(),
            status: AgentStatus::Active,
            created_us: NOW - created_days_ago * DAY,
            updated_us: NOW - created_days_ago * DAY,
            key_sha256: None,
            credentials_since_us: 0,
        }
    }

    fn task(id: &str, agent: &str, tools: &[&str], state: TaskState, expires: i64) -> TaskRecord {
        TaskRecord {
            task_id: id.into(),
            jti: format!("jti-{id}"),
            agent: format!("spiffe://mandate.local/agent/{agent}"),
            parent_task_id: None,
            root_task_id: id.into(),
            depth: 0,
            grant_json: json!({"type": "agent_task", "purpose": "p", "tools": tools,
                               "ttl_seconds": 60, "capabilities": ["read"]})
            .to_string(),
            issued_us: NOW - DAY,
            expires_us: expires,
            state,
            ended_us: None,
            end_reason: None,
        }
    }

    fn record(
        kind: AuditKind,
        subject: &str,
        action: &str,
        resource: &str,
        detail: Value,
    ) -> AuditRecord {
        AuditRecord::seal(
            "n",
            ChainHead::GENESIS,
            AuditEvent {
                time_us: NOW - DAY,
                kind,
                request_id: String::new(),
                subject: subject.into(),
                action: action.into(),
                resource: resource.into(),
                outcome: "allow".into(),
                policies: vec!["agents.cedar#call-within-task".into()],
                request_digest: String::new(),
                detail,
            },
        )
    }

    /// An inventory over the given parts, everything else empty.
    struct Parts {
        agents: Vec<AgentRecord>,
        tasks: Vec<TaskRecord>,
        secrets: Vec<SecretRecord>,
        policy_ids: Vec<String>,
        policy_effects: HashMap<String, &'static str>,
        usage: Usage,
        last_task_us: HashMap<String, Option<i64>>,
        standing_tools: HashMap<String, Vec<String>>,
        suspended_tasks: HashMap<String, Vec<TaskRecord>>,
    }

    impl Parts {
        fn new() -> Parts {
            Parts {
                agents: Vec::new(),
                tasks: Vec::new(),
                secrets: Vec::new(),
                policy_ids: Vec::new(),
                policy_effects: HashMap::new(),
                usage: Usage::default(),
                last_task_us: HashMap::new(),
                standing_tools: HashMap::new(),
                suspended_tasks: HashMap::new(),
            }
        }

        fn inventory(&self) -> Inventory<'_> {
            Inventory {
                now_us: NOW,
                settings: settings(),
                agents: &self.agents,
                tasks: &self.tasks,
                secrets: &self.secrets,
                policy_ids: &self.policy_ids,
                policy_effects: &self.policy_effects,
                usage: &self.usage,
                last_task_us: &self.last_task_us,
                standing_tools: &self.standing_tools,
                suspended_tasks: &self.suspended_tasks,
            }
        }
    }

    fn subjects(findings: &[Finding]) -> Vec<&str> {
        findings.iter().map(|f| f.subject.as_str()).collect()
    }

    #[test]
    fn usage_reads_agents_policies_and_tools_from_each_endpoints_records() {
        let mut usage = Usage::default();
        let agent = r#"Agent::"spiffe://mandate.local/agent/a""#;
        // MCP gateway and AuthZEN: the Tool resource.
        usage.observe(&record(
            AuditKind::Decision,
            agent,
            r#"Action::"call""#,
            r#"Tool::"everything.echo""#,
            json!({"endpoint": "mcp", "task_id": "t1"}),
        ));
        // REST proxy: <upstream>.<action>.
        usage.observe(&record(
            AuditKind::Decision,
            agent,
            r#"Action::"list_issues""#,
            r#"Repo::"acme/web""#,
            json!({"endpoint": "proxy", "upstream": "github", "task_id": "t1"}),
        ));
        // A denied call is not a use of the grant.
        let mut denied = record(
            AuditKind::Decision,
            agent,
            r#"Action::"call""#,
            r#"Tool::"files.delete""#,
            json!({"task_id": "t1"}),
        );
        denied.event.outcome = "deny".into();
        usage.observe(&denied);
        // A user subject (AuthZEN without a token) is no agent activity.
        usage.observe(&record(
            AuditKind::Decision,
            r#"user::"bob""#,
            r#"Action::"read""#,
            r#"doc::"x""#,
            json!({}),
        ));
        assert_eq!(
            usage.tools_called["t1"],
            BTreeSet::from([
                "everything.echo".to_owned(),
                "github.list_issues".to_owned()
            ])
        );
        assert_eq!(
            usage.last_active_us.keys().collect::<Vec<_>>(),
            vec!["spiffe://mandate.local/agent/a"]
        );
        assert!(
            usage
                .policies_matched
                .contains("agents.cedar#call-within-task")
        );
        assert_eq!(usage.records, 4);
        assert_eq!(
            entity(r#"Tool::"a\"b\\c""#),
            Some(("Tool", r#"a"b\c"#.to_owned()))
        );
        assert_eq!(entity("not an entity"), None);
    }

    #[test]
    fn idle_agents_are_those_registered_before_the_window_without_activity() {
        let mut p = Parts::new();
        p.agents = vec![agent("busy", 100), agent("idle", 100), agent("new", 1)];
        p.usage
            .last_active_us
            .insert("spiffe://mandate.local/agent/busy".into(), NOW - DAY);
        // Active long ago only.
        p.usage
            .last_active_us
            .insert("spiffe://mandate.local/agent/idle".into(), NOW - 40 * DAY);
        p.last_task_us
            .insert("spiffe://mandate.local/agent/idle".into(), None);
        let found = idle_agents(&p.inventory());
        assert_eq!(subjects(&found), vec!["idle"]);
        assert_eq!(found[0].detail["never_used"], true);
    }

    #[test]
    fn standing_rights_beyond_every_grant_are_reported_and_a_match_is_not() {
        let mut p = Parts::new();
        p.agents = vec![agent("wide", 100), agent("tight", 100)];
        p.tasks = vec![
            task("t1", "wide", &["files.read"], TaskState::Completed, NOW),
            task("t2", "tight", &["files.read"], TaskState::Completed, NOW),
        ];
        p.standing_tools.insert(
            "spiffe://mandate.local/agent/wide".into(),
            vec!["files.read".into(), "github.create_issue".into()],
        );
        p.standing_tools.insert(
            "spiffe://mandate.local/agent/tight".into(),
            vec!["files.read".into()],
        );
        let found = standing_rights_wider_than_tasks(&p.inventory());
        assert_eq!(subjects(&found), vec!["wide"]);
        assert_eq!(
            found[0].detail["never_granted"],
            json!(["github.create_issue"])
        );
        assert_eq!(found[0].detail["tasks_examined"], 1);
    }

    #[test]
    fn expired_active_tasks_are_left_open_and_whole_open_trees_are_named() {
        let mut p = Parts::new();
        p.agents = vec![agent("a", 100), agent("b", 100)];
        let mut child = task("c", "b", &["files.read"], TaskState::Active, NOW - 10);
        child.parent_task_id = Some("root".into());
        child.root_task_id = "root".into();
        child.depth = 1;
        p.tasks = vec![
            task("root", "a", &["files.read"], TaskState::Active, NOW - 10),
            child,
            task("lone", "a", &["files.read"], TaskState::Active, NOW - 10),
            // Still running, or properly ended: nothing to say.
            task("live", "a", &["files.read"], TaskState::Active, NOW + DAY),
            task("done", "a", &["files.read"], TaskState::Completed, NOW - 10),
        ];
        let found = tasks_left_open(&p.inventory());
        let ids: Vec<(&str, &str)> = found
            .iter()
            .map(|f| (f.rule.id, f.subject.as_str()))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("delegation_tree_left_open", "root"),
                ("task_left_open", "a")
            ]
        );
        assert_eq!(found[0].detail["tasks"][1]["agent"], "b");
        assert_eq!(found[1].detail["count"], 1);
        assert_eq!(found[1].detail["tasks"][0]["task_id"], "lone");
    }

    #[test]
    fn secrets_older_than_the_maximum_age_since_their_last_rotation_are_reported() {
        let secret = |name: &str, created: i64, rotated: Option<i64>| SecretRecord {
            name: name.into(),
            version: 1,
            kek_id: "k".into(),
            nonce: String::new(),
            ciphertext: String::new(),
            created_us: NOW - created * DAY,
            rotated_us: rotated.map(|d| NOW - d * DAY),
        };
        let mut p = Parts::new();
        p.secrets = vec![
            secret("old", 100, None),
            secret("rotated", 100, Some(10)),
            secret("fresh", 10, None),
            secret("stale-rotation", 300, Some(95)),
        ];
        let found = secrets_not_rotated(&p.inventory());
        assert_eq!(subjects(&found), vec!["old", "stale-rotation"]);
        assert_eq!(found[0].detail["age_days"], 100.0);
    }

    #[test]
    fn unused_grants_count_only_ended_tasks_and_delegation_is_use() {
        let mut p = Parts::new();
        p.agents = vec![agent("a", 100)];
        let mut child = task("child", "a", &["files.list"], TaskState::Completed, NOW);
        child.parent_task_id = Some("parent".into());
        p.tasks = vec![
            task(
                "parent",
                "a",
                &["files.read", "files.list", "mail.send"],
                TaskState::Completed,
                NOW,
            ),
            child,
            // Still running: it may yet call what it holds.
            task("running", "a", &["mail.send"], TaskState::Active, NOW + DAY),
        ];
        p.usage
            .tools_called
            .insert("parent".into(), BTreeSet::from(["files.read".to_owned()]));
        p.usage
            .tools_called
            .insert("child".into(), BTreeSet::from(["files.list".to_owned()]));
        let found = grants_unused(&p.inventory());
        assert_eq!(subjects(&found), vec!["a"]);
        assert_eq!(found[0].detail["unused_tools"], json!({"mail.send": 1}));
        assert_eq!(found[0].detail["tasks_examined"], 2);
        assert_eq!(found[0].detail["tasks"][0]["task_id"], "parent");
    }

    #[test]
    fn policies_that_matched_nothing_are_reported_with_their_effect() {
        let sources = PolicySources {
            policies: vec![mandate_policy::SourceFile {
                name: "base/a.cedar".into(),
                text: r#"@id("used") permit(principal, action, resource);
                         @id("dead") forbid(principal, action, resource) when { false };
                         permit(principal, action, resource) when { false };"#
                    .into(),
            }],
            ..PolicySources::default()
        };
        let mut p = Parts::new();
        p.policy_effects = policy_effects(&sources);
        p.policy_ids = vec![
            "base/a.cedar#used".into(),
            "base/a.cedar#dead".into(),
            "base/a.cedar#policy2".into(),
        ];
        p.usage.policies_matched.insert("base/a.cedar#used".into());
        let found = policies_never_matched(&p.inventory());
        assert_eq!(
            subjects(&found),
            vec!["base/a.cedar#dead", "base/a.cedar#policy2"]
        );
        assert_eq!(found[0].detail["effect"], "forbid");
        assert_eq!(found[1].detail["effect"], "permit");
    }

    #[test]
    fn ownerless_and_suspended_agents_with_live_tasks_are_reported() {
        let mut p = Parts::new();
        let mut ownerless = agent("ownerless", 100);
        ownerless.owner = "nobody".into();
        let mut suspended = agent("suspended", 100);
        suspended.status = AgentStatus::Suspended;
        let mut quiet = agent("quiet", 100);
        quiet.status = AgentStatus::Suspended;
        p.agents = vec![ownerless, suspended, quiet];
        p.suspended_tasks.insert(
            "spiffe://mandate.local/agent/suspended".into(),
            vec![task(
                "t",
                "suspended",
                &["files.read"],
                TaskState::Active,
                NOW + DAY,
            )],
        );
        p.suspended_tasks.insert(
            "spiffe://mandate.local/agent/quiet".into(),
            vec![task(
                "old",
                "quiet",
                &["files.read"],
                TaskState::Active,
                NOW - 1,
            )],
        );
        assert_eq!(
            subjects(&agents_without_owner(&p.inventory())),
            vec!["ownerless"]
        );
        assert_eq!(
            subjects(&suspended_agents_holding_tasks(&p.inventory())),
            vec!["suspended"]
        );
    }

    #[test]
    fn findings_are_sorted_by_severity_and_carry_their_mappings() {
        let mut p = Parts::new();
        let mut ownerless = agent("z-ownerless", 100);
        ownerless.owner = String::new();
        p.agents = vec![ownerless];
        p.policy_ids = vec!["a.cedar#dead".into()];
        let all = findings(&p.inventory());
        let ids: Vec<&str> = all.iter().map(|f| f.rule.id).collect();
        assert_eq!(
            ids,
            vec!["agent_without_owner", "agent_idle", "policy_never_matched"]
        );
        let json = all[0].to_json();
        assert_eq!(json["severity"], "high");
        assert_eq!(
            json["mappings"]["owasp_nhi"],
            json!(["NHI1:2025 Improper Offboarding"])
        );
        assert!(
            json["remediation"]
                .as_str()
                .unwrap()
                .contains("accountable")
        );
    }

    #[test]
    fn the_mapping_table_uses_only_published_identifiers() {
        // The OWASP Agentic Top 10 (2026), the OWASP NHI Top 10 (2025) and
        // NIST AI RMF 1.0 subcategories, as published.
        let asi = [
            "ASI01 Agent Goal Hijack",
            "ASI02 Tool Misuse and Exploitation",
            "ASI03 Identity and Privilege Abuse",
            "ASI04 Agentic Supply Chain Vulnerabilities",
            "ASI05 Unexpected Code Execution",
            "ASI06 Memory and Context Poisoning",
            "ASI07 Insecure Inter-Agent Communication",
            "ASI08 Cascading Failures",
            "ASI09 Human-Agent Trust Exploitation",
            "ASI10 Rogue Agents",
        ];
        let nhi = [
            "NHI1:2025 Improper Offboarding",
            "NHI2:2025 Secret Leakage",
            "NHI3:2025 Vulnerable Third-Party NHI",
            "NHI4:2025 Insecure Authentication",
            "NHI5:2025 Overprivileged NHI",
            "NHI6:2025 Insecure Cloud Deployment Configurations",
            "NHI7:2025 Long-Lived Secrets",
            "NHI8:2025 Environment Isolation",
            "NHI9:2025 NHI Reuse",
            "NHI10:2025 Human Use of NHI",
        ];
        let nist = [
            "GOVERN 1.5",
            "GOVERN 1.6",
            "GOVERN 1.7",
            "GOVERN 2.1",
            "MEASURE 2.7",
            "MANAGE 2.4",
            "MANAGE 4.1",
        ];
        let mut ids = HashSet::new();
        for r in &RULES {
            assert!(ids.insert(r.id), "{} twice", r.id);
            assert!(r.owasp_agentic.iter().all(|m| asi.contains(m)), "{}", r.id);
            assert!(r.owasp_nhi.iter().all(|m| nhi.contains(m)), "{}", r.id);
            assert!(r.nist_ai_rmf.iter().all(|m| nist.contains(m)), "{}", r.id);
            assert!(!r.owasp_agentic.is_empty() && !r.nist_ai_rmf.is_empty());
        }
    }
}
