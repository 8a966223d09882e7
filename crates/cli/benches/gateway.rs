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
//!    temp dir, the `examples/agents` policies and a config declaring that
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
//! Baselines and targets (issue 5): added latency p50 under +0.25 ms and p99
//! under +1 ms; gateway CPU under 100 µs per call; at least 15,000 calls/s
//! through the gateway on a 2-core machine where the client, the gateway and
//! the upstream share the cores; 2,000 calls/s sustained for 60 s with no
//! error. The bench prints whether each was met. Everything runs on the same
//! machine, so the client's and the upstream's CPU come out of the gateway's
//! budget too.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use mandate_tokens::DpopKey;
use serde_json::{Value, json};

use support::{
    Node, ProofBatch, Tally, WARM_UP, env_number, now_secs, register_agent, send_timed,
    sign_on_all_cores, token_exchange_form,
};

/// One stretch of one route; the routes take turns.
const ROUND: Duration = Duration::from_secs(1);
const PROTOCOL_VERSION: &str = "2025-11-25";
/// A guess of the closed-loop rate, to size the warm-up's proof batches.
const GUESSED_RATE: f64 = 20_000.0;

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
    use axum::serve::ListenerExt;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("upstream")
        .enable_all()
        .build()
        .expect("upstream runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("upstream listens");
    let addr = listener.local_addr().expect("upstream address");
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = axum::Router::new().route("/mcp", axum::routing::post(upstream_mcp));
    runtime.spawn(async move { axum::serve(listener, app).await });
    (runtime, format!("http://{addr}/mcp"))
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
            "[[mcp_upstreams]]\nname = \"everything\"\nurl = \"{upstream_url}\"\n\n\
             [[mcp_upstreams.tools]]\nname = \"echo\"\nclass = \"read\"\n"
        ),
    )
    .expect("config file");
    config
}

/// CPU time (user + system) the node has used, in clock ticks.
fn cpu_ticks(node: &Node) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", node.pid))
        .expect("/proc/<pid>/stat of the node");
    // The fields after the command name (which may hold spaces) start at
    // field 3; utime and stime are fields 14 and 15.
    let after = &stat[stat.rfind(')').expect("stat has a command name") + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| -> u64 { fields[n - 3].parse().expect("a tick count") };
    field(14) + field(15)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if that fails).
fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

// ---------------------------------------------------------------------------
// The client.

/// Where one call goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Direct,
    GatewayEs256,
    GatewayEd25519,
}

impl Route {
    fn label(self) -> &'static str {
        match self {
            Route::Direct => "direct (baseline)",
            Route::GatewayEs256 => "gateway, ES256 proof",
            Route::GatewayEd25519 => "gateway, EdDSA proof",
        }
    }
}

const ROUTES: [Route; 3] = [Route::Direct, Route::GatewayEs256, Route::GatewayEd25519];

/// A task token and the key it is bound to.
struct Binding {
    token: String,
    authorization: String,
    key: DpopKey,
}

/// Everything the request loop needs, shared by the tasks.
struct Target {
    client: reqwest::Client,
    direct_url: String,
    gateway_url: String,
    es256: Binding,
    ed25519: Binding,
    next_id: AtomicU64,
}

impl Target {
    fn binding(&self, route: Route) -> Option<&Binding> {
        match route {
            Route::Direct => None,
            Route::GatewayEs256 => Some(&self.es256),
            Route::GatewayEd25519 => Some(&self.ed25519),
        }
    }

    fn url(&self, route: Route) -> &str {
        match route {
            Route::Direct => &self.direct_url,
            _ => &self.gateway_url,
        }
    }

    /// A request for one JSON-RPC message on `route` (a fresh proof on the
    /// gateway routes: `proof`, or one signed now).
    fn request(
        &self,
        route: Route,
        body: String,
        proof: Option<String>,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .post(self.url(route))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", PROTOCOL_VERSION)
            .body(body);
        if let Some(binding) = self.binding(route) {
            let proof = proof.unwrap_or_else(|| self.sign_proof(route));
            request = request
                .header("authorization", &binding.authorization)
                .header("dpop", proof);
        }
        request
    }

    fn sign_proof(&self, route: Route) -> String {
        let binding = self.binding(route).expect("a gateway route");
        binding
            .key
            .proof("POST", &self.gateway_url, Some(&binding.token), now_secs())
    }

    /// `n` fresh proofs for `route`, signed on all cores.
    fn sign_proofs(&self, route: Route, n: usize) -> Vec<String> {
        sign_on_all_cores(n, || self.sign_proof(route))
    }
}

/// A `tools/call` of `echo` with id `id`.
fn echo_call(id: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"hi"}}}}}}"#
    )
}

