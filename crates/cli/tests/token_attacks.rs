//! Attacks on task tokens and agent identities, each against a real node with
//! the example agent policies: stolen or replayed proofs, expired, revoked and
//! completed tasks, suspended agents, widened delegations, certificates that
//! are not what they claim, and SPIRE-issued identities that must work. Every
//! attack first fails with its specific refusal; where it matters, the same
//! token is then shown to work when used properly, so the refusal is the
//! attack's doing.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::agents::{
    Agent, AgentNode, TYPE_ACCESS_TOKEN, TYPE_JWT, Token, assert_allowed, assert_api_error,
    assert_oauth_error, assert_token_refused, evaluate, jwt_part, mandate_env, now, ok,
    spire_fixtures, task, tls_client, token_post, with_claims,
};
use common::{Backend, TestStore};
use mandate_identity::{BuiltinCa, SpiffeId, generate_agent_key};
use mandate_tokens::DpopKey;
use reqwest::Method;
use serde_json::{Value, json};

/// The quickstart task: the file tools for reports, read only.
fn file_task() -> Value {
    task(&["files.read"], &["read"], 300)
}

/// A node, one registered agent and a DPoP-bound token for `file_task`.
async fn node_with_token() -> (AgentNode, Agent, Token) {
    let node = AgentNode::sqlite().await;
    let agent = node.agent("reader").await;
    let token = node.root_token(&agent, &file_task()).await;
    assert_eq!(token.answer["token_type"], "DPoP", "{}", token.answer);
    (node, agent, token)
}

fn evaluation_url(node: &AgentNode) -> String {
    format!("{}/access/v1/evaluation", node.base())
}

