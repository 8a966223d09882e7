//! The two-backend harness: every store test runs once on SQLite (a file in a
//! temporary directory) and once on PostgreSQL (a fresh database per test).
//!
//! PostgreSQL is found at `MANDATE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). If it cannot be reached the test
//! fails, unless `MANDATE_TEST_POSTGRES=skip`, which skips that half with a notice.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;

use mandate_core::{AuditEvent, AuditRecord, ChainHead};
use mandate_store::{Store, connect};
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqliteConnection};

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Which database a test is running on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty database for one test.
#[derive(Debug, Clone)]
pub(crate) struct TestDb {
    pub(crate) backend: Backend,
    pub(crate) url: String,
}

/// Runs `test` on a fresh SQLite database, then on a fresh PostgreSQL one.
pub(crate) async fn on_each_backend<F, Fut>(test: F)
where
    F: Fn(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let sqlite = TestDb {
        backend: Backend::Sqlite,
        url: format!("sqlite://{}", dir.path().join("mandate.db").display()),
    };
    run(sqlite, &test).await;

    if std::env::var("MANDATE_TEST_POSTGRES").as_deref() == Ok("skip") {
        eprintln!("notice: MANDATE_TEST_POSTGRES=skip, not running this test on PostgreSQL");
        return;
    }
    let base = std::env::var("MANDATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
    let name = format!("mandate_test_{}", uuid::Uuid::new_v4().simple());
    admin(&base, &format!("CREATE DATABASE {name}")).await;
    let postgres = TestDb {
        backend: Backend::Postgres,
        url: with_database(&base, &name),
    };
    let outcome = tokio::spawn(test(postgres)).await;
    // Best effort: a leftover database is harmless.
    let _ = try_admin(
        &base,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await;
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

async fn run<F, Fut>(db: TestDb, test: &F)
where
    F: Fn(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    if let Err(err) = tokio::spawn(test(db.clone())).await {
        eprintln!("failed on {:?}", db.backend);
        std::panic::resume_unwind(err.into_panic());
    }
}

async fn admin(base: &str, sql: &str) {
    if let Err(err) = try_admin(base, sql).await {
        panic!(
            "PostgreSQL is not usable at {} ({err}); start it, point MANDATE_TEST_POSTGRES_URL \
             at one, or set MANDATE_TEST_POSTGRES=skip to run the SQLite half only",
            redact(base)
        );
    }
}

async fn try_admin(base: &str, sql: &str) -> Result<(), sqlx::Error> {
    let mut conn = PgConnection::connect(base).await?;
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await?;
    conn.close().await
}

/// `base` with its database name replaced by `name`.
fn with_database(base: &str, name: &str) -> String {
    let (url, query) = base
        .split_once('?')
        .map_or((base, None), |(u, q)| (u, Some(q)));
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let root = match url[authority_start..].find('/') {
        Some(slash) => &url[..authority_start + slash],
        None => url,
    };
    match query {
        Some(query) => format!("{root}/{name}?{query}"),
        None => format!("{root}/{name}"),
    }
}

/// `url` with any password replaced by `***`.
fn redact(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let Some(at) = url[start..].find('@').map(|i| start + i) else {
        return url.to_owned();
    };
    match url[start..at].find(':') {
        Some(colon) => format!("{}:***{}", &url[..start + colon], &url[at..]),
        None => url.to_owned(),
    }
}

/// A connection beside the store's, for tampering and fault injection.
pub(crate) enum RawConn {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl RawConn {
    /// Runs `sql` (one or more statements, no parameters).
    pub(crate) async fn exec(&mut self, sql: &str) {
        let query = sqlx::raw_sql(AssertSqlSafe(sql.to_owned()));
        let result = match self {
            RawConn::Sqlite(conn) => query.execute(conn).await.map(drop),
            RawConn::Postgres(conn) => query.execute(conn).await.map(drop),
        };
        result.unwrap_or_else(|err| panic!("raw SQL failed: {err}\n{sql}"));
    }
}

impl TestDb {
    /// The store under test, migrated.
    pub(crate) async fn store(&self) -> Arc<dyn Store> {
        connect(&self.url).await.expect("connect to the test store")
    }

    /// A separate connection to the same database.
    pub(crate) async fn raw(&self) -> RawConn {
        match self.backend {
            Backend::Sqlite => RawConn::Sqlite(SqliteConnection::connect(&self.url).await.unwrap()),
            Backend::Postgres => RawConn::Postgres(PgConnection::connect(&self.url).await.unwrap()),
        }
    }

    /// Runs `sql` on a separate connection.
    pub(crate) async fn exec(&self, sql: &str) {
        self.raw().await.exec(sql).await;
    }

    /// Makes every insert into or update of `table` fail.
    pub(crate) async fn break_writes_to(&self, table: &str) {
        let sql = match self.backend {
            Backend::Sqlite => format!(
                "CREATE TRIGGER mandate_test_fail_insert BEFORE INSERT ON {table} \
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;
                 CREATE TRIGGER mandate_test_fail_update BEFORE UPDATE ON {table} \
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
            ),
            Backend::Postgres => format!(
                "CREATE OR REPLACE FUNCTION mandate_test_fail() RETURNS trigger LANGUAGE plpgsql \
                 AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$;
                 CREATE TRIGGER mandate_test_fail BEFORE INSERT OR UPDATE ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION mandate_test_fail();"
            ),
        };
        self.exec(&sql).await;
    }

    /// Undoes [`TestDb::break_writes_to`].
    pub(crate) async fn mend_writes_to(&self, table: &str) {
        let sql = match self.backend {
            Backend::Sqlite => "DROP TRIGGER mandate_test_fail_insert; \
                                DROP TRIGGER mandate_test_fail_update;"
                .to_owned(),
            Backend::Postgres => format!("DROP TRIGGER mandate_test_fail ON {table};"),
        };
        self.exec(&sql).await;
    }

    /// SQL that, run in a transaction on a raw connection, blocks the store's
    /// audit writes until `COMMIT`.
    pub(crate) fn lock_audit_sql(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN; LOCK TABLE audit_records IN EXCLUSIVE MODE",
        }
    }
}

/// Event `n` of the shared sample.
pub(crate) fn event(n: u32) -> AuditEvent {
    mandate_testkit::sample_audit_event(n)
}

/// Records `1..=n` of `node`'s chain.
pub(crate) fn chain(node: &str, n: u32) -> Vec<AuditRecord> {
    let mut head = ChainHead::GENESIS;
    (1..=n)
        .map(|i| {
            let record = AuditRecord::seal(node, head, event(i));
            head = record.head();
            record
        })
        .collect()
}

/// An `INSERT` of `record` as literal SQL, for forging rows behind the store.
pub(crate) fn insert_sql(record: &AuditRecord) -> String {
    let text = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let e = &record.event;
    format!(
        "INSERT INTO audit_records (node_id, seq, time_us, kind, request_id, subject, action, \
         resource, outcome, policies, request_digest, detail, prev_hash, hash) VALUES \
         ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
        text(&record.node_id),
        record.seq,
        e.time_us,
        text(e.kind.as_str()),
        text(&e.request_id),
        text(&e.subject),
        text(&e.action),
        text(&e.resource),
        text(&e.outcome),
        text(&serde_json::to_string(&e.policies).unwrap()),
        text(&e.request_digest),
        text(&e.detail.to_string()),
        text(&hex::encode(record.prev_hash)),
        text(&hex::encode(record.hash)),
    )
}

#[test]
fn a_database_name_replaces_the_one_in_the_url() {
    assert_eq!(
        with_database("postgres://u:p@h:5432/test?sslmode=disable", "x"),
        "postgres://u:p@h:5432/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
}
