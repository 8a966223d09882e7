//! Which of the rights an agent asks for it may hold: the policy side of token
//! issuance, as plain Rust over a policy bundle (no I/O).
//!
//! Each requested tool, data domain and capability is one Cedar question,
//! asked with the agent as principal:
//!
//! | item        | action                        | resource               |
//! |-------------|-------------------------------|------------------------|
//! | tool        | `Action::"hold_tool"`         | `Tool::"<name>"`       |
//! | data domain | `Action::"hold_data_domain"`  | `DataDomain::"<name>"` |
//! | capability  | `Action::"hold_capability"`   | `Capability::"read"`   |
//!
//! The context is the task as asked: `purpose`, `depth` (0 for a root task),
//! `tools`, `data_domains` and `capabilities` (sets of strings). The grant is
//! what policy allows of what was asked; with no tool or no capability left,
//! nothing is granted.

use std::str::FromStr;

use mandate_core::Decision;
use mandate_policy::cedar_policy::{
    Context, EntityId, EntityTypeName, EntityUid, RestrictedExpression,
};
use mandate_policy::{DecisionRequest, PolicyBundle};
use mandate_store::AgentRecord;
use mandate_tokens::{Capabilities, Capability, TaskGrant};

/// Cedar entity type of agents, in every decision Mandate makes about one.
pub(crate) const AGENT_TYPE: &str = "Agent";

/// What was granted of a request, and what was not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Admission {
    /// The grant to put in the token.
    pub(crate) granted: TaskGrant,
    /// Items asked for and not granted, as `tool "x": no permit policy matched`.
    pub(crate) dropped: Vec<String>,
    /// The policies that permitted what was granted, sorted and distinct.
    pub(crate) policies: Vec<String>,
}

/// Why nothing at all can be granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub(crate) struct Refusal {
    /// One sentence naming what was denied and by what.
    pub(crate) reason: String,
    /// The items denied, as in [`Admission::dropped`].
    pub(crate) dropped: Vec<String>,
}

/// The agent as a Cedar entity reference.
pub(crate) fn agent_uid(spiffe_id: &str) -> EntityUid {
    uid(AGENT_TYPE, spiffe_id)
}

pub(crate) fn uid(kind: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(
        EntityTypeName::from_str(kind).expect("a fixed, valid type name"),
        EntityId::new(id),
    )
}

/// The agent's registry attributes, as Cedar sees them on the principal.
pub(crate) fn agent_attrs(agent: &AgentRecord) -> Vec<(String, RestrictedExpression)> {
    [
        ("name", &agent.name),
        ("owner", &agent.owner),
        ("env", &agent.env),
        ("function", &agent.function),
        ("spiffe_id", &agent.spiffe_id),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), RestrictedExpression::new_string(v.clone())))
    .collect()
}

fn string_set<'a>(items: impl Iterator<Item = &'a str>) -> RestrictedExpression {
    RestrictedExpression::new_set(items.map(|s| RestrictedExpression::new_string(s.to_owned())))
}

/// The context of every `hold_*` question about `requested` at `depth`.
fn request_context(requested: &TaskGrant, depth: usize) -> Context {
    Context::from_pairs([
        (
            "purpose".to_owned(),
            RestrictedExpression::new_string(requested.purpose.clone()),
        ),
        (
            "depth".to_owned(),
            RestrictedExpression::new_long(i64::try_from(depth).unwrap_or(i64::MAX)),
        ),
        (
            "tools".to_owned(),
            string_set(requested.tools.iter().map(String::as_str)),
        ),
        (
            "data_domains".to_owned(),
            string_set(requested.data_domains.iter().map(String::as_str)),
        ),
        (
            "capabilities".to_owned(),
            string_set(requested.capabilities.iter().map(Capability::as_str)),
        ),
    ])
    .expect("distinct keys")
}

/// Which of `tools` policy would let `agent` hold in a root task that asks
/// for all of them with every capability: its standing tool rights, as
/// `mandate posture` compares them with what its tasks were granted.
pub(crate) fn holdable_tools(
    bundle: &PolicyBundle,
    agent: &AgentRecord,
    tools: &[String],
) -> Vec<String> {
    let requested = TaskGrant {
        purpose: "standing rights review".to_owned(),
        tools: tools.to_vec(),
        data_domains: Vec::new(),
        ttl_seconds: 1,
        max_calls: None,
        capabilities: Capability::ALL.into_iter().collect(),
    };
    let context = request_context(&requested, 0);
    let principal = agent_uid(&agent.spiffe_id);
    let attrs = agent_attrs(agent);
    tools
        .iter()
        .filter(|tool| {
            bundle
                .decide(DecisionRequest {
                    principal: principal.clone(),
                    action: uid("Action", "hold_tool"),
                    resource: uid("Tool", tool),
                    context: context.clone(),
                    principal_attrs: attrs.clone(),
                    resource_attrs: Vec::new(),
                })
                .is_allow()
        })
        .cloned()
        .collect()
}

