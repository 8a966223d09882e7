//! The MCP gateway over Streamable HTTP: `/mcp/{upstream}`.
//!
//! Every request is authenticated with the agent's task token (DPoP proof or
//! mTLS binding, as for any resource), parsed just enough to decide it
//! (`mandate-gateway` owns that logic), decided by Cedar, audited, and then
//! forwarded byte for byte with the upstream's credential instead of the
//! agent's token. `tools/list` answers are cut down to the task's tools.
//! A `command` upstream is a process Mandate spawns and speaks stdio to
//! ([`crate::stdio`]); it is decided and audited the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use mandate_core::{AuditEvent, AuditKind, Decision};
use mandate_gateway::{Catalog, CatalogEntry, Gate, PolicySchema, RequestId, ToolClass};
use mandate_store::AgentRecord;
use mandate_tokens::TaskClaims;
use serde_json::{Value, json};

use crate::caller::{Listener, PeerCertificates};
use crate::config::McpUpstream;
use crate::oauth::check_resource_token;
use crate::routes::{now_us, read_limited, request_id};
use crate::state::AppState;
use crate::stdio::{StdioAnswer, StdioUpstream};
use crate::task_subject::task_context;

/// The MCP routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/mcp/{upstream}",
            get(stream).post(post_message).delete(end_session),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp/{upstream}",
            get(resource_metadata),
        )
}

/// An upstream as the gateway uses it: its config and its tool catalog.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) config: McpUpstream,
    pub(crate) catalog: Catalog,
    /// The spawned server of a `command` upstream.
    pub(crate) stdio: Option<StdioUpstream>,
}

impl Upstream {
    /// The upstream of `config`; a catalog that names a tool twice is refused.
    /// A stdio server's lines may be up to four times `max_body_bytes` long.
    pub(crate) fn new(config: McpUpstream, max_body_bytes: usize) -> anyhow::Result<Upstream> {
        let catalog = Catalog::new(config.tools.iter().map(|t| {
            (
                t.name.clone(),
                CatalogEntry {
                    class: match t.class.as_str() {
                        "read" => ToolClass::Read,
                        "act" => ToolClass::Act,
                        _ => ToolClass::Delegate,
                    },
                    labels: t.labels.clone(),
                    egress: t.egress,
                },
            )
        }))
        .map_err(|e| anyhow::anyhow!("mcp_upstreams: {}: {e}", config.name))?;
        let stdio = StdioUpstream::new(&config, max_body_bytes.saturating_mul(4));
        Ok(Upstream {
            config,
            catalog,
            stdio,
        })
    }
}

/// Headers passed from the client to the upstream and back, as they are.
const FORWARDED_REQUEST_HEADERS: [&str; 6] = [
    "content-type",
    "accept",
    "mcp-protocol-version",
    "mcp-session-id",
    "last-event-id",
    "mcp-method",
];
const FORWARDED_RESPONSE_HEADERS: [&str; 4] = [
    "content-type",
    "mcp-session-id",
    "mcp-protocol-version",
    "cache-control",
];

/// Why a gateway request is refused before its message is looked at.
enum Refusal {
    UnknownUpstream(String),
    Origin(String),
    /// A 401 with its `WWW-Authenticate` challenge.
    Token {
        error: &'static str,
        description: String,
        challenge: String,
    },
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::UnknownUpstream(name) => (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "not_found", "message": format!("no MCP upstream named {name:?}")})),
            )
                .into_response(),
            Refusal::Origin(origin) => (
                StatusCode::FORBIDDEN,
                Json(json!({"error": "forbidden_origin", "message": format!("origin {origin:?} may not call this gateway (mcp_allowed_origins)")})),
            )
                .into_response(),
            Refusal::Token {
                error,
                description,
                challenge,
            } => {
                let mut response = (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"error": error, "error_description": description})),
                )
                    .into_response();
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, value);
                }
                response
            }
        }
    }
}

fn upstream<'a>(state: &'a AppState, name: &str) -> Result<&'a Arc<Upstream>, Refusal> {
    state
        .upstreams
        .get(name)
        .ok_or_else(|| Refusal::UnknownUpstream(name.to_owned()))
}

