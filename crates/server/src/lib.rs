//! The Mandate server: configuration, the HTTP surface and the wiring of a node.
//!
//! [`Config`] defines every setting once (defaults, file, environment, flags);
//! [`serve`] opens the store and the audit log, loads the policies, watches them
//! for changes and serves the AuthZEN 1.0 endpoints, `/healthz`, `/readyz` and
//! `/metrics` until told to stop, flushing the audit log on the way out.
//! Deciding is left to `mandate-authzen` and `mandate-policy`, storing to
//! `mandate-store`; this crate only connects them to HTTP.

mod admin;
mod admin_approvals;
mod admin_kill;
mod admin_posture;
mod admin_secrets;
mod approval_webhook;
mod approvals;
mod authority;
mod caller;
mod config;
mod error;
mod govern;
mod issuance;
mod mcp;
mod metrics;
mod node;
mod oauth;
mod posture;
mod proxy;
mod request_ids;
mod routes;
mod run;
mod state;
mod stdio;
mod task_subject;
mod tls;
mod vault;

pub use config::{
    Config, ConfigError, HttpRule, HttpUpstream, KEYS, LogFormat, McpToolEntry, McpUpstream,
    TrustBundleSource, UpstreamCredential,
};
pub use error::ApiError;
pub use node::existing_head_key;
pub use routes::router;
pub use run::serve;
pub use state::AppState;
