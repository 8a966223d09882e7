//! Calls held for a person's approval.
//!
//! Policy marks calls that need a person (`@approval("why")` on a forbid
//! policy). The gateway holds such a call here: the hold is audited, stored
//! as `pending`, announced to the webhook, and the call waits until an
//! administrator approves or denies it, its time runs out (then it is
//! denied), or its agent is killed. An approval covers that one call (task,
//! action, resource and argument digest) and is spent by it.
//!
//! Every change of state is a compare-and-set in the store, so two approvers,
//! an approver and the timeout, or two nodes can never both win, and every
//! step is in the audit log before it takes effect. Waiters on this node are
//! woken at once; decisions made through another node sharing the store are
//! seen by polling it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mandate_core::{AuditEvent, AuditKind};
use mandate_store::{
    ApprovalDecision, ApprovalRecord, ApprovalState, AuditError, AuditLog, Store, StoreError,
};
use serde_json::{Value, json};
use tokio::sync::Notify;

pub(crate) use crate::admin::rfc3339;
use crate::approval_webhook::Webhook;
use crate::issuance::{agent_uid, uid};
use crate::routes::now_us;

/// Who expires a hold nobody decided in time.
pub(crate) const TIMEOUT: &str = "Mandate::\"timeout\"";
/// Who cancels the holds of a killed agent.
pub(crate) const AGENT_KILL: &str = "Mandate::\"agent_kill\"";
/// Who withdraws a hold whose call went away (the client disconnected or
/// the request timed out) before it ran.
pub(crate) const CALL_GONE: &str = "Mandate::\"call_gone\"";

/// A call policy wants a person to look at.
#[derive(Debug, Clone)]
pub(crate) struct HoldRequest {
    /// SPIFFE ID of the calling agent.
    pub(crate) agent: String,
    /// Its registered name.
    pub(crate) agent_name: String,
    /// The task whose token made the call.
    pub(crate) task_id: String,
    /// That task's ancestors, root first; empty for a root task.
    pub(crate) task_chain: Vec<String>,
    /// `mcp`, `proxy` or `authzen`.
    pub(crate) endpoint: &'static str,
    /// The upstream it is for (empty for AuthZEN).
    pub(crate) upstream: String,
    /// The Cedar action, `Action::"call"`.
    pub(crate) action: String,
    /// The Cedar resource, `Tool::"files.write_file"`.
    pub(crate) resource: String,
    /// Keyed digest (hex) of the call's arguments: the approval covers
    /// exactly these.
    pub(crate) argument_digest: String,
    /// The task's declared purpose, for the person deciding.
    pub(crate) purpose: String,
    /// The texts of the `@approval` annotations that matched.
    pub(crate) reasons: Vec<String>,
    /// Their policy IDs.
    pub(crate) policies: Vec<String>,
    /// The request ID, for the audit records.
    pub(crate) request_id: String,
}

/// How a held call ended. Only `Approved` lets it run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HoldOutcome {
    /// A person approved it, and this call has spent the approval.
    Approved {
        /// The hold.
        id: String,
        /// The approver's name (`alice`).
        approver: String,
    },
    /// A person refused it.
    Denied {
        /// The hold.
        id: String,
        /// The approver's name.
        approver: String,
        /// What they wrote.
        note: Option<String>,
    },
    /// Nobody decided in time.
    Expired {
        /// The hold.
        id: String,
    },
    /// Withdrawn before a decision (the agent was killed).
    Cancelled {
        /// The hold.
        id: String,
        /// Why.
        why: String,
    },
}

/// What an AuthZEN caller learns about a held call. Never waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PollOutcome {
    /// An approval for exactly this call existed and this check spent it.
    Consumed {
        /// The hold.
        id: String,
        /// The approver's name.
        approver: String,
    },
    /// A person has yet to decide; ask again with the same call.
    Pending {
        /// The hold to poll.
        id: String,
        /// When it expires (microseconds since the epoch).
        expires_us: i64,
    },
}

