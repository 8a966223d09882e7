//! Held calls on both backends: stored and listed, decided once by
//! compare-and-set (two racing approvers, or an approver and the timeout,
//! never both win), spent once, swept when their time is up; and the names
//! migration 0005 gives administrators' credentials.

mod common;

use std::str::FromStr;
use std::sync::Arc;

use mandate_store::{
    AdminCredential, ApprovalDecision, ApprovalRecord, ApprovalState, Store, StoreError,
};
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

use common::{Backend, TestDb, on_each_backend};

fn pending(id: &str, created_us: i64, expires_us: i64) -> ApprovalRecord {
    ApprovalRecord {
        id: id.to_owned(),
        task_id: "task-child".to_owned(),
        root_task_id: "task-root".to_owned(),
        task_chain: vec!["task-root".to_owned(), "task-mid".to_owned()],
        agent: "spiffe://mandate.local/agent/writer".to_owned(),
        agent_name: "writer".to_owned(),
        endpoint: "mcp".to_owned(),
        upstream: "files".to_owned(),
        action: "Action::\"call\"".to_owned(),
        resource: "Tool::\"files.write_file\"".to_owned(),
        argument_digest: "ab".repeat(32),
        purpose: "write the Q3 summary".to_owned(),
        reasons: vec!["writes need a person".to_owned(), "égal".to_owned()],
        policies: vec!["policy3".to_owned()],
        state: ApprovalState::Pending,
        created_us,
        expires_us,
        decided_us: None,
        decided_by: None,
        note: None,
        closed_us: None,
    }
}

fn decision(state: ApprovalState, at_us: i64, by: &str) -> ApprovalDecision {
    ApprovalDecision {
        state,
        at_us,
        by: by.to_owned(),
        note: Some(format!("{state} by {by}")),
        before_expiry: true,
    }
}

