//! Sealed secrets on both backends: created once, rotated version by version,
//! listed by name, deleted; the store keeps only what it is given.

mod common;

use std::str::FromStr;

use mandate_store::{SecretRecord, StoreError};
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

use common::{Backend, TestDb, chain, on_each_backend};

fn secret(name: &str, version: i64) -> SecretRecord {
    SecretRecord {
        name: name.to_owned(),
        version,
        kek_id: "kek-0011223344556677".to_owned(),
        nonce: "AAECAwQFBgcICQoL".to_owned(),
        ciphertext: format!("c2VhbGVk{version}"),
        created_us: 1_000,
        rotated_us: None,
    }
}

/// `secret(name, version)` as a rotation at `at_us` leaves it.
fn rotated(name: &str, version: i64, at_us: i64) -> SecretRecord {
    SecretRecord {
        kek_id: "kek-8899aabbccddeeff".to_owned(),
        nonce: "DAsKCQgHBgUEAwIB".to_owned(),
        rotated_us: Some(at_us),
        ..secret(name, version)
    }
}

#[tokio::test]
async fn secrets_are_stored_read_back_and_listed_by_name() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        for name in ["db.password", "Zed", "api-key", "a_b"] {
            store.put_secret(&secret(name, 1)).await.unwrap();
        }
        assert_eq!(
            store.secret("db.password").await.unwrap(),
            Some(secret("db.password", 1))
        );
        assert_eq!(store.secret("ghost").await.unwrap(), None);
        let names: Vec<String> = store
            .secrets()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        // Byte order on both backends, whatever PostgreSQL's collation.
        assert_eq!(names, ["Zed", "a_b", "api-key", "db.password"]);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_taken_secret_name_is_a_conflict_and_writes_nothing() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        store.put_secret(&secret("api-key", 1)).await.unwrap();
        let mut again = secret("api-key", 1);
        again.ciphertext = "b3RoZXI=".to_owned();
        let err = store.put_secret(&again).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict { what } if what == r#"secret "api-key""#),
            "{err:?}"
        );
        assert_eq!(err.to_string(), r#"secret "api-key" already exists"#);
        assert_eq!(store.secrets().await.unwrap(), vec![secret("api-key", 1)]);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_rotation_replaces_only_the_version_before_it() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        store.put_secret(&secret("api-key", 1)).await.unwrap();
        store.put_secret(&secret("other", 1)).await.unwrap();

        assert!(
            store
                .replace_secret(&rotated("api-key", 2, 5_000))
                .await
                .unwrap()
        );
        // The creation time is kept; everything sealed is replaced.
        assert_eq!(
            store.secret("api-key").await.unwrap(),
            Some(rotated("api-key", 2, 5_000))
        );
        // A second rotation to the same version lost a race: nothing changes.
        assert!(
            !store
                .replace_secret(&rotated("api-key", 2, 6_000))
                .await
                .unwrap()
        );
        // Nor does skipping a version.
        assert!(
            !store
                .replace_secret(&rotated("api-key", 4, 6_000))
                .await
                .unwrap()
        );
        assert_eq!(
            store.secret("api-key").await.unwrap(),
            Some(rotated("api-key", 2, 5_000))
        );
        assert!(
            store
                .replace_secret(&rotated("api-key", 3, 7_000))
                .await
                .unwrap()
        );
        // An absent secret is not created by a rotation.
        assert!(
            !store
                .replace_secret(&rotated("ghost", 2, 5_000))
                .await
                .unwrap()
        );
        assert_eq!(store.secret("ghost").await.unwrap(), None);
        assert_eq!(
            store.secret("other").await.unwrap(),
            Some(secret("other", 1))
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_deleted_secret_is_gone_and_its_name_free() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        store.put_secret(&secret("api-key", 1)).await.unwrap();
        assert!(store.delete_secret("api-key").await.unwrap());
        assert!(!store.delete_secret("api-key").await.unwrap());
        assert_eq!(store.secret("api-key").await.unwrap(), None);
        assert_eq!(store.secrets().await.unwrap(), vec![]);
        store.put_secret(&secret("api-key", 1)).await.unwrap();
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_tampered_secret_row_is_an_error_naming_it() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        store.put_secret(&secret("api-key", 1)).await.unwrap();
        // Only SQLite lets a column hold a value of another type.
        if db.backend == Backend::Sqlite {
            db.exec("UPDATE secrets SET version = 'two' WHERE name = 'api-key'")
                .await;
            let err = store.secret("api-key").await.unwrap_err();
            assert_eq!(
                err.to_string(),
                r#"secrets row "api-key" is corrupt: version has the wrong type"#
            );
            assert!(store.secrets().await.is_err());
        }
        store.close().await;
    })
    .await;
}

/// Migrations 0001 to 0003 exactly as shipped before 0004 existed.
fn identity_migrator(backend: Backend) -> Migrator {
    let steps: [(i64, &str, &'static str); 3] = match backend {
        Backend::Sqlite => [
            (
                1,
                "audit",
                include_str!("../src/migrations/sqlite/0001_audit.sql"),
            ),
            (
                2,
                "head seal",
                include_str!("../src/migrations/sqlite/0002_head_seal.sql"),
            ),
            (
                3,
                "identity",
                include_str!("../src/migrations/sqlite/0003_identity.sql"),
            ),
        ],
        Backend::Postgres => [
            (
                1,
                "audit",
                include_str!("../src/migrations/postgres/0001_audit.sql"),
            ),
            (
                2,
                "head seal",
                include_str!("../src/migrations/postgres/0002_head_seal.sql"),
            ),
            (
                3,
                "identity",
                include_str!("../src/migrations/postgres/0003_identity.sql"),
            ),
        ],
    };
    Migrator::with_migrations(
        steps
            .into_iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

#[tokio::test]
async fn the_secrets_migration_applies_to_an_existing_identity_database() {
    on_each_backend(|db: TestDb| async move {
        let migrator = identity_migrator(db.backend);
        match db.backend {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(&db.url)
                    .unwrap()
                    .create_if_missing(true);
                let pool = SqlitePool::connect_with(options).await.unwrap();
                migrator.run(&pool).await.unwrap();
                pool.close().await;
            }
            Backend::Postgres => {
                let pool = PgPool::connect(&db.url).await.unwrap();
                migrator.run(&pool).await.unwrap();
                pool.close().await;
            }
        }
        let records = chain("n1", 3);
        for record in &records {
            db.exec(&common::insert_sql(record)).await;
        }

        let store = db.store().await;
        assert_eq!(store.audit_page("n1", 0, 10).await.unwrap(), records);
        store.put_secret(&secret("api-key", 1)).await.unwrap();
        store.close().await;
    })
    .await;
}