/// A step on a hold could not be taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApprovalError {
    /// No hold has this ID.
    #[error("no approval {id:?}")]
    NotFound {
        /// The ID asked for.
        id: String,
    },
    /// The hold was already decided, used, withdrawn or has expired.
    #[error("approval {id:?} is {state}: only a pending approval can be decided")]
    NotPending {
        /// The hold.
        id: String,
        /// Where it is now (`expired` also for a pending hold whose time is up).
        state: ApprovalState,
    },
    /// The store could not be read or written.
    #[error("the approvals store cannot be used")]
    Store(#[from] StoreError),
    /// The step could not be recorded, so it was not taken.
    #[error("the audit log cannot be written, so the approval step was not taken")]
    Audit(#[from] AuditError),
    /// No ID could be made.
    #[error("no randomness for an approval ID: {0}")]
    Randomness(String),
}

/// How holds behave on this node.
#[derive(Debug)]
pub(crate) struct ApprovalSettings {
    /// How long a hold waits for a person before it is denied.
    pub(crate) timeout: Duration,
    /// How often a waiting call re-reads its hold (decisions made on other
    /// nodes) and expired holds are swept.
    pub(crate) poll: Duration,
    /// Where new holds are announced, if anywhere.
    pub(crate) webhook: Option<Webhook>,
    /// The base URL the webhook's links point at (the admin API).
    pub(crate) links_base: String,
}

/// Waiters on this node, by hold ID.
type Waiters = Arc<Mutex<HashMap<String, Arc<Notify>>>>;

/// The approvals queue of a node.
pub(crate) struct Approvals {
    store: Arc<dyn Store>,
    audit: AuditLog,
    http: reqwest::Client,
    timeout: Duration,
    poll: Duration,
    webhook: Option<Arc<Webhook>>,
    links_base: Arc<str>,
    waiters: Waiters,
    /// Serializes AuthZEN checks on this node, so two identical checks at
    /// once open one hold, not two.
    opening: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("timeout", &self.timeout)
            .field("webhook", &self.webhook)
            .finish_non_exhaustive()
    }
}

impl Approvals {
    /// The queue over `store`, recording to `audit`, announcing through
    /// `http` (a client that follows no redirects).
    pub(crate) fn new(
        store: Arc<dyn Store>,
        audit: AuditLog,
        http: reqwest::Client,
        settings: ApprovalSettings,
    ) -> Approvals {
        Approvals {
            store,
            audit,
            http,
            timeout: settings.timeout,
            poll: settings.poll,
            webhook: settings.webhook.map(Arc::new),
            links_base: settings.links_base.trim_end_matches('/').into(),
            waiters: Arc::default(),
            opening: tokio::sync::Mutex::new(()),
        }
    }

    /// How long a hold waits for a person.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// For the MCP gateway and the proxy: opens a pending hold (audited
    /// `approval_requested`, announced in the background) and waits for its
    /// end. An approved hold is spent (`used`, audited) by this call before
    /// `Approved` is returned. If this future is dropped before the end
    /// (the client went away), the hold is withdrawn, so nobody approves a
    /// call that will never run.
    pub(crate) async fn hold(&self, req: HoldRequest) -> Result<HoldOutcome, ApprovalError> {
        let record = self.new_hold(&req)?;
        let notify = Arc::new(Notify::new());
        lock(&self.waiters).insert(record.id.clone(), Arc::clone(&notify));
        // Armed before the hold is stored: dropped mid-way, a hold that did
        // get stored is withdrawn all the same.
        let mut guard = Withdraw {
            store: Arc::clone(&self.store),
            audit: self.audit.clone(),
            waiters: Arc::clone(&self.waiters),
            id: record.id.clone(),
            request_id: req.request_id.clone(),
            armed: true,
        };
        self.open(&record, &req.request_id).await?;
        let outcome = self.wait(&record.id, &req.request_id, &notify).await;
        // On an error the hold is withdrawn like an abandoned one: the call
        // does not run, so its approval must not stay usable.
        guard.armed = outcome.is_err();
        outcome
    }

