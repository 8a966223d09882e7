//! The PostgreSQL backend. Durability is the server's (`synchronous_commit`);
//! a commit returns once PostgreSQL says the batch is on disk.

use std::str::FromStr;
use std::time::Duration;

use mandate_core::{AuditRecord, ChainHead};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder};

use crate::error::StoreError;
use crate::identity_sql;
use crate::migrations;
use crate::sql;
use crate::store::Store;

const BACKEND: &str = "postgres";

/// How long to wait for a pooled connection (or a new one) before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL database.
pub(crate) struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to and migrates the database at `url`.
    pub(crate) async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(|source| StoreError::InvalidUrl {
            backend: BACKEND,
            source,
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect {
                backend: BACKEND,
                source,
            })?;
        migrations::postgres()
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                backend: BACKEND,
                source,
            })?;
        Ok(PgStore { pool })
    }

    /// Appends `records` and moves the chain head, in one transaction on a
    /// pooled connection.
    async fn write_audit(&self, records: &[AuditRecord], seal: &str) -> Result<(), StoreError> {
        let mut connection = self
            .pool
            .acquire()
            .await
            .map_err(|source| failed("append audit records", source))?;
        Self::append_audit_stepwise(&mut connection, records, seal).await
    }

    /// Nothing to do: every connection is the pool's.
    async fn close_audit_writer(&self) {}
}

crate::backend::impl_sql_store!(PgStore, Postgres, sqlx::postgres::PgArguments);