fn resource_url(listener: &Listener, name: &str) -> String {
    format!("{}/mcp/{name}", listener.base)
}

/// `GET /.well-known/oauth-protected-resource/mcp/{upstream}` (RFC 9728).
async fn resource_metadata(
    State(state): State<AppState>,
    Extension(listener): Extension<Listener>,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = upstream(&state, &name) {
        return r.into_response();
    }
    Json(mandate_gateway::protected_resource_metadata(
        &resource_url(&listener, &name),
        std::slice::from_ref(&state.authority.config.issuer),
        &format!("MCP server {name} through Mandate"),
    ))
    .into_response()
}

/// Refuses a browser request from an origin not allowed (403), and
/// authenticates the task token for `method` on this upstream's URL (401 with
/// an RFC 9728 pointer).
fn admit(
    state: &AppState,
    listener: &Listener,
    peer: &PeerCertificates,
    headers: &HeaderMap,
    method: &str,
    name: &str,
) -> Result<(Arc<TaskClaims>, AgentRecord), Refusal> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !mandate_gateway::origin_allowed(origin, &state.mcp_allowed_origins) {
        return Err(Refusal::Origin(origin.unwrap_or_default().to_owned()));
    }
    let url = resource_url(listener, name);
    check_resource_token(state, headers, peer, method, &url).map_err(|e| {
        let metadata = format!(
            "{}/.well-known/oauth-protected-resource/mcp/{name}",
            listener.base
        );
        Refusal::Token {
            error: e.error_code(),
            description: e.description().to_owned(),
            challenge: mandate_gateway::www_authenticate(
                &metadata,
                Some((e.error_code(), e.description())),
            ),
        }
    })
}

/// A JSON-RPC error answer with HTTP 200 (the transport worked; the call did not).
fn rpc_error(id: Option<&RequestId>, code: i64, message: &str, data: Option<Value>) -> Response {
    rpc_error_status(StatusCode::OK, id, code, message, data)
}

/// A JSON-RPC error answer with another HTTP status (the request itself was bad).
fn rpc_error_status(
    status: StatusCode,
    id: Option<&RequestId>,
    code: i64,
    message: &str,
    data: Option<Value>,
) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        mandate_gateway::error_response(id, code, message, data),
    )
        .into_response()
}

/// What was decided, for the audit record.
struct Verdict {
    action: String,
    resource: String,
    decision: Decision,
}

