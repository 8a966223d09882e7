//! The MCP gateway's added cost: a `tools/call` through `mandate serve`'s
//! `/mcp/<upstream>` against the same call made directly to the upstream,
//! measured side by side in one run, with the task token + DPoP check, the
//! Cedar decision and the durable audit record all on.
//!
//! Run it with:
//!
//! ```text
//! cargo bench -p mandate-cli --bench gateway
//! MANDATE_BENCH_CONCURRENCY=32 MANDATE_BENCH_SECONDS=20 MANDATE_BENCH_SUSTAIN_SECONDS=60 \
//!     cargo bench -p mandate-cli --bench gateway
//! ```
//!
//! What it does:
//!
//! 1. starts a fast MCP upstream inside this process (axum on loopback, on its
//!    own 2-thread runtime, stateless, plain JSON answers): `tools/call` of
//!    `echo` answers `{"content":[{"type":"text","text":"ok"}]}`, `tools/list`
//!    lists `echo`, `initialize` is minimal; so the upstream is not the
//!    bottleneck;
//! 2. starts the real `mandate` binary (bench profile) with a SQLite store in a
//!    temp dir, the shipped `policies/` and a config declaring that
//!    upstream as `everything` with `echo` catalogued as a `read` tool;
//! 3. registers one `dev` agent through the admin API and, over mTLS with its
//!    SVID, gets two task tokens (`everything.echo`, capability `read`): one
//!    DPoP-bound to the agent's ES256 key, one to a fresh Ed25519 key (EdDSA
//!    proofs are cheaper to verify);
//! 4. drives three routes with one plain-HTTP `reqwest` client (same settings
//!    for all), `C` concurrent tokio tasks (`MANDATE_BENCH_CONCURRENCY`,
//!    default 16):
//!    - `direct`: `POST <upstream>/mcp` (the baseline);
//!    - `gateway ES256` / `gateway EdDSA`: `POST <node>/mcp/everything` on the
//!      node's plain listener (so TLS is in neither side) with
//!      `Authorization: DPoP <token>` and a fresh proof (unique `jti`, `ath`)
//!      per request, signed before each timed stretch, outside the timing;
//!      a request finding its batch exhausted signs inline (counted);
//!
//!    in two modes, each `D` seconds per route (`MANDATE_BENCH_SECONDS`,
//!    default 10), interleaved in 1 s stretches (direct, ES256, EdDSA, the
//!    order rotating every round) so that load from anything else on the
//!    machine falls on all routes alike:
//!    - closed loop: every task sends back to back (after a 2 s warm-up per
//!      route): the throughput, and latency under saturation (mostly queueing);
//!    - paced at `R` calls/s (`MANDATE_BENCH_RATE`, default 2,000): latency
//!      when nothing is saturated, which is where the added latency is judged;
//! 5. a sustained run: gateway ES256 paced at `R` calls/s for
//!    `MANDATE_BENCH_SUSTAIN_SECONDS` (default 60), each proof signed just
//!    before its request (pre-signed proofs would outlive the node's 60 s
//!    `iat` window), counting errors;
//! 6. reports calls/s, p50 and p99 latency (send to last body byte), the
//!    added latency (gateway p50 − direct p50, p99 − p99) and the gateway's
//!    CPU per call (`utime + stime` of the `mandate` process from
//!    `/proc/<pid>/stat` around each stretch, in `getconf CLK_TCK` ticks,
//!    over the calls made), then stops the node with SIGTERM.
//!
//! Every answer must be a 200 whose body is a JSON-RPC result with the
//! request's id; a single failure makes the run invalid (`INVALID RUN`, exit
//! status 1).
//!
//! Profiling: `MANDATE_BENCH_CALLS=N` (with `MANDATE_BENCH_ROUTE=es256`,
//! `eddsa` or `direct`) makes only N closed-loop calls on that route, each
//! proof signed just before its request, and prints the node's CPU per call;
//! `MANDATE_BENCH_NODE_WRAPPER` runs the node under a profiler, e.g.
//! `valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out`; under
//! callgrind the counters are zeroed before the N calls and dumped after
//! them (`/tmp/cg.out.1`), so the dump divided by N is the instructions per
//! call.
//!
//! Baselines and targets (issue 5): added latency p50 under +0.25 ms and p99
//! under +1 ms; gateway CPU under 100 µs per call; at least 15,000 calls/s
//! through the gateway on a 2-core machine where the client, the gateway and
//! the upstream share the cores; 2,000 calls/s sustained for 60 s with no
//! error. The bench prints whether each was met. Everything runs on the same
//! machine, so the client's and the upstream's CPU come out of the gateway's
//! budget too.

mod support;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use support::load::{ROUTES, Settings, Target, Workload, bindings};
use support::{LIMITS, Node};

const PROTOCOL_VERSION: &str = "2025-11-25";

// ---------------------------------------------------------------------------
// The upstream.

