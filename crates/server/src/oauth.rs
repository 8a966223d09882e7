//! The OAuth side of Mandate: RFC 8693 token exchange for task tokens (with
//! RFC 9396 `agent_task` details, DPoP or mTLS binding and attenuated
//! delegation), RFC 7662 introspection, RFC 7009 revocation, task completion,
//! the JWKS and the RFC 8414 metadata.
//!
//! Every issuance, refusal, revocation and completion is an audit record,
//! written before the answer (fail closed).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router, routing::get, routing::post};
use mandate_core::{AuditEvent, AuditKind};
use mandate_identity::{VerifiedX509Svid, verify_jwt_svid, verify_x509_svid};
use mandate_store::{AgentRecord, TaskRecord, TaskState};
use mandate_tokens::{
    Actor, Confirmation, DelegationRefusal, DpopRequest, Presentation, SpiffeId, TaskClaims,
    TaskGrant,
};
use serde_json::{Value, json};

use crate::authority::{TokenRefusal, acting_agent, now_seconds};
use crate::caller::{Listener, PeerCertificates, authorization, matches_admin};
use crate::issuance::{admit, agent_uid};
use crate::routes::{media_type, now_us, read_limited, request_id};
use crate::state::AppState;

/// RFC 8693 grant type.
pub(crate) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The OAuth routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/oauth/token", post(token))
        .route("/oauth/introspect", post(introspect))
        .route("/oauth/revoke", post(revoke))
        .route("/tasks/{id}/complete", post(complete))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/oauth-authorization-server", get(metadata))
}

/// An OAuth error answer (RFC 6749 §5.2, RFC 6750 §3, RFC 9449 §7).
#[derive(Debug)]
pub(crate) struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    /// For 401s on a resource: the `WWW-Authenticate` scheme to name.
    challenge: Option<&'static str>,
}

impl OAuthError {
    pub(crate) fn new(
        status: StatusCode,
        error: &'static str,
        description: impl Into<String>,
    ) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
            challenge: None,
        }
    }

    /// The OAuth error code.
    pub(crate) fn error_code(&self) -> &'static str {
        self.error
    }

    /// The human-readable description.
    pub(crate) fn description(&self) -> &str {
        &self.description
    }

    fn bad(error: &'static str, description: impl Into<String>) -> Self {
        OAuthError::new(StatusCode::BAD_REQUEST, error, description)
    }

    /// A refused task token at a resource (completion): 401 with a challenge.
    pub(crate) fn token(refusal: &TokenRefusal, scheme: &'static str) -> Self {
        OAuthError {
            status: StatusCode::UNAUTHORIZED,
            error: refusal.error_code(),
            description: refusal.to_string(),
            challenge: Some(scheme),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": self.error, "error_description": self.description}));
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(scheme) = self.challenge {
            // Quotes and backslashes cannot appear inside a quoted-string as is.
            let description: String = self
                .description
                .chars()
                .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
                .collect();
            let value = format!(
                "{scheme} error=\"{}\", error_description=\"{description}\", algs=\"ES256 EdDSA\"",
                self.error
            );
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(header::WWW_AUTHENTICATE, v);
            }
        }
        response
    }
}

/// A form body (`application/x-www-form-urlencoded`), each parameter once.
pub(crate) struct Form(HashMap<String, String>);

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Reads a form body; a parameter given twice is refused (RFC 6749 §3.2).
pub(crate) async fn read_form(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Form, OAuthError> {
    if media_type(headers).as_deref() != Some("application/x-www-form-urlencoded") {
        return Err(OAuthError::bad(
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded",
        ));
    }
    let bytes = read_limited(body, headers, state.max_body_bytes)
        .await
        .map_err(|e| OAuthError::bad("invalid_request", e.to_string()))?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
        .map_err(|e| OAuthError::bad("invalid_request", format!("malformed form body: {e}")))?;
    let mut map = HashMap::with_capacity(pairs.len());
    for (key, value) in pairs {
        if map.contains_key(&key) {
            return Err(OAuthError::bad(
                "invalid_request",
                format!("parameter {key:?} is given more than once"),
            ));
        }
        map.insert(key, value);
    }
    Ok(Form(map))
}

/// The single `DPoP` header, if any; more than one is refused.
pub(crate) fn dpop_header(headers: &HeaderMap) -> Result<Option<&str>, OAuthError> {
    let mut values = headers.get_all("dpop").iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(OAuthError::bad(
            "invalid_dpop_proof",
            "more than one DPoP header",
        ));
    }
    first
        .map(|v| {
            v.to_str()
                .map_err(|_| OAuthError::bad("invalid_dpop_proof", "DPoP header is not ASCII"))
        })
        .transpose()
}

