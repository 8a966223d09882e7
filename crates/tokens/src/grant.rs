//! The `agent_task` entry of RFC 9396 `authorization_details`: what one task
//! may do, and the rule that a delegated task may only do less.
//!
//! The same type serves the request (what the agent asks for), the grant (what
//! the issuer allows) and the claim inside the token. Read, act and delegate are
//! three separate capabilities: holding one never implies another.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::TokenError;

/// The `type` of the `authorization_details` entry (RFC 9396 §2).
pub const AGENT_TASK_TYPE: &str = "agent_task";
/// Longest purpose, in characters.
pub const MAX_PURPOSE_CHARS: usize = 1024;
/// Most tools or data domains in one grant.
pub const MAX_ENTRIES: usize = 256;
/// Longest tool or data domain name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Longest ttl a grant may carry: one day. Issuers grant minutes.
pub const MAX_TTL_SECONDS: u64 = 86_400;

/// One of the three capabilities a task can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// Read data through tools classed as reads.
    Read,
    /// Call tools that change something.
    Act,
    /// Mint child tokens for sub-agents.
    Delegate,
}

impl Capability {
    /// All capabilities, in order.
    pub const ALL: [Capability; 3] = [Capability::Read, Capability::Act, Capability::Delegate];

    /// The lowercase name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Read => "read",
            Capability::Act => "act",
            Capability::Delegate => "delegate",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Capability::Read => 1,
            Capability::Act => 2,
            Capability::Delegate => 4,
        }
    }
}

/// A set of capabilities. On the wire a JSON array of distinct names
/// (`["read", "delegate"]`); a name listed twice is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(u8);

impl Capabilities {
    /// The empty set.
    pub fn none() -> Capabilities {
        Capabilities(0)
    }

    /// True if `capability` is in the set. Only that one: no capability implies another.
    pub fn contains(self, capability: Capability) -> bool {
        self.0 & capability.bit() != 0
    }

    /// This set with `capability` added.
    pub fn with(self, capability: Capability) -> Capabilities {
        Capabilities(self.0 | capability.bit())
    }

    /// True if the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The members, in the order read, act, delegate.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

impl FromIterator<Capability> for Capabilities {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        iter.into_iter()
            .fold(Capabilities::none(), Capabilities::with)
    }
}

impl Serialize for Capabilities {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Capabilities {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let listed = Vec::<Capability>::deserialize(deserializer)?;
        let mut set = Capabilities::none();
        for c in listed {
            if set.contains(c) {
                return Err(serde::de::Error::custom(format_args!(
                    "capability {:?} listed twice",
                    c.as_str()
                )));
            }
            set = set.with(c);
        }
        Ok(set)
    }
}

/// One task: the RFC 9396 `authorization_details` entry of type `agent_task`.
///
/// ```json
/// {"type": "agent_task", "purpose": "triage new issues", "tools": ["github.list_issues"],
///  "data_domains": ["github"], "ttl_seconds": 600, "max_calls": 50, "capabilities": ["read"]}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "agent_task", try_from = "WireGrant")]
pub struct TaskGrant {
    /// What the task is for, in the agent's words.
    pub purpose: String,
    /// The tools the task may call.
    pub tools: Vec<String>,
    /// The data domains the task may touch.
    #[serde(default)]
    pub data_domains: Vec<String>,
    /// How long the task lives, in seconds.
    pub ttl_seconds: u64,
    /// The call budget; absent means no budget beyond the ttl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<u64>,
    /// Read, act and delegate, each granted on its own.
    pub capabilities: Capabilities,
}

/// The entry as read: serde's `tag` on a struct writes `type` but does not
/// check it on reading, so the check is done here.
#[derive(Deserialize)]
struct WireGrant {
    #[serde(rename = "type")]
    kind: String,
    purpose: String,
    tools: Vec<String>,
    #[serde(default)]
    data_domains: Vec<String>,
    ttl_seconds: u64,
    #[serde(default)]
    max_calls: Option<u64>,
    capabilities: Capabilities,
}

impl TryFrom<WireGrant> for TaskGrant {
    type Error = String;
    fn try_from(wire: WireGrant) -> Result<Self, Self::Error> {
        if wire.kind != AGENT_TASK_TYPE {
            return Err(format!(
                "authorization_details type {:?} is not {AGENT_TASK_TYPE:?}",
                wire.kind
            ));
        }
        Ok(TaskGrant {
            purpose: wire.purpose,
            tools: wire.tools,
            data_domains: wire.data_domains,
            ttl_seconds: wire.ttl_seconds,
            max_calls: wire.max_calls,
            capabilities: wire.capabilities,
        })
    }
}

