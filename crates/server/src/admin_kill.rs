//! The kill switch: `POST /admin/v1/agents/{name}/kill`.
//!
//! One step stops everything an agent can do: it is suspended (no new
//! tokens, every token it presents refused), every task it holds and every
//! task delegated below them is revoked (on every node at the next sync),
//! its pending approvals are cancelled, and its calls in flight on this node
//! are cut off before their answers reach it. The suspension is written
//! first: if a later step fails, the agent is already stopped and the kill
//! can be repeated.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use mandate_core::AuditKind;
use mandate_store::{AgentStatus, TaskState};
use serde_json::{Value, json};

use crate::admin::{require_admin_name, store_error};
use crate::error::ApiError;
use crate::oauth::{audit, token_event};
use crate::routes::now_us;
use crate::state::AppState;

/// The kill switch's route.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/admin/v1/agents/{name}/kill", post(kill_agent))
}

async fn kill_agent(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let admin = require_admin_name(&state, &headers)?;
    let agent = state
        .store
        .set_agent_status(&name, AgentStatus::Suspended, now_us())
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::NotFound(format!("no agent named {name:?}")))?;
    state
        .authority
        .put_agent(&agent.spiffe_id, Some(agent.clone()));
    // Calls in flight here stop now; their answers never reach the agent.
    state.governor.kill(&agent.spiffe_id);

    let unavailable = |what: &str| {
        ApiError::Unavailable(format!(
            "{what}; the agent is suspended, run the kill again"
        ))
    };
    let held = state
        .store
        .tasks_of_agent(&agent.spiffe_id, true)
        .await
        .map_err(|_| unavailable("the agent's tasks cannot be read"))?;
    let mut revoked: Vec<String> = Vec::new();
    for task in &held {
        let ended =
            crate::oauth::end_task_tree(&state, &task.task_id, TaskState::Revoked, "agent killed")
                .await
                .map_err(|_| unavailable("the agent's tasks cannot be revoked in the store"))?;
        revoked.extend(ended);
    }
    revoked.sort();
    revoked.dedup();
    let held_ids: Vec<String> = held.iter().map(|t| t.task_id.clone()).collect();
    let cancelled = state
        .approvals
        .cancel_for_agent(&agent.spiffe_id, &held_ids, "the agent was killed")
        .await
        .map_err(|_| unavailable("the agent's pending approvals cannot be cancelled"))?;

    let event = token_event(
        AuditKind::AgentKilled,
        &headers,
        &format!("Admin::{:?}", admin),
        &crate::issuance::agent_uid(&agent.spiffe_id).to_string(),
        "killed",
        json!({
            "agent": agent.spiffe_id,
            "name": agent.name,
            "by": admin,
            "task_ids": revoked,
            "approvals_cancelled": cancelled,
        }),
    );
    audit(&state, event)
        .await
        .map_err(|_| ApiError::Unavailable("the audit log cannot be written".into()))?;
    Ok(Json(json!({
        "agent": agent.name,
        "spiffe_id": agent.spiffe_id,
        "status": "suspended",
        "tasks_revoked": revoked,
        "approvals_cancelled": cancelled,
    })))
}
