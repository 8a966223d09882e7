//! Human approvals with the real binary, on SQLite and PostgreSQL: the queue
//! through the CLI and the admin API, named approvers, the refusal of every
//! agent credential, conflicts on holds that left `pending`, the sweep of
//! expired holds, a second node seeing a new approver, and the whole loop
//! through AuthZEN with a signed webhook.
//!
//! Most holds here are written into the store directly, as a gateway on any
//! node would have left them: the node under test reads them from there.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::agents::{AgentNode, mandate_env, ok, task};
use common::{Node, TestStore, audit_records, backends};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// An approval ID of the real form: `apr_` and 22 base64url characters.
fn hold_id(n: u32) -> String {
    format!("apr_{n:A>22}")
}

/// Writes a hold of `agent_name`'s task `task-<n>` into the store, in
/// `state`, expiring `expires_in_s` seconds from now.
async fn insert_hold(node: &AgentNode, n: u32, agent_name: &str, state: &str, expires_in_s: i64) {
    let store = &node.store;
    let now = now_us();
    store
        .exec(&format!(
            "INSERT INTO approvals (id, task_id, root_task_id, task_chain, agent, agent_name, \
             endpoint, upstream, action, resource, argument_digest, purpose, reasons, policies, \
             state, created_us, expires_us) VALUES ('{id}', 'task-{n}', 'task-{n}', '[]', \
             'spiffe://mandate.local/agent/{agent_name}', '{agent_name}', 'mcp', 'files', \
             'Action::\"call\"', 'Tool::\"files.write_file\"', '{digest}', \
             'write the Q3 summary', '[\"writing needs a person\"]', '[\"writes-need-approval\"]', \
             '{state}', {created}, {expires})",
            id = hold_id(n),
            digest = "ab".repeat(32),
            created = now - 1_000_000 + i64::from(n),
            expires = now + expires_in_s * 1_000_000,
        ))
        .await;
}

/// `mandate ARGS` against `node` with `credential`.
fn cli(node: &AgentNode, credential: &str, args: &[&str]) -> std::process::Output {
    mandate_env(
        args,
        &[
            ("MANDATE_SERVER", node.base()),
            ("MANDATE_ADMIN_TOKEN", credential),
        ],
    )
}

/// A new admin credential for `name`, made with the CLI.
fn new_approver(node: &AgentNode, name: &str) -> String {
    let out = cli(node, &node.admin, &["admin", "credential", "create", name]);
    let secret = ok(&out, "admin credential create").trim().to_owned();
    assert!(secret.starts_with("mandate_admin_"), "{secret}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("admin credential {name}")),
        "{out:?}"
    );
    secret
}