    /// For AuthZEN: spends an approved, unused approval of exactly this call
    /// (task, action, resource, argument digest) if there is one; otherwise
    /// reports the pending hold of this call, opening one if there is none.
    pub(crate) async fn check_or_open(
        &self,
        req: HoldRequest,
    ) -> Result<PollOutcome, ApprovalError> {
        let _one_at_a_time = self.opening.lock().await;
        let holds = self
            .store
            .approvals_for_call(
                &req.task_id,
                &req.action,
                &req.resource,
                &req.argument_digest,
            )
            .await?;
        for hold in holds.iter().filter(|h| h.state == ApprovalState::Approved) {
            if let Some(used) = self
                .store
                .close_approval(&hold.id, ApprovalState::Used, now_us())
                .await?
            {
                self.record_used(&used, &req.request_id).await?;
                return Ok(PollOutcome::Consumed {
                    approver: approver_name(&used),
                    id: used.id,
                });
            }
        }
        let now = now_us();
        if let Some(pending) = holds
            .iter()
            .find(|h| h.state == ApprovalState::Pending && h.expires_us > now)
        {
            return Ok(PollOutcome::Pending {
                id: pending.id.clone(),
                expires_us: pending.expires_us,
            });
        }
        let opened = self.new_hold(&req)?;
        self.open(&opened, &req.request_id).await?;
        Ok(PollOutcome::Pending {
            id: opened.id,
            expires_us: opened.expires_us,
        })
    }

    /// For the kill switch: withdraws every pending or approved-but-unused
    /// hold of the agent `agent_spiffe_id`, or of a task in `task_ids`, or of
    /// a task delegated from one of them; each is audited and its waiter
    /// woken. Returns how many were withdrawn.
    pub(crate) async fn cancel_for_agent(
        &self,
        agent_spiffe_id: &str,
        task_ids: &[String],
        why: &str,
    ) -> Result<usize, ApprovalError> {
        let tasks: HashSet<&str> = task_ids.iter().map(String::as_str).collect();
        let concerns = |hold: &ApprovalRecord| {
            hold.agent == agent_spiffe_id
                || tasks.contains(hold.task_id.as_str())
                || tasks.contains(hold.root_task_id.as_str())
                || hold.task_chain.iter().any(|t| tasks.contains(t.as_str()))
        };
        let mut cancelled = 0;
        for state in [ApprovalState::Pending, ApprovalState::Approved] {
            let holds = self.store.approvals(Some(state), u32::MAX).await?;
            for hold in holds.iter().filter(|h| concerns(h)) {
                let now = now_us();
                let withdrawn = match state {
                    ApprovalState::Pending => {
                        self.store
                            .decide_approval(
                                &hold.id,
                                &ApprovalDecision {
                                    state: ApprovalState::Cancelled,
                                    at_us: now,
                                    by: AGENT_KILL.to_owned(),
                                    note: Some(why.to_owned()),
                                    before_expiry: false,
                                },
                            )
                            .await?
                    }
                    _ => {
                        self.store
                            .close_approval(&hold.id, ApprovalState::Cancelled, now)
                            .await?
                    }
                };
                if let Some(withdrawn) = withdrawn {
                    let event = decided_event(&withdrawn, AGENT_KILL, "", Some(why));
                    self.audit.append(vec![event]).await?;
                    wake(&self.waiters, &withdrawn.id);
                    cancelled += 1;
                }
            }
        }
        Ok(cancelled)
    }

