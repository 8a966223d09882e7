//! What the MCP end-to-end tests share: the MCP software `scripts/test.sh`
//! installs, the Python SDK scripts in `crates/cli/tests/mcp/`, and the
//! agent files they read.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::agents::Agent;
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
