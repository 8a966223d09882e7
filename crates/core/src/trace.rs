//! The action chain of one task, rebuilt from audit records alone.
//!
//! A record belongs to a task when its `detail` names it: `task_id` (the task
//! it is about), `parent_task_id` (a task delegated, or refused, from it),
//! `ended` / `task_ids` (tasks it ended or otherwise affected, such as a
//! revocation of an ancestor or a kill switch) or `claimed.task_id` (what a
//! refused token claimed, unverified). That rule needs no list of kinds, so
//! records of kinds added later land under their task without changes here.
//!
//! [`TraceBuilder`] is fed the records that might concern the tree, one
//! search per task, and says which task to search next: each `token_delegated`
//! record naming a task of the tree as parent adds its child. [`TaskTrace`]
//! is the result: the task, its events in time order (node and sequence
//! number break ties across nodes), and each delegated task nested at the
//! event that created it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::audit::{AuditKind, AuditRecord};

/// Why no trace can be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// No record names the task.
    #[error("no audit record names task {task_id:?}")]
    UnknownTask {
        /// The task asked for.
        task_id: String,
    },
}

/// How a record concerns the task it is listed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// The record is about this task (`detail.task_id`): a call, its
    /// completion, its revocation, an approval.
    Subject,
    /// The record is about a task delegated (or refused) from this one
    /// (`detail.parent_task_id`). A delegation that was granted carries the
    /// child in [`TraceEvent::delegated`].
    Parent,
    /// The record ended or otherwise affected this task among others
    /// (`detail.ended`, `detail.task_ids`): the revocation of an ancestor, a
    /// kill switch.
    Affected,
    /// A token that was refused claimed to be for this task
    /// (`detail.claimed.task_id`). Nothing in it was verified.
    Claimed,
}

impl Relation {
    /// The name used in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::Subject => "subject",
            Relation::Parent => "parent",
            Relation::Affected => "affected",
            Relation::Claimed => "claimed",
        }
    }
}

/// One record as it concerns one task of the trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceEvent {
    /// The record, as stored.
    pub record: AuditRecord,
    /// How it concerns the task.
    pub relation: Relation,
    /// For the record that issued a delegated task: that task, with its own
    /// events and delegations.
    pub delegated: Option<Box<TracedTask>>,
}

/// A task of the trace and what the log says happened to it.
#[derive(Debug, Clone, PartialEq)]
pub struct TracedTask {
    /// The task's ID.
    pub task_id: String,
    /// The `token_issued` or `token_delegated` record that created it, if
    /// the log holds it.
    pub issuance: Option<AuditRecord>,
    /// Everything else about it, in time order.
    pub events: Vec<TraceEvent>,
}

impl TracedTask {
    fn issuance_detail(&self, key: &str) -> Option<&Value> {
        self.issuance.as_ref().and_then(|r| r.event.detail.get(key))
    }

    /// The task it was delegated from, as its issuance record says.
    pub fn parent_task_id(&self) -> Option<&str> {
        self.issuance_detail("parent_task_id")
            .and_then(Value::as_str)
    }

    /// The agent that was issued the task (the issuance record's subject).
    pub fn agent(&self) -> Option<&str> {
        self.issuance.as_ref().map(|r| r.event.subject.as_str())
    }

    /// The grant: purpose, tools, data domains, capabilities, ttl.
    pub fn grant(&self) -> Option<&Value> {
        self.issuance_detail("granted")
    }

    /// Delegation depth (0 for a root task).
    pub fn depth(&self) -> Option<u64> {
        self.issuance_detail("depth").and_then(Value::as_u64)
    }

    /// When it was issued, in microseconds since the epoch.
    pub fn issued_us(&self) -> Option<i64> {
        self.issuance.as_ref().map(|r| r.event.time_us)
    }

    /// When its token expires, in microseconds since the epoch.
    pub fn expires_us(&self) -> Option<i64> {
        self.issuance_detail("exp")
            .and_then(Value::as_i64)
            .map(|s| s.saturating_mul(1_000_000))
    }