/// The X.509-SVID of a TLS client, verified against the trust bundles; no
/// certificate is `None`, a bad one is an error naming what is wrong.
pub(crate) fn client_svid(
    state: &AppState,
    peer: &PeerCertificates,
    now: i64,
) -> Result<Option<VerifiedX509Svid>, String> {
    match &peer.0 {
        None => Ok(None),
        Some(chain) => verify_x509_svid(&state.authority.config.bundles, chain, now)
            .map(Some)
            .map_err(|e| format!("client certificate is not a valid X.509-SVID: {e}")),
    }
}

/// Writes one audit event and waits for its commit.
pub(crate) async fn audit(state: &AppState, event: AuditEvent) -> Result<(), OAuthError> {
    state.audit.append(vec![event]).await.map_err(|e| {
        tracing::error!(error = %e, "audit log unavailable");
        OAuthError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the audit log cannot be written, so nothing is issued or changed",
        )
    })
}

/// An audit event of the token side.
pub(crate) fn token_event(
    kind: AuditKind,
    headers: &HeaderMap,
    subject: &str,
    resource: &str,
    outcome: &str,
    detail: Value,
) -> AuditEvent {
    AuditEvent {
        time_us: now_us(),
        kind,
        request_id: request_id(headers),
        subject: subject.to_owned(),
        action: format!("Action::\"{}\"", kind.as_str()),
        resource: resource.to_owned(),
        outcome: outcome.to_owned(),
        policies: Vec::new(),
        request_digest: String::new(),
        detail,
    }
}

/// What a refused token claims, read without trusting it, for the audit
/// record of the refusal: never the token itself.
pub(crate) fn claimed(token: &str) -> Value {
    use base64::Engine;
    let payload = token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
    let Some(Value::Object(claims)) = payload else {
        return Value::Null;
    };
    let field = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .map(|v| v.chars().take(256).collect::<String>())
    };
    json!({"sub": field("sub"), "task_id": field("task_id"), "jti": field("jti"), "verified": false})
}

fn task_resource(task_id: &str) -> String {
    format!("Task::\"{task_id}\"")
}

/// Who asks, and for what, once identity is settled.
struct TokenAsk {
    /// The agent the new token is for.
    agent: AgentRecord,
    agent_id: SpiffeId,
    /// The parent's claims, for a delegation.
    parent: Option<TaskClaims>,
}

