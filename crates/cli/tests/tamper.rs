//! `mandate audit verify` against a log tampered with by hand, each of the four
//! ways, on every backend: it must exit 3 and name the first broken record.

mod common;

use common::{Node, TestStore, backends, mandate, post_json, todo_policies};

/// Raw SQL that tampers with a five-record chain (the first-start record and
/// four decisions), and the record verify must name.
const TAMPERINGS: [(&str, &str, u64); 5] = [
    (
        "modified",
        "UPDATE audit_records SET outcome = 'allow' WHERE seq = 3",
        3,
    ),
    ("deleted", "DELETE FROM audit_records WHERE seq = 2", 2),
    (
        "inserted",
        "INSERT INTO audit_records (node_id, seq, time_us, kind, request_id, subject, action, resource, outcome, policies, request_digest, detail, prev_hash, hash)
         SELECT node_id, 6, time_us, kind, 'forged', subject, action, resource, 'allow', policies, request_digest, detail, hash, hash
         FROM audit_records WHERE seq = 5",
        6,
    ),
    (
        "reordered",
        "UPDATE audit_records SET seq = -seq WHERE seq IN (2, 3);
         UPDATE audit_records SET seq = 3 WHERE seq = -2;
         UPDATE audit_records SET seq = 2 WHERE seq = -3;",
        2,
    ),
    ("truncated", "DELETE FROM audit_records WHERE seq = 5", 5),
];

#[tokio::test(flavor = "multi_thread")]
async fn audit_verify_names_the_first_record_broken_by_each_kind_of_tampering() {
    let client = reqwest::Client::new();
    let request = serde_json::json!({
        "subject": {"type": "user", "id": "CiRmZDQ2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"},
        "action": {"name": "can_delete_todo"},
        "resource": {"type": "todo", "id": "t1", "properties": {"ownerID": "rick@the-citadel.com"}}
    });
    for backend in backends() {
        for (name, sql, broken) in TAMPERINGS {
            let store = TestStore::new(backend).await;
            let mut node = store.start_todo_node();
            for _ in 0..5 - common::FIRST_START_RECORDS {
                let (status, body) =
                    post_json(&client, &node.url("/access/v1/evaluation"), &request).await;
                assert_eq!(
                    (status, &body["decision"]),
                    (200, &serde_json::json!(false))
                );
            }
            assert!(node.stop().success());
            let clean = mandate(&["audit", "verify", "--database", &store.url]);
            assert!(
                clean.status.success(),
                "{backend:?} {name}: untouched log must verify"
            );

            store.exec(sql).await;
            let out = mandate(&["audit", "verify", "--database", &store.url]);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(3), "{backend:?} {name}: {stdout}");
            assert!(
                stdout.starts_with(&format!("audit log BROKEN at record {broken}:")),
                "{backend:?} {name}: {stdout}"
            );
            store.cleanup().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_wiped_whole_passes_without_the_node_key_and_fails_with_it() {
    let client = reqwest::Client::new();
    let request = serde_json::json!({
        "subject": {"type": "user", "id": "CiRmZDQ2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"},
        "action": {"name": "can_read_todos"},
        "resource": {"type": "todo", "id": "todo-1"}
    });
    for backend in backends() {
        let store = TestStore::new(backend).await;
        let data = store.dir.path().join("data");
        let data_dir = data.to_str().unwrap();
        let mut node = Node::start(&data, &store.url, &todo_policies(), &[]);
        for _ in 0..3 {
            let (status, _) =
                post_json(&client, &node.url("/access/v1/evaluation"), &request).await;
            assert_eq!(status, 200);
        }
        assert!(node.stop().success());
        let sealed = mandate(&[
            "audit",
            "verify",
            "--database",
            &store.url,
            "--data-dir",
            data_dir,
        ]);
        let stdout = String::from_utf8_lossy(&sealed.stdout);
        assert!(sealed.status.success(), "{backend:?}: {stdout}");
        assert!(
            stdout.contains(&format!(
                ": {}, seal checked)",
                3 + common::FIRST_START_RECORDS
            )),
            "{backend:?}: {stdout}"
        );

        store
            .exec("DELETE FROM audit_records; DELETE FROM audit_heads;")
            .await;
        // Without the node's data directory nothing can tell an empty log from a wiped one...
        let blind = mandate(&["audit", "verify", "--database", &store.url]);
        let stdout = String::from_utf8_lossy(&blind.stdout);
        assert!(blind.status.success(), "{backend:?}: {stdout}");
        assert!(
            stdout.contains("note: no node key in"),
            "{backend:?}: {stdout}"
        );
        // ...with it, the missing chain is named.
        let keyed = mandate(&[
            "audit",
            "verify",
            "--database",
            &store.url,
            "--data-dir",
            data_dir,
        ]);
        let stdout = String::from_utf8_lossy(&keyed.stdout);
        assert_eq!(keyed.status.code(), Some(3), "{backend:?}: {stdout}");
        assert!(
            stdout.contains("its audit chain is missing"),
            "{backend:?}: {stdout}"
        );
        store.cleanup().await;
    }
}
