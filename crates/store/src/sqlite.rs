//! The SQLite backend: one file, WAL journal, `synchronous=FULL` so that a
//! committed audit batch survives power loss (and so also `kill -9`: WAL
//! with `synchronous=NORMAL` would survive a process crash, since a commit
//! is in the OS's page cache once `COMMIT` returns, but not a power cut,
//! and the audit log promises both).
//!
//! Audit batches are written on a connection of their own, each in a single
//! round trip to sqlx's SQLite thread (see [`SqliteStore::write_audit`]).

use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mandate_core::{AuditRecord, ChainHead};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection as _, QueryBuilder, Sqlite};

use crate::error::StoreError;
use crate::identity_sql;
use crate::migrations;
use crate::sql;
use crate::store::Store;

const BACKEND: &str = "sqlite";

/// How long a writer waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest batch written in one round trip. Its statement text is kept
/// (with SQLite's prepared statement) per row count, so only batches up to
/// this size get one; larger ones go statement by statement.
const ONE_TRIP_ROWS: usize = 64;

/// A SQLite database file.
pub(crate) struct SqliteStore {
    pool: SqlitePool,
    /// The connection audit batches are written on, taken out of the pool at
    /// the first batch. `None` after a failed batch: closing the connection
    /// rolls back whatever the batch left open, and the next batch takes a
    /// fresh one. Nothing else writes the audit tables, so its page cache
    /// stays valid from one batch to the next.
    audit: tokio::sync::Mutex<Option<SqliteConnection>>,
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database at `url`.
    pub(crate) async fn connect(url: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|source| StoreError::InvalidUrl {
                backend: BACKEND,
                source,
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect {
                backend: BACKEND,
                source,
            })?;
        migrations::sqlite()
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                backend: BACKEND,
                source,
            })?;
        Ok(SqliteStore {
            pool,
            audit: tokio::sync::Mutex::new(None),
        })
    }

    /// Appends `records` and moves the chain head, in one transaction. A batch
    /// of up to [`ONE_TRIP_ROWS`] records is one list of statements
    /// (`BEGIN IMMEDIATE`, the rows, the head, `COMMIT`), sent to sqlx's
    /// SQLite thread at once: one hand-over between threads instead of four,
    /// which is most of what a small batch costs besides its `fsync`.
    async fn write_audit(&self, records: &[AuditRecord], seal: &str) -> Result<(), StoreError> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        let write = |source| failed("append audit records", source);
        let mut slot = self.audit.lock().await;
        let connection = match slot.as_mut() {
            Some(connection) => connection,
            None => slot.insert(self.pool.acquire().await.map_err(write)?.detach()),
        };
        let written = if records.len() > ONE_TRIP_ROWS {
            Self::append_audit_stepwise(connection, records, seal).await
        } else {
            let rows = sql::encode_batch(records)?;
            let head_hash = hex::encode(last.hash);
            let mut query = sqlx::query(AssertSqlSafe(batch_statement(rows.len())));
            for row in &rows {
                query = query
                    .bind(row.node_id)
                    .bind(row.seq)
                    .bind(row.time_us)
                    .bind(row.kind)
                    .bind(row.request_id)
                    .bind(row.subject)
                    .bind(row.action)
                    .bind(row.resource)
                    .bind(row.outcome)
                    .bind(row.policies.as_str())
                    .bind(row.request_digest)
                    .bind(row.detail.as_str())
                    .bind(row.prev_hash.as_str())
                    .bind(row.hash.as_str());
            }
            query
                .bind(&last.node_id)
                .bind(sql::stored_seq(last.seq))
                .bind(head_hash.as_str())
                .bind(seal)
                .execute(&mut *connection)
                .await
                .map(drop)
                .map_err(write)
        };
        if written.is_err()
            && let Some(connection) = slot.take()
        {
            // A failed statement leaves its transaction open on the
            // connection; closing the connection rolls it back.
            let _ = connection.close().await;
        }
        written
    }

    /// Closes the audit connection (the pool's are closed by the caller).
    async fn close_audit_writer(&self) {
        if let Some(connection) = self.audit.lock().await.take() {
            let _ = connection.close().await;
        }
    }
}

/// The statement list of a one-trip batch of `rows` records: numbered
/// parameters, 14 per record, then the head's 4. Built once per row count.
fn batch_statement(rows: usize) -> Arc<str> {
    static TEXTS: [OnceLock<Arc<str>>; ONE_TRIP_ROWS + 1] =
        [const { OnceLock::new() }; ONE_TRIP_ROWS + 1];
    let build = || {
        let mut text = String::from("BEGIN IMMEDIATE;\n");
        text.push_str(sql::INSERT_RECORDS);
        text.push_str("VALUES ");
        let mut n = 0;
        for row in 0..rows {
            text.push_str(if row == 0 { "(" } else { ", (" });
            for column in 0..14 {
                n += 1;
                let _ = write!(text, "{}${n}", if column == 0 { "" } else { ", " });
            }
            text.push(')');
        }
        text.push_str(";\n");
        text.push_str(&renumbered(sql::UPSERT_HEAD, n));
        text.push_str(";\nCOMMIT;");
        Arc::<str>::from(text)
    };
    match TEXTS.get(rows) {
        Some(cell) => Arc::clone(cell.get_or_init(build)),
        None => build(),
    }
}

/// `statement` with each parameter `$k` made `$(k + offset)`.
fn renumbered(statement: &str, offset: usize) -> String {
    let mut out = String::with_capacity(statement.len() + 8);
    let mut rest = statement;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if let Ok(k) = rest[..digits].parse::<usize>() {
            let _ = write!(out, "{}", k + offset);
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

crate::backend::impl_sql_store!(SqliteStore, Sqlite, sqlx::sqlite::SqliteArguments);
