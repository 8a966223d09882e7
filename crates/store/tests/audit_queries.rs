//! The reads behind `audit trace` and the posture report, on both backends:
//! paging back through the log, finding records by what their detail
//! mentions, and the tasks issued since a time.

mod common;

use mandate_core::{AuditEvent, AuditRecord, ChainHead};
use mandate_store::{TaskRecord, TaskState};
use serde_json::json;

use common::{TestDb, event, on_each_backend};

/// Records of node `n1` with the given details, in order.
fn with_details(details: &[serde_json::Value]) -> Vec<AuditRecord> {
    let mut head = ChainHead::GENESIS;
    details
        .iter()
        .enumerate()
        .map(|(i, detail)| {
            let mut e: AuditEvent = event(u32::try_from(i).unwrap() + 1);
            e.detail = detail.clone();
            let record = AuditRecord::seal("n1", head, e);
            head = record.head();
            record
        })
        .collect()
}

fn seqs(rows: &[(i64, AuditRecord)]) -> Vec<u64> {
    rows.iter().map(|(_, r)| r.seq).collect()
}

#[tokio::test]
async fn records_are_paged_back_from_the_newest() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        let records = with_details(&[json!({}), json!({}), json!({}), json!({}), json!({})]);
        store.append_audit(&records, "").await.unwrap();
        let newest = store.audit_before(i64::MAX, 2).await.unwrap();
        assert_eq!(seqs(&newest), vec![5, 4]);
        let next = store.audit_before(newest[1].0, 2).await.unwrap();
        assert_eq!(seqs(&next), vec![3, 2]);
        let last = store.audit_before(next[1].0, 2).await.unwrap();
        assert_eq!(seqs(&last), vec![1]);
        assert!(store.audit_before(last[0].0, 2).await.unwrap().is_empty());
        assert_eq!(newest[0].1, records[4], "read back exactly");
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn records_are_found_by_what_their_detail_mentions_with_wildcards_taken_literally() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        let records = with_details(&[
            json!({"task_id": "task-aaa"}),
            json!({"task_id": "task-bbb", "parent_task_id": "task-aaa"}),
            json!({"ended": ["task-bbb"]}),
            json!({"reason": "100% sure"}),
            json!({"reason": "a_b"}),
            json!({"reason": "axb"}),
        ]);
        store.append_audit(&records, "").await.unwrap();
        let found = store.audit_mentioning("task-aaa", 0, 100).await.unwrap();
        assert_eq!(seqs(&found), vec![1, 2]);
        let found = store.audit_mentioning("task-bbb", 0, 100).await.unwrap();
        assert_eq!(seqs(&found), vec![2, 3]);
        // Paging: after the first hit's row.
        let first = store.audit_mentioning("task-bbb", 0, 1).await.unwrap();
        let rest = store
            .audit_mentioning("task-bbb", first[0].0, 100)
            .await
            .unwrap();
        assert_eq!(seqs(&rest), vec![3]);
        // `%` and `_` are not wildcards.
        assert_eq!(
            seqs(&store.audit_mentioning("0%", 0, 100).await.unwrap()),
            vec![4]
        );
        assert_eq!(
            seqs(&store.audit_mentioning("a_b", 0, 100).await.unwrap()),
            vec![5]
        );
        assert!(
            store
                .audit_mentioning("task-ccc", 0, 100)
                .await
                .unwrap()
                .is_empty()
        );
        store.close().await;
    })
    .await;
}

fn task(task_id: &str, issued_us: i64) -> TaskRecord {
    TaskRecord {
        task_id: task_id.to_owned(),
        jti: format!("jti-{task_id}"),
        agent: "spiffe://mandate.local/agent/a".to_owned(),
        parent_task_id: None,
        root_task_id: task_id.to_owned(),
        depth: 0,
        grant_json: r#"{"tools":["files.read"]}"#.to_owned(),
        issued_us,
        expires_us: issued_us + 60_000_000,
        state: TaskState::Active,
        ended_us: None,
        end_reason: None,
    }
}

#[tokio::test]
async fn tasks_issued_since_a_time_come_newest_first_up_to_a_limit() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        for (id, at) in [("t1", 100), ("t2", 200), ("t3", 300), ("t4", 300)] {
            store.insert_task(&task(id, at)).await.unwrap();
        }
        store
            .end_tasks(&["t2".to_owned()], TaskState::Completed, "done", 250)
            .await
            .unwrap();
        let ids = |tasks: Vec<TaskRecord>| -> Vec<String> {
            tasks.into_iter().map(|t| t.task_id).collect()
        };
        assert_eq!(
            ids(store.tasks_issued_since(200, 10).await.unwrap()),
            vec!["t3", "t4", "t2"]
        );
        assert_eq!(
            ids(store.tasks_issued_since(0, 2).await.unwrap()),
            vec!["t3", "t4"]
        );
        let all = store.tasks_issued_since(0, 10).await.unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[2].state, TaskState::Completed, "in any state");
        assert!(store.tasks_issued_since(301, 10).await.unwrap().is_empty());
        store.close().await;
    })
    .await;
}
