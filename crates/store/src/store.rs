//! The `Store` trait that the server and the CLI hold as `Arc<dyn Store>`, and
//! `connect`, which picks the backend from a URL and brings its schema up to date.

use std::sync::Arc;

use mandate_core::{AuditRecord, ChainHead};

use crate::approvals::{ApprovalDecision, ApprovalRecord, ApprovalState};
use crate::error::StoreError;
use crate::identity::{
    AdminCredential, AgentRecord, AgentStatus, SigningKeyRecord, TaskRecord, TaskState,
};
use crate::postgres::PgStore;
use crate::secrets::SecretRecord;
use crate::sqlite::SqliteStore;

/// Durable state. Every method is one short transaction or query; callers
/// never see the SQL.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// The backend's name: `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stores `records` (sealed, contiguous, all of one node) and moves that
    /// node's chain head to the last of them with its `seal` (see
    /// `mandate_core::HeadSealer`; empty for none), in one transaction: either
    /// all of it lands or none of it does. An empty slice is a no-op.
    async fn append_audit(&self, records: &[AuditRecord], seal: &str) -> Result<(), StoreError>;

    /// Registers `node_id`'s empty chain (head at sequence 0) with its `seal`,
    /// so that the chain cannot later vanish unnoticed. Does nothing if the
    /// node already has a head.
    async fn register_audit_chain(&self, node_id: &str, seal: &str) -> Result<(), StoreError>;

    /// The head of `node_id`'s chain, or `None` if it has none.
    async fn audit_head(&self, node_id: &str) -> Result<Option<ChainHead>, StoreError>;

    /// The seal stored with `node_id`'s head (empty if written without one),
    /// or `None` if it has no head.
    async fn audit_head_seal(&self, node_id: &str) -> Result<Option<String>, StoreError>;

    /// Every node that has a chain head or records, sorted.
    async fn audit_nodes(&self) -> Result<Vec<String>, StoreError>;

    /// Up to `limit` records of `node_id` with `seq > after_seq`, ascending.
    async fn audit_page(
        &self,
        node_id: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError>;

    /// The newest `limit` records of all nodes by insertion, oldest first,
    /// each with its row ID (to continue from with [`Store::audit_after`]).
    async fn audit_latest(&self, limit: u32) -> Result<Vec<(i64, AuditRecord)>, StoreError>;

    /// Up to `limit` records inserted after row `row_id`, ascending.
    async fn audit_after(
        &self,
        row_id: i64,
        limit: u32,
    ) -> Result<Vec<(i64, AuditRecord)>, StoreError>;

    /// Up to `limit` records inserted before row `row_id`, newest first, each
    /// with its row ID (`i64::MAX` for the newest of the log).
    async fn audit_before(
        &self,
        row_id: i64,
        limit: u32,
    ) -> Result<Vec<(i64, AuditRecord)>, StoreError>;

    /// Up to `limit` records inserted after row `row_id` whose `detail`
    /// contains `needle` as text, ascending. A coarse filter (on SQLite it
    /// ignores ASCII case): callers look at the detail themselves.
    async fn audit_mentioning(
        &self,
        needle: &str,
        row_id: i64,
        limit: u32,
    ) -> Result<Vec<(i64, AuditRecord)>, StoreError>;

    /// Registers `agent`. If its name or SPIFFE ID is taken, fails with
    /// [`StoreError::Conflict`] and writes nothing.
    async fn create_agent(&self, agent: &AgentRecord) -> Result<(), StoreError>;

    /// The agent named `name`, or `None` if there is none.
    async fn agent(&self, name: &str) -> Result<Option<AgentRecord>, StoreError>;

    /// The agent with SPIFFE ID `spiffe_id`, or `None` if there is none.
    async fn agent_by_spiffe_id(&self, spiffe_id: &str) -> Result<Option<AgentRecord>, StoreError>;

    /// Every agent, sorted by name (byte order on both backends).
    async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError>;

    /// Sets the status of the agent named `name` and its `updated_us` to
    /// `at_us`; returns the agent as it now is, or `None` if there is none.
    async fn set_agent_status(
        &self,
        name: &str,
        status: AgentStatus,
        at_us: i64,
    ) -> Result<Option<AgentRecord>, StoreError>;

    /// Records a new key for the agent named `name` (the SHA-256 of its
    /// SubjectPublicKeyInfo) and makes `at_us` the time before which its
    /// tokens are refused. `None` if there is no such agent.
    async fn set_agent_key(
        &self,
        name: &str,
        key_sha256: &str,
        at_us: i64,
    ) -> Result<Option<AgentRecord>, StoreError>;

    /// Deletes the agent named `name`; `false` if there was none. Its tasks
    /// are kept.
    async fn delete_agent(&self, name: &str) -> Result<bool, StoreError>;

    /// Stores an administrator's credential; a taken ID is a
    /// [`StoreError::Conflict`].
    async fn insert_admin_credential(&self, credential: &AdminCredential)
    -> Result<(), StoreError>;

    /// Every administrator's credential, oldest first.
    async fn admin_credentials(&self) -> Result<Vec<AdminCredential>, StoreError>;

    /// Deletes the administrator's credential `id`; `false` if there was none.
    async fn delete_admin_credential(&self, id: &str) -> Result<bool, StoreError>;

    /// Publishes a node's signing key; a taken `kid` is a
    /// [`StoreError::Conflict`].
    async fn publish_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError>;

    /// Marks key `kid` retired at `at_us`; `false` if there is no such key or
    /// it was already retired (its retirement time is kept).
    async fn retire_signing_key(&self, kid: &str, at_us: i64) -> Result<bool, StoreError>;

    /// Every signing key, retired or not, oldest first (ties by `kid`).
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;

    /// Records an issued task. A taken task ID or token ID (`jti`) is a
    /// [`StoreError::Conflict`] and writes nothing.
    async fn insert_task(&self, task: &TaskRecord) -> Result<(), StoreError>;

    /// The task `task_id`, or `None` if there is none.
    async fn task(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError>;

    /// Ends those of `task_ids` that are still active: sets `state`
    /// (completed or revoked), `reason` and `at_us`, in one transaction.
    /// Returns the IDs it ended, in the order given, each once; tasks already
    /// ended or unknown are left alone, so repeating a call ends nothing.
    /// Any other `state` is [`StoreError::NotAnEndState`].
    async fn end_tasks(
        &self,
        task_ids: &[String],
        state: TaskState,
        reason: &str,
        at_us: i64,
    ) -> Result<Vec<String>, StoreError>;

    /// `task_id` and every task delegated from it, directly or not, in any
    /// state: the task first, then by depth and ID. Empty if there is no such
    /// task.
    async fn task_subtree(&self, task_id: &str) -> Result<Vec<String>, StoreError>;

    /// The IDs of tasks ended (completed or revoked) whose tokens have not
    /// expired by `now_us`: the set of tokens a node must refuse. Sorted.
    async fn ended_tasks_unexpired(&self, now_us: i64) -> Result<Vec<String>, StoreError>;

    /// Up to `limit` tasks issued at or after `since_us`, newest first (ties
    /// by ID), in any state.
    async fn tasks_issued_since(
        &self,
        since_us: i64,
        limit: u32,
    ) -> Result<Vec<TaskRecord>, StoreError>;

    /// The tasks held by the agent with SPIFFE ID `spiffe_id`, only the
    /// active ones if `active_only`, by issue time then ID.
    async fn tasks_of_agent(
        &self,
        spiffe_id: &str,
        active_only: bool,
    ) -> Result<Vec<TaskRecord>, StoreError>;

    /// Stores a new sealed secret. If its name is taken, fails with
    /// [`StoreError::Conflict`] and writes nothing.
    async fn put_secret(&self, secret: &SecretRecord) -> Result<(), StoreError>;

    /// Replaces the sealed value, kek ID and rotation time of the secret
    /// `secret.name` if its stored version is `secret.version - 1` (its
    /// creation time is kept). `false` if there is no such secret, or it is
    /// at another version (rotated meanwhile): nothing is written then.
    async fn replace_secret(&self, secret: &SecretRecord) -> Result<bool, StoreError>;

    /// The secret named `name`, or `None` if there is none.
    async fn secret(&self, name: &str) -> Result<Option<SecretRecord>, StoreError>;

    /// Every secret, sorted by name (byte order on both backends).
    async fn secrets(&self) -> Result<Vec<SecretRecord>, StoreError>;

    /// Deletes the secret named `name`; `false` if there was none.
    async fn delete_secret(&self, name: &str) -> Result<bool, StoreError>;

    /// Counts one call against the budget of every task in `budgets` (task ID
    /// and its `max_calls`), all or none, in one transaction: if any budget is
    /// spent, nothing is counted and that task is named.
    async fn count_call(
        &self,
        budgets: &[(String, u64)],
    ) -> Result<crate::session::BudgetOutcome, StoreError>;

    /// Adds `labels` to the session of the delegation tree rooted at
    /// `root_task_id` (labels already there are kept as they are).
    async fn add_session_labels(
        &self,
        root_task_id: &str,
        labels: &[String],
        at_us: i64,
    ) -> Result<(), StoreError>;

    /// The labels the delegation tree rooted at `root_task_id` has touched,
    /// sorted (byte order on both backends).
    async fn session_labels(&self, root_task_id: &str) -> Result<Vec<String>, StoreError>;

    /// Stores a newly held call. A taken ID is a [`StoreError::Conflict`].
    async fn insert_approval(&self, approval: &ApprovalRecord) -> Result<(), StoreError>;

    /// The held call `id`, or `None` if there is none.
    async fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError>;

    /// The newest `limit` held calls in `state` (in any state if `None`),
    /// oldest first (by creation time, then ID).
    async fn approvals(
        &self,
        state: Option<ApprovalState>,
        limit: u32,
    ) -> Result<Vec<ApprovalRecord>, StoreError>;

    /// Every hold of one call (its task, action, resource and argument
    /// digest), in any state, oldest first.
    async fn approvals_for_call(
        &self,
        task_id: &str,
        action: &str,
        resource: &str,
        argument_digest: &str,
    ) -> Result<Vec<ApprovalRecord>, StoreError>;

    /// Moves hold `id` from `pending` to `decision.state` (`approved`,
    /// `denied`, `expired` or `cancelled`), with who decided, when and their
    /// note; with `before_expiry`, only if it has not expired by then.
    /// Returns the hold as it now is, or `None` if it was not pending (or too
    /// late): of two racing decisions exactly one gets `Some`. Any other
    /// target state is [`StoreError::InvalidApprovalTransition`].
    async fn decide_approval(
        &self,
        id: &str,
        decision: &ApprovalDecision,
    ) -> Result<Option<ApprovalRecord>, StoreError>;

    /// Moves hold `id` from `approved` to `used` (the call ran) or
    /// `cancelled` (the call went away) at `at_us`. `None` if it was not
    /// approved: an approval is spent at most once. Any other target state
    /// is [`StoreError::InvalidApprovalTransition`].
    async fn close_approval(
        &self,
        id: &str,
        state: ApprovalState,
        at_us: i64,
    ) -> Result<Option<ApprovalRecord>, StoreError>;

    /// Expires every pending hold whose expiry is at or before `now_us`,
    /// recording `by` as the decider; returns those it expired (each to one
    /// caller only, however many sweep at once), oldest first.
    async fn expire_approvals(
        &self,
        now_us: i64,
        by: &str,
    ) -> Result<Vec<ApprovalRecord>, StoreError>;

    /// Closes the connections, waiting for those in use to come back.
    async fn close(&self);
}

/// Opens the store at `url` and runs any migrations not yet applied.
///
/// `sqlite://PATH` (the file is created if missing; WAL, `synchronous=FULL`)
/// or `postgres://...` / `postgresql://...`. Errors never quote the URL itself,
/// so a password in it does not end up in logs.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" => Ok(Arc::new(SqliteStore::connect(url).await?)),
        "postgres" | "postgresql" => Ok(Arc::new(PgStore::connect(url).await?)),
        _ => Err(StoreError::UnsupportedUrl {
            scheme: scheme.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unknown_scheme_is_named_without_the_rest_of_the_url() {
        let err = connect("mysql://root:hunter2@db/x").await.err().unwrap();
        assert!(matches!(&err, StoreError::UnsupportedUrl { scheme } if scheme == "mysql"));
        let text = err.to_string();
        assert_eq!(
            text,
            r#"unsupported store URL scheme "mysql" (expected sqlite:// or postgres://)"#
        );
    }

    #[tokio::test]
    async fn a_url_without_a_scheme_is_unsupported() {
        let err = connect("/var/lib/mandate.db").await.err().unwrap();
        assert!(matches!(&err, StoreError::UnsupportedUrl { scheme } if scheme.is_empty()));
    }
}
