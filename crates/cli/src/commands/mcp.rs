//! `mandate mcp stdio`: the stdio MCP server a desktop client starts. It
//! holds a task token (obtained with the agent's SVID, or given) and passes
//! every JSON-RPC message from stdin to the node's MCP gateway at
//! `{server}/mcp/{upstream}`, with the token and a fresh DPoP proof, so the
//! node decides, filters and audits exactly as for any HTTP agent. Answers
//! go to stdout, one JSON-RPC message a line; nothing else ever does (logs
//! go to stderr).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Args;
use mandate_gateway::{
    INTERNAL_ERROR, INVALID_REQUEST, MCP_METHOD_HEADER, MCP_NAME_HEADER, PARSE_ERROR,
    PROTOCOL_VERSION_HEADER, RequestId, UPSTREAM_UNAVAILABLE, error_response, mcp_name_source,
    parse_sse, requires_routing_headers,
};
use mandate_tokens::DpopKey;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::token::{TaskSpec, now, read, request_token, svid_client, svid_key};

/// The longest input line accepted (a longer one is answered with a parse error).
const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;
/// `MCP-Session-Id`.
const SESSION_HEADER: &str = "MCP-Session-Id";

/// `mandate mcp ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum McpCommand {
    /// Serve MCP over stdio (for desktop clients), enforcing through the
    /// node's MCP gateway with a task token.
    Stdio(StdioArgs),
}

#[derive(Debug, Args)]
pub(crate) struct StdioArgs {
    /// Base URL of the node whose gateway serves the upstream.
    #[arg(long, value_name = "URL", env = "MANDATE_SERVER")]
    server: String,
    /// The upstream's name (`/mcp/<upstream>` on the node).
    #[arg(long, value_name = "NAME")]
    upstream: String,
    /// Obtain the task token as this agent: the directory with its svid.pem,
    /// svid.key and bundle.pem (from `agent create`). The token is bound to
    /// svid.key and obtained again shortly before it expires.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "token_file",
        conflicts_with_all = ["token_file", "key"]
    )]
    svid: Option<PathBuf>,
    /// Base URL of the node's TLS listener (for the token request).
    #[arg(
        long,
        value_name = "URL",
        env = "MANDATE_TLS_SERVER",
        default_value = "https://127.0.0.1:8443"
    )]
    tls_server: String,
    /// What the task is for (with --svid).
    #[arg(long, required_unless_present = "token_file")]
    purpose: Option<String>,
    /// A tool the task needs, `<upstream>.<tool>` (repeat for more; with --svid).
    #[arg(
        long = "tool",
        value_name = "NAME",
        required_unless_present = "token_file"
    )]
    tools: Vec<String>,
    /// A data domain the task touches (repeat for more; with --svid).
    #[arg(long = "data-domain", value_name = "NAME")]
    data_domains: Vec<String>,
    /// A capability: read, act or delegate (repeat for more; with --svid).
    #[arg(long = "capability", value_name = "CLASS", default_value = "read")]
    capabilities: Vec<String>,
    /// Task lifetime in seconds (with --svid).
    #[arg(long, default_value_t = 300)]
    ttl: u64,
    /// Call budget (with --svid).
    #[arg(long)]
    max_calls: Option<u64>,
    /// Use this task token (a file holding it) instead of obtaining one.
    #[arg(long, value_name = "FILE", requires = "key")]
    token_file: Option<PathBuf>,
    /// The private key (PKCS#8 PEM) the token given with --token-file is bound to.
    #[arg(long, value_name = "FILE", requires = "token_file")]
    key: Option<PathBuf>,
    /// Extra CA certificates (PEM) to trust for an https --server (with --token-file;
    /// with --svid the SVID's bundle is trusted).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
}

/// Where the task token comes from.
enum Source {
    /// Given: used as is until it expires.
    Fixed(String),
    /// Obtained with the agent's SVID, and again shortly before it expires.
    Obtained(Box<Obtained>),
}

/// How to obtain the token again, and the current one with its renewal time.
struct Obtained {
    client: reqwest::Client,
    tls_server: String,
    task: TaskSpec,
    current: tokio::sync::Mutex<(String, Instant)>,
}

/// The token, its key, and what the session negotiated.
struct Wrapper {
    http: reqwest::Client,
    endpoint: String,
    key: DpopKey,
    source: Source,
    /// `MCP-Protocol-Version` from the initialize result.
    protocol_version: Mutex<Option<String>>,
    /// `MCP-Session-Id` from the initialize answer.
    session_id: Mutex<Option<String>>,
}

