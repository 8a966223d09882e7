//! The admin API for secrets (`/admin/v1/secrets/...`): set, rotate, list and
//! delete. Values come in, sealed at once; nothing here ever sends one out.
//!
//! A request body holding a value is read into memory that is wiped once the
//! value is sealed, is never logged, and its parse errors never quote it.
//! Audit records name the secret, its version and the operation only.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use mandate_core::AuditKind;
use mandate_secrets::{SecretError, validate_name};
use mandate_store::{SecretRecord, StoreError};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::admin::{require_admin, rfc3339, store_error};
use crate::error::ApiError;
use crate::oauth::{audit, token_event};
use crate::routes::{media_type, now_us, read_limited};
use crate::state::AppState;
use crate::vault::VaultError;

/// The secrets routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/secrets", get(list_secrets))
        .route(
            "/admin/v1/secrets/{name}",
            put(create_secret).delete(delete_secret),
        )
        .route("/admin/v1/secrets/{name}/rotate", post(rotate_secret))
}

/// The body of set and rotate: `{"value": "..."}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewValue {
    #[serde(deserialize_with = "wiped_on_drop")]
    value: Zeroizing<String>,
}

/// Wraps the value the moment it is parsed, so that it is wiped even if a
/// later field fails.
fn wiped_on_drop<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
    String::deserialize(d).map(Zeroizing::new)
}

/// Reads `{"value": "..."}`. The raw body is wiped after parsing, and a parse
/// error says what shape was expected, never what was sent.
async fn read_value(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Zeroizing<String>, ApiError> {
    let is_json =
        media_type(headers).is_some_and(|m| m == "application/json" || m.ends_with("+json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let raw = Zeroizing::new(Vec::from(
        read_limited(body, headers, state.max_body_bytes).await?,
    ));
    let parsed: NewValue = serde_json::from_slice(&raw).map_err(|_| {
        ApiError::BadRequest(
            r#"the body must be a JSON object with one string member, {"value": "..."}"#.into(),
        )
    })?;
    Ok(parsed.value)
}

/// A secret as the API shows it: never its value, nor its ciphertext.
fn secret_json(s: &SecretRecord) -> Value {
    json!({
        "name": s.name,
        "version": s.version,
        "created_at": rfc3339(s.created_us),
        "rotated_at": s.rotated_us.map(rfc3339),
    })
}

fn vault_error(e: VaultError) -> ApiError {
    match e {
        VaultError::NotFound { .. } => ApiError::NotFound(e.to_string()),
        VaultError::RotatedMeanwhile { .. } => ApiError::Conflict(e.to_string()),
        VaultError::Secret(
            SecretError::InvalidName { .. }
            | SecretError::EmptyValue { .. }
            | SecretError::ValueTooLong { .. },
        ) => ApiError::BadRequest(e.to_string()),
        VaultError::Store(e @ StoreError::Conflict { .. }) => ApiError::Conflict(e.to_string()),
        VaultError::Store(e) => store_error(e),
        other => ApiError::Internal(other.to_string()),
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    validate_name(name).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Writes the audit record of a change: name, version, operation.
async fn audit_secret(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    version: i64,
    operation: &str,
) -> Result<(), ApiError> {
    let event = token_event(
        AuditKind::SecretChanged,
        headers,
        "Admin::\"admin\"",
        &format!("Secret::\"{name}\""),
        operation,
        json!({"name": name, "version": version, "operation": operation}),
    );
    audit(state, event)
        .await
        .map_err(|_| ApiError::Unavailable("the audit log cannot be written".into()))
}

async fn create_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    check_name(&name)?;
    let value = read_value(&state, &headers, body).await?;
    let record = state
        .secrets
        .create(&name, value.as_bytes(), now_us())
        .await
        .map_err(vault_error)?;
    drop(value);
    audit_secret(&state, &headers, &name, record.version, "created").await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"secret": secret_json(&record)})),
    )
        .into_response())
}

async fn rotate_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &headers)?;
    check_name(&name)?;
    let value = read_value(&state, &headers, body).await?;
    let record = state
        .secrets
        .rotate(&name, value.as_bytes(), now_us())
        .await
        .map_err(vault_error)?;
    drop(value);
    audit_secret(&state, &headers, &name, record.version, "rotated").await?;
    Ok(Json(json!({"secret": secret_json(&record)})))
}

async fn list_secrets(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &headers)?;
    let secrets = state.store.secrets().await.map_err(store_error)?;
    Ok(Json(
        json!({"secrets": secrets.iter().map(secret_json).collect::<Vec<_>>()}),
    ))
}

async fn delete_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    check_name(&name)?;
    let record = state.secrets.find(&name).await.map_err(vault_error)?;
    let deleted = state
        .store
        .delete_secret(&name)
        .await
        .map_err(store_error)?;
    if !deleted {
        return Err(ApiError::NotFound(format!("no secret named {name:?}")));
    }
    audit_secret(&state, &headers, &name, record.version, "deleted").await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