/// `POST /mcp/{upstream}`: one JSON-RPC message from the client.
async fn post_message(
    State(state): State<AppState>,
    Extension(listener): Extension<Listener>,
    peer: PeerCertificates,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let upstream = match upstream(&state, &name) {
        Ok(u) => Arc::clone(u),
        Err(r) => return r.into_response(),
    };
    let (claims, agent) = match admit(&state, &listener, &peer, &headers, "POST", &name) {
        Ok(ok) => ok,
        Err(r) => return r.into_response(),
    };
    let bytes = match read_limited(body, &headers, state.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let message = match mandate_gateway::parse_message(&bytes) {
        Ok(m) => m,
        Err(e) => {
            return rpc_error_status(
                StatusCode::BAD_REQUEST,
                None,
                e.code(),
                &e.to_string(),
                None,
            );
        }
    };
    let id = message.id().cloned();
    let id = id.as_ref();
    let header_text = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    // Decisions are made on the body; headers that say otherwise are refused.
    // From 2026-07-28 the routing headers are required, and the protocol
    // version header must match the body's `_meta`.
    let version = header_text("mcp-protocol-version")
        .map(str::to_owned)
        .or_else(|| mandate_gateway::body_protocol_version(&message));
    let routing = if version
        .as_deref()
        .is_some_and(mandate_gateway::requires_routing_headers)
    {
        mandate_gateway::check_required_routing_headers(
            &message,
            header_text("mcp-method"),
            header_text("mcp-name"),
        )
    } else {
        mandate_gateway::check_routing_headers(
            &message,
            header_text("mcp-method"),
            header_text("mcp-name"),
        )
    }
    .and_then(|()| {
        mandate_gateway::check_protocol_version_header(
            &message,
            header_text("mcp-protocol-version"),
        )
    });
    if let Err(mismatch) = routing {
        return rpc_error_status(
            StatusCode::BAD_REQUEST,
            id,
            mismatch.code(),
            &mismatch.to_string(),
            None,
        );
    }
    let gate = match mandate_gateway::gate(&message) {
        Ok(g) => g,
        Err(e) => return rpc_error(id, e.code(), &e.to_string(), None),
    };

    let task = task_context(&claims);
    let attrs = agent_attrs(&agent);
    let bundle = state.engine.current();
    let schema = if bundle.has_schema() {
        PolicySchema::Present
    } else {
        PolicySchema::Absent
    };
    let decide = |request: Result<
        mandate_policy::DecisionRequest,
        mandate_gateway::RequestError,
    >| match request {
        Ok(r) => bundle.decide(r),
        Err(why) => Decision::invalid(why.to_string()),
    };
    let mut argument_digest = String::new();
    let verdict = match &gate {
        Gate::ToolCall {
            name: tool,
            arguments,
        } => {
            let (entry, known) = upstream.catalog.lookup(tool);
            argument_digest = state.digester.digest_json_hex(arguments);
            Some(Verdict {
                action: "Action::\"call\"".into(),
                resource: format!("Tool::\"{name}.{tool}\""),
                decision: decide(mandate_gateway::tool_call_request(
                    &name,
                    tool,
                    &entry,
                    known,
                    arguments,
                    &task,
                    &agent.spiffe_id,
                    &attrs,
                    schema,
                )),
            })
        }
        Gate::ReadResource { uri } => Some(Verdict {
            action: "Action::\"read_resource\"".into(),
            resource: format!("Resource::\"{name}:{uri}\""),
            decision: decide(mandate_gateway::resource_read_request(
                &name,
                uri,
                &task,
                &agent.spiffe_id,
                &attrs,
            )),
        }),
        Gate::GetPrompt {
            name: prompt,
            arguments,
        } => Some(Verdict {
            action: "Action::\"get_prompt\"".into(),
            resource: format!("Prompt::\"{name}.{prompt}\""),
            decision: decide(mandate_gateway::prompt_get_request(
                &name,
                prompt,
                arguments,
                &task,
                &agent.spiffe_id,
                &attrs,
                schema,
            )),
        }),
        Gate::Unknown(method) => Some(Verdict {
            action: "Action::\"mcp_method\"".into(),
            resource: format!("McpMethod::\"{name}:{method}\""),
            decision: decide(mandate_gateway::method_request(
                &name,
                method,
                &task,
                &agent.spiffe_id,
                &attrs,
            )),
        }),
        Gate::ListTools | Gate::Passthrough => None,
    };

    if let Some(v) = &verdict
        && !v.decision.is_allow()
    {
        let event = call_event(
            &headers,
            &claims,
            &agent,
            v,
            &argument_digest,
            &name,
            None,
            started,
        );
        if let Err(e) = state.audit.append(vec![event]).await {
            tracing::error!(error = %e, "audit log unavailable");
            return rpc_error(
                id,
                mandate_gateway::AUDIT_UNAVAILABLE,
                "the audit log cannot be written, so nothing is decided",
                None,
            );
        }
        return rpc_error(
            id,
            mandate_gateway::DENIED_BY_POLICY,
            &format!("denied by policy: {}", v.decision.explain()),
            Some(json!({"reason": v.decision.explain(), "policies": v.decision.policies})),
        );
    }

    if let Some(stdio) = &upstream.stdio {
        let answer = stdio.call(&state, &message, &bytes).await;
        if let Some(v) = &verdict {
            let event = call_event(
                &headers,
                &claims,
                &agent,
                v,
                &argument_digest,
                &name,
                Some(answer.audit_status()),
                started,
            );
            let written = state.audit.append(vec![event]).await;
            if let Err(e) = written
                && !matches!(answer, StdioAnswer::Failed { .. })
            {
                tracing::error!(error = %e, "audit log unavailable");
                return rpc_error(
                    id,
                    mandate_gateway::AUDIT_UNAVAILABLE,
                    "the call was made but its audit record cannot be written; its result is withheld",
                    None,
                );
            }
        }
        return match answer {
            StdioAnswer::Response(body) => {
                let body = if matches!(gate, Gate::ListTools) {
                    match narrow_tools_list(&body, false, &claims, &name) {
                        Ok(b) => b,
                        Err(message) => return unreadable_tools_list(&message),
                    }
                } else {
                    body
                };
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    body,
                )
                    .into_response()
            }
            StdioAnswer::Accepted => StatusCode::ACCEPTED.into_response(),
            StdioAnswer::Failed { code, message, .. } => rpc_error(id, code, &message, None),
        };
    }

    let forwarded = match forward(&state, &upstream, Method::POST, &headers, Some(bytes)).await {
        Ok(r) => r,
        Err(why) => {
            if let Some(v) = &verdict {
                let event = call_event(
                    &headers,
                    &claims,
                    &agent,
                    v,
                    &argument_digest,
                    &name,
                    Some(502),
                    started,
                );
                let _ = state.audit.append(vec![event]).await;
            }
            return rpc_error(id, mandate_gateway::UPSTREAM_UNAVAILABLE, &why, None);
        }
    };
    if let Some(v) = &verdict {
        let status = forwarded.status().as_u16();
        let event = call_event(
            &headers,
            &claims,
            &agent,
            v,
            &argument_digest,
            &name,
            Some(status),
            started,
        );
        if let Err(e) = state.audit.append(vec![event]).await {
            tracing::error!(error = %e, "audit log unavailable");
            return rpc_error(
                id,
                mandate_gateway::AUDIT_UNAVAILABLE,
                "the call was made but its audit record cannot be written; its result is withheld",
                None,
            );
        }
    }
    if matches!(gate, Gate::ListTools) {
        return filtered_tools_list(forwarded, &claims, &name).await;
    }
    relay(forwarded)
}

