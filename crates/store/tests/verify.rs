//! `verify_audit` on both backends: a clean log passes, and each way of
//! tampering with the tables behind Mandate's back is named.

mod common;

use mandate_core::{AuditRecord, ChainBreak};
use mandate_store::{VerifiedChain, VerifyError, VerifyReport, verify_audit};

use common::{TestDb, chain, event, insert_sql, on_each_backend};

/// Stores five records of `n1` and two of `n2`, runs `tamper`, and returns
/// what `verify_audit` says.
async fn verify_after(db: &TestDb, tamper: &str) -> Result<VerifyReport, VerifyError> {
    let store = db.store().await;
    store.append_audit(&chain("n1", 5)).await.unwrap();
    store.append_audit(&chain("n2", 2)).await.unwrap();
    if !tamper.is_empty() {
        db.exec(tamper).await;
    }
    let report = verify_audit(&*store).await;
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
        let report = verify_audit(&*store).await.unwrap();
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
        store.append_audit(&chain("n1", 2500)).await.unwrap();
        assert_eq!(verify_audit(&*store).await.unwrap().total, 2500);
        db.exec("UPDATE audit_records SET outcome = 'deny' WHERE seq = 2001")
            .await;
        assert_eq!(broken(verify_audit(&*store).await).seq(), 2001);
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
