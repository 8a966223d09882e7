//! The admin API for held calls and for the people who decide them:
//! `/admin/v1/approvals/...` (list, show, approve, deny) and
//! `/admin/v1/credentials` (a named admin credential per approver).
//!
//! Only a person decides. An approve or deny request that carries anything
//! of an agent's (a DPoP proof, a DPoP or JWT task token, a client
//! certificate) is refused with 403 even if it also carries an admin
//! credential: a compromised agent that also stole an admin credential
//! still cannot approve from its own connection, and a misconfigured tool
//! that mixes the two is told so.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mandate_core::AuditKind;
use mandate_store::{AdminCredential, ApprovalRecord, ApprovalState};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::{require_admin_name, rfc3339, store_error};
use crate::approvals::{ApprovalError, approver_name};
use crate::caller::{PeerCertificates, credential_hash, new_admin_credential};
use crate::error::ApiError;
use crate::oauth::{audit, token_event};
use crate::routes::{media_type, now_us, read_limited, request_id};
use crate::state::AppState;

/// Most holds one list returns.
const MAX_LIST: u32 = 1000;

/// The approvals and credentials routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/approvals", get(list_approvals))
        .route("/admin/v1/approvals/{id}", get(show_approval))
        .route("/admin/v1/approvals/{id}/approve", post(approve))
        .route("/admin/v1/approvals/{id}/deny", post(deny))
        .route(
            "/admin/v1/credentials",
            get(list_credentials).post(create_credential),
        )
}

/// A hold as the API shows it.
fn approval_json(a: &ApprovalRecord) -> Value {
    let approver = a
        .decided_by
        .as_deref()
        .filter(|by| by.starts_with("Admin::"))
        .map(|_| approver_name(a));
    json!({
        "id": a.id,
        "state": a.state.as_str(),
        "agent": a.agent,
        "agent_name": a.agent_name,
        "task_id": a.task_id,
        "root_task_id": a.root_task_id,
        "task_chain": a.task_chain,
        "endpoint": a.endpoint,
        "upstream": a.upstream,
        "action": a.action,
        "resource": a.resource,
        "argument_digest": a.argument_digest,
        "purpose": a.purpose,
        "reasons": a.reasons,
        "policies": a.policies,
        "created_at": rfc3339(a.created_us),
        "expires_at": rfc3339(a.expires_us),
        "decided_at": a.decided_us.map(rfc3339),
        "decided_by": a.decided_by,
        "approver": approver,
        "note": a.note,
        "closed_at": a.closed_us.map(rfc3339),
    })
}

fn approval_error(e: ApprovalError, approving: bool) -> ApiError {
    match e {
        ApprovalError::NotFound { .. } => ApiError::NotFound(e.to_string()),
        ApprovalError::NotPending { state, .. } => ApiError::StateConflict {
            message: e.to_string(),
            state: state.as_str(),
        },
        ApprovalError::Audit(_) if approving => ApiError::Unavailable(
            "the approval could not be recorded in the audit log, so it was withdrawn: the call will not run".into(),
        ),
        ApprovalError::Audit(_) => ApiError::Unavailable(
            "the denial stands, but it could not be recorded in the audit log".into(),
        ),
        ApprovalError::Store(e) => store_error(e),
        other => ApiError::Internal(other.to_string()),
    }
}

async fn list_approvals(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    require_admin_name(&state, &headers)?;
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?;
    let mut wanted = Some(ApprovalState::Pending);
    let mut limit = MAX_LIST;
    for (key, value) in &params {
        match key.as_str() {
            "state" if value == "all" => wanted = None,
            "state" => {
                wanted = Some(value.parse().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "state {value:?}: use pending, approved, denied, expired, cancelled, used or all"
                    ))
                })?);
            }
            "limit" => {
                limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_LIST).contains(n))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "limit {value:?}: use a number from 1 to {MAX_LIST}"
                        ))
                    })?;
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {other:?} (state, limit)"
                )));
            }
        }
    }
    let holds = state
        .store
        .approvals(wanted, limit)
        .await
        .map_err(store_error)?;
    Ok(Json(
        json!({"approvals": holds.iter().map(approval_json).collect::<Vec<_>>()}),
    ))
}