// --- DPoP at the AuthZEN endpoint -------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_token_without_its_dpop_proof_is_refused() {
    let (node, _, token) = node_with_token().await;
    let got = node.call(&token.access_token, None, "files.read").await;
    assert_token_refused(&got, "the request has no DPoP proof");
    assert_allowed(&node.call_with(&token, "files.read").await);
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proof_made_with_another_key_is_refused() {
    let (node, _, token) = node_with_token().await;
    let thief = DpopKey::generate_es256().unwrap();
    let proof = thief.proof(
        "POST",
        &evaluation_url(&node),
        Some(&token.access_token),
        now(),
    );
    let got = node
        .call(&token.access_token, Some(&proof), "files.read")
        .await;
    assert_token_refused(&got, "is not the key the token is bound to");
    let message = got.1["message"].as_str().unwrap();
    assert!(message.contains(&thief.thumbprint()), "{message}");
    assert!(message.contains(&token.key.thumbprint()), "{message}");
    assert_allowed(&node.call_with(&token, "files.read").await);
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_proof_is_refused() {
    let (node, _, token) = node_with_token().await;
    let proof = token.proof_for(&evaluation_url(&node));
    let first = node
        .call(&token.access_token, Some(&proof), "files.read")
        .await;
    assert_allowed(&first);
    let again = node
        .call(&token.access_token, Some(&proof), "files.read")
        .await;
    assert_token_refused(&again, "was already used (replay)");
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_proof_serves_the_items_of_one_request_and_no_other() {
    let (node, _, token) = node_with_token().await;
    let url = format!("{}/access/v1/evaluations", node.base());
    let proof = token.proof_for(&url);
    let batch = json!({
        "subject": {"type": "task_token", "id": token.access_token,
                    "properties": {"dpop_proof": proof}},
        "action": {"name": "call"},
        "evaluations": [
            {"resource": {"type": "Tool", "id": "files.read"}},
            {"resource": {"type": "Tool", "id": "files.list"}},
            {"resource": {"type": "Tool", "id": "files.read"}},
        ],
    });
    let (status, body) = common::post_json(&node.http, &url, &batch).await;
    assert_eq!(status, 200, "{body}");
    let decisions: Vec<&Value> = body["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["decision"])
        .collect();
    assert_eq!(
        decisions,
        [&json!(true), &json!(false), &json!(true)],
        "{body}"
    );
    // Sent again, every item is denied, with the refusal a single evaluation
    // would have answered (401, the replay).
    let (status, body) = common::post_json(&node.http, &url, &batch).await;
    assert_eq!(status, 200, "{body}");
    for item in body["evaluations"].as_array().unwrap() {
        assert_eq!(item["decision"], false, "{body}");
        let error = &item["context"]["error"];
        assert_eq!(
            error["status"], 401,
            "a refused token is a 401, as alone: {body}"
        );
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("task token refused: ")
                && message.contains("was already used (replay)"),
            "{body}"
        );
    }
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proof_for_another_url_is_refused() {
    let (node, _, token) = node_with_token().await;
    // Another endpoint of the same node ...
    let other_path = token.proof_for(&format!("{}/access/v1/evaluations", node.base()));
    let got = node
        .call(&token.access_token, Some(&other_path), "files.read")
        .await;
    assert_token_refused(&got, "DPoP proof is for \"http://");
    assert!(
        got.1["message"]
            .as_str()
            .unwrap()
            .contains("/access/v1/evaluations"),
        "{}",
        got.1
    );
    // ... and the same path on the other listener.
    let other_origin = token.proof_for(&format!("{}/access/v1/evaluation", node.tls()));
    let got = node
        .call(&token.access_token, Some(&other_origin), "files.read")
        .await;
    assert_token_refused(&got, "DPoP proof is for \"https://");
    assert_allowed(&node.call_with(&token, "files.read").await);
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proof_for_another_method_is_refused() {
    let (node, _, token) = node_with_token().await;
    let proof = token.key.proof(
        "GET",
        &evaluation_url(&node),
        Some(&token.access_token),
        now(),
    );
    let got = node
        .call(&token.access_token, Some(&proof), "files.read")
        .await;
    assert_token_refused(
        &got,
        "DPoP proof is for method \"GET\", the request is \"POST\"",
    );
    assert_allowed(&node.call_with(&token, "files.read").await);
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proof_without_ath_or_with_the_ath_of_another_token_is_refused() {
    let (node, _, token) = node_with_token().await;
    let url = evaluation_url(&node);
    let no_ath = token.key.proof("POST", &url, None, now());
    let got = node
        .call(&token.access_token, Some(&no_ath), "files.read")
        .await;
    assert_token_refused(&got, "DPoP proof has no ath claim");
    let wrong_ath = token
        .key
        .proof("POST", &url, Some("some.other.token"), now());
    let got = node
        .call(&token.access_token, Some(&wrong_ath), "files.read")
        .await;
    assert_token_refused(&got, "is not the hash of the presented token");
    assert_allowed(&node.call_with(&token, "files.read").await);
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_proof_is_refused() {
    let (node, _, token) = node_with_token().await;
    let old = token.key.proof(
        "POST",
        &evaluation_url(&node),
        Some(&token.access_token),
        now() - 300,
    );
    let got = node
        .call(&token.access_token, Some(&old), "files.read")
        .await;
    assert_token_refused(&got, "is more than 60 s before now");
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_with_widened_claims_is_refused() {
    let (node, agent, token) = node_with_token().await;
    let mut claims = token.claims();
    claims["authorization_details"][0]["tools"] = json!(["files.read", "files.list"]);
    claims["exp"] = json!(claims["exp"].as_i64().unwrap() + 86_400);
    let forged = Token {
        access_token: with_claims(&token.access_token, &claims),
        task_id: token.task_id.clone(),
        answer: token.answer.clone(),
        key: agent.dpop_key(),
    };
    let got = node.call_with(&forged, "files.list").await;
    assert_token_refused(&got, "signature does not verify with key");
    // Introspection does not take it either.
    assert_eq!(
        node.introspect(&forged.access_token).await,
        json!({"active": false})
    );
    assert_allowed(&node.call_with(&token, "files.read").await);
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_can_claim_to_be_an_agent_or_describe_its_task_without_the_token() {
    let (node, agent, token) = node_with_token().await;
    let url = evaluation_url(&node);
    // The subject type Agent is reserved for verified task tokens.
    let got = common::post_json(
        &node.http,
        &url,
        &json!({
            "subject": {"type": "Agent", "id": agent.spiffe_id, "properties": {
                "name": "reader", "owner": "reader@example.com", "env": "dev",
                "function": "x", "spiffe_id": agent.spiffe_id}},
            "action": {"name": "call"},
            "resource": {"type": "Tool", "id": "files.read"},
            "context": {"task": {"id": "t", "purpose": "p", "tools": [{"__entity": {"type": "Tool", "id": "files.read"}}],
                "data_domains": [], "capabilities": ["read"], "depth": 0, "delegation_chain": []}},
        }),
    )
    .await;
    assert_api_error(&got, 400, "bad_request", "subject type Agent is reserved");
    // With a real token, context.task cannot be widened by the caller.
    let got = common::post_json(
        &node.http,
        &url,
        &json!({
            "subject": {"type": "task_token", "id": token.access_token,
                        "properties": {"dpop_proof": token.proof_for(&url)}},
            "action": {"name": "call"},
            "resource": {"type": "Tool", "id": "files.list"},
            "context": {"task": {"tools": [{"__entity": {"type": "Tool", "id": "files.list"}}]}},
        }),
    )
    .await;
    assert_api_error(
        &got,
        400,
        "bad_request",
        "context.task is filled in by Mandate",
    );
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_endpoint_proof_cannot_be_replayed() {
    let node = AgentNode::sqlite().await;
    let agent = node.agent("eager").await;
    let url = format!("{}/oauth/token", node.tls());
    let proof = agent.dpop_key().proof("POST", &url, None, now());
    let send = || {
        agent
            .mtls()
            .post(&url)
            .header("DPoP", proof.clone())
            .form(&[
                ("grant_type", common::agents::TOKEN_EXCHANGE),
                ("authorization_details", &file_task().to_string()),
            ])
            .send()
    };
    let first = common::agents::answer(send().await.unwrap()).await;
    assert_eq!(first.0, 200, "{}", first.1);
    let again = common::agents::answer(send().await.unwrap()).await;
    assert_oauth_error(
        &again,
        400,
        "invalid_dpop_proof",
        "was already used (replay)",
    );
    node.finish().await;
}

// --- expiry, revocation, completion, suspension -----------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_is_refused_with_a_message_about_expiry() {
    let node = AgentNode::sqlite().await;
    let agent = node.agent("brief").await;
    let token = node
        .root_token(&agent, &task(&["files.read"], &["read"], 2))
        .await;
    assert_eq!(token.answer["expires_in"], 2, "{}", token.answer);
    let exp = token.claims()["exp"].as_i64().unwrap();
    assert_eq!(exp - token.claims()["iat"].as_i64().unwrap(), 2);
    assert_allowed(&node.call_with(&token, "files.read").await);
    while now() < exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = node.call_with(&token, "files.read").await;
    assert_token_refused(&got, &format!("token expired at {exp}"));
    // An expired parent cannot be delegated from either.
    let helper = node.agent("helper").await;
    let got = node.delegate(&token, &helper, &file_task()).await;
    assert_oauth_error(&got, 400, "invalid_request", "token expired at");
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_revocation_refuses_the_token_within_a_second() {
    let (node, _, token) = node_with_token().await;
    assert_allowed(&node.call_with(&token, "files.read").await);
    let revoked_at = Instant::now();
    assert_eq!(node.admin_revoke(&token.access_token).await, 200);
    let got = node.call_with(&token, "files.read").await;
    assert!(revoked_at.elapsed() < Duration::from_secs(1));
    assert_token_refused(&got, &format!("task {:?} has ended", token.task_id));
    assert_eq!(
        node.introspect(&token.access_token).await,
        json!({"active": false})
    );
    let (status, task) = node.task_view(&token.task_id).await;
    assert_eq!(status, 200);
    assert_eq!(task["state"], "revoked", "{task}");
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_holder_or_an_admin_can_revoke() {
    let (node, _, token) = node_with_token().await;
    let url = node.node.url("/oauth/revoke");
    // A stranger holding the token but not its key: no proof, or a proof of its own.
    let stranger = DpopKey::generate_es256().unwrap();
    for proof in [
        None,
        Some(stranger.proof("POST", &url, Some(&token.access_token), now())),
    ] {
        let mut request = node.http.post(&url).form(&[("token", &token.access_token)]);
        if let Some(p) = proof {
            request = request.header("DPoP", p);
        }
        let got = common::agents::answer(request.send().await.unwrap()).await;
        assert_oauth_error(
            &got,
            401,
            "invalid_client",
            "revocation needs the admin credential or proof of possession",
        );
    }
    assert_allowed(&node.call_with(&token, "files.read").await);
    // The holder, with a proof for the revocation endpoint.
    let response = node
        .http
        .post(&url)
        .header("DPoP", token.proof_for(&url))
        .form(&[("token", &token.access_token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let got = node.call_with(&token, "files.read").await;
    assert_token_refused(&got, "has ended");
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_completed_task_refuses_its_token() {
    let (node, _, token) = node_with_token().await;
    let (status, body) = node.complete(&token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "completed");
    let got = node.call_with(&token, "files.read").await;
    assert_token_refused(&got, &format!("task {:?} has ended", token.task_id));
    // Completing it again is refused the same way.
    let (status, body) = node.complete(&token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
    );
    let (_, task) = node.task_view(&token.task_id).await;
    assert_eq!(task["state"], "completed", "{task}");
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_cannot_be_completed_with_another_tasks_token() {
    let (node, agent, token) = node_with_token().await;
    let other = node.root_token(&agent, &file_task()).await;
    let url = node.node.url(&format!("/tasks/{}/complete", token.task_id));
    let response = node
        .http
        .post(&url)
        .header("Authorization", format!("DPoP {}", other.access_token))
        .header("DPoP", other.proof_for(&url))
        .send()
        .await
        .unwrap();
    let got = common::agents::answer(response).await;
    assert_oauth_error(&got, 403, "insufficient_scope", &other.task_id);
    assert_allowed(&node.call_with(&token, "files.read").await);
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn suspending_the_agent_refuses_its_tokens_and_resuming_lets_them_through() {
    let (node, agent, token) = node_with_token().await;
    let env = node.admin_env();
    assert_allowed(&node.call_with(&token, "files.read").await);
    let out = mandate_env(&["agent", "suspend", &agent.name], &env);
    let shown = ok(&out, "mandate agent suspend");
    let suspended_at = Instant::now();
    assert!(shown.contains("suspended"), "{shown}");
    let got = node.call_with(&token, "files.read").await;
    assert!(suspended_at.elapsed() < Duration::from_secs(1));
    assert_token_refused(&got, &format!("agent {} is suspended", agent.spiffe_id));
    // Nor can it get a new token while suspended.
    let got = node
        .token_request(&agent.mtls(), &[], Some(&agent.dpop_key()), &file_task())
        .await;
    assert_oauth_error(&got, 400, "unauthorized_client", "is suspended");

    ok(
        &mandate_env(&["agent", "resume", &agent.name], &env),
        "mandate agent resume",
    );
    assert_allowed(&node.call_with(&token, "files.read").await);
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_agents_tokens_stay_dead_when_its_name_is_registered_again() {
    let (node, agent, token) = node_with_token().await;
    assert_allowed(&node.call_with(&token, "files.read").await);
    let (status, _) = node
        .admin_call(Method::DELETE, "/admin/v1/agents/reader", None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = node.call_with(&token, "files.read").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
    );
    // Someone registers an agent of the same name, so the same SPIFFE ID.
    let newcomer = node.agent("reader").await;
    assert_eq!(newcomer.spiffe_id, agent.spiffe_id);
    assert_token_refused(
        &node.call_with(&token, "files.read").await,
        &format!("task {:?} has ended", token.task_id),
    );
    // The newcomer gets its own tokens, and they work.
    let fresh = node.root_token(&newcomer, &file_task()).await;
    assert_allowed(&node.call_with(&fresh, "files.read").await);
    node.finish().await;
}

// --- delegation ------------------------------------------------------------

/// The parent of the delegation tests: both file tools, read and delegate.
fn delegating_task() -> Value {
    task(&["files.read", "files.list"], &["read", "delegate"], 300)
}

/// The agents of a delegation chain, `lead`, `helper` and `intern` (registered
/// in that order), and the lead's root token for [`delegating_task`].
async fn chain_agents(node: &AgentNode) -> (Agent, Agent, Agent, Token) {
    let lead = node.agent("lead").await;
    let helper = node.agent("helper").await;
    let intern = node.agent("intern").await;
    let parent = node.root_token(&lead, &delegating_task()).await;
    (lead, helper, intern, parent)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sub_agent_cannot_ask_for_a_tool_its_parent_lacks() {
    let node = AgentNode::sqlite().await;
    let (lead, helper) = (node.agent("lead").await, node.agent("helper").await);
    let parent = node.root_token(&lead, &delegating_task()).await;
    let got = node
        .delegate(
            &parent,
            &helper,
            &task(&["files.read", "mail.send"], &["read"], 60),
        )
        .await;
    assert_oauth_error(
        &got,
        400,
        "invalid_authorization_details",
        "tool \"mail.send\" is not granted to the parent",
    );
    // A capability the parent lacks is refused the same way.
    let got = node
        .delegate(&parent, &helper, &task(&["files.read"], &["act"], 60))
        .await;
    assert_oauth_error(
        &got,
        400,
        "invalid_authorization_details",
        "capability \"act\" is not held by the parent",
    );
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sub_agent_cannot_outlive_its_parent() {
    let node = AgentNode::sqlite().await;
    let (lead, helper) = (node.agent("lead").await, node.agent("helper").await);
    let parent = node
        .root_token(&lead, &task(&["files.read"], &["read", "delegate"], 60))
        .await;
    let got = node
        .delegate(&parent, &helper, &task(&["files.read"], &["read"], 600))
        .await;
    assert_oauth_error(
        &got,
        400,
        "invalid_authorization_details",
        "ttl_seconds 600 exceeds the parent's remaining",
    );
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parent_without_delegate_cannot_delegate() {
    let node = AgentNode::sqlite().await;
    let (lead, helper) = (node.agent("lead").await, node.agent("helper").await);
    let parent = node
        .root_token(&lead, &task(&["files.read"], &["read"], 300))
        .await;
    let got = node
        .delegate(&parent, &helper, &task(&["files.read"], &["read"], 60))
        .await;
    assert_oauth_error(
        &got,
        400,
        "access_denied",
        "the parent task does not hold the delegate capability",
    );
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delegation_deeper_than_the_limit_is_refused() {
    let store = TestStore::new(Backend::Sqlite).await;
    let node = AgentNode::start(store, &[], &[("MANDATE_MAX_DELEGATION_DEPTH", "1")]);
    let (_, helper, intern, root) = chain_agents(&node).await;
    let (status, body) = node
        .delegate(
            &root,
            &helper,
            &task(&["files.read"], &["read", "delegate"], 120),
        )
        .await;
    assert_eq!(status, 200, "depth 1 is within the limit: {body}");
    let child = Token::from_answer(&body, helper.dpop_key());
    let got = node
        .delegate(&child, &intern, &task(&["files.read"], &["read"], 60))
        .await;
    assert_oauth_error(
        &got,
        400,
        "access_denied",
        "delegation depth 2 exceeds the limit of 1",
    );
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_child_works_and_dies_with_its_parent() {
    let node = AgentNode::sqlite().await;
    let (lead, helper, intern, parent) = chain_agents(&node).await;

    let (status, body) = node
        .delegate(
            &parent,
            &helper,
            &task(&["files.read"], &["read", "delegate"], 120),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(
        body["authorization_details"][0]["tools"],
        json!(["files.read"])
    );
    let child = Token::from_answer(&body, helper.dpop_key());
    // The child is the helper's, bound to its key, on behalf of the lead.
    let claims = node.introspect(&child.access_token).await;
    assert_eq!(claims["active"], true, "{claims}");
    assert_eq!(claims["sub"], lead.spiffe_id.as_str(), "{claims}");
    assert_eq!(claims["act"]["sub"], helper.spiffe_id.as_str(), "{claims}");
    assert_eq!(claims["task_chain"], json!([parent.task_id]), "{claims}");
    assert_eq!(claims["agent"], "helper", "{claims}");
    assert_eq!(claims["cnf"]["jkt"], helper.dpop_key().thumbprint());
    assert_allowed(&node.call_with(&child, "files.read").await);
    // Narrowed: files.list was the parent's, not the child's.
    let (status, body) = node.call_with(&child, "files.list").await;
    assert_eq!((status, &body["decision"]), (200, &json!(false)), "{body}");
    // The lead's key does not work with the helper's token.
    let stolen = Token {
        access_token: child.access_token.clone(),
        task_id: child.task_id.clone(),
        answer: child.answer.clone(),
        key: lead.dpop_key(),
    };
    assert_token_refused(
        &node.call_with(&stolen, "files.read").await,
        "is not the key the token is bound to",
    );

    let (status, body) = node
        .delegate(&child, &intern, &task(&["files.read"], &["read"], 60))
        .await;
    assert_eq!(status, 200, "{body}");
    let grandchild = Token::from_answer(&body, intern.dpop_key());
    let claims = node.introspect(&grandchild.access_token).await;
    assert_eq!(claims["sub"], lead.spiffe_id.as_str(), "{claims}");
    assert_eq!(claims["act"]["sub"], intern.spiffe_id.as_str(), "{claims}");
    assert_eq!(
        claims["act"]["act"]["sub"],
        helper.spiffe_id.as_str(),
        "{claims}"
    );
    assert_eq!(
        claims["task_chain"],
        json!([parent.task_id, child.task_id]),
        "{claims}"
    );
    assert_allowed(&node.call_with(&grandchild, "files.read").await);

    // Revoking the parent ends the whole tree at once.
    assert_eq!(node.admin_revoke(&parent.access_token).await, 200);
    let ended = format!("task {:?} has ended", parent.task_id);
    for token in [&parent, &child, &grandchild] {
        assert_token_refused(&node.call_with(token, "files.read").await, &ended);
    }
    let (_, task_view) = node.task_view(&grandchild.task_id).await;
    assert_eq!(task_view["state"], "revoked", "{task_view}");
    // And nothing more can be delegated from it.
    let got = node
        .delegate(&child, &intern, &task(&["files.read"], &["read"], 60))
        .await;
    assert_oauth_error(&got, 400, "invalid_request", "has ended");
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn suspending_an_agent_in_the_middle_of_a_chain_refuses_the_tokens_below_it() {
    let node = AgentNode::sqlite().await;
    let (_, helper, intern, parent) = chain_agents(&node).await;
    let (_, body) = node
        .delegate(
            &parent,
            &helper,
            &task(&["files.read"], &["read", "delegate"], 120),
        )
        .await;
    let child = Token::from_answer(&body, helper.dpop_key());
    let (_, body) = node
        .delegate(&child, &intern, &task(&["files.read"], &["read"], 60))
        .await;
    let grandchild = Token::from_answer(&body, intern.dpop_key());
    assert_allowed(&node.call_with(&grandchild, "files.read").await);
    let (status, _) = node
        .admin_call(Method::POST, "/admin/v1/agents/helper/suspend", None)
        .await;
    assert_eq!(status, 200);
    assert_token_refused(
        &node.call_with(&grandchild, "files.read").await,
        &format!("agent {} is suspended", helper.spiffe_id),
    );
    // The lead's own task does not go through the helper: it still works.
    assert_allowed(&node.call_with(&parent, "files.read").await);
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sub_agent_gets_only_what_policy_lets_it_hold_itself() {
    let node = AgentNode::sqlite().await;
    let lead = node.agent("lead").await;
    // Policy lets only dev agents hold the file tools.
    let outsider = node.agent_in("outsider", "prod").await;
    let parent = node.root_token(&lead, &delegating_task()).await;
    let got = node
        .delegate(&parent, &outsider, &task(&["files.read"], &["read"], 60))
        .await;
    assert_oauth_error(
        &got,
        403,
        "access_denied",
        "policy allows this agent none of the requested tools",
    );
    // Nor can an agent delegate to itself.
    let got = node
        .delegate(&parent, &lead, &task(&["files.read"], &["read"], 60))
        .await;
    assert_oauth_error(&got, 400, "invalid_request", "cannot delegate to itself");
    node.finish().await;
}

// --- mTLS-bound tokens ---------------------------------------------------------

/// Writes an agent's files as `mandate agent create` does.
fn write_agent_dir(agent: &Agent, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("svid.pem"), &agent.cert_pem).unwrap();
    std::fs::write(dir.join("svid.key"), &agent.key_pem).unwrap();
    std::fs::write(dir.join("bundle.pem"), &agent.bundle_pem).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_mtls_bound_token_needs_the_same_client_certificate() {
    let node = AgentNode::sqlite().await;
    let agent = node.agent("bound").await;
    let other = node.agent("other").await;
    let work = tempfile::tempdir().unwrap();
    write_agent_dir(&agent, &work.path().join("bound"));
    let token_file = work.path().join("token.txt");
    let out = mandate_env(
        &[
            "token",
            "request",
            "--svid",
            work.path().join("bound").to_str().unwrap(),
            "--server",
            node.tls(),
            "--purpose",
            "read a report",
            "--tool",
            "files.read",
            "--binding",
            "mtls",
            "--out",
            token_file.to_str().unwrap(),
        ],
        &[],
    );
    let answer: Value = serde_json::from_str(&ok(&out, "mandate token request")).unwrap();
    assert_eq!(answer["token_type"], "Bearer", "{answer}");
    let token = std::fs::read_to_string(&token_file).unwrap();
    let cnf = &jwt_part(&token, 1)["cnf"];
    assert!(
        cnf["x5t#S256"].is_string() && cnf.get("jkt").is_none(),
        "{cnf}"
    );

    // With the agent's certificate on the TLS listener: allowed.
    assert_allowed(&evaluate(&agent.mtls(), node.tls(), &token, None, "files.read").await);
    // Without a client certificate, on either listener.
    let got = evaluate(
        &node.anonymous_tls(),
        node.tls(),
        &token,
        None,
        "files.read",
    )
    .await;
    assert_token_refused(&got, "the request presented none");
    let got = node.call(&token, None, "files.read").await;
    assert_token_refused(&got, "the request presented none");
    // A DPoP proof with the agent's key does not stand in for the certificate.
    let proof = agent
        .dpop_key()
        .proof("POST", &evaluation_url(&node), Some(&token), now());
    let got = node.call(&token, Some(&proof), "files.read").await;
    assert_token_refused(&got, "the request presented none");
    // Another agent's (valid) certificate.
    let got = evaluate(&other.mtls(), node.tls(), &token, None, "files.read").await;
    assert_token_refused(
        &got,
        "the client certificate presented is not the one the token is bound to",
    );
    // Another agent cannot revoke it either; its holder can, with its certificate.
    let revoke = format!("{}/oauth/revoke", node.tls());
    let got = common::agents::answer(
        other
            .mtls()
            .post(&revoke)
            .form(&[("token", &token)])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_oauth_error(&got, 401, "invalid_client", "proof of possession");
    assert_allowed(&evaluate(&agent.mtls(), node.tls(), &token, None, "files.read").await);
    let response = agent
        .mtls()
        .post(&revoke)
        .form(&[("token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let got = evaluate(&agent.mtls(), node.tls(), &token, None, "files.read").await;
    assert_token_refused(&got, "has ended");
    node.finish().await;
}

// --- identities at the token endpoint -------------------------------------------

/// A fresh key and a certificate for it, to present as a client certificate.
struct Presented {
    cert_pem: String,
    key_pem: String,
}

impl Presented {
    fn client(&self, node: &AgentNode) -> reqwest::Client {
        tls_client(&node.ca_pem(), Some((&self.cert_pem, &self.key_pem)))
    }

    fn dpop(&self) -> DpopKey {
        DpopKey::from_pkcs8_pem(&self.key_pem).unwrap()
    }

    /// Asks for a [`file_task`] token presenting this certificate, with a
    /// DPoP proof made with its key.
    async fn request_token(&self, node: &AgentNode) -> (u16, Value) {
        node.token_request(&self.client(node), &[], Some(&self.dpop()), &file_task())
            .await
    }
}

/// An X.509-SVID for `id` from `ca`, valid from `now` for `ttl` seconds.
fn svid_from(ca: &BuiltinCa, id: &str, now: i64, ttl: u64) -> Presented {
    let (key_pem, public) = generate_agent_key().unwrap();
    let cert_pem = ca
        .issue_x509_svid(&SpiffeId::parse(id).unwrap(), &public, now, ttl)
        .unwrap();
    Presented { cert_pem, key_pem }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_from_an_untrusted_ca_is_refused() {
    let node = AgentNode::sqlite().await;
    let agent = node.agent("victim").await;
    // A CA of its own for the same trust domain, vouching for the same agent.
    let rogue = BuiltinCa::generate("mandate.local", now(), 1).unwrap();
    let forged = svid_from(&rogue, &agent.spiffe_id, now(), 3600);
    let got = forged.request_token(&node).await;
    assert_oauth_error(
        &got,
        401,
        "invalid_client",
        "certificate chain does not lead to a trust anchor of trust domain mandate.local",
    );
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_svid_is_refused() {
    let node = AgentNode::sqlite().await;
    let agent = node.agent("lapsed").await;
    // Issued by the node's own CA, but two hours ago for ten minutes.
    let expired = svid_from(&node.ca(), &agent.spiffe_id, now() - 7200, 600);
    let got = expired.request_token(&node).await;
    assert_oauth_error(&got, 401, "invalid_client", "X.509-SVID expired at");
    // The same agent with its current SVID is fine. (A current SVID from the
    // same CA for another key is not: the registry pins the agent's key.)
    let (status, body) = node
        .token_request(&agent.mtls(), &[], Some(&agent.dpop_key()), &file_task())
        .await;
    assert_eq!(status, 200, "{body}");
    let other_key = svid_from(&node.ca(), &agent.spiffe_id, now(), 600);
    let got = other_key.request_token(&node).await;
    assert_oauth_error(&got, 400, "unauthorized_client", "no longer");
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_without_a_spiffe_id_is_refused() {
    let node = AgentNode::sqlite().await;
    // Signed by the node's own CA, but with a DNS name instead of a SPIFFE ID.
    let ca_key = std::fs::read_to_string(node.data_dir().join("ca/ca.key")).unwrap();
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&node.ca_pem(), rcgen::KeyPair::from_pem(&ca_key).unwrap())
            .unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["agent.example".to_owned()]).unwrap();
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let presented = Presented {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    };
    let got = presented.request_token(&node).await;
    assert_oauth_error(
        &got,
        401,
        "invalid_client",
        "certificate has no SPIFFE ID (no URI SAN)",
    );
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unregistered_agent_with_a_valid_svid_is_refused() {
    let node = AgentNode::sqlite().await;
    let ghost = svid_from(&node.ca(), "spiffe://mandate.local/agent/ghost", now(), 600);
    let got = ghost.request_token(&node).await;
    assert_oauth_error(
        &got,
        400,
        "unauthorized_client",
        "agent spiffe://mandate.local/agent/ghost is not registered",
    );
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_suspended_or_deleted_agent_gets_no_token() {
    let node = AgentNode::sqlite().await;
    let agent = node.agent("paused").await;
    let (status, _) = node
        .admin_call(Method::POST, "/admin/v1/agents/paused/suspend", None)
        .await;
    assert_eq!(status, 200);
    let got = node
        .token_request(&agent.mtls(), &[], Some(&agent.dpop_key()), &file_task())
        .await;
    assert_oauth_error(
        &got,
        400,
        "unauthorized_client",
        &format!("agent {} is suspended", agent.spiffe_id),
    );
    let (status, _) = node
        .admin_call(Method::DELETE, "/admin/v1/agents/paused", None)
        .await;
    assert_eq!(status, 204);
    let got = node
        .token_request(&agent.mtls(), &[], Some(&agent.dpop_key()), &file_task())
        .await;
    assert_oauth_error(&got, 400, "unauthorized_client", "is not registered");
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_request_that_proves_no_key_is_refused() {
    let node = AgentNode::sqlite().await;
    let agent = node.agent("unbound").await;
    // Over plain HTTP: no certificate, no proof. The identity is missing first.
    let got = token_post(
        &node.http,
        &node.node.url("/oauth/token"),
        &[],
        None,
        &file_task(),
    )
    .await;
    assert_oauth_error(&got, 401, "invalid_client", "no agent identity");
    // A proof for another endpoint is not a proof for this one.
    let key = agent.dpop_key();
    let wrong = key.proof("POST", &node.node.url("/oauth/token"), None, now());
    let response = agent
        .mtls()
        .post(format!("{}/oauth/token", node.tls()))
        .header("DPoP", wrong)
        .form(&[
            ("grant_type", common::agents::TOKEN_EXCHANGE),
            ("authorization_details", &file_task().to_string()),
        ])
        .send()
        .await
        .unwrap();
    let got = common::agents::answer(response).await;
    assert_oauth_error(&got, 400, "invalid_dpop_proof", "DPoP proof is for");
    node.finish().await;
}

// --- SPIRE interop ---------------------------------------------------------------

/// A node trusting the SPIRE fixture bundle of example.org, JWT-SVID audience
/// "mandate", with `spiffe://example.org/workload` registered as agent
/// "workload" (env dev).
async fn spire_node() -> AgentNode {
    let store = TestStore::new(Backend::Sqlite).await;
    let config = store.dir.path().join("mandate.toml");
    std::fs::write(
        &config,
        format!(
            "trust_bundles = [{{ trust_domain = \"example.org\", path = {:?} }}]\njwt_svid_audience = \"mandate\"\n",
            spire_fixtures().join("bundle.json").to_str().unwrap()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let node = AgentNode::start(store, &["--config", &config], &[]);
    let (status, body) = node
        .admin_call(
            Method::POST,
            "/admin/v1/agents",
            Some(&json!({
                "name": "workload",
                "owner": "platform@example.org",
                "env": "dev",
                "function": "a SPIRE-attested workload",
                "spiffe_id": "spiffe://example.org/workload",
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(body.get("svid").is_none_or(Value::is_null), "{body}");
    node
}

fn spire_jwt(name: &str) -> String {
    std::fs::read_to_string(spire_fixtures().join("jwt").join(format!("{name}.jwt")))
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spire_jwt_svid_obtains_a_token_that_works() {
    let node = spire_node().await;
    let url = node.node.url("/oauth/token");
    for name in ["es256", "rs256"] {
        let key = DpopKey::generate_es256().unwrap();
        let svid = spire_jwt(name);
        let (status, body) = token_post(
            &node.http,
            &url,
            &[("subject_token", &svid), ("subject_token_type", TYPE_JWT)],
            Some(&key),
            &file_task(),
        )
        .await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["token_type"], "DPoP", "{name}: {body}");
        let token = Token::from_answer(&body, key);
        let claims = token.claims();
        assert_eq!(claims["sub"], "spiffe://example.org/workload", "{name}");
        assert_eq!(claims["cnf"]["jkt"], token.key.thumbprint(), "{name}");
        assert_allowed(&node.call_with(&token, "files.read").await);
    }
    // Without a proof, a JWT-SVID alone binds the token to nothing: refused.
    let got = token_post(
        &node.http,
        &url,
        &[
            ("subject_token", &spire_jwt("es256")),
            ("subject_token_type", TYPE_JWT),
        ],
        None,
        &file_task(),
    )
    .await;
    assert_oauth_error(&got, 400, "invalid_request", "must be bound to a key");
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spire_x509_svid_obtains_a_token_over_mtls() {
    let node = spire_node().await;
    let dir = spire_fixtures();
    let chain = std::fs::read_to_string(dir.join("workload.pem")).unwrap();
    let key = std::fs::read_to_string(dir.join("workload.key")).unwrap();
    let client = tls_client(&node.ca_pem(), Some((&chain, &key)));
    // Bound to the certificate (no DPoP proof): cnf is openssl's x5t#S256.
    let (status, body) = node.token_request(&client, &[], None, &file_task()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer", "{body}");
    let token = body["access_token"].as_str().unwrap();
    let claims = jwt_part(token, 1);
    assert_eq!(claims["sub"], "spiffe://example.org/workload");
    let x5t = std::fs::read_to_string(dir.join("workload.x5t")).unwrap();
    assert_eq!(claims["cnf"]["x5t#S256"], x5t.trim(), "{claims}");
    assert_allowed(&evaluate(&client, node.tls(), token, None, "files.read").await);
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spire_workload_can_be_a_sub_agent_with_its_jwt_svid_as_actor_token() {
    let node = spire_node().await;
    let lead = node.agent("lead").await;
    let parent = node.root_token(&lead, &delegating_task()).await;
    let key = DpopKey::generate_es256().unwrap();
    let svid = spire_jwt("es256");
    let (status, body) = token_post(
        &node.http,
        &node.node.url("/oauth/token"),
        &[
            ("subject_token", &parent.access_token),
            ("subject_token_type", TYPE_ACCESS_TOKEN),
            ("actor_token", &svid),
            ("actor_token_type", TYPE_JWT),
        ],
        Some(&key),
        &task(&["files.read"], &["read"], 60),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let child = Token::from_answer(&body, key);
    let claims = child.claims();
    assert_eq!(claims["sub"], lead.spiffe_id.as_str(), "{claims}");
    assert_eq!(
        claims["act"]["sub"], "spiffe://example.org/workload",
        "{claims}"
    );
    assert_allowed(&node.call_with(&child, "files.read").await);
    // An actor_token for another audience is no identity.
    let got = token_post(
        &node.http,
        &node.node.url("/oauth/token"),
        &[
            ("subject_token", &parent.access_token),
            ("subject_token_type", TYPE_ACCESS_TOKEN),
            ("actor_token", &spire_jwt("aud-other")),
            ("actor_token_type", TYPE_JWT),
        ],
        Some(&DpopKey::generate_es256().unwrap()),
        &task(&["files.read"], &["read"], 60),
    )
    .await;
    assert_oauth_error(
        &got,
        400,
        "invalid_request",
        "actor_token is not a valid JWT-SVID: JWT-SVID audience",
    );
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_svids_that_are_not_for_us_are_refused() {
    let node = spire_node().await;
    let url = node.node.url("/oauth/token");
    let cases = [
        (
            "aud-other",
            "JWT-SVID audience [\"other\"] does not include \"mandate\"",
        ),
        ("expired", "JWT-SVID expired at"),
        ("alg-none", "JWT-SVID algorithm \"none\" is refused"),
        (
            "hs256-rsa-pubkey",
            "JWT-SVID algorithm \"HS256\" is refused",
        ),
        (
            "unknown-kid",
            "JWT-SVID kid \"no-such-kid\" is not a JWT authority",
        ),
    ];
    for (name, needle) in cases {
        let key = DpopKey::generate_es256().unwrap();
        let got = token_post(
            &node.http,
            &url,
            &[
                ("subject_token", &spire_jwt(name)),
                ("subject_token_type", TYPE_JWT),
            ],
            Some(&key),
            &file_task(),
        )
        .await;
        assert_oauth_error(&got, 400, "invalid_request", needle);
        let description = got.1["error_description"].as_str().unwrap();
        assert!(
            description.starts_with("subject_token is not a valid JWT-SVID"),
            "{name}: {description}"
        );
    }
    node.finish().await;
}

// --- the audit trail ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn every_issuance_refusal_and_ending_is_audited_in_an_intact_log() {
    let node = AgentNode::sqlite().await;
    let lead = node.agent("lead").await;
    let helper = node.agent("helper").await;
    let parent = node.root_token(&lead, &delegating_task()).await;
    let (status, body) = node
        .delegate(&parent, &helper, &task(&["files.read"], &["read"], 60))
        .await;
    assert_eq!(status, 200, "{body}");
    let child = Token::from_answer(&body, helper.dpop_key());
    // Refusals: a widened delegation, an unregistered agent.
    let got = node
        .delegate(&parent, &helper, &task(&["mail.send"], &["read"], 60))
        .await;
    assert_eq!(got.1["error"], "invalid_authorization_details");
    let ghost = svid_from(&node.ca(), "spiffe://mandate.local/agent/ghost", now(), 600);
    let got = ghost.request_token(&node).await;
    assert_eq!(got.1["error"], "unauthorized_client");
    // A revocation and a completion.
    assert_eq!(node.admin_revoke(&child.access_token).await, 200);
    assert_eq!(node.complete(&parent).await.0, 200);
    let tokens = [parent.access_token.clone(), child.access_token.clone()];

    let database = node.store.url.clone();
    let data_dir = node.data_dir().to_str().unwrap().to_owned();
    node.finish_keep(|| {
        let out = mandate_env(
            &[
                "audit",
                "verify",
                "--data-dir",
                &data_dir,
                "--database",
                &database,
            ],
            &[],
        );
        let text = ok(&out, "mandate audit verify");
        assert!(text.starts_with("audit log intact: "), "{text}");
        assert!(text.contains("seal checked"), "{text}");
        let out = mandate_env(
            &[
                "audit",
                "tail",
                "--database",
                &database,
                "--json",
                "-n",
                "50",
            ],
            &[],
        );
        let tail = ok(&out, "mandate audit tail");
        let records: Vec<Value> = tail
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let kinds: Vec<&str> = records
            .iter()
            .map(|r| r["kind"].as_str().unwrap_or_default())
            .collect();
        for kind in [
            "agent_changed",
            "token_issued",
            "token_delegated",
            "token_refused",
            "task_revoked",
            "task_completed",
        ] {
            assert!(kinds.contains(&kind), "no {kind} record in {kinds:?}");
        }
        let refusals: Vec<&Value> = records
            .iter()
            .filter(|r| r["kind"] == "token_refused")
            .collect();
        assert_eq!(refusals.len(), 2, "{refusals:?}");
        let reasons: Vec<&str> = refusals
            .iter()
            .map(|r| r["detail"]["error"].as_str().unwrap_or_default())
            .collect();
        assert!(
            reasons.contains(&"invalid_authorization_details"),
            "{reasons:?}"
        );
        assert!(reasons.contains(&"unauthorized_client"), "{reasons:?}");
        // Tokens are credentials: never written to the log.
        for token in &tokens {
            assert!(
                !tail.contains(token.as_str()),
                "a token is in the audit log"
            );
        }
    })
    .await;
}

// --- signing key rotation ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn tokens_signed_before_a_key_rotation_still_verify() {
    let (node, agent, before) = node_with_token().await;
    let old_kid = before.header()["kid"].as_str().unwrap().to_owned();
    let out = mandate_env(&["keys", "rotate"], &node.admin_env());
    let text = ok(&out, "mandate keys rotate");
    let new_kid = text
        .strip_prefix("active signing key ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("unexpected output: {text}"))
        .to_owned();
    assert_ne!(new_kid, old_kid);
    assert!(text.contains(&format!("retired {old_kid}")), "{text}");

    // Issued before: still good within the overlap.
    assert_allowed(&node.call_with(&before, "files.read").await);
    assert_eq!(node.introspect(&before.access_token).await["active"], true);
    // Issued after: signed with the new key.
    let after = node.root_token(&agent, &file_task()).await;
    assert_eq!(after.header()["kid"], new_kid.as_str());
    assert_allowed(&node.call_with(&after, "files.read").await);
    // The JWKS publishes both.
    let jwks: Value = node
        .http
        .get(node.node.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert!(
        kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()),
        "{jwks}"
    );
    node.finish().await;
}

// --- the admin API ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_needs_the_admin_credential_and_checks_what_it_is_given() {
    let node = AgentNode::sqlite().await;
    let agents = node.node.url("/admin/v1/agents");
    let body = json!({
        "name": "sneaky",
        "owner": "eve@example.com",
        "env": "dev",
        "function": "should not exist",
    });
    for credential in [
        None,
        Some("mandate_admin_not-the-credential"),
        Some(node.admin.get(..node.admin.len() - 1).unwrap()),
    ] {
        for request in [
            node.http.get(&agents),
            node.http.post(&agents).json(&body),
            node.http.post(node.node.url("/admin/v1/keys/rotate")),
        ] {
            let request = match credential {
                Some(c) => request.bearer_auth(c),
                None => request,
            };
            let (status, answer) = common::agents::answer(request.send().await.unwrap()).await;
            assert_eq!(status, 401, "{credential:?}: {answer}");
            assert_eq!(answer["error"], "unauthorized", "{answer}");
            assert!(
                answer["message"]
                    .as_str()
                    .unwrap()
                    .contains("needs the admin credential"),
                "{answer}"
            );
        }
    }
    // Introspection is for administrators too.
    let response = node
        .http
        .post(node.node.url("/oauth/introspect"))
        .form(&[("token", "anything")])
        .send()
        .await
        .unwrap();
    let got = common::agents::answer(response).await;
    assert_oauth_error(
        &got,
        401,
        "invalid_client",
        "introspection needs the admin credential",
    );
    let (status, list) = node.admin_call(Method::GET, "/admin/v1/agents", None).await;
    assert_eq!(
        (status, &list["agents"]),
        (200, &json!([])),
        "nothing was created"
    );

    let got = node
        .admin_call(
            Method::POST,
            "/admin/v1/agents",
            Some(&json!({"name": "a", "owner": "not-an-email", "env": "dev", "function": "x"})),
        )
        .await;
    assert_api_error(&got, 400, "bad_request", "owner must be an e-mail address");
    // Without env: the message names the missing field.
    let got = node
        .admin_call(
            Method::POST,
            "/admin/v1/agents",
            Some(&json!({"name": "a", "owner": "a@example.com", "function": "x"})),
        )
        .await;
    assert_api_error(&got, 400, "bad_request", "env");

    node.agent("twice").await;
    let got = node
        .admin_call(
            Method::POST,
            "/admin/v1/agents",
            Some(
                &json!({"name": "twice", "owner": "b@example.com", "env": "dev", "function": "y"}),
            ),
        )
        .await;
    assert_api_error(&got, 409, "conflict", "twice");
    // The CLI says so too, and exits 1.
    let work = tempfile::tempdir().unwrap();
    let out = mandate_env(
        &[
            "agent",
            "create",
            "twice",
            "--owner",
            "b@example.com",
            "--env",
            "dev",
            "--function",
            "y",
            "--out",
            work.path().join("twice").to_str().unwrap(),
        ],
        &node.admin_env(),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("409"), "{stderr}");
    node.finish().await;
}
