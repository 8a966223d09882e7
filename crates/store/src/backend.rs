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

            /// Appends `records` and moves the chain head in one transaction
            /// on `connection`, one statement after another.
            async fn append_audit_stepwise(
                connection: &mut <$db as sqlx::Database>::Connection,
                records: &[AuditRecord],
                seal: &str,
            ) -> Result<(), StoreError> {
                use sqlx::Connection as _;
                let Some(last) = records.last() else {
                    return Ok(());
                };
                let rows = sql::encode_batch(records)?;
                let write = |source| failed("append audit records", source);
                let mut tx = connection.begin().await.map_err(write)?;
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
        }

        fn failed(operation: &'static str, source: sqlx::Error) -> $crate::error::StoreError {
            $crate::error::StoreError::Query {
                backend: BACKEND,
                operation,
                source,
            }
        }

        /// `failed`, unless `source` is a unique-key violation: then a
        /// conflict over what `what` makes of the violated key's name.
        fn failed_or_conflict(
            operation: &'static str,
            source: sqlx::Error,
            what: impl FnOnce(&str) -> String,
        ) -> $crate::error::StoreError {
            match $crate::identity_sql::unique_violation(&source) {
                Some(key) => $crate::error::StoreError::Conflict { what: what(key) },
                None => failed(operation, source),
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
                // Each backend's `write_audit` (SQLite's writes a small batch
                // in one round trip) or `append_audit_stepwise`.
                self.write_audit(records, seal).await
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

            async fn audit_before(
                &self,
                row_id: i64,
                limit: u32,
            ) -> Result<Vec<(i64, AuditRecord)>, StoreError> {
                self.records(
                    sqlx::query(sql::SELECT_BEFORE)
                        .bind(row_id)
                        .bind(i64::from(limit)),
                )
                .await
            }

            async fn audit_mentioning(
                &self,
                needle: &str,
                row_id: i64,
                limit: u32,
            ) -> Result<Vec<(i64, AuditRecord)>, StoreError> {
                self.records(
                    sqlx::query(sql::SELECT_MENTIONING)
                        .bind(row_id)
                        .bind(sql::contains_pattern(needle))
                        .bind(i64::from(limit)),
                )
                .await
            }

            async fn create_agent(
                &self,
                agent: &$crate::identity::AgentRecord,
            ) -> Result<(), StoreError> {
                sqlx::query(identity_sql::INSERT_AGENT)
                    .bind(&agent.name)
                    .bind(&agent.spiffe_id)
                    .bind(&agent.owner)
                    .bind(&agent.env)
                    .bind(&agent.function)
                    .bind(agent.status.as_str())
                    .bind(agent.created_us)
                    .bind(agent.updated_us)
                    .bind(&agent.key_sha256)
                    .bind(agent.credentials_since_us)
                    .execute(&self.pool)
                    .await
                    .map_err(|source| {
                        failed_or_conflict("create agent", source, |key| {
                            if key.contains("spiffe_id") {
                                format!("agent with SPIFFE ID {:?}", agent.spiffe_id)
                            } else {
                                format!("agent {:?}", agent.name)
                            }
                        })
                    })?;
                Ok(())
            }

            async fn agent(
                &self,
                name: &str,
            ) -> Result<Option<$crate::identity::AgentRecord>, StoreError> {
                let row = sqlx::query(identity_sql::SELECT_AGENT)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|source| failed("read agent", source))?;
                row.map(|row| identity_sql::decode_agent(BACKEND, &row))
                    .transpose()
            }

            async fn agent_by_spiffe_id(
                &self,
                spiffe_id: &str,
            ) -> Result<Option<$crate::identity::AgentRecord>, StoreError> {
                let row = sqlx::query(identity_sql::SELECT_AGENT_BY_SPIFFE_ID)
                    .bind(spiffe_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|source| failed("read agent", source))?;
                row.map(|row| identity_sql::decode_agent(BACKEND, &row))
                    .transpose()
            }

            async fn agents(&self) -> Result<Vec<$crate::identity::AgentRecord>, StoreError> {
                let rows = sqlx::query(identity_sql::SELECT_AGENTS)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|source| failed("list agents", source))?;
                let mut agents = rows
                    .iter()
                    .map(|row| identity_sql::decode_agent(BACKEND, row))
                    .collect::<Result<Vec<_>, _>>()?;
                agents.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(agents)
            }

            async fn set_agent_status(
                &self,
                name: &str,
                status: $crate::identity::AgentStatus,
                at_us: i64,
            ) -> Result<Option<$crate::identity::AgentRecord>, StoreError> {
                let row = sqlx::query(identity_sql::SET_AGENT_STATUS)
                    .bind(status.as_str())
                    .bind(at_us)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|source| failed("set agent status", source))?;
                row.map(|row| identity_sql::decode_agent(BACKEND, &row))
                    .transpose()
            }

            async fn set_agent_key(
                &self,
                name: &str,
                key_sha256: &str,
                at_us: i64,
            ) -> Result<Option<$crate::identity::AgentRecord>, StoreError> {
                let row = sqlx::query($crate::identity_sql::SET_AGENT_KEY)
                    .bind(key_sha256)
                    .bind(at_us)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|source| failed("set agent key", source))?;
                row.map(|row| $crate::identity_sql::decode_agent(BACKEND, &row))
                    .transpose()
            }

            async fn delete_agent(&self, name: &str) -> Result<bool, StoreError> {
                let done = sqlx::query(identity_sql::DELETE_AGENT)
                    .bind(name)
                    .execute(&self.pool)
                    .await
                    .map_err(|source| failed("delete agent", source))?;
                Ok(done.rows_affected() > 0)
            }

            async fn insert_admin_credential(
                &self,
                credential: &$crate::identity::AdminCredential,
            ) -> Result<(), StoreError> {
                sqlx::query(identity_sql::INSERT_ADMIN_CREDENTIAL)
                    .bind(&credential.id)
                    .bind(&credential.name)
                    .bind(&credential.secret_hash)
                    .bind(credential.created_us)
                    .execute(&self.pool)
                    .await
                    .map_err(|source| {
                        failed_or_conflict("insert admin credential", source, |key| {
                            if key.contains("name") {
                                format!("admin credential named {:?}", credential.name)
                            } else {
                                format!("admin credential {:?}", credential.id)
                            }
                        })
                    })?;
                Ok(())
            }

            async fn admin_credentials(
                &self,
            ) -> Result<Vec<$crate::identity::AdminCredential>, StoreError> {
                let rows = sqlx::query(identity_sql::SELECT_ADMIN_CREDENTIALS)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|source| failed("list admin credentials", source))?;
                let mut credentials = rows
                    .iter()
                    .map(|row| identity_sql::decode_admin_credential(BACKEND, row))
                    .collect::<Result<Vec<_>, _>>()?;
                credentials.sort_by(|a, b| (a.created_us, &a.id).cmp(&(b.created_us, &b.id)));
                Ok(credentials)
            }

            async fn delete_admin_credential(&self, id: &str) -> Result<bool, StoreError> {
                let done = sqlx::query(identity_sql::DELETE_ADMIN_CREDENTIAL)
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(|source| failed("delete admin credential", source))?;
                Ok(done.rows_affected() > 0)
            }

            async fn publish_signing_key(
                &self,
                key: &$crate::identity::SigningKeyRecord,
            ) -> Result<(), StoreError> {
                sqlx::query(identity_sql::INSERT_SIGNING_KEY)
                    .bind(&key.kid)
                    .bind(&key.node_id)
                    .bind(&key.public_jwk)
                    .bind(key.created_us)
                    .bind(key.retired_us)
                    .execute(&self.pool)
                    .await
                    .map_err(|source| {
                        failed_or_conflict("publish signing key", source, |_| {
                            format!("signing key {:?}", key.kid)
                        })
                    })?;
                Ok(())
            }

            async fn retire_signing_key(&self, kid: &str, at_us: i64) -> Result<bool, StoreError> {
                let done = sqlx::query(identity_sql::RETIRE_SIGNING_KEY)
                    .bind(at_us)
                    .bind(kid)
                    .execute(&self.pool)
                    .await
                    .map_err(|source| failed("retire signing key", source))?;
                Ok(done.rows_affected() > 0)
            }

            async fn signing_keys(
                &self,
            ) -> Result<Vec<$crate::identity::SigningKeyRecord>, StoreError> {
                let rows = sqlx::query(identity_sql::SELECT_SIGNING_KEYS)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|source| failed("list signing keys", source))?;
                let mut keys = rows
                    .iter()
                    .map(|row| identity_sql::decode_signing_key(BACKEND, row))
                    .collect::<Result<Vec<_>, _>>()?;
                keys.sort_by(|a, b| (a.created_us, &a.kid).cmp(&(b.created_us, &b.kid)));
                Ok(keys)
            }

            async fn insert_task(
                &self,
                task: &$crate::identity::TaskRecord,
            ) -> Result<(), StoreError> {
                sqlx::query(identity_sql::INSERT_TASK)
                    .bind(&task.task_id)
                    .bind(&task.jti)
                    .bind(&task.agent)
                    .bind(task.parent_task_id.as_deref())
                    .bind(&task.root_task_id)
                    .bind(task.depth)
                    .bind(&task.grant_json)
                    .bind(task.issued_us)
                    .bind(task.expires_us)
                    .bind(task.state.as_str())
                    .bind(task.ended_us)
                    .bind(task.end_reason.as_deref())
                    .execute(&self.pool)
                    .await
                    .map_err(|source| {
                        failed_or_conflict("insert task", source, |key| {
                            if key.contains("jti") {
                                format!("task with token ID {:?}", task.jti)
                            } else {
                                format!("task {:?}", task.task_id)
                            }
                        })
                    })?;
                Ok(())
            }

            async fn task(
                &self,
                task_id: &str,
            ) -> Result<Option<$crate::identity::TaskRecord>, StoreError> {
                let row = sqlx::query(identity_sql::SELECT_TASK)
                    .bind(task_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|source| failed("read task", source))?;
                row.map(|row| identity_sql::decode_task(BACKEND, &row))
                    .transpose()
            }

            async fn end_tasks(
                &self,
                task_ids: &[String],
                state: $crate::identity::TaskState,
                reason: &str,
                at_us: i64,
            ) -> Result<Vec<String>, StoreError> {
                if state == $crate::identity::TaskState::Active {
                    return Err(StoreError::NotAnEndState { state });
                }
                let write = |source| failed("end tasks", source);
                let mut ended = std::collections::HashSet::new();
                let mut tx = self.pool.begin().await.map_err(write)?;
                for chunk in task_ids.chunks(identity_sql::END_CHUNK) {
                    let mut update = QueryBuilder::<$db>::new("UPDATE tasks SET state = ");
                    update
                        .push_bind(state.as_str())
                        .push(", ended_us = ")
                        .push_bind(at_us)
                        .push(", end_reason = ")
                        .push_bind(reason)
                        .push(" WHERE state = 'active' AND task_id IN (");
                    let mut ids = update.separated(", ");
                    for id in chunk {
                        ids.push_bind(id.as_str());
                    }
                    update.push(") RETURNING task_id");
                    let done: Vec<String> = update
                        .build_query_scalar()
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(write)?;
                    ended.extend(done);
                }
                tx.commit().await.map_err(write)?;
                // In the order given, each once.
                Ok(task_ids
                    .iter()
                    .filter(|id| ended.remove(id.as_str()))
                    .cloned()
                    .collect())
            }

            async fn task_subtree(&self, task_id: &str) -> Result<Vec<String>, StoreError> {
                let mut rows: Vec<(String, i32)> = sqlx::query_as(identity_sql::SELECT_SUBTREE)
                    .bind(task_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|source| failed("read task subtree", source))?;
                rows.sort_by(|(a, a_depth), (b, b_depth)| {
                    (a != task_id, a_depth, a).cmp(&(b != task_id, b_depth, b))
                });
                Ok(rows.into_iter().map(|(id, _)| id).collect())
            }

            async fn ended_tasks_unexpired(&self, now_us: i64) -> Result<Vec<String>, StoreError> {
                let mut ids: Vec<String> = sqlx::query_scalar(identity_sql::SELECT_ENDED_UNEXPIRED)
                    .bind(now_us)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|source| failed("list ended tasks", source))?;
                ids.sort();
                Ok(ids)
            }

            async fn tasks_issued_since(
                &self,
                since_us: i64,
                limit: u32,
            ) -> Result<Vec<$crate::identity::TaskRecord>, StoreError> {
                let rows = sqlx::query(identity_sql::SELECT_TASKS_ISSUED_SINCE)
                    .bind(since_us)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|source| failed("list tasks issued since", source))?;
                rows.iter()
                    .map(|row| identity_sql::decode_task(BACKEND, row))
                    .collect()
            }

            async fn tasks_of_agent(
                &self,
                spiffe_id: &str,
                active_only: bool,
            ) -> Result<Vec<$crate::identity::TaskRecord>, StoreError> {
                let sql = if active_only {
                    identity_sql::SELECT_ACTIVE_TASKS_OF_AGENT
                } else {
                    identity_sql::SELECT_TASKS_OF_AGENT
                };
                let rows = sqlx::query(sql)
                    .bind(spiffe_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|source| failed("list tasks of agent", source))?;
                let mut tasks = rows
                    .iter()
                    .map(|row| identity_sql::decode_task(BACKEND, row))
                    .collect::<Result<Vec<_>, _>>()?;
                tasks.sort_by(|a, b| (a.issued_us, &a.task_id).cmp(&(b.issued_us, &b.task_id)));
                Ok(tasks)
            }

            async fn put_secret(
                &self,
                secret: &$crate::secrets::SecretRecord,
            ) -> Result<(), StoreError> {
                sqlx::query($crate::secrets_sql::INSERT_SECRET)
                    .bind(&secret.name)
                    .bind(secret.version)
                    .bind(&secret.kek_id)
                    .bind(&secret.nonce)
                    .bind(&secret.ciphertext)
                    .bind(secret.created_us)
                    .bind(secret.rotated_us)
                    .execute(&self.pool)
                    .await
                    .map_err(|source| {
                        failed_or_conflict("put secret", source, |_| {
                            format!("secret {:?}", secret.name)
                        })
                    })?;
                Ok(())
            }

            async fn replace_secret(
                &self,
                secret: &$crate::secrets::SecretRecord,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query($crate::secrets_sql::REPLACE_SECRET)
                    .bind(&secret.name)
                    .bind(secret.version)
                    .bind(&secret.kek_id)
                    .bind(&secret.nonce)
                    .bind(&secret.ciphertext)
                    .bind(secret.rotated_us)
                    .execute(&self.pool)
                    .await
                    .map_err(|source| failed("replace secret", source))?;
                Ok(done.rows_affected() > 0)
            }

            async fn secret(
                &self,
                name: &str,
            ) -> Result<Option<$crate::secrets::SecretRecord>, StoreError> {
                let row = sqlx::query($crate::secrets_sql::SELECT_SECRET)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|source| failed("read secret", source))?;
                row.map(|row| $crate::secrets_sql::decode_secret(BACKEND, &row))
                    .transpose()
            }

            async fn secrets(&self) -> Result<Vec<$crate::secrets::SecretRecord>, StoreError> {
                let rows = sqlx::query($crate::secrets_sql::SELECT_SECRETS)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|source| failed("list secrets", source))?;
                let mut secrets = rows
                    .iter()
                    .map(|row| $crate::secrets_sql::decode_secret(BACKEND, row))
                    .collect::<Result<Vec<_>, _>>()?;
                secrets.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(secrets)
            }

            async fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
                let done = sqlx::query($crate::secrets_sql::DELETE_SECRET)
                    .bind(name)
                    .execute(&self.pool)
                    .await
                    .map_err(|source| failed("delete secret", source))?;
                Ok(done.rows_affected() > 0)
            }

            async fn count_call(
                &self,
                budgets: &[(String, u64)],
            ) -> Result<$crate::session::BudgetOutcome, StoreError> {
                use $crate::session::BudgetOutcome;
                let write = |source| failed("count call", source);
                let mut first_used = None;
                let mut tx = self.pool.begin().await.map_err(write)?;
                for (task_id, max_calls) in budgets {
                    let max = i64::try_from(*max_calls).unwrap_or(i64::MAX);
                    sqlx::query($crate::session_sql::INSERT_USAGE)
                        .bind(task_id)
                        .bind(max)
                        .execute(&mut *tx)
                        .await
                        .map_err(write)?;
                    let used: Option<i64> = sqlx::query_scalar($crate::session_sql::COUNT_CALL)
                        .bind(task_id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(write)?;
                    let Some(used) = used else {
                        // Dropping `tx` rolls back the counts already made.
                        return Ok(BudgetOutcome::Spent {
                            task_id: task_id.clone(),
                            max_calls: *max_calls,
                        });
                    };
                    first_used.get_or_insert(u64::try_from(used).unwrap_or(0));
                }
                tx.commit().await.map_err(write)?;
                Ok(BudgetOutcome::Counted {
                    calls_used: first_used.unwrap_or(0),
                })
            }

            async fn add_session_labels(
                &self,
                root_task_id: &str,
                labels: &[String],
                at_us: i64,
            ) -> Result<(), StoreError> {
                let write = |source| failed("add session labels", source);
                let mut tx = self.pool.begin().await.map_err(write)?;
                for label in labels {
                    sqlx::query($crate::session_sql::INSERT_LABEL)
                        .bind(root_task_id)
                        .bind(label)
                        .bind(at_us)
                        .execute(&mut *tx)
                        .await
                        .map_err(write)?;
                }
                tx.commit().await.map_err(write)
            }

            async fn session_labels(&self, root_task_id: &str) -> Result<Vec<String>, StoreError> {
                let mut labels: Vec<String> =
                    sqlx::query_scalar($crate::session_sql::SELECT_LABELS)
                        .bind(root_task_id)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(|source| failed("read session labels", source))?;
                labels.sort();
                Ok(labels)
            }

            async fn insert_approval(
                &self,
                approval: &$crate::approvals::ApprovalRecord,
            ) -> Result<(), StoreError> {
                use $crate::approvals_sql::json_list;
                sqlx::query($crate::approvals_sql::INSERT_APPROVAL)
                    .bind(&approval.id)
                    .bind(&approval.task_id)
                    .bind(&approval.root_task_id)
                    .bind(json_list(&approval.task_chain))
                    .bind(&approval.agent)
                    .bind(&approval.agent_name)
                    .bind(&approval.endpoint)
                    .bind(&approval.upstream)
                    .bind(&approval.action)
                    .bind(&approval.resource)
                    .bind(&approval.argument_digest)
                    .bind(&approval.purpose)
                    .bind(json_list(&approval.reasons))
                    .bind(json_list(&approval.policies))
                    .bind(approval.state.as_str())
                    .bind(approval.created_us)
                    .bind(approval.expires_us)
                    .bind(approval.decided_us)
                    .bind(approval.decided_by.as_deref())
                    .bind(approval.note.as_deref())
                    .bind(approval.closed_us)
                    .execute(&self.pool)
                    .await
                    .map_err(|source| {
                        failed_or_conflict("insert approval", source, |_| {
                            format!("approval {:?}", approval.id)
                        })
                    })?;
                Ok(())
            }

            async fn approval(
                &self,
                id: &str,
            ) -> Result<Option<$crate::approvals::ApprovalRecord>, StoreError> {
                let row = sqlx::query($crate::approvals_sql::SELECT_APPROVAL)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|source| failed("read approval", source))?;
                row.map(|row| $crate::approvals_sql::decode_approval(BACKEND, &row))
                    .transpose()
            }

            async fn approvals(
                &self,
                state: Option<$crate::approvals::ApprovalState>,
                limit: u32,
            ) -> Result<Vec<$crate::approvals::ApprovalRecord>, StoreError> {
                let query = match state {
                    Some(state) => sqlx::query($crate::approvals_sql::SELECT_APPROVALS_IN_STATE)
                        .bind(state.as_str())
                        .bind(i64::from(limit)),
                    None => {
                        sqlx::query($crate::approvals_sql::SELECT_APPROVALS).bind(i64::from(limit))
                    }
                };
                let rows = query
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|source| failed("list approvals", source))?;
                let mut approvals = rows
                    .iter()
                    .map(|row| $crate::approvals_sql::decode_approval(BACKEND, row))
                    .collect::<Result<Vec<_>, _>>()?;
                approvals.sort_by(|a, b| (a.created_us, &a.id).cmp(&(b.created_us, &b.id)));
                Ok(approvals)
            }

            async fn approvals_for_call(
                &self,
                task_id: &str,
                action: &str,
                resource: &str,
                argument_digest: &str,
            ) -> Result<Vec<$crate::approvals::ApprovalRecord>, StoreError> {
                let rows = sqlx::query($crate::approvals_sql::SELECT_APPROVALS_FOR_CALL)
                    .bind(task_id)
                    .bind(action)
                    .bind(resource)
                    .bind(argument_digest)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|source| failed("read approvals of a call", source))?;
                let mut approvals = rows
                    .iter()
                    .map(|row| $crate::approvals_sql::decode_approval(BACKEND, row))
                    .collect::<Result<Vec<_>, _>>()?;
                approvals.sort_by(|a, b| (a.created_us, &a.id).cmp(&(b.created_us, &b.id)));
                Ok(approvals)
            }

            async fn decide_approval(
                &self,
                id: &str,
                decision: &$crate::approvals::ApprovalDecision,
            ) -> Result<Option<$crate::approvals::ApprovalRecord>, StoreError> {
                use $crate::approvals::ApprovalState;
                if matches!(decision.state, ApprovalState::Pending | ApprovalState::Used) {
                    return Err(StoreError::InvalidApprovalTransition {
                        from: ApprovalState::Pending,
                        to: decision.state,
                    });
                }
                let unexpired_after = if decision.before_expiry {
                    decision.at_us
                } else {
                    i64::MIN
                };
                let row = sqlx::query($crate::approvals_sql::DECIDE_APPROVAL)
                    .bind(id)
                    .bind(decision.state.as_str())
                    .bind(decision.at_us)
                    .bind(&decision.by)
                    .bind(decision.note.as_deref())
                    .bind(unexpired_after)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|source| failed("decide approval", source))?;
                row.map(|row| $crate::approvals_sql::decode_approval(BACKEND, &row))
                    .transpose()
            }

            async fn close_approval(
                &self,
                id: &str,
                state: $crate::approvals::ApprovalState,
                at_us: i64,
            ) -> Result<Option<$crate::approvals::ApprovalRecord>, StoreError> {
                use $crate::approvals::ApprovalState;
                if !matches!(state, ApprovalState::Used | ApprovalState::Cancelled) {
                    return Err(StoreError::InvalidApprovalTransition {
                        from: ApprovalState::Approved,
                        to: state,
                    });
                }
                let row = sqlx::query($crate::approvals_sql::CLOSE_APPROVAL)
                    .bind(id)
                    .bind(state.as_str())
                    .bind(at_us)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|source| failed("close approval", source))?;
                row.map(|row| $crate::approvals_sql::decode_approval(BACKEND, &row))
                    .transpose()
            }

            async fn expire_approvals(
                &self,
                now_us: i64,
                by: &str,
            ) -> Result<Vec<$crate::approvals::ApprovalRecord>, StoreError> {
                let rows = sqlx::query($crate::approvals_sql::EXPIRE_APPROVALS)
                    .bind(now_us)
                    .bind(by)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|source| failed("expire approvals", source))?;
                let mut approvals = rows
                    .iter()
                    .map(|row| $crate::approvals_sql::decode_approval(BACKEND, row))
                    .collect::<Result<Vec<_>, _>>()?;
                approvals.sort_by(|a, b| (a.created_us, &a.id).cmp(&(b.created_us, &b.id)));
                Ok(approvals)
            }

            async fn close(&self) {
                self.close_audit_writer().await;
                self.pool.close().await;
            }
        }
    };
}

pub(crate) use impl_sql_store;
