//! Starting and stopping a node: data directory, store, audit log, policies,
//! background reloads, the listener, and a shutdown that loses no record.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::serve::ListenerExt;
use mandate_authzen::BatchLimits;
use mandate_core::{AuditEvent, AuditKind};
use mandate_core::{HeadSealer, RequestDigester};
use mandate_identity::{SpiffeBundle, TrustBundles};
use mandate_policy::{PolicyEngine, ReloadOutcome};
use mandate_store::{AdminCredential, SigningKeyRecord, Store};
use mandate_store::{AuditLog, AuditLogConfig};
use mandate_tokens::SigningKeys;
use std::sync::RwLock;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

use crate::authority::{Authority, AuthorityConfig, TokenSettings};

use crate::config::Config;
use crate::metrics;
use crate::node;
use crate::routes::router;
use crate::state::AppState;
use crate::vault::SecretVault;

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
    let kek = node::secrets_kek(&config)?;

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
    let public_url: String = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .into();
    let tls_listener = match config.tls_addr() {
        Some(tls_addr) => Some(
            TcpListener::bind(tls_addr)
                .await
                .with_context(|| format!("cannot listen on {tls_addr} (tls_listen)"))?,
        ),
        None => None,
    };
    let tls_base: Option<String> = match &tls_listener {
        Some(l) => Some(
            config
                .tls_public_url
                .clone()
                .unwrap_or_else(|| {
                    format!(
                        "https://{}",
                        l.local_addr().map(|a| a.to_string()).unwrap_or_default()
                    )
                })
                .trim_end_matches('/')
                .into(),
        ),
        None => None,
    };
    let issuer = config.issuer.clone().unwrap_or_else(|| public_url.clone());
    let authority = Arc::new(
        start_authority(&config, &node_id, &issuer, &*store)
            .await
            .context("cannot start the token authority")?,
    );
    let admin = Arc::new(RwLock::new(
        admin_credentials(&*store, &audit, &node_id).await?,
    ));
    let secrets = Arc::new(SecretVault::new(kek, Arc::clone(&store)));
    warn_of_other_keks(&secrets).await?;
    let upstream_http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("cannot build the upstream HTTP client")?;
    let approvals = Arc::new(crate::approvals::Approvals::new(
        Arc::clone(&store),
        audit.clone(),
        upstream_http.clone(),
        crate::approvals::ApprovalSettings {
            timeout: Duration::from_secs(config.approval_timeout_seconds),
            poll: Duration::from_millis(config.sync_ms),
            webhook: crate::approval_webhook::Webhook::from_config(
                config.approval_webhook_url.as_deref(),
                config.approval_webhook_secret_file.as_deref(),
                std::env::var(crate::approval_webhook::SECRET_ENV)
                    .ok()
                    .map(zeroize::Zeroizing::new),
            )?,
            links_base: public_url.clone(),
        },
    ));
    let state = AppState {
        governor: Arc::new(crate::govern::Governor::new(&config)),
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
        public_url: public_url.as_str().into(),
        tls_base: tls_base.as_deref().map(Arc::from),
        metrics: metrics::handle(),
        authority: Arc::clone(&authority),
        upstreams: Arc::new(
            config
                .mcp_upstreams
                .iter()
                .map(|u| {
                    Ok((
                        u.name.clone(),
                        Arc::new(crate::mcp::Upstream::new(u.clone(), config.max_body_bytes)?),
                    ))
                })
                .collect::<anyhow::Result<_>>()?,
        ),
        mcp_allowed_origins: Arc::new(config.mcp_allowed_origins.clone()),
        proxy_upstreams: Arc::new(
            config
                .http_upstreams
                .iter()
                .map(|u| {
                    Ok((
                        u.name.clone(),
                        Arc::new(crate::proxy::ProxyUpstream::new(
                            u.clone(),
                            config.max_body_bytes,
                        )?),
                    ))
                })
                .collect::<anyhow::Result<_>>()?,
        ),
        upstream_http,
        approvals: Arc::clone(&approvals),
        admin: Arc::clone(&admin),
        secrets,
        posture: crate::posture::PostureSettings {
            idle_days: config.posture_idle_days,
            secret_max_age_days: config.posture_secret_max_age_days,
        },
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

    let syncer = tokio::spawn(sync_authority(
        Arc::clone(&authority),
        Arc::clone(&store),
        Duration::from_millis(config.sync_ms),
    ));
    let sweeper = approvals.spawn_sweeper();
    let admin_syncer = tokio::spawn(sync_admins(admin, Arc::clone(&store)));
    let timeout = Duration::from_millis(config.request_timeout_ms);
    let (stop_tx, stop_rx) = watch::channel(false);
    let tls_server = match (tls_listener, &tls_base) {
        (Some(l), Some(base)) => {
            let tls_addr = l.local_addr()?;
            let tls_config = crate::tls::server_config(
                &authority.config.ca,
                tls_addr,
                &config.tls_dns_names,
                crate::authority::now_seconds(),
            )?;
            let app = router(state.clone(), timeout, base);
            tracing::info!(%tls_addr, "listening (TLS, client certificates accepted)");
            println!("mandate listening on https://{tls_addr}");
            Some(tokio::spawn(crate::tls::serve(
                l,
                tls_config,
                app,
                stop_rx.clone(),
            )))
        }
        _ => None,
    };

    tracing::info!(%addr, node_id, backend = store.backend(), policies = status.policies, policy_dir = %policy_dir.display(), trust_domain = %authority.config.ca.trust_domain(), "listening");
    println!("mandate listening on http://{addr}");
    // Kept to stop the spawned (stdio) MCP upstreams at shutdown.
    let mcp_upstreams = Arc::clone(&state.upstreams);
    let app = router(state, timeout, &public_url);
    // Decisions are small request/response pairs: send each at once.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    let mut plain_stop = stop_rx.clone();
    let signals = tokio::spawn(async move {
        stop.wait().await;
        let _ = stop_tx.send(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = plain_stop.changed().await;
        })
        .await
        .context("server failed")?;
    if let Some(tls) = tls_server {
        let _ = tls.await;
    }
    signals.abort();

    for upstream in mcp_upstreams.values() {
        if let Some(stdio) = &upstream.stdio {
            stdio.shutdown().await;
        }
    }
    tracing::info!("shutting down: flushing the audit log");
    watcher.abort();
    syncer.abort();
    sweeper.abort();
    admin_syncer.abort();
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

/// The built-in CA, trust bundles and signing keys, and the first read of
/// agents and ended tasks.
async fn start_authority(
    config: &Config,
    node_id: &str,
    issuer: &str,
    store: &dyn Store,
) -> anyhow::Result<Authority> {
    let now = crate::authority::now_seconds();
    let ca = node::builtin_ca(&config.data_dir, &config.trust_domain, now)?;
    let mut bundles = TrustBundles::default();
    bundles.insert(ca.bundle());
    for source in &config.trust_bundles {
        let text = std::fs::read_to_string(&source.path)
            .with_context(|| format!("trust_bundles: cannot read {}", source.path.display()))?;
        let bundle = if text.trim_start().starts_with('{') {
            SpiffeBundle::from_json(&source.trust_domain, &text)
        } else {
            SpiffeBundle::from_pem(&source.trust_domain, &text)
        }
        .map_err(|e| {
            anyhow::anyhow!(
                "trust_bundles: {} is not a SPIFFE bundle for {}: {e}",
                source.path.display(),
                source.trust_domain
            )
        })?;
        bundles.insert(bundle);
    }
    let signing_key_path = config.data_dir.join("token-signing.key");
    let key = node::signing_key(&signing_key_path)?;
    let published = store.signing_keys().await?;
    if !published.iter().any(|k| k.kid == key.kid()) {
        store
            .publish_signing_key(&SigningKeyRecord {
                kid: key.kid().to_owned(),
                node_id: node_id.to_owned(),
                public_jwk: serde_json::to_string(&key.public_jwk())?,
                created_us: now.saturating_mul(1_000_000),
                retired_us: None,
            })
            .await?;
    }
    let overlap = u32::try_from(config.signing_key_overlap_seconds).unwrap_or(u32::MAX);
    let keys = SigningKeys::new(key, overlap);
    let authority = Authority::new(
        AuthorityConfig {
            issuer: issuer.to_owned(),
            audience: config
                .token_audience
                .clone()
                .unwrap_or_else(|| issuer.to_owned()),
            jwt_svid_audience: config
                .jwt_svid_audience
                .clone()
                .unwrap_or_else(|| issuer.to_owned()),
            ca,
            bundles,
            settings: TokenSettings {
                max_task_ttl_seconds: config.max_task_ttl_seconds,
                max_delegation_depth: config.max_delegation_depth,
                allow_bearer_tokens: config.allow_bearer_tokens,
                svid_ttl_seconds: config.svid_ttl_seconds,
                dpop_iat_window_seconds: config.dpop_iat_window_seconds,
                // Ten missed syncs, and never less than 5 s.
                stale_after_seconds: i64::try_from((config.sync_ms * 10).div_ceil(1000))
                    .unwrap_or(i64::MAX)
                    .max(5),
            },
            node_id: node_id.to_owned(),
            signing_key_path,
        },
        keys,
    );
    authority.sync(store).await?;
    Ok(authority)
}

/// The admin credentials. At the very first start of a store there is
/// none: one named `admin` is made, printed once on stderr, and only its hash
/// is kept.
async fn admin_credentials(
    store: &dyn Store,
    audit: &AuditLog,
    node_id: &str,
) -> anyhow::Result<Vec<AdminCredential>> {
    let existing = store.admin_credentials().await?;
    if !existing.is_empty() {
        return Ok(existing);
    }
    let credential = crate::caller::new_admin_credential()?;
    let hash = crate::caller::credential_hash(&credential);
    let id = format!("admin-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let first = AdminCredential {
        id: id.clone(),
        name: "admin".to_owned(),
        secret_hash: hash,
        created_us: crate::routes::now_us(),
    };
    store.insert_admin_credential(&first).await?;
    audit
        .append(vec![AuditEvent {
            time_us: crate::routes::now_us(),
            kind: AuditKind::AdminAccess,
            request_id: String::new(),
            subject: format!("Node::\"{node_id}\""),
            action: "Action::\"create_admin_credential\"".into(),
            resource: format!("AdminCredential::\"{id}\""),
            outcome: "created".into(),
            policies: Vec::new(),
            request_digest: String::new(),
            detail: serde_json::json!({"id": id, "name": first.name}),
        }])
        .await
        .context("cannot record the admin credential in the audit log")?;
    eprintln!(
        "mandate admin credential (shown once, only its hash is kept; export it as MANDATE_ADMIN_TOKEN): {credential}"
    );
    Ok(vec![first])
}

/// Re-reads the admin credentials every second, so that one made (or
/// deleted) through another node sharing the store counts here too.
async fn sync_admins(admin: Arc<RwLock<Vec<AdminCredential>>>, store: Arc<dyn Store>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.admin_credentials().await {
            Ok(credentials) => *admin.write().unwrap_or_else(|e| e.into_inner()) = credentials,
            Err(error) => tracing::debug!(%error, "cannot re-read the admin credentials"),
        }
    }
}

/// Says at start which stored secrets the loaded KEK cannot open (sealed
/// under another one): they stay listed, and revealing them fails, until they
/// are rotated or the node runs with their KEK.
async fn warn_of_other_keks(secrets: &SecretVault) -> anyhow::Result<()> {
    let others = secrets
        .other_keks()
        .await
        .context("cannot read the secrets")?;
    for (kek_id, count) in others {
        tracing::warn!(
            sealed_under = %kek_id,
            loaded = secrets.kek_id(),
            secrets = count,
            "some secrets are sealed under another KEK than the loaded one; they cannot be revealed until rotated or until the node runs with that KEK"
        );
    }
    Ok(())
}

/// Re-reads revocations, agents and keys from the store every `every`.
async fn sync_authority(authority: Arc<Authority>, store: Arc<dyn Store>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        match authority.sync(&*store).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("store readable again: revocations and agents in sync");
            }
            Ok(()) => {}
            Err(error) if !failing => {
                failing = true;
                tracing::error!(%error, "cannot re-read revocations and agents from the store; changes from other nodes are not seen until it recovers");
            }
            Err(_) => {}
        }
    }
}
