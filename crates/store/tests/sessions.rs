//! Call budgets and session labels on both backends: a budget is never
//! overspent, even by concurrent calls, a chain of budgets is counted all or
//! none, and labels only ever accumulate.

mod common;

use std::sync::Arc;

use mandate_store::BudgetOutcome;

use common::{TestDb, on_each_backend};

fn budgets(list: &[(&str, u64)]) -> Vec<(String, u64)> {
    list.iter().map(|(t, m)| ((*t).to_owned(), *m)).collect()
}

#[tokio::test]
async fn a_budget_counts_up_to_its_limit_and_then_refuses() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        for n in 1..=3 {
            assert_eq!(
                store.count_call(&budgets(&[("t1", 3)])).await.unwrap(),
                BudgetOutcome::Counted { calls_used: n }
            );
        }
        assert_eq!(
            store.count_call(&budgets(&[("t1", 3)])).await.unwrap(),
            BudgetOutcome::Spent {
                task_id: "t1".into(),
                max_calls: 3
            }
        );
        // Another task's budget is its own.
        assert_eq!(
            store.count_call(&budgets(&[("t2", 1)])).await.unwrap(),
            BudgetOutcome::Counted { calls_used: 1 }
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_spent_ancestor_budget_refuses_and_counts_nothing_below_it() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        // The parent has one call left; the child (counted first) has many.
        assert_eq!(
            store.count_call(&budgets(&[("parent", 1)])).await.unwrap(),
            BudgetOutcome::Counted { calls_used: 1 }
        );
        let chain = budgets(&[("child", 10), ("parent", 1)]);
        assert_eq!(
            store.count_call(&chain).await.unwrap(),
            BudgetOutcome::Spent {
                task_id: "parent".into(),
                max_calls: 1
            }
        );
        // The refused call did not use up any of the child's budget.
        assert_eq!(
            store.count_call(&budgets(&[("child", 10)])).await.unwrap(),
            BudgetOutcome::Counted { calls_used: 1 }
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn fifty_concurrent_calls_against_a_budget_of_ten_count_exactly_ten() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        let mut calls = Vec::new();
        for _ in 0..50 {
            let store = Arc::clone(&store);
            calls.push(tokio::spawn(async move {
                store.count_call(&budgets(&[("busy", 10)])).await.unwrap()
            }));
        }
        let mut counted = Vec::new();
        for call in calls {
            if let BudgetOutcome::Counted { calls_used } = call.await.unwrap() {
                counted.push(calls_used);
            }
        }
        counted.sort_unstable();
        assert_eq!(counted, (1..=10).collect::<Vec<u64>>());
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn session_labels_accumulate_per_delegation_tree() {
    on_each_backend(|db: TestDb| async move {
        let store = db.store().await;
        assert!(store.session_labels("root").await.unwrap().is_empty());
        store
            .add_session_labels("root", &["internal".into(), "confidential".into()], 10)
            .await
            .unwrap();
        // Adding a label again keeps it once.
        store
            .add_session_labels("root", &["confidential".into(), "Pii".into()], 20)
            .await
            .unwrap();
        assert_eq!(
            store.session_labels("root").await.unwrap(),
            ["Pii", "confidential", "internal"]
        );
        assert!(store.session_labels("other").await.unwrap().is_empty());
        store.close().await;
    })
    .await;
}