/// When to obtain a fresh token: 30 s before expiry, or at three quarters
/// of a shorter life.
fn refresh_at(expires_in: u64) -> Instant {
    let margin = (expires_in / 4).min(30);
    Instant::now() + Duration::from_secs(expires_in.saturating_sub(margin))
}

async fn obtain(
    client: &reqwest::Client,
    tls_server: &str,
    task: &TaskSpec,
    key: &DpopKey,
) -> anyhow::Result<(String, Instant)> {
    let answer = request_token(client, tls_server, task, Some(key), None).await?;
    let token = answer["access_token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the token endpoint answered without access_token"))?
        .to_owned();
    let expires_in = answer["expires_in"].as_u64().unwrap_or(task.ttl);
    tracing::info!(
        task_id = answer["task_id"].as_str().unwrap_or(""),
        expires_in,
        "obtained a task token"
    );
    Ok((token, refresh_at(expires_in)))
}

impl Wrapper {
    /// The token to present now (a fresh one when it was obtained here and
    /// is about to expire).
    async fn token(&self) -> anyhow::Result<String> {
        match &self.source {
            Source::Fixed(token) => Ok(token.clone()),
            Source::Obtained(obtained) => {
                let mut current = obtained.current.lock().await;
                if Instant::now() >= current.1 {
                    *current = obtain(
                        &obtained.client,
                        &obtained.tls_server,
                        &obtained.task,
                        &self.key,
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot renew the task token: {e:#}"))?;
                }
                Ok(current.0.clone())
            }
        }
    }

    /// Sends one message to the gateway and writes what it answers to `out`.
    async fn forward(&self, line: Vec<u8>, message: Value, out: &mpsc::UnboundedSender<Vec<u8>>) {
        let id = message
            .get("id")
            .and_then(|id| RequestId::from_value(id).ok());
        let method = message.get("method").and_then(Value::as_str);
        // Only a request (method and id) can be answered with an error.
        let answerable = id.is_some() && method.is_some();
        let fail = |code: i64, text: String, data: Option<Value>| {
            tracing::warn!("{text}");
            if answerable {
                let _ = out.send(error_response(id.as_ref(), code, &text, data));
            }
        };
        let token = match self.token().await {
            Ok(token) => token,
            Err(e) => return fail(INTERNAL_ERROR, format!("{e:#}"), None),
        };
        let mut request = self
            .http
            .post(&self.endpoint)
            .header("Authorization", format!("DPoP {token}"))
            .header(
                "DPoP",
                self.key.proof("POST", &self.endpoint, Some(&token), now()),
            )
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream");
        for (name, value) in self.mcp_headers(&message) {
            request = request.header(name, value);
        }
        let response = match request.body(line).send().await {
            Ok(response) => response,
            Err(e) => {
                return fail(
                    UPSTREAM_UNAVAILABLE,
                    format!(
                        "the Mandate node at {} cannot be reached: {e}",
                        self.endpoint
                    ),
                    None,
                );
            }
        };
        let status = response.status();
        if method == Some("initialize")
            && status.is_success()
            && let Some(session) = response
                .headers()
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
        {
            *self.session_id.lock().unwrap() = Some(session.to_owned());
        }
        let sse = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        if status.is_success() && sse {
            return self.stream_events(response, method, out).await;
        }
        let www_authenticate = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => {
                return fail(
                    UPSTREAM_UNAVAILABLE,
                    format!("the answer from {} broke off: {e}", self.endpoint),
                    None,
                );
            }
        };
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        let is_jsonrpc = parsed.as_ref().is_some_and(|v| {
            v.get("jsonrpc").is_some() && (v.get("result").is_some() || v.get("error").is_some())
        });
        if status.is_success() {
            match parsed {
                Some(value) => self.emit(value, method, out),
                None if body.iter().all(u8::is_ascii_whitespace) => {}
                None => {
                    tracing::warn!(%status, "the gateway answered with a body that is not JSON")
                }
            }
            return;
        }
        if is_jsonrpc && let Some(value) = parsed {
            // The gateway's own JSON-RPC error (a bad message, a header mismatch).
            return self.emit(value, method, out);
        }
        let (error, detail) = match &parsed {
            Some(v) => (
                v["error"].as_str().unwrap_or_default().to_owned(),
                v["message"]
                    .as_str()
                    .or_else(|| v["error_description"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
            ),
            None => (
                String::new(),
                String::from_utf8_lossy(&body[..body.len().min(500)])
                    .trim()
                    .to_owned(),
            ),
        };
        let mut text = format!("Mandate answered HTTP {}", status.as_u16());
        for part in [&error, &detail] {
            if !part.is_empty() {
                text.push_str(": ");
                text.push_str(part);
            }
        }
        let code = if status.is_server_error() {
            UPSTREAM_UNAVAILABLE
        } else {
            INVALID_REQUEST
        };
        let mut data = json!({ "http_status": status.as_u16() });
        if !error.is_empty() {
            data["error"] = Value::from(error);
        }
        if let Some(w) = www_authenticate {
            data["www_authenticate"] = Value::from(w);
        }
        fail(code, text, Some(data));
    }

    /// The MCP headers for `message`: the protocol version (the one in its
    /// `_meta`, else the negotiated one), the session, and for 2026-07-28 and
    /// later `Mcp-Method` / `Mcp-Name`.
    fn mcp_headers(&self, message: &Value) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        let version = message["params"]["_meta"][mandate_gateway::PROTOCOL_VERSION_META]
            .as_str()
            .map(str::to_owned)
            .or_else(|| self.protocol_version.lock().unwrap().clone());
        if let Some(session) = self.session_id.lock().unwrap().clone() {
            headers.push((SESSION_HEADER, session));
        }
        let Some(version) = version else {
            return headers;
        };
        if requires_routing_headers(&version)
            && let Some(method) = message["method"].as_str()
        {
            headers.push((MCP_METHOD_HEADER, header_value(method)));
            if let Some(member) = mcp_name_source(method)
                && let Some(name) = message["params"][member].as_str()
            {
                headers.push((MCP_NAME_HEADER, header_value(name)));
            }
        }
        headers.push((PROTOCOL_VERSION_HEADER, version));
        headers
    }

    /// Writes `value` as one line, remembering the protocol version an
    /// `initialize` result names.
    fn emit(&self, value: Value, method: Option<&str>, out: &mpsc::UnboundedSender<Vec<u8>>) {
        if method == Some("initialize")
            && let Some(version) = value["result"]["protocolVersion"].as_str()
        {
            *self.protocol_version.lock().unwrap() = Some(version.to_owned());
        }
        match serde_json::to_vec(&value) {
            Ok(line) => {
                let _ = out.send(line);
            }
            Err(e) => tracing::warn!("cannot write an answer: {e}"),
        }
    }

    /// Writes each event of an SSE answer as it arrives, its data as one line.
    async fn stream_events(
        &self,
        mut response: reqwest::Response,
        method: Option<&str>,
        out: &mpsc::UnboundedSender<Vec<u8>>,
    ) {
        let mut buffer = Vec::new();
        let mut done = 0;
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("the event stream from {} broke off: {e}", self.endpoint);
                    break;
                }
            };
            buffer.extend_from_slice(&chunk);
            // A CR at the end may be the first half of a CRLF: wait for more.
            if buffer.last() == Some(&b'\r') {
                continue;
            }
            done = self.emit_events(&buffer, done, method, out);
        }
        buffer.push(b'\n');
        self.emit_events(&buffer, done, method, out);
    }

    /// Writes the events of `buffer` after the first `done`; returns how
    /// many it holds.
    fn emit_events(
        &self,
        buffer: &[u8],
        done: usize,
        method: Option<&str>,
        out: &mpsc::UnboundedSender<Vec<u8>>,
    ) -> usize {
        let events = parse_sse(buffer);
        for event in events.iter().skip(done) {
            if event.data.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(&event.data) {
                Ok(value) => self.emit(value, method, out),
                Err(e) => tracing::warn!("an event's data is not JSON ({e}); dropped"),
            }
        }
        events.len().max(done)
    }
}

