//! The secrets broker end to end, with the real `mandate` command line: a
//! secret is set from stdin, listed, rotated and deleted, and neither of its
//! values shows up anywhere afterwards: not in `secret list`, the audit log,
//! the node's log (at debug level), the database file and its WAL, nor any
//! other file in the data directory. Refusals: no value on the command line,
//! no empty value, no bad name, no call without the admin credential. A node
//! restarted with another KEK still starts and lists its secrets.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::agents::{AgentNode, agent_policies, mandate_env, ok};
use common::{Backend, Node, TestStore, audit_records};
use serde_json::{Value, json};

/// Runs `mandate ARGS` with `input` on its stdin.
fn mandate_stdin(args: &[&str], envs: &[(&str, &str)], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("MANDATE_SERVER")
        .env_remove("MANDATE_ADMIN_TOKEN")
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mandate runs");
    // Dropping stdin closes it: end of input.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            found.push(path.display().to_string());
        }
    }
    found
}

/// `(status, body)` of an admin call made by hand.
async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let mut request = client.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_is_set_rotated_and_deleted_and_its_values_never_show() {
    let store = TestStore::new(Backend::Sqlite).await;
    // Debug logs too: nothing at any level may carry a value.
    let node = AgentNode::start(store, &["--log-level", "debug"], &[]);
    let base = node.base().to_owned();
    let env = [
        ("MANDATE_ADMIN_TOKEN", node.admin.as_str()),
        ("MANDATE_SERVER", base.as_str()),
    ];
    let first = format!("first-{}", uuid::Uuid::new_v4().simple());
    let second = format!("second-{}", uuid::Uuid::new_v4().simple());
    let mut shown = String::new();

    // The node made its KEK beside the database, and said so.
    let kek_file = node.data_dir().join("secrets.kek");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kek_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        node.node
            .logs()
            .contains("the secrets KEK is kept in the data directory"),
        "{}",
        node.node.logs()
    );

    // echo "$FIRST" | mandate secret set db-password
    let out = mandate_stdin(
        &["secret", "set", "db-password"],
        &env,
        &format!("{first}\n"),
    );
    assert_eq!(
        ok(&out, "secret set"),
        "stored secret db-password (version 1)\n"
    );
    let out = mandate_stdin(&["secret", "set", "db-password"], &env, &second);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(r#"409 Conflict: secret "db-password" already exists"#),
        "{}",
        stderr(&out)
    );

    let out = mandate_env(&["secret", "list"], &env);
    let text = ok(&out, "secret list");
    shown.push_str(&text);
    assert!(text.starts_with("db-password "), "{text}");
    assert!(
        text.contains(" v1 ") && text.contains("rotated never"),
        "{text}"
    );
    let out = mandate_env(&["secret", "list", "--json"], &env);
    let text = ok(&out, "secret list --json");
    shown.push_str(&text);
    let listed: Value = serde_json::from_str(&text).unwrap();
    let entry = &listed["secrets"][0];
    let mut keys: Vec<&str> = entry
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["created_at", "name", "rotated_at", "version"]);
    assert_eq!(
        (&entry["name"], &entry["version"], &entry["rotated_at"]),
        (&json!("db-password"), &json!(1), &Value::Null)
    );

    // Sealed in the store: the value is in no file of the test's directory
    // (the database, its WAL, the data directory).
    assert_eq!(
        files_containing(node.store.dir.path(), first.as_bytes()),
        Vec::<String>::new()
    );
    // (The search does see the database: the secret's name is in it.)
    let named = files_containing(node.store.dir.path(), b"db-password");
    assert!(named.iter().any(|f| f.contains("mandate.db")), "{named:?}");

    // mandate secret rotate db-password < new-value (CRLF is trimmed too)
    let out = mandate_stdin(
        &["secret", "rotate", "db-password"],
        &env,
        &format!("{second}\r\n"),
    );
    assert_eq!(
        ok(&out, "secret rotate"),
        "rotated secret db-password (version 2)\n"
    );
    let out = mandate_env(&["secret", "list", "--json"], &env);
    let text = ok(&out, "secret list --json");
    shown.push_str(&text);
    let listed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(listed["secrets"][0]["version"], 2);
    assert!(listed["secrets"][0]["rotated_at"].is_string(), "{listed}");
    let out = mandate_stdin(&["secret", "rotate", "ghost"], &env, "x");
    assert!(
        stderr(&out).contains(r#"404 Not Found: no secret named "ghost""#),
        "{}",
        stderr(&out)
    );

    // Refusals. A value is never an argument: there is no such flag.
    let out = mandate_env(&["secret", "set", "other", "--value", &first], &env);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = mandate_env(&["secret", "set", "other", &first], &env);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // Nor empty.
    for empty in ["", "\n", "\r\n"] {
        let out = mandate_stdin(&["secret", "set", "other"], &env, empty);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("the value is empty"),
            "{}",
            stderr(&out)
        );
    }
    // A bad name, in the CLI and at the API.
    let out = mandate_stdin(&["secret", "set", "bad name"], &env, "x");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(r#""bad name" is not a secret name"#),
        "{}",
        stderr(&out)
    );
    let client = reqwest::Client::new();
    let admin = Some(node.admin.as_str());
    let body = r#"{"value": "v"}"#;
    let long = "x".repeat(129);
    for name in ["bad%20name", "a:b", long.as_str()] {
        let url = format!("{base}/admin/v1/secrets/{name}");
        let (status, answer) = call(&client, reqwest::Method::PUT, &url, admin, Some(body)).await;
        assert_eq!(
            (status, &answer["error"]),
            (400, &json!("bad_request")),
            "{answer}"
        );
    }
    let url = format!("{base}/admin/v1/secrets/other");
    for (bad, message) in [
        (
            r#"{"value": ""}"#,
            r#"the value of secret "other" must not be empty"#,
        ),
        (
            r#"{"value": "v", "extra": "hunter2"}"#,
            r#"the body must be a JSON object with one string member, {"value": "..."}"#,
        ),
        (
            r#"{"value": ["hunter2"]}"#,
            r#"the body must be a JSON object with one string member, {"value": "..."}"#,
        ),
    ] {
        let (status, answer) = call(&client, reqwest::Method::PUT, &url, admin, Some(bad)).await;
        assert_eq!(
            (status, &answer["message"]),
            (400, &json!(message)),
            "{bad}"
        );
    }
    // No admin credential, or a wrong one: 401 on every call.
    let secrets = format!("{base}/admin/v1/secrets");
    let rotate = format!("{base}/admin/v1/secrets/db-password/rotate");
    for token in [None, Some("mandate_admin_wrong")] {
        for (method, url, body) in [
            (reqwest::Method::GET, secrets.as_str(), None),
            (reqwest::Method::PUT, url.as_str(), Some(body)),
            (reqwest::Method::POST, rotate.as_str(), Some(body)),
            (reqwest::Method::DELETE, url.as_str(), None),
        ] {
            let (status, answer) = call(&client, method.clone(), url, token, body).await;
            assert_eq!(status, 401, "{method} {url}: {answer}");
        }
    }
    let out = mandate_env(&["secret", "list"], &[("MANDATE_SERVER", base.as_str())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("MANDATE_ADMIN_TOKEN"),
        "{}",
        stderr(&out)
    );

    // Both values are sealed; neither is in any file.
    for value in [&first, &second] {
        assert_eq!(
            files_containing(node.store.dir.path(), value.as_bytes()),
            Vec::<String>::new()
        );
    }

    let out = mandate_env(&["secret", "delete", "db-password"], &env);
    assert_eq!(ok(&out, "secret delete"), "deleted secret db-password\n");
    let out = mandate_env(&["secret", "list"], &env);
    assert_eq!(ok(&out, "secret list"), "no secrets\n");
    let out = mandate_env(&["secret", "delete", "db-password"], &env);
    assert!(stderr(&out).contains("404 Not Found"), "{}", stderr(&out));

    // The audit log says what happened to which secret, and nothing more.
    let records = audit_records(&node.store.url);
    let changes: Vec<(Value, Value)> = records
        .iter()
        .filter(|r| r["kind"] == "secret_changed")
        .map(|r| (r["outcome"].clone(), r["detail"].clone()))
        .collect();
    assert_eq!(
        changes,
        [
            (
                json!("created"),
                json!({"name": "db-password", "version": 1, "operation": "created"})
            ),
            (
                json!("rotated"),
                json!({"name": "db-password", "version": 2, "operation": "rotated"})
            ),
            (
                json!("deleted"),
                json!({"name": "db-password", "version": 2, "operation": "deleted"})
            ),
        ]
    );
    let audit_text = serde_json::to_string(&records).unwrap();

    // Nowhere: not in what was shown, the audit log, the node's log, the
    // database file and its WAL, or any other file of the data directory.
    let logs = node.node.logs();
    assert!(
        logs.contains("DEBUG") || logs.contains("\"level\":\"DEBUG\""),
        "not at debug level"
    );
    for value in [&first, &second] {
        assert!(
            !shown.contains(value.as_str()),
            "secret list showed a value"
        );
        assert!(
            !audit_text.contains(value.as_str()),
            "the audit log holds a value"
        );
        assert!(
            !logs.contains(value.as_str()),
            "the node's log holds a value"
        );
        assert_eq!(
            files_containing(node.store.dir.path(), value.as_bytes()),
            Vec::<String>::new()
        );
    }
    // The database and its WAL were among the files searched.
    let db = node.store.dir.path().join("mandate.db");
    assert!(db.is_file() && db.with_extension("db-wal").is_file());
    assert!(node.store.url.ends_with("mandate.db"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_restarted_with_another_kek_starts_and_lists_its_secrets() {
    let mut node = AgentNode::sqlite().await;
    let base = node.base().to_owned();
    let env = [
        ("MANDATE_ADMIN_TOKEN", node.admin.as_str()),
        ("MANDATE_SERVER", base.as_str()),
    ];
    let out = mandate_stdin(&["secret", "set", "api-key"], &env, "sk-live-0123456789");
    ok(&out, "secret set");
    let kek_file = std::fs::read_to_string(node.data_dir().join("secrets.kek")).unwrap();
    let sealed_under = mandate_secrets::Kek::parse(&kek_file)
        .unwrap()
        .id()
        .to_owned();
    assert!(node.node.stop().success());

    let other = mandate_secrets::Kek::generate().unwrap();
    let data_dir = node.data_dir().to_path_buf();
    let restarted = Node::start_with_env(
        &data_dir,
        &node.store.url,
        &agent_policies(),
        &[],
        &[("MANDATE_SECRETS_KEK", other.to_hex().as_str())],
    );
    let env = [
        ("MANDATE_ADMIN_TOKEN", node.admin.as_str()),
        ("MANDATE_SERVER", restarted.base.as_str()),
    ];
    let logs = restarted.logs();
    assert!(
        logs.contains(&sealed_under) && logs.contains(other.id()),
        "the start-up warning names both KEKs: {logs}"
    );
    assert!(
        !logs.contains("the secrets KEK is kept in the data directory"),
        "{logs}"
    );
    let out = mandate_env(&["secret", "list"], &env);
    assert!(ok(&out, "secret list").starts_with("api-key "));
    // Rotating re-seals it under the KEK now loaded.
    let out = mandate_stdin(&["secret", "rotate", "api-key"], &env, "sk-live-new");
    assert_eq!(
        ok(&out, "secret rotate"),
        "rotated secret api-key (version 2)\n"
    );
}

#[test]
fn a_bad_kek_stops_the_node_at_start_without_being_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let out = mandate_env(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-listen",
            "",
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
        &[("MANDATE_SECRETS_KEK", "hunter2hunter2hunter2")],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(text.contains("secrets_kek"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}
