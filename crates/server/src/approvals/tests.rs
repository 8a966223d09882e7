//! The approvals queue against a real SQLite store and audit log: holds that
//! are approved, denied, timed out, cancelled by a kill, abandoned by their
//! caller; approvals spent once; racing approvers; decisions made through
//! another node; a failing audit log; the webhook, against a real receiver.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, KeyInit, Mac};
use mandate_core::{AuditKind, AuditRecord, HeadSealer};
use mandate_store::{ApprovalState, AuditLog, AuditLogConfig, Store};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::mpsc;

use super::*;

const ALICE_AGENT: &str = "spiffe://mandate.local/agent/writer";

/// A node's queue: its store, audit log and settings.
struct Node {
    approvals: Arc<Approvals>,
    store: Arc<dyn Store>,
    audit: AuditLog,
}

async fn store_in(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    let url = format!("sqlite://{}", dir.path().join("mandate.db").display());
    mandate_store::connect(&url).await.unwrap()
}

async fn node_on(
    store: Arc<dyn Store>,
    node_id: &str,
    timeout: Duration,
    webhook: Option<Webhook>,
) -> Node {
    polling_every(store, node_id, timeout, webhook, Duration::from_millis(50)).await
}

async fn polling_every(
    store: Arc<dyn Store>,
    node_id: &str,
    timeout: Duration,
    webhook: Option<Webhook>,
    poll: Duration,
) -> Node {
    let audit = AuditLog::start(
        Arc::clone(&store),
        node_id.to_owned(),
        HeadSealer::new(&[7; 32]),
        AuditLogConfig::default(),
    )
    .await
    .unwrap();
    let approvals = Arc::new(Approvals::new(
        Arc::clone(&store),
        audit.clone(),
        reqwest::Client::new(),
        ApprovalSettings {
            timeout,
            poll,
            webhook,
            links_base: "http://mandate.test/".to_owned(),
        },
    ));
    Node {
        approvals,
        store,
        audit,
    }
}

async fn node(dir: &tempfile::TempDir, timeout: Duration) -> Node {
    node_on(store_in(dir).await, "node-a", timeout, None).await
}

fn request(task_id: &str, digest: &str) -> HoldRequest {
    HoldRequest {
        agent: ALICE_AGENT.to_owned(),
        agent_name: "writer".to_owned(),
        task_id: task_id.to_owned(),
        task_chain: Vec::new(),
        endpoint: "mcp",
        upstream: "files".to_owned(),
        action: "Action::\"call\"".to_owned(),
        resource: "Tool::\"files.write_file\"".to_owned(),
        argument_digest: digest.to_owned(),
        purpose: "write the Q3 summary".to_owned(),
        reasons: vec!["writing a file needs a person".to_owned()],
        policies: vec!["writes-need-approval".to_owned()],
        request_id: "req-1".to_owned(),
    }
}

