//! Token lifecycle edges found in review, each tried as an attack against a
//! real node: revoking a suspended agent's token, an old key after the agent
//! was re-keyed, a task ID crafted to retarget a proof, and a node that can
//! no longer read revocations from its store.

mod common;

use std::time::{Duration, Instant};

use common::agents::{AgentNode, assert_allowed, assert_oauth_error, assert_token_refused, task};
use common::{Backend, TestStore};
use reqwest::Method;
use serde_json::{Value, json};

fn file_task() -> Value {
    task(&["files.read"], &["read"], 300)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_revocation_of_a_suspended_agents_token_survives_its_resumption() {
    let node = AgentNode::sqlite().await;
    let agent = node.agent("reader").await;
    let token = node.root_token(&agent, &file_task()).await;
    let (status, _) = node
        .admin_call(Method::POST, "/admin/v1/agents/reader/suspend", None)
        .await;
    assert_eq!(status, 200);
    // Revoked while suspended: the revocation must take, not be skipped.
    assert_eq!(node.admin_revoke(&token.access_token).await, 200);
    let (status, view) = node.task_view(&token.task_id).await;
    assert_eq!(status, 200);
    assert_eq!(view["state"], "revoked", "{view}");
    let (status, _) = node
        .admin_call(Method::POST, "/admin/v1/agents/reader/resume", None)
        .await;
    assert_eq!(status, 200);
    assert_token_refused(&node.call_with(&token, "files.read").await, "has ended");
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_revokes_a_task_by_id_and_its_token_is_refused_at_once() {
    let node = AgentNode::sqlite().await;
    let agent = node.agent("reader").await;
    let token = node.root_token(&agent, &file_task()).await;
    assert_allowed(&node.call_with(&token, "files.read").await);
    let (status, body) = node
        .admin_call(
            Method::POST,
            &format!("/admin/v1/tasks/{}/revoke", token.task_id),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ended"], json!([token.task_id]));
    assert_token_refused(&node.call_with(&token, "files.read").await, "has ended");
    // Without the credential, nothing is revoked.
    let response = node
        .http
        .post(node.node.url("/admin/v1/tasks/task-0/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_key_retires_the_old_svid_and_the_tokens_issued_before_it() {
    let node = AgentNode::sqlite().await;
    let old = node.agent("reader").await;
    let token = node.root_token(&old, &file_task()).await;

    // Renewing with the same key keeps everything working.
    let same_key = mandate_identity::public_key_pem_of(&old.key_pem).unwrap();
    let (status, body) = node
        .admin_call(
            Method::POST,
            "/admin/v1/agents/reader/svid",
            Some(&json!({"public_key_pem": same_key})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_allowed(&node.call_with(&token, "files.read").await);

    // A token issued in the same second as the key change would be taken for
    // one issued after it (tokens carry whole seconds).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (private, public) = mandate_identity::generate_agent_key().unwrap();
    let (status, body) = node
        .admin_call(
            Method::POST,
            "/admin/v1/agents/reader/svid",
            Some(&json!({"public_key_pem": public})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The token issued under the old key is refused...
    assert_token_refused(
        &node.call_with(&token, "files.read").await,
        "re-registered or re-keyed",
    );
    // ...and the old SVID, though unexpired and signed by the CA, no longer
    // gets a token.
    let got = node
        .token_request(&old.mtls(), &[], Some(&old.dpop_key()), &file_task())
        .await;
    assert_oauth_error(&got, 400, "unauthorized_client", "no longer");
    // The new key and SVID do.
    let new = common::agents::Agent {
        cert_pem: body["svid"]["certificate_pem"].as_str().unwrap().to_owned(),
        key_pem: private,
        ..old
    };
    let fresh = node.root_token(&new, &file_task()).await;
    assert_allowed(&node.call_with(&fresh, "files.read").await);
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_id_that_is_not_one_cannot_retarget_a_proof() {
    let node = AgentNode::sqlite().await;
    let agent = node.agent("reader").await;
    let token = node.root_token(&agent, &file_task()).await;
    // A proof for the PDP, sent to a completion URL whose ID would rebuild
    // into the PDP's URL if it were trusted.
    let pdp = format!("{}/access/v1/evaluation", node.base());
    let proof = token.proof_for(&pdp);
    let response = node
        .http
        .post(format!(
            "{}/tasks/..%2F..%2Faccess%2Fv1%2Fevaluation%3F/complete",
            node.base()
        ))
        .header("Authorization", format!("DPoP {}", token.access_token))
        .header("DPoP", &proof)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    // The proof was not consumed: it still serves the request it was made for.
    let got = node
        .call(&token.access_token, Some(&proof), "files.read")
        .await;
    assert_allowed(&got);
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_cannot_read_revocations_refuses_tokens_and_recovers() {
    let store = TestStore::new(Backend::Sqlite).await;
    let node = AgentNode::start(store, &[], &[("MANDATE_SYNC_MS", "100")]);
    let agent = node.agent("reader").await;
    let token = node.root_token(&agent, &file_task()).await;
    assert_allowed(&node.call_with(&token, "files.read").await);

    // Another node could be revoking tasks now, and this one cannot see it.
    node.store
        .exec("ALTER TABLE tasks RENAME TO tasks_away")
        .await;
    let started = Instant::now();
    let refused = loop {
        let got = node.call_with(&token, "files.read").await;
        if got.0 == 401 {
            break got;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "tokens still accepted {:?} after the store stopped answering",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_token_refused(&refused, "revocation state is");

    node.store
        .exec("ALTER TABLE tasks_away RENAME TO tasks")
        .await;
    let started = Instant::now();
    loop {
        let got = node.call_with(&token, "files.read").await;
        if got.0 == 200 {
            assert_allowed(&got);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still refused after the store came back: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.finish().await;
}
