//! The SQLite backend: one file, WAL journal, `synchronous=FULL` so that a
//! committed audit batch survives power loss.

use std::str::FromStr;
use std::time::Duration;

use mandate_core::{AuditRecord, ChainHead};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};

use crate::error::StoreError;
use crate::migrations;
use crate::sql;
use crate::store::Store;

const BACKEND: &str = "sqlite";

/// How long a writer waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A SQLite database file.
pub(crate) struct SqliteStore {
    pool: SqlitePool,
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
        Ok(SqliteStore { pool })
    }

    async fn records(
        &self,
        query: sqlx::query::Query<'_, Sqlite, sqlx::sqlite::SqliteArguments>,
    ) -> Result<Vec<(i64, AuditRecord)>, StoreError> {
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(|source| failed("read audit records", source))?;
        rows.iter()
            .map(|row| sql::decode_record(BACKEND, row))
            .collect()
    }
}

fn failed(operation: &'static str, source: sqlx::Error) -> StoreError {
    StoreError::Query {
        backend: BACKEND,
        operation,
        source,
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|source| failed("ping", source))?;
        Ok(())
    }

    async fn append_audit(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        let rows = sql::encode_batch(records)?;
        let write = |source| failed("append audit records", source);
        let mut tx = self.pool.begin().await.map_err(write)?;
        for chunk in rows.chunks(sql::INSERT_CHUNK) {
            let mut insert = QueryBuilder::<Sqlite>::new(sql::INSERT_RECORDS);
            insert.push_values(chunk, |mut values, row| {
                values
                    .push_bind(row.node_id)
                    .push_bind(row.seq)
                    .push_bind(row.time_us)
                    .push_bind(row.kind)
                    .push_bind(row.request_id)
                    .push_bind(row.subject)
                    .push_bind(row.action)
                    .push_bind(row.resource)
                    .push_bind(row.outcome)
                    .push_bind(row.policies.as_str())
                    .push_bind(row.request_digest)
                    .push_bind(row.detail.as_str())
                    .push_bind(row.prev_hash.as_str())
                    .push_bind(row.hash.as_str());
            });
            insert.build().execute(&mut *tx).await.map_err(write)?;
        }
        sqlx::query(sql::UPSERT_HEAD)
            .bind(&last.node_id)
            .bind(sql::stored_seq(last.seq))
            .bind(hex::encode(last.hash))
            .execute(&mut *tx)
            .await
            .map_err(write)?;
        tx.commit().await.map_err(write)
    }

    async fn audit_head(&self, node_id: &str) -> Result<Option<ChainHead>, StoreError> {
        let row = sqlx::query(sql::SELECT_HEAD)
            .bind(node_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|source| failed("read audit head", source))?;
        row.map(|row| sql::decode_head(BACKEND, node_id, &row))
            .transpose()
    }

    async fn audit_nodes(&self) -> Result<Vec<String>, StoreError> {
        let mut nodes: Vec<String> = sqlx::query_scalar(sql::SELECT_NODES)
            .fetch_all(&self.pool)
            .await
            .map_err(|source| failed("list audit nodes", source))?;
        nodes.sort();
        Ok(nodes)
    }

    async fn audit_page(
        &self,
        node_id: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let query = sqlx::query(sql::SELECT_PAGE)
            .bind(node_id)
            .bind(sql::stored_seq(after_seq))
            .bind(i64::from(limit));
        let records = self.records(query).await?;
        Ok(records.into_iter().map(|(_, record)| record).collect())
    }

    async fn audit_latest(&self, limit: u32) -> Result<Vec<(i64, AuditRecord)>, StoreError> {
        self.records(sqlx::query(sql::SELECT_LATEST).bind(i64::from(limit)))
            .await
    }

    async fn audit_after(
        &self,
        row_id: i64,
        limit: u32,
    ) -> Result<Vec<(i64, AuditRecord)>, StoreError> {
        self.records(
            sqlx::query(sql::SELECT_AFTER)
                .bind(row_id)
                .bind(i64::from(limit)),
        )
        .await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