async fn show_approval(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_admin_name(&state, &headers)?;
    let hold = state
        .store
        .approval(&id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::NotFound(format!("no approval {id:?}")))?;
    Ok(Json(json!({"approval": approval_json(&hold)})))
}

async fn approve(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: PeerCertificates,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    decide(state, headers, peer, id, body, true).await
}

async fn deny(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: PeerCertificates,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    decide(state, headers, peer, id, body, false).await
}

/// The optional body of approve and deny.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    note: Option<String>,
}

async fn decide(
    state: AppState,
    headers: HeaderMap,
    peer: PeerCertificates,
    id: String,
    body: Body,
    approving: bool,
) -> Result<Json<Value>, ApiError> {
    if let Err(refusal) = refuse_agent_credentials(&state, &headers, &peer) {
        audit_refusal(&state, &headers, &id, &refusal).await;
        return Err(refusal);
    }
    let approver = require_admin_name(&state, &headers)?;
    let note = read_note(&state, &headers, body).await?;
    let decided = state
        .approvals
        .decide(&id, approving, &approver, note, &request_id(&headers))
        .await
        .map_err(|e| approval_error(e, approving))?;
    Ok(Json(json!({"approval": approval_json(&decided)})))
}

/// Longest note kept with a decision.
const MAX_NOTE: usize = 1000;

/// The note of an approve or deny body, which may be empty.
async fn read_note(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Option<String>, ApiError> {
    let bytes = read_limited(body, headers, state.max_body_bytes).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let is_json =
        media_type(headers).is_some_and(|m| m == "application/json" || m.ends_with("+json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let parsed: DecisionBody = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::BadRequest(format!(r#"the body is empty or {{"note": "..."}}: {e}"#))
    })?;
    let Some(note) = parsed.note.filter(|n| !n.trim().is_empty()) else {
        return Ok(None);
    };
    if note.chars().count() > MAX_NOTE {
        return Err(ApiError::BadRequest(format!(
            "note must be at most {MAX_NOTE} characters"
        )));
    }
    if note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::BadRequest(
            "note must not contain control characters".into(),
        ));
    }
    Ok(Some(note))
}

/// Refuses a decision that carries any credential of an agent's: only a
/// person decides, through a connection of their own.
fn refuse_agent_credentials(
    state: &AppState,
    headers: &HeaderMap,
    peer: &PeerCertificates,
) -> Result<(), ApiError> {
    let refuse = |what: &str| {
        Err(ApiError::Forbidden(format!(
            "an agent can never approve or deny: this request carries {what}; decide with an admin credential alone"
        )))
    };
    if headers.contains_key("dpop") {
        return refuse("a DPoP proof");
    }
    if peer.0.is_some() {
        return refuse("a client certificate (an agent's identity)");
    }
    let authorizations: Vec<&str> = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let credential = |value: &str| {
        value
            .split_once(' ')
            .map(|(scheme, rest)| (scheme.to_owned(), rest.trim().to_owned()))
    };
    let mut task_token = false;
    let mut admin = false;
    for value in &authorizations {
        match credential(value) {
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("dpop") => {
                return refuse("a DPoP-bound task token");
            }
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                if looks_like_jwt(&token) {
                    task_token = true;
                } else if state.admin_name(&token).is_some() {
                    admin = true;
                }
            }
            _ => {}
        }
    }
    match (task_token, admin) {
        (true, true) => refuse("a task token"),
        // A task token alone is no admin credential at all.
        (true, false) => Err(ApiError::AdminRequired),
        _ if authorizations.len() > 1 => Err(ApiError::BadRequest(
            "more than one Authorization header".into(),
        )),
        _ => Ok(()),
    }
}

/// Whether `token` has the shape of a JWS compact serialization (three
/// base64url parts): what a task token or JWT-SVID looks like. Admin
/// credentials never do.
fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts[..2].iter().all(|p| !p.is_empty())
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        })
}