/// Why a child grant is not an attenuation of its parent. A delegation is refused
/// with every reason that applies, so the audit record names them all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DelegationRefusal {
    /// The child names a tool the parent lacks.
    #[error("tool {0:?} is not granted to the parent")]
    ExtraTool(String),
    /// The child names a data domain the parent lacks.
    #[error("data domain {0:?} is not granted to the parent")]
    ExtraDataDomain(String),
    /// The child holds a capability the parent lacks.
    #[error("capability {:?} is not held by the parent", .0.as_str())]
    ExtraCapability(Capability),
    /// The parent has a call budget and the child asks for none.
    #[error("the parent has a budget of {parent} calls; the child must have one too")]
    UnlimitedCalls {
        /// The parent's budget.
        parent: u64,
    },
    /// The child's call budget is larger than the parent's.
    #[error("max_calls {child} exceeds the parent's {parent}")]
    MoreCalls {
        /// The child's budget.
        child: u64,
        /// The parent's budget.
        parent: u64,
    },
    /// The child would outlive the parent.
    #[error("ttl_seconds {child} exceeds the parent's remaining {remaining} seconds")]
    LongerTtl {
        /// The child's ttl.
        child: u64,
        /// The parent's remaining life.
        remaining: u64,
    },
    /// The parent does not hold the delegate capability.
    #[error("the parent task does not hold the delegate capability")]
    NoDelegateRight,
    /// The child would be deeper in the chain than allowed.
    #[error("delegation depth {depth} exceeds the limit of {max}")]
    TooDeep {
        /// The child's depth.
        depth: usize,
        /// The limit.
        max: usize,
    },
}

impl TaskGrant {
    /// Checks the grant's own shape: a purpose, at least one tool, valid distinct
    /// names, a ttl within [`MAX_TTL_SECONDS`], a non-zero budget, a capability.
    pub fn validate(&self) -> Result<(), TokenError> {
        if self.purpose.trim().is_empty() {
            return Err(TokenError::EmptyPurpose);
        }
        let len = self.purpose.chars().count();
        if len > MAX_PURPOSE_CHARS {
            return Err(TokenError::PurposeTooLong {
                len,
                max: MAX_PURPOSE_CHARS,
            });
        }
        if self.tools.is_empty() {
            return Err(TokenError::NoTools);
        }
        check_names("tools", &self.tools)?;
        check_names("data_domains", &self.data_domains)?;
        if self.ttl_seconds == 0 || self.ttl_seconds > MAX_TTL_SECONDS {
            return Err(TokenError::BadTtl {
                ttl: self.ttl_seconds,
                max: MAX_TTL_SECONDS,
            });
        }
        if self.max_calls == Some(0) {
            return Err(TokenError::ZeroCallBudget);
        }
        if self.capabilities.is_empty() {
            return Err(TokenError::NoCapability);
        }
        Ok(())
    }

    /// Is this grant an attenuation of `parent`, whose token has
    /// `parent_remaining_seconds` left to live? Tools, data domains and
    /// capabilities must be subsets, the call budget no larger, the ttl no longer
    /// than the parent's remaining life. `Err` lists every way it widens.
    pub fn is_subset_of(
        &self,
        parent: &TaskGrant,
        parent_remaining_seconds: u64,
    ) -> Result<(), Vec<DelegationRefusal>> {
        let mut refusals = Vec::new();
        let parent_tools: BTreeSet<&str> = parent.tools.iter().map(String::as_str).collect();
        for tool in &self.tools {
            if !parent_tools.contains(tool.as_str()) {
                refusals.push(DelegationRefusal::ExtraTool(tool.clone()));
            }
        }
        let parent_domains: BTreeSet<&str> =
            parent.data_domains.iter().map(String::as_str).collect();
        for domain in &self.data_domains {
            if !parent_domains.contains(domain.as_str()) {
                refusals.push(DelegationRefusal::ExtraDataDomain(domain.clone()));
            }
        }
        for capability in self.capabilities.iter() {
            if !parent.capabilities.contains(capability) {
                refusals.push(DelegationRefusal::ExtraCapability(capability));
            }
        }
        match (self.max_calls, parent.max_calls) {
            (None, Some(parent)) => refusals.push(DelegationRefusal::UnlimitedCalls { parent }),
            (Some(child), Some(parent)) if child > parent => {
                refusals.push(DelegationRefusal::MoreCalls { child, parent });
            }
            _ => {}
        }
        if self.ttl_seconds > parent_remaining_seconds {
            refusals.push(DelegationRefusal::LongerTtl {
                child: self.ttl_seconds,
                remaining: parent_remaining_seconds,
            });
        }
        if refusals.is_empty() {
            Ok(())
        } else {
            Err(refusals)
        }
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Capability::as_str).collect();
        write!(f, "[{}]", names.join(", "))
    }
}

