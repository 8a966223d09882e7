//! What bounds an agent's calls beyond the Cedar decision: its rate and
//! concurrency on this node, its tasks' call budgets (in the store, so that
//! every node counts against the same budget), the data labels its delegation
//! tree has touched, and the kill switch that cuts its in-flight calls.
//!
//! The MCP gateway and the HTTP reverse proxy go through the same steps:
//! [`Governor::session_labels`] before deciding, [`Governor::enter`] and
//! [`Governor::count_call`] once allowed, [`Governor::add_labels`] before the
//! answer is relayed, and [`CallSlot::killed`] before relaying it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mandate_core::{AuditKind, Decision, TokenBucket};
use mandate_store::{BudgetOutcome, Store, StoreError};
use mandate_tokens::{TaskClaims, TaskGrant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::config::Config;

/// Cached entries kept per map before the map is emptied: the store holds
/// the truth, so forgetting only costs a read.
const CACHE_LIMIT: usize = 100_000;

/// Why a call that policy allowed may still not go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Limited {
    /// The agent called faster than `agent_rate_per_second`.
    Rate {
        /// When a call would fit again.
        retry_after: Duration,
    },
    /// The agent already has `limit` calls in flight.
    Concurrency {
        /// `agent_max_concurrent_calls`.
        limit: u32,
    },
    /// The call budget of the task, or of one of its ancestors, is spent.
    BudgetSpent {
        /// The task whose budget is spent.
        task_id: String,
        /// Its budget.
        max_calls: u64,
    },
    /// The agent was killed while the call was in flight.
    Killed,
}

impl Limited {
    /// The machine-readable reason, as in JSON-RPC error data, HTTP error
    /// bodies and audit records.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Limited::Rate { .. } => "rate_limited",
            Limited::Concurrency { .. } => "concurrency_limit",
            Limited::BudgetSpent { .. } => "budget_exhausted",
            Limited::Killed => "agent_killed",
        }
    }

    /// One sentence for the agent.
    pub(crate) fn message(&self) -> String {
        match self {
            Limited::Rate { retry_after } => format!(
                "rate limit: this agent calls faster than allowed; retry in {} ms",
                retry_after.as_millis().max(1)
            ),
            Limited::Concurrency { limit } => {
                format!("concurrency limit: this agent already has {limit} calls in flight")
            }
            Limited::BudgetSpent { task_id, max_calls } => {
                format!("call budget exhausted: task {task_id} may make {max_calls} calls")
            }
            Limited::Killed => "the agent was killed; its calls are cut off".to_owned(),
        }
    }
}

/// One agent's limits on this node.
struct AgentGate {
    bucket: Mutex<TokenBucket>,
    in_flight: Arc<Semaphore>,
    /// Bumped by every kill; a slot taken before a bump is cut off.
    kills: watch::Sender<u64>,
}

/// A call in flight: holds one of the agent's concurrency places until dropped.
pub(crate) struct CallSlot {
    _place: OwnedSemaphorePermit,
    kills: watch::Receiver<u64>,
    generation: u64,
}

impl CallSlot {
    /// Whether the agent was killed since this call started.
    pub(crate) fn killed(&self) -> bool {
        *self.kills.borrow() != self.generation
    }

    /// Resolves once the agent is killed (never, if it is not).
    pub(crate) async fn until_killed(&mut self) {
        let generation = self.generation;
        if self.kills.wait_for(|g| *g != generation).await.is_err() {
            // The governor is gone (shutdown): nothing can kill any more.
            std::future::pending::<()>().await;
        }
    }
}

/// Blast-radius limits and session state of one node.
pub(crate) struct Governor {
    rate: u32,
    burst: u32,
    max_in_flight: u32,
    epoch: Instant,
    agents: Mutex<HashMap<String, Arc<AgentGate>>>,
    /// Labels per root task: a cache of the store's `session_labels`.
    labels: Mutex<HashMap<String, Arc<Vec<String>>>>,
    /// `max_calls` of ancestor tasks (a grant never changes).
    budgets: Mutex<HashMap<String, Option<u64>>>,
}

impl std::fmt::Debug for Governor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Governor")
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The root of `claims`' delegation tree: the session its labels belong to.
pub(crate) fn root_task(claims: &TaskClaims) -> &str {
    claims
        .task_chain
        .first()
        .map_or(claims.task_id.as_str(), String::as_str)
}

