//! AuthZEN 1.0 request and response bodies.
//!
//! Field names follow the specification exactly. Unknown fields are accepted and
//! ignored, as the specification asks of a PDP, so newer PEPs keep working.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The subject: who is asking (AuthZEN §5.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    /// The subject's type (`user`), a Cedar entity type name.
    #[serde(rename = "type")]
    pub kind: String,
    /// The subject's identifier.
    pub id: String,
    /// Attributes the PEP knows about the subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Map<String, Value>>,
}

/// The resource: what is acted on (AuthZEN §5.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// The resource's type (`todo`), a Cedar entity type name.
    #[serde(rename = "type")]
    pub kind: String,
    /// The resource's identifier.
    pub id: String,
    /// Attributes the PEP knows about the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Map<String, Value>>,
}

/// The action (AuthZEN §5.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// The action's name (`can_read`), the id of a Cedar `Action` entity.
    pub name: String,
    /// Attributes of the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Map<String, Value>>,
}

/// `POST /access/v1/evaluation` (AuthZEN §6.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationRequest {
    /// Who.
    pub subject: Subject,
    /// Does what.
    pub action: Action,
    /// To what.
    pub resource: Resource,
    /// In which circumstances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Map<String, Value>>,
}

/// The answer to one evaluation (AuthZEN §6.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationResponse {
    /// `true` to allow.
    pub decision: bool,
    /// Why, for the PEP's operators (`reason_admin`) or an error for this item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Map<String, Value>>,
}

/// How a batch is processed (AuthZEN §7.1.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvaluationsSemantic {
    /// Evaluate every item.
    #[default]
    ExecuteAll,
    /// Stop after the first deny.
    DenyOnFirstDeny,
    /// Stop after the first permit.
    PermitOnFirstPermit,
}

/// Batch options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvaluationsOptions {
    /// The processing semantic.
    #[serde(default)]
    pub evaluations_semantic: EvaluationsSemantic,
}

/// `POST /access/v1/evaluations` (AuthZEN §7.1). The top-level subject, action,
/// resource and context are defaults for every item; an item's own value
/// replaces the default whole. Items are kept as raw JSON so that one malformed
/// item is denied on its own instead of failing the batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationsRequest {
    /// Default subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// Default action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Default resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// Default context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Map<String, Value>>,
    /// The items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluations: Option<Vec<Value>>,
    /// Options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<EvaluationsOptions>,
}

/// The answer to a batch: one response per evaluated item, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationsResponse {
    /// The responses.
    pub evaluations: Vec<EvaluationResponse>,
}

/// `GET /.well-known/authzen-configuration` (AuthZEN §9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PdpMetadata {
    /// The PDP's base URL.
    pub policy_decision_point: String,
    /// The single-evaluation endpoint.
    pub access_evaluation_endpoint: String,
    /// The batch endpoint.
    pub access_evaluations_endpoint: String,
}

impl PdpMetadata {
    /// Metadata for a PDP served at `base` (no trailing slash).
    pub fn for_base(base: &str) -> PdpMetadata {
        PdpMetadata {
            policy_decision_point: base.to_owned(),
            access_evaluation_endpoint: format!("{base}/access/v1/evaluation"),
            access_evaluations_endpoint: format!("{base}/access/v1/evaluations"),
        }
    }
}
