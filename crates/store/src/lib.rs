//! Mandate's durable state: the [`Store`] trait, its SQLite and PostgreSQL
//! backends, their versioned migrations, and the group-committed [`AuditLog`].
//!
//! [`connect`] picks the backend from a URL and brings the schema up to date;
//! the rest of Mandate holds the result as `Arc<dyn Store>` and never sees SQL.
//! [`AuditLog`] seals events onto a node's hash chain and commits many
//! concurrent appends in one transaction, returning only once they are durable.
//! [`verify_audit`] walks every chain back and names the first tampered record.
//! Agents, admin credentials, signing keys and tasks are kept as plain
//! records ([`AgentRecord`], [`TaskRecord`], ...) behind the same trait, and
//! so are secrets, already sealed ([`SecretRecord`]), and calls held for a
//! person's approval ([`ApprovalRecord`]).
//!
//! This crate decides nothing and hashes nothing itself: records, chains and
//! verification rules come from `mandate-core`. It never sees a secret in
//! clear, nor the key that seals it.

mod approvals;
mod approvals_sql;
mod audit_log;
mod backend;
mod error;
mod identity;
mod identity_sql;
mod migrations;
mod postgres;
mod secrets;
mod secrets_sql;
mod session;
mod session_sql;
mod sql;
mod sqlite;
mod store;
mod verify;

pub use approvals::{ApprovalDecision, ApprovalRecord, ApprovalState};
pub use audit_log::{AuditLog, AuditLogConfig};
pub use error::{AuditError, ParseStateError, StoreError, VerifyError};
pub use identity::{
    AdminCredential, AgentRecord, AgentStatus, SigningKeyRecord, TaskRecord, TaskState,
};
pub use secrets::SecretRecord;
pub use session::BudgetOutcome;
pub use store::{Store, connect};
pub use verify::{VerifiedChain, VerifyReport, verify_audit};