/// Records a refused decision attempt, with the admin credential's holder
/// (if one came along) as subject and what any task token claims (never the
/// token). Best effort: the refusal stands either way.
async fn audit_refusal(state: &AppState, headers: &HeaderMap, id: &str, refusal: &ApiError) {
    let mut admin = None;
    let mut claimed = Value::Null;
    for value in headers.get_all(header::AUTHORIZATION) {
        let Some((_, token)) = value.to_str().ok().and_then(|v| v.split_once(' ')) else {
            continue;
        };
        let token = token.trim();
        if looks_like_jwt(token) {
            claimed = crate::oauth::claimed(token);
        } else if let Some(name) = state.admin_name(token) {
            admin = Some(crate::issuance::uid("Admin", &name).to_string());
        }
    }
    let event = token_event(
        AuditKind::AdminAccess,
        headers,
        admin.as_deref().unwrap_or_default(),
        &format!("Approval::{id:?}"),
        "refused",
        json!({"approval_id": id, "reason": refusal.to_string(), "claimed": claimed}),
    );
    let _ = audit(state, event).await;
}

async fn list_credentials(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    require_admin_name(&state, &headers)?;
    let credentials = state.store.admin_credentials().await.map_err(store_error)?;
    Ok(Json(
        json!({"credentials": credentials.iter().map(|c| json!({
        "id": c.id,
        "name": c.name,
        "created_at": rfc3339(c.created_us),
    })).collect::<Vec<_>>()}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCredential {
    name: String,
}

/// Whether `name` may name an admin credential: 1 to 64 lower-case
/// letters, digits, '.', '_', '-' and '@', starting with a letter or digit
/// (a person's handle or e-mail address).
fn credential_name_ok(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-' | b'@')
        })
}

/// Makes a named admin credential: a second approver. The credential is in
/// this answer only; the store keeps its hash.
async fn create_credential(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let creator = require_admin_name(&state, &headers)?;
    let new: NewCredential = crate::routes::read_json_body(&state, &headers, body).await?;
    if !credential_name_ok(&new.name) {
        return Err(ApiError::BadRequest(format!(
            "name {:?}: use 1 to 64 lower-case letters, digits, '.', '_', '-' and '@', starting with a letter or digit",
            new.name
        )));
    }
    let secret = new_admin_credential().map_err(|e| ApiError::Internal(format!("{e:#}")))?;
    let record = AdminCredential {
        id: format!("admin-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        name: new.name,
        secret_hash: credential_hash(&secret),
        created_us: now_us(),
    };
    state
        .store
        .insert_admin_credential(&record)
        .await
        .map_err(store_error)?;
    let event = token_event(
        AuditKind::AdminAccess,
        &headers,
        &crate::issuance::uid("Admin", &creator).to_string(),
        &format!("AdminCredential::{:?}", record.id),
        "created",
        json!({"id": record.id, "name": record.name, "by": creator}),
    );
    if audit(&state, event).await.is_err() {
        // Not on record, so not in force: take it back out of the store.
        let _ = state.store.delete_admin_credential(&record.id).await;
        return Err(ApiError::Unavailable(
            "the audit log cannot be written, so no credential was made".into(),
        ));
    }
    state
        .admin
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .push(record.clone());
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "credential": {"id": record.id, "name": record.name, "created_at": rfc3339(record.created_us)},
            "secret": secret,
        })),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_tokens_look_like_jwts_and_admin_credentials_do_not() {
        assert!(looks_like_jwt("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(looks_like_jwt("a.b."));
        assert!(!looks_like_jwt(
            "mandate_admin_8Jq3x0nY4cE0bV5kq1cQxW9m3i2t0PZ3u6sN1dQm0aA"
        ));
        assert!(!looks_like_jwt("a..c"));
        assert!(!looks_like_jwt("a.b.c.d"));
    }

    #[test]
    fn credential_names_are_handles_or_addresses() {
        for ok in ["alice", "bob.smith", "carol@example.com", "ops-2", "a"] {
            assert!(credential_name_ok(ok), "{ok}");
        }
        for bad in ["", "Alice", "-x", "@x", "a b", "ä", &"x".repeat(65)] {
            assert!(!credential_name_ok(bad), "{bad}");
        }
    }
}
