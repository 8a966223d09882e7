//! Starting and stopping a node: data directory, store, audit log, policies,
//! background reloads, the listener, and a shutdown that loses no record.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::serve::ListenerExt;
use mandate_authzen::BatchLimits;
use mandate_core::{HeadSealer, RequestDigester};
use mandate_policy::{PolicyEngine, ReloadOutcome};
use mandate_store::{AuditLog, AuditLogConfig};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::config::Config;
use crate::metrics;
use crate::node;
use crate::routes::router;
use crate::state::AppState;

/// Most bytes of batch defaults one batch may make Mandate process (items that
/// inherit the defaults × their size): 32 MiB, far above any real PEP's batch.
const BATCH_WORK_BYTES: usize = 32 << 20;

/// Runs a node until SIGINT or SIGTERM, then drains requests and flushes the
/// audit log. Prints `mandate listening on http://ADDR` on stdout once it accepts
/// connections.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    node::ensure_data_dir(&config.data_dir)?;
    let node_id = match &config.node_id {
        Some(id) => id.clone(),
        None => node::node_id(&config.data_dir)?,
    };
    let digester = RequestDigester::new(&node::digest_key(&config.data_dir)?);

    let policy_dir = config.policy_dir();
    if config.policy_dir.is_none() && !policy_dir.exists() {
        std::fs::create_dir_all(&policy_dir)
            .with_context(|| format!("cannot create {}", policy_dir.display()))?;
        tracing::warn!(dir = %policy_dir.display(), "no policy directory given; created an empty one, so every request is denied");
    }
    let engine = Arc::new(
        PolicyEngine::load(&policy_dir)
            .with_context(|| format!("policies in {} are not valid", policy_dir.display()))?,
    );
    for warning in engine.current().warnings() {
        tracing::warn!(%warning, "policy warning");
    }
    if !engine.current().has_schema() {
        tracing::warn!(
            dir = %policy_dir.display(),
            "no *.cedarschema in the policy directory: requests are not type-checked, so a caller can name any entity type as its subject (even a group type that policies test with `in`) and supply properties of any type; add a schema before production use"
        );
    }

    let store = mandate_store::connect(&config.database_url())
        .await
        .context("cannot open the store")?;
    let sealer = HeadSealer::new(&node::head_key(&config.data_dir)?);
    let audit = AuditLog::start(
        Arc::clone(&store),
        node_id.clone(),
        sealer,
        AuditLogConfig {
            max_batch: config.audit_max_batch,
            ..AuditLogConfig::default()
        },
    )
    .await
    .context("cannot open the audit log")?;

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let state = AppState {
        engine: Arc::clone(&engine),
        store: Arc::clone(&store),
        audit: audit.clone(),
        digester,
        limits: BatchLimits {
            max_items: config.max_batch_items,
            explain: config.explain_decisions,
            max_work_bytes: BATCH_WORK_BYTES,
        },
        max_body_bytes: config.max_body_bytes,
        api_key: config.authzen_api_key.as_deref().map(Arc::from),
        public_url: config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"))
            .trim_end_matches('/')
            .into(),
        metrics: metrics::handle(),
    };
    let status = engine.status();
    ::metrics::gauge!(metrics::POLICIES).set(status.policies as f64);
    ::metrics::gauge!(metrics::POLICY_HEALTHY).set(1.0);
    // Every handler is installed before the node says it is listening: a
    // signal that arrives earlier would otherwise take its default action and
    // kill the process without a clean shutdown.
    let hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let stop = Shutdown {
        interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
    };
    let watcher = tokio::spawn(watch_policies(
        Arc::clone(&engine),
        Duration::from_millis(config.policy_poll_ms),
        hangup,
    ));

    tracing::info!(%addr, node_id, backend = store.backend(), policies = status.policies, policy_dir = %policy_dir.display(), "listening");
    println!("mandate listening on http://{addr}");
    let app = router(state, Duration::from_millis(config.request_timeout_ms));
    // Decisions are small request/response pairs: send each at once.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.wait())
        .await
        .context("server failed")?;

    tracing::info!("shutting down: flushing the audit log");
    watcher.abort();
    audit.shutdown().await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Polls the policy directory, and reloads at once on SIGHUP.
async fn watch_policies(engine: Arc<PolicyEngine>, every: Duration, mut hangup: Signal) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            Some(()) = hangup.recv() => true,
        };
        let engine_ref = Arc::clone(&engine);
        let result = tokio::task::spawn_blocking(move || {
            if forced {
                engine_ref.reload()
            } else {
                engine_ref.reload_if_changed()
            }
        })
        .await;
        match result {
            Ok(Ok(ReloadOutcome::Unchanged | ReloadOutcome::Settling)) => {}
            Ok(Ok(ReloadOutcome::Reloaded)) => {
                let status = engine.status();
                ::metrics::counter!(metrics::RELOADS).increment(1);
                ::metrics::gauge!(metrics::POLICIES).set(status.policies as f64);
                ::metrics::gauge!(metrics::POLICY_HEALTHY).set(1.0);
                tracing::info!(
                    policies = status.policies,
                    generation = status.generation,
                    forced,
                    "policies reloaded"
                );
            }
            Ok(Err(error)) => {
                ::metrics::counter!(metrics::RELOAD_ERRORS).increment(1);
                ::metrics::gauge!(metrics::POLICY_HEALTHY).set(0.0);
                tracing::error!(%error, "policy reload failed; the previous policies stay in service");
            }
            Err(join) => tracing::error!(error = %join, "policy reload task failed"),
        }
    }
}

/// SIGINT and SIGTERM, installed up front.
struct Shutdown {
    interrupt: Signal,
    terminate: Signal,
}

impl Shutdown {
    async fn wait(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
        tracing::info!("shutdown requested");
    }
}