    /// For the admin API: a person (`approver`, the name of their admin
    /// credential) approves or denies pending hold `id`. The decision is
    /// refused once the hold has left `pending` or its time is up. If it
    /// cannot be recorded, an approval is withdrawn again (the call does not
    /// run) and the error says so; a denial stands.
    pub(crate) async fn decide(
        &self,
        id: &str,
        approve: bool,
        approver: &str,
        note: Option<String>,
        request_id: &str,
    ) -> Result<ApprovalRecord, ApprovalError> {
        let by = uid("Admin", approver).to_string();
        let state = if approve {
            ApprovalState::Approved
        } else {
            ApprovalState::Denied
        };
        let decision = ApprovalDecision {
            state,
            at_us: now_us(),
            by: by.clone(),
            note,
            before_expiry: true,
        };
        let Some(decided) = self.store.decide_approval(id, &decision).await? else {
            return Err(match self.store.approval(id).await? {
                None => ApprovalError::NotFound { id: id.to_owned() },
                Some(hold) => ApprovalError::NotPending {
                    id: id.to_owned(),
                    // Pending in the store, but too late: the sweep will say so.
                    state: match hold.state {
                        ApprovalState::Pending => ApprovalState::Expired,
                        other => other,
                    },
                },
            });
        };
        let event = decided_event(&decided, &by, request_id, None);
        if let Err(error) = self.audit.append(vec![event]).await {
            if approve {
                let _ = self
                    .store
                    .close_approval(id, ApprovalState::Cancelled, now_us())
                    .await;
            }
            wake(&self.waiters, id);
            return Err(error.into());
        }
        wake(&self.waiters, id);
        Ok(decided)
    }

    /// Expires every pending hold whose time is up (those whose waiter went
    /// away with its node, and AuthZEN holds, which nobody waits on).
    pub(crate) async fn sweep(&self) -> Result<usize, ApprovalError> {
        let expired = self.store.expire_approvals(now_us(), TIMEOUT).await?;
        for hold in &expired {
            let event = decided_event(hold, TIMEOUT, "", None);
            if let Err(error) = self.audit.append(vec![event]).await {
                // The hold denies either way; the record is what is missing.
                tracing::error!(approval = %hold.id, %error, "the expiry of an approval could not be recorded");
            }
            wake(&self.waiters, &hold.id);
        }
        Ok(expired.len())
    }

    /// Sweeps every second until aborted.
    pub(crate) fn spawn_sweeper(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let approvals = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(approvals.poll.max(Duration::from_secs(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(error) = approvals.sweep().await {
                    tracing::warn!(%error, "cannot sweep expired approvals");
                }
            }
        })
    }

    /// A new pending hold of `req`'s call, not yet stored.
    fn new_hold(&self, req: &HoldRequest) -> Result<ApprovalRecord, ApprovalError> {
        let now = now_us();
        let timeout_us = i64::try_from(self.timeout.as_micros()).unwrap_or(i64::MAX);
        let record = ApprovalRecord {
            id: new_id()?,
            task_id: req.task_id.clone(),
            root_task_id: req.task_chain.first().unwrap_or(&req.task_id).clone(),
            task_chain: req.task_chain.clone(),
            agent: req.agent.clone(),
            agent_name: req.agent_name.clone(),
            endpoint: req.endpoint.to_owned(),
            upstream: req.upstream.clone(),
            action: req.action.clone(),
            resource: req.resource.clone(),
            argument_digest: req.argument_digest.clone(),
            purpose: req.purpose.clone(),
            reasons: req.reasons.clone(),
            policies: req.policies.clone(),
            state: ApprovalState::Pending,
            created_us: now,
            expires_us: now.saturating_add(timeout_us),
            decided_us: None,
            decided_by: None,
            note: None,
            closed_us: None,
        };
        Ok(record)
    }

    /// Records and stores the new hold `record`, and announces it. The
    /// record comes first: a hold that cannot be audited is never opened.
    async fn open(&self, record: &ApprovalRecord, request_id: &str) -> Result<(), ApprovalError> {
        self.audit
            .append(vec![requested_event(record, request_id)])
            .await?;
        if let Err(error) = self.store.insert_approval(record).await {
            // The request is on record; say that no hold came of it.
            let gone = ApprovalRecord {
                state: ApprovalState::Cancelled,
                ..record.clone()
            };
            let why = "the hold could not be stored";
            let _ = self
                .audit
                .append(vec![decided_event(
                    &gone,
                    "Mandate::\"store\"",
                    request_id,
                    Some(why),
                )])
                .await;
            return Err(error.into());
        }
        if let Some(webhook) = &self.webhook {
            let (webhook, http, base, hold) = (
                Arc::clone(webhook),
                self.http.clone(),
                Arc::clone(&self.links_base),
                record.clone(),
            );
            tokio::spawn(async move { webhook.announce(&http, &hold, &base).await });
        }
        Ok(())
    }

