//! The HTTP surface: AuthZEN evaluation endpoints, PDP metadata, health,
//! readiness and metrics, with the layers every request passes through.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt;
use mandate_authzen::{
    BatchOutcome, EvaluatedItem, EvaluationRequest, EvaluationsRequest, EvaluationsResponse,
    PdpMetadata, evaluate_batch_resolved, evaluate_one,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower::ServiceBuilder;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;

use crate::caller::{Listener, PeerCertificates};
use crate::error::ApiError;
use crate::metrics;
use crate::request_ids::RequestIds;
use crate::state::AppState;
use crate::task_subject::{ResolveError, TaskTokenResolver, prefetch_session_labels};

/// The application, with all routes and layers, for `state`, as served on
/// the listener whose base URL (as clients address it) is `base`.
pub fn router(state: AppState, request_timeout: Duration, base: &str) -> Router {
    let max_body = state.max_body_bytes;
    // A call through the gateway or the proxy may wait for its upstream and,
    // when held, for a person: its own limits bound it, on top of the time
    // every request gets.
    let slowest_upstream = state
        .upstreams
        .values()
        .map(|u| u.config.timeout_ms)
        .chain(state.proxy_upstreams.values().map(|u| u.config.timeout_ms))
        .max()
        .unwrap_or(0);
    let governed_timeout =
        request_timeout + state.approvals.timeout() + Duration::from_millis(slowest_upstream);
    let governed = Router::new()
        .merge(crate::mcp::routes())
        .merge(crate::proxy::routes())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            governed_timeout,
        ));
    let answered = Router::new()
        .merge(crate::oauth::routes())
        .merge(crate::admin::routes())
        .merge(crate::admin_approvals::routes())
        .merge(crate::admin_kill::routes())
        .merge(crate::admin_secrets::routes())
        .merge(crate::admin_posture::routes())
        .route("/access/v1/evaluation", post(evaluation))
        .route("/access/v1/evaluations", post(evaluations))
        .route("/.well-known/authzen-configuration", get(pdp_metadata))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ));
    Router::new()
        .merge(governed)
        .merge(answered)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(Listener {
            base: base.trim_end_matches('/').into(),
        }))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::map_response(timeout_as_json))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(RequestIds::new()))
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
        .with_state(state)
}

/// The timeout layer answers 408 with an empty body; every error here is JSON.
async fn timeout_as_json(response: Response) -> Response {
    if response.status() == StatusCode::REQUEST_TIMEOUT {
        return (
            StatusCode::REQUEST_TIMEOUT,
            Json(json!({"error": "timeout", "message": "the request took longer than request_timeout_ms"})),
        )
            .into_response();
    }
    response
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "not_found", "message": "no such endpoint"})),
    )
        .into_response()
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({"error": "method_not_allowed", "message": "this endpoint does not take that method"})),
    )
        .into_response()
}

/// Compares without stopping at the first differing byte, so response timing
/// does not reveal how much of a guessed key was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn check_api_key(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.api_key else {
        return Ok(());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        // The scheme name is case-insensitive (RFC 9110, section 11.1).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key)
        .ok_or(ApiError::Unauthorized)?;
    if constant_time_eq(presented.trim().as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Authenticates, checks the media type and size, and parses the JSON body.
async fn read_json<T: DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    check_api_key(state, headers)?;
    read_json_body(state, headers, body).await
}

/// Checks the media type and size, and parses the JSON body.
pub(crate) async fn read_json_body<T: DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    let is_json =
        media_type(headers).is_some_and(|m| m == "application/json" || m.ends_with("+json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body = read_limited(body, headers, state.max_body_bytes).await?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))
}

/// The request's media type (`Content-Type` without parameters), lower case.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
}

/// Most bytes of an oversized body read and thrown away before answering 413.
const DRAIN_LIMIT: usize = 64 << 20;

/// Reads a body of at most `limit` bytes. A longer one is read on and thrown
/// away (up to [`DRAIN_LIMIT`]) before the 413 is sent: a client still
/// uploading then gets the answer instead of a reset connection.
pub(crate) async fn read_limited(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = ApiError::TooLarge { limit };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT) {
        return Err(too_large);
    }
    let mut body = body;
    let mut kept = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len());
            if total <= limit {
                kept.extend_from_slice(&data);
            } else if total > DRAIN_LIMIT {
                break;
            }
        }
    }
    if total > limit {
        return Err(too_large);
    }
    Ok(Bytes::from(kept))
}

