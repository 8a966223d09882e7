//! MCP servers that Mandate spawns and speaks stdio to (`command` upstreams).
//!
//! A [`StdioUpstream`] runs one child process. Mandate is its only client: it
//! spawns it (the credential, if any, put into its environment at that moment
//! only), sends `initialize` (revision 2025-11-25) and
//! `notifications/initialized` once, keeps the initialize result, and answers
//! every agent's `initialize` from it. Each request the gateway lets through is
//! written as one line of JSON with a fresh internal id; the answer with that
//! id is handed back with the agent's own id restored, byte for byte.
//!
//! Not supported over stdio (for now): server-to-client requests (sampling,
//! elicitation, roots) are answered with "method not found", server-to-client
//! notifications (progress, logging, list changes) are dropped, and a
//! client's `notifications/cancelled` is dropped (its request id is the
//! client's, not the one the server saw). Lines from the server longer than
//! the limit, or that are not JSON, are logged and ignored: a request whose
//! answer was such a line times out.
//!
//! When the process exits, every request waiting on it is answered with
//! `UPSTREAM_UNAVAILABLE`; the next request spawns it again, at most once a
//! second (in between, requests are answered `UPSTREAM_UNAVAILABLE` at once).

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mandate_gateway::Message;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{McpUpstream, UpstreamCredential};
use crate::state::AppState;

/// The revision Mandate asks a stdio server for.
const PROTOCOL_VERSION: &str = "2025-11-25";
/// A process that exited is spawned again at most this often.
const RESPAWN_EVERY: Duration = Duration::from_secs(1);
/// The node's environment variables a spawned server inherits; nothing else
/// of the node's environment (which may hold its KEK) reaches it.
const INHERITED_ENV: [&str; 12] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TMPDIR",
    "TZ",
    "SHELL",
    "TERM",
    "NODE_PATH",
];

/// What the gateway answers an agent's message with.
#[derive(Debug)]
pub(crate) enum StdioAnswer {
    /// A JSON-RPC response (a result or the server's own error), with the
    /// agent's id.
    Response(Vec<u8>),
    /// A notification or a client's response, taken (HTTP 202).
    Accepted,
    /// No answer from the server: a JSON-RPC error `code`, with the HTTP
    /// status the audit record gets (502 unavailable, 504 timeout).
    Failed {
        code: i64,
        status: u16,
        message: String,
    },
}

impl StdioAnswer {
    fn unavailable(message: String) -> StdioAnswer {
        StdioAnswer::Failed {
            code: mandate_gateway::UPSTREAM_UNAVAILABLE,
            status: 502,
            message,
        }
    }
}

/// One MCP server spoken to over stdio, spawned on demand.
pub(crate) struct StdioUpstream {
    name: String,
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    credential: Option<UpstreamCredential>,
    timeout: Duration,
    max_line: usize,
    next_id: AtomicU64,
    slot: tokio::sync::Mutex<Slot>,
}

impl std::fmt::Debug for StdioUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioUpstream")
            .field("name", &self.name)
            .field("argv", &self.argv)
            .finish_non_exhaustive()
    }
}

/// The running process, if any, and when it was last spawned.
#[derive(Default)]
struct Slot {
    process: Option<Arc<Process>>,
    /// Dropping it kills the process.
    kill: Option<oneshot::Sender<()>>,
    supervisor: Option<JoinHandle<()>>,
    last_spawn: Option<Instant>,
}

/// Requests waiting for their answer, by internal id, until the process exits.
enum Pending {
    Open(HashMap<u64, oneshot::Sender<Result<Vec<u8>, String>>>),
    Closed(String),
}

struct Process {
    stdin: tokio::sync::Mutex<ChildStdin>,
    pending: Mutex<Pending>,
    /// The server's `initialize` result.
    initialize: std::sync::OnceLock<Box<RawValue>>,
}

impl Process {
    fn alive(&self) -> bool {
        matches!(*lock(&self.pending), Pending::Open(_))
    }

    /// Writes one message (a line) to the server.
    async fn send(&self, line: &[u8]) -> std::io::Result<()> {
        let mut stdin = self.stdin.lock().await;
        stdin.write_all(line).await?;
        stdin.write_all(b"\n").await?;
        stdin.flush().await
    }

