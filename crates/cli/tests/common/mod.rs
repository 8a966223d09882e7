//! The end-to-end harness: the real `mandate` binary as a child process on a
//! loopback port, against a real SQLite file or a fresh PostgreSQL database.
#![allow(dead_code, unreachable_pub)]

pub mod agents;
pub mod mcp;
pub mod rmcp_dpop;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The example policy directory of the AuthZEN Todo scenario.
pub fn todo_policies() -> PathBuf {
    repo_root().join("examples/authzen-todo")
}

/// Runs `mandate ARGS` to completion.
pub fn mandate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("mandate runs")
}

/// Where a node keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A store for one test: a SQLite file in a temp dir, or a fresh PostgreSQL
/// database dropped at the end.
pub struct TestStore {
    pub backend: Backend,
    pub url: String,
    pub dir: tempfile::TempDir,
    pg_name: Option<String>,
}

fn pg_base() -> String {
    std::env::var("MANDATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The backends to run each case on. PostgreSQL is required unless
/// `MANDATE_TEST_POSTGRES=skip`.
pub fn backends() -> Vec<Backend> {
    if std::env::var("MANDATE_TEST_POSTGRES").as_deref() == Ok("skip") {
        eprintln!("MANDATE_TEST_POSTGRES=skip: PostgreSQL cases skipped");
        vec![Backend::Sqlite]
    } else {
        vec![Backend::Sqlite, Backend::Postgres]
    }
}

impl TestStore {
    pub async fn new(backend: Backend) -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        match backend {
            Backend::Sqlite => TestStore {
                backend,
                url: format!("sqlite://{}", dir.path().join("mandate.db").display()),
                dir,
                pg_name: None,
            },
            Backend::Postgres => {
                use sqlx::Connection;
                let base = pg_base();
                let name = format!("mandate_e2e_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&base).await.unwrap_or_else(|e| {
                    panic!("PostgreSQL is needed at {base} (set MANDATE_TEST_POSTGRES_URL, or MANDATE_TEST_POSTGRES=skip): {e}")
                });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let url = match base.rfind('/') {
                    Some(i) => format!("{}/{name}", &base[..i]),
                    None => panic!("bad MANDATE_TEST_POSTGRES_URL"),
                };
                TestStore {
                    backend,
                    url,
                    dir,
                    pg_name: Some(name),
                }
            }
        }
    }

    /// Runs raw SQL against the store (to tamper with it, or to break it).
    pub async fn exec(&self, sql: &str) {
        use sqlx::Connection;
        match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        }
    }

    /// Starts a node on this store, with its data in `<temp dir>/data` and the
    /// AuthZEN Todo example policies.
    pub fn start_todo_node(&self) -> Node {
        Node::start(
            &self.dir.path().join("data"),
            &self.url,
            &todo_policies(),
            &[],
        )
    }

    /// Drops the PostgreSQL database (best effort).
    pub async fn cleanup(self) {
        use sqlx::Connection;
        if let Some(name) = &self.pg_name
            && let Ok(mut conn) = sqlx::PgConnection::connect(&pg_base()).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

/// Records a node writes at its first start on a new store, before any
/// request: the creation of the admin credential.
pub const FIRST_START_RECORDS: usize = 1;

/// A running `mandate serve`.
pub struct Node {
    child: Option<Child>,
    pub base: String,
    /// Base URL of the TLS (mTLS) listener.
    pub tls_base: Option<String>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl Node {
    /// Starts a node on a free loopback port with its data in `data_dir`,
    /// waiting until it accepts connections.
    pub fn start(data_dir: &Path, database: &str, policy_dir: &Path, extra: &[&str]) -> Node {
        Node::start_with_env(data_dir, database, policy_dir, extra, &[])
    }

    /// Like [`Node::start`], with extra environment variables on the child
    /// (`MANDATE_MAX_BATCH_ITEMS`, `MANDATE_AUTHZEN_API_KEY`, ...).
    pub fn start_with_env(
        data_dir: &Path,
        database: &str,
        policy_dir: &Path,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Node {
        std::fs::create_dir_all(data_dir).unwrap();
        let log = data_dir.join(format!("node-{}.log", uuid::Uuid::new_v4().simple()));
        let stderr = std::fs::File::create(&log).unwrap();
        // `--log-level` in `extra` (debug, say) replaces the default info.
        let log_level = if extra.contains(&"--log-level") {
            &[][..]
        } else {
            &["--log-level", "info"][..]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(log_level)
            .args(["--tls-listen", "127.0.0.1:0"])
            .args(["--data-dir", data_dir.to_str().unwrap()])
            .args(["--database", database])
            .args(["--policy-dir", policy_dir.to_str().unwrap()])
            .args(extra)
            .env_remove("RUST_LOG")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("mandate starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // The TLS listener's line, if any, comes before the plain one.
            let mut reader = BufReader::new(stdout);
            let mut tls = None;
            loop {
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                if line.starts_with("mandate listening on https://") {
                    tls = Some(line.trim()["mandate listening on ".len()..].to_owned());
                    continue;
                }
                let _ = tx.send((line, tls));
                break;
            }
        });
        let (line, tls_base) = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let Some(base) = line.trim().strip_prefix("mandate listening on ") else {
            let _ = child.kill();
            panic!(
                "mandate did not start: {line:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Node {
            child: Some(child),
            base: base.to_owned(),
            tls_base,
            data_dir: data_dir.to_path_buf(),
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Sends a signal by name (`TERM`, `KILL`, `HUP`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Stops the node with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait(Duration::from_secs(20))
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill9(&mut self) -> ExitStatus {
        self.signal("KILL");
        self.wait(Duration::from_secs(20))
    }

    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("node is running");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "node did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The admin credential this node printed at its first start (on stderr).
    pub fn admin_token(&self) -> String {
        let logs = self.logs();
        let start = logs
            .find("mandate_admin_")
            .expect("the node printed an admin credential");
        logs[start..]
            .split(|c: char| c.is_whitespace() || c == '"')
            .next()
            .unwrap()
            .to_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// POSTs JSON and returns (status, body as JSON or as a string).
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = client
        .post(url)
        .json(body)
        .send()
        .await
        .expect("request is answered");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, value)
}

/// Runs `mandate audit verify --database URL`, asserts that it exits 0, and
/// returns how many records it found.
pub fn verified_record_count(database: &str) -> usize {
    let out = mandate(&["audit", "verify", "--database", database]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "audit verify failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .strip_prefix("audit log intact: ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected audit verify output: {stdout}"))
}

/// The audit records in `database`, oldest first, as `audit tail --json` prints them.
pub fn audit_records(database: &str) -> Vec<serde_json::Value> {
    let out = mandate(&[
        "audit",
        "tail",
        "--database",
        database,
        "--json",
        "-n",
        "1000000",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}
