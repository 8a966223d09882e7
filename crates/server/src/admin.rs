//! The admin API (`/admin/v1/...`): the agent registry, SVIDs from the
//! built-in CA, signing-key rotation and task lookup. Never open: every call
//! needs the admin credential (`Authorization: Bearer mandate_admin_...`),
//! made at first start, shown once and stored only as a hash.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mandate_core::AuditKind;
use mandate_store::{AgentRecord, AgentStatus, SigningKeyRecord, StoreError};
use mandate_tokens::{SigningKey, SpiffeId};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::authority::now_seconds;
use crate::caller::{authorization, matches_admin};
use crate::error::ApiError;
use crate::oauth::{audit, token_event};
use crate::routes::{now_us, read_json_body};
use crate::state::AppState;

/// The admin routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/agents", get(list_agents).post(create_agent))
        .route(
            "/admin/v1/agents/{name}",
            get(show_agent).delete(delete_agent),
        )
        .route("/admin/v1/agents/{name}/suspend", post(suspend_agent))
        .route("/admin/v1/agents/{name}/resume", post(resume_agent))
        .route("/admin/v1/agents/{name}/svid", post(renew_svid))
        .route("/admin/v1/keys/rotate", post(rotate_keys))
        .route("/admin/v1/tasks/{id}", get(show_task))
        .route("/admin/v1/tasks/{id}/revoke", post(revoke_task))
}

pub(crate) fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match authorization(headers, "Bearer") {
        Some(c) if matches_admin(c, &state.admin_hashes()) => Ok(()),
        _ => Err(ApiError::AdminRequired),
    }
}

/// The name of the administrator whose credential the request carries
/// (`Authorization: Bearer mandate_admin_...`).
pub(crate) fn require_admin_name(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    authorization(headers, "Bearer")
        .and_then(|c| state.admin_name(c))
        .ok_or(ApiError::AdminRequired)
}

pub(crate) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict { what } => ApiError::Conflict(what),
        other => ApiError::Internal(other.to_string()),
    }
}

/// An agent as the API shows it.
fn agent_json(a: &AgentRecord) -> Value {
    json!({
        "name": a.name,
        "spiffe_id": a.spiffe_id,
        "owner": a.owner,
        "env": a.env,
        "function": a.function,
        "status": a.status.as_str(),
        "created_at": rfc3339(a.created_us),
        "updated_at": rfc3339(a.updated_us),
    })
}

pub(crate) fn rfc3339(us: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAgent {
    name: String,
    owner: String,
    env: String,
    function: String,
    /// For an agent whose identity comes from another trust domain (SPIRE).
    spiffe_id: Option<String>,
    /// SubjectPublicKeyInfo PEM: issue an X.509-SVID for this key.
    public_key_pem: Option<String>,
}

/// Checks a field against a length and a character rule.
fn check_field(
    name: &str,
    value: &str,
    max: usize,
    ok: impl Fn(char) -> bool,
    rule: &str,
) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::BadRequest(format!("{name} must not be empty")));
    }
    if value.chars().count() > max {
        return Err(ApiError::BadRequest(format!(
            "{name} must be at most {max} characters"
        )));
    }
    if !value.chars().all(ok) {
        return Err(ApiError::BadRequest(format!("{name}: {rule}")));
    }
    Ok(())
}

fn validate_new_agent(a: &NewAgent) -> Result<(), ApiError> {
    check_field(
        "name",
        &a.name,
        63,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'),
        "use lower-case letters, digits, '-', '_' and '.'",
    )?;
    if a.name.starts_with('.') || a.name.contains("..") {
        return Err(ApiError::BadRequest(
            "name must not start with '.' or contain '..'".into(),
        ));
    }
    check_field(
        "owner",
        &a.owner,
        254,
        |c| !c.is_whitespace() && !c.is_control(),
        "must be an e-mail address without spaces",
    )?;
    let at = a.owner.find('@');
    if !at.is_some_and(|i| i > 0 && i + 1 < a.owner.len()) {
        return Err(ApiError::BadRequest(
            "owner must be an e-mail address (the person accountable for the agent)".into(),
        ));
    }
    check_field(
        "env",
        &a.env,
        32,
        |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'),
        "use letters, digits, '-' and '_' (e.g. dev, staging, prod)",
    )?;
    check_field(
        "function",
        &a.function,
        500,
        |c| !c.is_control(),
        "must not contain control characters",
    )?;
    Ok(())
}

