//! Prometheus metrics: names are defined here, once.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Decisions, by `decision` (allow/deny) and `endpoint`.
pub(crate) const DECISIONS: &str = "mandate_decisions_total";
/// Time to decide and record one HTTP evaluation request, in seconds.
pub(crate) const DECISION_SECONDS: &str = "mandate_decision_seconds";
/// Policy reloads that failed (the old policies stayed in service).
pub(crate) const RELOAD_ERRORS: &str = "mandate_policy_reload_errors_total";
/// Successful policy reloads.
pub(crate) const RELOADS: &str = "mandate_policy_reloads_total";
/// 1 when the policy files on disk are the ones in service, 0 after a failed reload.
pub(crate) const POLICY_HEALTHY: &str = "mandate_policy_reload_healthy";
/// Task tokens issued, by `kind` (root/delegated).
pub(crate) const TOKENS_ISSUED: &str = "mandate_tokens_issued_total";
/// Policies in service.
pub(crate) const POLICIES: &str = "mandate_policies";
/// Calls denied for leaving their task's declared scope, by `agent` (SPIFFE ID).
pub(crate) const DRIFT: &str = "mandate_drift_total";
/// Gateway and proxy calls refused, by `reason` (a policy's `@reason` word,
/// `no_permit`, `rate_limited`, `budget_exhausted`, `approval_denied`, ...)
/// and `endpoint` (`mcp`, `proxy`).
pub(crate) const CALLS_REFUSED: &str = "mandate_calls_refused_total";

/// The process-wide recorder, installed on first use.
pub(crate) fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 1.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first (a test
            // harness); the handle still renders this recorder's metrics.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
