//! The HTTP reverse proxy for legacy REST APIs: `/proxy/{upstream}/{path}`.
//!
//! Every request is authenticated with the agent's task token (DPoP proof for
//! this method and URL, or the mTLS binding, as for any resource), matched to
//! the upstream's first fitting rule (`mandate-gateway` owns the matching and
//! refuses confusing paths), decided by Cedar as that rule's action on its
//! resource, audited, and only then forwarded, with the upstream's credential
//! instead of the agent's token, cookies or proof. Bodies stream both ways and
//! are never held whole; the request body is counted against the limit as it
//! passes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Extension, Json, Router};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use mandate_core::{AuditEvent, AuditKind, Decision};
use mandate_gateway::{MatchError, RestRoutes, TaskScope};
use mandate_store::AgentRecord;
use mandate_tokens::TaskClaims;
use serde_json::json;

use crate::caller::{Listener, PeerCertificates};
use crate::config::HttpUpstream;
use crate::error::ApiError;
use crate::govern::{CallRefusal, Limited::Killed, StateFailure, root_task, still_authorized};
use crate::mcp::HeldEnd;
use crate::oauth::check_resource_token;
use crate::routes::{now_us, request_id};
use crate::state::AppState;
use crate::task_subject::task_context;

/// The proxy's routes: every method, with or without a path below the upstream.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/proxy/{upstream}", any(proxy))
        .route("/proxy/{upstream}/", any(proxy))
        .route("/proxy/{upstream}/{*rest}", any(proxy))
}

/// An upstream as the proxy uses it: its config, its rules checked, its limit.
#[derive(Debug)]
pub(crate) struct ProxyUpstream {
    pub(crate) config: HttpUpstream,
    pub(crate) routes: RestRoutes,
    pub(crate) max_body_bytes: u64,
}

impl ProxyUpstream {
    /// The upstream of `config`, its body limit defaulting to `max_body_bytes`.
    pub(crate) fn new(config: HttpUpstream, max_body_bytes: usize) -> anyhow::Result<Self> {
        let routes = config
            .routes()
            .map_err(|e| anyhow::anyhow!("http_upstreams: {e}"))?;
        let max_body_bytes = config
            .max_body_bytes
            .unwrap_or(u64::try_from(max_body_bytes).unwrap_or(u64::MAX));
        Ok(ProxyUpstream {
            config,
            routes,
            max_body_bytes,
        })
    }
}

/// Request headers never forwarded: hop-by-hop ones (RFC 9110 §7.6.1), those
/// the client of the upstream (Mandate) sets itself, and the agent's own
/// credentials. Headers the `Connection` header names go too.
const DROPPED_REQUEST_HEADERS: [&str; 15] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "expect",
    "authorization",
    "dpop",
    "cookie",
];

/// Response headers never relayed: hop-by-hop ones, and cookies the upstream
/// sets for Mandate's credential, which are not the agent's to keep.
const DROPPED_RESPONSE_HEADERS: [&str; 11] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "set-cookie",
    "set-cookie2",
];

/// `headers` without the `dropped` ones, those `Connection` names, and `also`.
fn filtered(headers: &HeaderMap, dropped: &[&str], also: Option<&HeaderName>) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let text = name.as_str();
        if dropped.contains(&text) || named.iter().any(|n| n == text) || Some(name) == also {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// What a refusal or failure answers: status, `error` code, message.
fn refuse(status: StatusCode, error: &str, message: &str) -> Response {
    (status, Json(json!({"error": error, "message": message}))).into_response()
}

/// The answer when a call's security state fails (503).
fn state_unavailable(failure: StateFailure, error: &dyn std::fmt::Display) -> Response {
    failure.log(error);
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "state_unavailable",
        failure.message(),
    )
}

/// The longest path kept in an audit record, in bytes.
const MAX_AUDITED_PATH: usize = 1024;

fn audited_path(path: &str) -> &str {
    let mut end = path.len().min(MAX_AUDITED_PATH);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

/// What one request to the proxy is, for its audit record.
struct Call<'a> {
    headers: &'a HeaderMap,
    claims: &'a TaskClaims,
    agent: &'a AgentRecord,
    upstream: &'a str,
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    started: Instant,
}

impl Call<'_> {
    /// The audit record of this call decided as `decision` on `action` and
    /// `resource`, with the upstream's status if it was called.
    fn event(
        &self,
        state: &AppState,
        action: &str,
        resource: &str,
        decision: &Decision,
        upstream_status: Option<u16>,
    ) -> AuditEvent {
        let path = audited_path(self.path);
        AuditEvent {
            time_us: now_us(),
            kind: AuditKind::Decision,
            request_id: request_id(self.headers),
            subject: crate::issuance::agent_uid(&self.agent.spiffe_id).to_string(),
            action: action.to_owned(),
            resource: resource.to_owned(),
            outcome: decision.effect.as_str().to_owned(),
            policies: decision.policies.clone(),
            request_digest: self.digest(state),
            detail: json!({
                "endpoint": "proxy",
                "upstream": self.upstream,
                "task_id": self.claims.task_id,
                "method": self.method,
                "path": path,
                "reason": decision.explain(),
                "upstream_status": upstream_status,
                "latency_us": u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            }),
        }
    }
}

