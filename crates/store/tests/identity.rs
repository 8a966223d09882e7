//! Agents, admin credentials, signing keys and tasks on both backends.

mod common;

use std::str::FromStr;

use mandate_store::{
    AdminCredential, AgentRecord, AgentStatus, SigningKeyRecord, StoreError, TaskRecord, TaskState,
};
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

use common::{Backend, TestDb, chain, on_each_backend};

fn agent(name: &str) -> AgentRecord {
    AgentRecord {
        name: name.to_owned(),
        spiffe_id: format!("spiffe://example.org/agent/{name}"),
        owner: "team-payments".to_owned(),
        env: "prod".to_owned(),
        function: "reconcile invoices".to_owned(),
        status: AgentStatus::Active,
        created_us: 1_000,
        updated_us: 1_000,
        key_sha256: Some("ab".repeat(32)),
        credentials_since_us: 1_000,
    }
}

fn key(kid: &str, created_us: i64) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.to_owned(),
        node_id: "node-1".to_owned(),
        public_jwk: format!(r#"{{"kty":"OKP","crv":"Ed25519","kid":"{kid}","x":"AAAA"}}"#),
        created_us,
        retired_us: None,
    }
}

/// An active task of `agent`, delegated from `parent` (given as
/// `(parent_id, root_id, parent_depth)`), expiring at `expires_us`.
fn task(
    task_id: &str,
    agent: &str,
    parent: Option<(&str, &str, i32)>,
    expires_us: i64,
) -> TaskRecord {
    let (parent_task_id, root_task_id, depth) = match parent {
        Some((parent, root, depth)) => (Some(parent.to_owned()), root.to_owned(), depth + 1),
        None => (None, task_id.to_owned(), 0),
    };
    TaskRecord {
        task_id: task_id.to_owned(),
        jti: format!("jti-{task_id}"),
        agent: agent.to_owned(),
        parent_task_id,
        root_task_id,
        depth,
        grant_json: r#"{"tools":["invoices.read"],"note":"it's \"quoted\""}"#.to_owned(),
        issued_us: 10_000,
        expires_us,
        state: TaskState::Active,
        ended_us: None,
        end_reason: None,
    }
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn agents_are_created_read_back_and_listed_by_name() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        let mut unusual = agent("Zed");
        unusual.owner = "o'brien ünïcode \u{1F600}".to_owned();
        unusual.status = AgentStatus::Suspended;
        unusual.created_us = -5;
        unusual.updated_us = i64::MAX;
        for record in [
            agent("billing"),
            unusual.clone(),
            agent("alpha"),
            agent("a-b"),
        ] {
            store.create_agent(&record).await.unwrap();
        }

        assert_eq!(store.agent("Zed").await.unwrap(), Some(unusual.clone()));
        assert_eq!(
            store
                .agent_by_spiffe_id("spiffe://example.org/agent/Zed")
                .await
                .unwrap(),
            Some(unusual)
        );
        let names: Vec<String> = store
            .agents()
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.name)
            .collect();
        // Byte order on both backends, whatever PostgreSQL's collation.
        assert_eq!(names, ["Zed", "a-b", "alpha", "billing"]);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_taken_name_or_spiffe_id_is_a_conflict_and_writes_nothing() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        let original = agent("billing");
        store.create_agent(&original).await.unwrap();

        let mut same_name = agent("billing");
        same_name.spiffe_id = "spiffe://example.org/agent/other".to_owned();
        let err = store.create_agent(&same_name).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict { what } if what == r#"agent "billing""#),
            "{err:?}"
        );
        assert_eq!(err.to_string(), r#"agent "billing" already exists"#);

        let mut same_id = agent("other");
        same_id.spiffe_id = original.spiffe_id.clone();
        let err = store.create_agent(&same_id).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"agent with SPIFFE ID "spiffe://example.org/agent/billing" already exists"#
        );

        assert_eq!(store.agents().await.unwrap(), vec![original.clone()]);
        assert_eq!(store.agent("other").await.unwrap(), None);
        assert_eq!(
            store
                .agent_by_spiffe_id("spiffe://example.org/agent/other")
                .await
                .unwrap(),
            None
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn agents_are_suspended_resumed_and_deleted() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        store.create_agent(&agent("billing")).await.unwrap();
        store.create_agent(&agent("support")).await.unwrap();

        let suspended = store
            .set_agent_status("billing", AgentStatus::Suspended, 2_000)
            .await
            .unwrap()
            .unwrap();
        let expected = AgentRecord {
            status: AgentStatus::Suspended,
            updated_us: 2_000,
            ..agent("billing")
        };
        assert_eq!(suspended, expected);
        assert_eq!(store.agent("billing").await.unwrap(), Some(expected));

        let resumed = store
            .set_agent_status("billing", AgentStatus::Active, 3_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (resumed.status, resumed.updated_us),
            (AgentStatus::Active, 3_000)
        );
        assert_eq!(resumed.created_us, 1_000);
        assert_eq!(
            store.agent("support").await.unwrap(),
            Some(agent("support"))
        );

        assert!(store.delete_agent("billing").await.unwrap());
        assert!(!store.delete_agent("billing").await.unwrap());
        assert_eq!(store.agent("billing").await.unwrap(), None);
        assert_eq!(store.agents().await.unwrap(), vec![agent("support")]);
        // The name and SPIFFE ID are free again.
        store.create_agent(&agent("billing")).await.unwrap();
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn an_unknown_agent_is_none_or_false() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        assert_eq!(store.agent("ghost").await.unwrap(), None);
        assert_eq!(
            store.agent_by_spiffe_id("spiffe://x/ghost").await.unwrap(),
            None
        );
        assert_eq!(
            store
                .set_agent_status("ghost", AgentStatus::Suspended, 1)
                .await
                .unwrap(),
            None
        );
        assert!(!store.delete_agent("ghost").await.unwrap());
        assert_eq!(store.agents().await.unwrap(), vec![]);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_new_key_replaces_the_old_and_moves_credentials_since() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        store.create_agent(&agent("billing")).await.unwrap();
        let rekeyed = store
            .set_agent_key("billing", &"cd".repeat(32), 5_000)
            .await
            .unwrap()
            .unwrap();
        let expected = AgentRecord {
            key_sha256: Some("cd".repeat(32)),
            credentials_since_us: 5_000,
            updated_us: 5_000,
            ..agent("billing")
        };
        assert_eq!(rekeyed, expected);
        assert_eq!(store.agent("billing").await.unwrap(), Some(expected));
        assert_eq!(store.set_agent_key("ghost", "00", 1).await.unwrap(), None);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn admin_credentials_are_stored_and_listed_oldest_first() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        let newer = AdminCredential {
            id: "adm-b".to_owned(),
            name: "bob".to_owned(),
            secret_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
            created_us: 20,
        };
        let older = AdminCredential {
            id: "adm-z".to_owned(),
            name: "admin".to_owned(),
            secret_hash: "hash-z".to_owned(),
            created_us: 10,
        };
        store.insert_admin_credential(&newer).await.unwrap();
        store.insert_admin_credential(&older).await.unwrap();
        let same_id = AdminCredential {
            name: "carol".to_owned(),
            ..newer.clone()
        };
        let err = store.insert_admin_credential(&same_id).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"admin credential "adm-b" already exists"#
        );
        assert_eq!(store.admin_credentials().await.unwrap(), vec![older, newer]);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn signing_keys_are_published_retired_once_and_listed_oldest_first() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        store.publish_signing_key(&key("k2", 200)).await.unwrap();
        store.publish_signing_key(&key("k1", 100)).await.unwrap();
        let mut already = key("k0", 200);
        already.retired_us = Some(250);
        store.publish_signing_key(&already).await.unwrap();

        let err = store
            .publish_signing_key(&key("k1", 999))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict { what } if what == r#"signing key "k1""#),
            "{err:?}"
        );

        assert!(store.retire_signing_key("k1", 300).await.unwrap());
        assert!(!store.retire_signing_key("k1", 400).await.unwrap());
        assert!(!store.retire_signing_key("k0", 400).await.unwrap());
        assert!(!store.retire_signing_key("nope", 400).await.unwrap());

        let mut k1 = key("k1", 100);
        k1.retired_us = Some(300);
        assert_eq!(
            store.signing_keys().await.unwrap(),
            vec![k1, already, key("k2", 200)]
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn tasks_read_back_exactly_and_a_taken_id_or_jti_conflicts() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        let root = task("t1", "spiffe://a", None, 50_000);
        let mut child = task("t2", "spiffe://b", Some(("t1", "t1", 0)), 40_000);
        child.state = TaskState::Revoked;
        child.ended_us = Some(12_000);
        child.end_reason = Some("parent revoked".to_owned());
        store.insert_task(&root).await.unwrap();
        store.insert_task(&child).await.unwrap();
        assert_eq!(store.task("t1").await.unwrap(), Some(root.clone()));
        assert_eq!(store.task("t2").await.unwrap(), Some(child));
        assert_eq!(store.task("t3").await.unwrap(), None);

        let mut same_id = task("t1", "spiffe://c", None, 1);
        same_id.jti = "jti-fresh".to_owned();
        let err = store.insert_task(&same_id).await.unwrap_err();
        assert_eq!(err.to_string(), r#"task "t1" already exists"#);

        let mut same_jti = task("t3", "spiffe://c", None, 1);
        same_jti.jti = "jti-t1".to_owned();
        let err = store.insert_task(&same_jti).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict { what } if what == r#"task with token ID "jti-t1""#),
            "{err:?}"
        );
        assert_eq!(store.task("t1").await.unwrap(), Some(root));
        assert_eq!(store.task("t3").await.unwrap(), None);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn end_tasks_ends_only_active_ones_once() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        for id in ["t1", "t2", "t3"] {
            store
                .insert_task(&task(id, "spiffe://a", None, 50_000))
                .await
                .unwrap();
        }
        let ended = store
            .end_tasks(&ids(&["t2"]), TaskState::Completed, "done", 20_000)
            .await
            .unwrap();
        assert_eq!(ended, ids(&["t2"]));

        let asked = ids(&["t3", "t2", "ghost", "t1", "t3"]);
        let ended = store
            .end_tasks(&asked, TaskState::Revoked, "admin revoked", 30_000)
            .await
            .unwrap();
        assert_eq!(ended, ids(&["t3", "t1"]));
        let again = store
            .end_tasks(&asked, TaskState::Revoked, "again", 40_000)
            .await
            .unwrap();
        assert_eq!(again, Vec::<String>::new());
        assert_eq!(
            store
                .end_tasks(&[], TaskState::Revoked, "none", 1)
                .await
                .unwrap(),
            Vec::<String>::new()
        );

        let t1 = store.task("t1").await.unwrap().unwrap();
        assert_eq!(
            (t1.state, t1.ended_us, t1.end_reason.as_deref()),
            (TaskState::Revoked, Some(30_000), Some("admin revoked"))
        );
        let t2 = store.task("t2").await.unwrap().unwrap();
        assert_eq!(
            (t2.state, t2.ended_us, t2.end_reason.as_deref()),
            (TaskState::Completed, Some(20_000), Some("done"))
        );

        let err = store
            .end_tasks(&ids(&["t1"]), TaskState::Active, "", 1)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::NotAnEndState {
                    state: TaskState::Active
                }
            ),
            "{err:?}"
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn end_tasks_is_one_transaction() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        // More IDs than one statement takes, so the work spans statements.
        let many: Vec<String> = (0..1500).map(|i| format!("t{i:04}")).collect();
        for id in &many {
            store
                .insert_task(&task(id, "spiffe://a", None, 50_000))
                .await
                .unwrap();
        }
        // The last one cannot be updated: nothing before it may stay ended.
        let sql = match db.backend {
            Backend::Sqlite => {
                "CREATE TRIGGER mandate_test_fail BEFORE UPDATE ON tasks \
                 WHEN old.task_id = 't1499' BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
            }
            Backend::Postgres => {
                "CREATE FUNCTION mandate_test_fail() RETURNS trigger \
                 LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$; \
                 CREATE TRIGGER mandate_test_fail BEFORE UPDATE ON tasks FOR EACH ROW \
                 WHEN (old.task_id = 't1499') EXECUTE FUNCTION mandate_test_fail();"
            }
        };
        db.exec(sql).await;
        let err = store
            .end_tasks(&many, TaskState::Revoked, "bulk", 1)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Query { .. }), "{err:?}");
        assert_eq!(
            store.ended_tasks_unexpired(0).await.unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            store.task("t0000").await.unwrap().unwrap().state,
            TaskState::Active
        );

        let ended = store
            .end_tasks(&many[..1499], TaskState::Revoked, "bulk", 1)
            .await
            .unwrap();
        assert_eq!(ended, many[..1499]);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn the_subtree_is_the_task_and_all_its_descendants() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        // r ─┬─ a ─┬─ a1
        //    │     └─ a2 (completed)
        //    └─ b ─── b1
        // other ─ o1
        let tree = [
            task("r", "spiffe://x", None, 50_000),
            task("a", "spiffe://x", Some(("r", "r", 0)), 50_000),
            task("b", "spiffe://y", Some(("r", "r", 0)), 50_000),
            task("a1", "spiffe://z", Some(("a", "r", 1)), 50_000),
            task("a2", "spiffe://z", Some(("a", "r", 1)), 50_000),
            task("b1", "spiffe://z", Some(("b", "r", 1)), 50_000),
            task("other", "spiffe://x", None, 50_000),
            task("o1", "spiffe://x", Some(("other", "other", 0)), 50_000),
        ];
        for record in &tree {
            store.insert_task(record).await.unwrap();
        }
        store
            .end_tasks(&ids(&["a2"]), TaskState::Completed, "done", 1)
            .await
            .unwrap();

        assert_eq!(
            store.task_subtree("r").await.unwrap(),
            ids(&["r", "a", "b", "a1", "a2", "b1"])
        );
        assert_eq!(
            store.task_subtree("a").await.unwrap(),
            ids(&["a", "a1", "a2"])
        );
        assert_eq!(store.task_subtree("b1").await.unwrap(), ids(&["b1"]));
        assert_eq!(
            store.task_subtree("other").await.unwrap(),
            ids(&["other", "o1"])
        );
        assert_eq!(
            store.task_subtree("ghost").await.unwrap(),
            Vec::<String>::new()
        );

        // A tampered cycle ends the walk instead of looping.
        db.exec("UPDATE tasks SET parent_task_id = 'a1' WHERE task_id = 'a'")
            .await;
        assert_eq!(
            store.task_subtree("a").await.unwrap(),
            ids(&["a", "a1", "a2"])
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn ended_unexpired_tasks_leave_out_active_and_expired_ones() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        let now = 100_000;
        for (id, expires_us) in [
            ("active", now + 10),
            ("revoked", now + 10),
            ("completed", now + 1),
            ("expired", now - 1),
            ("expires-now", now),
        ] {
            store
                .insert_task(&task(id, "spiffe://a", None, expires_us))
                .await
                .unwrap();
        }
        store
            .end_tasks(
                &ids(&["revoked", "expired", "expires-now"]),
                TaskState::Revoked,
                "r",
                5,
            )
            .await
            .unwrap();
        store
            .end_tasks(&ids(&["completed"]), TaskState::Completed, "c", 5)
            .await
            .unwrap();
        assert_eq!(
            store.ended_tasks_unexpired(now).await.unwrap(),
            ids(&["completed", "revoked"])
        );
        assert_eq!(
            store.ended_tasks_unexpired(now - 1).await.unwrap(),
            ids(&["completed", "expires-now", "revoked"])
        );
        assert_eq!(
            store.ended_tasks_unexpired(now + 10).await.unwrap(),
            Vec::<String>::new()
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn tasks_of_an_agent_are_listed_all_or_active_only() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        let mut late = task("t-late", "spiffe://a", None, 50_000);
        late.issued_us = 30_000;
        let mut early = task("t-early", "spiffe://a", None, 50_000);
        early.issued_us = 5_000;
        let done = task("t-done", "spiffe://a", None, 50_000);
        let theirs = task("t-other", "spiffe://b", None, 50_000);
        for record in [&late, &early, &done, &theirs] {
            store.insert_task(record).await.unwrap();
        }
        store
            .end_tasks(&ids(&["t-done"]), TaskState::Completed, "finished", 20_000)
            .await
            .unwrap();
        let done = store.task("t-done").await.unwrap().unwrap();

        assert_eq!(
            store.tasks_of_agent("spiffe://a", false).await.unwrap(),
            vec![early.clone(), done, late.clone()]
        );
        assert_eq!(
            store.tasks_of_agent("spiffe://a", true).await.unwrap(),
            vec![early, late]
        );
        assert_eq!(
            store.tasks_of_agent("spiffe://b", true).await.unwrap(),
            vec![theirs]
        );
        assert_eq!(
            store.tasks_of_agent("spiffe://c", false).await.unwrap(),
            vec![]
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_tampered_row_is_an_error_naming_it() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        store.create_agent(&agent("billing")).await.unwrap();
        // Only SQLite lets a column hold a value of another type.
        if db.backend == Backend::Sqlite {
            db.exec("UPDATE agents SET created_us = 'yesterday' WHERE name = 'billing'")
                .await;
            let err = store.agent("billing").await.unwrap_err();
            assert!(
                matches!(
                    &err,
                    StoreError::CorruptEntry { table: "agents", key, column: "created_us", .. }
                        if key == "billing"
                ),
                "{err:?}"
            );
            assert_eq!(
                err.to_string(),
                r#"agents row "billing" is corrupt: created_us has the wrong type"#
            );
            assert!(store.agents().await.is_err());
        }
        store.close().await;
    })
    .await;
}

/// Migrations 0001 and 0002 exactly as shipped before 0003 existed.
fn audit_only_migrator(backend: Backend) -> Migrator {
    let steps: [(i64, &str, &'static str); 2] = match backend {
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
async fn the_identity_migration_applies_to_an_existing_audit_database() {
    on_each_backend(|db: TestDb| async move {
        let records = chain("n1", 3);
        let migrator = audit_only_migrator(db.backend);
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
        for record in &records {
            db.exec(&common::insert_sql(record)).await;
        }

        let store = db.store().await;
        assert_eq!(store.audit_page("n1", 0, 10).await.unwrap(), records);
        store.create_agent(&agent("billing")).await.unwrap();
        store
            .insert_task(&task("t1", "spiffe://a", None, 1))
            .await
            .unwrap();
        store.close().await;

        // And a second start finds nothing left to do.
        let again = db.store().await;
        assert_eq!(again.agents().await.unwrap(), vec![agent("billing")]);
        again.close().await;
    })
    .await;
}