async fn create_agent(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    let new: NewAgent = read_json_body(&state, &headers, body).await?;
    validate_new_agent(&new)?;
    let authority = &state.authority;
    let builtin = format!(
        "spiffe://{}/agent/{}",
        authority.config.ca.trust_domain(),
        new.name
    );
    let spiffe_id = match &new.spiffe_id {
        None => builtin.clone(),
        Some(id) => {
            let parsed =
                SpiffeId::parse(id).map_err(|e| ApiError::BadRequest(format!("spiffe_id: {e}")))?;
            if parsed.trust_domain() == authority.config.ca.trust_domain()
                && parsed.as_str() != builtin
            {
                return Err(ApiError::BadRequest(format!(
                    "spiffe_id: in the built-in trust domain an agent's ID is {builtin}"
                )));
            }
            if parsed.trust_domain() != authority.config.ca.trust_domain()
                && authority
                    .config
                    .bundles
                    .get(parsed.trust_domain())
                    .is_none()
            {
                return Err(ApiError::BadRequest(format!(
                    "spiffe_id: no trust bundle is configured for trust domain {} (see trust_bundles)",
                    parsed.trust_domain()
                )));
            }
            parsed.to_string()
        }
    };
    let svid = match &new.public_key_pem {
        Some(pem) => {
            if spiffe_id != builtin {
                return Err(ApiError::BadRequest(
                    "public_key_pem: the built-in CA issues SVIDs only in its own trust domain"
                        .into(),
                ));
            }
            Some(issue_svid(&state, &spiffe_id, pem)?)
        }
        None => None,
    };
    let now = now_us();
    let record = AgentRecord {
        name: new.name.clone(),
        spiffe_id: spiffe_id.clone(),
        owner: new.owner,
        env: new.env,
        function: new.function,
        status: AgentStatus::Active,
        created_us: now,
        updated_us: now,
        key_sha256: new.public_key_pem.as_deref().map(key_hash).transpose()?,
        credentials_since_us: now,
    };
    state
        .store
        .create_agent(&record)
        .await
        .map_err(store_error)?;
    authority.put_agent(&spiffe_id, Some(record.clone()));
    audit_agent(&state, &headers, &record, "created", svid.as_ref()).await?;
    let mut body = json!({"agent": agent_json(&record)});
    if let Some(svid) = svid {
        body["svid"] = svid;
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The SHA-256 of a public key PEM, as the agent record keeps it.
fn key_hash(public_key_pem: &str) -> Result<String, ApiError> {
    mandate_identity::public_key_sha256(public_key_pem)
        .map_err(|e| ApiError::BadRequest(format!("public_key_pem: {e}")))
}

/// Issues an X.509-SVID from the built-in CA for `public_key_pem`.
fn issue_svid(state: &AppState, spiffe_id: &str, public_key_pem: &str) -> Result<Value, ApiError> {
    let authority = &state.authority;
    let id = SpiffeId::parse(spiffe_id).map_err(|e| ApiError::Internal(e.to_string()))?;
    let now = now_seconds();
    let certificate = authority
        .config
        .ca
        .issue_x509_svid(
            &id,
            public_key_pem,
            now,
            authority.config.settings.svid_ttl_seconds,
        )
        .map_err(|e| ApiError::BadRequest(format!("public_key_pem: {e}")))?;
    let expires =
        now.saturating_add(i64::try_from(authority.config.settings.svid_ttl_seconds).unwrap_or(0));
    Ok(json!({
        "spiffe_id": spiffe_id,
        "certificate_pem": certificate,
        "bundle_pem": authority.config.ca.cert_pem(),
        "spiffe_bundle": serde_json::from_str::<Value>(&authority.config.ca.bundle().to_json()).unwrap_or(Value::Null),
        "expires_at": rfc3339(expires.min(authority.config.ca.not_after()).saturating_mul(1_000_000)),
    }))
}

async fn audit_agent(
    state: &AppState,
    headers: &HeaderMap,
    agent: &AgentRecord,
    outcome: &str,
    svid: Option<&Value>,
) -> Result<(), ApiError> {
    let event = token_event(
        AuditKind::AgentChanged,
        headers,
        "Admin::\"admin\"",
        &crate::issuance::agent_uid(&agent.spiffe_id).to_string(),
        outcome,
        json!({
            "name": agent.name,
            "owner": agent.owner,
            "env": agent.env,
            "function": agent.function,
            "status": agent.status.as_str(),
            "svid_expires_at": svid.and_then(|s| s.get("expires_at")).cloned(),
        }),
    );
    audit(state, event).await.map_err(|_| {
        ApiError::Unavailable("the audit log cannot be written, so nothing was changed".into())
    })
}

async fn list_agents(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &headers)?;
    let agents = state.store.agents().await.map_err(store_error)?;
    Ok(Json(
        json!({"agents": agents.iter().map(agent_json).collect::<Vec<_>>()}),
    ))
}

async fn find(state: &AppState, name: &str) -> Result<AgentRecord, ApiError> {
    state
        .store
        .agent(name)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::NotFound(format!("no agent named {name:?}")))
}

