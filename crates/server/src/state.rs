//! What every request handler shares.

use std::sync::Arc;

use mandate_authzen::BatchLimits;
use mandate_core::RequestDigester;
use mandate_policy::PolicyEngine;
use mandate_store::{AuditLog, Store};
use metrics_exporter_prometheus::PrometheusHandle;

/// Shared, read-mostly state of a running server.
#[derive(Clone)]
pub struct AppState {
    pub(crate) engine: Arc<PolicyEngine>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) audit: AuditLog,
    pub(crate) digester: RequestDigester,
    pub(crate) limits: BatchLimits,
    pub(crate) max_body_bytes: usize,
    /// Required bearer key for AuthZEN callers, if any.
    pub(crate) api_key: Option<Arc<str>>,
    pub(crate) public_url: Arc<str>,
    pub(crate) metrics: PrometheusHandle,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The API key is never printed.
        f.debug_struct("AppState")
            .field("store", &self.store.backend())
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}
