//! OpenID AuthZEN Authorization API 1.0, as a pure function over a policy bundle.
//!
//! This crate owns the AuthZEN wire types ([`EvaluationRequest`],
//! [`EvaluationsRequest`], their responses and the PDP metadata) and the
//! mapping from an AuthZEN subject / action / resource / context onto a Cedar
//! request ([`to_cedar`]), documented in the README. It never does I/O: the
//! server hands it parsed JSON and a [`mandate_policy::PolicyBundle`], and gets
//! back decisions and the audit events to record.

mod batch;
mod mapping;
mod wire;

pub use batch::{
    AsSent, BatchLimits, BatchOutcome, EvaluatedItem, ItemRefusal, SubjectResolver, evaluate_batch,
    evaluate_batch_resolved, evaluate_one,
};
pub use mapping::{MappingError, ParsedRequest, to_cedar};
pub use wire::{
    Action, EvaluationRequest, EvaluationResponse, EvaluationsOptions, EvaluationsRequest,
    EvaluationsResponse, EvaluationsSemantic, PdpMetadata, Resource, Subject,
};