    /// The first event that ended it (completed, revoked, killed), if any.
    pub fn end(&self) -> Option<&TraceEvent> {
        self.events
            .iter()
            .find(|e| e.relation != Relation::Claimed && ends_task(&e.record))
    }

    /// This task and every task delegated from it, depth first.
    pub fn tasks(&self) -> Vec<&TracedTask> {
        let mut out = vec![self];
        for event in &self.events {
            if let Some(child) = &event.delegated {
                out.extend(child.tasks());
            }
        }
        out
    }
}

/// Whether `record` ends the tasks it names.
pub fn ends_task(record: &AuditRecord) -> bool {
    matches!(
        record.event.kind,
        AuditKind::TaskCompleted | AuditKind::TaskRevoked | AuditKind::AgentKilled
    )
}

/// The tree of one task, from the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskTrace {
    /// The task asked for, with its delegations nested.
    pub root: TracedTask,
    /// How many distinct records the trace holds.
    pub records: usize,
}

/// What one record says about which tasks.
struct Mentions<'a> {
    subject: Option<&'a str>,
    parent: Option<&'a str>,
    affected: Vec<&'a str>,
    claimed: Option<&'a str>,
}

impl Mentions<'_> {
    /// Whether the record names `task_id` in any of the places a trace reads.
    fn names(&self, task_id: &str) -> bool {
        self.subject == Some(task_id)
            || self.parent == Some(task_id)
            || self.claimed == Some(task_id)
            || self.affected.contains(&task_id)
    }
}

fn mentions(record: &AuditRecord) -> Mentions<'_> {
    let detail = &record.event.detail;
    let text = |key: &str| detail.get(key).and_then(Value::as_str);
    let mut affected: Vec<&str> = ["ended", "task_ids"]
        .iter()
        .filter_map(|key| detail.get(*key).and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    affected.sort_unstable();
    affected.dedup();
    Mentions {
        subject: text("task_id"),
        parent: text("parent_task_id"),
        affected,
        claimed: detail
            .get("claimed")
            .and_then(|c| c.get("task_id"))
            .and_then(Value::as_str),
    }
}

fn is_issuance(record: &AuditRecord) -> bool {
    matches!(
        record.event.kind,
        AuditKind::TokenIssued | AuditKind::TokenDelegated
    )
}

/// Order of events: time, then node and sequence number (clocks of nodes
/// sharing a store can tie).
fn order_key(record: &AuditRecord) -> (i64, &str, u64) {
    (record.event.time_us, record.node_id.as_str(), record.seq)
}

/// Collects the records of a task's tree, search by search.
///
/// ```
/// # use mandate_core::TraceBuilder;
/// let mut builder = TraceBuilder::new("task-1");
/// while let Some(task_id) = builder.next_search() {
///     // Find the records whose detail mentions `task_id` in the log ...
///     let found = Vec::new();
///     builder.add(&task_id, found);
/// }
/// assert!(builder.build().is_err()); // nothing names task-1
/// ```
#[derive(Debug, Clone)]
pub struct TraceBuilder {
    root: String,
    /// Tasks of the tree: the root and every task delegated from a member.
    tree: BTreeSet<String>,
    searched: BTreeSet<String>,
    /// Records by (node, seq), so that one found twice counts once.
    records: BTreeMap<(String, u64), AuditRecord>,
}

impl TraceBuilder {
    /// A builder for the tree of `task_id`.
    pub fn new(task_id: &str) -> TraceBuilder {
        TraceBuilder {
            root: task_id.to_owned(),
            tree: BTreeSet::from([task_id.to_owned()]),
            searched: BTreeSet::new(),
            records: BTreeMap::new(),
        }
    }

    /// A task of the tree whose records have not been added yet.
    pub fn next_search(&self) -> Option<String> {
        self.tree.difference(&self.searched).next().cloned()
    }