    /// Waits until hold `id` leaves `pending`, expiring it when its time is up.
    async fn wait(
        &self,
        id: &str,
        request_id: &str,
        notify: &Notify,
    ) -> Result<HoldOutcome, ApprovalError> {
        loop {
            let Some(hold) = self.store.approval(id).await? else {
                return Ok(HoldOutcome::Cancelled {
                    id: id.to_owned(),
                    why: "the hold is no longer in the store".to_owned(),
                });
            };
            let now = now_us();
            match hold.state {
                ApprovalState::Pending if now >= hold.expires_us => {
                    let decision = ApprovalDecision {
                        state: ApprovalState::Expired,
                        at_us: now,
                        by: TIMEOUT.to_owned(),
                        note: None,
                        before_expiry: false,
                    };
                    if let Some(expired) = self.store.decide_approval(id, &decision).await? {
                        let event = decided_event(&expired, TIMEOUT, request_id, None);
                        if let Err(error) = self.audit.append(vec![event]).await {
                            tracing::error!(approval = %id, %error, "the expiry of an approval could not be recorded");
                        }
                        return Ok(HoldOutcome::Expired { id: id.to_owned() });
                    }
                    // Decided at the last moment: read what.
                }
                ApprovalState::Pending => {
                    let left = u64::try_from(hold.expires_us - now).unwrap_or(0);
                    let nap = self.poll.min(Duration::from_micros(left));
                    tokio::select! {
                        () = notify.notified() => {}
                        () = tokio::time::sleep(nap) => {}
                    }
                }
                ApprovalState::Approved => {
                    if let Some(used) = self
                        .store
                        .close_approval(id, ApprovalState::Used, now_us())
                        .await?
                    {
                        self.record_used(&used, request_id).await?;
                        return Ok(HoldOutcome::Approved {
                            id: id.to_owned(),
                            approver: approver_name(&used),
                        });
                    }
                    // Withdrawn meanwhile: read how.
                }
                ApprovalState::Denied => {
                    return Ok(HoldOutcome::Denied {
                        id: id.to_owned(),
                        approver: approver_name(&hold),
                        note: hold.note,
                    });
                }
                ApprovalState::Expired => return Ok(HoldOutcome::Expired { id: id.to_owned() }),
                ApprovalState::Cancelled => {
                    let why = match (hold.closed_us, hold.note) {
                        (Some(_), _) => "the approval was withdrawn before the call ran".to_owned(),
                        (None, Some(note)) => note,
                        (None, None) => "cancelled".to_owned(),
                    };
                    return Ok(HoldOutcome::Cancelled {
                        id: id.to_owned(),
                        why,
                    });
                }
                // Only this call spends its hold; anything else is not ours.
                ApprovalState::Used => {
                    return Ok(HoldOutcome::Cancelled {
                        id: id.to_owned(),
                        why: "the approval was already used".to_owned(),
                    });
                }
            }
        }
    }

    /// Records that `used` was spent by the agent's call. Fails closed: the
    /// caller must not run the call if this fails (the approval stays spent).
    async fn record_used(&self, used: &ApprovalRecord, request_id: &str) -> Result<(), AuditError> {
        let mut event = decided_event(used, &agent_uid(&used.agent).to_string(), request_id, None);
        event.outcome = ApprovalState::Used.as_str().to_owned();
        self.audit.append(vec![event]).await
    }
}

