//! Who may act and under what, as stored: registered agents, administrators'
//! credentials, the keys nodes sign task tokens with, and the tasks those
//! tokens stand for.
//!
//! These are plain rows. What a grant allows, how a token is signed and who
//! may suspend an agent are decided elsewhere; the store only keeps them.

use std::fmt;
use std::str::FromStr;

use crate::error::ParseStateError;

/// Whether an agent may currently be issued tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentStatus {
    /// The agent may act.
    Active,
    /// The agent is barred until resumed.
    Suspended,
}

impl AgentStatus {
    /// The stored name: `active` or `suspended`.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Suspended => "suspended",
        }
    }
}

impl fmt::Display for AgentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AgentStatus {
    type Err = ParseStateError;

    fn from_str(text: &str) -> Result<AgentStatus, ParseStateError> {
        match text {
            "active" => Ok(AgentStatus::Active),
            "suspended" => Ok(AgentStatus::Suspended),
            _ => Err(ParseStateError {
                kind: "agent status",
                value: text.to_owned(),
            }),
        }
    }
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    /// The agent's unique name.
    pub name: String,
    /// Its unique SPIFFE ID, the `sub` of the tokens it holds.
    pub spiffe_id: String,
    /// Who answers for it.
    pub owner: String,
    /// The environment it runs in (`prod`, `staging`, ...).
    pub env: String,
    /// What it is for.
    pub function: String,
    /// Whether it may currently act.
    pub status: AgentStatus,
    /// When it was registered (microseconds since the epoch).
    pub created_us: i64,
    /// When it last changed (microseconds since the epoch).
    pub updated_us: i64,
    /// SHA-256 (hex) of the SubjectPublicKeyInfo of its current key, when the
    /// built-in CA issued its SVID.
    pub key_sha256: Option<String>,
    /// Tokens issued before this (registration, or the last key change) are
    /// refused.
    pub credentials_since_us: i64,
}

/// An administrator's credential: an ID and a hash of its secret, never the
/// secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCredential {
    /// The credential's unique ID.
    pub id: String,
    /// The unique name of the person (or role) holding it (`alice`); audit
    /// records and approvals name them by it.
    pub name: String,
    /// The hash of its secret, in whatever encoding the hasher produces.
    pub secret_hash: String,
    /// When it was created (microseconds since the epoch).
    pub created_us: i64,
}

/// The public half of a key a node signs task tokens with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// The key ID, unique across all nodes (the tokens' `kid`).
    pub kid: String,
    /// The node holding the private half.
    pub node_id: String,
    /// The public key as JWK JSON text.
    pub public_jwk: String,
    /// When it was published (microseconds since the epoch).
    pub created_us: i64,
    /// When it stopped signing, if it has. It still verifies tokens it signed.
    pub retired_us: Option<i64>,
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// Its token may be used until it expires.
    Active,
    /// The agent finished it; its token is no longer honoured.
    Completed,
    /// It was revoked; its token is no longer honoured.
    Revoked,
}

impl TaskState {
    /// The stored name: `active`, `completed` or `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Active => "active",
            TaskState::Completed => "completed",
            TaskState::Revoked => "revoked",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = ParseStateError;

    fn from_str(text: &str) -> Result<TaskState, ParseStateError> {
        match text {
            "active" => Ok(TaskState::Active),
            "completed" => Ok(TaskState::Completed),
            "revoked" => Ok(TaskState::Revoked),
            _ => Err(ParseStateError {
                kind: "task state",
                value: text.to_owned(),
            }),
        }
    }
}

/// A task and the token issued for it. Delegated tasks point at their parent;
/// revoking a task revokes its whole subtree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    /// The task's unique ID.
    pub task_id: String,
    /// The unique ID of its token.
    pub jti: String,
    /// The SPIFFE ID of the agent holding the token (its `sub`).
    pub agent: String,
    /// The task it was delegated from, if any.
    pub parent_task_id: Option<String>,
    /// The top of its delegation tree (itself if it has no parent).
    pub root_task_id: String,
    /// How many delegations below the root it is (0 for a root).
    pub depth: i32,
    /// The grant as JSON text.
    pub grant_json: String,
    /// When the token was issued (microseconds since the epoch).
    pub issued_us: i64,
    /// When the token expires (microseconds since the epoch).
    pub expires_us: i64,
    /// Where the task is in its life.
    pub state: TaskState,
    /// When it was completed or revoked, if it has been.
    pub ended_us: Option<i64>,
    /// Why it was completed or revoked, if it has been.
    pub end_reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_stored_names() {
        for status in [AgentStatus::Active, AgentStatus::Suspended] {
            assert_eq!(status.as_str().parse::<AgentStatus>(), Ok(status));
            assert_eq!(status.to_string(), status.as_str());
        }
        for state in [TaskState::Active, TaskState::Completed, TaskState::Revoked] {
            assert_eq!(state.as_str().parse::<TaskState>(), Ok(state));
            assert_eq!(state.to_string(), state.as_str());
        }
    }

    #[test]
    fn an_unknown_state_is_refused_and_quoted() {
        let err = "Active".parse::<AgentStatus>().unwrap_err();
        assert_eq!(err.to_string(), r#"unknown agent status "Active""#);
        let err = "expired".parse::<TaskState>().unwrap_err();
        assert_eq!(err.to_string(), r#"unknown task state "expired""#);
    }
}
