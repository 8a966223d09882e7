//! The HTTP surface: AuthZEN evaluation endpoints, PDP metadata, health,
//! readiness and metrics, with the layers every request passes through.

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
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;

use crate::caller::{Listener, PeerCertificates};
use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;
use crate::task_subject::{ResolveError, TaskTokenResolver};

/// The application, with all routes and layers, for `state`, as served on
/// the listener whose base URL (as clients address it) is `base`.
pub fn router(state: AppState, request_timeout: Duration, base: &str) -> Router {
    let max_body = state.max_body_bytes;
    Router::new()
        .merge(crate::oauth::routes())
        .merge(crate::admin::routes())
        .merge(crate::mcp::routes())
        .merge(crate::proxy::routes())
        .merge(crate::admin_secrets::routes())
        .route("/access/v1/evaluation", post(evaluation))
        .route("/access/v1/evaluations", post(evaluations))
        .route("/.well-known/authzen-configuration", get(pdp_metadata))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(Listener {
            base: base.trim_end_matches('/').into(),
        }))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::map_response(timeout_as_json))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    request_timeout,
                )),
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
    let resolver = TaskTokenResolver::new(
        &state,
        format!("{}/access/v1/evaluation", listener.base),
        peer,
    );
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
    let item = evaluate_one(&bundle, &request, state.limits, &state.digester)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
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
    let resolver = TaskTokenResolver::new(
        &state,
        format!("{}/access/v1/evaluations", listener.base),
        peer,
    );
    // A batch can take milliseconds of CPU: keep it off the async workers so
    // single decisions on the same node are not held up behind it.
    let (limits, digester) = (state.limits, state.digester.clone());
    let outcome = tokio::task::spawn_blocking(move || {
        evaluate_batch_resolved(&bundle, &batch, limits, &digester, &resolver)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("batch evaluation failed: {e}")))?;
    match outcome.map_err(ApiError::BadRequest)? {
        BatchOutcome::Single(item) => {
            record(&state, "evaluations", &headers, &[&item], started).await?;
            Ok(Json(item.response).into_response())
        }
        BatchOutcome::Items(items) => {
            let refs: Vec<&EvaluatedItem> = items.iter().collect();
            record(&state, "evaluations", &headers, &refs, started).await?;
            let evaluations = items.into_iter().map(|i| i.response).collect();
            Ok(Json(EvaluationsResponse { evaluations }).into_response())
        }
    }
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
