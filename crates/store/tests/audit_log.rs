//! Group commit on both backends: concurrency, failures, shutdown.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use mandate_core::ChainHead;
use mandate_store::{AuditError, AuditLog, AuditLogConfig, verify_audit};

use common::{TestDb, event, on_each_backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_all_land_contiguous_and_verify() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        let config = AuditLogConfig {
            max_batch: 64,
            ..AuditLogConfig::default()
        };
        let log = AuditLog::start(
            store.clone(),
            "n1".into(),
            mandate_core::HeadSealer::new(b"test key"),
            config,
        )
        .await
        .unwrap();
        let tasks: Vec<_> = (0..50u32)
            .map(|task| {
                let log = log.clone();
                tokio::spawn(async move {
                    for i in 0..20u32 {
                        log.append(vec![event(task * 1000 + i)]).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        log.shutdown().await;

        let records = store.audit_page("n1", 0, 5000).await.unwrap();
        assert_eq!(records.len(), 1000);
        assert!(records.iter().zip(1..).all(|(r, seq)| r.seq == seq));
        let ids: HashSet<&str> = records
            .iter()
            .map(|r| r.event.request_id.as_str())
            .collect();
        assert_eq!(ids.len(), 1000);
        // Each task's events keep their order.
        for task in 0..50u32 {
            let mine: Vec<u32> = records
                .iter()
                .filter_map(|r| r.event.request_id.strip_prefix("req-")?.parse().ok())
                .filter(|n| n / 1000 == task)
                .collect();
            assert_eq!(mine, (0..20).map(|i| task * 1000 + i).collect::<Vec<_>>());
        }
        let report = verify_audit(&*store, &[]).await.unwrap();
        assert_eq!(report.total, 1000);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_log_continues_the_chain_already_in_the_store() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        let first = AuditLog::start(
            store.clone(),
            "n1".into(),
            mandate_core::HeadSealer::new(b"test key"),
            AuditLogConfig::default(),
        )
        .await
        .unwrap();
        first.append(vec![event(1), event(2)]).await.unwrap();
        first.shutdown().await;
        let second = AuditLog::start(
            store.clone(),
            "n1".into(),
            mandate_core::HeadSealer::new(b"test key"),
            AuditLogConfig::default(),
        )
        .await
        .unwrap();
        second.append(vec![event(3)]).await.unwrap();
        second.append(vec![]).await.unwrap();
        second.shutdown().await;
        let records = store.audit_page("n1", 0, 10).await.unwrap();
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(records[2].prev_hash, records[1].hash);
        assert_eq!(verify_audit(&*store, &[]).await.unwrap().total, 3);
        store.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_fails_every_waiter_and_the_log_recovers() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        let log = AuditLog::start(
            store.clone(),
            "n1".into(),
            mandate_core::HeadSealer::new(b"test key"),
            AuditLogConfig::default(),
        )
        .await
        .unwrap();
        log.append(vec![event(1), event(2)]).await.unwrap();

        db.break_writes_to("audit_records").await;
        let failing: Vec<_> = (10..20)
            .map(|n| {
                let log = log.clone();
                tokio::spawn(async move { log.append(vec![event(n)]).await })
            })
            .collect();
        for task in failing {
            let err = task.await.unwrap().unwrap_err();
            assert!(matches!(err, AuditError::Write(_)), "{err:?}");
        }
        assert_eq!(store.audit_head("n1").await.unwrap().unwrap().seq, 2);

        db.mend_writes_to("audit_records").await;
        log.append(vec![event(3)]).await.unwrap();
        log.append(vec![event(4), event(5)]).await.unwrap();
        log.shutdown().await;
        let report = verify_audit(&*store, &[]).await.unwrap();
        assert_eq!(report.total, 5);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_failed_write_reloads_the_head_before_the_next_batch() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        let config = AuditLogConfig::default();
        let stale = AuditLog::start(
            store.clone(),
            "n1".into(),
            mandate_core::HeadSealer::new(b"test key"),
            config,
        )
        .await
        .unwrap();
        stale.append(vec![event(1)]).await.unwrap();
        // A second writer for the same node moves the head behind its back,
        // as a commit that landed but reported failure would.
        let other = AuditLog::start(
            store.clone(),
            "n1".into(),
            mandate_core::HeadSealer::new(b"test key"),
            config,
        )
        .await
        .unwrap();
        other.append(vec![event(2)]).await.unwrap();
        other.shutdown().await;

        assert!(matches!(
            stale.append(vec![event(3)]).await,
            Err(AuditError::Write(_))
        ));
        stale.append(vec![event(4)]).await.unwrap();
        stale.shutdown().await;
        let records = store.audit_page("n1", 0, 10).await.unwrap();
        let ids: Vec<&str> = records
            .iter()
            .map(|r| r.event.request_id.as_str())
            .collect();
        assert_eq!(ids, ["req-1", "req-2", "req-4"]);
        assert_eq!(verify_audit(&*store, &[]).await.unwrap().total, 3);
        store.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_queued_appends_and_later_appends_are_closed() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        let log = AuditLog::start(
            store.clone(),
            "n1".into(),
            mandate_core::HeadSealer::new(b"test key"),
            AuditLogConfig::default(),
        )
        .await
        .unwrap();
        // Hold the database so the queue fills behind a blocked write.
        let mut blocker = db.raw().await;
        blocker.exec(db.lock_audit_sql()).await;
        let appends: Vec<_> = (0..100)
            .map(|n| {
                let log = log.clone();
                tokio::spawn(async move { log.append(vec![event(n)]).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let shutdown = tokio::spawn({
            let log = log.clone();
            async move { log.shutdown().await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!shutdown.is_finished());
        assert!(matches!(
            log.append(vec![event(1000)]).await,
            Err(AuditError::Closed)
        ));

        blocker.exec("COMMIT").await;
        shutdown.await.unwrap();
        for append in appends {
            append.await.unwrap().unwrap();
        }
        assert!(matches!(
            log.append(vec![event(1001)]).await,
            Err(AuditError::Closed)
        ));
        log.shutdown().await;
        let head = store
            .audit_head("n1")
            .await
            .unwrap()
            .unwrap_or(ChainHead::GENESIS);
        assert_eq!(head.seq, 100);
        assert_eq!(verify_audit(&*store, &[]).await.unwrap().total, 100);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_full_queue_makes_appends_wait_not_fail() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        let config = AuditLogConfig {
            max_batch: 2,
            queue_capacity: 3,
        };
        let log = AuditLog::start(
            store.clone(),
            "n1".into(),
            mandate_core::HeadSealer::new(b"test key"),
            config,
        )
        .await
        .unwrap();
        let appends: Vec<_> = (0..20)
            .map(|n| {
                let log = log.clone();
                tokio::spawn(async move { log.append(vec![event(2 * n), event(2 * n + 1)]).await })
            })
            .collect();
        // An append larger than the whole queue still goes through.
        log.append((100..110).map(event).collect()).await.unwrap();
        for append in appends {
            append.await.unwrap().unwrap();
        }
        log.shutdown().await;
        assert_eq!(verify_audit(&*store, &[]).await.unwrap().total, 50);
        store.close().await;
    })
    .await;
}