impl Governor {
    /// The limits of `config`.
    pub(crate) fn new(config: &Config) -> Governor {
        Governor {
            rate: config.agent_rate_per_second,
            burst: config.agent_rate_burst,
            max_in_flight: config.agent_max_concurrent_calls,
            epoch: Instant::now(),
            agents: Mutex::new(HashMap::new()),
            labels: Mutex::new(HashMap::new()),
            budgets: Mutex::new(HashMap::new()),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn gate(&self, agent: &str) -> Arc<AgentGate> {
        let mut agents = lock(&self.agents);
        if let Some(gate) = agents.get(agent) {
            return Arc::clone(gate);
        }
        let gate = Arc::new(AgentGate {
            bucket: Mutex::new(TokenBucket::new(self.rate, self.burst, self.now_us())),
            in_flight: Arc::new(Semaphore::new(self.max_in_flight as usize)),
            kills: watch::Sender::new(0),
        });
        agents.insert(agent.to_owned(), Arc::clone(&gate));
        gate
    }

    /// Takes a place for one call of `agent` (SPIFFE ID): within its rate,
    /// and below its concurrency cap. The place is held until the slot drops.
    pub(crate) fn enter(&self, agent: &str) -> Result<CallSlot, Limited> {
        let gate = self.gate(agent);
        let place = Arc::clone(&gate.in_flight)
            .try_acquire_owned()
            .map_err(|_| Limited::Concurrency {
                limit: self.max_in_flight,
            })?;
        lock(&gate.bucket)
            .try_take(self.now_us())
            .map_err(|retry_after| Limited::Rate { retry_after })?;
        let kills = gate.kills.subscribe();
        let generation = *kills.borrow();
        Ok(CallSlot {
            _place: place,
            kills,
            generation,
        })
    }

    /// Cuts off every call of `agent` in flight on this node.
    pub(crate) fn kill(&self, agent: &str) {
        self.gate(agent).kills.send_modify(|g| *g += 1);
    }

    /// Counts one call against the budget of `claims`' task and of every
    /// ancestor that has one. Tasks without budgets cost nothing here.
    pub(crate) async fn count_call(
        &self,
        store: &dyn Store,
        claims: &TaskClaims,
    ) -> Result<Result<(), Limited>, StoreError> {
        let mut budgets = Vec::new();
        if let Some(max) = claims.grant().max_calls {
            budgets.push((claims.task_id.clone(), max));
        }
        for ancestor in &claims.task_chain {
            if let Some(max) = self.ancestor_budget(store, ancestor).await? {
                budgets.push((ancestor.clone(), max));
            }
        }
        if budgets.is_empty() {
            return Ok(Ok(()));
        }
        Ok(match store.count_call(&budgets).await? {
            BudgetOutcome::Counted { .. } => Ok(()),
            BudgetOutcome::Spent { task_id, max_calls } => {
                Err(Limited::BudgetSpent { task_id, max_calls })
            }
        })
    }

    async fn ancestor_budget(
        &self,
        store: &dyn Store,
        task_id: &str,
    ) -> Result<Option<u64>, StoreError> {
        if let Some(known) = lock(&self.budgets).get(task_id) {
            return Ok(*known);
        }
        // A missing or unreadable ancestor cannot be checked: fail closed
        // with a budget of nothing rather than an unlimited one.
        let max = match store.task(task_id).await? {
            Some(task) => match serde_json::from_str::<TaskGrant>(&task.grant_json) {
                Ok(grant) => grant.max_calls,
                Err(_) => Some(0),
            },
            None => Some(0),
        };
        let mut budgets = lock(&self.budgets);
        if budgets.len() >= CACHE_LIMIT {
            budgets.clear();
        }
        budgets.insert(task_id.to_owned(), max);
        Ok(max)
    }

    /// The labels the delegation tree rooted at `root` has touched, sorted.
    /// From this node's cache, or from the store when `fresh` (labels added
    /// through other nodes are then seen too) or when not cached.
    pub(crate) async fn session_labels(
        &self,
        store: &dyn Store,
        root: &str,
        fresh: bool,
    ) -> Result<Arc<Vec<String>>, StoreError> {
        if !fresh && let Some(labels) = lock(&self.labels).get(root) {
            return Ok(Arc::clone(labels));
        }
        let stored = Arc::new(store.session_labels(root).await?);
        let mut cache = lock(&self.labels);
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        // Labels only grow: keep whichever view has more.
        let entry = cache
            .entry(root.to_owned())
            .or_insert_with(|| Arc::clone(&stored));
        if stored.len() > entry.len() {
            *entry = Arc::clone(&stored);
        }
        Ok(Arc::clone(entry))
    }

    /// Records that the tree rooted at `root` touched `labels` (normalized):
    /// durably, before the data they describe reaches the agent. Returns the
    /// labels that were new to this node.
    pub(crate) async fn add_labels(
        &self,
        store: &dyn Store,
        root: &str,
        labels: &[String],
        now_us: i64,
    ) -> Result<Vec<String>, StoreError> {
        if labels.is_empty() {
            return Ok(Vec::new());
        }
        let known = self.session_labels(store, root, false).await?;
        let new: Vec<String> = labels
            .iter()
            .filter(|l| known.binary_search(l).is_err())
            .cloned()
            .collect();
        if new.is_empty() {
            return Ok(new);
        }
        store.add_session_labels(root, &new, now_us).await?;
        let mut cache = lock(&self.labels);
        let entry = cache
            .entry(root.to_owned())
            .or_insert_with(|| Arc::new(Vec::new()));
        let mut merged: Vec<String> = entry.iter().chain(new.iter()).cloned().collect();
        merged.sort();
        merged.dedup();
        *entry = Arc::new(merged);
        Ok(new)
    }
}

/// Whether `claims` still stand: no task of its lineage ended and every agent
/// of its chain active. Checked again before an answer is relayed, so that a
/// kill or a revocation (here, or through another node once synced) also
/// stops calls that were already on their way.
pub(crate) fn still_authorized(
    authority: &crate::authority::Authority,
    claims: &TaskClaims,
) -> bool {
    !claims.task_lineage().any(|task| authority.is_ended(task))
        && crate::authority::agents_in_chain(claims)
            .into_iter()
            .all(|agent| authority.check_active(agent).is_ok())
}

/// Which part of a call's security state could not be read or written. The
/// call then fails closed: nothing is decided, or its result is withheld.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateFailure {
    /// The session labels, before deciding.
    Session,
    /// The approval queue, for a held call.
    Approvals,
    /// The call budget, before calling.
    Budget,
    /// The session labels, after calling.
    Labels,
}

impl StateFailure {
    /// One sentence for the agent.
    pub(crate) fn message(self) -> &'static str {
        match self {
            StateFailure::Session => {
                "the task's session state cannot be read, so nothing is decided"
            }
            StateFailure::Approvals => {
                "the approval queue cannot be used, so the held call is not made"
            }
            StateFailure::Budget => {
                "the task's call budget cannot be counted, so the call is not made"
            }
            StateFailure::Labels => {
                "the call was made but the labels of its result cannot be recorded; its result is withheld"
            }
        }
    }

