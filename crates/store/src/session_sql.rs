//! The SQL behind call budgets and session labels, shared by both backends.

pub(crate) const INSERT_USAGE: &str = "INSERT INTO task_usage (task_id, max_calls, calls_used) \
     VALUES ($1, $2, 0) ON CONFLICT (task_id) DO NOTHING";

/// Counts one call unless the budget is spent; no row means spent.
pub(crate) const COUNT_CALL: &str = "UPDATE task_usage SET calls_used = calls_used + 1 \
     WHERE task_id = $1 AND calls_used < max_calls RETURNING calls_used";

pub(crate) const INSERT_LABEL: &str = "INSERT INTO session_labels (root_task_id, label, added_us) \
     VALUES ($1, $2, $3) ON CONFLICT (root_task_id, label) DO NOTHING";

pub(crate) const SELECT_LABELS: &str = "SELECT label FROM session_labels WHERE root_task_id = $1";
