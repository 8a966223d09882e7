//! The node's view of who agents are and which tasks are over: the built-in CA,
//! trust bundles, signing keys, the agent directory and the set of ended
//! tasks, held in memory for the per-call checks and refreshed from the store
//! (changes made on this node apply at once; other nodes' within `sync_ms`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use mandate_identity::{BuiltinCa, TrustBundles};
use mandate_store::{AgentRecord, AgentStatus, Store, StoreError};
use mandate_tokens::{
    MemoryReplayGuard, Presentation, PresentationError, PresentationVerifier, SigningKeys,
    SpiffeId, TaskClaims, TokenError,
};

/// Settings of issuance and verification, from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct TokenSettings {
    pub(crate) max_task_ttl_seconds: u64,
    pub(crate) max_delegation_depth: usize,
    pub(crate) allow_bearer_tokens: bool,
    pub(crate) svid_ttl_seconds: u64,
    pub(crate) dpop_iat_window_seconds: u32,
    /// Revocation state older than this refuses every token (fail closed).
    pub(crate) stale_after_seconds: i64,
}

/// Why a presented task token is not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenRefusal {
    /// Signature, claims, binding or revocation.
    #[error(transparent)]
    Presentation(#[from] PresentationError),
    /// This node has not been able to re-read revocations from the store for
    /// too long: it cannot know whether the token was revoked elsewhere.
    #[error(
        "revocation state is {age} s old (the store cannot be read); task tokens are refused until it is current again"
    )]
    Stale {
        /// Seconds since the last successful read.
        age: i64,
    },
    /// The token predates the agent's current credentials.
    #[error("the token was issued before agent {agent} was re-registered or re-keyed")]
    Predates {
        /// Its SPIFFE ID.
        agent: String,
    },
    /// The agent (or one in the delegation chain) is suspended or gone.
    #[error("agent {agent} is {state}")]
    Agent {
        /// Its SPIFFE ID.
        agent: String,
        /// `suspended` or `not registered`.
        state: &'static str,
    },
}

impl TokenRefusal {
    /// The RFC 6750 / 9449 error code.
    pub(crate) fn error_code(&self) -> &'static str {
        match self {
            TokenRefusal::Presentation(p) => p.error_code(),
            TokenRefusal::Agent { .. }
            | TokenRefusal::Stale { .. }
            | TokenRefusal::Predates { .. } => "invalid_token",
        }
    }
}

/// Seconds since the epoch.
pub(crate) fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The agent acting under `claims`: the last actor of a delegated token, else
/// the subject.
pub(crate) fn acting_agent(claims: &TaskClaims) -> &SpiffeId {
    claims.act.as_ref().map_or(&claims.sub, |a| &a.sub)
}

/// Every agent named by `claims`: the subject and each actor.
pub(crate) fn agents_in_chain(claims: &TaskClaims) -> Vec<&SpiffeId> {
    let mut out = vec![&claims.sub];
    let mut next = claims.act.as_ref();
    while let Some(actor) = next {
        out.push(&actor.sub);
        next = actor.act.as_deref();
    }
    out
}

/// What an [`Authority`] is set up with at start, and keeps.
pub(crate) struct AuthorityConfig {
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) jwt_svid_audience: String,
    pub(crate) ca: BuiltinCa,
    pub(crate) bundles: TrustBundles,
    pub(crate) settings: TokenSettings,
    pub(crate) node_id: String,
    pub(crate) signing_key_path: PathBuf,
}

/// Identity and token state shared by every request.
pub(crate) struct Authority {
    pub(crate) config: AuthorityConfig,
    keys: RwLock<SigningKeys>,
    verifier: PresentationVerifier,
    dpop: mandate_tokens::DpopVerifier,
    replay: MemoryReplayGuard,
    ended: RwLock<HashSet<String>>,
    agents: RwLock<Arc<HashMap<String, AgentRecord>>>,
    /// The peer keys last loaded, so the key set (and the verified-token
    /// cache) changes only when they do.
    peer_keys: std::sync::Mutex<Vec<(String, Option<i64>)>>,
    /// Bumped by every local agent change, so a sync that read the store
    /// before the change does not put the old state back.
    agent_changes: AtomicU64,
    /// The same for tasks ended on this node.
    ended_changes: AtomicU64,
    /// When revocations were last read from the store, unix seconds.
    synced_at: AtomicI64,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("issuer", &self.config.issuer)
            .field("trust_domain", &self.config.ca.trust_domain())
            .finish_non_exhaustive()
    }
}

/// Most verified tokens remembered, so a token's signature is checked once.
const TOKEN_CACHE: usize = 65_536;
/// Most DPoP proof `jti`s remembered for replay detection.
const REPLAY_MEMORY: usize = 1 << 20;