/// Longest caller-supplied request ID kept in the audit log.
const MAX_REQUEST_ID: usize = 200;

/// The request ID for the audit log: the caller's `X-Request-ID` (or the one
/// generated for it), cut to a bounded length so a caller cannot bloat the log.
pub(crate) fn request_id(headers: &HeaderMap) -> String {
    let id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match id.char_indices().nth(MAX_REQUEST_ID) {
        Some((cut, _)) => id[..cut].to_owned(),
        None => id.to_owned(),
    }
}

pub(crate) fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Records `items` durably, then counts them. Nothing is answered before its
/// record is committed; if it cannot be, the caller gets an error, never a decision.
async fn record(
    state: &AppState,
    endpoint: &'static str,
    headers: &HeaderMap,
    items: &[&EvaluatedItem],
    started: Instant,
) -> Result<(), ApiError> {
    let id = request_id(headers);
    let time_us = now_us();
    let events = items
        .iter()
        .map(|item| item.audit_event(time_us, &id))
        .collect();
    state
        .audit
        .append(events)
        .await
        .map_err(ApiError::AuditUnavailable)?;
    for item in items {
        ::metrics::counter!(metrics::DECISIONS, "decision" => item.decision.effect.as_str(), "endpoint" => endpoint)
            .increment(1);
    }
    ::metrics::histogram!(metrics::DECISION_SECONDS, "endpoint" => endpoint)
        .record(started.elapsed().as_secs_f64());
    Ok(())
}

async fn evaluation(
    State(state): State<AppState>,
    Extension(listener): Extension<Listener>,
    peer: PeerCertificates,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let mut request: EvaluationRequest = read_json(&state, &headers, body).await?;
    let presented = request.subject.id.clone();
    let labels = if request.subject.kind == crate::task_subject::TASK_TOKEN_TYPE {
        let subject = serde_json::to_value(&request.subject).unwrap_or_default();
        prefetch_session_labels(&state, [&subject]).await?
    } else {
        Default::default()
    };
    let resolver = TaskTokenResolver::new(
        &state,
        format!("{}/access/v1/evaluation", listener.base),
        peer,
    )
    .with_labels(labels);
    if let Err(error) = resolver.resolve_typed(&mut request) {
        if let ResolveError::Token(reason) = &error {
            let event = crate::oauth::token_event(
                mandate_core::AuditKind::TokenRejected,
                &headers,
                "",
                "",
                "rejected",
                json!({"endpoint": "evaluation", "reason": reason, "claimed": crate::oauth::claimed(&presented)}),
            );
            state
                .audit
                .append(vec![event])
                .await
                .map_err(ApiError::AuditUnavailable)?;
        }
        return Err(error.into());
    }
    let bundle = state.engine.current();
    let mut item = evaluate_one(&bundle, &request, state.limits, &state.digester)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    settle_holds(&state, &resolver, &headers, std::slice::from_mut(&mut item)).await?;
    record(&state, "evaluation", &headers, &[&item], started).await?;
    Ok(Json(item.response).into_response())
}

async fn evaluations(
    State(state): State<AppState>,
    Extension(listener): Extension<Listener>,
    peer: PeerCertificates,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let batch: EvaluationsRequest = read_json(&state, &headers, body).await?;
    let bundle = state.engine.current();
    // Only the task tokens of a batch that will be evaluated: one over the
    // limit is refused without reading anything.
    let default_subject = batch
        .subject
        .as_ref()
        .map(|s| serde_json::to_value(s).unwrap_or_default());
    let items = batch.evaluations.as_deref().unwrap_or_default();
    let mut subjects: Vec<&Value> = default_subject.iter().collect();
    if items.len() <= state.limits.max_items {
        subjects.extend(items.iter().filter_map(|item| item.get("subject")));
    }
    let labels = prefetch_session_labels(&state, subjects).await?;
    let resolver = Arc::new(
        TaskTokenResolver::new(
            &state,
            format!("{}/access/v1/evaluations", listener.base),
            peer,
        )
        .with_labels(labels),
    );
    let batch_resolver = Arc::clone(&resolver);
    // A batch can take milliseconds of CPU: keep it off the async workers so
    // single decisions on the same node are not held up behind it.
    let (limits, digester) = (state.limits, state.digester.clone());
    let outcome = tokio::task::spawn_blocking(move || {
        evaluate_batch_resolved(&bundle, &batch, limits, &digester, &*batch_resolver)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("batch evaluation failed: {e}")))?;
    match outcome.map_err(ApiError::BadRequest)? {
        BatchOutcome::Single(mut item) => {
            settle_holds(&state, &resolver, &headers, std::slice::from_mut(&mut item)).await?;
            record(&state, "evaluations", &headers, &[&item], started).await?;
            Ok(Json(item.response).into_response())
        }
        BatchOutcome::Items(mut items) => {
            settle_holds(&state, &resolver, &headers, &mut items).await?;
            let refs: Vec<&EvaluatedItem> = items.iter().collect();
            record(&state, "evaluations", &headers, &refs, started).await?;
            let evaluations = items.into_iter().map(|i| i.response).collect();
            Ok(Json(EvaluationsResponse { evaluations }).into_response())
        }
    }
}