/// `POST /oauth/token`.
async fn token(
    State(state): State<AppState>,
    Extension(listener): Extension<Listener>,
    peer: PeerCertificates,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let form = match read_form(&state, &headers, body).await {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let mut subject = String::new();
    let mut verified_parent = None;
    match exchange(
        &state,
        &listener,
        &peer,
        &headers,
        &form,
        &mut subject,
        &mut verified_parent,
    )
    .await
    {
        Ok(response) => response,
        Err(error) => {
            let mut detail = json!({"error": error.error, "reason": error.description});
            // A refused delegation belongs to its parent task's trace: the
            // verified parent, else what the parent token claims.
            if let Some(parent) = verified_parent {
                detail["parent_task_id"] = Value::from(parent);
            } else if form.get("subject_token_type") == Some(TYPE_ACCESS_TOKEN)
                && let Some(token) = form.get("subject_token")
            {
                detail["claimed"] = claimed(token);
            }
            let event = token_event(
                AuditKind::TokenRefused,
                &headers,
                &subject,
                "",
                "refused",
                detail,
            );
            if let Err(audit_error) = audit(&state, event).await {
                return audit_error.into_response();
            }
            error.into_response()
        }
    }
}

async fn exchange(
    state: &AppState,
    listener: &Listener,
    peer: &PeerCertificates,
    headers: &HeaderMap,
    form: &Form,
    subject: &mut String,
    verified_parent: &mut Option<String>,
) -> Result<Response, OAuthError> {
    let authority = &state.authority;
    match form.get("grant_type") {
        Some(TOKEN_EXCHANGE) => {}
        Some(other) => {
            return Err(OAuthError::bad(
                "unsupported_grant_type",
                format!("grant_type {other:?} is not supported; use {TOKEN_EXCHANGE}"),
            ));
        }
        None => return Err(OAuthError::bad("invalid_request", "grant_type is missing")),
    }
    if let Some(t) = form.get("requested_token_type")
        && t != TYPE_ACCESS_TOKEN
    {
        return Err(OAuthError::bad(
            "invalid_request",
            format!("requested_token_type must be {TYPE_ACCESS_TOKEN}"),
        ));
    }
    for name in ["audience", "resource"] {
        if let Some(aud) = form.get(name)
            && aud != authority.config.audience
        {
            return Err(OAuthError::bad(
                "invalid_target",
                format!(
                    "{name} {aud:?} is not served here; task tokens are for {:?}",
                    authority.config.audience
                ),
            ));
        }
    }
    let mut requested = requested_grant(form)?;
    let now = now_seconds();
    let client = client_svid(state, peer, now)
        .map_err(|e| OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", e))?;

    let ask = identify(state, form, client.as_ref(), now, subject)?;
    *verified_parent = ask.parent.as_ref().map(|p| p.task_id.clone());

    // Bind the token to the key the request proves: a DPoP proof, else the
    // client certificate.
    let token_endpoint = format!("{}/oauth/token", listener.base);
    let cnf = match dpop_header(headers)? {
        Some(proof) => {
            let checked = authority
                .dpop()
                .verify(
                    &DpopRequest {
                        proof: Some(proof),
                        method: "POST",
                        uri: &token_endpoint,
                        token: None,
                        now,
                    },
                    authority.replay(),
                )
                .map_err(|e| OAuthError::bad("invalid_dpop_proof", e.to_string()))?;
            Some(Confirmation::Jkt(checked.jkt))
        }
        None => match &client {
            Some(svid) if svid.spiffe_id == ask.agent_id => {
                Some(Confirmation::X5tS256(svid.x5t_s256.clone()))
            }
            _ if authority.config.settings.allow_bearer_tokens => None,
            _ => {
                return Err(OAuthError::bad(
                    "invalid_request",
                    "the token must be bound to a key: send a DPoP proof (RFC 9449) or use the agent's X.509-SVID as the TLS client certificate (RFC 8705); unbound bearer tokens are disabled",
                ));
            }
        },
    };

    let depth = ask.parent.as_ref().map_or(0, |p| p.delegation_depth() + 1);
    if let Some(parent) = &ask.parent {
        if let Err(refusals) = parent.may_delegate(
            &requested,
            now,
            authority.config.settings.max_delegation_depth,
        ) {
            let code = if refusals.iter().any(|r| {
                matches!(
                    r,
                    DelegationRefusal::NoDelegateRight | DelegationRefusal::TooDeep { .. }
                )
            }) {
                "access_denied"
            } else {
                "invalid_authorization_details"
            };
            let reasons: Vec<String> = refusals.iter().map(ToString::to_string).collect();
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                code,
                format!("delegation refused: {}", reasons.join("; ")),
            ));
        }
    } else if requested.ttl_seconds > authority.config.settings.max_task_ttl_seconds {
        requested.ttl_seconds = authority.config.settings.max_task_ttl_seconds;
    }
    let bundle = state.engine.current();
    let admission = admit(&bundle, &ask.agent, &requested, depth).map_err(|refusal| {
        OAuthError::new(StatusCode::FORBIDDEN, "access_denied", refusal.reason)
    })?;

    let task_id = format!("task-{}", uuid::Uuid::now_v7().simple());
    let granted = admission.granted;
    let ttl = i64::try_from(granted.ttl_seconds).unwrap_or(i64::MAX);
    let (sub, act, task_chain) = match &ask.parent {
        None => (ask.agent_id.clone(), None, Vec::new()),
        Some(parent) => {
            let mut chain = parent.task_chain.clone();
            chain.push(parent.task_id.clone());
            (
                parent.sub.clone(),
                Some(Actor {
                    sub: ask.agent_id.clone(),
                    act: parent.act.clone().map(Box::new),
                }),
                chain,
            )
        }
    };
    let claims = TaskClaims {
        iss: authority.config.issuer.clone(),
        sub,
        aud: authority.config.audience.clone(),
        iat: now,
        nbf: now,
        exp: now.saturating_add(ttl),
        jti: uuid::Uuid::new_v4().simple().to_string(),
        task_id: task_id.clone(),
        authorization_details: vec![granted.clone()],
        cnf: cnf.clone(),
        act,
        task_chain,
    };
    let token = authority.keys().issue(&claims).map_err(|e| {
        OAuthError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            e.to_string(),
        )
    })?;

    let parent_task_id = ask.parent.as_ref().map(|p| p.task_id.clone());
    let record = TaskRecord {
        task_id: task_id.clone(),
        jti: claims.jti.clone(),
        agent: ask.agent_id.to_string(),
        parent_task_id: parent_task_id.clone(),
        root_task_id: claims
            .task_chain
            .first()
            .cloned()
            .unwrap_or_else(|| task_id.clone()),
        depth: i32::try_from(depth).unwrap_or(i32::MAX),
        grant_json: serde_json::to_string(&granted).unwrap_or_default(),
        issued_us: now.saturating_mul(1_000_000),
        expires_us: claims.exp.saturating_mul(1_000_000),
        state: TaskState::Active,
        ended_us: None,
        end_reason: None,
    };
    state.store.insert_task(&record).await.map_err(|e| {
        tracing::error!(error = %e, "cannot record the task");
        OAuthError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the task cannot be recorded, so no token is issued",
        )
    })?;
    let (kind, binding) = match &cnf {
        Some(Confirmation::Jkt(_)) => ("DPoP", "dpop"),
        Some(Confirmation::X5tS256(_)) => ("Bearer", "mtls"),
        None => ("Bearer", "none"),
    };
    let mut event = token_event(
        if ask.parent.is_some() {
            AuditKind::TokenDelegated
        } else {
            AuditKind::TokenIssued
        },
        headers,
        &agent_uid(ask.agent_id.as_str()).to_string(),
        &task_resource(&task_id),
        "issued",
        json!({
            "task_id": task_id,
            "parent_task_id": parent_task_id,
            "root_task_id": record.root_task_id,
            "depth": depth,
            "jti": claims.jti,
            "exp": claims.exp,
            "binding": binding,
            "granted": granted,
            "dropped": admission.dropped,
        }),
    );
    event.policies = admission.policies;
    event.request_digest = state.digester.digest_json_hex(&requested);
    audit(state, event).await?;
    ::metrics::counter!(crate::metrics::TOKENS_ISSUED, "kind" => if ask.parent.is_some() { "delegated" } else { "root" }).increment(1);

    let body = json!({
        "access_token": token,
        "issued_token_type": TYPE_ACCESS_TOKEN,
        "token_type": kind,
        "expires_in": granted.ttl_seconds,
        "authorization_details": [granted],
        "task_id": task_id,
    });
    let mut response = (StatusCode::OK, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The one `agent_task` entry of `authorization_details`.
fn requested_grant(form: &Form) -> Result<TaskGrant, OAuthError> {
    let raw = form.get("authorization_details").ok_or_else(|| {
        OAuthError::bad(
            "invalid_request",
            "authorization_details is missing: describe the task as one entry of type agent_task",
        )
    })?;
    let invalid = |why: String| OAuthError::bad("invalid_authorization_details", why);
    let entries: Vec<Value> = serde_json::from_str(raw)
        .map_err(|e| invalid(format!("authorization_details is not a JSON array: {e}")))?;
    let [entry] = entries.as_slice() else {
        return Err(invalid(format!(
            "authorization_details must hold exactly one agent_task entry, not {}",
            entries.len()
        )));
    };
    let grant: TaskGrant = serde_json::from_value(entry.clone())
        .map_err(|e| invalid(format!("authorization_details[0]: {e}")))?;
    grant
        .validate()
        .map_err(|e| invalid(format!("authorization_details[0]: {e}")))?;
    Ok(grant)
}

/// Settles who the new token is for: the agent of a root task (JWT-SVID
/// subject_token, or the X.509-SVID of the TLS client), or the sub-agent of a
/// delegation (actor_token or client certificate, with the parent's task token
/// as subject_token).
fn identify(
    state: &AppState,
    form: &Form,
    client: Option<&VerifiedX509Svid>,
    now: i64,
    subject: &mut String,
) -> Result<TokenAsk, OAuthError> {
    let authority = &state.authority;
    let jwt_svid = |token: &str, param: &str| -> Result<SpiffeId, OAuthError> {
        verify_jwt_svid(
            &authority.config.bundles,
            token,
            &authority.config.jwt_svid_audience,
            now,
        )
        .map(|v| v.spiffe_id)
        // RFC 8693 §2.2.2: an invalid subject or actor token is invalid_request.
        .map_err(|e| {
            OAuthError::bad(
                "invalid_request",
                format!("{param} is not a valid JWT-SVID: {e}"),
            )
        })
    };
    let one_identity = |token_id: Option<SpiffeId>, param: &str| -> Result<SpiffeId, OAuthError> {
        match (token_id, client) {
            (Some(id), Some(svid)) if svid.spiffe_id != id => Err(OAuthError::bad(
                "invalid_request",
                format!(
                    "{param} names {id} but the client certificate is {}; present one identity",
                    svid.spiffe_id
                ),
            )),
            (Some(id), _) => Ok(id),
            (None, Some(svid)) => Ok(svid.spiffe_id.clone()),
            (None, None) => Err(OAuthError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                format!(
                    "no agent identity: send {param} (a JWT-SVID, {param}_type {TYPE_JWT}) or connect with an X.509-SVID client certificate"
                ),
            )),
        }
    };
    let typed = |param: &str| -> Result<Option<(&str, &str)>, OAuthError> {
        match (form.get(param), form.get(&format!("{param}_type"))) {
            (None, None) => Ok(None),
            (Some(token), Some(kind)) => Ok(Some((token, kind))),
            (Some(_), None) => Err(OAuthError::bad(
                "invalid_request",
                format!("{param}_type is required with {param}"),
            )),
            (None, Some(_)) => Err(OAuthError::bad(
                "invalid_request",
                format!("{param}_type is given without {param}"),
            )),
        }
    };
    let registered = |id: &SpiffeId| -> Result<AgentRecord, OAuthError> {
        let agent = authority.check_active(id).map_err(|e| {
            OAuthError::bad("unauthorized_client", format!("{e}: no token is issued"))
        })?;
        // An SVID of the built-in CA must certify the agent's current key: one
        // issued before a re-registration or a key change no longer counts.
        if let (Some(svid), Some(current)) = (client, &agent.key_sha256)
            && &svid.spiffe_id == id
            && &svid.public_key_sha256 != current
        {
            return Err(OAuthError::bad(
                "unauthorized_client",
                format!(
                    "the client certificate certifies a key that is no longer {id}'s (the agent was re-registered or re-keyed); use its current SVID"
                ),
            ));
        }
        Ok(agent)
    };

    match typed("subject_token")? {
        Some((parent_token, TYPE_ACCESS_TOKEN)) => {
            // The caller is authenticated before anything is said about the
            // parent token.
            let actor = match typed("actor_token")? {
                Some((token, TYPE_JWT)) => Some(jwt_svid(token, "actor_token")?),
                Some((_, other)) => {
                    return Err(OAuthError::bad(
                        "invalid_request",
                        format!(
                            "actor_token_type {other:?} is not supported; use {TYPE_JWT} (a JWT-SVID)"
                        ),
                    ));
                }
                None => None,
            };
            let actor = one_identity(actor, "actor_token")?;
            *subject = agent_uid(actor.as_str()).to_string();
            let agent = registered(&actor)?;
            let (parent, _) = authority
                .verify_unbound(parent_token, now)
                .map_err(|e| OAuthError::bad("invalid_request", format!("subject_token: {e}")))?;
            if &actor == acting_agent(&parent) {
                return Err(OAuthError::bad(
                    "invalid_request",
                    "an agent cannot delegate to itself; ask for a new task instead",
                ));
            }
            Ok(TokenAsk {
                agent,
                agent_id: actor,
                parent: Some(parent),
            })
        }
        Some((token, TYPE_JWT)) => {
            if typed("actor_token")?.is_some() {
                return Err(OAuthError::bad(
                    "invalid_request",
                    "actor_token is only for delegation, with a task token as subject_token",
                ));
            }
            let id = one_identity(Some(jwt_svid(token, "subject_token")?), "subject_token")?;
            *subject = agent_uid(id.as_str()).to_string();
            let agent = registered(&id)?;
            Ok(TokenAsk {
                agent,
                agent_id: id,
                parent: None,
            })
        }
        Some((_, other)) => Err(OAuthError::bad(
            "invalid_request",
            format!(
                "subject_token_type {other:?} is not supported; use {TYPE_JWT} (a JWT-SVID) or {TYPE_ACCESS_TOKEN} (a task token, to delegate)"
            ),
        )),
        None => {
            if typed("actor_token")?.is_some() {
                return Err(OAuthError::bad(
                    "invalid_request",
                    "actor_token is only for delegation, with a task token as subject_token",
                ));
            }
            let id = one_identity(None, "subject_token")?;
            *subject = agent_uid(id.as_str()).to_string();
            let agent = registered(&id)?;
            Ok(TokenAsk {
                agent,
                agent_id: id,
                parent: None,
            })
        }
    }
}