impl Call<'_> {
    /// The keyed digest of the request line, the call's argument digest.
    fn digest(&self, state: &AppState) -> String {
        state.digester.digest_json_hex(&json!({
            "method": self.method, "path": self.path, "query": self.query,
        }))
    }

    /// Audits and answers a call that does not go ahead: 403, or 429 for
    /// rate and concurrency limits.
    async fn refuse(
        &self,
        state: &AppState,
        action: &str,
        resource: &str,
        decision: &Decision,
        refusal: CallRefusal,
    ) -> Response {
        refusal.count(&self.agent.spiffe_id, "proxy");
        let mut event = self.event(state, action, resource, decision, None);
        event.kind = refusal.audit_kind();
        event.outcome = "deny".to_owned();
        event.detail["reason"] = json!(refusal.reason);
        event.detail["explanation"] = json!(refusal.message);
        if let Err(r) = record(state, event).await {
            return r;
        }
        let status = match refusal.reason.as_str() {
            "rate_limited" | "concurrency_limit" => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::FORBIDDEN,
        };
        let mut body = refusal.data();
        body["error"] = json!("denied_by_policy");
        body["message"] = json!(refusal.message);
        (status, Json(body)).into_response()
    }
}

/// Writes `event`; if it cannot be, the request is answered 503 and nothing
/// else happens.
async fn record(state: &AppState, event: AuditEvent) -> Result<(), Response> {
    state.audit.append(vec![event]).await.map_err(|e| {
        tracing::error!(error = %e, "audit log unavailable");
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "the audit log cannot be written, so nothing is decided",
        )
    })
}