fn check_names(field: &'static str, names: &[String]) -> Result<(), TokenError> {
    if names.len() > MAX_ENTRIES {
        return Err(TokenError::TooManyEntries {
            field,
            count: names.len(),
            max: MAX_ENTRIES,
        });
    }
    let mut seen = BTreeSet::new();
    for name in names {
        let valid = !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".:_-/".contains(&b));
        if !valid {
            return Err(TokenError::BadName {
                field,
                name: name.clone(),
                max: MAX_NAME_LEN,
            });
        }
        if !seen.insert(name.as_str()) {
            return Err(TokenError::DuplicateEntry {
                field,
                name: name.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parent() -> TaskGrant {
        serde_json::from_value(json!({
            "type": "agent_task",
            "purpose": "triage new issues",
            "tools": ["github.list_issues", "github.add_label"],
            "data_domains": ["github", "tickets"],
            "ttl_seconds": 600,
            "max_calls": 50,
            "capabilities": ["read", "act", "delegate"]
        }))
        .expect("valid grant")
    }

    fn child() -> TaskGrant {
        TaskGrant {
            purpose: "label one issue".into(),
            tools: vec!["github.add_label".into()],
            data_domains: vec!["github".into()],
            ttl_seconds: 120,
            max_calls: Some(5),
            capabilities: [Capability::Act].into_iter().collect(),
        }
    }

    #[test]
    fn serializes_as_an_rfc9396_agent_task_entry() {
        let value = serde_json::to_value(child()).unwrap();
        assert_eq!(
            value,
            json!({
                "type": "agent_task",
                "purpose": "label one issue",
                "tools": ["github.add_label"],
                "data_domains": ["github"],
                "ttl_seconds": 120,
                "max_calls": 5,
                "capabilities": ["act"]
            })
        );
        let back: TaskGrant = serde_json::from_value(value).unwrap();
        assert_eq!(back, child());
    }

    #[test]
    fn refuses_an_entry_of_another_type() {
        let mut value = serde_json::to_value(child()).unwrap();
        value["type"] = json!("payment_initiation");
        let err = serde_json::from_value::<TaskGrant>(value.clone()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "authorization_details type \"payment_initiation\" is not \"agent_task\""
        );
        value.as_object_mut().unwrap().remove("type");
        assert!(serde_json::from_value::<TaskGrant>(value).is_err());
    }

    #[test]
    fn refuses_a_capability_listed_twice_or_unknown() {
        let mut value = serde_json::to_value(child()).unwrap();
        value["capabilities"] = json!(["read", "read"]);
        let err = serde_json::from_value::<TaskGrant>(value.clone()).unwrap_err();
        assert!(err.to_string().contains("\"read\" listed twice"), "{err}");
        value["capabilities"] = json!(["admin"]);
        assert!(serde_json::from_value::<TaskGrant>(value).is_err());
    }

    #[test]
    fn no_capability_implies_another() {
        for held in Capability::ALL {
            let set: Capabilities = [held].into_iter().collect();
            for other in Capability::ALL {
                assert_eq!(set.contains(other), held == other, "{held:?} vs {other:?}");
            }
        }
    }

    #[test]
    fn accepts_a_well_formed_grant() {
        parent().validate().unwrap();
        child().validate().unwrap();
    }

    #[test]
    fn refuses_an_empty_or_overlong_purpose() {
        let mut g = child();
        g.purpose = "   ".into();
        assert_eq!(g.validate(), Err(TokenError::EmptyPurpose));
        g.purpose = "x".repeat(MAX_PURPOSE_CHARS + 1);
        assert!(matches!(
            g.validate(),
            Err(TokenError::PurposeTooLong { len: 1025, .. })
        ));
    }

    #[test]
    fn refuses_a_duplicate_tool_and_quotes_it() {
        let mut g = child();
        g.tools = vec!["a".into(), "b".into(), "a".into()];
        let err = g.validate().unwrap_err();
        assert_eq!(
            err,
            TokenError::DuplicateEntry {
                field: "tools",
                name: "a".into()
            }
        );
        assert_eq!(err.to_string(), "tools lists \"a\" twice");
    }

    #[test]
    fn refuses_bad_names_too_many_entries_and_no_tools() {
        let mut g = child();
        g.tools = vec!["rm -rf".into()];
        assert!(matches!(
            g.validate(),
            Err(TokenError::BadName { field: "tools", .. })
        ));
        g.tools = vec!["x".repeat(MAX_NAME_LEN + 1)];
        assert!(matches!(g.validate(), Err(TokenError::BadName { .. })));
        g.tools = vec![];
        assert_eq!(g.validate(), Err(TokenError::NoTools));
        g.tools = vec!["t".into()];
        g.data_domains = (0..=MAX_ENTRIES).map(|i| format!("d{i}")).collect();
        assert!(matches!(
            g.validate(),
            Err(TokenError::TooManyEntries {
                field: "data_domains",
                count: 257,
                ..
            })
        ));
    }

    #[test]
    fn refuses_zero_or_overlong_ttl_zero_budget_and_no_capability() {
        let mut g = child();
        g.ttl_seconds = 0;
        assert!(matches!(
            g.validate(),
            Err(TokenError::BadTtl { ttl: 0, .. })
        ));
        g.ttl_seconds = MAX_TTL_SECONDS + 1;
        assert!(matches!(g.validate(), Err(TokenError::BadTtl { .. })));
        g.ttl_seconds = 60;
        g.max_calls = Some(0);
        assert_eq!(g.validate(), Err(TokenError::ZeroCallBudget));
        g.max_calls = None;
        g.capabilities = Capabilities::none();
        assert_eq!(g.validate(), Err(TokenError::NoCapability));
    }

    #[test]
    fn a_narrower_child_is_a_subset() {
        assert_eq!(child().is_subset_of(&parent(), 300), Ok(()));
        // Equal is a subset too.
        assert_eq!(parent().is_subset_of(&parent(), 600), Ok(()));
    }

    #[test]
    fn refuses_a_child_asking_for_a_tool_its_parent_lacks() {
        let mut c = child();
        c.tools.push("github.delete_repo".into());
        assert_eq!(
            c.is_subset_of(&parent(), 300),
            Err(vec![DelegationRefusal::ExtraTool(
                "github.delete_repo".into()
            )])
        );
    }

    #[test]
    fn refuses_a_child_asking_for_another_data_domain() {
        let mut c = child();
        c.data_domains.push("payroll".into());
        assert_eq!(
            c.is_subset_of(&parent(), 300),
            Err(vec![DelegationRefusal::ExtraDataDomain("payroll".into())])
        );
    }

    #[test]
    fn refuses_a_child_with_a_capability_its_parent_lacks() {
        let mut p = parent();
        p.capabilities = [Capability::Read, Capability::Delegate]
            .into_iter()
            .collect();
        assert_eq!(
            child().is_subset_of(&p, 300),
            Err(vec![DelegationRefusal::ExtraCapability(Capability::Act)])
        );
    }

    #[test]
    fn refuses_a_child_with_a_larger_or_missing_call_budget() {
        let mut c = child();
        c.max_calls = Some(51);
        assert_eq!(
            c.is_subset_of(&parent(), 300),
            Err(vec![DelegationRefusal::MoreCalls {
                child: 51,
                parent: 50
            }])
        );
        c.max_calls = None;
        assert_eq!(
            c.is_subset_of(&parent(), 300),
            Err(vec![DelegationRefusal::UnlimitedCalls { parent: 50 }])
        );
    }

    #[test]
    fn refuses_a_child_outliving_its_parent() {
        assert_eq!(
            child().is_subset_of(&parent(), 119),
            Err(vec![DelegationRefusal::LongerTtl {
                child: 120,
                remaining: 119
            }])
        );
    }

    #[test]
    fn lists_every_widening_at_once() {
        let mut c = child();
        c.tools.push("shell.exec".into());
        c.ttl_seconds = 10_000;
        let refusals = c.is_subset_of(&parent(), 600).unwrap_err();
        assert_eq!(refusals.len(), 2);
        assert_eq!(
            refusals[1].to_string(),
            "ttl_seconds 10000 exceeds the parent's remaining 600 seconds"
        );
    }
}
