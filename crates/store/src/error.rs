//! What can go wrong: reaching the database, reading it back, appending to the
//! audit log, verifying the chain.

use std::sync::Arc;

use mandate_core::ChainBreak;

use crate::approvals::ApprovalState;
use crate::identity::TaskState;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL names a database Mandate does not support.
    #[error("unsupported store URL scheme {scheme:?} (expected sqlite:// or postgres://)")]
    UnsupportedUrl {
        /// The scheme found (the part before `:`), empty if there was none.
        scheme: String,
    },
    /// The URL has a supported scheme but cannot be parsed.
    #[error("invalid {backend} store URL")]
    InvalidUrl {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// Why the driver rejected it.
        #[source]
        source: sqlx::Error,
    },
    /// The database could not be reached or opened.
    #[error("cannot connect to the {backend} store")]
    Connect {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The schema could not be brought up to date.
    #[error("cannot migrate the {backend} store")]
    Migrate {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// The migrator's error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed.
    #[error("{backend} store: {operation} failed")]
    Query {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// What was being done (`append audit records`, `read audit head`, ...).
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A stored audit row cannot be turned back into a record. It is reported,
    /// never skipped: a verifier treats it as a break in the chain.
    #[error("audit row {id} (node {node:?}, seq {seq}) is corrupt: {column} {problem}")]
    CorruptRow {
        /// The row's insertion ID.
        id: i64,
        /// The node the row claims to belong to.
        node: String,
        /// The sequence number the row claims (may be the bad value itself).
        seq: i64,
        /// The offending column.
        column: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Records handed to `append_audit` are not one contiguous run of one node.
    #[error(
        "audit batch is not one contiguous chain: record {found} of node {node:?} follows record {after}"
    )]
    InvalidBatch {
        /// The node of the offending record.
        node: String,
        /// The sequence number of the record before it.
        after: u64,
        /// Its sequence number.
        found: u64,
    },
    /// A row with the same key is already stored; nothing was written.
    #[error("{what} already exists")]
    Conflict {
        /// What clashed, with its key (`agent "billing-bot"`,
        /// `task with token ID "..."`).
        what: String,
    },
    /// `end_tasks` was asked to end tasks in a state that does not end them.
    #[error("tasks cannot be ended as {state}: only completed or revoked ends a task")]
    NotAnEndState {
        /// The state asked for (`active`).
        state: TaskState,
    },
    /// A held call was asked to move between states it never moves between
    /// (only pending → a decision, approved → used or cancelled).
    #[error("an approval cannot go from {from} to {to}")]
    InvalidApprovalTransition {
        /// The state the move starts from.
        from: ApprovalState,
        /// The state asked for.
        to: ApprovalState,
    },
    /// A stored agent, credential, signing key or task row cannot be read
    /// back into a record. It is reported, never skipped.
    #[error("{table} row {key:?} is corrupt: {column} {problem}")]
    CorruptEntry {
        /// The table (`agents`, `tasks`, ...).
        table: &'static str,
        /// The row's key (name, ID, kid), as far as it could be read.
        key: String,
        /// The offending column.
        column: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// Appending to the audit log failed. The caller must fail closed: the action
/// the events describe must not go ahead.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The log has been shut down and takes no more events.
    #[error("audit log is closed")]
    Closed,
    /// The batch holding these events could not be committed.
    #[error("audit write failed")]
    Write(#[source] Arc<StoreError>),
}

/// A stored state name (`AgentStatus`, `TaskState`, `ApprovalState`) is not
/// one Mandate knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct ParseStateError {
    /// What was being parsed: `agent status`, `task state` or `approval state`.
    pub kind: &'static str,
    /// The text that did not parse.
    pub value: String,
}

/// The audit log did not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A chain is broken (the first break found).
    #[error("audit chain is broken")]
    Broken(#[from] ChainBreak),
    /// The store could not be read.
    #[error("cannot read the audit log")]
    Store(#[from] StoreError),
}