/// Turns decisions held for approval into what an AuthZEN caller can act
/// on. A held request of a task token opens (or finds) a pending approval
/// bound to that exact request, and is answered as a deny whose context says
/// so: `{"approval": {"status": "pending", "id", "expires_at", "poll"}}`.
/// Once a person approves, the same request sent again is allowed, once.
async fn settle_holds(
    state: &AppState,
    resolver: &TaskTokenResolver,
    headers: &HeaderMap,
    items: &mut [EvaluatedItem],
) -> Result<(), ApiError> {
    for item in items.iter_mut() {
        if !item.decision.needs_approval() {
            continue;
        }
        let verified = item.task_id().and_then(|t| resolver.verified_task(t));
        let Some((claims, agent)) = verified else {
            let context = item.response.context.get_or_insert_with(Default::default);
            context.insert(
                "approval".into(),
                json!({"status": "unavailable", "message": "this request needs a person's approval, which only a task-token subject can ask for"}),
            );
            continue;
        };
        let hold = crate::mcp::hold_request_for(
            &claims,
            &agent,
            "authzen",
            "",
            item.action(),
            item.resource(),
            item.request_digest(),
            &item.decision,
            request_id(headers),
            &crate::task_subject::task_context(&claims),
        );
        let outcome = state.approvals.check_or_open(hold).await.map_err(|e| {
            tracing::error!(error = %e, "approvals unavailable");
            ApiError::Unavailable("the approval queue cannot be used".into())
        })?;
        let approval = match outcome {
            crate::approvals::PollOutcome::Consumed { id, approver } => {
                item.decision.effect = mandate_core::Effect::Allow;
                item.response.decision = true;
                json!({"status": "approved", "id": id, "approver": approver})
            }
            crate::approvals::PollOutcome::Pending { id, expires_us } => json!({
                "status": "pending",
                "id": id,
                "expires_at": crate::admin::rfc3339(expires_us),
                "poll": "send this same evaluation again: it is allowed, once, after a person approves, until expires_at",
            }),
        };
        item.response
            .context
            .get_or_insert_with(Default::default)
            .insert("approval".into(), approval);
    }
    Ok(())
}

async fn pdp_metadata(State(state): State<AppState>) -> Json<PdpMetadata> {
    Json(PdpMetadata::for_base(&state.public_url))
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the store answers. A failed policy reload does not make the node
/// unready (the previous policies keep serving) but is reported here.
async fn readyz(State(state): State<AppState>) -> Response {
    let store = match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("store did not answer within 2 s".to_owned()),
    };
    let policy = state.engine.status();
    let body = json!({
        "status": if store.is_ok() { "ready" } else { "unready" },
        "store": {"backend": state.store.backend(), "ok": store.is_ok(), "error": store.err()},
        "policies": {
            "dir": state.engine.dir().display().to_string(),
            "count": policy.policies,
            "generation": policy.generation,
            "last_reload_error": policy.last_error,
        },
    });
    let status = if body["status"] == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn render_metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_cut_to_a_bounded_length() {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", "x".repeat(500).parse().unwrap());
        assert_eq!(request_id(&headers).len(), MAX_REQUEST_ID);
        headers.insert("x-request-id", "abc".parse().unwrap());
        assert_eq!(request_id(&headers), "abc");
    }

    #[test]
    fn constant_time_eq_compares_whole_keys() {
        assert!(constant_time_eq(b"abcdef", b"abcdef"));
        assert!(!constant_time_eq(b"abcdef", b"abcdeg"));
        assert!(!constant_time_eq(b"abc", b"abcdef"));
    }
}
