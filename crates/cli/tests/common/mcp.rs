//! What the MCP end-to-end tests share: the MCP software `scripts/test.sh`
//! installs, the Python SDK scripts in `crates/cli/tests/mcp/`, the agent
//! files they read, and upstream MCP servers over HTTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::agents::{Agent, Token};
use super::repo_root;

/// Where `scripts/test.sh` put the MCP test software.
pub struct McpTools {
    pub npm_bin: PathBuf,
    pub python: PathBuf,
}

/// The MCP test software for test `test` of suite `suite` (the test file's
/// name), with the npm `servers` it needs; `None` when
/// `MANDATE_TEST_MCP=skip` (said loudly). Without it and without skip, the
/// test fails: it never passes silently.
pub fn mcp_tools(suite: &str, test: &str, servers: &[&str]) -> Option<McpTools> {
    if std::env::var("MANDATE_TEST_MCP").as_deref() == Ok("skip") {
        // Straight to stderr, past the test harness's capture: a skip is seen.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** MANDATE_TEST_MCP=skip: {suite} test {test} SKIPPED (it needs the MCP servers and the Python SDK) ***\n"
        );
        return None;
    }
    let var = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                panic!(
                    "{name} is not set: the MCP tests need the MCP reference servers and the \
                 official MCP Python SDK. Run `bash scripts/test.sh` (it installs them and runs \
                 every test; `bash scripts/test.sh -p mandate-cli --test {suite}` runs only \
                 these), or set MANDATE_TEST_MCP=skip to skip them."
                )
            })
    };
    let tools = McpTools {
        npm_bin: var("MANDATE_TEST_NPM_BIN"),
        python: var("MANDATE_TEST_PYTHON"),
    };
    for server in servers {
        assert!(
            tools.npm_bin.join(server).exists(),
            "{} has no {server}: run `bash scripts/test.sh`",
            tools.npm_bin.display()
        );
    }
    assert!(
        tools.python.exists(),
        "{} does not exist: run `bash scripts/test.sh`",
        tools.python.display()
    );
    Some(tools)
}

/// The directory of the Python scripts.
pub fn mcp_dir() -> PathBuf {
    repo_root().join("crates/cli/tests/mcp")
}

/// `authorization_details` of a task holding `tools` (read capability,
/// reports), for `purpose`.
pub fn task_for(purpose: &str, tools: &[&str]) -> Value {
    json!([{
        "type": "agent_task",
        "purpose": purpose,
        "tools": tools,
        "data_domains": ["reports"],
        "ttl_seconds": 600,
        "capabilities": ["read"],
    }])
}

/// Writes the agent's SVID directory as `mandate agent create --out` does.
pub fn write_svid(agent: &Agent, dir: &Path) -> PathBuf {
    let svid = dir.join(&agent.name);
    std::fs::create_dir_all(&svid).unwrap();
    std::fs::write(svid.join("svid.pem"), &agent.cert_pem).unwrap();
    std::fs::write(svid.join("svid.key"), &agent.key_pem).unwrap();
    std::fs::write(svid.join("bundle.pem"), &agent.bundle_pem).unwrap();
    svid
}

/// Runs the Python SDK script `script` (in [`mcp_dir`]) with `plan`, two
/// minutes at most, and returns the JSON it printed.
pub fn run_sdk_script(tools: &McpTools, script: &str, plan: &Value) -> Value {
    let mut child = Command::new(&tools.python)
        .arg(mcp_dir().join(script))
        .arg(plan.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    let out = wait(&mut child, Duration::from_secs(120), &plan.to_string());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the SDK client failed ({}) with plan {plan}:\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("the SDK client printed no JSON ({e}): {stdout}"))
}