/// Is the caller an administrator, or (with `resource_key`) the configured
/// AuthZEN key holder?
fn is_admin(state: &AppState, headers: &HeaderMap) -> bool {
    authorization(headers, "Bearer").is_some_and(|c| matches_admin(c, &state.admin_hashes()))
}

/// `POST /oauth/introspect` (RFC 7662), for administrators and PEPs holding
/// the AuthZEN key.
async fn introspect(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let allowed = is_admin(&state, &headers)
        || state.api_key.as_deref().is_some_and(|key| {
            authorization(&headers, "Bearer")
                .is_some_and(|c| subtle::ConstantTimeEq::ct_eq(c.as_bytes(), key.as_bytes()).into())
        });
    if !allowed {
        return OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "introspection needs the admin credential or the AuthZEN API key as a Bearer token",
        )
        .into_response();
    }
    let form = match read_form(&state, &headers, body).await {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let Some(token) = form.get("token") else {
        return OAuthError::bad("invalid_request", "token is missing").into_response();
    };
    let now = now_seconds();
    let body = match state.authority.verify_unbound(token, now) {
        Ok((claims, agent)) => {
            let mut body = serde_json::to_value(&claims).unwrap_or_else(|_| json!({}));
            if let Value::Object(map) = &mut body {
                map.insert("active".into(), Value::Bool(true));
                map.insert(
                    "token_type".into(),
                    Value::from(match claims.cnf {
                        Some(Confirmation::Jkt(_)) => "DPoP",
                        _ => "Bearer",
                    }),
                );
                map.insert("agent".into(), Value::from(agent.name));
            }
            body
        }
        Err(refusal) => {
            let event = token_event(
                AuditKind::TokenRejected,
                &headers,
                "",
                "",
                "inactive",
                json!({"endpoint": "introspect", "reason": refusal.to_string(), "claimed": claimed(token)}),
            );
            if let Err(e) = audit(&state, event).await {
                return e.into_response();
            }
            json!({"active": false})
        }
    };
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Ends a task and every task delegated from it; returns the IDs ended.
pub(crate) async fn end_task_tree(
    state: &AppState,
    task_id: &str,
    state_of_root: TaskState,
    reason: &str,
) -> Result<Vec<String>, OAuthError> {
    let unavailable = |e: mandate_store::StoreError| {
        tracing::error!(error = %e, "cannot end the task");
        OAuthError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the task cannot be ended in the store",
        )
    };
    let now_us = now_us();
    let mut tree = state
        .store
        .task_subtree(task_id)
        .await
        .map_err(unavailable)?;
    tree.retain(|id| id != task_id);
    let mut ended = state
        .store
        .end_tasks(&[task_id.to_owned()], state_of_root, reason, now_us)
        .await
        .map_err(unavailable)?;
    ended.extend(
        state
            .store
            .end_tasks(&tree, TaskState::Revoked, reason, now_us)
            .await
            .map_err(unavailable)?,
    );
    // Whatever the store says, this node refuses them from now on.
    let mut all = tree;
    all.push(task_id.to_owned());
    state.authority.mark_ended(all.iter());
    Ok(ended)
}

