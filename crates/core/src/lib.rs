//! Mandate's domain, with no I/O: what a decision is, what an audit record is,
//! and how records are chained so that tampering shows.
//!
//! Everything here is plain data and pure functions. The clock, the store and the
//! network belong to the crates above; they pass times and bytes in as values.
//! The main types are [`Decision`] (the answer to one request, never a bare
//! `bool`), [`AuditEvent`] (what happened) and [`AuditRecord`] (an event sealed
//! into a node's hash chain), with [`ChainVerifier`] walking a chain back and
//! [`TraceBuilder`] rebuilding one task's tree of delegations and calls from
//! its records.

mod audit;
mod chain;
mod decision;
mod digest;
mod limits;
mod seal;
mod trace;

pub use audit::{AuditEvent, AuditKind, AuditRecord, ChainHead, Hash32};
pub use chain::{ChainBreak, ChainVerifier};
pub use decision::{Decision, DecisionReason, Effect, PolicyEvalError};
pub use digest::RequestDigester;
pub use limits::{MAX_LABEL_LEN, TokenBucket, normalize_label};
pub use seal::HeadSealer;
pub use trace::{Relation, TaskTrace, TraceBuilder, TraceError, TraceEvent, TracedTask, ends_task};