/// Waits for `child` (reading its pipes meanwhile), killing it after `limit`.
pub fn wait(child: &mut Child, limit: Duration, what: &str) -> Output {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} hangs:\n{}",
                String::from_utf8_lossy(&err_reader.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An upstream MCP server over Streamable HTTP in a child process, killed on drop.
pub struct HttpUpstream {
    child: Child,
    /// Its Streamable HTTP endpoint.
    pub url: String,
}

impl HttpUpstream {
    /// Starts `command` and waits (60 s at most) for a line on its stdout or
    /// stderr containing `ready`; `port` reads the port from that line (or is
    /// the one given). Both streams go to `log`.
    pub fn start(
        mut command: Command,
        log: PathBuf,
        ready: &str,
        port: Option<u16>,
    ) -> HttpUpstream {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the upstream starts");
        let file = Arc::new(Mutex::new(std::fs::File::create(&log).unwrap()));
        let (tx, rx) = std::sync::mpsc::channel();
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for stream in streams {
            let (tx, file, ready) = (tx.clone(), Arc::clone(&file), ready.to_owned());
            // Reads to the end, so the child never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let _ = writeln!(file.lock().unwrap(), "{line}");
                    if line.contains(&ready) {
                        let _ = tx.send(line);
                    }
                }
            });
        }
        let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the upstream did not start:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        let port = port.unwrap_or_else(|| {
            line.rsplit(' ')
                .next()
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or_else(|| panic!("no port in {line:?}"))
        });
        HttpUpstream {
            child,
            url: format!("http://127.0.0.1:{port}/mcp"),
        }
    }

    /// `PORT=N mcp-server-everything streamableHttp`, its log in `dir`.
    pub fn everything(tools: &McpTools, dir: &Path) -> HttpUpstream {
        let port = free_port();
        let mut command = Command::new(tools.npm_bin.join("mcp-server-everything"));
        command
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .current_dir(dir);
        HttpUpstream::start(
            command,
            dir.join("everything.log"),
            "MCP Streamable HTTP Server listening on port",
            Some(port),
        )
    }

    /// The recording upstream (crates/cli/tests/mcp/recording_upstream.py),
    /// appending every request it receives to `record` (see [`recorded`]).
    pub fn recording(tools: &McpTools, dir: &Path, record: &Path) -> HttpUpstream {
        let mut command = Command::new(&tools.python);
        command
            .arg(mcp_dir().join("recording_upstream.py"))
            .arg(record)
            .current_dir(dir);
        HttpUpstream::start(
            command,
            dir.join("recorder.log"),
            "recording upstream listening on port",
            None,
        )
    }
}

impl Drop for HttpUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The requests the recording upstream received, in order: `{"method",
/// "path", "headers": [[name, value], ...], "body"}`.
pub fn recorded(record: &Path) -> Vec<Value> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The value of header `name` in a recorded request, if it was sent.
pub fn recorded_header<'a>(request: &'a Value, name: &str) -> Option<&'a str> {
    request["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .and_then(|h| h[1].as_str())
}

/// The JSON-RPC body of a recorded request (Null for a body-less one).
pub fn recorded_rpc(request: &Value) -> Value {
    serde_json::from_str(request["body"].as_str().unwrap()).unwrap_or(Value::Null)
}

/// A JSON-RPC `tools/call` of `name` with `arguments`, as message `id`.
pub fn tools_call(id: impl Into<Value>, name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id.into(), "method": "tools/call",
           "params": {"name": name, "arguments": arguments}})
}

/// POSTs one JSON-RPC message to the gateway at `url` as `token`'s holder (a
/// fresh DPoP proof), `limit` at most: (status, the body as JSON, or
/// `{"raw": text}` if it is not JSON).
pub async fn rpc(
    http: &reqwest::Client,
    token: &Token,
    url: &str,
    body: &Value,
    limit: Duration,
) -> (u16, Value) {
    let response = http
        .post(url)
        .header("authorization", format!("DPoP {}", token.access_token))
        .header("dpop", token.proof_for(url))
        .header("accept", "application/json, text/event-stream")
        .json(body)
        .timeout(limit)
        .send()
        .await
        .unwrap_or_else(|e| panic!("the gateway answers within {limit:?}: {e}"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(json!({"raw": text})),
    )
}

/// Asserts what an upstream received in `requests` (see [`recorded`]): the
/// credential `Key <credential>` on every request, never the agent's
/// Authorization, DPoP proof or token, and exactly the granted calls of echo
/// and get-sum (never the refused get-env).
#[track_caller]
pub fn assert_upstream_saw(requests: &[Value], credential: &str, token: &Token, what: &str) {
    assert!(!requests.is_empty(), "{what}: the upstream got nothing");
    for request in requests {
        assert_eq!(
            recorded_header(request, "x-upstream-key"),
            Some(format!("Key {credential}").as_str()),
            "{what}: the upstream gets the configured credential: {request}"
        );
        assert_eq!(
            recorded_header(request, "authorization"),
            None,
            "{what}: the agent's Authorization never reaches the upstream: {request}"
        );
        assert_eq!(
            recorded_header(request, "dpop"),
            None,
            "{what}: the agent's DPoP proof never reaches the upstream: {request}"
        );
        assert!(
            !request.to_string().contains(&token.access_token),
            "{what}: the task token never reaches the upstream: {request}"
        );
    }
    let called: Vec<String> = requests
        .iter()
        .map(recorded_rpc)
        .filter(|m| m["method"] == "tools/call")
        .map(|m| m["params"]["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        called,
        ["echo", "get-sum"],
        "{what}: the upstream got the granted calls and never the refused one"
    );
}

/// The audit records of `call` decisions on `Tool::"<tool>"` with `outcome`
/// (`allow`, `deny`) among `records`.
pub fn calls_of<'a>(records: &[&'a Value], tool: &str, outcome: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| {
            r["action"] == "Action::\"call\""
                && r["resource"] == format!("Tool::\"{tool}\"")
                && r["outcome"] == outcome
        })
        .copied()
        .collect()
}