async fn show_agent(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &headers)?;
    let agent = find(&state, &name).await?;
    let tasks = state
        .store
        .tasks_of_agent(&agent.spiffe_id, true)
        .await
        .map_err(store_error)?;
    let now = now_us();
    let live: Vec<Value> = tasks
        .iter()
        .filter(|t| t.expires_us > now)
        .map(|t| json!({"task_id": t.task_id, "expires_at": rfc3339(t.expires_us), "depth": t.depth}))
        .collect();
    Ok(Json(
        json!({"agent": agent_json(&agent), "active_tasks": live}),
    ))
}

async fn set_status(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    status: AgentStatus,
) -> Result<Json<Value>, ApiError> {
    require_admin(state, headers)?;
    let agent = state
        .store
        .set_agent_status(name, status, now_us())
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::NotFound(format!("no agent named {name:?}")))?;
    state
        .authority
        .put_agent(&agent.spiffe_id, Some(agent.clone()));
    let outcome = match status {
        AgentStatus::Active => "resumed",
        AgentStatus::Suspended => "suspended",
    };
    audit_agent(state, headers, &agent, outcome, None).await?;
    Ok(Json(json!({"agent": agent_json(&agent)})))
}

async fn suspend_agent(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_status(&state, &headers, &name, AgentStatus::Suspended).await
}

async fn resume_agent(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_status(&state, &headers, &name, AgentStatus::Active).await
}