/// Any method on `/proxy/{upstream}/...`.
async fn proxy(
    State(state): State<AppState>,
    Extension(listener): Extension<Listener>,
    peer: PeerCertificates,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    // The raw path, as sent and as the DPoP proof names it: the upstream's
    // name, then the path below it, still percent-encoded.
    let below = uri.path().strip_prefix("/proxy/").unwrap_or_default();
    let (name, rest) = below.split_once('/').unwrap_or((below, ""));
    let path = format!("/{rest}");
    let Some(upstream) = state.proxy_upstreams.get(name).cloned() else {
        return refuse(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no HTTP upstream named {name:?}"),
        );
    };
    let htu = format!("{}{}", listener.base, uri.path());
    let (claims, agent) = match check_resource_token(&state, &headers, &peer, method.as_str(), &htu)
    {
        Ok(ok) => ok,
        Err(e) => return e.into_response(),
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        ApiError::TooLarge {
            limit: usize::try_from(upstream.max_body_bytes).unwrap_or(usize::MAX),
        }
        .into_response()
    };
    if declared.is_some_and(|n| n > upstream.max_body_bytes) {
        return too_large();
    }
    let call = Call {
        headers: &headers,
        claims: &claims,
        agent: &agent,
        upstream: name,
        method: method.as_str(),
        path: &path,
        query: uri.query(),
        started,
    };

    let matched = match upstream.routes.match_request(method.as_str(), &path) {
        Ok(m) => m,
        Err(refusal) => {
            let (status, error) = match refusal {
                MatchError::UnsafePath { .. } => (StatusCode::BAD_REQUEST, "bad_path"),
                _ => (StatusCode::FORBIDDEN, "no_route"),
            };
            let decision = Decision::invalid(refusal.to_string());
            let resource = format!("{name}:{}", audited_path(&path));
            let event = call.event(&state, method.as_str(), &resource, &decision, None);
            if let Err(r) = record(&state, event).await {
                return r;
            }
            return refuse(status, error, &refusal.to_string());
        }
    };
    // What the task's delegation tree has touched so far; fresh from the
    // store for an endpoint that can send data out.
    let labels = match state
        .governor
        .session_labels(&*state.store, root_task(&claims), matched.egress)
        .await
    {
        Ok(labels) => labels,
        Err(e) => return state_unavailable(StateFailure::Session, &e),
    };
    let task = task_context(&claims);
    let request = mandate_gateway::rest_request(
        name,
        &matched,
        method.as_str(),
        uri.query(),
        TaskScope {
            task: &task,
            session_labels: &labels,
        },
        &agent.spiffe_id,
        &crate::mcp::agent_attrs(&agent),
    );
    let (action, resource, decision) = match request {
        Ok(r) => (
            r.action.to_string(),
            r.resource.to_string(),
            state.engine.current().decide(r),
        ),
        Err(why) => (
            format!("Action::\"{}\"", matched.action),
            format!("{}::\"{}\"", matched.resource_type, matched.resource_id),
            Decision::invalid(why.to_string()),
        ),
    };
    if !decision.is_allow() && !decision.needs_approval() {
        return call
            .refuse(
                &state,
                &action,
                &resource,
                &decision,
                CallRefusal::of_decision(&decision),
            )
            .await;
    }
    let mut slot = match state.governor.enter(&agent.spiffe_id) {
        Ok(slot) => slot,
        Err(limit) => {
            return call
                .refuse(
                    &state,
                    &action,
                    &resource,
                    &decision,
                    CallRefusal::of_limit(&limit),
                )
                .await;
        }
    };
    let mut approval = None;
    if decision.needs_approval() {
        let digest = call.digest(&state);
        let hold = crate::mcp::hold_request_for(
            &claims,
            &agent,
            "proxy",
            name,
            &action,
            &resource,
            &digest,
            &decision,
            request_id(&headers),
            &task,
        );
        let outcome = tokio::select! {
            outcome = state.approvals.hold(hold) => outcome,
            () = slot.until_killed() => {
                return call
                    .refuse(&state, &action, &resource, &decision, CallRefusal::of_limit(&Killed))
                    .await;
            }
        };
        match crate::mcp::approval_outcome(outcome, &decision.policies) {
            Ok(approved) => approval = Some(approved),
            Err(HeldEnd::Refused(refusal)) => {
                return call
                    .refuse(&state, &action, &resource, &decision, refusal)
                    .await;
            }
            Err(HeldEnd::Unavailable(why)) => {
                return state_unavailable(StateFailure::Approvals, &why);
            }
        }
    }
    match state.governor.count_call(&*state.store, &claims).await {
        Ok(Ok(())) => {}
        Ok(Err(limit)) => {
            return call
                .refuse(
                    &state,
                    &action,
                    &resource,
                    &decision,
                    CallRefusal::of_limit(&limit),
                )
                .await;
        }
        Err(e) => return state_unavailable(StateFailure::Budget, &e),
    }
    // An approved hold is an allow on a person's word.
    let decision = match &approval {
        Some(_) => Decision {
            effect: mandate_core::Effect::Allow,
            ..decision
        },
        None => decision,
    };

    let exceeded = Arc::new(AtomicBool::new(false));
    let forwarded = tokio::select! {
        forwarded = forward(
            &state,
            &upstream,
            &method,
            &path,
            uri.query(),
            &headers,
            declared,
            body,
            Arc::clone(&exceeded),
        ) => forwarded,
        () = slot.until_killed() => {
            return call
                .refuse(&state, &action, &resource, &decision, CallRefusal::of_limit(&Killed))
                .await;
        }
    };
    let answer = match forwarded {
        Ok(answer) => answer,
        Err(failure) => {
            let status = if exceeded.load(Ordering::Relaxed) {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                failure.status
            };
            let event = call.event(&state, &action, &resource, &decision, Some(status.as_u16()));
            if let Err(e) = state.audit.append(vec![event]).await {
                tracing::error!(error = %e, "audit log unavailable");
            }
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                return too_large();
            }
            return refuse(status, failure.error, &failure.message);
        }
    };
    // The endpoint's labels are recorded before its answer reaches the agent.
    let labels_added = match state
        .governor
        .add_labels(&*state.store, root_task(&claims), &matched.labels, now_us())
        .await
    {
        Ok(added) => added,
        Err(e) => return state_unavailable(StateFailure::Labels, &e),
    };
    if slot.killed() || !still_authorized(&state.authority, &claims) {
        return call
            .refuse(
                &state,
                &action,
                &resource,
                &decision,
                CallRefusal::of_limit(&Killed),
            )
            .await;
    }
    let mut event = call.event(
        &state,
        &action,
        &resource,
        &decision,
        Some(answer.status().as_u16()),
    );
    if let Some(approved) = &approval {
        event.detail["approval_id"] = json!(approved.id);
        event.detail["approver"] = json!(approved.approver);
    }
    if !labels_added.is_empty() {
        event.detail["labels_added"] = json!(labels_added);
    }
    if let Err(e) = state.audit.append(vec![event]).await {
        tracing::error!(error = %e, "audit log unavailable");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "the call was made but its audit record cannot be written; its result is withheld",
        );
    }
    relay(answer)
}

/// Why the upstream gave no answer.
struct Failure {
    status: StatusCode,
    error: &'static str,
    message: String,
}

