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
use mandate_gateway::{Catalog, CatalogEntry, Gate, PolicySchema, RequestId, TaskScope, ToolClass};
use mandate_store::AgentRecord;
use mandate_tokens::TaskClaims;
use serde_json::{Value, json};

use crate::approvals::{HoldOutcome, HoldRequest};
use crate::caller::{Listener, PeerCertificates};
use crate::config::McpUpstream;
use crate::govern::{CallRefusal, Limited, StateFailure, root_task, still_authorized};
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
                    destructive: t.destructive,
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

/// The answer when a call's security state fails (`-31006`).
fn state_unavailable(
    id: Option<&RequestId>,
    failure: StateFailure,
    error: &dyn std::fmt::Display,
) -> Response {
    failure.log(error);
    rpc_error(
        id,
        mandate_gateway::STATE_UNAVAILABLE,
        failure.message(),
        None,
    )
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
    let tool_entry = match &gate {
        Gate::ToolCall { name: tool, .. } => Some(upstream.catalog.lookup(tool)),
        _ => None,
    };
    if matches!(gate, Gate::ListTools | Gate::Passthrough) {
        return plumbing(&state, &upstream, &message, &headers, bytes, &gate, &claims).await;
    }
    // What the task's delegation tree has touched so far. An egress-capable
    // call reads it from the store, so that labels added through another
    // node count too.
    let egress = tool_entry.as_ref().is_some_and(|(entry, _)| entry.egress);
    let labels = match state
        .governor
        .session_labels(&*state.store, root_task(&claims), egress)
        .await
    {
        Ok(labels) => labels,
        Err(e) => return state_unavailable(id, StateFailure::Session, &e),
    };
    let scope = TaskScope {
        task: &task,
        session_labels: &labels,
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
            let (entry, known) = tool_entry.as_ref().expect("a tool call has its entry");
            argument_digest = state.digester.digest_json_hex(arguments);
            Verdict {
                action: "Action::\"call\"".into(),
                resource: format!("Tool::\"{name}.{tool}\""),
                decision: decide(mandate_gateway::tool_call_request(
                    &name,
                    tool,
                    entry,
                    *known,
                    arguments,
                    scope,
                    &agent.spiffe_id,
                    &attrs,
                    schema,
                )),
            }
        }
        Gate::ReadResource { uri } => Verdict {
            action: "Action::\"read_resource\"".into(),
            resource: format!("Resource::\"{name}:{uri}\""),
            decision: decide(mandate_gateway::resource_read_request(
                &name,
                uri,
                scope,
                &agent.spiffe_id,
                &attrs,
            )),
        },
        Gate::GetPrompt {
            name: prompt,
            arguments,
        } => {
            argument_digest = state.digester.digest_json_hex(arguments);
            Verdict {
                action: "Action::\"get_prompt\"".into(),
                resource: format!("Prompt::\"{name}.{prompt}\""),
                decision: decide(mandate_gateway::prompt_get_request(
                    &name,
                    prompt,
                    arguments,
                    scope,
                    &agent.spiffe_id,
                    &attrs,
                    schema,
                )),
            }
        }
        Gate::Unknown(method) => Verdict {
            action: "Action::\"mcp_method\"".into(),
            resource: format!("McpMethod::\"{name}:{method}\""),
            decision: decide(mandate_gateway::method_request(
                &name,
                method,
                scope,
                &agent.spiffe_id,
                &attrs,
            )),
        },
        Gate::ListTools | Gate::Passthrough => unreachable!("plumbing returned above"),
    };
    let call = GovernedCall {
        state: &state,
        id,
        headers: &headers,
        claims: &claims,
        agent: &agent,
        verdict: &verdict,
        argument_digest: &argument_digest,
        upstream: &name,
        started,
    };

    if !verdict.decision.is_allow() && !verdict.decision.needs_approval() {
        return call
            .refuse(CallRefusal::of_decision(&verdict.decision))
            .await;
    }
    let mut slot = match state.governor.enter(&agent.spiffe_id) {
        Ok(slot) => slot,
        Err(limit) => return call.refuse(CallRefusal::of_limit(&limit)).await,
    };
    let mut approval = None;
    if verdict.decision.needs_approval() {
        let hold = hold_request(&call, "mcp", &task);
        let outcome = tokio::select! {
            outcome = state.approvals.hold(hold) => outcome,
            () = slot.until_killed() => {
                return call.refuse(CallRefusal::of_limit(&Limited::Killed)).await;
            }
        };
        match approval_outcome(outcome, &verdict.decision.policies) {
            Ok(approved) => approval = Some(approved),
            Err(HeldEnd::Refused(refusal)) => return call.refuse(refusal).await,
            Err(HeldEnd::Unavailable(why)) => {
                return state_unavailable(id, StateFailure::Approvals, &why);
            }
        }
    }
    match state.governor.count_call(&*state.store, &claims).await {
        Ok(Ok(())) => {}
        Ok(Err(limit)) => return call.refuse(CallRefusal::of_limit(&limit)).await,
        Err(e) => return state_unavailable(id, StateFailure::Budget, &e),
    }

    let answer = tokio::select! {
        answer = call_upstream(&state, &upstream, &message, &headers, bytes, tool_entry.is_some()) => answer,
        () = slot.until_killed() => {
            return call.refuse(CallRefusal::of_limit(&Limited::Killed)).await;
        }
    };
    // Labels are recorded before the data they describe reaches the agent.
    let mut touched: Vec<String> = Vec::new();
    if let (Some((entry, _)), UpstreamAnswer::Complete { body, is_sse, .. }) =
        (&tool_entry, &answer)
    {
        touched.extend(entry.labels.iter().cloned());
        touched.extend(mandate_gateway::result_labels(body, *is_sse));
        touched.sort();
        touched.dedup();
    }
    let labels_added = match state
        .governor
        .add_labels(&*state.store, root_task(&claims), &touched, now_us())
        .await
    {
        Ok(added) => added,
        Err(e) => {
            call.record(Some(answer.audit_status()), &approval, &[])
                .await
                .ok();
            return state_unavailable(id, StateFailure::Labels, &e);
        }
    };
    if slot.killed() || !still_authorized(&state.authority, &claims) {
        return call.refuse(CallRefusal::of_limit(&Limited::Killed)).await;
    }
    if call
        .record(Some(answer.audit_status()), &approval, &labels_added)
        .await
        .is_err()
        && !matches!(answer, UpstreamAnswer::Failed { .. })
    {
        return rpc_error(
            id,
            mandate_gateway::AUDIT_UNAVAILABLE,
            "the call was made but its audit record cannot be written; its result is withheld",
            None,
        );
    }
    drop(slot);
    answer.into_response(id)
}