/// A header value: as is when it is visible ASCII, else MCP's
/// `=?base64?...?=` form.
fn header_value(value: &str) -> String {
    let plain = value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && !value.starts_with("=?base64?");
    if plain {
        value.to_owned()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    }
}

/// One line of stdin: its bytes (without the terminator), or too long.
enum Line {
    Text(Vec<u8>),
    TooLong,
}

/// Reads one line (without its terminator); `None` at EOF. A line longer
/// than [`MAX_LINE_BYTES`] is consumed and reported as [`Line::TooLong`].
fn read_line(input: &mut impl std::io::BufRead) -> std::io::Result<Option<Line>> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let available = input.fill_buf()?;
        if available.is_empty() {
            return Ok(match (too_long, line.is_empty()) {
                (true, _) => Some(Line::TooLong),
                (false, true) => None,
                (false, false) => Some(Line::Text(line)),
            });
        }
        let (used, end) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if !too_long {
            let take = if end { used - 1 } else { used };
            if line.len() + take > MAX_LINE_BYTES {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(&available[..take]);
            }
        }
        input.consume(used);
        if end {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Some(if too_long {
                Line::TooLong
            } else {
                Line::Text(line)
            }));
        }
    }
}

pub(crate) async fn run(command: McpCommand) -> anyhow::Result<ExitCode> {
    let McpCommand::Stdio(args) = command;
    let endpoint = format!(
        "{}/mcp/{}",
        args.server.trim_end_matches('/'),
        args.upstream
    );
    let (http, key, source) = match (&args.svid, &args.token_file, &args.key) {
        (Some(svid), _, _) => {
            let client = svid_client(svid)?;
            let key = svid_key(svid)?;
            let task = TaskSpec {
                purpose: args.purpose.clone().unwrap_or_default(),
                tools: args.tools.clone(),
                data_domains: args.data_domains.clone(),
                capabilities: args.capabilities.clone(),
                ttl: args.ttl,
                max_calls: args.max_calls,
            };
            let current = obtain(&client, &args.tls_server, &task, &key).await?;
            let source = Source::Obtained(Box::new(Obtained {
                client: client.clone(),
                tls_server: args.tls_server.clone(),
                task,
                current: tokio::sync::Mutex::new(current),
            }));
            (client, key, source)
        }
        (None, Some(token_file), Some(key_file)) => {
            let token = read(token_file)?.trim().to_owned();
            anyhow::ensure!(!token.is_empty(), "{} is empty", token_file.display());
            let key = DpopKey::from_pkcs8_pem(&read(key_file)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", key_file.display()))?;
            let mut builder = reqwest::Client::builder();
            if let Some(ca) = &args.ca {
                for cert in reqwest::Certificate::from_pem_bundle(read(ca)?.as_bytes())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", ca.display()))?
                {
                    builder = builder.add_root_certificate(cert);
                }
            }
            (builder.build()?, key, Source::Fixed(token))
        }
        _ => anyhow::bail!("give either --svid or --token-file with --key"),
    };
    let wrapper = Arc::new(Wrapper {
        http,
        endpoint,
        key,
        source,
        protocol_version: Mutex::new(None),
        session_id: Mutex::new(None),
    });

    // One writer: each message a whole line, never interleaved.
    let (out, mut lines) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::task::spawn_blocking(move || {
        let mut stdout = std::io::stdout().lock();
        while let Some(mut line) = lines.blocking_recv() {
            line.push(b'\n');
            if stdout.write_all(&line).is_err() || stdout.flush().is_err() {
                break;
            }
        }
    });
    // stdin is read on a thread of its own (it blocks).
    let (input_tx, mut input) = mpsc::channel::<Line>(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            match read_line(&mut stdin) {
                Ok(Some(line)) => {
                    if input_tx.blocking_send(line).is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("cannot read stdin: {e}");
                    break;
                }
            }
        }
    });

    let mut pending = tokio::task::JoinSet::new();
    while let Some(line) = input.recv().await {
        let line = match line {
            Line::Text(line) => line,
            Line::TooLong => {
                let _ = out.send(error_response(
                    None,
                    PARSE_ERROR,
                    &format!("Parse error: a line longer than {MAX_LINE_BYTES} bytes"),
                    None,
                ));
                continue;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let message: Value = match serde_json::from_slice(&line) {
            Ok(message) => message,
            Err(e) => {
                let _ = out.send(error_response(
                    None,
                    PARSE_ERROR,
                    &format!("Parse error: {e}"),
                    None,
                ));
                continue;
            }
        };
        let (wrapper, out, body) = (Arc::clone(&wrapper), out.clone(), line);
        if message.get("method").and_then(Value::as_str) == Some("initialize") {
            // Everything after initialize needs what it negotiates.
            wrapper.forward(body, message, &out).await;
        } else {
            pending.spawn(async move { wrapper.forward(body, message, &out).await });
        }
        while pending.try_join_next().is_some() {}
    }
    while pending.join_next().await.is_some() {}
    wrapper.end_session().await;
    drop(out);
    let _ = writer.await;
    Ok(ExitCode::SUCCESS)
}

impl Wrapper {
    /// Ends a 2025-11-25 session with `DELETE` (best effort, two seconds).
    async fn end_session(&self) {
        let Some(session) = self.session_id.lock().unwrap().clone() else {
            return;
        };
        let Ok(token) = self.token().await else {
            return;
        };
        let mut request = self
            .http
            .delete(&self.endpoint)
            .header("Authorization", format!("DPoP {token}"))
            .header(
                "DPoP",
                self.key
                    .proof("DELETE", &self.endpoint, Some(&token), now()),
            )
            .header(SESSION_HEADER, session)
            .timeout(Duration::from_secs(2));
        if let Some(version) = self.protocol_version.lock().unwrap().clone() {
            request = request.header(PROTOCOL_VERSION_HEADER, version);
        }
        if let Err(e) = request.send().await {
            tracing::debug!("ending the MCP session: {e}");
        }
    }
}