/// Withdraws an abandoned hold when dropped armed: the call that waited for
/// it will never run, so it must not be approved (or stay approved).
struct Withdraw {
    store: Arc<dyn Store>,
    audit: AuditLog,
    waiters: Waiters,
    id: String,
    request_id: String,
    armed: bool,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        lock(&self.waiters).remove(&self.id);
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, audit, id, request_id) = (
            Arc::clone(&self.store),
            self.audit.clone(),
            self.id.clone(),
            self.request_id.clone(),
        );
        runtime.spawn(async move {
            let why = "the call went away before it ran";
            let now = now_us();
            let decision = ApprovalDecision {
                state: ApprovalState::Cancelled,
                at_us: now,
                by: CALL_GONE.to_owned(),
                note: Some(why.to_owned()),
                before_expiry: false,
            };
            let withdrawn = match store.decide_approval(&id, &decision).await {
                Ok(Some(hold)) => Some(hold),
                Ok(None) => store
                    .close_approval(&id, ApprovalState::Cancelled, now)
                    .await
                    .ok()
                    .flatten(),
                Err(error) => {
                    tracing::error!(approval = %id, %error, "cannot withdraw an abandoned approval");
                    None
                }
            };
            if let Some(hold) = withdrawn {
                let event = decided_event(&hold, CALL_GONE, &request_id, Some(why));
                if let Err(error) = audit.append(vec![event]).await {
                    tracing::error!(approval = %id, %error, "the withdrawal of an approval could not be recorded");
                }
            }
        });
    }
}

fn lock(waiters: &Waiters) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
    waiters.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Wakes the call waiting on `id` on this node, if any.
fn wake(waiters: &Waiters, id: &str) {
    if let Some(notify) = lock(waiters).get(id) {
        notify.notify_one();
    }
}

/// A new hold ID: `apr_` and 128 random bits, base64url. Unguessable, so
/// knowing one hold's ID tells nothing about another's.
fn new_id() -> Result<String, ApprovalError> {
    use base64::Engine;
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| ApprovalError::Randomness(e.to_string()))?;
    Ok(format!(
        "apr_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The name of the person who decided `hold` (`alice` of `Admin::"alice"`),
/// or the whole reference for anyone else.
pub(crate) fn approver_name(hold: &ApprovalRecord) -> String {
    let by = hold.decided_by.as_deref().unwrap_or_default();
    by.strip_prefix("Admin::\"")
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(by)
        .to_owned()
}

/// What every approval record carries: the hold and the call it is about.
/// `task_id` places it in `mandate audit trace`.
fn hold_detail(hold: &ApprovalRecord) -> serde_json::Map<String, Value> {
    let detail = json!({
        "approval_id": hold.id,
        "task_id": hold.task_id,
        "root_task_id": hold.root_task_id,
        "agent": hold.agent,
        "agent_name": hold.agent_name,
        "endpoint": hold.endpoint,
        "upstream": hold.upstream,
    });
    match detail {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

fn requested_event(hold: &ApprovalRecord, request_id: &str) -> AuditEvent {
    let mut detail = hold_detail(hold);
    detail.insert("purpose".into(), json!(hold.purpose));
    detail.insert("reasons".into(), json!(hold.reasons));
    detail.insert("expires_at".into(), json!(rfc3339(hold.expires_us)));
    AuditEvent {
        time_us: now_us(),
        kind: AuditKind::ApprovalRequested,
        request_id: request_id.to_owned(),
        subject: agent_uid(&hold.agent).to_string(),
        action: hold.action.clone(),
        resource: hold.resource.clone(),
        outcome: "held".to_owned(),
        policies: hold.policies.clone(),
        request_digest: hold.argument_digest.clone(),
        detail: Value::Object(detail),
    }
}

/// The `approval_decided` record of `hold` in its new state, by `subject`.
fn decided_event(
    hold: &ApprovalRecord,
    subject: &str,
    request_id: &str,
    why: Option<&str>,
) -> AuditEvent {
    let mut detail = hold_detail(hold);
    let approver = hold
        .decided_by
        .as_deref()
        .filter(|by| by.starts_with("Admin::"))
        .map(|_| approver_name(hold));
    detail.insert("approver".into(), json!(approver));
    detail.insert("decided_by".into(), json!(hold.decided_by));
    detail.insert("note".into(), json!(why.or(hold.note.as_deref())));
    AuditEvent {
        time_us: now_us(),
        kind: AuditKind::ApprovalDecided,
        request_id: request_id.to_owned(),
        subject: subject.to_owned(),
        action: hold.action.clone(),
        resource: hold.resource.clone(),
        outcome: hold.state.as_str().to_owned(),
        policies: hold.policies.clone(),
        request_digest: hold.argument_digest.clone(),
        detail: Value::Object(detail),
    }
}

#[cfg(test)]
mod tests;