    /// Logs `error` as the cause.
    pub(crate) fn log(self, error: &dyn std::fmt::Display) {
        tracing::error!(error = %error, failure = ?self, "call state unavailable");
    }
}

/// Why a governed call did not go ahead: for the agent, the audit record and
/// the metrics. The MCP gateway answers it as a JSON-RPC error, the proxy as
/// an HTTP 403 (429 for rate and concurrency limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallRefusal {
    /// Machine-readable: a policy's `@reason` word (`drift`, ...), the
    /// decision's code (`no_permit`, `forbidden`, `invalid_request`), a
    /// [`Limited::reason`] or an approval's end (`approval_denied`,
    /// `approval_expired`, `approval_cancelled`).
    pub(crate) reason: String,
    /// One sentence for the agent.
    pub(crate) message: String,
    /// The policies that decided, if policy did.
    pub(crate) policies: Vec<String>,
    /// Whether the call left its task's declared scope.
    pub(crate) drift: bool,
}

impl CallRefusal {
    /// The refusal of a deny decision.
    pub(crate) fn of_decision(decision: &Decision) -> CallRefusal {
        let drift = decision.has_tag(DRIFT);
        let reason = decision
            .tags
            .first()
            .cloned()
            .unwrap_or_else(|| decision.reason.code().to_owned());
        let message = if drift {
            format!(
                "drift: this call is outside the task's declared scope; a new objective needs a new task ({})",
                decision.explain()
            )
        } else {
            format!("denied by policy: {}", decision.explain())
        };
        CallRefusal {
            reason,
            message,
            policies: decision.policies.clone(),
            drift,
        }
    }