impl Authority {
    pub(crate) fn new(config: AuthorityConfig, keys: SigningKeys) -> Authority {
        let settings = &config.settings;
        let dpop = mandate_tokens::DpopVerifier::new(settings.dpop_iat_window_seconds);
        Authority {
            verifier: PresentationVerifier::new(
                &config.issuer,
                &config.audience,
                dpop.clone(),
                TOKEN_CACHE,
            )
            .accept_unbound(settings.allow_bearer_tokens),
            dpop,
            keys: RwLock::new(keys),
            replay: MemoryReplayGuard::new(REPLAY_MEMORY),
            ended: RwLock::new(HashSet::new()),
            agents: RwLock::new(Arc::new(HashMap::new())),
            agent_changes: AtomicU64::new(0),
            ended_changes: AtomicU64::new(0),
            peer_keys: std::sync::Mutex::new(Vec::new()),
            synced_at: AtomicI64::new(0),
            config,
        }
    }

    /// The signing keys, for issuing and for the JWKS.
    pub(crate) fn keys(&self) -> std::sync::RwLockReadGuard<'_, SigningKeys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the signing keys; verified tokens are forgotten.
    pub(crate) fn update_keys(&self, change: impl FnOnce(&mut SigningKeys)) {
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        change(&mut keys);
        self.verifier.cache().clear();
    }

    /// The DPoP proof checker (at the token endpoint, where no token is bound yet).
    pub(crate) fn dpop(&self) -> &mandate_tokens::DpopVerifier {
        &self.dpop
    }

    pub(crate) fn replay(&self) -> &MemoryReplayGuard {
        &self.replay
    }

    /// Whether a task has ended (completed or revoked).
    pub(crate) fn is_ended(&self, task_id: &str) -> bool {
        self.ended
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(task_id)
    }