    /// Sends request `line` with internal id `id` and waits for its answer.
    async fn request(
        &self,
        upstream: &str,
        id: u64,
        line: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, StdioAnswer> {
        let (tx, rx) = oneshot::channel();
        match &mut *lock(&self.pending) {
            Pending::Open(map) => {
                map.insert(id, tx);
            }
            Pending::Closed(why) => return Err(StdioAnswer::unavailable(why.clone())),
        }
        let exchange = async {
            self.send(line)
                .await
                .map_err(|e| format!("upstream {upstream} cannot be written to: {e}"))?;
            rx.await
                .map_err(|_| format!("upstream {upstream} is gone"))?
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(why)) => {
                self.forget(id);
                Err(StdioAnswer::unavailable(why))
            }
            Err(_) => {
                self.forget(id);
                // Tell the server it may stop working on it.
                let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                    "params": {"requestId": id, "reason": "timed out at the gateway"}});
                let _ = self.send(cancel.to_string().as_bytes()).await;
                Err(StdioAnswer::Failed {
                    code: mandate_gateway::UPSTREAM_TIMEOUT,
                    status: 504,
                    message: format!(
                        "upstream {upstream} did not answer within {} ms",
                        timeout.as_millis()
                    ),
                })
            }
        }
    }

    fn forget(&self, id: u64) {
        if let Pending::Open(map) = &mut *lock(&self.pending) {
            map.remove(&id);
        }
    }

    /// Marks the process gone and answers everything waiting with `why`.
    fn close(&self, why: String) {
        let previous = std::mem::replace(&mut *lock(&self.pending), Pending::Closed(why.clone()));
        if let Pending::Open(map) = previous {
            for (_, waiting) in map {
                let _ = waiting.send(Err(why.clone()));
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl StdioUpstream {
    /// The stdio upstream of a `command` upstream's config (`None` for a URL
    /// one). Lines longer than `max_line` bytes from the server are ignored.
    pub(crate) fn new(config: &McpUpstream, max_line: usize) -> Option<StdioUpstream> {
        let argv = config.command.clone()?;
        Some(StdioUpstream {
            name: config.name.clone(),
            argv,
            env: config.env.clone(),
            credential: config.credential.clone(),
            timeout: Duration::from_millis(config.timeout_ms),
            max_line,
            next_id: AtomicU64::new(1),
            slot: tokio::sync::Mutex::new(Slot::default()),
        })
    }

    /// Passes one message of an agent (already decided) to the server.
    pub(crate) async fn call(
        &self,
        state: &AppState,
        message: &Message,
        body: &[u8],
    ) -> StdioAnswer {
        match message {
            Message::Request { id, method, .. } => {
                let process = match self.process(state).await {
                    Ok(p) => p,
                    Err(why) => return StdioAnswer::unavailable(why),
                };
                if method == "initialize" {
                    return match process.initialize.get() {
                        Some(result) => StdioAnswer::Response(
                            json!({"jsonrpc": "2.0", "id": id.raw(), "result": result})
                                .to_string()
                                .into_bytes(),
                        ),
                        None => StdioAnswer::unavailable(format!(
                            "upstream {} is not initialized",
                            self.name
                        )),
                    };
                }
                let internal = self.next_id.fetch_add(1, Ordering::Relaxed);
                let Ok(line) = with_id(body, &internal.to_string()) else {
                    return StdioAnswer::unavailable("the request cannot be re-framed".into());
                };
                match process
                    .request(&self.name, internal, &line, self.timeout)
                    .await
                {
                    Ok(answer) => match with_id(&answer, id.raw().get()) {
                        Ok(answer) => StdioAnswer::Response(answer),
                        Err(e) => StdioAnswer::unavailable(format!(
                            "upstream {} answered with something that is not a JSON-RPC response: {e}",
                            self.name
                        )),
                    },
                    Err(failed) => failed,
                }
            }
            Message::Notification { method, .. } => {
                if method == "notifications/initialized" || method == "notifications/cancelled" {
                    // Mandate initialized the server itself; a cancellation
                    // names the client's id, which the server never saw.
                    tracing::debug!(upstream = %self.name, method, "client notification not forwarded over stdio");
                    return StdioAnswer::Accepted;
                }
                let process = match self.process(state).await {
                    Ok(p) => p,
                    Err(why) => return StdioAnswer::unavailable(why),
                };
                match process.send(&one_line(body.to_vec())).await {
                    Ok(()) => StdioAnswer::Accepted,
                    Err(e) => StdioAnswer::unavailable(format!(
                        "upstream {} cannot be written to: {e}",
                        self.name
                    )),
                }
            }
            Message::Response { .. } => {
                // Server-to-client requests are not relayed, so there is
                // nothing this could answer.
                tracing::debug!(upstream = %self.name, "client response dropped (not supported over stdio)");
                StdioAnswer::Accepted
            }
        }
    }

    /// The running process, spawned (and initialized) if there is none.
    async fn process(&self, state: &AppState) -> Result<Arc<Process>, String> {
        let mut slot = self.slot.lock().await;
        if let Some(process) = &slot.process
            && process.alive()
        {
            return Ok(Arc::clone(process));
        }
        slot.process = None;
        slot.kill = None;
        if slot
            .last_spawn
            .is_some_and(|at| at.elapsed() < RESPAWN_EVERY)
        {
            return Err(format!(
                "upstream {} is not running; it is restarted at most once a second",
                self.name
            ));
        }
        slot.last_spawn = Some(Instant::now());
        let (process, kill, supervisor) = self.spawn(state).await?;
        slot.process = Some(Arc::clone(&process));
        slot.kill = Some(kill);
        slot.supervisor = Some(supervisor);
        Ok(process)
    }

    async fn spawn(
        &self,
        state: &AppState,
    ) -> Result<(Arc<Process>, oneshot::Sender<()>, JoinHandle<()>), String> {
        let name = &self.name;
        let mut command = Command::new(&self.argv[0]);
        command.args(&self.argv[1..]).env_clear();
        for key in INHERITED_ENV {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        command
            .envs(&self.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut secret = None;
        if let Some(credential) = &self.credential
            && let Some(var) = &credential.env
        {
            let value = crate::vault::credential_text(state, name, credential).await?;
            command.env(var, value.as_str());
            secret = Some(value);
        }
        let spawned = command.spawn();
        // The revealed value is wiped now; the child has its copy.
        drop(secret);
        drop(command);
        let mut child = spawned.map_err(|e| format!("upstream {name} cannot be started: {e}"))?;
        tracing::info!(upstream = %name, pid = child.id(), "spawned stdio MCP upstream");
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(format!("upstream {name} has no stdio pipes"));
        };
        let process = Arc::new(Process {
            stdin: tokio::sync::Mutex::new(stdin),
            pending: Mutex::new(Pending::Open(HashMap::new())),
            initialize: std::sync::OnceLock::new(),
        });
        let max_line = self.max_line;
        let log_name = name.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            while let Ok(Some(_)) = read_line(&mut reader, &mut line, max_line).await {
                tracing::debug!(upstream = %log_name, stderr = %String::from_utf8_lossy(&line), "stdio upstream");
            }
        });
        let (kill, killed) = oneshot::channel();
        let supervisor = tokio::spawn(supervise(
            name.clone(),
            child,
            BufReader::new(stdout),
            Arc::clone(&process),
            killed,
            max_line,
        ));

        // Mandate is the server's client: initialize it once.
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let initialize = json!({
            "jsonrpc": "2.0", "id": id, "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "mandate", "version": env!("CARGO_PKG_VERSION")},
            },
        });
        let failed = |why: String| {
            // Dropping `kill` stops the process.
            Err(format!("upstream {name} did not initialize: {why}"))
        };
        let answer = match process
            .request(name, id, initialize.to_string().as_bytes(), self.timeout)
            .await
        {
            Ok(a) => a,
            Err(StdioAnswer::Failed { message, .. }) => return failed(message),
            Err(other) => return failed(format!("{other:?}")),
        };
        #[derive(Deserialize)]
        struct Answer {
            result: Option<Box<RawValue>>,
            error: Option<Box<RawValue>>,
        }
        match serde_json::from_slice::<Answer>(&answer) {
            Ok(Answer {
                result: Some(result),
                ..
            }) => {
                let _ = process.initialize.set(result);
            }
            Ok(Answer {
                error: Some(error), ..
            }) => return failed(error.get().to_owned()),
            _ => return failed("its answer is not a JSON-RPC result".into()),
        }
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        if let Err(e) = process.send(initialized.to_string().as_bytes()).await {
            return failed(e.to_string());
        }
        Ok((process, kill, supervisor))
    }

    /// Stops the process, if one runs, and waits (5 s at most) for it to exit.
    pub(crate) async fn shutdown(&self) {
        let mut slot = self.slot.lock().await;
        slot.kill = None;
        slot.process = None;
        if let Some(supervisor) = slot.supervisor.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), supervisor).await;
        }
    }
}

