//! The SQL behind agents, admin credentials, signing keys and tasks, shared by
//! both backends, and the mapping from their rows back to records.
//!
//! Lists are sorted in Rust, not by `ORDER BY`: PostgreSQL orders text by the
//! database's collation and SQLite by bytes, and both backends must agree.

use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::error::StoreError;
use crate::identity::{AdminCredential, AgentRecord, SigningKeyRecord, TaskRecord};

/// The agent columns, in the order `decode_agent` reads them.
macro_rules! agent_columns {
    () => {
        "name, spiffe_id, owner, env, function, status, created_us, updated_us, key_sha256, \
         credentials_since_us"
    };
}

/// The task columns, in the order `decode_task` reads them.
macro_rules! task_columns {
    () => {
        "task_id, jti, agent, parent_task_id, root_task_id, depth, grant_json, issued_us, \
         expires_us, state, ended_us, end_reason"
    };
}

const AGENT_COLUMNS: [&str; 10] = [
    "name",
    "spiffe_id",
    "owner",
    "env",
    "function",
    "status",
    "created_us",
    "updated_us",
    "key_sha256",
    "credentials_since_us",
];

const TASK_COLUMNS: [&str; 12] = [
    "task_id",
    "jti",
    "agent",
    "parent_task_id",
    "root_task_id",
    "depth",
    "grant_json",
    "issued_us",
    "expires_us",
    "state",
    "ended_us",
    "end_reason",
];

const CREDENTIAL_COLUMNS: [&str; 4] = ["id", "name", "secret_hash", "created_us"];

const KEY_COLUMNS: [&str; 5] = ["kid", "node_id", "public_jwk", "created_us", "retired_us"];

pub(crate) const INSERT_AGENT: &str = concat!(
    "INSERT INTO agents (",
    agent_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
);

pub(crate) const SELECT_AGENT: &str =
    concat!("SELECT ", agent_columns!(), " FROM agents WHERE name = $1");

pub(crate) const SELECT_AGENT_BY_SPIFFE_ID: &str = concat!(
    "SELECT ",
    agent_columns!(),
    " FROM agents WHERE spiffe_id = $1"
);

pub(crate) const SELECT_AGENTS: &str = concat!("SELECT ", agent_columns!(), " FROM agents");

pub(crate) const SET_AGENT_STATUS: &str = concat!(
    "UPDATE agents SET status = $1, updated_us = $2 WHERE name = $3 RETURNING ",
    agent_columns!()
);

pub(crate) const SET_AGENT_KEY: &str = concat!(
    "UPDATE agents SET key_sha256 = $1, credentials_since_us = $2, updated_us = $2 \
     WHERE name = $3 RETURNING ",
    agent_columns!()
);

pub(crate) const DELETE_AGENT: &str = "DELETE FROM agents WHERE name = $1";

pub(crate) const INSERT_ADMIN_CREDENTIAL: &str =
    "INSERT INTO admin_credentials (id, name, secret_hash, created_us) VALUES ($1, $2, $3, $4)";

pub(crate) const SELECT_ADMIN_CREDENTIALS: &str =
    "SELECT id, name, secret_hash, created_us FROM admin_credentials";

pub(crate) const DELETE_ADMIN_CREDENTIAL: &str = "DELETE FROM admin_credentials WHERE id = $1";

pub(crate) const INSERT_SIGNING_KEY: &str = "INSERT INTO signing_keys \
     (kid, node_id, public_jwk, created_us, retired_us) VALUES ($1, $2, $3, $4, $5)";

pub(crate) const RETIRE_SIGNING_KEY: &str =
    "UPDATE signing_keys SET retired_us = $1 WHERE kid = $2 AND retired_us IS NULL";

pub(crate) const SELECT_SIGNING_KEYS: &str =
    "SELECT kid, node_id, public_jwk, created_us, retired_us FROM signing_keys";

pub(crate) const INSERT_TASK: &str = concat!(
    "INSERT INTO tasks (",
    task_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
);

pub(crate) const SELECT_TASK: &str =
    concat!("SELECT ", task_columns!(), " FROM tasks WHERE task_id = $1");

/// Task IDs per `end_tasks` statement, well under both parameter limits.
pub(crate) const END_CHUNK: usize = 1000;

/// A task and its descendants with their depth. `UNION` (not `UNION ALL`)
/// stops at a cycle in a tampered tree instead of looping.
pub(crate) const SELECT_SUBTREE: &str = "WITH RECURSIVE subtree (task_id) AS ( \
         SELECT task_id FROM tasks WHERE task_id = $1 \
         UNION SELECT child.task_id FROM tasks child \
             JOIN subtree ON child.parent_task_id = subtree.task_id) \
     SELECT tasks.task_id, tasks.depth FROM tasks JOIN subtree ON tasks.task_id = subtree.task_id";

/// Matches the partial index `tasks_ended_by_expiry` (same literal predicate).
pub(crate) const SELECT_ENDED_UNEXPIRED: &str =
    "SELECT task_id FROM tasks WHERE state <> 'active' AND expires_us > $1";

/// Tasks issued since `$1`, newest first, at most `$2`.
pub(crate) const SELECT_TASKS_ISSUED_SINCE: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE issued_us >= $1 ORDER BY issued_us DESC, task_id LIMIT $2"
);

