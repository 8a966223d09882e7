//! The `Store` implementation shared by the SQL backends.
//!
//! SQLite and PostgreSQL run the same statements (`$n` placeholders work in
//! both) and decode rows the same way; only connecting differs. sqlx's types
//! differ per database, so the shared part is written once here and stamped out
//! for each backend's pool type.

/// Implements [`crate::store::Store`] for `$store` (a struct with a `pool`
/// field) over database `$db` with argument type `$args`. The calling module
/// defines `BACKEND`.
macro_rules! impl_sql_store {
    ($store:ident, $db:ty, $args:ty) => {
        impl $store {
            async fn records(
                &self,
                query: sqlx::query::Query<'_, $db, $args>,
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

        fn failed(operation: &'static str, source: sqlx::Error) -> $crate::error::StoreError {
            $crate::error::StoreError::Query {
                backend: BACKEND,
                operation,
                source,
            }
        }

        #[async_trait::async_trait]
        impl Store for $store {
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

            async fn append_audit(
                &self,
                records: &[AuditRecord],
                seal: &str,
            ) -> Result<(), StoreError> {
                let Some(last) = records.last() else {
                    return Ok(());
                };
                let rows = sql::encode_batch(records)?;
                let write = |source| failed("append audit records", source);
                let mut tx = self.pool.begin().await.map_err(write)?;
                for chunk in rows.chunks(sql::INSERT_CHUNK) {
                    let mut insert = QueryBuilder::<$db>::new(sql::INSERT_RECORDS);
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
                    .bind(seal)
                    .execute(&mut *tx)
                    .await
                    .map_err(write)?;
                tx.commit().await.map_err(write)
            }

            async fn register_audit_chain(
                &self,
                node_id: &str,
                seal: &str,
            ) -> Result<(), StoreError> {
                sqlx::query(sql::REGISTER_CHAIN)
                    .bind(node_id)
                    .bind(hex::encode([0u8; 32]))
                    .bind(seal)
                    .execute(&self.pool)
                    .await
                    .map_err(|source| failed("register audit chain", source))?;
                Ok(())
            }

            async fn audit_head_seal(&self, node_id: &str) -> Result<Option<String>, StoreError> {
                sqlx::query_scalar(sql::SELECT_HEAD_SEAL)
                    .bind(node_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|source| failed("read audit head seal", source))
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

            async fn audit_latest(
                &self,
                limit: u32,
            ) -> Result<Vec<(i64, AuditRecord)>, StoreError> {
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
    };
}

pub(crate) use impl_sql_store;