/// Reads the server's stdout until it closes or Mandate stops it, hands each
/// answer to the request waiting for it, then reaps the process and fails
/// whatever still waits.
async fn supervise(
    name: String,
    mut child: Child,
    mut stdout: BufReader<tokio::process::ChildStdout>,
    process: Arc<Process>,
    mut killed: oneshot::Receiver<()>,
    max_line: usize,
) {
    let mut line = Vec::new();
    loop {
        tokio::select! {
            _ = &mut killed => {
                let _ = child.start_kill();
                break;
            }
            read = read_line(&mut stdout, &mut line, max_line) => match read {
                Ok(Some(true)) => dispatch(&name, &process, &line),
                Ok(Some(false)) => tracing::warn!(upstream = %name, max_line, "stdio upstream wrote a line longer than the limit; ignored"),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(upstream = %name, error = %e, "cannot read from stdio upstream");
                    break;
                }
            },
        }
    }
    // Its stdout is closed (or it is being stopped): it gets a moment to
    // exit by itself, then it is killed.
    let status = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    let status = match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("unknown: {e}"),
    };
    tracing::warn!(upstream = %name, %status, "stdio MCP upstream exited");
    process.close(format!("upstream {name} exited ({status})"));
}

/// One line from the server's stdout.
fn dispatch(name: &str, process: &Arc<Process>, line: &[u8]) {
    #[derive(Deserialize)]
    struct Incoming<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
        #[serde(borrow)]
        method: Option<&'a RawValue>,
    }
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let incoming: Incoming = match serde_json::from_slice(line) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(upstream = %name, error = %e, "stdio upstream wrote a line that is not a JSON-RPC message; ignored");
            return;
        }
    };
    if let Some(method) = incoming.method {
        tracing::debug!(upstream = %name, method = %method.get(), "server-to-client message not supported over stdio");
        if let Some(id) = incoming.id {
            // A request of the server: refuse it, so it does not wait.
            let refusal = format!(
                r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":{},"message":"not supported by Mandate's stdio gateway"}}}}"#,
                id.get(),
                mandate_gateway::METHOD_NOT_FOUND
            );
            let process = Arc::clone(process);
            tokio::spawn(async move {
                let _ = process.send(refusal.as_bytes()).await;
            });
        }
        return;
    }
    let waiting = incoming
        .id
        .and_then(|id| id.get().parse::<u64>().ok())
        .and_then(|id| match &mut *lock(&process.pending) {
            Pending::Open(map) => map.remove(&id),
            Pending::Closed(_) => None,
        });
    match waiting {
        Some(waiting) => {
            let _ = waiting.send(Ok(line.to_vec()));
        }
        None => {
            tracing::debug!(upstream = %name, "answer to no waiting request (timed out?); dropped");
        }
    }
}