/// `POST /oauth/revoke` (RFC 7009): by an administrator, or by the token's
/// holder proving possession (DPoP proof for this request, or its mTLS
/// certificate). Revokes the task and all its descendants.
async fn revoke(
    State(state): State<AppState>,
    Extension(listener): Extension<Listener>,
    peer: PeerCertificates,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let form = match read_form(&state, &headers, body).await {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let Some(token) = form.get("token") else {
        return OAuthError::bad("invalid_request", "token is missing").into_response();
    };
    let now = now_seconds();
    let admin = is_admin(&state, &headers);
    // Revocation needs neither an active agent nor a live task: the token of
    // a suspended agent, or one already ended, must still be revocable.
    let claims = if admin {
        state.authority.verify_signature(token, now)
    } else {
        let proof = match dpop_header(&headers) {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
        let uri = format!("{}/oauth/revoke", listener.base);
        let x5t = peer_x5t(&peer);
        state
            .authority
            .verify_possession(&Presentation {
                token,
                dpop_proof: proof,
                method: "POST",
                uri: &uri,
                client_cert_x5t: x5t.as_deref(),
                now,
            })
            .map(|c| TaskClaims::clone(&c))
    };
    let claims = match claims {
        Ok(c) => c,
        // RFC 7009 §2.2: an invalid token is answered 200. Without admin
        // rights and without possession, the caller is not authenticated.
        Err(refusal) if admin || !proves_nothing(&refusal) => {
            tracing::debug!(%refusal, "revocation of an invalid token");
            return StatusCode::OK.into_response();
        }
        Err(refusal) => {
            return OAuthError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                format!("revocation needs the admin credential or proof of possession of the token: {refusal}"),
            )
            .into_response();
        }
    };
    let by = if admin { "admin" } else { "holder" };
    let ended = match end_task_tree(
        &state,
        &claims.task_id,
        TaskState::Revoked,
        &format!("revoked by {by}"),
    )
    .await
    {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    let event = token_event(
        AuditKind::TaskRevoked,
        &headers,
        &agent_uid(acting_agent(&claims).as_str()).to_string(),
        &task_resource(&claims.task_id),
        "revoked",
        json!({"task_id": claims.task_id, "by": by, "ended": ended}),
    );
    if let Err(e) = audit(&state, event).await {
        return e.into_response();
    }
    StatusCode::OK.into_response()
}

/// Whether a refusal is about the caller's proof of possession (so it is not
/// authenticated), rather than about the token being invalid or ended.
fn proves_nothing(refusal: &TokenRefusal) -> bool {
    use mandate_tokens::PresentationError as P;
    matches!(
        refusal,
        TokenRefusal::Presentation(
            P::Dpop(_) | P::MissingClientCertificate | P::CertificateMismatch | P::Unbound
        )
    )
}

/// The RFC 8705 thumbprint of the TLS client's certificate, if any.
pub(crate) fn peer_x5t(peer: &PeerCertificates) -> Option<String> {
    peer.0
        .as_ref()
        .and_then(|chain| chain.first())
        .map(|leaf| mandate_identity::x5t_s256(leaf))
}

/// Whether `id` has the form Mandate gives task IDs (`task-` and 32 hex digits).
fn is_task_id(id: &str) -> bool {
    id.strip_prefix("task-")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The task token of a resource request: `Authorization: DPoP <token>` for a
/// DPoP-bound token, `Bearer` for an mTLS-bound one.
pub(crate) fn presented_token(headers: &HeaderMap) -> Option<(&str, &'static str)> {
    authorization(headers, "DPoP")
        .map(|t| (t, "DPoP"))
        .or_else(|| authorization(headers, "Bearer").map(|t| (t, "Bearer")))
}

/// Checks the task token of a resource request made to `uri`.
pub(crate) fn check_resource_token(
    state: &AppState,
    headers: &HeaderMap,
    peer: &PeerCertificates,
    method: &str,
    uri: &str,
) -> Result<(Arc<TaskClaims>, AgentRecord), OAuthError> {
    let Some((token, scheme)) = presented_token(headers) else {
        return Err(OAuthError {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_request",
            description: "a task token is required: Authorization: DPoP <token> with a DPoP proof"
                .into(),
            challenge: Some("DPoP"),
        });
    };
    let proof = dpop_header(headers)?;
    let x5t = peer_x5t(peer);
    let (claims, agent) = state
        .authority
        .verify_presented(&Presentation {
            token,
            dpop_proof: proof,
            method,
            uri,
            client_cert_x5t: x5t.as_deref(),
            now: now_seconds(),
        })
        .map_err(|refusal| OAuthError::token(&refusal, "DPoP"))?;
    // RFC 9449 §7.1: a DPoP-bound token goes with the DPoP scheme only.
    if matches!(claims.cnf, Some(Confirmation::Jkt(_))) && scheme != "DPoP" {
        return Err(OAuthError {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_token",
            description: "this token is DPoP-bound: present it as Authorization: DPoP <token>"
                .into(),
            challenge: Some("DPoP"),
        });
    }
    Ok((claims, agent))
}

/// `POST /tasks/{id}/complete`: the agent ends its task; tasks delegated from
/// it are revoked.
async fn complete(
    State(state): State<AppState>,
    Extension(listener): Extension<Listener>,
    peer: PeerCertificates,
    Path(task_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    // The proof's htu is rebuilt from the ID: only a well-formed ID may be
    // used for that, or `..%2F` in it could make it another endpoint's URL.
    if !is_task_id(&task_id) {
        return OAuthError::new(StatusCode::NOT_FOUND, "invalid_request", "no such task")
            .into_response();
    }
    let uri = format!("{}/tasks/{task_id}/complete", listener.base);
    let (claims, _) = match check_resource_token(&state, &headers, &peer, "POST", &uri) {
        Ok(c) => c,
        Err(e) => {
            let token = presented_token(&headers)
                .map(|(t, _)| t)
                .unwrap_or_default();
            let event = token_event(
                AuditKind::TokenRejected,
                &headers,
                "",
                &task_resource(&task_id),
                "rejected",
                json!({"endpoint": "complete", "reason": e.description, "claimed": claimed(token)}),
            );
            if let Err(audit_error) = audit(&state, event).await {
                return audit_error.into_response();
            }
            return e.into_response();
        }
    };
    if claims.task_id != task_id {
        return OAuthError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("this token is for task {}, not {task_id}", claims.task_id),
        )
        .into_response();
    }
    let ended = match end_task_tree(
        &state,
        &task_id,
        TaskState::Completed,
        "completed by the agent",
    )
    .await
    {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    let event = token_event(
        AuditKind::TaskCompleted,
        &headers,
        &agent_uid(acting_agent(&claims).as_str()).to_string(),
        &task_resource(&task_id),
        "completed",
        json!({"task_id": task_id, "ended": ended}),
    );
    if let Err(e) = audit(&state, event).await {
        return e.into_response();
    }
    Json(json!({"task_id": task_id, "state": "completed", "ended": ended})).into_response()
}

/// `GET /.well-known/jwks.json`: the keys task tokens are signed with.
async fn jwks(State(state): State<AppState>) -> Response {
    let set = state.authority.keys().jwks();
    (
        [(header::CACHE_CONTROL, "max-age=60")],
        Json(serde_json::to_value(&set).unwrap_or_else(|_| json!({"keys": []}))),
    )
        .into_response()
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
async fn metadata(State(state): State<AppState>) -> Json<Value> {
    let issuer = &state.authority.config.issuer;
    let mut body = json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth/token"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "grant_types_supported": [TOKEN_EXCHANGE],
        "token_endpoint_auth_methods_supported": ["tls_client_auth", "none"],
        "response_types_supported": [],
        "revocation_endpoint_auth_methods_supported": ["none", "tls_client_auth"],
        "dpop_signing_alg_values_supported": ["ES256", "ES384", "EdDSA", "RS256", "PS256"],
        "authorization_details_types_supported": ["agent_task"],
        "tls_client_certificate_bound_access_tokens": true,
    });
    if let Some(tls) = &state.tls_base {
        body["mtls_endpoint_aliases"] = json!({
            "token_endpoint": format!("{tls}/oauth/token"),
            "revocation_endpoint": format!("{tls}/oauth/revoke"),
        });
    }
    Json(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_task_ids_mandate_makes_are_task_ids() {
        assert!(is_task_id("task-01a20f953cce72bfa0bb9b099634fc9f"));
        for bad in [
            "task-..%2F..%2Faccess",
            "task-01a20f953cce72bfa0bb9b099634fc9",
            "01a20f953cce72bfa0bb9b099634fc9f",
            "task-01a20f953cce72bfa0bb9b099634fc9g",
            "task-../access/v1/evaluation?aaaaaaaaaa",
        ] {
            assert!(!is_task_id(bad), "{bad}");
        }
    }

    #[test]
    fn claimed_reads_an_unverified_payload_and_never_fails() {
        let payload = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"sub":"spiffe://x/y","task_id":"task-1","jti":"j"}"#,
        );
        let got = claimed(&format!("h.{payload}.s"));
        assert_eq!(got["sub"], "spiffe://x/y");
        assert_eq!(got["verified"], false);
        assert_eq!(claimed("not a token"), Value::Null);
        assert_eq!(claimed("a.!!!.c"), Value::Null);
    }
}
