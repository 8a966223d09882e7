//! The answer to one authorization request.
//!
//! A decision is a value that carries its own explanation: which policies
//! determined it and which ones failed to evaluate. No policy means deny.

use serde::{Deserialize, Serialize};

/// Allow or deny. There is no third effect: a request that cannot be decided is denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// The request may proceed.
    Allow,
    /// The request must not proceed.
    Deny,
}

impl Effect {
    /// The lowercase name used in logs, metrics and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }
}

/// Why a decision came out the way it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DecisionReason {
    /// At least one permit policy matched and no forbid policy did.
    Permitted,
    /// At least one forbid policy matched.
    Forbidden,
    /// No permit policy matched: the default is deny.
    NoPermit,
    /// The request could not be evaluated (it does not fit the schema, names an
    /// unknown entity type, ...). The text says what was wrong.
    InvalidRequest(String),
}

impl DecisionReason {
    /// A short machine-readable code (`permitted`, `forbidden`, `no_permit`, `invalid_request`).
    pub fn code(&self) -> &'static str {
        match self {
            DecisionReason::Permitted => "permitted",
            DecisionReason::Forbidden => "forbidden",
            DecisionReason::NoPermit => "no_permit",
            DecisionReason::InvalidRequest(_) => "invalid_request",
        }
    }
}

/// A policy that raised an error while being evaluated. Cedar skips such a policy;
/// it is recorded so that operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyEvalError {
    /// The readable policy ID (`file.cedar#id`).
    pub policy: String,
    /// What went wrong.
    pub message: String,
}

/// The outcome of one authorization request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Allow or deny.
    pub effect: Effect,
    /// The policies that determined the effect, sorted (empty for a default deny).
    pub policies: Vec<String>,
    /// Policies that errored during evaluation, sorted.
    pub errors: Vec<PolicyEvalError>,
    /// Why.
    pub reason: DecisionReason,
}

impl Decision {
    /// A deny for a request that could not be evaluated at all. The message is
    /// cut to [`Decision::MAX_MESSAGE`] characters: it may quote the request,
    /// and a huge request must not make a huge answer.
    pub fn invalid(message: impl Into<String>) -> Decision {
        let mut message = message.into();
        if let Some((cut, _)) = message.char_indices().nth(Decision::MAX_MESSAGE) {
            message.truncate(cut);
            message.push('…');
        }
        Decision {
            effect: Effect::Deny,
            policies: Vec::new(),
            errors: Vec::new(),
            reason: DecisionReason::InvalidRequest(message),
        }
    }

    /// Longest message an invalid-request decision carries, in characters.
    pub const MAX_MESSAGE: usize = 300;

    /// True only for an allow.
    pub fn is_allow(&self) -> bool {
        self.effect == Effect::Allow
    }

    /// One sentence for a human: why this was allowed or denied.
    pub fn explain(&self) -> String {
        match &self.reason {
            DecisionReason::Permitted => format!("permitted by {}", self.policies.join(", ")),
            DecisionReason::Forbidden => format!("forbidden by {}", self.policies.join(", ")),
            DecisionReason::NoPermit => "no permit policy matched (default deny)".to_owned(),
            DecisionReason::InvalidRequest(why) => format!("invalid request: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_each_reason_in_words() {
        let mut d = Decision {
            effect: Effect::Allow,
            policies: vec!["a.cedar#one".into()],
            errors: vec![],
            reason: DecisionReason::Permitted,
        };
        assert_eq!(d.explain(), "permitted by a.cedar#one");
        d.reason = DecisionReason::Forbidden;
        assert_eq!(d.explain(), "forbidden by a.cedar#one");
        assert_eq!(
            Decision::invalid("bad type").explain(),
            "invalid request: bad type"
        );
        assert!(!Decision::invalid("x").is_allow());
        let long = Decision::invalid("é".repeat(1000));
        let DecisionReason::InvalidRequest(text) = long.reason else {
            panic!()
        };
        assert_eq!(text.chars().count(), Decision::MAX_MESSAGE + 1);
    }
}