/// One `tools/call`; `Err` holds what went wrong. The proof is signed before
/// the clock starts.
async fn one(
    target: &Target,
    route: Route,
    proofs: Option<&ProofBatch>,
    tally: &mut Tally,
) -> Result<u32, String> {
    let id = target.next_id.fetch_add(1, Ordering::Relaxed);
    let proof = target.binding(route).map(|_| {
        proofs.and_then(ProofBatch::take).unwrap_or_else(|| {
            tally.inline_proofs += 1;
            target.sign_proof(route)
        })
    });
    let (status, body, us) = send_timed(target.request(route, echo_call(id), proof)).await?;
    let text = || String::from_utf8_lossy(&body).into_owned();
    if status != reqwest::StatusCode::OK {
        return Err(format!("{status}: {}", text()));
    }
    let answer: Value =
        serde_json::from_slice(&body).map_err(|e| format!("not JSON ({e}): {}", text()))?;
    if answer["id"] != id || !answer["result"].is_object() {
        return Err(format!("not the JSON-RPC result of call {id}: {}", text()));
    }
    Ok(us)
}

/// How the tasks send.
#[derive(Clone, Copy)]
enum Pace {
    /// Back to back.
    Closed,
    /// This many calls per second in all, spread evenly over the tasks.
    Rate(f64),
}

/// `concurrency` tasks sending `route` calls at `pace` for `length`; the
/// node's CPU is read around it.
async fn stretch(
    target: &Arc<Target>,
    node: &Node,
    route: Route,
    pace: Pace,
    concurrency: usize,
    length: Duration,
    proofs: Option<Arc<ProofBatch>>,
) -> Tally {
    let ticks_before = cpu_ticks(node);
    let started = Instant::now();
    let deadline = started + length;
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| {
            let target = Arc::clone(target);
            let proofs = proofs.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                match pace {
                    Pace::Closed => {
                        while Instant::now() < deadline {
                            let outcome = one(&target, route, proofs.as_deref(), &mut tally).await;
                            tally.record(outcome);
                        }
                    }
                    Pace::Rate(rate) => {
                        let period = Duration::from_secs_f64(concurrency as f64 / rate);
                        let first = tokio::time::Instant::from_std(started)
                            + period.mul_f64(i as f64 / concurrency as f64);
                        let mut ticks = tokio::time::interval_at(first, period);
                        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                        loop {
                            let due = ticks.tick().await.into_std();
                            if due >= deadline {
                                break;
                            }
                            tally.max_lag = tally.max_lag.max(due.elapsed());
                            let outcome = one(&target, route, proofs.as_deref(), &mut tally).await;
                            tally.record(outcome);
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        total.merge(task.await.expect("request task"));
    }
    total.elapsed = started.elapsed();
    total.cpu_ticks = cpu_ticks(node).saturating_sub(ticks_before);
    total
}

/// `seconds` rounds; in each the routes take turns for [`ROUND`] (the order
/// rotating), with proofs for the gateway routes signed before the round,
/// sized from `rates` (calls/s per route, as last seen).
async fn interleaved(
    target: &Arc<Target>,
    node: &Node,
    pace: Pace,
    concurrency: usize,
    seconds: u64,
    rates: &[f64; 3],
) -> [Tally; 3] {
    let mut totals: [Tally; 3] = Default::default();
    for round in 0..seconds as usize {
        let batches: Vec<Option<Arc<ProofBatch>>> = ROUTES
            .iter()
            .zip(rates)
            .map(|(&route, &rate)| {
                target.binding(route).map(|_| {
                    let n = (rate * ROUND.as_secs_f64() * 1.5) as usize + concurrency * 64;
                    Arc::new(ProofBatch::new(target.sign_proofs(route, n.min(2_000_000))))
                })
            })
            .collect();
        for k in 0..ROUTES.len() {
            let i = (round + k) % ROUTES.len();
            let tally = stretch(
                target,
                node,
                ROUTES[i],
                pace,
                concurrency,
                ROUND,
                batches[i].clone(),
            )
            .await;
            totals[i].merge(tally);
        }
    }
    for tally in &mut totals {
        tally.latencies_us.sort_unstable();
    }
    totals
}

/// A task token for `everything.echo`, DPoP-bound to `key`, issued over mTLS.
async fn task_token(client: &reqwest::Client, node: &Node, key: DpopKey) -> Binding {
    let token_url = format!("{}/oauth/token", node.https_base);
    let details = json!([{
        "type": "agent_task",
        "purpose": "bench",
        "tools": ["everything.echo"],
        "ttl_seconds": 900,
        "capabilities": ["read"],
    }]);
    let response = client
        .post(&token_url)
        .header("DPoP", key.proof("POST", &token_url, None, now_secs()))
        .form(&token_exchange_form(&details))
        .send()
        .await
        .expect("token endpoint answers");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "token exchange ({}) failed: {body}", key.alg());
    assert_eq!(body["token_type"], "DPoP", "not DPoP-bound: {body}");
    let token = body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    Binding {
        authorization: format!("DPoP {token}"),
        token,
        key,
    }
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
                .request(route, body.to_string(), None)
                .send()
                .await
                .expect("an answer");
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            assert!(
                status == 200 && answer["id"] == 7 && answer["result"].is_object(),
                "{} {method}: {status}: {text}",
                route.label()
            );
            match method {
                "tools/list" => assert_eq!(
                    answer["result"]["tools"][0]["name"],
                    "echo",
                    "{}: {text}",
                    route.label()
                ),
                "tools/call" => assert_eq!(
                    answer["result"]["content"][0]["text"],
                    "ok",
                    "{}: {text}",
                    route.label()
                ),
                _ => {}
            }
        }
    }
}