    /// The refusal of a limit.
    pub(crate) fn of_limit(limit: &Limited) -> CallRefusal {
        CallRefusal {
            reason: limit.reason().to_owned(),
            message: limit.message(),
            policies: Vec::new(),
            drift: false,
        }
    }

    /// The refusal of a held call that was not approved.
    pub(crate) fn of_hold(reason: &str, message: String, policies: &[String]) -> CallRefusal {
        CallRefusal {
            reason: reason.to_owned(),
            message,
            policies: policies.to_vec(),
            drift: false,
        }
    }

    /// `drift` for a call that left its task, else `decision`.
    pub(crate) fn audit_kind(&self) -> AuditKind {
        if self.drift {
            AuditKind::Drift
        } else {
            AuditKind::Decision
        }
    }

    /// Counts the refusal (and the drift, per agent).
    pub(crate) fn count(&self, agent: &str, endpoint: &'static str) {
        ::metrics::counter!(crate::metrics::CALLS_REFUSED, "reason" => self.reason.clone(), "endpoint" => endpoint)
            .increment(1);
        if self.drift {
            ::metrics::counter!(crate::metrics::DRIFT, "agent" => agent.to_owned()).increment(1);
        }
    }

    /// The `data` of the JSON-RPC error, and the body of the proxy's 403.
    pub(crate) fn data(&self) -> serde_json::Value {
        serde_json::json!({
            "reason": self.reason,
            "policies": self.policies,
            "explanation": self.message,
        })
    }
}

/// The `@reason` word of the baseline's intent-binding rule.
pub(crate) const DRIFT: &str = "drift";

#[cfg(test)]
mod tests {
    use super::*;

    fn governor(rate: u32, burst: u32, in_flight: u32) -> Governor {
        Governor::new(&Config {
            agent_rate_per_second: rate,
            agent_rate_burst: burst,
            agent_max_concurrent_calls: in_flight,
            ..Config::default()
        })
    }

    #[test]
    fn concurrency_is_capped_per_agent_and_freed_when_a_call_ends() {
        let g = governor(1000, 1000, 2);
        let a = g.enter("spiffe://t/agent/a").unwrap();
        let _b = g.enter("spiffe://t/agent/a").unwrap();
        assert_eq!(
            g.enter("spiffe://t/agent/a").err(),
            Some(Limited::Concurrency { limit: 2 })
        );
        // Another agent has its own places.
        assert!(g.enter("spiffe://t/agent/b").is_ok());
        drop(a);
        assert!(g.enter("spiffe://t/agent/a").is_ok());
    }

    #[test]
    fn the_rate_is_per_agent() {
        let g = governor(1, 2, 100);
        let _one = g.enter("a").unwrap();
        let _two = g.enter("a").unwrap();
        let Err(Limited::Rate { retry_after }) = g.enter("a") else {
            panic!("the third call in a burst of two must be refused");
        };
        assert!(retry_after <= Duration::from_secs(1));
        assert!(g.enter("b").is_ok());
    }

    #[tokio::test]
    async fn a_kill_cuts_calls_in_flight_but_not_later_ones() {
        let g = governor(1000, 1000, 10);
        let mut before = g.enter("a").unwrap();
        let other = g.enter("b").unwrap();
        assert!(!before.killed());
        g.kill("a");
        assert!(before.killed());
        tokio::time::timeout(Duration::from_secs(1), before.until_killed())
            .await
            .expect("a killed slot resolves at once");
        assert!(!other.killed());
        // The kill itself is the agent's suspension's job; a slot taken after
        // it is not cut by the earlier kill.
        assert!(!g.enter("a").unwrap().killed());
    }

    #[test]
    fn limits_explain_themselves() {
        let spent = Limited::BudgetSpent {
            task_id: "t1".into(),
            max_calls: 10,
        };
        assert_eq!(spent.reason(), "budget_exhausted");
        assert_eq!(
            spent.message(),
            "call budget exhausted: task t1 may make 10 calls"
        );
        assert_eq!(Limited::Killed.reason(), "agent_killed");
        assert_eq!(
            Limited::Concurrency { limit: 3 }.reason(),
            "concurrency_limit"
        );
    }
}
