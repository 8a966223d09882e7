//! The agent quickstart, step by step, with the real `mandate` command line:
//! start a node with the shipped `policies/`, register an agent, obtain a DPoP-bound
//! task token for one tool, have a call of that tool allowed and a call of
//! another tool denied at the AuthZEN endpoint, complete the task, and see the
//! same token refused afterwards. On SQLite and on PostgreSQL.

mod common;

use common::agents::{AgentNode, mandate_env, ok};
use common::{TestStore, backends};
use serde_json::{Value, json};

/// `curl -s BASE/access/v1/evaluation -d '{"subject": {"type": "task_token", ...}}'`
async fn evaluation(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    proof: &str,
    tool: &str,
) -> (u16, Value) {
    let response = client
        .post(format!("{base}/access/v1/evaluation"))
        .header("content-type", "application/json")
        .body(
            json!({
                "subject": {"type": "task_token", "id": token, "properties": {"dpop_proof": proof}},
                "action": {"name": "call"},
                "resource": {"type": "Tool", "id": tool},
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    common::agents::answer(response).await
}

/// `mandate dpop --key reporter/svid.key --method POST --url URL --token-file task.jwt`
fn dpop(key: &std::path::Path, url: &str, token_file: &std::path::Path) -> String {
    let out = mandate_env(
        &[
            "dpop",
            "--key",
            key.to_str().unwrap(),
            "--method",
            "POST",
            "--url",
            url,
            "--token-file",
            token_file.to_str().unwrap(),
        ],
        &[],
    );
    ok(&out, "mandate dpop").trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quickstart_works_as_written_on_every_backend() {
    for backend in backends() {
        let store = TestStore::new(backend).await;
        let work = tempfile::tempdir().unwrap();
        // The node of the first command, with the example agent policies; its
        // stderr showed the admin credential.
        let node = AgentNode::start(store, &[], &[]);
        let base = node.base().to_owned();
        let tls = node.tls().to_owned();
        // export MANDATE_ADMIN_TOKEN=...; the ports are the test's, so the
        // defaults of --server are given through their variables.
        let env = [
            ("MANDATE_ADMIN_TOKEN", node.admin.as_str()),
            ("MANDATE_SERVER", base.as_str()),
            ("MANDATE_TLS_SERVER", tls.as_str()),
        ];
        let client = reqwest::Client::new();
        let dir = work.path().join("summariser");
        let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();

        // 1. Register an agent. Its key is made here; the built-in CA signs an
        //    X.509-SVID for spiffe://mandate.local/agent/summariser into ./summariser/
        let out = mandate_env(
            &[
                "agent",
                "create",
                "summariser",
                "--owner",
                "alice@example.com",
                "--env",
                "dev",
                "--function",
                "summarises quarterly reports",
                "--out",
                &path(&dir),
            ],
            &env,
        );
        let text = ok(&out, "mandate agent create");
        assert!(
            text.contains("registered agent summariser as spiffe://mandate.local/agent/summariser"),
            "{backend:?}: {text}"
        );
        for file in ["svid.pem", "svid.key", "bundle.pem", "bundle.spiffe.json"] {
            assert!(dir.join(file).is_file(), "{backend:?}: no {file}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("svid.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{backend:?}: svid.key mode {mode:o}");
        }
        let listed = ok(
            &mandate_env(&["agent", "list", "--json"], &env),
            "mandate agent list",
        );
        let listed: Value = serde_json::from_str(&listed).unwrap();
        assert_eq!(listed["agents"][0]["name"], "summariser", "{backend:?}");
        assert_eq!(listed["agents"][0]["status"], "active", "{backend:?}");

        // 2. Get a task token: the agent authenticates with its SVID over mTLS
        //    and binds the token to its key with a DPoP proof. It asks for two
        //    tools; policy grants only files.read.
        let token_file = work.path().join("token.txt");
        let out = mandate_env(
            &[
                "token",
                "request",
                "--svid",
                &path(&dir),
                "--purpose",
                "summarise the Q3 report",
                "--tool",
                "files.read",
                "--tool",
                "mail.send",
                "--data-domain",
                "reports",
                "--capability",
                "read",
                "--ttl",
                "300",
                "--out",
                &path(&token_file),
            ],
            &env,
        );
        let issued: Value = serde_json::from_str(&ok(&out, "mandate token request")).unwrap();
        assert_eq!(issued["token_type"], "DPoP", "{backend:?}: {issued}");
        let granted = &issued["authorization_details"][0];
        assert_eq!(
            granted["tools"],
            json!(["files.read"]),
            "{backend:?}: {issued}"
        );
        assert_eq!(granted["data_domains"], json!(["reports"]), "{backend:?}");
        assert_eq!(granted["capabilities"], json!(["read"]), "{backend:?}");
        assert_eq!(issued["expires_in"], 300, "{backend:?}: {issued}");
        let token = std::fs::read_to_string(&token_file).unwrap();
        assert_eq!(token, issued["access_token"].as_str().unwrap());

        // 3. Ask before acting: allowed for the granted tool ...
        let url = format!("{base}/access/v1/evaluation");
        let key = dir.join("svid.key");
        let ask = |tool: &'static str| {
            let proof = dpop(&key, &url, &token_file);
            let (client, base, token) = (client.clone(), base.clone(), token.clone());
            async move { evaluation(&client, &base, &token, &proof, tool).await }
        };
        let (status, body) = ask("files.read").await;
        assert_eq!(
            (status, &body),
            (200, &json!({"decision": true})),
            "{backend:?}"
        );
        // ... and denied for files.list: the policy would let a dev agent hold
        // it, but it is not in this task.
        let (status, body) = ask("files.list").await;
        assert_eq!(status, 200, "{backend:?}: {body}");
        assert_eq!(body["decision"], false, "{backend:?}: {body}");
        // mail.send was asked for and not granted: denied too.
        let (status, body) = ask("mail.send").await;
        assert_eq!(
            (status, &body["decision"]),
            (200, &json!(false)),
            "{backend:?}"
        );

        // 4. Complete the task (its ID from the token's payload); the token is
        //    refused from then on.
        let task = common::agents::jwt_part(&token, 1)["task_id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(task, issued["task_id"].as_str().unwrap());
        let c = format!("{base}/tasks/{task}/complete");
        let response = client
            .post(&c)
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", dpop(&key, &c, &token_file))
            .send()
            .await
            .unwrap();
        let (status, body) = common::agents::answer(response).await;
        assert_eq!(status, 200, "{backend:?}: {body}");
        assert_eq!(body["state"], "completed", "{backend:?}: {body}");
        assert_eq!(body["ended"], json!([task]), "{backend:?}: {body}");

        let (status, body) = ask("files.read").await;
        assert_eq!(status, 401, "{backend:?}: {body}");
        assert_eq!(body["error"], "invalid_token", "{backend:?}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.starts_with("task token refused: task ")
                && message.contains(&task)
                && message.contains("has ended"),
            "{backend:?}: {message}"
        );

        // The registry shows no active task left.
        let shown: Value = serde_json::from_str(&ok(
            &mandate_env(&["agent", "show", "summariser", "--json"], &env),
            "mandate agent show",
        ))
        .unwrap();
        assert_eq!(shown["active_tasks"], json!([]), "{backend:?}: {shown}");

        // And every step is in an intact, sealed audit log.
        let database = node.store.url.clone();
        let data_dir = path(node.data_dir());
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
            assert!(text.contains("seal checked"), "{backend:?}: {text}");
            let kinds: Vec<String> = common::audit_records(&database)
                .iter()
                .map(|r| r["kind"].as_str().unwrap_or_default().to_owned())
                .collect();
            for kind in ["agent_changed", "token_issued", "task_completed"] {
                assert!(
                    kinds.iter().any(|k| k == kind),
                    "{backend:?}: no {kind} record in {kinds:?}"
                );
            }
        })
        .await;
    }
}