/// The agent's registry attributes, as the principal's in Cedar requests.
pub(crate) fn agent_attrs(agent: &AgentRecord) -> Vec<(String, String)> {
    [
        ("name", &agent.name),
        ("owner", &agent.owner),
        ("env", &agent.env),
        ("function", &agent.function),
        ("spiffe_id", &agent.spiffe_id),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.clone()))
    .collect()
}

/// The audit record of one decided MCP call.
#[allow(clippy::too_many_arguments)]
fn call_event(
    headers: &HeaderMap,
    claims: &TaskClaims,
    agent: &AgentRecord,
    verdict: &Verdict,
    argument_digest: &str,
    upstream: &str,
    upstream_status: Option<u16>,
    started: Instant,
) -> AuditEvent {
    AuditEvent {
        time_us: now_us(),
        kind: AuditKind::Decision,
        request_id: request_id(headers),
        subject: crate::issuance::agent_uid(&agent.spiffe_id).to_string(),
        action: verdict.action.clone(),
        resource: verdict.resource.clone(),
        outcome: verdict.decision.effect.as_str().to_owned(),
        policies: verdict.decision.policies.clone(),
        request_digest: argument_digest.to_owned(),
        detail: json!({
            "endpoint": "mcp",
            "upstream": upstream,
            "task_id": claims.task_id,
            "reason": verdict.decision.explain(),
            "upstream_status": upstream_status,
            "latency_us": u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        }),
    }
}