async fn delete_agent(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    let agent = find(&state, &name).await?;
    if !state.store.delete_agent(&name).await.map_err(store_error)? {
        return Err(ApiError::NotFound(format!("no agent named {name:?}")));
    }
    state.authority.put_agent(&agent.spiffe_id, None);
    // A new agent of the same name gets the same SPIFFE ID: its predecessor's
    // live tasks must not come back with it.
    let tasks = state
        .store
        .tasks_of_agent(&agent.spiffe_id, true)
        .await
        .map_err(store_error)?;
    for task in &tasks {
        crate::oauth::end_task_tree(
            &state,
            &task.task_id,
            mandate_store::TaskState::Revoked,
            "agent deleted",
        )
        .await
        .map_err(|_| {
            ApiError::Unavailable("the agent's tasks cannot be revoked in the store".into())
        })?;
    }
    audit_agent(&state, &headers, &agent, "deleted", None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Renewal {
    public_key_pem: String,
}

async fn renew_svid(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &headers)?;
    let renewal: Renewal = read_json_body(&state, &headers, body).await?;
    let agent = find(&state, &name).await?;
    if agent.status != AgentStatus::Active {
        return Err(ApiError::Conflict(format!(
            "agent {name:?} is suspended; resume it before renewing its SVID"
        )));
    }
    let builtin = format!(
        "spiffe://{}/agent/{}",
        state.authority.config.ca.trust_domain(),
        agent.name
    );
    if agent.spiffe_id != builtin {
        return Err(ApiError::BadRequest(format!(
            "agent {name:?} has an identity from another trust domain ({}); its SVIDs come from there",
            agent.spiffe_id
        )));
    }
    let svid = issue_svid(&state, &agent.spiffe_id, &renewal.public_key_pem)?;
    // A new key retires the old one: its SVIDs and every token issued
    // before now stop working. The same key just gets a fresh SVID.
    let key = key_hash(&renewal.public_key_pem)?;
    let (agent, outcome) = if agent.key_sha256.as_deref() == Some(key.as_str()) {
        (agent, "svid_renewed")
    } else {
        let rekeyed = state
            .store
            .set_agent_key(&name, &key, now_us())
            .await
            .map_err(store_error)?
            .ok_or_else(|| ApiError::NotFound(format!("no agent named {name:?}")))?;
        state
            .authority
            .put_agent(&rekeyed.spiffe_id, Some(rekeyed.clone()));
        (rekeyed, "rekeyed")
    };
    audit_agent(&state, &headers, &agent, outcome, Some(&svid)).await?;
    Ok(Json(json!({"agent": agent_json(&agent), "svid": svid})))
}

/// Makes a new signing key active; the old one verifies for the overlap.
async fn rotate_keys(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &headers)?;
    let authority = &state.authority;
    let new_key = SigningKey::generate().map_err(|e| ApiError::Internal(e.to_string()))?;
    let new_kid = new_key.kid().to_owned();
    let now = now_seconds();
    let old_kid = authority.keys().active_kid().to_owned();
    crate::node::replace_signing_key(&authority.config.signing_key_path, &new_key)
        .map_err(|e| ApiError::Internal(format!("cannot write the new signing key: {e:#}")))?;
    state
        .store
        .publish_signing_key(&SigningKeyRecord {
            kid: new_kid.clone(),
            node_id: authority.config.node_id.clone(),
            public_jwk: serde_json::to_string(&new_key.public_jwk()).unwrap_or_default(),
            created_us: now_us(),
            retired_us: None,
        })
        .await
        .map_err(store_error)?;
    state
        .store
        .retire_signing_key(&old_kid, now_us())
        .await
        .map_err(store_error)?;
    let mut rotated = Ok(());
    authority.update_keys(|keys| rotated = keys.rotate(new_key, now));
    rotated.map_err(|e| ApiError::Internal(e.to_string()))?;
    let event = token_event(
        AuditKind::KeyRotated,
        &headers,
        "Admin::\"admin\"",
        &format!("SigningKey::\"{new_kid}\""),
        "rotated",
        json!({"active_kid": new_kid, "retired_kid": old_kid, "node_id": authority.config.node_id}),
    );
    audit(&state, event)
        .await
        .map_err(|_| ApiError::Unavailable("the audit log cannot be written".into()))?;
    Ok(Json(json!({"active_kid": new_kid, "retired_kid": old_kid})))
}

async fn show_task(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &headers)?;
    let task = state
        .store
        .task(&id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::NotFound(format!("no task {id:?}")))?;
    Ok(Json(json!({
        "task_id": task.task_id,
        "agent": task.agent,
        "parent_task_id": task.parent_task_id,
        "root_task_id": task.root_task_id,
        "depth": task.depth,
        "grant": serde_json::from_str::<Value>(&task.grant_json).unwrap_or(Value::Null),
        "issued_at": rfc3339(task.issued_us),
        "expires_at": rfc3339(task.expires_us),
        "state": task.state.as_str(),
        "ended_at": task.ended_us.map(rfc3339),
        "end_reason": task.end_reason,
    })))
}

/// Revokes a task and everything delegated from it, by ID (administrators
/// rarely hold the token itself).
async fn revoke_task(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &headers)?;
    let task = state
        .store
        .task(&id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::NotFound(format!("no task {id:?}")))?;
    let ended = crate::oauth::end_task_tree(
        &state,
        &task.task_id,
        mandate_store::TaskState::Revoked,
        "revoked by admin",
    )
    .await
    .map_err(|_| ApiError::Unavailable("the task cannot be ended in the store".into()))?;
    let event = token_event(
        AuditKind::TaskRevoked,
        &headers,
        "Admin::\"admin\"",
        &format!("Task::\"{}\"", task.task_id),
        "revoked",
        json!({"task_id": task.task_id, "by": "admin", "ended": ended}),
    );
    audit(&state, event)
        .await
        .map_err(|_| ApiError::Unavailable("the audit log cannot be written".into()))?;
    Ok(Json(json!({"task_id": task.task_id, "ended": ended})))
}
