//! `verify_audit` on both backends: a clean log passes, and each way of
//! tampering with the tables behind Mandate's back is named.

mod common;

use mandate_core::{AuditRecord, ChainBreak, HeadSealer};
use mandate_store::{VerifiedChain, VerifyError, VerifyReport, verify_audit};

use common::{TestDb, chain, event, insert_sql, on_each_backend};

/// Stores five records of `n1` and two of `n2`, runs `tamper`, and returns
/// what `verify_audit` says.
async fn verify_after(db: &TestDb, tamper: &str) -> Result<VerifyReport, VerifyError> {
    let store = db.store().await;
    store.append_audit(&chain("n1", 5), "").await.unwrap();
    store.append_audit(&chain("n2", 2), "").await.unwrap();
    if !tamper.is_empty() {
        db.exec(tamper).await;
    }
    let report = verify_audit(&*store, &[]).await;
    store.close().await;
    report
}

fn broken(result: Result<VerifyReport, VerifyError>) -> ChainBreak {
    match result {
        Err(VerifyError::Broken(broken)) => broken,
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

#[tokio::test]
async fn an_empty_log_verifies_with_nothing_in_it() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        let report = verify_audit(&*store, &[]).await.unwrap();
        assert_eq!(
            report,
            VerifyReport {
                chains: vec![],
                total: 0
            }
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn an_untouched_log_verifies_per_node() {
    on_each_backend(|db: TestDb| async move {
        let report = verify_after(&db, "").await.unwrap();
        let chain = |node: &str, records| VerifiedChain {
            node_id: node.into(),
            records,
            sealed: false,
        };
        assert_eq!(
            report,
            VerifyReport {
                chains: vec![chain("n1", 5), chain("n2", 2)],
                total: 7
            }
        );
    })
    .await;
}

#[tokio::test]
async fn a_long_log_verifies_across_pages() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        store.append_audit(&chain("n1", 2500), "").await.unwrap();
        assert_eq!(verify_audit(&*store, &[]).await.unwrap().total, 2500);
        db.exec("UPDATE audit_records SET outcome = 'deny' WHERE seq = 2001")
            .await;
        assert_eq!(broken(verify_audit(&*store, &[]).await).seq(), 2001);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn an_updated_outcome_is_named() {
    on_each_backend(|db: TestDb| async move {
        let tamper = "UPDATE audit_records SET outcome = 'deny' WHERE node_id = 'n1' AND seq = 3";
        let err = broken(verify_after(&db, tamper).await);
        assert_eq!(
            err,
            ChainBreak::Modified {
                node: "n1".into(),
                seq: 3
            }
        );
    })
    .await;
}

#[tokio::test]
async fn a_deleted_middle_row_is_named() {
    on_each_backend(|db: TestDb| async move {
        let tamper = "DELETE FROM audit_records WHERE node_id = 'n1' AND seq = 3";
        let err = broken(verify_after(&db, tamper).await);
        assert_eq!(
            err,
            ChainBreak::Sequence {
                node: "n1".into(),
                expected: 3,
                found: 4
            }
        );
    })
    .await;
}

#[tokio::test]
async fn a_forged_row_in_the_middle_is_named() {
    on_each_backend(|db: TestDb| async move {
        // Replace record 3 with a forgery sealed properly onto record 2.
        let real = chain("n1", 5);
        let mut forged_event = event(3);
        forged_event.outcome = "allow-everything".into();
        let forged = AuditRecord::seal("n1", real[1].head(), forged_event);
        let tamper = format!(
            "DELETE FROM audit_records WHERE node_id = 'n1' AND seq = 3; {}",
            insert_sql(&forged)
        );
        let err = broken(verify_after(&db, &tamper).await);
        assert_eq!(
            err,
            ChainBreak::BrokenLink {
                node: "n1".into(),
                seq: 4,
                prev_seq: 3
            }
        );
    })
    .await;
}

#[tokio::test]
async fn a_forged_row_appended_without_the_head_is_named() {
    on_each_backend(|db: TestDb| async move {
        let real = chain("n1", 5);
        let forged = AuditRecord::seal("n1", real[4].head(), event(6));
        let err = broken(verify_after(&db, &insert_sql(&forged)).await);
        assert_eq!(
            err,
            ChainBreak::Truncated {
                node: "n1".into(),
                last: 6,
                head: 5
            }
        );
    })
    .await;
}

#[tokio::test]
async fn swapped_rows_are_named() {
    on_each_backend(|db: TestDb| async move {
        let tamper = "UPDATE audit_records SET seq = 1000 WHERE node_id = 'n1' AND seq = 2;
                      UPDATE audit_records SET seq = 2 WHERE node_id = 'n1' AND seq = 3;
                      UPDATE audit_records SET seq = 3 WHERE node_id = 'n1' AND seq = 1000;";
        let err = broken(verify_after(&db, tamper).await);
        assert_eq!(
            err,
            ChainBreak::Modified {
                node: "n1".into(),
                seq: 2
            }
        );
    })
    .await;
}

#[tokio::test]
async fn a_deleted_last_row_is_caught_by_the_head() {
    on_each_backend(|db: TestDb| async move {
        let tamper = "DELETE FROM audit_records WHERE node_id = 'n1' AND seq = 5";
        let err = broken(verify_after(&db, tamper).await);
        assert_eq!(
            err,
            ChainBreak::Truncated {
                node: "n1".into(),
                last: 4,
                head: 5
            }
        );
    })
    .await;
}

#[tokio::test]
async fn a_corrupt_row_is_reported_as_a_break_not_skipped() {
    on_each_backend(|db: TestDb| async move {
        let tamper = "UPDATE audit_records SET prev_hash = 'zz' WHERE node_id = 'n1' AND seq = 4";
        let err = broken(verify_after(&db, tamper).await);
        assert_eq!(
            err,
            ChainBreak::Modified {
                node: "n1".into(),
                seq: 4
            }
        );
    })
    .await;
}

#[tokio::test]
async fn a_break_before_a_corrupt_row_is_named_first() {
    on_each_backend(|db: TestDb| async move {
        let tamper = "UPDATE audit_records SET outcome = 'deny' WHERE node_id = 'n1' AND seq = 2;
                      UPDATE audit_records SET detail = '{oops' WHERE node_id = 'n1' AND seq = 4;";
        let err = broken(verify_after(&db, tamper).await);
        assert_eq!(
            err,
            ChainBreak::Modified {
                node: "n1".into(),
                seq: 2
            }
        );
    })
    .await;
}

#[tokio::test]
async fn a_corrupt_head_is_reported_as_a_break() {
    on_each_backend(|db: TestDb| async move {
        let tamper = "UPDATE audit_heads SET hash = 'nope' WHERE node_id = 'n2'";
        let err = broken(verify_after(&db, tamper).await);
        assert_eq!(
            err,
            ChainBreak::HeadMismatch {
                node: "n2".into(),
                seq: 2
            }
        );
    })
    .await;
}

/// A node's sealed chain of five records, written through the audit log.
async fn sealed_chain(db: &TestDb) -> (std::sync::Arc<dyn mandate_store::Store>, HeadSealer) {
    let store = db.store().await;
    let sealer = HeadSealer::new(b"the node key, never in the database");
    let log = mandate_store::AuditLog::start(
        store.clone(),
        "n1".into(),
        sealer.clone(),
        mandate_store::AuditLogConfig::default(),
    )
    .await
    .unwrap();
    for n in 1..=5 {
        log.append(vec![event(n)]).await.unwrap();
    }
    log.shutdown().await;
    (store, sealer)
}

#[tokio::test]
async fn a_sealed_chain_verifies_with_its_key() {
    on_each_backend(|db: TestDb| async move {
        let (store, sealer) = sealed_chain(&db).await;
        let report = verify_audit(&*store, &[("n1".into(), sealer)])
            .await
            .unwrap();
        assert_eq!(report.total, 5);
        assert!(report.chains[0].sealed);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_chain_rewritten_with_recomputed_hashes_is_caught_by_the_seal() {
    on_each_backend(|db: TestDb| async move {
        let (store, sealer) = sealed_chain(&db).await;
        // The attacker rewrites the whole chain consistently (record 3 now says
        // "deny") and moves the head, but cannot seal it.
        let mut forged = chain("n1", 5);
        forged[2].event.outcome = "deny".into();
        let mut head = mandate_core::ChainHead::GENESIS;
        for record in &mut forged {
            *record = AuditRecord::seal("n1", head, record.event.clone());
            head = record.head();
        }
        let mut sql = String::from("DELETE FROM audit_records;");
        for record in &forged {
            sql.push_str(&insert_sql(record));
            sql.push(';');
        }
        sql.push_str(&format!(
            "UPDATE audit_heads SET seq = 5, hash = '{}' WHERE node_id = 'n1';",
            hex::encode(head.hash)
        ));
        db.exec(&sql).await;
        // Without the key the forgery passes; with it, it does not.
        assert_eq!(verify_audit(&*store, &[]).await.unwrap().total, 5);
        let err = broken(verify_audit(&*store, &[("n1".into(), sealer)]).await);
        assert!(
            matches!(err, ChainBreak::Unsealed { seq: 5, .. }),
            "{err:?}"
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_chain_deleted_whole_is_caught_by_its_key() {
    on_each_backend(|db: TestDb| async move {
        let (store, sealer) = sealed_chain(&db).await;
        db.exec("DELETE FROM audit_records; DELETE FROM audit_heads;")
            .await;
        assert_eq!(verify_audit(&*store, &[]).await.unwrap().total, 0);
        let err = broken(verify_audit(&*store, &[("n1".into(), sealer)]).await);
        assert!(matches!(err, ChainBreak::Missing { .. }), "{err:?}");
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_chain_rolled_back_to_an_earlier_record_is_caught_by_the_seal() {
    on_each_backend(|db: TestDb| async move {
        let (store, sealer) = sealed_chain(&db).await;
        let third = store.audit_page("n1", 2, 1).await.unwrap().remove(0);
        db.exec(&format!(
            "DELETE FROM audit_records WHERE seq > 3; UPDATE audit_heads SET seq = 3, hash = '{}' WHERE node_id = 'n1';",
            hex::encode(third.hash)
        ))
        .await;
        let err = broken(verify_audit(&*store, &[("n1".into(), sealer)]).await);
        assert!(matches!(err, ChainBreak::Unsealed { seq: 3, .. }), "{err:?}");
        store.close().await;
    })
    .await;
}
