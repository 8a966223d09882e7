//! AuthZEN with a task token as the subject.
//!
//! A PEP (or the agent itself) sends
//! `{"type": "task_token", "id": "<token>", "properties": {"dpop_proof": "<proof>"}}`
//! as the subject. The proof is made for `POST <this endpoint's URL>` with
//! `ath` of the token; an mTLS-bound token instead needs the agent's
//! certificate on the connection. Once verified (signature, expiry, audience,
//! binding, revocation, agents active), the subject becomes the acting agent,
//! `Agent::"<SPIFFE ID>"` with its registry attributes (`name`, `owner`, `env`,
//! `function`, `spiffe_id`), and `context.task` is set to the task:
//! `id`, `purpose`, `tools` (a set of `Tool` entities), `data_domains` (a set
//! of `DataDomain` entities), `capabilities`, `depth` and `delegation_chain`
//! (the SPIFFE IDs of every agent in the chain, the root agent's included).
//!
//! `context.session` is set too: `labels`, every data label the task's
//! delegation tree has touched through the gateway and the proxy.
//!
//! The subject type `Agent` and, with a token, `context.task` and
//! `context.session` are reserved: a caller cannot claim to be an agent or
//! describe its task or session without the token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mandate_authzen::{EvaluationRequest, ItemRefusal, Subject, SubjectResolver};
use mandate_store::AgentRecord;
use mandate_tokens::{Presentation, TaskClaims};
use serde_json::{Map, Value, json};

use crate::authority::{Authority, agents_in_chain, now_seconds};
use crate::caller::PeerCertificates;
use crate::error::ApiError;
use crate::issuance::AGENT_TYPE;
use crate::oauth::peer_x5t;
use crate::state::AppState;

/// The AuthZEN subject type that carries a task token.
pub(crate) const TASK_TOKEN_TYPE: &str = "task_token";

/// Why a request's subject cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResolveError {
    /// The request uses a reserved name.
    Reserved(String),
    /// The task token was refused.
    Token(String),
    /// The task's session state was not read (the store failed).
    Unavailable(String),
}

impl From<ResolveError> for ApiError {
    fn from(e: ResolveError) -> ApiError {
        match e {
            ResolveError::Reserved(m) => ApiError::BadRequest(m),
            ResolveError::Token(m) => ApiError::TokenRefused(m),
            ResolveError::Unavailable(m) => ApiError::Unavailable(m),
        }
    }
}

type Verified = Result<(Arc<TaskClaims>, AgentRecord), String>;

/// Resolves task-token subjects of one HTTP request. A batch may name the
/// same token and proof in every item: it is checked once per request, so the
/// proof's `jti` is not taken for a replay by the second item.
pub(crate) struct TaskTokenResolver {
    authority: Arc<Authority>,
    uri: String,
    x5t: Option<String>,
    now: i64,
    seen: Mutex<HashMap<(String, String), Verified>>,
    /// Session labels by root task, read before deciding
    /// ([`prefetch_session_labels`]): the resolver itself cannot wait.
    labels: HashMap<String, Arc<Vec<String>>>,
}

impl TaskTokenResolver {
    pub(crate) fn new(state: &AppState, uri: String, peer: PeerCertificates) -> Self {
        TaskTokenResolver {
            authority: Arc::clone(&state.authority),
            uri,
            x5t: peer_x5t(&peer),
            now: now_seconds(),
            seen: Mutex::new(HashMap::new()),
            labels: HashMap::new(),
        }
    }

    /// The session labels read by [`prefetch_session_labels`].
    pub(crate) fn with_labels(mut self, labels: HashMap<String, Arc<Vec<String>>>) -> Self {
        self.labels = labels;
        self
    }