/// The single pending hold of the store, once it is there.
async fn pending_hold(store: &Arc<dyn Store>) -> ApprovalRecord {
    let start = Instant::now();
    loop {
        let holds = store
            .approvals(Some(ApprovalState::Pending), 10)
            .await
            .unwrap();
        if let [hold] = holds.as_slice() {
            return hold.clone();
        }
        assert!(holds.len() < 2, "{holds:?}");
        assert!(start.elapsed() < Duration::from_secs(10), "no hold opened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The approval records of the audit log, as (kind, subject, outcome).
async fn approval_records(store: &Arc<dyn Store>) -> Vec<(AuditKind, String, String)> {
    audit_records(store)
        .await
        .into_iter()
        .filter(|r| {
            matches!(
                r.event.kind,
                AuditKind::ApprovalRequested | AuditKind::ApprovalDecided
            )
        })
        .map(|r| (r.event.kind, r.event.subject, r.event.outcome))
        .collect()
}

async fn audit_records(store: &Arc<dyn Store>) -> Vec<AuditRecord> {
    store
        .audit_latest(1000)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .collect()
}

fn requested() -> (AuditKind, String, String) {
    (
        AuditKind::ApprovalRequested,
        format!("Agent::\"{ALICE_AGENT}\""),
        "held".to_owned(),
    )
}

fn decided(subject: &str, outcome: &str) -> (AuditKind, String, String) {
    (
        AuditKind::ApprovalDecided,
        subject.to_owned(),
        outcome.to_owned(),
    )
}

#[tokio::test]
async fn an_approved_hold_lets_its_call_run_once_and_every_step_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    // Polling too rarely to matter: only the wake-up can end the wait soon.
    let poll = Duration::from_secs(20);
    let n = polling_every(
        store_in(&dir).await,
        "node-a",
        Duration::from_secs(30),
        None,
        poll,
    )
    .await;
    let waiting = {
        let approvals = Arc::clone(&n.approvals);
        tokio::spawn(async move { approvals.hold(request("task-1", "d1")).await })
    };
    let hold = pending_hold(&n.store).await;
    assert!(
        hold.id.starts_with("apr_") && hold.id.len() == 26,
        "{}",
        hold.id
    );
    assert_eq!(hold.expires_us - hold.created_us, 30_000_000);
    assert_eq!(hold.root_task_id, "task-1");

    let decided_hold = n
        .approvals
        .decide(&hold.id, true, "alice", Some("fine".into()), "req-admin")
        .await
        .unwrap();
    assert_eq!(decided_hold.state, ApprovalState::Approved);
    let outcome = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken at once on the same node, not at the next poll")
        .unwrap()
        .unwrap();
    assert_eq!(
        outcome,
        HoldOutcome::Approved {
            id: hold.id.clone(),
            approver: "alice".to_owned()
        }
    );
    let spent = n.store.approval(&hold.id).await.unwrap().unwrap();
    assert_eq!(spent.state, ApprovalState::Used);
    assert_eq!(spent.decided_by.as_deref(), Some("Admin::\"alice\""));
    assert_eq!(spent.note.as_deref(), Some("fine"));

    assert_eq!(
        approval_records(&n.store).await,
        [
            requested(),
            decided("Admin::\"alice\"", "approved"),
            decided(&format!("Agent::\"{ALICE_AGENT}\""), "used"),
        ]
    );
    let records = audit_records(&n.store).await;
    let approved = records
        .iter()
        .find(|r| r.event.outcome == "approved")
        .unwrap();
    assert_eq!(approved.event.request_id, "req-admin");
    assert_eq!(approved.event.action, "Action::\"call\"");
    assert_eq!(approved.event.resource, "Tool::\"files.write_file\"");
    assert_eq!(approved.event.request_digest, "d1");
    assert_eq!(approved.event.policies, ["writes-need-approval"]);
    assert_eq!(approved.event.detail["approval_id"], hold.id.as_str());
    assert_eq!(approved.event.detail["task_id"], "task-1");
    assert_eq!(approved.event.detail["approver"], "alice");
    assert_eq!(approved.event.detail["note"], "fine");
    let used = records.iter().find(|r| r.event.outcome == "used").unwrap();
    assert_eq!(used.event.detail["approver"], "alice");
    assert_eq!(used.event.request_id, "req-1");

    // Spent: a second decision is refused with the state it is in.
    let err = n
        .approvals
        .decide(&hold.id, true, "bob", None, "")
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ApprovalError::NotPending {
                state: ApprovalState::Used,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_denied_hold_ends_with_the_approver_and_the_note() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(&dir, Duration::from_secs(30)).await;
    let waiting = {
        let approvals = Arc::clone(&n.approvals);
        tokio::spawn(async move { approvals.hold(request("task-1", "d1")).await })
    };
    let hold = pending_hold(&n.store).await;
    n.approvals
        .decide(&hold.id, false, "bob", Some("not this file".into()), "")
        .await
        .unwrap();
    assert_eq!(
        waiting.await.unwrap().unwrap(),
        HoldOutcome::Denied {
            id: hold.id.clone(),
            approver: "bob".to_owned(),
            note: Some("not this file".to_owned()),
        }
    );
    assert_eq!(
        approval_records(&n.store).await,
        [requested(), decided("Admin::\"bob\"", "denied")]
    );
    let err = n
        .approvals
        .decide(&hold.id, true, "alice", None, "")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "approval {:?} is denied: only a pending approval can be decided",
            hold.id
        )
    );
}

#[tokio::test]
async fn a_hold_nobody_decides_expires_and_a_late_approval_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(&dir, Duration::from_millis(300)).await;
    let started = Instant::now();
    let outcome = n.approvals.hold(request("task-1", "d1")).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    let HoldOutcome::Expired { id } = outcome else {
        panic!("{outcome:?}");
    };
    let hold = n.store.approval(&id).await.unwrap().unwrap();
    assert_eq!(hold.state, ApprovalState::Expired);
    assert_eq!(hold.decided_by.as_deref(), Some(TIMEOUT));
    let err = n
        .approvals
        .decide(&id, true, "alice", None, "")
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ApprovalError::NotPending {
                state: ApprovalState::Expired,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        approval_records(&n.store).await,
        [requested(), decided(TIMEOUT, "expired")]
    );
}

