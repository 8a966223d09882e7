//! `GET /admin/v1/posture`: gathers what the posture rules look at (agents,
//! the tasks and audit records of the window, secrets, the policies in
//! service and what policy lets each agent hold) and answers their findings.
//!
//! The audit window is read newest first and at most [`MAX_RECORDS`] records
//! deep, the tasks at most [`MAX_TASKS`]: a report over a log larger than that
//! says it is partial (`window.complete: false`) rather than hold the node.

use std::collections::{BTreeSet, HashMap};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use mandate_policy::PolicySources;
use serde_json::{Value, json};

use crate::admin::{require_admin, rfc3339, store_error};
use crate::error::ApiError;
use crate::issuance::holdable_tools;
use crate::posture::{Inventory, Usage, findings, policy_effects};
use crate::routes::now_us;
use crate::state::AppState;

/// Most audit records one report reads.
const MAX_RECORDS: usize = 1_000_000;
/// Most tasks of the window one report examines.
const MAX_TASKS: u32 = 100_000;
/// Records per page.
const PAGE: u32 = 1000;

/// The posture route.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/admin/v1/posture", get(posture))
}

/// Every tool the gateway and the proxy catalogue: `<upstream>.<tool>` and
/// `<upstream>.<action>`.
fn catalogued_tools(state: &AppState) -> Vec<String> {
    let mut tools = BTreeSet::new();
    for (name, upstream) in state.upstreams.iter() {
        for tool in &upstream.config.tools {
            tools.insert(format!("{name}.{}", tool.name));
        }
    }
    for (name, upstream) in state.proxy_upstreams.iter() {
        for rule in &upstream.config.rules {
            tools.insert(format!("{name}.{}", rule.action));
        }
    }
    tools.into_iter().collect()
}

async fn posture(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &headers)?;
    let settings = state.posture;
    let now = now_us();
    let since = now.saturating_sub(settings.window_us());
    let store = &state.store;

    let agents = store.agents().await.map_err(store_error)?;
    let mut tasks = store
        .tasks_issued_since(since, MAX_TASKS + 1)
        .await
        .map_err(store_error)?;
    let tasks_complete = tasks.len() <= MAX_TASKS as usize;
    tasks.truncate(MAX_TASKS as usize);
    let secrets = store.secrets().await.map_err(store_error)?;

    // Rows are in insertion order, which follows time closely enough: stop
    // at the first page lying wholly before the window.
    let mut usage = Usage::default();
    let mut before = i64::MAX;
    let mut records_complete = true;
    loop {
        let page = store
            .audit_before(before, PAGE)
            .await
            .map_err(store_error)?;
        let Some((last_row, _)) = page.last() else {
            break;
        };
        before = *last_row;
        let mut in_window = false;
        for (_, record) in &page {
            if record.event.time_us >= since {
                in_window = true;
                usage.observe(record);
            }
        }
        if !in_window || page.len() < PAGE as usize {
            break;
        }
        if usage.records >= MAX_RECORDS {
            records_complete = false;
            break;
        }
    }

    // Agents without activity in the window: whether they were ever used.
    let mut last_task_us = HashMap::new();
    let mut suspended_tasks = HashMap::new();
    for agent in &agents {
        let active = usage
            .last_active_us
            .get(&agent.spiffe_id)
            .is_some_and(|t| *t >= since);
        if !active && agent.created_us < since {
            let held = store
                .tasks_of_agent(&agent.spiffe_id, false)
                .await
                .map_err(store_error)?;
            last_task_us.insert(
                agent.spiffe_id.clone(),
                held.iter().map(|t| t.issued_us).max(),
            );
        }
        if agent.status == mandate_store::AgentStatus::Suspended {
            let held = store
                .tasks_of_agent(&agent.spiffe_id, true)
                .await
                .map_err(store_error)?;
            suspended_tasks.insert(agent.spiffe_id.clone(), held);
        }
    }

    // One Cedar question per agent and catalogued tool, and the policy files
    // read again for their effects: off the async workers.
    let bundle = state.engine.current();
    let catalog = catalogued_tools(&state);
    let policy_ids = bundle.policy_ids();
    let policy_dir = state.engine.dir().to_path_buf();
    let (standing_tools, policy_effects, agents) = tokio::task::spawn_blocking(move || {
        let standing: HashMap<String, Vec<String>> = agents
            .iter()
            .filter(|a| a.status == mandate_store::AgentStatus::Active)
            .map(|a| (a.spiffe_id.clone(), holdable_tools(&bundle, a, &catalog)))
            .collect();
        let effects = PolicySources::read_dir(&policy_dir)
            .map(|sources| policy_effects(&sources))
            .unwrap_or_default();
        (standing, effects, agents)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("posture evaluation failed: {e}")))?;

    let inventory = Inventory {
        now_us: now,
        settings,
        agents: &agents,
        tasks: &tasks,
        secrets: &secrets,
        policy_ids: &policy_ids,
        policy_effects: &policy_effects,
        usage: &usage,
        last_task_us: &last_task_us,
        standing_tools: &standing_tools,
        suspended_tasks: &suspended_tasks,
    };
    let found = findings(&inventory);
    let mut summary = json!({"total": found.len(), "high": 0, "medium": 0, "low": 0});
    for finding in &found {
        let json = finding.to_json();
        if let Some(severity) = json["severity"].as_str()
            && let Some(n) = summary[severity].as_u64()
        {
            summary[severity] = Value::from(n + 1);
        }
    }
    Ok(Json(json!({
        "generated_at": rfc3339(now),
        "window": {
            "since": rfc3339(since),
            "idle_days": settings.idle_days,
            "secret_max_age_days": settings.secret_max_age_days,
            "records_in_window": usage.records,
            "tasks_examined": tasks.len(),
            "agents": agents.len(),
            "complete": records_complete && tasks_complete,
        },
        "summary": summary,
        "findings": found.iter().map(|f| f.to_json()).collect::<Vec<_>>(),
    })))
}