/// Forwards a request to the upstream: the client's MCP headers, the
/// upstream's credential, never the agent's token or proof.
async fn forward(
    state: &AppState,
    upstream: &Upstream,
    method: Method,
    headers: &HeaderMap,
    body: Option<Bytes>,
) -> Result<reqwest::Response, String> {
    let config = &upstream.config;
    // A POST's answer (JSON, or an SSE stream ending with the response) must
    // come within the timeout; a GET stream stays open as long as both sides
    // keep it.
    let Some(url) = &config.url else {
        return Err(format!("upstream {} is not an HTTP upstream", config.name));
    };
    let mut request = state.upstream_http.request(method.clone(), url);
    if method != Method::GET {
        request = request.timeout(Duration::from_millis(config.timeout_ms));
    }
    for name in FORWARDED_REQUEST_HEADERS.iter().chain(["mcp-name"].iter()) {
        if let Some(value) = headers.get(*name) {
            request = request.header(*name, value.as_bytes());
        }
    }
    if let Some(credential) = &config.credential {
        let (name, value) =
            crate::vault::credential_header(state, &config.name, credential).await?;
        request = request.header(name, value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    request.send().await.map_err(|e| {
        if e.is_timeout() {
            format!(
                "upstream {} did not answer within {} ms",
                config.name, config.timeout_ms
            )
        } else {
            format!(
                "upstream {} cannot be reached: {}",
                config.name,
                e.without_url()
            )
        }
    })
}

/// Passes the upstream's answer on, streaming (SSE stays SSE).
fn relay(upstream: reqwest::Response) -> Response {
    let status = upstream.status();
    let headers = upstream.headers().clone();
    answer(status, &headers, Body::from_stream(upstream.bytes_stream()))
}

/// An answer with the upstream's status and the response headers the
/// gateway passes on.
fn answer(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: Body,
) -> Response {
    let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut builder = Response::builder().status(status);
    for name in FORWARDED_RESPONSE_HEADERS {
        if let Some(value) = headers.get(name) {
            builder = builder.header(HeaderName::from_static(name), value.as_bytes());
        }
    }
    builder
        .body(body)
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

/// A `tools/list` answer holding only the tools the task holds.
async fn filtered_tools_list(
    upstream: reqwest::Response,
    claims: &TaskClaims,
    name: &str,
) -> Response {
    let status = upstream.status();
    let headers = upstream.headers().clone();
    let is_sse = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = match upstream.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return rpc_error(
                None,
                mandate_gateway::UPSTREAM_UNAVAILABLE,
                &format!("upstream {name} broke off its answer: {e}"),
                None,
            );
        }
    };
    match narrow_tools_list(&body, is_sse, claims, name) {
        Ok(body) => answer(status, &headers, Body::from(body)),
        Err(message) => unreadable_tools_list(&message),
    }
}

/// A `tools/list` answer body (JSON or SSE) cut down to the task's tools; one
/// that cannot be read is refused.
fn narrow_tools_list(
    body: &[u8],
    is_sse: bool,
    claims: &TaskClaims,
    name: &str,
) -> Result<Vec<u8>, String> {
    let granted = &claims.grant().tools;
    let prefix = format!("{name}.");
    let allowed = |tool: &str| {
        granted
            .iter()
            .any(|g| g.strip_prefix(&prefix) == Some(tool))
    };
    let filtered = if is_sse {
        mandate_gateway::filter_tools_list_sse(body, allowed)
    } else {
        mandate_gateway::filter_tools_list(body, allowed)
    };
    filtered.map_err(|e| {
        format!("upstream {name} answered tools/list with something that is not a JSON-RPC response: {e}")
    })
}

/// The answer to a `tools/list` that could not be narrowed.
fn unreadable_tools_list(message: &str) -> Response {
    rpc_error(None, mandate_gateway::UPSTREAM_UNAVAILABLE, message, None)
}

/// `GET /mcp/{upstream}`: the server-to-client stream, passed through.
async fn stream(
    State(state): State<AppState>,
    Extension(listener): Extension<Listener>,
    peer: PeerCertificates,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    pass_through(state, listener, peer, name, headers, Method::GET).await
}

/// `DELETE /mcp/{upstream}`: the end of a session, passed through.
async fn end_session(
    State(state): State<AppState>,
    Extension(listener): Extension<Listener>,
    peer: PeerCertificates,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    pass_through(state, listener, peer, name, headers, Method::DELETE).await
}

async fn pass_through(
    state: AppState,
    listener: Listener,
    peer: PeerCertificates,
    name: String,
    headers: HeaderMap,
    method: Method,
) -> Response {
    let upstream = match upstream(&state, &name) {
        Ok(u) => Arc::clone(u),
        Err(r) => return r.into_response(),
    };
    if let Err(r) = admit(&state, &listener, &peer, &headers, method.as_str(), &name) {
        return r.into_response();
    }
    if upstream.stdio.is_some() {
        // A stdio upstream has no server-to-client stream and no sessions.
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "POST")],
            Json(json!({"error": "method_not_allowed", "message": format!("upstream {name} is a stdio server: only POST is supported")})),
        )
            .into_response();
    }
    match forward(&state, &upstream, method, &headers, None).await {
        Ok(r) => relay(r),
        Err(why) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({"error": "upstream_unavailable", "message": why})),
        )
            .into_response(),
    }
}
