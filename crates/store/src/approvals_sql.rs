//! The SQL behind held calls, shared by both backends, and the mapping from
//! their rows back to records.
//!
//! Every change of state is one `UPDATE ... WHERE id = $1 AND state = '...'
//! RETURNING`: the database decides which of two racing writers wins, on one
//! node or many.

use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::approvals::ApprovalRecord;
use crate::error::StoreError;
use crate::identity_sql::Cells;

/// The approval columns, in the order `decode_approval` reads them.
macro_rules! approval_columns {
    () => {
        "id, task_id, root_task_id, task_chain, agent, agent_name, endpoint, upstream, action, \
         resource, argument_digest, purpose, reasons, policies, state, created_us, expires_us, \
         decided_us, decided_by, note, closed_us"
    };
}

const APPROVAL_COLUMNS: [&str; 21] = [
    "id",
    "task_id",
    "root_task_id",
    "task_chain",
    "agent",
    "agent_name",
    "endpoint",
    "upstream",
    "action",
    "resource",
    "argument_digest",
    "purpose",
    "reasons",
    "policies",
    "state",
    "created_us",
    "expires_us",
    "decided_us",
    "decided_by",
    "note",
    "closed_us",
];

pub(crate) const INSERT_APPROVAL: &str = concat!(
    "INSERT INTO approvals (",
    approval_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
     $18, $19, $20, $21)"
);

pub(crate) const SELECT_APPROVAL: &str = concat!(
    "SELECT ",
    approval_columns!(),
    " FROM approvals WHERE id = $1"
);

pub(crate) const SELECT_APPROVALS_IN_STATE: &str = concat!(
    "SELECT ",
    approval_columns!(),
    " FROM approvals WHERE state = $1 ORDER BY created_us DESC LIMIT $2"
);

pub(crate) const SELECT_APPROVALS: &str = concat!(
    "SELECT ",
    approval_columns!(),
    " FROM approvals ORDER BY created_us DESC LIMIT $1"
);

pub(crate) const SELECT_APPROVALS_FOR_CALL: &str = concat!(
    "SELECT ",
    approval_columns!(),
    " FROM approvals WHERE task_id = $1 AND action = $2 AND resource = $3 \
     AND argument_digest = $4"
);

/// Pending → a decision, if still pending and (for `$6` other than the
/// smallest integer) not expired by then.
pub(crate) const DECIDE_APPROVAL: &str = concat!(
    "UPDATE approvals SET state = $2, decided_us = $3, decided_by = $4, note = $5 \
     WHERE id = $1 AND state = 'pending' AND expires_us > $6 RETURNING ",
    approval_columns!()
);

/// Approved → used or cancelled, once.
pub(crate) const CLOSE_APPROVAL: &str = concat!(
    "UPDATE approvals SET state = $2, closed_us = $3 \
     WHERE id = $1 AND state = 'approved' RETURNING ",
    approval_columns!()
);

/// Every pending hold whose time is up → expired. Each row is returned to
/// exactly one caller, however many nodes sweep at once.
pub(crate) const EXPIRE_APPROVALS: &str = concat!(
    "UPDATE approvals SET state = 'expired', decided_us = $1, decided_by = $2 \
     WHERE state = 'pending' AND expires_us <= $1 RETURNING ",
    approval_columns!()
);

/// A list of strings as stored: a JSON array.
pub(crate) fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}

/// Reads a row selected with `approval_columns!()`.
pub(crate) fn decode_approval<R>(
    backend: &'static str,
    row: &R,
) -> Result<ApprovalRecord, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let cells = Cells::new(backend, "approvals", &APPROVAL_COLUMNS, row)?;
    let list = |index: usize| -> Result<Vec<String>, StoreError> {
        let text: String = cells.get(index)?;
        serde_json::from_str(&text)
            .map_err(|_| cells.corrupt(index, "is not a JSON array of strings"))
    };
    let state: String = cells.get(14)?;
    Ok(ApprovalRecord {
        id: cells.get(0)?,
        task_id: cells.get(1)?,
        root_task_id: cells.get(2)?,
        task_chain: list(3)?,
        agent: cells.get(4)?,
        agent_name: cells.get(5)?,
        endpoint: cells.get(6)?,
        upstream: cells.get(7)?,
        action: cells.get(8)?,
        resource: cells.get(9)?,
        argument_digest: cells.get(10)?,
        purpose: cells.get(11)?,
        reasons: list(12)?,
        policies: list(13)?,
        state: state
            .parse()
            .map_err(|_| cells.corrupt(14, "is not a known approval state"))?,
        created_us: cells.get(15)?,
        expires_us: cells.get(16)?,
        decided_us: cells.get(17)?,
        decided_by: cells.get(18)?,
        note: cells.get(19)?,
        closed_us: cells.get(20)?,
    })
}