/// `POST /mcp` of the in-process upstream: stateless, JSON answers only.
async fn upstream_mcp(body: Bytes) -> Response {
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let Some(id) = message.get("id") else {
        // A notification: nothing to answer.
        return StatusCode::ACCEPTED.into_response();
    };
    let id = id.to_string();
    let answer = match message["method"].as_str().unwrap_or_default() {
        "tools/call" if message["params"]["name"] == "echo" => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":"ok"}}]}}}}"#
        ),
        "tools/list" => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":[{{"name":"echo","description":"Answers ok.","inputSchema":{{"type":"object","properties":{{"text":{{"type":"string"}}}}}}}}]}}}}"#
        ),
        "initialize" => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{{"protocolVersion":"{PROTOCOL_VERSION}","capabilities":{{"tools":{{}}}},"serverInfo":{{"name":"bench-upstream","version":"0"}}}}}}"#
        ),
        "ping" => format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#),
        _ => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32601,"message":"method not found"}}}}"#
        ),
    };
    ([(header::CONTENT_TYPE, "application/json")], answer).into_response()
}

/// Starts the upstream on its own runtime; returns it and its endpoint URL.
fn start_upstream() -> (tokio::runtime::Runtime, String) {
    let app = axum::Router::new().route("/mcp", axum::routing::post(upstream_mcp));
    let (runtime, base) = support::serve_upstream(app);
    (runtime, format!("{base}/mcp"))
}

// ---------------------------------------------------------------------------
// The node.

/// Writes the node's config, declaring the upstream at `upstream_url` as
/// `everything` with `echo` catalogued as a `read` tool.
fn write_config(dir: &Path, upstream_url: &str) -> PathBuf {
    let config = dir.join("gw.toml");
    std::fs::write(
        &config,
        format!(
            "{LIMITS}[[mcp_upstreams]]\nname = \"everything\"\nurl = \"{upstream_url}\"\n\n\
             [[mcp_upstreams.tools]]\nname = \"echo\"\nclass = \"read\"\n"
        ),
    )
    .expect("config file");
    config
}

// ---------------------------------------------------------------------------
// The calls.

/// A `tools/call` of `echo` with id `id`.
fn echo_call(id: u64) -> Option<String> {
    Some(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"hi"}}}}}}"#
    ))
}

/// The JSON-RPC result of call `id`.
fn echo_answer(id: u64, body: &Bytes) -> Result<(), String> {
    let text = || String::from_utf8_lossy(body).into_owned();
    let answer: Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON ({e}): {}", text()))?;
    if answer["id"] != id || !answer["result"].is_object() {
        return Err(format!("not the JSON-RPC result of call {id}: {}", text()));
    }
    Ok(())
}

/// Checks the real thing works before anything is timed: `initialize`,
/// `tools/list` (cut down to `echo`) and `tools/call` on every route.
async fn preflight(target: &Target) {
    for route in ROUTES {
        for (method, params) in [
            (
                "initialize",
                json!({"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                       "clientInfo": {"name": "bench", "version": "0"}}),
            ),
            ("tools/list", json!({})),
            (
                "tools/call",
                json!({"name": "echo", "arguments": {"text": "hi"}}),
            ),
        ] {
            let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
            let response = target
                .request_to(
                    route,
                    reqwest::Method::POST,
                    None,
                    Some(body.to_string()),
                    None,
                )
                .send()
                .await
                .expect("an answer");
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            assert!(
                status == 200 && answer["id"] == 7 && answer["result"].is_object(),
                "{route:?} {method}: {status}: {text}"
            );
            match method {
                "tools/list" => assert_eq!(
                    answer["result"]["tools"][0]["name"], "echo",
                    "{route:?}: {text}"
                ),
                "tools/call" => assert_eq!(
                    answer["result"]["content"][0]["text"], "ok",
                    "{route:?}: {text}"
                ),
                _ => {}
            }
        }
    }
}

async fn run(node: &Node, upstream_url: &str, settings: Settings) -> bool {
    let details = json!([{
        "type": "agent_task",
        "purpose": "bench",
        "tools": ["everything.echo"],
        "ttl_seconds": 900,
        "capabilities": ["read"],
    }]);
    let workload = Workload {
        through: "gateway",
        method: reqwest::Method::POST,
        direct_url: upstream_url.to_owned(),
        node_url: format!("{}/mcp/everything", node.http_base),
        headers: vec![
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", PROTOCOL_VERSION),
        ],
        body: echo_call,
        check: echo_answer,
    };
    let target = Arc::new(Target::new(workload, bindings(node, &details).await));
    preflight(&target).await;
    support::load::run(target, node, settings).await
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench` (and a filter, if any); nothing to choose here.
    let settings = Settings::from_env();
    let dir = tempfile::tempdir().expect("temp dir");
    let (upstream_runtime, upstream_url) = start_upstream();
    let config = write_config(dir.path(), &upstream_url);
    let node = Node::start(dir.path(), Some(&config));
    let status =
        support::run_then_stop(node, async |node| run(node, &upstream_url, settings).await);
    drop(upstream_runtime);
    status
}
