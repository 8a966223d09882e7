//! The `Store` trait that the server and the CLI hold as `Arc<dyn Store>`, and
//! `connect`, which picks the backend from a URL and brings its schema up to date.

use std::sync::Arc;

use mandate_core::{AuditRecord, ChainHead};

use crate::error::StoreError;
use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;

/// Durable state. Every method is one short transaction or query; callers
/// never see the SQL.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// The backend's name: `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stores `records` (sealed, contiguous, all of one node) and moves that
    /// node's chain head to the last of them with its `seal` (see
    /// `mandate_core::HeadSealer`; empty for none), in one transaction: either
    /// all of it lands or none of it does. An empty slice is a no-op.
    async fn append_audit(&self, records: &[AuditRecord], seal: &str) -> Result<(), StoreError>;

    /// Registers `node_id`'s empty chain (head at sequence 0) with its `seal`,
    /// so that the chain cannot later vanish unnoticed. Does nothing if the
    /// node already has a head.
    async fn register_audit_chain(&self, node_id: &str, seal: &str) -> Result<(), StoreError>;

    /// The head of `node_id`'s chain, or `None` if it has none.
    async fn audit_head(&self, node_id: &str) -> Result<Option<ChainHead>, StoreError>;

    /// The seal stored with `node_id`'s head (empty if written without one),
    /// or `None` if it has no head.
    async fn audit_head_seal(&self, node_id: &str) -> Result<Option<String>, StoreError>;

    /// Every node that has a chain head or records, sorted.
    async fn audit_nodes(&self) -> Result<Vec<String>, StoreError>;

    /// Up to `limit` records of `node_id` with `seq > after_seq`, ascending.
    async fn audit_page(
        &self,
        node_id: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError>;

    /// The newest `limit` records of all nodes by insertion, oldest first,
    /// each with its row ID (to continue from with [`Store::audit_after`]).
    async fn audit_latest(&self, limit: u32) -> Result<Vec<(i64, AuditRecord)>, StoreError>;

    /// Up to `limit` records inserted after row `row_id`, ascending.
    async fn audit_after(
        &self,
        row_id: i64,
        limit: u32,
    ) -> Result<Vec<(i64, AuditRecord)>, StoreError>;

    /// Closes the connections, waiting for those in use to come back.
    async fn close(&self);
}

/// Opens the store at `url` and runs any migrations not yet applied.
///
/// `sqlite://PATH` (the file is created if missing; WAL, `synchronous=FULL`)
/// or `postgres://...` / `postgresql://...`. Errors never quote the URL itself,
/// so a password in it does not end up in logs.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" => Ok(Arc::new(SqliteStore::connect(url).await?)),
        "postgres" | "postgresql" => Ok(Arc::new(PgStore::connect(url).await?)),
        _ => Err(StoreError::UnsupportedUrl {
            scheme: scheme.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unknown_scheme_is_named_without_the_rest_of_the_url() {
        let err = connect("mysql://root:hunter2@db/x").await.err().unwrap();
        assert!(matches!(&err, StoreError::UnsupportedUrl { scheme } if scheme == "mysql"));
        let text = err.to_string();
        assert_eq!(
            text,
            r#"unsupported store URL scheme "mysql" (expected sqlite:// or postgres://)"#
        );
    }

    #[tokio::test]
    async fn a_url_without_a_scheme_is_unsupported() {
        let err = connect("/var/lib/mandate.db").await.err().unwrap();
        assert!(matches!(&err, StoreError::UnsupportedUrl { scheme } if scheme.is_empty()));
    }
}