impl Failure {
    fn unavailable(message: String) -> Failure {
        Failure {
            status: StatusCode::BAD_GATEWAY,
            error: "upstream_unavailable",
            message,
        }
    }
}

/// An error and its causes, `: `-separated (reqwest's own text says little).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Sends the request on to `<url><path>?<query>`: the agent's headers without
/// its credentials, the upstream's credential, the body streamed through a
/// counter that stops it past the limit (and sets `exceeded`).
#[allow(clippy::too_many_arguments)]
async fn forward(
    state: &AppState,
    upstream: &ProxyUpstream,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    declared: Option<u64>,
    body: Body,
    exceeded: Arc<AtomicBool>,
) -> Result<reqwest::Response, Failure> {
    let config = &upstream.config;
    let mut url = format!("{}{path}", config.url.trim_end_matches('/'));
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    let credential = match &config.credential {
        Some(c) => Some(
            crate::vault::credential_header(state, &config.name, c)
                .await
                .map_err(Failure::unavailable)?,
        ),
        None => None,
    };
    let mut outgoing = filtered(
        headers,
        &DROPPED_REQUEST_HEADERS,
        credential.as_ref().map(|(name, _)| name),
    );
    if let Some((name, value)) = credential {
        outgoing.insert(name, value);
    }
    let has_body = declared.is_some_and(|n| n > 0)
        || (declared.is_none() && headers.contains_key(header::TRANSFER_ENCODING));
    let mut request = state.upstream_http.request(method.clone(), &url);
    if has_body {
        // A declared length goes on, so the upstream gets the body as sent
        // rather than chunked; the counter still stops a body that lies.
        if let Some(n) = declared {
            outgoing.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        let limit = usize::try_from(upstream.max_body_bytes).unwrap_or(usize::MAX);
        let stream = Limited::new(body, limit)
            .map_err(move |e| {
                if e.is::<LengthLimitError>() {
                    exceeded.store(true, Ordering::Relaxed);
                }
                e
            })
            .into_data_stream();
        request = request.body(reqwest::Body::wrap_stream(stream));
    } else if declared == Some(0) {
        request = request.body(reqwest::Body::from(Vec::new()));
    }
    let request = request.headers(outgoing);
    let timeout = Duration::from_millis(config.timeout_ms);
    match tokio::time::timeout(timeout, request.send()).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(Failure::unavailable(format!(
            "upstream {} cannot be reached: {}",
            config.name,
            chain(&e.without_url())
        ))),
        Err(_) => Err(Failure {
            status: StatusCode::GATEWAY_TIMEOUT,
            error: "upstream_timeout",
            message: format!(
                "upstream {} did not answer within {} ms",
                config.name, config.timeout_ms
            ),
        }),
    }
}

/// The upstream's answer passed on as it streams: its status, its headers but
/// hop-by-hop ones and cookies, its body.
fn relay(answer: reqwest::Response) -> Response {
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = filtered(answer.headers(), &DROPPED_RESPONSE_HEADERS, None);
    let mut response = Body::from_stream(answer.bytes_stream()).into_response();
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn names(h: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        names
    }

    #[test]
    fn the_agents_credentials_and_hop_by_hop_headers_are_not_forwarded() {
        let h = headers(&[
            ("authorization", "DPoP eyJ..."),
            ("dpop", "eyJ..."),
            ("cookie", "session=1"),
            ("host", "mandate.local"),
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("x-api-key", "the agent's guess"),
            ("accept", "application/json"),
            ("x-request-id", "r1"),
            ("if-none-match", "\"abc\""),
        ]);
        let key = HeaderName::from_static("x-api-key");
        let out = filtered(&h, &DROPPED_REQUEST_HEADERS, Some(&key));
        assert_eq!(names(&out), ["accept", "if-none-match", "x-request-id"]);
    }

    #[test]
    fn cookies_and_hop_by_hop_headers_are_not_relayed() {
        let h = headers(&[
            ("set-cookie", "upstream-session=1"),
            ("transfer-encoding", "chunked"),
            ("content-type", "application/json"),
            ("content-length", "12"),
            ("link", "<https://api/x?page=2>; rel=\"next\""),
            ("etag", "\"abc\""),
        ]);
        let out = filtered(&h, &DROPPED_RESPONSE_HEADERS, None);
        assert_eq!(
            names(&out),
            ["content-length", "content-type", "etag", "link"]
        );
    }

    #[test]
    fn audited_paths_are_cut_on_a_character_boundary() {
        let long = format!("/{}", "é".repeat(1000));
        let cut = audited_path(&long);
        assert!(cut.len() <= MAX_AUDITED_PATH && long.starts_with(cut));
        assert_eq!(audited_path("/a"), "/a");
    }
}