/// `message` (one JSON object) with its `id` replaced by the JSON text `id`,
/// on one line.
fn with_id(message: &[u8], id: &str) -> Result<Vec<u8>, serde_json::Error> {
    let mut object: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(message)?;
    object.insert("id".into(), RawValue::from_string(id.to_owned())?);
    Ok(one_line(serde_json::to_vec(&object)?))
}

/// A JSON text on one line: outside strings (which hold no raw control
/// characters) a line break is only whitespace, so it becomes a space.
fn one_line(mut json: Vec<u8>) -> Vec<u8> {
    for byte in &mut json {
        if matches!(*byte, b'\n' | b'\r') {
            *byte = b' ';
        }
    }
    json
}

/// Reads one line (without its `\n`) into `line`. `None` at the end of the
/// stream; `Some(false)` for a line longer than `max` bytes, which is
/// skipped without being kept.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    line.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(any.then_some(!too_long));
        }
        any = true;
        let newline = buf.iter().position(|&b| b == b'\n');
        let chunk = &buf[..newline.unwrap_or(buf.len())];
        if !too_long {
            if line.len() + chunk.len() > max {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = newline.map_or(buf.len(), |i| i + 1);
        reader.consume(used);
        if newline.is_some() {
            return Ok(Some(!too_long));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_replaced_and_messages_kept_on_one_line() {
        let body = b"{\"jsonrpc\": \"2.0\",\n \"id\": \"abc\", \"method\": \"tools/call\",\n\"params\": {\"name\": \"x\\ny\"}}";
        let out = with_id(body, "7").unwrap();
        assert!(!out.contains(&b'\n'));
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["id"], 7);
        assert_eq!(value["params"]["name"], "x\ny");
        let back = with_id(
            br#"{"jsonrpc":"2.0","id":7,"result":{"a":1.50}}"#,
            "\"abc\"",
        )
        .unwrap();
        assert_eq!(back, br#"{"id":"abc","jsonrpc":"2.0","result":{"a":1.50}}"#);
    }

    #[tokio::test]
    async fn long_lines_are_skipped() {
        let input: &[u8] = b"short\nthis one is too long\nok\nlast";
        let mut reader = BufReader::with_capacity(4, input);
        let mut line = Vec::new();
        let mut seen = Vec::new();
        while let Some(ok) = read_line(&mut reader, &mut line, 8).await.unwrap() {
            seen.push((ok, String::from_utf8(line.clone()).unwrap()));
        }
        assert_eq!(
            seen,
            [
                (true, "short".to_owned()),
                (false, String::new()),
                (true, "ok".to_owned()),
                (true, "last".to_owned()),
            ]
        );
    }
}