#[tokio::test]
async fn an_approval_after_the_deadline_is_refused_even_before_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(&dir, Duration::from_millis(200)).await;
    // AuthZEN holds have no waiter: only the sweep expires them.
    let PollOutcome::Pending { id, expires_us } = n
        .approvals
        .check_or_open(request("task-1", "d1"))
        .await
        .unwrap()
    else {
        panic!("a new hold is pending");
    };
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(now_us() > expires_us);
    let err = n
        .approvals
        .decide(&id, true, "alice", None, "")
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ApprovalError::NotPending {
                state: ApprovalState::Expired,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(n.approvals.sweep().await.unwrap(), 1);
    assert_eq!(n.approvals.sweep().await.unwrap(), 0);
    assert_eq!(
        n.store.approval(&id).await.unwrap().unwrap().state,
        ApprovalState::Expired
    );
    assert_eq!(
        approval_records(&n.store).await,
        [requested(), decided(TIMEOUT, "expired")]
    );
}

#[tokio::test]
async fn of_many_racing_approvers_exactly_one_decides() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(&dir, Duration::from_secs(30)).await;
    let waiting = {
        let approvals = Arc::clone(&n.approvals);
        tokio::spawn(async move { approvals.hold(request("task-1", "d1")).await })
    };
    let hold = pending_hold(&n.store).await;
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let approvals = Arc::clone(&n.approvals);
            let id = hold.id.clone();
            tokio::spawn(async move {
                approvals
                    .decide(&id, i % 2 == 0, &format!("admin{i}"), None, "")
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for racer in racers {
        match racer.await.unwrap() {
            Ok(decided) => winners.push(decided),
            Err(ApprovalError::NotPending { .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let winner = approver_name(&winners[0]);
    let outcome = waiting.await.unwrap().unwrap();
    match winners[0].state {
        ApprovalState::Approved => assert_eq!(
            outcome,
            HoldOutcome::Approved {
                id: hold.id.clone(),
                approver: winner
            }
        ),
        _ => assert!(
            matches!(&outcome, HoldOutcome::Denied { approver, .. } if *approver == winner),
            "{outcome:?}"
        ),
    }
    let decisions = approval_records(&n.store)
        .await
        .into_iter()
        .filter(|(_, subject, _)| subject.starts_with("Admin::"))
        .count();
    assert_eq!(decisions, 1);
}

#[tokio::test]
async fn a_decision_made_through_another_node_reaches_the_waiting_call() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir).await;
    let a = node_on(Arc::clone(&store), "node-a", Duration::from_secs(30), None).await;
    let b = node_on(Arc::clone(&store), "node-b", Duration::from_secs(30), None).await;
    let waiting = {
        let approvals = Arc::clone(&a.approvals);
        tokio::spawn(async move { approvals.hold(request("task-1", "d1")).await })
    };
    let hold = pending_hold(&store).await;
    b.approvals
        .decide(&hold.id, true, "alice", None, "")
        .await
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("seen within a few polls")
        .unwrap()
        .unwrap();
    assert!(
        matches!(outcome, HoldOutcome::Approved { .. }),
        "{outcome:?}"
    );
    // Each node recorded its own step in its own chain.
    let records = audit_records(&store).await;
    let by_node = |outcome: &str| {
        records
            .iter()
            .find(|r| r.event.outcome == outcome)
            .map(|r| r.node_id.clone())
    };
    assert_eq!(by_node("held").as_deref(), Some("node-a"));
    assert_eq!(by_node("approved").as_deref(), Some("node-b"));
    assert_eq!(by_node("used").as_deref(), Some("node-a"));
}

#[tokio::test]
async fn killing_an_agent_cancels_its_holds_and_those_of_its_delegates_only() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(&dir, Duration::from_secs(30)).await;
    let spawn_hold = |req: HoldRequest| {
        let approvals = Arc::clone(&n.approvals);
        tokio::spawn(async move { approvals.hold(req).await })
    };
    let own = spawn_hold(request("task-1", "d1"));
    let delegate = spawn_hold(HoldRequest {
        agent: "spiffe://mandate.local/agent/helper".to_owned(),
        agent_name: "helper".to_owned(),
        task_id: "task-2".to_owned(),
        task_chain: vec!["task-1".to_owned()],
        ..request("task-2", "d2")
    });
    let bystander = spawn_hold(HoldRequest {
        agent: "spiffe://mandate.local/agent/other".to_owned(),
        agent_name: "other".to_owned(),
        ..request("task-9", "d9")
    });
    // An approved hold whose call has not run yet is withdrawn too.
    let PollOutcome::Pending { id: approved, .. } = n
        .approvals
        .check_or_open(request("task-1", "d3"))
        .await
        .unwrap()
    else {
        panic!("a new hold is pending");
    };
    let start = Instant::now();
    while n
        .store
        .approvals(Some(ApprovalState::Pending), 10)
        .await
        .unwrap()
        .len()
        < 4
    {
        assert!(start.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    n.approvals
        .decide(&approved, true, "alice", None, "")
        .await
        .unwrap();

    let cancelled = n
        .approvals
        .cancel_for_agent(ALICE_AGENT, &["task-1".to_owned()], "the agent was killed")
        .await
        .unwrap();
    assert_eq!(cancelled, 3);
    for waiter in [own, delegate] {
        let outcome = waiter.await.unwrap().unwrap();
        assert!(
            matches!(&outcome, HoldOutcome::Cancelled { why, .. } if why == "the agent was killed"),
            "{outcome:?}"
        );
    }
    assert_eq!(
        n.store.approval(&approved).await.unwrap().unwrap().state,
        ApprovalState::Cancelled
    );
    // The withdrawn approval cannot be spent by an AuthZEN check either.
    let again = n
        .approvals
        .check_or_open(request("task-1", "d3"))
        .await
        .unwrap();
    assert!(
        matches!(&again, PollOutcome::Pending { id, .. } if *id != approved),
        "{again:?}"
    );
    let records = approval_records(&n.store).await;
    assert_eq!(
        records
            .iter()
            .filter(|(_, subject, outcome)| subject == AGENT_KILL && outcome == "cancelled")
            .count(),
        3
    );
    assert!(!bystander.is_finished());
    let hold = n
        .store
        .approvals(Some(ApprovalState::Pending), 10)
        .await
        .unwrap();
    assert!(hold.iter().any(|h| h.task_id == "task-9"));
    bystander.abort();
}

#[tokio::test]
async fn a_hold_whose_call_went_away_is_withdrawn_and_cannot_be_approved() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(&dir, Duration::from_secs(30)).await;
    let waiting = {
        let approvals = Arc::clone(&n.approvals);
        tokio::spawn(async move { approvals.hold(request("task-1", "d1")).await })
    };
    let hold = pending_hold(&n.store).await;
    waiting.abort();
    let _ = waiting.await;
    let start = Instant::now();
    let withdrawn = loop {
        let current = n.store.approval(&hold.id).await.unwrap().unwrap();
        if current.state != ApprovalState::Pending {
            break current;
        }
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(withdrawn.state, ApprovalState::Cancelled);
    assert_eq!(withdrawn.decided_by.as_deref(), Some(CALL_GONE));
    let err = n
        .approvals
        .decide(&hold.id, true, "alice", None, "")
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ApprovalError::NotPending {
                state: ApprovalState::Cancelled,
                ..
            }
        ),
        "{err:?}"
    );

    // Approved, but its call went away before spending it: withdrawn too.
    let PollOutcome::Pending { id, .. } = n
        .approvals
        .check_or_open(request("task-1", "d2"))
        .await
        .unwrap()
    else {
        panic!("a new hold is pending");
    };
    n.approvals
        .decide(&id, true, "alice", None, "")
        .await
        .unwrap();
    drop(Withdraw {
        store: Arc::clone(&n.store),
        audit: n.audit.clone(),
        waiters: Arc::default(),
        id: id.clone(),
        request_id: String::new(),
        armed: true,
    });
    let start = Instant::now();
    while n.store.approval(&id).await.unwrap().unwrap().state == ApprovalState::Approved {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        n.store.approval(&id).await.unwrap().unwrap().state,
        ApprovalState::Cancelled
    );
    // Each withdrawal is recorded (just after it is made).
    let start = Instant::now();
    loop {
        let withdrawals = approval_records(&n.store)
            .await
            .into_iter()
            .filter(|(_, subject, outcome)| subject == CALL_GONE && outcome == "cancelled")
            .count();
        if withdrawals == 2 {
            break;
        }
        assert!(withdrawals < 2 && start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_authzen_check_opens_one_hold_per_call_and_spends_its_approval_once() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(&dir, Duration::from_secs(30)).await;
    let first = n
        .approvals
        .check_or_open(request("task-1", "d1"))
        .await
        .unwrap();
    let PollOutcome::Pending { id, expires_us } = first.clone() else {
        panic!("{first:?}");
    };
    // Asking again for the same call finds the same hold.
    assert_eq!(
        n.approvals
            .check_or_open(request("task-1", "d1"))
            .await
            .unwrap(),
        first
    );
    // Other arguments, or another task, are another call.
    for other in [request("task-1", "d2"), request("task-2", "d1")] {
        let outcome = n.approvals.check_or_open(other).await.unwrap();
        assert!(matches!(&outcome, PollOutcome::Pending { id: other, .. } if *other != id));
    }
    assert!(expires_us > now_us());
    n.approvals
        .decide(&id, true, "alice", None, "")
        .await
        .unwrap();
    // The approval for d1 does not cover d2.
    let d2 = n
        .approvals
        .check_or_open(request("task-1", "d2"))
        .await
        .unwrap();
    assert!(matches!(d2, PollOutcome::Pending { .. }), "{d2:?}");
    assert_eq!(
        n.approvals
            .check_or_open(request("task-1", "d1"))
            .await
            .unwrap(),
        PollOutcome::Consumed {
            id: id.clone(),
            approver: "alice".to_owned()
        }
    );
    // Spent: the next identical call needs a new approval.
    let next = n
        .approvals
        .check_or_open(request("task-1", "d1"))
        .await
        .unwrap();
    assert!(
        matches!(&next, PollOutcome::Pending { id: new, .. } if *new != id),
        "{next:?}"
    );

    // Concurrent identical checks open one hold between them.
    let racers: Vec<_> = (0..6)
        .map(|_| {
            let approvals = Arc::clone(&n.approvals);
            tokio::spawn(async move { approvals.check_or_open(request("task-3", "d1")).await })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for racer in racers {
        if let PollOutcome::Pending { id, .. } = racer.await.unwrap().unwrap() {
            ids.insert(id);
        }
    }
    assert_eq!(ids.len(), 1);
}

#[tokio::test]
async fn no_hold_is_opened_and_no_approval_given_when_the_audit_log_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(&dir, Duration::from_secs(30)).await;
    let PollOutcome::Pending { id, .. } = n
        .approvals
        .check_or_open(request("task-1", "d1"))
        .await
        .unwrap()
    else {
        panic!("a new hold is pending");
    };
    n.audit.shutdown().await;

    let err = n.approvals.hold(request("task-1", "d2")).await.unwrap_err();
    assert!(matches!(err, ApprovalError::Audit(_)), "{err:?}");
    let err = n
        .approvals
        .decide(&id, true, "alice", None, "")
        .await
        .unwrap_err();
    assert!(matches!(err, ApprovalError::Audit(_)), "{err:?}");
    // The approval that could not be recorded was withdrawn, and nothing
    // else was stored.
    let all = n.store.approvals(None, 10).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].state, ApprovalState::Cancelled);
}

/// A webhook receiver on loopback: answers each request with the next
/// status of `statuses` (then 200), and hands over what it got.
async fn receiver(
    statuses: Vec<StatusCode>,
    delay: Duration,
) -> (String, mpsc::UnboundedReceiver<(HeaderMap, Vec<u8>)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let statuses = Arc::new(Mutex::new(statuses.into_iter()));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let tx = tx.clone();
            let statuses = Arc::clone(&statuses);
            async move {
                let _ = tx.send((headers, body.to_vec()));
                tokio::time::sleep(delay).await;
                let next = statuses.lock().unwrap().next();
                next.unwrap_or(StatusCode::OK)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

/// Whether a delivery's signature verifies, checked the way a receiver
/// would, independently of Mandate's code.
fn signature_ok(key: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    let timestamp = headers["x-mandate-timestamp"].to_str().unwrap();
    let age = crate::authority::now_seconds() - timestamp.parse::<i64>().unwrap();
    assert!((0..60).contains(&age), "timestamp {timestamp}");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    headers["x-mandate-signature"].to_str().unwrap() == expected
}

/// A delivery's body, after checking its signature and type.
fn verified(key: &[u8], headers: &HeaderMap, body: &[u8]) -> Value {
    assert!(signature_ok(key, headers, body));
    assert_eq!(headers["content-type"], "application/json");
    serde_json::from_slice(body).unwrap()
}

#[tokio::test]
async fn each_new_hold_is_announced_signed_and_retried_when_the_receiver_fails() {
    let key = b"webhook-key-0123456789abcdef";
    let (url, mut deliveries) =
        receiver(vec![StatusCode::SERVICE_UNAVAILABLE], Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let webhook = Webhook::new(&url, key).unwrap();
    let n = node_on(
        store_in(&dir).await,
        "node-a",
        Duration::from_secs(30),
        Some(webhook),
    )
    .await;
    let PollOutcome::Pending { id, .. } = n
        .approvals
        .check_or_open(request("task-1", "d1"))
        .await
        .unwrap()
    else {
        panic!("a new hold is pending");
    };
    let hold = n.store.approval(&id).await.unwrap().unwrap();
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let (headers, body) = tokio::time::timeout(Duration::from_secs(10), deliveries.recv())
            .await
            .expect("delivered")
            .unwrap();
        bodies.push(verified(key, &headers, &body));
    }
    assert_eq!(bodies[0], bodies[1], "a retry sends the same announcement");
    let body = &bodies[0];
    assert_eq!(body["type"], "approval.requested");
    let approval = &body["approval"];
    assert_eq!(approval["id"], id.as_str());
    assert_eq!(approval["agent"], ALICE_AGENT);
    assert_eq!(approval["agent_name"], "writer");
    assert_eq!(approval["task_id"], "task-1");
    assert_eq!(approval["purpose"], "write the Q3 summary");
    assert_eq!(approval["upstream"], "files");
    assert_eq!(approval["action"], "Action::\"call\"");
    assert_eq!(approval["resource"], "Tool::\"files.write_file\"");
    assert_eq!(approval["argument_digest"], "d1");
    assert_eq!(approval["reasons"][0], "writing a file needs a person");
    assert_eq!(approval["expires_at"], rfc3339(hold.expires_us).as_str());
    assert_eq!(
        body["links"]["approve"],
        format!("http://mandate.test/admin/v1/approvals/{id}/approve").as_str()
    );
    // Delivered: no third attempt.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(deliveries.try_recv().is_err());

    // A forged body does not verify under the key.
    let (headers, body) = {
        let approvals = &n.approvals;
        approvals
            .check_or_open(request("task-1", "d2"))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), deliveries.recv())
            .await
            .unwrap()
            .unwrap()
    };
    assert!(signature_ok(key, &headers, &body));
    let mut forged = body.clone();
    forged.extend_from_slice(b" ");
    assert!(!signature_ok(key, &headers, &forged));
    assert!(!signature_ok(b"another-key-0123456789", &headers, &body));
}

#[tokio::test]
async fn a_slow_or_missing_webhook_never_holds_up_the_hold() {
    let (url, mut deliveries) = receiver(Vec::new(), Duration::from_secs(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir).await;
    let slow = node_on(
        Arc::clone(&store),
        "node-a",
        Duration::from_secs(30),
        Some(Webhook::new(&url, b"webhook-key-0123456789abcdef").unwrap()),
    )
    .await;
    let started = Instant::now();
    let outcome = slow
        .approvals
        .check_or_open(request("task-1", "d1"))
        .await
        .unwrap();
    assert!(matches!(outcome, PollOutcome::Pending { .. }));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // It did reach the receiver, which is still thinking.
    tokio::time::timeout(Duration::from_secs(5), deliveries.recv())
        .await
        .unwrap()
        .unwrap();

    // Nobody listening at all: the hold is still opened, and decided.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nowhere = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let down = node_on(
        store,
        "node-b",
        Duration::from_secs(30),
        Some(Webhook::new(&nowhere, b"webhook-key-0123456789abcdef").unwrap()),
    )
    .await;
    let waiting = {
        let approvals = Arc::clone(&down.approvals);
        tokio::spawn(async move { approvals.hold(request("task-2", "d1")).await })
    };
    let start = Instant::now();
    let hold = loop {
        let pending = down
            .store
            .approvals(Some(ApprovalState::Pending), 10)
            .await
            .unwrap();
        if let Some(hold) = pending.into_iter().find(|h| h.task_id == "task-2") {
            break hold;
        }
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    down.approvals
        .decide(&hold.id, true, "alice", None, "")
        .await
        .unwrap();
    assert!(matches!(
        waiting.await.unwrap().unwrap(),
        HoldOutcome::Approved { .. }
    ));
}