    /// The verified token of `task_id` among those this request presented.
    pub(crate) fn verified_task(&self, task_id: &str) -> Option<(Arc<TaskClaims>, AgentRecord)> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.values()
            .filter_map(|v| v.as_ref().ok())
            .find(|(claims, _)| claims.task_id == task_id)
            .cloned()
    }

    pub(crate) fn resolve_typed(
        &self,
        request: &mut EvaluationRequest,
    ) -> Result<(), ResolveError> {
        if request.subject.kind == AGENT_TYPE {
            return Err(ResolveError::Reserved(format!(
                "subject type {AGENT_TYPE} is reserved for verified task tokens: send {{\"type\": \"{TASK_TOKEN_TYPE}\", \"id\": \"<task token>\", \"properties\": {{\"dpop_proof\": \"<proof>\"}}}}"
            )));
        }
        if request.subject.kind != TASK_TOKEN_TYPE {
            return Ok(());
        }
        for reserved in ["task", "session"] {
            if request
                .context
                .as_ref()
                .is_some_and(|c| c.contains_key(reserved))
            {
                return Err(ResolveError::Reserved(format!(
                    "context.{reserved} is filled in by Mandate from the task token; do not send it"
                )));
            }
        }
        let proof = match request
            .subject
            .properties
            .as_ref()
            .and_then(|p| p.get("dpop_proof"))
        {
            None => None,
            Some(Value::String(p)) => Some(p.clone()),
            Some(_) => {
                return Err(ResolveError::Reserved(
                    "subject.properties.dpop_proof must be a string".into(),
                ));
            }
        };
        let token = request.subject.id.clone();
        let key = (token, proof.unwrap_or_default());
        let verified = {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.entry(key.clone())
                .or_insert_with(|| {
                    self.authority
                        .verify_presented(&Presentation {
                            token: &key.0,
                            dpop_proof: (!key.1.is_empty()).then_some(key.1.as_str()),
                            method: "POST",
                            uri: &self.uri,
                            client_cert_x5t: self.x5t.as_deref(),
                            now: self.now,
                        })
                        .map_err(|e| e.to_string())
                })
                .clone()
        };
        let (claims, agent) = verified.map_err(ResolveError::Token)?;
        let labels = self
            .labels
            .get(crate::govern::root_task(&claims))
            .ok_or_else(|| {
                ResolveError::Unavailable("the task's session state was not read".into())
            })?;
        request.subject = agent_subject(&agent);
        let context = request.context.get_or_insert_with(Map::new);
        context.insert("task".into(), task_context(&claims));
        context.insert("session".into(), json!({"labels": labels.as_slice()}));
        Ok(())
    }
}

impl SubjectResolver for TaskTokenResolver {
    fn resolve(&self, request: &mut EvaluationRequest) -> Result<(), ItemRefusal> {
        self.resolve_typed(request).map_err(|e| match e {
            ResolveError::Reserved(m) => ItemRefusal::bad_request(m),
            ResolveError::Token(m) => ItemRefusal {
                status: 401,
                message: format!("task token refused: {m}"),
            },
            ResolveError::Unavailable(m) => ItemRefusal {
                status: 503,
                message: m,
            },
        })
    }
}

/// The root task a presented token names, read without verifying it: only
/// to know which session labels to read before the token is verified. The
/// verified token's root is looked up among them; a token whose unverified
/// and verified roots differ does not exist (the signature covers both).
fn unverified_root(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let root = claims
        .get("task_chain")
        .and_then(|c| c.get(0))
        .or_else(|| claims.get("task_id"))?;
    root.as_str().map(str::to_owned)
}

/// Reads the session labels of every task token among `subjects`.
pub(crate) async fn prefetch_session_labels<'a>(
    state: &AppState,
    subjects: impl IntoIterator<Item = &'a Value>,
) -> Result<HashMap<String, Arc<Vec<String>>>, ApiError> {
    let mut labels = HashMap::new();
    for subject in subjects {
        if subject.get("type").and_then(Value::as_str) != Some(TASK_TOKEN_TYPE) {
            continue;
        }
        let Some(root) = subject
            .get("id")
            .and_then(Value::as_str)
            .and_then(unverified_root)
        else {
            continue;
        };
        if labels.contains_key(&root) {
            continue;
        }
        let read = state
            .governor
            .session_labels(&*state.store, &root, true)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "session state unavailable");
                ApiError::Unavailable("the task's session state cannot be read".into())
            })?;
        labels.insert(root, read);
    }
    Ok(labels)
}

fn agent_subject(agent: &AgentRecord) -> Subject {
    let mut properties = Map::new();
    for (k, v) in [
        ("name", &agent.name),
        ("owner", &agent.owner),
        ("env", &agent.env),
        ("function", &agent.function),
        ("spiffe_id", &agent.spiffe_id),
    ] {
        properties.insert(k.into(), Value::from(v.as_str()));
    }
    Subject {
        kind: AGENT_TYPE.into(),
        id: agent.spiffe_id.clone(),
        properties: Some(properties),
    }
}

fn entity(kind: &str, id: &str) -> Value {
    json!({"__entity": {"type": kind, "id": id}})
}

/// `context.task` for a verified token.
pub(crate) fn task_context(claims: &TaskClaims) -> Value {
    let grant = claims.grant();
    json!({
        "id": claims.task_id,
        "purpose": grant.purpose,
        "tools": grant.tools.iter().map(|t| entity("Tool", t)).collect::<Vec<_>>(),
        "data_domains": grant.data_domains.iter().map(|d| entity("DataDomain", d)).collect::<Vec<_>>(),
        "capabilities": grant.capabilities.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "depth": claims.delegation_depth(),
        "delegation_chain": agents_in_chain(claims).iter().map(|a| a.as_str()).collect::<Vec<_>>(),
    })
}