/// Asks policy about each item of `requested` for `agent` at delegation
/// `depth`, and grants what is allowed.
pub(crate) fn admit(
    bundle: &PolicyBundle,
    agent: &AgentRecord,
    requested: &TaskGrant,
    depth: usize,
) -> Result<Admission, Refusal> {
    let context = request_context(requested, depth);
    let principal = agent_uid(&agent.spiffe_id);
    let attrs = agent_attrs(agent);
    let mut policies = Vec::new();
    let mut dropped = Vec::new();
    let mut ask = |action: &str, kind: &str, name: &str| -> bool {
        let decision: Decision = bundle.decide(DecisionRequest {
            principal: principal.clone(),
            action: uid("Action", action),
            resource: uid(kind, name),
            context: context.clone(),
            principal_attrs: attrs.clone(),
            resource_attrs: Vec::new(),
        });
        if decision.is_allow() {
            policies.extend(decision.policies);
            true
        } else {
            dropped.push(format!(
                "{} {name:?}: {}",
                kind_word(kind),
                decision.explain()
            ));
            false
        }
    };
    let tools: Vec<String> = requested
        .tools
        .iter()
        .filter(|t| ask("hold_tool", "Tool", t))
        .cloned()
        .collect();
    let data_domains: Vec<String> = requested
        .data_domains
        .iter()
        .filter(|d| ask("hold_data_domain", "DataDomain", d))
        .cloned()
        .collect();
    let mut capabilities = Capabilities::none();
    for capability in requested.capabilities.iter() {
        if ask("hold_capability", "Capability", capability.as_str()) {
            capabilities = capabilities.with(capability);
        }
    }
    if tools.is_empty() {
        return Err(Refusal {
            reason: format!(
                "policy allows this agent none of the requested tools ({})",
                dropped.join("; ")
            ),
            dropped,
        });
    }
    if capabilities.is_empty() {
        return Err(Refusal {
            reason: format!(
                "policy allows this agent none of the requested capabilities ({})",
                dropped.join("; ")
            ),
            dropped,
        });
    }
    policies.sort();
    policies.dedup();
    Ok(Admission {
        granted: TaskGrant {
            purpose: requested.purpose.clone(),
            tools,
            data_domains,
            ttl_seconds: requested.ttl_seconds,
            max_calls: requested.max_calls,
            capabilities,
        },
        dropped,
        policies,
    })
}

fn kind_word(kind: &str) -> &'static str {
    match kind {
        "Tool" => "tool",
        "DataDomain" => "data domain",
        _ => "capability",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mandate_policy::PolicySources;
    use mandate_store::AgentStatus;

    const SCHEMA: &str = include_str!("../../../policies/baseline/mandate.cedarschema");

    fn bundle(policies: &str) -> PolicyBundle {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mandate.cedarschema"), SCHEMA).unwrap();
        std::fs::write(dir.path().join("p.cedar"), policies).unwrap();
        PolicyBundle::from_sources(&PolicySources::read_dir(dir.path()).unwrap()).unwrap()
    }

    fn agent(env: &str) -> AgentRecord {
        AgentRecord {
            name: "summariser".into(),
            spiffe_id: "spiffe://mandate.local/agent/summariser".into(),
            owner: "alice@example.com".into(),
            env: env.into(),
            function: "summarise reports".into(),
            status: AgentStatus::Active,
            created_us: 0,
            updated_us: 0,
            key_sha256: None,
            credentials_since_us: 0,
        }
    }

    fn asked(tools: &[&str], caps: &[&str]) -> TaskGrant {
        serde_json::from_value(serde_json::json!({
            "type": "agent_task", "purpose": "summarise the Q3 report",
            "tools": tools, "data_domains": ["reports", "hr"], "ttl_seconds": 300,
            "capabilities": caps
        }))
        .unwrap()
    }

    const POLICIES: &str = r#"
        @id("dev-tools")
        permit(principal is Agent, action == Action::"hold_tool", resource == Tool::"files.read")
        when { principal.env == "dev" };
        @id("reports")
        permit(principal is Agent, action == Action::"hold_data_domain", resource == DataDomain::"reports");
        @id("read")
        permit(principal is Agent, action == Action::"hold_capability", resource == Capability::"read");
    "#;

    #[test]
    fn grants_the_intersection_and_names_what_it_dropped() {
        let b = bundle(POLICIES);
        let got = admit(
            &b,
            &agent("dev"),
            &asked(&["files.read", "mail.send"], &["read", "act"]),
            0,
        )
        .unwrap();
        assert_eq!(got.granted.tools, vec!["files.read"]);
        assert_eq!(got.granted.data_domains, vec!["reports"]);
        assert_eq!(
            got.granted.capabilities.iter().collect::<Vec<_>>(),
            vec![Capability::Read]
        );
        assert_eq!(got.dropped.len(), 3, "{:?}", got.dropped);
        assert!(got.dropped[0].starts_with("tool \"mail.send\""));
        assert_eq!(
            got.policies,
            vec!["p.cedar#dev-tools", "p.cedar#read", "p.cedar#reports"]
        );
    }

    #[test]
    fn agent_attributes_reach_policy() {
        let b = bundle(POLICIES);
        let err = admit(&b, &agent("prod"), &asked(&["files.read"], &["read"]), 0).unwrap_err();
        assert!(err.reason.contains("none of the requested tools"), "{err}");
    }

    #[test]
    fn no_capability_means_no_grant() {
        let b = bundle(POLICIES);
        let err = admit(&b, &agent("dev"), &asked(&["files.read"], &["act"]), 0).unwrap_err();
        assert!(err.reason.contains("capabilities"), "{err}");
    }

    #[test]
    fn standing_rights_are_the_tools_policy_lets_the_agent_hold() {
        let b = bundle(POLICIES);
        let tools = vec!["files.read".to_owned(), "mail.send".to_owned()];
        assert_eq!(
            holdable_tools(&b, &agent("dev"), &tools),
            vec!["files.read"]
        );
        assert!(holdable_tools(&b, &agent("prod"), &tools).is_empty());
        assert!(holdable_tools(&bundle(""), &agent("dev"), &tools).is_empty());
    }

    #[test]
    fn an_empty_policy_set_grants_nothing() {
        let b = bundle("");
        assert!(admit(&b, &agent("dev"), &asked(&["files.read"], &["read"]), 0).is_err());
    }
}