/// Plumbing and `tools/list`: forwarded without a decision (the list is cut
/// down to the task's tools on the way back).
async fn plumbing(
    state: &AppState,
    upstream: &Upstream,
    message: &mandate_gateway::Message,
    headers: &HeaderMap,
    bytes: Bytes,
    gate: &Gate,
    claims: &TaskClaims,
) -> Response {
    let id = message.id();
    let name = &upstream.config.name;
    if let Some(stdio) = &upstream.stdio {
        return match stdio.call(state, message, &bytes).await {
            StdioAnswer::Response(body) => {
                let body = if matches!(gate, Gate::ListTools) {
                    match narrow_tools_list(&body, false, claims, name) {
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
    let forwarded = match forward(state, upstream, Method::POST, headers, Some(bytes)).await {
        Ok(r) => r,
        Err(why) => return rpc_error(id, mandate_gateway::UPSTREAM_UNAVAILABLE, &why, None),
    };
    if matches!(gate, Gate::ListTools) {
        return filtered_tools_list(forwarded, claims, name).await;
    }
    relay(forwarded)
}

/// A decided call, for its audit record and its refusal.
struct GovernedCall<'a> {
    state: &'a AppState,
    id: Option<&'a RequestId>,
    headers: &'a HeaderMap,
    claims: &'a TaskClaims,
    agent: &'a AgentRecord,
    verdict: &'a Verdict,
    argument_digest: &'a str,
    upstream: &'a str,
    started: Instant,
}

impl GovernedCall<'_> {
    /// Writes the call's audit record: what policy decided, and how the call
    /// went (upstream status, approval, labels it added).
    async fn record(
        &self,
        upstream_status: Option<u16>,
        approval: &Option<Approved>,
        labels_added: &[String],
    ) -> Result<(), ()> {
        let mut event = call_event(
            self.headers,
            self.claims,
            self.agent,
            self.verdict,
            self.argument_digest,
            self.upstream,
            upstream_status,
            self.started,
        );
        if let Some(approved) = approval {
            // Held, then approved: the call went ahead on a person's word.
            event.outcome = "allow".to_owned();
            event.detail["approval_id"] = json!(approved.id);
            event.detail["approver"] = json!(approved.approver);
        }
        if !labels_added.is_empty() {
            event.detail["labels_added"] = json!(labels_added);
        }
        self.state.audit.append(vec![event]).await.map_err(|e| {
            tracing::error!(error = %e, "audit log unavailable");
        })
    }

    /// Audits and answers a call that does not go ahead.
    async fn refuse(&self, refusal: CallRefusal) -> Response {
        refusal.count(&self.agent.spiffe_id, "mcp");
        let mut event = call_event(
            self.headers,
            self.claims,
            self.agent,
            self.verdict,
            self.argument_digest,
            self.upstream,
            None,
            self.started,
        );
        event.kind = refusal.audit_kind();
        event.outcome = "deny".to_owned();
        event.detail["reason"] = json!(refusal.reason);
        event.detail["explanation"] = json!(refusal.message);
        if let Err(e) = self.state.audit.append(vec![event]).await {
            tracing::error!(error = %e, "audit log unavailable");
            return rpc_error(
                self.id,
                mandate_gateway::AUDIT_UNAVAILABLE,
                "the audit log cannot be written, so nothing is decided",
                None,
            );
        }
        rpc_error(
            self.id,
            mandate_gateway::DENIED_BY_POLICY,
            &refusal.message,
            Some(refusal.data()),
        )
    }
}

/// An approval a held call went ahead on.
pub(crate) struct Approved {
    pub(crate) id: String,
    pub(crate) approver: String,
}

/// How a hold ended when it did not end in an approval.
pub(crate) enum HeldEnd {
    Refused(CallRefusal),
    Unavailable(String),
}

/// The approval request for a held call.
fn hold_request(call: &GovernedCall<'_>, endpoint: &'static str, task: &Value) -> HoldRequest {
    hold_request_for(
        call.claims,
        call.agent,
        endpoint,
        call.upstream,
        &call.verdict.action,
        &call.verdict.resource,
        call.argument_digest,
        &call.verdict.decision,
        request_id(call.headers),
        task,
    )
}

/// The approval request for a held call of `claims`' task (MCP and proxy).
#[allow(clippy::too_many_arguments)]
pub(crate) fn hold_request_for(
    claims: &TaskClaims,
    agent: &AgentRecord,
    endpoint: &'static str,
    upstream: &str,
    action: &str,
    resource: &str,
    argument_digest: &str,
    decision: &Decision,
    request_id: String,
    task: &Value,
) -> HoldRequest {
    let reasons = match &decision.reason {
        mandate_core::DecisionReason::ApprovalRequired(texts) => texts.clone(),
        _ => Vec::new(),
    };
    HoldRequest {
        agent: agent.spiffe_id.clone(),
        agent_name: agent.name.clone(),
        task_id: claims.task_id.clone(),
        task_chain: claims.task_chain.clone(),
        endpoint,
        upstream: upstream.to_owned(),
        action: action.to_owned(),
        resource: resource.to_owned(),
        argument_digest: argument_digest.to_owned(),
        purpose: task["purpose"].as_str().unwrap_or_default().to_owned(),
        reasons,
        policies: decision.policies.clone(),
        request_id,
    }
}

/// What a hold's outcome means for the call.
pub(crate) fn approval_outcome(
    outcome: Result<HoldOutcome, crate::approvals::ApprovalError>,
    policies: &[String],
) -> Result<Approved, HeldEnd> {
    match outcome {
        Ok(HoldOutcome::Approved { id, approver }) => Ok(Approved { id, approver }),
        Ok(HoldOutcome::Denied { id, approver, note }) => {
            Err(HeldEnd::Refused(CallRefusal::of_hold(
                "approval_denied",
                match note {
                    Some(note) => format!("{approver} denied this call (approval {id}): {note}"),
                    None => format!("{approver} denied this call (approval {id})"),
                },
                policies,
            )))
        }
        Ok(HoldOutcome::Expired { id }) => Err(HeldEnd::Refused(CallRefusal::of_hold(
            "approval_expired",
            format!("nobody approved this call in time (approval {id}); it is denied"),
            policies,
        ))),
        Ok(HoldOutcome::Cancelled { id, why }) => Err(HeldEnd::Refused(CallRefusal::of_hold(
            "approval_cancelled",
            format!("the approval {id} was cancelled: {why}"),
            policies,
        ))),
        Err(e) => Err(HeldEnd::Unavailable(e.to_string())),
    }
}

/// What the upstream answered to a decided call.
enum UpstreamAnswer {
    /// The whole answer, read before relaying (tool calls: their result's
    /// labels are recorded before the agent sees it).
    Complete {
        status: u16,
        headers: Option<reqwest::header::HeaderMap>,
        body: Bytes,
        is_sse: bool,
    },
    /// An answer that streams through as it comes.
    Streaming(reqwest::Response),
    /// A notification or response was accepted.
    Accepted,
    /// No answer: a JSON-RPC error with the status the audit record keeps.
    Failed {
        code: i64,
        status: u16,
        message: String,
    },
}

impl UpstreamAnswer {
    fn audit_status(&self) -> u16 {
        match self {
            UpstreamAnswer::Complete { status, .. } => *status,
            UpstreamAnswer::Streaming(r) => r.status().as_u16(),
            UpstreamAnswer::Accepted => 202,
            UpstreamAnswer::Failed { status, .. } => *status,
        }
    }

    fn into_response(self, id: Option<&RequestId>) -> Response {
        match self {
            UpstreamAnswer::Complete {
                status,
                headers: Some(headers),
                body,
                ..
            } => answer(
                reqwest::StatusCode::from_u16(status).unwrap_or(reqwest::StatusCode::BAD_GATEWAY),
                &headers,
                Body::from(body),
            ),
            UpstreamAnswer::Complete { body, .. } => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response(),
            UpstreamAnswer::Streaming(r) => relay(r),
            UpstreamAnswer::Accepted => StatusCode::ACCEPTED.into_response(),
            UpstreamAnswer::Failed { code, message, .. } => rpc_error(id, code, &message, None),
        }
    }
}

/// Sends a decided message upstream. A tool call's answer is read whole
/// (bounded), other answers stream.
async fn call_upstream(
    state: &AppState,
    upstream: &Upstream,
    message: &mandate_gateway::Message,
    headers: &HeaderMap,
    bytes: Bytes,
    read_whole: bool,
) -> UpstreamAnswer {
    if let Some(stdio) = &upstream.stdio {
        return match stdio.call(state, message, &bytes).await {
            StdioAnswer::Response(body) => UpstreamAnswer::Complete {
                status: 200,
                headers: None,
                body: Bytes::from(body),
                is_sse: false,
            },
            StdioAnswer::Accepted => UpstreamAnswer::Accepted,
            StdioAnswer::Failed {
                code,
                status,
                message,
            } => UpstreamAnswer::Failed {
                code,
                status,
                message,
            },
        };
    }
    let name = &upstream.config.name;
    let forwarded = match forward(state, upstream, Method::POST, headers, Some(bytes)).await {
        Ok(r) => r,
        Err(why) => {
            return UpstreamAnswer::Failed {
                code: mandate_gateway::UPSTREAM_UNAVAILABLE,
                status: 502,
                message: why,
            };
        }
    };
    if !read_whole {
        return UpstreamAnswer::Streaming(forwarded);
    }
    let status = forwarded.status().as_u16();
    let headers = forwarded.headers().clone();
    let is_sse = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let limit = state.max_body_bytes.saturating_mul(RESULT_SIZE_FACTOR);
    match read_answer(forwarded, limit).await {
        Ok(body) => UpstreamAnswer::Complete {
            status,
            headers: Some(headers),
            body,
            is_sse,
        },
        Err(why) => UpstreamAnswer::Failed {
            code: mandate_gateway::UPSTREAM_UNAVAILABLE,
            status: 502,
            message: format!("upstream {name} {why}"),
        },
    }
}

/// A tool call's answer may be this many times `max_body_bytes`.
const RESULT_SIZE_FACTOR: usize = 16;

/// Reads an answer whole, up to `limit` bytes.
async fn read_answer(mut response: reqwest::Response, limit: usize) -> Result<Bytes, String> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(format!("answered with more than {limit} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(Bytes::from(body)),
            Err(e) => return Err(format!("broke off its answer: {e}")),
        }
    }
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