pub(crate) const SELECT_TASKS_OF_AGENT: &str =
    concat!("SELECT ", task_columns!(), " FROM tasks WHERE agent = $1");

pub(crate) const SELECT_ACTIVE_TASKS_OF_AGENT: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE agent = $1 AND state = 'active'"
);

/// If `source` is a unique-key violation, the text naming the key: the
/// constraint on PostgreSQL (`agents_spiffe_id_key`), the message on SQLite
/// (`UNIQUE constraint failed: agents.spiffe_id`).
pub(crate) fn unique_violation(source: &sqlx::Error) -> Option<&str> {
    match source {
        sqlx::Error::Database(err) if err.is_unique_violation() => {
            Some(err.constraint().unwrap_or_else(|| err.message()))
        }
        _ => None,
    }
}

/// Reads a row selected with `agent_columns!()`.
pub(crate) fn decode_agent<R>(backend: &'static str, row: &R) -> Result<AgentRecord, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let cells = Cells::new(backend, "agents", &AGENT_COLUMNS, row)?;
    let status: String = cells.get(5)?;
    Ok(AgentRecord {
        name: cells.get(0)?,
        spiffe_id: cells.get(1)?,
        owner: cells.get(2)?,
        env: cells.get(3)?,
        function: cells.get(4)?,
        status: status
            .parse()
            .map_err(|_| cells.corrupt(5, "is not a known agent status"))?,
        created_us: cells.get(6)?,
        updated_us: cells.get(7)?,
        key_sha256: cells.get(8)?,
        credentials_since_us: cells.get(9)?,
    })
}

/// Reads an `(id, name, secret_hash, created_us)` row.
pub(crate) fn decode_admin_credential<R>(
    backend: &'static str,
    row: &R,
) -> Result<AdminCredential, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let cells = Cells::new(backend, "admin_credentials", &CREDENTIAL_COLUMNS, row)?;
    Ok(AdminCredential {
        id: cells.get(0)?,
        name: cells.get(1)?,
        secret_hash: cells.get(2)?,
        created_us: cells.get(3)?,
    })
}

/// Reads a `(kid, node_id, public_jwk, created_us, retired_us)` row.
pub(crate) fn decode_signing_key<R>(
    backend: &'static str,
    row: &R,
) -> Result<SigningKeyRecord, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let cells = Cells::new(backend, "signing_keys", &KEY_COLUMNS, row)?;
    Ok(SigningKeyRecord {
        kid: cells.get(0)?,
        node_id: cells.get(1)?,
        public_jwk: cells.get(2)?,
        created_us: cells.get(3)?,
        retired_us: cells.get(4)?,
    })
}

/// Reads a row selected with `task_columns!()`.
pub(crate) fn decode_task<R>(backend: &'static str, row: &R) -> Result<TaskRecord, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let cells = Cells::new(backend, "tasks", &TASK_COLUMNS, row)?;
    let state: String = cells.get(9)?;
    Ok(TaskRecord {
        task_id: cells.get(0)?,
        jti: cells.get(1)?,
        agent: cells.get(2)?,
        parent_task_id: cells.get(3)?,
        root_task_id: cells.get(4)?,
        depth: cells.get(5)?,
        grant_json: cells.get(6)?,
        issued_us: cells.get(7)?,
        expires_us: cells.get(8)?,
        state: state
            .parse()
            .map_err(|_| cells.corrupt(9, "is not a known task state"))?,
        ended_us: cells.get(10)?,
        end_reason: cells.get(11)?,
    })
}

/// One row being decoded, so that every failure names its table and key.
pub(crate) struct Cells<'r, R> {
    backend: &'static str,
    table: &'static str,
    columns: &'static [&'static str],
    row: &'r R,
    key: String,
}

impl<'r, R> Cells<'r, R>
where
    R: Row,
    usize: ColumnIndex<R>,
{
    /// Starts on `row`, whose first column is its text key.
    pub(crate) fn new(
        backend: &'static str,
        table: &'static str,
        columns: &'static [&'static str],
        row: &'r R,
    ) -> Result<Cells<'r, R>, StoreError>
    where
        for<'v> String: Decode<'v, R::Database> + Type<R::Database>,
    {
        let mut cells = Cells {
            backend,
            table,
            columns,
            row,
            key: String::new(),
        };
        cells.key = cells.get(0)?;
        Ok(cells)
    }

    pub(crate) fn get<T>(&self, index: usize) -> Result<T, StoreError>
    where
        for<'v> T: Decode<'v, R::Database> + Type<R::Database>,
    {
        self.row.try_get(index).map_err(|source| match source {
            // SQLite stores any value in any column, so a wrong type (or a
            // NULL where none belongs) is a tampered row, not a bug.
            sqlx::Error::ColumnDecode { .. } => self.corrupt(index, "has the wrong type"),
            source => StoreError::Query {
                backend: self.backend,
                operation: "read rows",
                source,
            },
        })
    }

    pub(crate) fn corrupt(&self, index: usize, problem: &'static str) -> StoreError {
        StoreError::CorruptEntry {
            table: self.table,
            key: self.key.clone(),
            column: self.columns[index],
            problem,
        }
    }
}