    /// Adds what a search for `task_id` found, in as many calls as the search
    /// has pages. Only records that name `task_id` where a trace looks are
    /// kept, so a coarse search (text in `detail`) costs no memory for what
    /// merely quotes the ID.
    pub fn add(&mut self, task_id: &str, found: impl IntoIterator<Item = AuditRecord>) {
        self.searched.insert(task_id.to_owned());
        for record in found {
            if !mentions(&record).names(task_id) {
                continue;
            }
            self.records
                .entry((record.node_id.clone(), record.seq))
                .or_insert(record);
        }
        // A child joins when its issuance names a member as parent; repeat
        // until nothing joins, since records can arrive in any order.
        loop {
            let joining: Vec<String> = self
                .records
                .values()
                .filter(|r| is_issuance(r))
                .map(mentions)
                .filter(|m| m.parent.is_some_and(|p| self.tree.contains(p)))
                .filter_map(|m| m.subject)
                .filter(|child| !self.tree.contains(*child))
                .map(str::to_owned)
                .collect();
            if joining.is_empty() {
                break;
            }
            self.tree.extend(joining);
        }
    }

    /// The trace, or [`TraceError::UnknownTask`] if no record names the task.
    pub fn build(self) -> Result<TaskTrace, TraceError> {
        let mut ordered: Vec<&AuditRecord> = self.records.values().collect();
        ordered.sort_by(|a, b| order_key(a).cmp(&order_key(b)));

        let mut tasks: BTreeMap<&str, TracedTask> = self
            .tree
            .iter()
            .map(|id| {
                (
                    id.as_str(),
                    TracedTask {
                        task_id: id.clone(),
                        issuance: None,
                        events: Vec::new(),
                    },
                )
            })
            .collect();
        // Where each child hangs: its parent and the index of the event that
        // delegated it there.
        let mut delegations: Vec<(String, String, usize)> = Vec::new();
        let mut used = 0usize;
        for record in ordered {
            let m = mentions(record);
            let mut placed = false;
            let push = |tasks: &mut BTreeMap<&str, TracedTask>, id: &str, relation| {
                if let Some(task) = tasks.get_mut(id) {
                    task.events.push(TraceEvent {
                        record: record.clone(),
                        relation,
                        delegated: None,
                    });
                    return Some(task.events.len() - 1);
                }
                None
            };
            let subject = m.subject.filter(|s| self.tree.contains(*s));
            match subject {
                Some(id)
                    if is_issuance(record)
                        && tasks.get(id).is_some_and(|t| t.issuance.is_none()) =>
                {
                    if let Some(task) = tasks.get_mut(id) {
                        task.issuance = Some(record.clone());
                    }
                    placed = true;
                    if let Some(parent) = m.parent.filter(|p| self.tree.contains(*p))
                        && id != self.root
                        && let Some(index) = push(&mut tasks, parent, Relation::Parent)
                    {
                        delegations.push((parent.to_owned(), id.to_owned(), index));
                    }
                }
                Some(id) => {
                    placed |= push(&mut tasks, id, Relation::Subject).is_some();
                }
                None => {
                    if let Some(parent) = m.parent.filter(|p| self.tree.contains(*p)) {
                        placed |= push(&mut tasks, parent, Relation::Parent).is_some();
                    }
                }
            }
            for id in m.affected.iter().filter(|id| Some(**id) != subject) {
                placed |= push(&mut tasks, id, Relation::Affected).is_some();
            }
            if let Some(id) = m.claimed.filter(|id| Some(*id) != subject) {
                placed |= push(&mut tasks, id, Relation::Claimed).is_some();
            }
            if placed {
                used += 1;
            }
        }
        if used == 0 {
            return Err(TraceError::UnknownTask { task_id: self.root });
        }
        // Nest the deepest first, so each child is complete when it moves
        // into its parent.
        let mut owned: BTreeMap<String, TracedTask> = tasks
            .into_iter()
            .map(|(id, task)| (id.to_owned(), task))
            .collect();
        let depth_of = |id: &str| -> usize {
            let mut depth = 0;
            let mut current = id.to_owned();
            while let Some((parent, _, _)) = delegations.iter().find(|(_, c, _)| *c == current) {
                depth += 1;
                current = parent.clone();
                if depth > delegations.len() {
                    break;
                }
            }
            depth
        };
        let mut nesting: Vec<&(String, String, usize)> = delegations.iter().collect();
        nesting.sort_by_key(|(_, child, _)| std::cmp::Reverse(depth_of(child)));
        for (parent, child, index) in nesting {
            let Some(task) = owned.remove(child) else {
                continue;
            };
            if let Some(slot) = owned.get_mut(parent).and_then(|p| p.events.get_mut(*index)) {
                slot.delegated = Some(Box::new(task));
            }
        }
        let root = owned
            .remove(&self.root)
            .expect("the root is a member of its own tree");
        Ok(TaskTrace {
            root,
            records: used,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditEvent, ChainHead};
    use serde_json::json;

    /// A record of `kind` at `time` on `node`, sequence `seq`, with `detail`.
    fn rec(node: &str, seq: u64, time: i64, kind: AuditKind, detail: Value) -> AuditRecord {
        AuditRecord::seal(
            node,
            ChainHead {
                seq: seq - 1,
                hash: [0; 32],
            },
            AuditEvent {
                time_us: time,
                kind,
                request_id: String::new(),
                subject: r#"Agent::"spiffe://mandate.local/agent/a""#.into(),
                action: format!(r#"Action::"{}""#, kind.as_str()),
                resource: String::new(),
                outcome: "allow".into(),
                policies: Vec::new(),
                request_digest: String::new(),
                detail,
            },
        )
    }

    fn issued(node: &str, seq: u64, time: i64, task: &str, parent: Option<&str>) -> AuditRecord {
        let kind = if parent.is_some() {
            AuditKind::TokenDelegated
        } else {
            AuditKind::TokenIssued
        };
        rec(
            node,
            seq,
            time,
            kind,
            json!({"task_id": task, "parent_task_id": parent, "depth": u64::from(parent.is_some()),
                   "exp": 1_700_000_300, "granted": {"purpose": "p", "tools": ["files.read"]}}),
        )
    }

    fn call(node: &str, seq: u64, time: i64, task: &str) -> AuditRecord {
        rec(
            node,
            seq,
            time,
            AuditKind::Decision,
            json!({"task_id": task}),
        )
    }

    /// Runs the builder as the CLI does: each search returns the records of
    /// `log` that mention the task ID anywhere in their detail.
    fn trace(root: &str, log: &[AuditRecord]) -> Result<TaskTrace, TraceError> {
        let mut builder = TraceBuilder::new(root);
        while let Some(id) = builder.next_search() {
            let found: Vec<AuditRecord> = log
                .iter()
                .filter(|r| r.event.detail.to_string().contains(&id))
                .cloned()
                .collect();
            builder.add(&id, found);
        }
        builder.build()
    }

    fn seqs(task: &TracedTask) -> Vec<(String, u64, &'static str)> {
        task.events
            .iter()
            .map(|e| (e.record.node_id.clone(), e.record.seq, e.relation.as_str()))
            .collect()
    }

    #[test]
    fn events_are_in_time_order_across_nodes_with_node_and_seq_breaking_ties() {
        let log = vec![
            issued("b", 1, 100, "t1", None),
            call("b", 2, 300, "t1"),
            call("a", 7, 200, "t1"),
            // Same time on two nodes: node ID decides.
            call("b", 3, 400, "t1"),
            call("a", 8, 400, "t1"),
        ];
        let trace = trace("t1", &log).unwrap();
        assert_eq!(trace.records, 5);
        assert_eq!(trace.root.issuance.as_ref().unwrap().seq, 1);
        assert_eq!(
            seqs(&trace.root),
            vec![
                ("a".into(), 7, "subject"),
                ("b".into(), 2, "subject"),
                ("a".into(), 8, "subject"),
                ("b".into(), 3, "subject"),
            ]
        );
    }

    #[test]
    fn delegated_tasks_nest_at_the_delegation_transitively() {
        let log = vec![
            issued("n", 1, 100, "root", None),
            call("n", 2, 110, "root"),
            issued("n", 3, 120, "child", Some("root")),
            call("n", 4, 130, "child"),
            issued("n", 5, 140, "grandchild", Some("child")),
            call("n", 6, 150, "grandchild"),
            call("n", 7, 160, "root"),
            // Another tree in the same log stays out.
            issued("n", 8, 170, "other", None),
            issued("n", 9, 180, "other-child", Some("other")),
            rec(
                "n",
                10,
                190,
                AuditKind::TaskRevoked,
                json!({"task_id": "root", "ended": ["root", "child", "grandchild"]}),
            ),
        ];
        let trace = trace("root", &log).unwrap();
        let root = &trace.root;
        assert_eq!(
            seqs(root),
            vec![
                ("n".into(), 2, "subject"),
                ("n".into(), 3, "parent"),
                ("n".into(), 7, "subject"),
                ("n".into(), 10, "subject"),
            ]
        );
        let child = root.events[1].delegated.as_deref().unwrap();
        assert_eq!(child.task_id, "child");
        assert_eq!(child.parent_task_id(), Some("root"));
        assert_eq!(child.depth(), Some(1));
        assert_eq!(
            seqs(child),
            vec![
                ("n".into(), 4, "subject"),
                ("n".into(), 5, "parent"),
                ("n".into(), 10, "affected"),
            ]
        );
        let grandchild = child.events[1].delegated.as_deref().unwrap();
        assert_eq!(grandchild.task_id, "grandchild");
        assert_eq!(
            seqs(grandchild),
            vec![("n".into(), 6, "subject"), ("n".into(), 10, "affected")]
        );
        let ids: Vec<&str> = root.tasks().iter().map(|t| t.task_id.as_str()).collect();
        assert_eq!(ids, vec!["root", "child", "grandchild"]);
        assert_eq!(trace.records, 8, "the other tree's records are not counted");
        for task in root.tasks() {
            assert_eq!(task.end().unwrap().record.seq, 10, "{}", task.task_id);
        }
    }

    #[test]
    fn kinds_without_special_handling_land_under_their_task() {
        let log = vec![
            issued("n", 1, 100, "t", None),
            rec(
                "n",
                2,
                110,
                AuditKind::ApprovalRequested,
                json!({"task_id": "t", "approval_id": "ap-1"}),
            ),
            rec(
                "n",
                3,
                120,
                AuditKind::Drift,
                json!({"task_id": "t", "reason": "outside the task"}),
            ),
            rec(
                "n",
                4,
                130,
                AuditKind::AgentKilled,
                json!({"agent": "a", "task_ids": ["t", "unrelated"]}),
            ),
            // No task named: not part of the trace.
            rec(
                "n",
                5,
                140,
                AuditKind::KeyRotated,
                json!({"active_kid": "k"}),
            ),
        ];
        let trace = trace("t", &log).unwrap();
        let kinds: Vec<(AuditKind, &str)> = trace
            .root
            .events
            .iter()
            .map(|e| (e.record.event.kind, e.relation.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (AuditKind::ApprovalRequested, "subject"),
                (AuditKind::Drift, "subject"),
                (AuditKind::AgentKilled, "affected"),
            ]
        );
        assert_eq!(
            trace.root.end().unwrap().record.event.kind,
            AuditKind::AgentKilled
        );
    }

    #[test]
    fn a_task_whose_parent_is_not_traced_keeps_its_parent_id_and_ancestor_ends() {
        // Tracing the child alone: the parent's own records stay out, but the
        // revocation of the parent, which ended the child too, is shown.
        let log = vec![
            issued("n", 1, 100, "parent", None),
            call("n", 2, 110, "parent"),
            issued("n", 3, 120, "child", Some("parent")),
            call("n", 4, 130, "child"),
            rec(
                "n",
                5,
                140,
                AuditKind::TaskRevoked,
                json!({"task_id": "parent", "ended": ["parent", "child"]}),
            ),
        ];
        let trace = trace("child", &log).unwrap();
        assert_eq!(trace.root.parent_task_id(), Some("parent"));
        assert_eq!(
            seqs(&trace.root),
            vec![("n".into(), 4, "subject"), ("n".into(), 5, "affected")]
        );
        assert_eq!(trace.records, 3);
    }

    #[test]
    fn a_task_whose_issuance_is_missing_is_still_traced() {
        // The log lost the issuance (or it predates a pruning): the calls and
        // the refused delegation attempt still form the trace.
        let log = vec![
            call("n", 2, 110, "t"),
            rec(
                "n",
                3,
                120,
                AuditKind::TokenRefused,
                json!({"error": "invalid_authorization_details", "parent_task_id": "t"}),
            ),
            rec(
                "n",
                4,
                130,
                AuditKind::TokenRejected,
                json!({"claimed": {"task_id": "t", "verified": false}}),
            ),
        ];
        let trace = trace("t", &log).unwrap();
        assert!(trace.root.issuance.is_none());
        assert_eq!(trace.root.agent(), None);
        assert_eq!(trace.root.expires_us(), None);
        assert_eq!(
            seqs(&trace.root),
            vec![
                ("n".into(), 2, "subject"),
                ("n".into(), 3, "parent"),
                ("n".into(), 4, "claimed"),
            ]
        );
        assert!(trace.root.end().is_none());
    }

    #[test]
    fn records_that_only_quote_the_id_are_not_kept() {
        let mut builder = TraceBuilder::new("t");
        builder.add(
            "t",
            [
                call("n", 1, 100, "t"),
                rec("n", 2, 110, AuditKind::Decision, json!({"reason": "t"})),
                call("n", 3, 120, "t-other"),
            ],
        );
        assert_eq!(builder.records.len(), 1);
        assert_eq!(builder.build().unwrap().records, 1);
    }

    #[test]
    fn an_unknown_task_is_an_error() {
        let log = vec![issued("n", 1, 100, "t", None), call("n", 2, 110, "t")];
        assert_eq!(
            trace("task-nope", &log),
            Err(TraceError::UnknownTask {
                task_id: "task-nope".into()
            })
        );
        // A record that only contains the ID as text elsewhere is not enough.
        let log = vec![rec(
            "n",
            1,
            100,
            AuditKind::Decision,
            json!({"reason": "mentions task-x in passing"}),
        )];
        assert!(trace("task-x", &log).is_err());
    }

    #[test]
    fn records_found_twice_count_once_and_a_parent_cycle_terminates() {
        // A tampered log where two tasks name each other as parent.
        let log = vec![
            issued("n", 1, 100, "a", Some("b")),
            issued("n", 2, 110, "b", Some("a")),
            call("n", 3, 120, "a"),
        ];
        let trace = trace("a", &log).unwrap();
        let ids: Vec<&str> = trace
            .root
            .tasks()
            .iter()
            .map(|t| t.task_id.as_str())
            .collect();
        assert_eq!(ids, vec!["a", "b"]);
        assert_eq!(trace.records, 3);
    }

    #[test]
    fn the_expiry_is_read_in_seconds_and_given_in_microseconds() {
        let trace = trace("t", &[issued("n", 1, 100, "t", None)]).unwrap();
        assert_eq!(trace.root.expires_us(), Some(1_700_000_300_000_000));
        assert_eq!(trace.root.issued_us(), Some(100));
        assert_eq!(trace.root.grant().unwrap()["purpose"], "p");
    }
}
