//! What every request handler shares.

use std::sync::{Arc, RwLock};

use mandate_authzen::BatchLimits;
use mandate_core::RequestDigester;
use mandate_policy::PolicyEngine;
use mandate_store::{AdminCredential, AuditLog, Store};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::authority::Authority;
use crate::vault::SecretVault;

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
    /// Base URL of the TLS listener, if there is one.
    pub(crate) tls_base: Option<Arc<str>>,
    pub(crate) metrics: PrometheusHandle,
    /// Identity and token state.
    pub(crate) authority: Arc<Authority>,
    /// MCP upstreams by name.
    pub(crate) upstreams: Arc<std::collections::HashMap<String, Arc<crate::mcp::Upstream>>>,
    /// Origins browsers may call the MCP gateway from.
    pub(crate) mcp_allowed_origins: Arc<Vec<String>>,
    /// HTTP reverse proxy upstreams by name.
    pub(crate) proxy_upstreams:
        Arc<std::collections::HashMap<String, Arc<crate::proxy::ProxyUpstream>>>,
    /// The client for MCP and proxy upstreams (one connection pool). It
    /// never follows redirects: a redirect would carry the injected credential
    /// to wherever it points, so it is the agent's to follow, through the
    /// gateway and its rules, or not at all.
    pub(crate) upstream_http: reqwest::Client,
    /// The admin credentials (names and SHA-256 hashes), re-read from the
    /// store every few seconds.
    pub(crate) admin: Arc<RwLock<Vec<AdminCredential>>>,
    /// The secrets KEK and where sealed secrets go.
    pub(crate) secrets: Arc<SecretVault>,
    /// Calls held for a person's approval.
    pub(crate) approvals: Arc<crate::approvals::Approvals>,
    /// Rate, concurrency and budget limits, session labels, the kill switch.
    pub(crate) governor: Arc<crate::govern::Governor>,
    /// The windows of `GET /admin/v1/posture`.
    pub(crate) posture: crate::posture::PostureSettings,
}

impl AppState {
    /// The admin credential hashes in effect.
    pub(crate) fn admin_hashes(&self) -> Vec<String> {
        self.admin
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|c| c.secret_hash.clone())
            .collect()
    }

    /// The name of the administrator whose credential `presented` is, if it
    /// is one. Every stored hash is compared, in constant time.
    pub(crate) fn admin_name(&self, presented: &str) -> Option<String> {
        use subtle::ConstantTimeEq;
        let hash = crate::caller::credential_hash(presented);
        let admins = self.admin.read().unwrap_or_else(|e| e.into_inner());
        let mut found = None;
        for credential in admins.iter() {
            if bool::from(credential.secret_hash.as_bytes().ct_eq(hash.as_bytes())) {
                found = Some(credential.name.clone());
            }
        }
        found
    }
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
