//! Calls held for a human's approval, as stored.
//!
//! A hold moves through its states only forward, and only by compare-and-set
//! on its current state: `pending` becomes `approved`, `denied`, `expired` or
//! `cancelled` once, and an `approved` hold becomes `used` (by the one call it
//! covers) or `cancelled` (that call went away) once. Two approvers, or an
//! approver and the timeout, can therefore never both win, and an approval
//! can never be spent twice.

use std::fmt;
use std::str::FromStr;

use crate::error::ParseStateError;

/// Where a held call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalState {
    /// Waiting for a person.
    Pending,
    /// A person allowed it; the call it covers has not run yet.
    Approved,
    /// A person refused it.
    Denied,
    /// Nobody decided in time.
    Expired,
    /// Withdrawn before it could be used (the agent was killed, or the call
    /// that waited for it went away).
    Cancelled,
    /// Approved, and spent by the call it covers.
    Used,
}

impl ApprovalState {
    /// Every state, in the order a hold can pass through them.
    pub const ALL: [ApprovalState; 6] = [
        ApprovalState::Pending,
        ApprovalState::Approved,
        ApprovalState::Denied,
        ApprovalState::Expired,
        ApprovalState::Cancelled,
        ApprovalState::Used,
    ];

    /// The stored name: `pending`, `approved`, `denied`, `expired`,
    /// `cancelled` or `used`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
            ApprovalState::Cancelled => "cancelled",
            ApprovalState::Used => "used",
        }
    }
}

impl fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApprovalState {
    type Err = ParseStateError;

    fn from_str(text: &str) -> Result<ApprovalState, ParseStateError> {
        ApprovalState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| ParseStateError {
                kind: "approval state",
                value: text.to_owned(),
            })
    }
}

/// One held call: who asked for what, under which task, why policy held it,
/// and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRecord {
    /// Its unique, unguessable ID (`apr_...`).
    pub id: String,
    /// The task whose token made the call.
    pub task_id: String,
    /// The top of that task's delegation tree.
    pub root_task_id: String,
    /// The task's ancestors, root first (empty for a root task).
    pub task_chain: Vec<String>,
    /// The SPIFFE ID of the agent that made the call.
    pub agent: String,
    /// That agent's registered name.
    pub agent_name: String,
    /// Where the call came in: `mcp`, `proxy` or `authzen`.
    pub endpoint: String,
    /// The upstream it was for (empty for AuthZEN).
    pub upstream: String,
    /// The Cedar action (`Action::"call"`).
    pub action: String,
    /// The Cedar resource (`Tool::"files.write_file"`).
    pub resource: String,
    /// The keyed digest (hex) of the call's arguments: the approval covers
    /// these arguments only.
    pub argument_digest: String,
    /// The task's declared purpose.
    pub purpose: String,
    /// Why policy wants a person to look (the `@approval` texts).
    pub reasons: Vec<String>,
    /// The IDs of the policies that held it.
    pub policies: Vec<String>,
    /// Where it is in its life.
    pub state: ApprovalState,
    /// When it was opened (microseconds since the epoch).
    pub created_us: i64,
    /// When it expires if nobody decides.
    pub expires_us: i64,
    /// When it left `pending`, if it has.
    pub decided_us: Option<i64>,
    /// Who moved it out of `pending`, as an entity reference
    /// (`Admin::"alice"`, `Mandate::"timeout"`).
    pub decided_by: Option<String>,
    /// What the decider wrote, or why it was cancelled.
    pub note: Option<String>,
    /// When an approved hold was used or withdrawn, if it has been.
    pub closed_us: Option<i64>,
}

/// Moving a pending hold to its decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalDecision {
    /// `approved`, `denied`, `expired` or `cancelled`.
    pub state: ApprovalState,
    /// When (microseconds since the epoch).
    pub at_us: i64,
    /// Who, as an entity reference (`Admin::"alice"`).
    pub by: String,
    /// What they wrote, if anything.
    pub note: Option<String>,
    /// Only if the hold has not expired by `at_us`: a person's decision
    /// comes too late once the timeout has passed, even if nobody has marked
    /// the hold expired yet.
    pub before_expiry: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_stored_names() {
        for state in ApprovalState::ALL {
            assert_eq!(state.as_str().parse::<ApprovalState>(), Ok(state));
            assert_eq!(state.to_string(), state.as_str());
        }
        let err = "Approved".parse::<ApprovalState>().unwrap_err();
        assert_eq!(err.to_string(), r#"unknown approval state "Approved""#);
    }
}
