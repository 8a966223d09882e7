//! Cedar policy sets for Mandate: loaded from a directory, validated against a
//! schema, indexed, decided, and swapped atomically when the files change.
//!
//! A policy directory holds `*.cedar` policy files, optional `*.cedarschema`
//! (or `*.cedarschema.json`) schema fragments and an optional `entities.json`
//! (Cedar JSON entities). [`PolicyBundle`] is one immutable, validated load of
//! such a directory; [`PolicyBundle::decide`] answers a [`DecisionRequest`] with
//! a [`mandate_core::Decision`], evaluating only the policies whose scope can
//! match and only the entities the request can reach. `@reason("word")` on a
//! policy tags the decisions it determines; `@approval("why")` on a forbid
//! turns a deny that only such policies cause into a hold for a person. [`PolicyEngine`] holds
//! the current bundle and replaces it on reload, keeping the old one when the
//! new files are invalid. Reading the directory is the only I/O here; deciding
//! touches no clock, network or store.

mod bundle;
mod engine;
mod entities;
mod error;
mod index;
mod json;
mod load;

pub use bundle::{DecisionRequest, PolicyBundle};
pub use engine::{PolicyEngine, ReloadOutcome, ReloadStatus};
pub use error::PolicyError;
pub use json::{JsonValueError, json_object_to_cedar, json_to_cedar};
pub use load::{Fingerprint, PolicySources, SourceFile};

/// Cedar itself, re-exported so that callers build requests with the same version.
pub use cedar_policy;
