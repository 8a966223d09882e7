//! The `Store` trait on both backends: schema, round trips, heads, listing.

mod common;

use mandate_core::{AuditKind, AuditRecord, ChainHead};
use mandate_store::{StoreError, connect};

use common::{TestDb, chain, event, on_each_backend};

#[tokio::test]
async fn migrations_run_twice_without_error() {
    on_each_backend(|db: TestDb| async move {
        let first = db.store().await;
        first.append_audit(&chain("n1", 2), "").await.unwrap();
        first.close().await;
        let second = db.store().await;
        second.ping().await.unwrap();
        assert_eq!(second.audit_head("n1").await.unwrap().unwrap().seq, 2);
        second.close().await;
    })
    .await;
}

#[tokio::test]
async fn the_backend_names_itself() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        let expected = match db.backend {
            common::Backend::Sqlite => "sqlite",
            common::Backend::Postgres => "postgres",
        };
        assert_eq!(store.backend(), expected);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn appended_records_read_back_with_every_field_exact() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        let mut unusual = event(2);
        unusual.time_us = -17;
        unusual.subject = "user::\"o'brien\" ünïcode \\ \u{1F600}".into();
        unusual.policies = vec![];
        unusual.request_digest = String::new();
        unusual.detail = serde_json::json!({
            "z": [1, -2, 3.5, null, true],
            "a": {"nested": "it's \"quoted\""},
            "big": u64::MAX,
        });
        let first = AuditRecord::seal("n1", ChainHead::GENESIS, event(1));
        let second = AuditRecord::seal("n1", first.head(), unusual);
        let third = AuditRecord::seal("n1", second.head(), event(3));
        let records = vec![first, second, third];
        store.append_audit(&records, "").await.unwrap();

        assert_eq!(store.audit_page("n1", 0, 100).await.unwrap(), records);
        assert_eq!(store.audit_page("n1", 1, 1).await.unwrap(), records[1..2]);
        assert_eq!(store.audit_page("n1", 3, 100).await.unwrap(), vec![]);
        let back = store.audit_page("n1", 0, 100).await.unwrap();
        assert!(back.iter().all(|r| r.expected_hash() == r.hash));
        assert_eq!(back[0].event.kind, AuditKind::Decision);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn the_head_moves_with_the_records_in_one_transaction() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        assert_eq!(store.audit_head("n1").await.unwrap(), None);
        let records = chain("n1", 4);
        store.append_audit(&records[..2], "").await.unwrap();
        assert_eq!(
            store.audit_head("n1").await.unwrap(),
            Some(records[1].head())
        );

        // The head cannot move: the records must not land either.
        db.break_writes_to("audit_heads").await;
        let err = store.append_audit(&records[2..], "").await.unwrap_err();
        assert!(matches!(err, StoreError::Query { .. }), "{err:?}");
        assert_eq!(store.audit_page("n1", 0, 100).await.unwrap(), records[..2]);
        db.mend_writes_to("audit_heads").await;

        // A batch that clashes with a stored record leaves nothing behind.
        assert!(store.append_audit(&records[1..], "").await.is_err());
        assert_eq!(
            store.audit_head("n1").await.unwrap(),
            Some(records[1].head())
        );
        assert_eq!(store.audit_page("n1", 0, 100).await.unwrap(), records[..2]);

        store.append_audit(&records[2..], "").await.unwrap();
        assert_eq!(
            store.audit_head("n1").await.unwrap(),
            Some(records[3].head())
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn batches_of_every_size_land_whole_and_a_clashing_one_leaves_nothing() {
    // SQLite writes a batch of up to 64 records in one round trip and larger
    // ones statement by statement: both sides of that line, each after a
    // refused batch of the same size.
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        let sizes = [1_usize, 63, 64, 65, 200];
        let records = chain("n1", sizes.iter().sum::<usize>() as u32);
        let mut stored = 0;
        for size in sizes {
            if stored > 0 {
                let clashing = &records[stored - 1..stored - 1 + size];
                assert!(store.append_audit(clashing, "clash").await.is_err());
                assert_eq!(
                    store.audit_head("n1").await.unwrap(),
                    Some(records[stored - 1].head())
                );
            }
            let seal = format!("seal after {size}");
            store
                .append_audit(&records[stored..stored + size], &seal)
                .await
                .unwrap();
            stored += size;
            assert_eq!(
                store.audit_head("n1").await.unwrap(),
                Some(records[stored - 1].head())
            );
            assert_eq!(store.audit_head_seal("n1").await.unwrap(), Some(seal));
        }
        assert_eq!(store.audit_page("n1", 0, 1000).await.unwrap(), records);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_batch_that_is_not_one_contiguous_chain_is_refused() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        let records = chain("n1", 3);
        let gap = vec![records[0].clone(), records[2].clone()];
        let err = store.append_audit(&gap, "").await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::InvalidBatch {
                    after: 1,
                    found: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        let mixed = vec![records[0].clone(), chain("n2", 2)[1].clone()];
        assert!(store.append_audit(&mixed, "").await.is_err());
        store.append_audit(&[], "").await.unwrap();
        assert_eq!(store.audit_nodes().await.unwrap(), Vec::<String>::new());
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn nodes_are_listed_from_heads_and_records_sorted() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        store.append_audit(&chain("node-b", 2), "").await.unwrap();
        store.append_audit(&chain("node-a", 1), "").await.unwrap();
        // One node with only a head, one with only records.
        db.exec(&format!(
            "INSERT INTO audit_heads (node_id, seq, hash) VALUES ('node-c', 1, '{}')",
            "00".repeat(32)
        ))
        .await;
        db.exec(&common::insert_sql(&chain("node-0", 1)[0])).await;
        assert_eq!(
            store.audit_nodes().await.unwrap(),
            ["node-0", "node-a", "node-b", "node-c"]
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn latest_and_after_follow_insertion_order_across_nodes() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        let a = chain("a", 3);
        let b = chain("b", 2);
        store.append_audit(&a[..2], "").await.unwrap();
        store.append_audit(&b, "").await.unwrap();
        store.append_audit(&a[2..], "").await.unwrap();
        let inserted = [&a[0], &a[1], &b[0], &b[1], &a[2]];

        let latest = store.audit_latest(3).await.unwrap();
        let records: Vec<&AuditRecord> = latest.iter().map(|(_, r)| r).collect();
        assert_eq!(records, inserted[2..]);
        assert!(latest.windows(2).all(|w| w[0].0 < w[1].0));

        let all = store.audit_latest(100).await.unwrap();
        assert_eq!(all.len(), 5);
        let after = store.audit_after(all[1].0, 2).await.unwrap();
        assert_eq!(after, all[2..4]);
        assert_eq!(store.audit_after(all[4].0, 10).await.unwrap(), vec![]);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_corrupt_row_is_an_error_naming_it_not_a_gap() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        store.append_audit(&chain("n1", 4), "").await.unwrap();
        db.exec("UPDATE audit_records SET hash = 'not hex' WHERE node_id = 'n1' AND seq = 3")
            .await;
        let err = store.audit_page("n1", 0, 100).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::CorruptRow { node, seq: 3, column: "hash", .. } if node == "n1"),
            "{err:?}"
        );
        assert_eq!(store.audit_page("n1", 0, 2).await.unwrap().len(), 2);
        assert!(matches!(
            store.audit_latest(10).await,
            Err(StoreError::CorruptRow { seq: 3, .. })
        ));

        db.exec("UPDATE audit_records SET hash = policies, kind = 'teleport' WHERE seq = 3")
            .await;
        assert!(matches!(
            store.audit_page("n1", 0, 100).await,
            Err(StoreError::CorruptRow { seq: 3, column: "kind", .. })
        ));
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn an_unsupported_url_names_its_scheme() {
    let err = connect("mysql://root:hunter2@localhost/mandate")
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        r#"unsupported store URL scheme "mysql" (expected sqlite:// or postgres://)"#
    );
}

#[tokio::test]
async fn a_failed_connection_names_the_backend_and_hides_the_password() {
    let err = connect("postgres://mandate:hunter2@127.0.0.1:1/mandate")
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            StoreError::Connect {
                backend: "postgres",
                ..
            }
        ),
        "{err:?}"
    );
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(inner) = source {
        chain.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    assert!(
        chain.starts_with("cannot connect to the postgres store"),
        "{chain}"
    );
    assert!(!chain.contains("hunter2"), "{chain}");
}