    /// Marks tasks ended on this node at once (the store already says so).
    pub(crate) fn mark_ended<'a>(&self, task_ids: impl IntoIterator<Item = &'a String>) {
        let mut ended = self.ended.write().unwrap_or_else(|e| e.into_inner());
        self.ended_changes.fetch_add(1, Ordering::SeqCst);
        ended.extend(task_ids.into_iter().cloned());
    }

    /// The registered agent with this SPIFFE ID.
    pub(crate) fn agent(&self, spiffe_id: &str) -> Option<AgentRecord> {
        self.agents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(spiffe_id)
            .cloned()
    }

    /// Puts a changed agent in the directory at once (`None`: deleted).
    pub(crate) fn put_agent(&self, spiffe_id: &str, agent: Option<AgentRecord>) {
        let mut guard = self.agents.write().unwrap_or_else(|e| e.into_inner());
        self.agent_changes.fetch_add(1, Ordering::SeqCst);
        let mut map = HashMap::clone(&guard);
        match agent {
            Some(a) => map.insert(spiffe_id.to_owned(), a),
            None => map.remove(spiffe_id),
        };
        *guard = Arc::new(map);
    }

    /// Is this agent registered and active? The refusal says which it is not.
    pub(crate) fn check_active(&self, id: &SpiffeId) -> Result<AgentRecord, TokenRefusal> {
        match self.agent(id.as_str()) {
            Some(a) if a.status == AgentStatus::Active => Ok(a),
            Some(_) => Err(TokenRefusal::Agent {
                agent: id.to_string(),
                state: "suspended",
            }),
            None => Err(TokenRefusal::Agent {
                agent: id.to_string(),
                state: "not registered",
            }),
        }
    }

    /// The per-call check of a presented task token: signature (once per
    /// token), expiry, binding, revocation of the task and its ancestors, and
    /// every agent of the chain still active. Returns the claims and the
    /// acting agent's record.
    pub(crate) fn verify_presented(
        &self,
        presentation: &Presentation<'_>,
    ) -> Result<(Arc<TaskClaims>, AgentRecord), TokenRefusal> {
        self.check_fresh(presentation.now)?;
        let keys = self.keys();
        let claims = self.verifier.verify(
            &keys,
            &self.replay,
            &|task_id: &str| self.is_ended(task_id),
            presentation,
        )?;
        drop(keys);
        self.check_chain(&claims).map(|agent| (claims, agent))
    }

    /// A token's signature and claims, expiry and revocation, without a
    /// binding check: for introspection and for a parent token at delegation.
    pub(crate) fn verify_unbound(
        &self,
        token: &str,
        now: i64,
    ) -> Result<(TaskClaims, AgentRecord), TokenRefusal> {
        self.check_fresh(now)?;
        let claims = self
            .keys()
            .verify(token, now, &self.config.audience, &self.config.issuer)
            .map_err(|e: TokenError| TokenRefusal::Presentation(PresentationError::Token(e)))?;
        if let Some(task_id) = claims.task_lineage().find(|id| self.is_ended(id)) {
            return Err(TokenRefusal::Presentation(PresentationError::Revoked {
                task_id: task_id.to_owned(),
            }));
        }
        let agent = self.check_chain(&claims)?;
        Ok((claims, agent))
    }

    /// The signature, `iss`, `aud` and expiry of a token, and nothing else:
    /// enough for an administrator to revoke it.
    pub(crate) fn verify_signature(
        &self,
        token: &str,
        now: i64,
    ) -> Result<TaskClaims, TokenRefusal> {
        self.keys()
            .verify(token, now, &self.config.audience, &self.config.issuer)
            .map_err(|e| TokenRefusal::Presentation(PresentationError::Token(e)))
    }

    /// The token and the caller's proof of possessing it, whatever the state
    /// of its task and agents: enough for its holder to revoke it.
    pub(crate) fn verify_possession(
        &self,
        presentation: &Presentation<'_>,
    ) -> Result<Arc<TaskClaims>, TokenRefusal> {
        let keys = self.keys();
        Ok(self
            .verifier
            .verify(&keys, &self.replay, &|_: &str| false, presentation)?)
    }

    /// Refuses every token while the revocation state is stale.
    fn check_fresh(&self, now: i64) -> Result<(), TokenRefusal> {
        let age = now.saturating_sub(self.synced_at.load(Ordering::SeqCst));
        if age > self.config.settings.stale_after_seconds {
            return Err(TokenRefusal::Stale { age });
        }
        Ok(())
    }

    fn check_chain(&self, claims: &TaskClaims) -> Result<AgentRecord, TokenRefusal> {
        for id in agents_in_chain(claims) {
            let agent = self.check_active(id)?;
            if claims.iat < agent.credentials_since_us.div_euclid(1_000_000) {
                return Err(TokenRefusal::Predates {
                    agent: id.to_string(),
                });
            }
        }
        self.check_active(acting_agent(claims))
    }

    /// Re-reads ended tasks and agents from the store (other nodes' changes).
    pub(crate) async fn sync(&self, store: &dyn Store) -> Result<(), StoreError> {
        let now_us = now_seconds().saturating_mul(1_000_000);
        let generation = self.agent_changes.load(Ordering::SeqCst);
        let ended_generation = self.ended_changes.load(Ordering::SeqCst);
        let ended: HashSet<String> = store
            .ended_tasks_unexpired(now_us)
            .await?
            .into_iter()
            .collect();
        let agents: HashMap<String, AgentRecord> = store
            .agents()
            .await?
            .into_iter()
            .map(|a| (a.spiffe_id.clone(), a))
            .collect();
        {
            // The store's set replaces the memory's only if no task ended on
            // this node since the read began (it might not be in the read);
            // otherwise the read is added. Expired tasks thus leave memory at
            // a later sync; expiry refuses them meanwhile.
            let mut set = self.ended.write().unwrap_or_else(|e| e.into_inner());
            if self.ended_changes.load(Ordering::SeqCst) == ended_generation {
                *set = ended;
            } else {
                set.extend(ended);
            }
        }
        {
            let mut guard = self.agents.write().unwrap_or_else(|e| e.into_inner());
            if self.agent_changes.load(Ordering::SeqCst) == generation {
                *guard = Arc::new(agents);
            }
        }
        self.synced_at.store(now_us / 1_000_000, Ordering::SeqCst);
        self.sync_peer_keys(store).await
    }

    /// Loads the published signing keys (same store, same issuer): other
    /// nodes' keys, and this node's own keys retired before a restart, so a
    /// token issued by any node verifies on every node until its key's
    /// overlap ends. Keys this node holds in memory are skipped.
    async fn sync_peer_keys(&self, store: &dyn Store) -> Result<(), StoreError> {
        let records = store.signing_keys().await?;
        let seen: Vec<(String, Option<i64>)> = records
            .iter()
            .map(|r| (r.kid.clone(), r.retired_us))
            .collect();
        {
            let mut last = self.peer_keys.lock().unwrap_or_else(|e| e.into_inner());
            if *last == seen {
                return Ok(());
            }
            *last = seen;
        }
        let mut peers = Vec::new();
        for record in &records {
            let jwk = serde_json::from_str(&record.public_jwk)
                .ok()
                .and_then(|v| mandate_tokens::PublicJwk::from_json(&v).ok());
            match jwk {
                Some(jwk) => peers.push((
                    record.kid.clone(),
                    jwk,
                    record.retired_us.map(|us| us / 1_000_000),
                )),
                None => {
                    tracing::warn!(kid = %record.kid, node = %record.node_id, "a published signing key is not a public JWK; ignored")
                }
            }
        }
        let mut outcome = Ok(());
        self.update_keys(|keys| outcome = keys.set_peer_keys(&peers));
        if let Err(error) = outcome {
            tracing::warn!(%error, "peer signing keys refused");
        }
        Ok(())
    }
}