/// Prints one table of the three routes; `false` if any call failed.
fn table(title: &str, results: &[Tally; 3], ticks_per_second: f64) -> bool {
    println!();
    println!("{title}");
    println!(
        "{:<22} {:>8} {:>9} {:>8} {:>8} {:>9} {:>9} {:>11} {:>7}",
        "route",
        "calls",
        "calls/s",
        "p50 ms",
        "p99 ms",
        "+p50 ms",
        "+p99 ms",
        "gw CPU us",
        "failed"
    );
    println!("{}", "-".repeat(100));
    let direct = &results[0];
    let mut valid = true;
    for (route, tally) in ROUTES.iter().zip(results) {
        let added = |p: f64| {
            if *route == Route::Direct {
                "-".to_owned()
            } else {
                format!("{:+.3}", tally.percentile_ms(p) - direct.percentile_ms(p))
            }
        };
        println!(
            "{:<22} {:>8} {:>9.0} {:>8.3} {:>8.3} {:>9} {:>9} {:>11.1} {:>7}",
            route.label(),
            tally.latencies_us.len(),
            tally.rate(),
            tally.percentile_ms(0.50),
            tally.percentile_ms(0.99),
            added(0.50),
            added(0.99),
            tally.cpu_us_per_call(ticks_per_second),
            tally.failures,
        );
        if let Some(why) = &tally.first_failure {
            println!(
                "  FAILED {}: {} failures, first: {why}",
                route.label(),
                tally.failures
            );
            valid = false;
        }
        if tally.inline_proofs > 0 {
            println!(
                "  {}: {} proofs signed inline (batch exhausted)",
                route.label(),
                tally.inline_proofs
            );
        }
    }
    valid
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

async fn run(node: &Node, upstream_url: &str, settings: Settings) -> bool {
    let Settings {
        concurrency,
        seconds,
        rate,
        sustain_seconds,
    } = settings;
    let ticks_per_second = clock_ticks_per_second();
    let (mtls, private_pem) = register_agent(node, reqwest::Client::builder()).await;
    let es256 = DpopKey::from_pkcs8_pem(&private_pem).expect("agent key as a DPoP key");
    let ed25519 = DpopKey::generate_ed25519().expect("Ed25519 key");
    let es256 = task_token(&mtls, node, es256).await;
    let ed25519 = task_token(&mtls, node, ed25519).await;
    let target = Arc::new(Target {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(usize::MAX)
            .tcp_nodelay(true)
            .build()
            .expect("HTTP client"),
        direct_url: upstream_url.to_owned(),
        gateway_url: format!("{}/mcp/everything", node.http_base),
        es256,
        ed25519,
        next_id: AtomicU64::new(1),
    });
    preflight(&target).await;
    let sign_started = Instant::now();
    let signed = target.sign_proofs(Route::GatewayEs256, 400).len()
        + target.sign_proofs(Route::GatewayEd25519, 400).len();
    let sign_us = sign_started.elapsed().as_secs_f64() * 1e6 / signed as f64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    println!(
        "upstream {upstream_url} (in-process, stateless); node {} (plain HTTP), pid {}; \
         {cores} cores shared by client, gateway and upstream",
        target.gateway_url, node.pid
    );
    println!(
        "{concurrency} concurrent tasks; routes interleaved in {} s stretches; \
         CLK_TCK {ticks_per_second}; proofs pre-signed (~{sign_us:.0} us each, not timed)",
        ROUND.as_secs()
    );

    // Closed loop: a warm-up per route, then the interleaved rounds.
    let mut rates = [GUESSED_RATE; 3];
    let mut valid = true;
    for (i, route) in ROUTES.into_iter().enumerate() {
        eprintln!("warming up {} ...", route.label());
        let batch = target.binding(route).map(|_| {
            let n = (GUESSED_RATE * WARM_UP.as_secs_f64()) as usize;
            Arc::new(ProofBatch::new(target.sign_proofs(route, n)))
        });
        let warm = stretch(
            &target,
            node,
            route,
            Pace::Closed,
            concurrency,
            WARM_UP,
            batch,
        )
        .await;
        if let Some(why) = &warm.first_failure {
            println!("FAILED warm-up {}: {why}", route.label());
            valid = false;
        }
        if !warm.latencies_us.is_empty() {
            rates[i] = warm.rate();
        }
    }
    eprintln!("closed loop, {seconds} s per route ...");
    let closed = interleaved(&target, node, Pace::Closed, concurrency, seconds, &rates).await;
    eprintln!("paced at {rate} calls/s, {seconds} s per route ...");
    let paced = interleaved(
        &target,
        node,
        Pace::Rate(rate),
        concurrency,
        seconds,
        &[rate; 3],
    )
    .await;
    eprintln!("sustained: gateway ES256 at {rate} calls/s for {sustain_seconds} s ...");
    let mut sustained = stretch(
        &target,
        node,
        Route::GatewayEs256,
        Pace::Rate(rate),
        concurrency,
        Duration::from_secs(sustain_seconds),
        None,
    )
    .await;
    sustained.latencies_us.sort_unstable();

    valid &= table(
        &format!("closed loop ({concurrency} tasks back to back, {seconds} s per route)"),
        &closed,
        ticks_per_second,
    );
    valid &= table(
        &format!("paced at {rate} calls/s ({seconds} s per route)"),
        &paced,
        ticks_per_second,
    );
    println!();
    println!(
        "sustained, gateway ES256 at {rate} calls/s for {sustain_seconds} s (proofs signed inline, \
         not timed): {} calls ({:.0} calls/s), p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, \
         latest start {:.1} ms behind schedule, gw CPU {:.1} us/call, {} failed",
        sustained.latencies_us.len(),
        sustained.rate(),
        sustained.percentile_ms(0.50),
        sustained.percentile_ms(0.99),
        sustained.percentile_ms(1.0),
        sustained.max_lag.as_secs_f64() * 1e3,
        sustained.cpu_us_per_call(ticks_per_second),
        sustained.failures,
    );
    if let Some(why) = &sustained.first_failure {
        println!("  FAILED sustained: first: {why}");
        valid = false;
    }

    // The issue-5 targets.
    let added = |t: &[Tally; 3], i: usize, p: f64| t[i].percentile_ms(p) - t[0].percentile_ms(p);
    let cpu = closed[1].cpu_us_per_call(ticks_per_second);
    let expected = rate * sustain_seconds as f64;
    println!();
    println!("targets (ES256; EdDSA in brackets):");
    println!(
        "  added p50 < 0.25 ms at {rate}/s:   {:+.3} ms [{:+.3}]  {}",
        added(&paced, 1, 0.50),
        added(&paced, 2, 0.50),
        verdict(added(&paced, 1, 0.50) < 0.25)
    );
    println!(
        "  added p99 < 1 ms at {rate}/s:      {:+.3} ms [{:+.3}]  {}",
        added(&paced, 1, 0.99),
        added(&paced, 2, 0.99),
        verdict(added(&paced, 1, 0.99) < 1.0)
    );
    println!(
        "  gateway CPU < 100 us per call:     {cpu:.1} us [{:.1}]  {}",
        closed[2].cpu_us_per_call(ticks_per_second),
        verdict(cpu < 100.0)
    );
    println!(
        "  >= 15,000 calls/s through gateway: {:.0} [{:.0}]  {}",
        closed[1].rate(),
        closed[2].rate(),
        verdict(closed[1].rate() >= 15_000.0)
    );
    println!(
        "  {rate}/s for {sustain_seconds} s, no error:       {} of {expected:.0} calls, {} errors  {}",
        sustained.latencies_us.len(),
        sustained.failures,
        verdict(sustained.failures == 0 && sustained.latencies_us.len() as f64 >= 0.99 * expected)
    );
    if !valid {
        println!("INVALID RUN: some calls did not get a 200 with a JSON-RPC result");
    }
    valid
}

#[derive(Clone, Copy)]
struct Settings {
    concurrency: usize,
    seconds: u64,
    rate: f64,
    sustain_seconds: u64,
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench` (and a filter, if any); nothing to choose here.
    let settings = Settings {
        concurrency: env_number("MANDATE_BENCH_CONCURRENCY", 16).max(1) as usize,
        seconds: env_number("MANDATE_BENCH_SECONDS", 10).max(1),
        rate: env_number("MANDATE_BENCH_RATE", 2_000).max(1) as f64,
        sustain_seconds: env_number("MANDATE_BENCH_SUSTAIN_SECONDS", 60).max(1),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let (upstream_runtime, upstream_url) = start_upstream();
    let config = write_config(dir.path(), &upstream_url);
    let node = Node::start(dir.path(), Some(&config));
    let status =
        support::run_then_stop(node, async |node| run(node, &upstream_url, settings).await);
    drop(upstream_runtime);
    status
}
