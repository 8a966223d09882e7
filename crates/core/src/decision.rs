//! The answer to one authorization request.
//!
//! A decision is a value that carries its own explanation: which policies
//! determined it and which ones failed to evaluate. No policy means deny.
//! A decision held for a person's approval is a deny too, so that code which
//! knows nothing of approvals fails closed.

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
    /// Held for a person: only `@approval` forbid policies stood in the way of
    /// a permit. Carries their annotation texts, sorted. The effect is deny.
    ApprovalRequired(Vec<String>),
}

impl DecisionReason {
    /// A short machine-readable code (`permitted`, `forbidden`, `no_permit`,
    /// `invalid_request`, `approval_required`).
    pub fn code(&self) -> &'static str {
        match self {
            DecisionReason::Permitted => "permitted",
            DecisionReason::Forbidden => "forbidden",
            DecisionReason::NoPermit => "no_permit",
            DecisionReason::InvalidRequest(_) => "invalid_request",
            DecisionReason::ApprovalRequired(_) => "approval_required",
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
    /// The `@reason` words of the determining policies, sorted and unique
    /// (`drift`, `egress_after_confidential`, ...).
    #[serde(default)]
    pub tags: Vec<String>,
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
            tags: Vec::new(),
        }
    }

    /// Longest message an invalid-request decision carries, in characters.
    pub const MAX_MESSAGE: usize = 300;

    /// True only for an allow.
    pub fn is_allow(&self) -> bool {
        self.effect == Effect::Allow
    }

    /// True for a decision held for a person's approval (its effect is deny).
    pub fn needs_approval(&self) -> bool {
        matches!(self.reason, DecisionReason::ApprovalRequired(_))
    }

    /// Whether a determining policy carried `@reason(tag)`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.binary_search_by(|t| t.as_str().cmp(tag)).is_ok()
    }

    /// One sentence for a human: why this was allowed, denied or held.
    pub fn explain(&self) -> String {
        match &self.reason {
            DecisionReason::Permitted => format!("permitted by {}", self.policies.join(", ")),
            DecisionReason::Forbidden => format!("forbidden by {}", self.policies.join(", ")),
            DecisionReason::NoPermit => "no permit policy matched (default deny)".to_owned(),
            DecisionReason::InvalidRequest(why) => format!("invalid request: {why}"),
            DecisionReason::ApprovalRequired(texts) => format!(
                "held for approval: {} ({})",
                texts.join("; "),
                self.policies.join(", ")
            ),
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
            tags: vec![],
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

    #[test]
    fn a_hold_is_a_deny_that_says_why_a_person_must_sign_off() {
        let d = Decision {
            effect: Effect::Deny,
            policies: vec!["a.cedar#delete".into(), "b.cedar#prod".into()],
            errors: vec![],
            reason: DecisionReason::ApprovalRequired(vec![
                "deletes data".into(),
                "production".into(),
            ]),
            tags: vec!["destructive".into()],
        };
        assert!(d.needs_approval());
        assert!(!d.is_allow());
        assert_eq!(d.reason.code(), "approval_required");
        assert_eq!(
            d.explain(),
            "held for approval: deletes data; production (a.cedar#delete, b.cedar#prod)"
        );
        assert!(!Decision::invalid("x").needs_approval());
    }

    #[test]
    fn tags_are_looked_up_exactly_and_default_to_none_when_absent() {
        let mut d = Decision::invalid("x");
        d.tags = vec!["drift".into(), "egress_after_confidential".into()];
        assert!(d.has_tag("drift"));
        assert!(d.has_tag("egress_after_confidential"));
        assert!(!d.has_tag("Drift"));
        assert!(!d.has_tag("egress"));
        // A decision recorded before tags existed still reads.
        let old = r#"{"effect":"deny","policies":[],"errors":[],"reason":{"code":"no_permit"}}"#;
        let parsed: Decision = serde_json::from_str(old).unwrap();
        assert!(parsed.tags.is_empty());
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(
            json["tags"],
            serde_json::json!(["drift", "egress_after_confidential"])
        );
        let held =
            serde_json::to_value(DecisionReason::ApprovalRequired(vec!["x".into()])).unwrap();
        assert_eq!(
            held,
            serde_json::json!({"code": "approval_required", "detail": ["x"]})
        );
    }
}