async fn approve_as(
    node: &AgentNode,
    id: &str,
    request: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> (u16, Value) {
    let url = node.node.url(&format!("/admin/v1/approvals/{id}/approve"));
    common::agents::answer(request(node.http.post(url)).send().await.unwrap()).await
}

#[tokio::test]
async fn the_queue_is_listed_shown_and_decided_with_the_cli_under_each_approvers_name() {
    for backend in backends() {
        let node = AgentNode::start(TestStore::new(backend).await, &[], &[]);
        for (n, state) in [(1, "pending"), (2, "pending"), (3, "denied")] {
            insert_hold(&node, n, "writer", state, 300).await;
        }
        let admin = node.admin.clone();

        let listed = ok(
            &cli(&node, &admin, &["approvals", "list"]),
            "approvals list",
        );
        assert_eq!(listed.lines().count(), 2, "{listed}");
        for (line, n) in listed.lines().zip([1, 2]) {
            assert!(line.starts_with(&hold_id(n)), "{line}");
            assert!(
                line.contains("pending") && line.contains("writer"),
                "{line}"
            );
            assert!(
                line.contains("Tool::\"files.write_file\"") && line.contains("expires 20"),
                "{line}"
            );
        }
        let all = ok(
            &cli(
                &node,
                &admin,
                &["approvals", "list", "--state", "all", "--json"],
            ),
            "approvals list --json",
        );
        let all: Value = serde_json::from_str(&all).unwrap();
        assert_eq!(all["approvals"].as_array().unwrap().len(), 3);
        let empty = ok(
            &cli(&node, &admin, &["approvals", "list", "--state", "used"]),
            "approvals list --state used",
        );
        assert_eq!(empty, "no used approvals\n");

        // A second person gets their own credential and approves under it.
        let alice = new_approver(&node, "alice");
        let first = hold_id(1);
        let out = cli(
            &node,
            &alice,
            &["approvals", "approve", &first, "--note", "checked the file"],
        );
        assert_eq!(
            ok(&out, "approvals approve"),
            format!(
                "approved {first} as alice: Action::\"call\" on Tool::\"files.write_file\" by writer runs once\n"
            )
        );
        let shown = ok(
            &cli(&node, &admin, &["approvals", "show", &first]),
            "approvals show",
        );
        for needle in [
            format!("approval   {first}\n"),
            "state      approved\n".to_owned(),
            "agent      writer (spiffe://mandate.local/agent/writer)\n".to_owned(),
            "purpose    write the Q3 summary\n".to_owned(),
            "call       Action::\"call\" on Tool::\"files.write_file\" (via mcp files)\n"
                .to_owned(),
            "reasons    writing needs a person\n".to_owned(),
            "note       checked the file\n".to_owned(),
        ] {
            assert!(shown.contains(&needle), "{needle:?} not in\n{shown}");
        }
        assert!(shown.contains(" by alice\n"), "{shown}");

        // Decided once: the second approval is a conflict naming the state.
        let again = cli(&node, &admin, &["approvals", "approve", &first]);
        assert!(!again.status.success());
        let stderr = String::from_utf8_lossy(&again.stderr);
        assert!(
            stderr.contains("409") && stderr.contains("is approved: only a pending approval"),
            "{stderr}"
        );

        let second = hold_id(2);
        let denied = ok(
            &cli(&node, &admin, &["approvals", "deny", &second, "--json"]),
            "approvals deny",
        );
        let denied: Value = serde_json::from_str(&denied).unwrap();
        assert_eq!(denied["approval"]["state"], "denied");
        assert_eq!(denied["approval"]["approver"], "admin");
        assert_eq!(denied["approval"]["decided_by"], "Admin::\"admin\"");

        let missing = cli(&node, &admin, &["approvals", "approve", &hold_id(9)]);
        assert!(!missing.status.success());
        let stderr = String::from_utf8_lossy(&missing.stderr);
        assert!(
            stderr.contains("404") && stderr.contains("no approval"),
            "{stderr}"
        );
        let bad = cli(&node, &admin, &["approvals", "show", "../agents"]);
        assert!(!bad.status.success());
        assert!(
            String::from_utf8_lossy(&bad.stderr).contains("is not an approval ID"),
            "{bad:?}"
        );
        let credentials = ok(
            &cli(&node, &alice, &["admin", "credential", "list"]),
            "admin credential list",
        );
        let names: Vec<&str> = credentials
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(names, ["admin", "alice"]);

        let records = audit_records(&node.store.url);
        let decided: Vec<(&str, &str, &str)> = records
            .iter()
            .filter(|r| r["kind"] == "approval_decided")
            .map(|r| {
                (
                    r["subject"].as_str().unwrap(),
                    r["outcome"].as_str().unwrap(),
                    r["detail"]["approver"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            decided,
            [
                ("Admin::\"alice\"", "approved", "alice"),
                ("Admin::\"admin\"", "denied", "admin"),
            ]
        );
        let approved = records.iter().find(|r| r["outcome"] == "approved").unwrap();
        assert_eq!(approved["detail"]["task_id"], "task-1");
        assert_eq!(approved["detail"]["approval_id"], first.as_str());
        assert_eq!(approved["detail"]["note"], "checked the file");
        assert_eq!(approved["resource"], "Tool::\"files.write_file\"");
        let created = records
            .iter()
            .find(|r| r["kind"] == "admin_access" && r["detail"]["name"] == "alice")
            .expect("the new credential is audited");
        assert_eq!(created["subject"], "Admin::\"admin\"");
        assert_eq!(created["outcome"], "created");
        // Only its hash is kept: the credential itself is nowhere in the log.
        assert!(!serde_json::to_string(&records).unwrap().contains(&alice));
        node.finish().await;
    }
}

#[tokio::test]
async fn an_agent_can_never_approve_not_even_holding_an_admin_credential() {
    for backend in backends() {
        let node = AgentNode::start(TestStore::new(backend).await, &[], &[]);
        insert_hold(&node, 1, "writer", "pending", 300).await;
        let agent = node.agent("writer").await;
        let token = node
            .root_token(&agent, &task(&["files.read"], &["read"], 300))
            .await;
        let id = hold_id(1);
        let url = node.node.url(&format!("/admin/v1/approvals/{id}/approve"));
        let admin = node.admin.clone();

        // The admin credential with the agent's DPoP proof beside it.
        let got = approve_as(&node, &id, |r| {
            r.bearer_auth(&admin).header("DPoP", token.proof_for(&url))
        })
        .await;
        assert_forbidden(&got, "a DPoP proof");
        // The agent's own DPoP-bound token and proof.
        let got = approve_as(&node, &id, |r| {
            r.header("Authorization", format!("DPoP {}", token.access_token))
                .header("DPoP", token.proof_for(&url))
        })
        .await;
        assert_forbidden(&got, "a DPoP proof");
        let got = approve_as(&node, &id, |r| {
            r.header("Authorization", format!("DPoP {}", token.access_token))
        })
        .await;
        assert_forbidden(&got, "a DPoP-bound task token");
        // The task token next to the admin credential.
        let got = approve_as(&node, &id, |r| {
            r.header("Authorization", format!("Bearer {}", token.access_token))
                .header("Authorization", format!("Bearer {admin}"))
        })
        .await;
        assert_forbidden(&got, "a task token");
        // A task token alone is no admin credential: 401.
        let got = approve_as(&node, &id, |r| r.bearer_auth(&token.access_token)).await;
        assert_eq!(got.0, 401, "{got:?}");
        assert_eq!(got.1["error"], "unauthorized");
        // The admin credential over the agent's own mTLS connection.
        let tls_url = format!("{}/admin/v1/approvals/{id}/approve", node.tls());
        let got = common::agents::answer(
            agent
                .mtls()
                .post(&tls_url)
                .bearer_auth(&admin)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_forbidden(&got, "a client certificate");
        // Denying is refused the same way.
        let deny = node.node.url(&format!("/admin/v1/approvals/{id}/deny"));
        let got = common::agents::answer(
            node.http
                .post(&deny)
                .bearer_auth(&admin)
                .header("DPoP", token.proof_for(&deny))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_forbidden(&got, "a DPoP proof");
        // Nor can a task token read the queue.
        let got = common::agents::answer(
            node.http
                .get(node.node.url("/admin/v1/approvals"))
                .bearer_auth(&token.access_token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(got.0, 401, "{got:?}");

        // Still pending, and every attempt is on record.
        let (status, shown) = node
            .admin_call(
                reqwest::Method::GET,
                &format!("/admin/v1/approvals/{id}"),
                None,
            )
            .await;
        assert_eq!(
            (status, shown["approval"]["state"].as_str()),
            (200, Some("pending"))
        );
        let refusals: Vec<Value> = audit_records(&node.store.url)
            .into_iter()
            .filter(|r| r["kind"] == "admin_access" && r["outcome"] == "refused")
            .collect();
        assert_eq!(refusals.len(), 7);
        // The one holding both names them both: the admin and the agent.
        assert!(
            refusals.iter().any(|r| r["subject"] == "Admin::\"admin\""
                && r["detail"]["claimed"]["sub"] == agent.spiffe_id.as_str()
                && r["detail"]["approval_id"] == id.as_str()),
            "{refusals:?}"
        );
        assert!(
            !serde_json::to_string(&refusals)
                .unwrap()
                .contains(&token.access_token)
        );

        // The person, alone, can.
        let got = approve_as(&node, &id, |r| r.bearer_auth(&admin)).await;
        assert_eq!(got.0, 200, "{got:?}");
        assert_eq!(got.1["approval"]["approver"], "admin");
        node.finish().await;
    }
}

#[track_caller]
fn assert_forbidden(got: &(u16, Value), what: &str) {
    assert_eq!(got.0, 403, "{got:?}");
    assert_eq!(got.1["error"], "forbidden", "{got:?}");
    let message = got.1["message"].as_str().unwrap();
    assert!(
        message.starts_with("an agent can never approve or deny") && message.contains(what),
        "{message}"
    );
}

#[tokio::test]
async fn holds_that_left_pending_are_conflicts_and_expired_ones_are_swept() {
    for backend in backends() {
        let node = AgentNode::start(TestStore::new(backend).await, &[], &[]);
        insert_hold(&node, 1, "writer", "pending", -5).await;
        insert_hold(&node, 2, "writer", "used", 300).await;
        insert_hold(&node, 3, "writer", "cancelled", 300).await;
        insert_hold(&node, 4, "writer", "pending", 300).await;
        for (n, state) in [(1, "expired"), (2, "used"), (3, "cancelled")] {
            let (status, body) = node
                .admin_call(
                    reqwest::Method::POST,
                    &format!("/admin/v1/approvals/{}/approve", hold_id(n)),
                    None,
                )
                .await;
            assert_eq!(status, 409, "{body}");
            assert_eq!(body["error"], "conflict");
            assert_eq!(body["state"], state, "{body}");
        }
        let (status, body) = node
            .admin_call(
                reqwest::Method::POST,
                &format!("/admin/v1/approvals/{}/deny", hold_id(77)),
                None,
            )
            .await;
        assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));

        // Bad bodies and queries are named, and decide nothing.
        let open = hold_id(4);
        let url = node
            .node
            .url(&format!("/admin/v1/approvals/{open}/approve"));
        for (body, content_type, status, needle) in [
            (r#"{"note": 5}"#, "application/json", 400, "note"),
            (
                r#"{"note": "x", "approve": true}"#,
                "application/json",
                400,
                "unknown field",
            ),
            ("looks fine", "text/plain", 415, "application/json"),
            (
                &format!(r#"{{"note": "{}"}}"#, "x".repeat(1001)),
                "application/json",
                400,
                "at most 1000",
            ),
        ] {
            let got = common::agents::answer(
                node.http
                    .post(&url)
                    .bearer_auth(&node.admin)
                    .header("content-type", content_type)
                    .body(body.to_owned())
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(got.0, status, "{body}: {got:?}");
            assert!(
                got.1["message"].as_str().unwrap().contains(needle),
                "{got:?}"
            );
        }
        for (query, needle) in [
            ("state=maybe", "state \"maybe\""),
            ("limit=0", "limit \"0\""),
            ("sort=new", "unknown query parameter"),
        ] {
            let (status, body) = node
                .admin_call(
                    reqwest::Method::GET,
                    &format!("/admin/v1/approvals?{query}"),
                    None,
                )
                .await;
            assert_eq!(status, 400, "{query}: {body}");
            assert!(body["message"].as_str().unwrap().contains(needle), "{body}");
        }
        let (_, shown) = node
            .admin_call(
                reqwest::Method::GET,
                &format!("/admin/v1/approvals/{open}"),
                None,
            )
            .await;
        assert_eq!(shown["approval"]["state"], "pending");

        // The hold whose time is up is expired by the node's sweep, on record.
        let start = Instant::now();
        loop {
            let (_, shown) = node
                .admin_call(
                    reqwest::Method::GET,
                    &format!("/admin/v1/approvals/{}", hold_id(1)),
                    None,
                )
                .await;
            if shown["approval"]["state"] == "expired" {
                assert_eq!(shown["approval"]["decided_by"], "Mandate::\"timeout\"");
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{shown}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let records = audit_records(&node.store.url);
        let expired = records
            .iter()
            .find(|r| r["kind"] == "approval_decided" && r["outcome"] == "expired")
            .expect("the expiry is audited");
        assert_eq!(expired["subject"], "Mandate::\"timeout\"");
        assert_eq!(expired["detail"]["task_id"], "task-1");
        node.finish().await;
    }
}

#[tokio::test]
async fn an_approver_made_through_one_node_can_decide_through_another() {
    for backend in backends() {
        let first = AgentNode::start(TestStore::new(backend).await, &[], &[]);
        insert_hold(&first, 1, "writer", "pending", 300).await;
        let second = Node::start(
            &first.store.dir.path().join("data-2"),
            &first.store.url,
            &common::agents::agent_policies(),
            &[],
        );
        let bob = new_approver(&first, "bob");
        let url = second.url(&format!("/admin/v1/approvals/{}/approve", hold_id(1)));
        let start = Instant::now();
        let got = loop {
            let got = common::agents::answer(
                first
                    .http
                    .post(&url)
                    .bearer_auth(&bob)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            if got.0 != 401 {
                break got;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{got:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(got.0, 200, "{got:?}");
        assert_eq!(got.1["approval"]["approver"], "bob");
        drop(second);
        first.finish().await;
    }
}

/// The Python verification example of the README's webhook section.
fn readme_python_verifier() -> String {
    let readme = std::fs::read_to_string(common::repo_root().join("README.md")).unwrap();
    let section = &readme[readme
        .find("### Approval webhook")
        .expect("the README documents the webhook")..];
    let code = &section[section.find("```python\n").unwrap() + "```python\n".len()..];
    code[..code.find("```").unwrap()].to_owned()
}

/// Runs the README's `verify` on one delivery.
fn python_verifies(key: &str, headers: &axum::http::HeaderMap, body: &[u8], dir: &Path) -> bool {
    let body_file = dir.join(format!("body-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&body_file, body).unwrap();
    let script = format!(
        "{}\nimport sys\nheaders = {{'X-Mandate-Timestamp': sys.argv[2], 'X-Mandate-Signature': sys.argv[3]}}\n\
         print(verify(sys.argv[1].encode(), headers, open(sys.argv[4], 'rb').read()))\n",
        readme_python_verifier()
    );
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            &script,
            key,
            headers["x-mandate-timestamp"].to_str().unwrap(),
            headers["x-mandate-signature"].to_str().unwrap(),
            body_file.to_str().unwrap(),
        ])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim() == "True"
}

#[tokio::test]
async fn a_held_authzen_call_is_announced_approved_by_a_person_and_allowed_once() {
    // A webhook receiver on loopback.
    let (tx, mut deliveries) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let _ = tx.send((headers, body.to_vec()));
                async { "ok" }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let key = "approval-webhook-key-for-tests";

    // The example policies, and reading files needs a person.
    let policies = tempfile::tempdir().unwrap();
    common::agents::copy_agent_policies(policies.path());
    std::fs::write(
        policies.path().join("approvals.cedar"),
        "@id(\"reading-needs-a-person\")\n\
         @approval(\"reading files needs a person in this test\")\n\
         forbid (principal is Agent, action == Action::\"call\", resource == Tool::\"files.read\");\n",
    )
    .unwrap();

    for backend in backends() {
        let store = TestStore::new(backend).await;
        let node = AgentNode::start_with_policies(
            store,
            policies.path(),
            &[],
            &[
                ("MANDATE_APPROVAL_WEBHOOK_URL", hook.as_str()),
                ("MANDATE_APPROVAL_WEBHOOK_SECRET", key),
            ],
        );
        let agent = node.agent("reader").await;
        let token = node
            .root_token(&agent, &task(&["files.read"], &["read"], 300))
            .await;

        let (status, held) = node.call_with(&token, "files.read").await;
        assert_eq!(status, 200, "{held}");
        assert_eq!(held["decision"], false, "{held}");
        let approval = &held["context"]["approval"];
        assert_eq!(approval["status"], "pending", "{held}");
        let id = approval["id"].as_str().unwrap().to_owned();
        // Asking again waits on the same hold.
        let (_, again) = node.call_with(&token, "files.read").await;
        assert_eq!(again["context"]["approval"]["id"], id.as_str(), "{again}");

        // The webhook was told, signed so that the README's check accepts it.
        let (headers, body) = tokio::time::timeout(Duration::from_secs(10), deliveries.recv())
            .await
            .expect("the webhook is called")
            .unwrap();
        let announced: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(announced["approval"]["id"], id.as_str());
        assert_eq!(announced["approval"]["agent_name"], "reader");
        assert_eq!(
            announced["approval"]["reasons"],
            json!(["reading files needs a person in this test"])
        );
        let timestamp = headers["x-mandate-timestamp"].to_str().unwrap();
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(&body);
        assert_eq!(
            headers["x-mandate-signature"].to_str().unwrap(),
            format!("v1={}", hex::encode(mac.finalize().into_bytes()))
        );
        assert!(python_verifies(key, &headers, &body, node.store.dir.path()));
        let mut forged = body.clone();
        forged.push(b' ');
        assert!(!python_verifies(
            key,
            &headers,
            &forged,
            node.store.dir.path()
        ));
        // The key is in no log.
        assert!(!node.node.logs().contains(key));

        let listed = ok(
            &cli(&node, &node.admin, &["approvals", "list"]),
            "approvals list",
        );
        assert!(listed.starts_with(&id), "{listed}");
        ok(
            &cli(&node, &node.admin, &["approvals", "approve", &id]),
            "approvals approve",
        );

        let (status, allowed) = node.call_with(&token, "files.read").await;
        assert_eq!(
            (status, &allowed["decision"]),
            (200, &json!(true)),
            "{allowed}"
        );
        assert_eq!(allowed["context"]["approval"]["status"], "approved");
        assert_eq!(allowed["context"]["approval"]["approver"], "admin");
        // Once: the next identical call is held anew.
        let (_, next) = node.call_with(&token, "files.read").await;
        assert_eq!(next["decision"], false, "{next}");
        assert_ne!(next["context"]["approval"]["id"], id.as_str());

        let outcomes: Vec<String> = audit_records(&node.store.url)
            .into_iter()
            .filter(|r| r["detail"]["approval_id"] == id.as_str())
            .map(|r| {
                format!(
                    "{} {}",
                    r["kind"].as_str().unwrap(),
                    r["outcome"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            outcomes,
            [
                "approval_requested held",
                "approval_decided approved",
                "approval_decided used"
            ]
        );
        node.finish().await;
        // The announcement of the last hold, before the next backend's.
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_millis(500), deliveries.recv()).await
        {}
    }
}