#[tokio::test]
async fn holds_are_stored_read_back_and_listed_by_state() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        store
            .insert_approval(&pending("apr_b", 20, 1_000))
            .await
            .unwrap();
        store
            .insert_approval(&pending("apr_a", 10, 1_000))
            .await
            .unwrap();
        store
            .insert_approval(&pending("apr_c", 30, 1_000))
            .await
            .unwrap();
        assert_eq!(
            store.approval("apr_b").await.unwrap(),
            Some(pending("apr_b", 20, 1_000))
        );
        assert_eq!(store.approval("apr_ghost").await.unwrap(), None);

        let err = store
            .insert_approval(&pending("apr_b", 99, 1_000))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), r#"approval "apr_b" already exists"#);

        store
            .decide_approval(
                "apr_a",
                &decision(ApprovalState::Denied, 50, "Admin::\"alice\""),
            )
            .await
            .unwrap()
            .unwrap();
        let ids = |list: Vec<ApprovalRecord>| list.into_iter().map(|a| a.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store
                .approvals(Some(ApprovalState::Pending), 100)
                .await
                .unwrap()),
            ["apr_b", "apr_c"]
        );
        assert_eq!(
            ids(store
                .approvals(Some(ApprovalState::Denied), 100)
                .await
                .unwrap()),
            ["apr_a"]
        );
        assert_eq!(
            ids(store.approvals(None, 100).await.unwrap()),
            ["apr_a", "apr_b", "apr_c"]
        );
        // The newest two, oldest first.
        assert_eq!(
            ids(store.approvals(None, 2).await.unwrap()),
            ["apr_b", "apr_c"]
        );
        assert!(
            store
                .approvals(Some(ApprovalState::Used), 100)
                .await
                .unwrap()
                .is_empty()
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_decision_is_recorded_once_and_a_second_one_changes_nothing() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        store
            .insert_approval(&pending("apr_1", 10, 1_000))
            .await
            .unwrap();
        let approved = store
            .decide_approval(
                "apr_1",
                &decision(ApprovalState::Approved, 100, "Admin::\"alice\""),
            )
            .await
            .unwrap()
            .expect("the first decision wins");
        assert_eq!(approved.state, ApprovalState::Approved);
        assert_eq!(approved.decided_us, Some(100));
        assert_eq!(approved.decided_by.as_deref(), Some("Admin::\"alice\""));
        assert_eq!(
            approved.note.as_deref(),
            Some("approved by Admin::\"alice\"")
        );

        // Bob's denial, and the timeout, come too late.
        for (state, by) in [
            (ApprovalState::Denied, "Admin::\"bob\""),
            (ApprovalState::Expired, "Mandate::\"timeout\""),
            (ApprovalState::Cancelled, "Mandate::\"agent_kill\""),
        ] {
            let late = ApprovalDecision {
                before_expiry: false,
                ..decision(state, 200, by)
            };
            assert_eq!(store.decide_approval("apr_1", &late).await.unwrap(), None);
        }
        assert_eq!(store.approval("apr_1").await.unwrap(), Some(approved));
        assert_eq!(
            store
                .decide_approval("apr_ghost", &decision(ApprovalState::Approved, 1, "x"))
                .await
                .unwrap(),
            None
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn of_many_racing_approvers_exactly_one_wins() {
    on_each_backend(|db: TestDb| async move {
        let store: Arc<dyn Store> = db.store().await;
        for round in 0..5 {
            let id = format!("apr_race{round}");
            store
                .insert_approval(&pending(&id, 10, 10_000))
                .await
                .unwrap();
            let racers = (0..8).map(|n| {
                let store = Arc::clone(&store);
                let id = id.clone();
                tokio::spawn(async move {
                    let (state, by) = if n % 2 == 0 {
                        (ApprovalState::Approved, format!("Admin::\"a{n}\""))
                    } else {
                        (ApprovalState::Denied, format!("Admin::\"d{n}\""))
                    };
                    store
                        .decide_approval(&id, &decision(state, 100 + n, &by))
                        .await
                        .unwrap()
                })
            });
            let mut winners = Vec::new();
            for racer in racers.collect::<Vec<_>>() {
                if let Some(won) = racer.await.unwrap() {
                    winners.push(won);
                }
            }
            assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
            assert_eq!(store.approval(&id).await.unwrap().as_ref(), winners.first());
        }
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn an_approval_is_spent_once_and_only_when_approved() {
    on_each_backend(|db: TestDb| async move {
        let store: Arc<dyn Store> = db.store().await;
        store
            .insert_approval(&pending("apr_1", 10, 1_000))
            .await
            .unwrap();
        // Not approved yet: nothing to spend.
        assert_eq!(
            store
                .close_approval("apr_1", ApprovalState::Used, 50)
                .await
                .unwrap(),
            None
        );
        store
            .decide_approval(
                "apr_1",
                &decision(ApprovalState::Approved, 100, "Admin::\"alice\""),
            )
            .await
            .unwrap()
            .unwrap();
        let spenders = (0..6).map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .close_approval("apr_1", ApprovalState::Used, 150)
                    .await
                    .unwrap()
            })
        });
        let mut spent = Vec::new();
        for spender in spenders.collect::<Vec<_>>() {
            spent.extend(spender.await.unwrap());
        }
        assert_eq!(spent.len(), 1, "{spent:?}");
        let used = &spent[0];
        assert_eq!(used.state, ApprovalState::Used);
        assert_eq!(used.closed_us, Some(150));
        // Who approved it is kept.
        assert_eq!(used.decided_by.as_deref(), Some("Admin::\"alice\""));
        assert_eq!(used.decided_us, Some(100));
        assert_eq!(
            store
                .close_approval("apr_1", ApprovalState::Cancelled, 200)
                .await
                .unwrap(),
            None
        );

        // An approval whose call went away is withdrawn, and then unusable.
        store
            .insert_approval(&pending("apr_2", 10, 1_000))
            .await
            .unwrap();
        store
            .decide_approval(
                "apr_2",
                &decision(ApprovalState::Approved, 100, "Admin::\"alice\""),
            )
            .await
            .unwrap()
            .unwrap();
        let withdrawn = store
            .close_approval("apr_2", ApprovalState::Cancelled, 120)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(withdrawn.state, ApprovalState::Cancelled);
        assert_eq!(
            store
                .close_approval("apr_2", ApprovalState::Used, 130)
                .await
                .unwrap(),
            None
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn moves_between_states_that_never_follow_each_other_are_refused() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        store
            .insert_approval(&pending("apr_1", 10, 1_000))
            .await
            .unwrap();
        for state in [ApprovalState::Pending, ApprovalState::Used] {
            let err = store
                .decide_approval("apr_1", &decision(state, 100, "Admin::\"alice\""))
                .await
                .unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidApprovalTransition { to, .. } if to == state),
                "{err:?}"
            );
        }
        for state in [
            ApprovalState::Pending,
            ApprovalState::Approved,
            ApprovalState::Denied,
            ApprovalState::Expired,
        ] {
            let err = store.close_approval("apr_1", state, 100).await.unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("an approval cannot go from approved to {state}")
            );
        }
        assert_eq!(
            store.approval("apr_1").await.unwrap(),
            Some(pending("apr_1", 10, 1_000))
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_person_cannot_decide_a_hold_whose_time_is_up() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        store
            .insert_approval(&pending("apr_1", 10, 1_000))
            .await
            .unwrap();
        // At the expiry instant and after it, nobody has swept it yet, but a
        // person's decision is refused.
        for at in [1_000, 5_000] {
            assert_eq!(
                store
                    .decide_approval(
                        "apr_1",
                        &decision(ApprovalState::Approved, at, "Admin::\"alice\"")
                    )
                    .await
                    .unwrap(),
                None
            );
        }
        assert_eq!(
            store.approval("apr_1").await.unwrap().unwrap().state,
            ApprovalState::Pending
        );
        // A cancellation is not bound by the expiry.
        let cancel = ApprovalDecision {
            before_expiry: false,
            ..decision(ApprovalState::Cancelled, 6_000, "Mandate::\"agent_kill\"")
        };
        let cancelled = store
            .decide_approval("apr_1", &cancel)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cancelled.state, ApprovalState::Cancelled);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn the_sweep_expires_only_pending_holds_whose_time_is_up_and_each_once() {
    on_each_backend(|db: TestDb| async move {
        let store: Arc<dyn Store> = db.store().await;
        store
            .insert_approval(&pending("apr_due", 10, 500))
            .await
            .unwrap();
        store
            .insert_approval(&pending("apr_edge", 11, 1_000))
            .await
            .unwrap();
        store
            .insert_approval(&pending("apr_later", 12, 1_001))
            .await
            .unwrap();
        store
            .insert_approval(&pending("apr_done", 13, 500))
            .await
            .unwrap();
        store
            .decide_approval(
                "apr_done",
                &ApprovalDecision {
                    before_expiry: false,
                    ..decision(ApprovalState::Denied, 400, "Admin::\"alice\"")
                },
            )
            .await
            .unwrap()
            .unwrap();

        let sweepers = (0..4).map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .expire_approvals(1_000, "Mandate::\"timeout\"")
                    .await
                    .unwrap()
            })
        });
        let mut expired = Vec::new();
        for sweeper in sweepers.collect::<Vec<_>>() {
            expired.extend(sweeper.await.unwrap());
        }
        expired.sort_by(|a, b| a.id.cmp(&b.id));
        let ids: Vec<&str> = expired.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["apr_due", "apr_edge"]);
        for approval in &expired {
            assert_eq!(approval.state, ApprovalState::Expired);
            assert_eq!(approval.decided_us, Some(1_000));
            assert_eq!(approval.decided_by.as_deref(), Some("Mandate::\"timeout\""));
        }
        assert_eq!(
            store.approval("apr_later").await.unwrap().unwrap().state,
            ApprovalState::Pending
        );
        assert_eq!(
            store.approval("apr_done").await.unwrap().unwrap().state,
            ApprovalState::Denied
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn the_holds_of_one_call_are_found_by_task_action_resource_and_digest() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        store
            .insert_approval(&pending("apr_2", 20, 1_000))
            .await
            .unwrap();
        store
            .insert_approval(&pending("apr_1", 10, 1_000))
            .await
            .unwrap();
        let other_args = ApprovalRecord {
            argument_digest: "cd".repeat(32),
            ..pending("apr_args", 10, 1_000)
        };
        let other_task = ApprovalRecord {
            task_id: "task-other".to_owned(),
            ..pending("apr_task", 10, 1_000)
        };
        let other_tool = ApprovalRecord {
            resource: "Tool::\"files.delete\"".to_owned(),
            ..pending("apr_tool", 10, 1_000)
        };
        for approval in [&other_args, &other_task, &other_tool] {
            store.insert_approval(approval).await.unwrap();
        }
        let found = store
            .approvals_for_call(
                "task-child",
                "Action::\"call\"",
                "Tool::\"files.write_file\"",
                &"ab".repeat(32),
            )
            .await
            .unwrap();
        let ids: Vec<&str> = found.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["apr_1", "apr_2"]);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_tampered_hold_row_is_an_error_naming_it() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        store
            .insert_approval(&pending("apr_1", 10, 1_000))
            .await
            .unwrap();
        db.exec("UPDATE approvals SET reasons = 'not json' WHERE id = 'apr_1'")
            .await;
        let err = store.approval("apr_1").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"approvals row "apr_1" is corrupt: reasons is not a JSON array of strings"#
        );
        db.exec("UPDATE approvals SET reasons = '[]' WHERE id = 'apr_1'")
            .await;
        // The state column's CHECK keeps unknown states out on both backends.
        let sql = "UPDATE approvals SET state = 'approvedish' WHERE id = 'apr_1'";
        let refused = match db.raw().await {
            common::RawConn::Sqlite(mut conn) => {
                sqlx::raw_sql(sql).execute(&mut conn).await.is_err()
            }
            common::RawConn::Postgres(mut conn) => {
                sqlx::raw_sql(sql).execute(&mut conn).await.is_err()
            }
        };
        assert!(refused);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn admin_credential_names_are_unique_and_credentials_can_be_deleted() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        let alice = AdminCredential {
            id: "adm-1".to_owned(),
            name: "alice".to_owned(),
            secret_hash: "h1".to_owned(),
            created_us: 10,
        };
        store.insert_admin_credential(&alice).await.unwrap();
        let twin = AdminCredential {
            id: "adm-2".to_owned(),
            secret_hash: "h2".to_owned(),
            ..alice.clone()
        };
        let err = store.insert_admin_credential(&twin).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"admin credential named "alice" already exists"#
        );
        assert_eq!(store.admin_credentials().await.unwrap(), vec![alice]);
        assert!(store.delete_admin_credential("adm-1").await.unwrap());
        assert!(!store.delete_admin_credential("adm-1").await.unwrap());
        // The name is free again.
        store.insert_admin_credential(&twin).await.unwrap();
        assert_eq!(store.admin_credentials().await.unwrap(), vec![twin]);
        store.close().await;
    })
    .await;
}

/// Migrations 0001 to 0004 exactly as shipped before 0005 existed.
fn secrets_era_migrator(backend: Backend) -> Migrator {
    let steps: [(i64, &str, &'static str); 4] = match backend {
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
            (
                4,
                "secrets",
                include_str!("../src/migrations/sqlite/0004_secrets.sql"),
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
            (
                4,
                "secrets",
                include_str!("../src/migrations/postgres/0004_secrets.sql"),
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
async fn existing_admin_credentials_are_named_by_the_migration() {
    on_each_backend(|db: TestDb| async move {
        let migrator = secrets_era_migrator(db.backend);
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
        // Two first starts racing on one store left two credentials.
        db.exec(
            "INSERT INTO admin_credentials (id, secret_hash, created_us) VALUES \
             ('admin-b', 'hb', 20), ('admin-a', 'ha', 10)",
        )
        .await;

        let store = db.store().await;
        let names: Vec<(String, String)> = store
            .admin_credentials()
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.id, c.name))
            .collect();
        assert_eq!(
            names,
            [
                ("admin-a".to_owned(), "admin".to_owned()),
                ("admin-b".to_owned(), "admin-admin-b".to_owned()),
            ]
        );
        store.close().await;
    })
    .await;
}
