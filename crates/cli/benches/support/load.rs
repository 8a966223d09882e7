//! The load driver the gateway and proxy benches share: one call shape sent
//! directly to an in-process upstream (the baseline) and through the node with
//! a DPoP-bound task token (ES256 and EdDSA proofs), closed loop and paced,
//! routes interleaved in 1 s stretches, the node's CPU read from `/proc`, and
//! the issue-5 targets judged on what was measured.
// Each bench uses a different part of what `support` offers.
#![allow(dead_code)]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use mandate_tokens::DpopKey;
use serde_json::Value;

use super::{
    Node, ProofBatch, Tally, WARM_UP, env_number, now_secs, register_agent, send_timed,
    sign_on_all_cores, token_exchange_form,
};

/// One stretch of one route; the routes take turns.
const ROUND: Duration = Duration::from_secs(1);
/// A guess of the closed-loop rate, to size the warm-up's proof batches.
const GUESSED_RATE: f64 = 20_000.0;

/// Where one call goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Route {
    Direct,
    NodeEs256,
    NodeEd25519,
}

pub const ROUTES: [Route; 3] = [Route::Direct, Route::NodeEs256, Route::NodeEd25519];

impl Route {
    fn label(self, through: &str) -> String {
        match self {
            Route::Direct => "direct (baseline)".to_owned(),
            Route::NodeEs256 => format!("{through}, ES256 proof"),
            Route::NodeEd25519 => format!("{through}, EdDSA proof"),
        }
    }

    /// `direct`, `es256` or `eddsa` (`MANDATE_BENCH_ROUTE`).
    fn parse(name: &str) -> Route {
        match name {
            "direct" => Route::Direct,
            "es256" => Route::NodeEs256,
            "eddsa" => Route::NodeEd25519,
            other => panic!("MANDATE_BENCH_ROUTE must be direct, es256 or eddsa, not {other:?}"),
        }
    }
}

/// The call every route makes, as a bench defines it.
pub struct Workload {
    /// What the routes through the node are called (`gateway`, `proxy`).
    pub through: &'static str,
    pub method: reqwest::Method,
    /// The upstream's URL for the call (the baseline).
    pub direct_url: String,
    /// The node's URL for the same call (the DPoP proof's `htu`).
    pub node_url: String,
    /// Headers both routes send.
    pub headers: Vec<(&'static str, &'static str)>,
    /// The body of call number `id`, if the call has one.
    pub body: fn(u64) -> Option<String>,
    /// Whether an answer is the right one for call `id` (the status was 200).
    pub check: fn(u64, &Bytes) -> Result<(), String>,
}

/// A task token and the key it is bound to.
pub struct Binding {
    pub token: String,
    authorization: String,
    key: DpopKey,
}

/// A task token for `details` (`authorization_details`), DPoP-bound to
/// `key`, issued over mTLS by `client`.
pub async fn task_token(
    client: &reqwest::Client,
    node: &Node,
    key: DpopKey,
    details: &Value,
) -> Binding {
    let token_url = format!("{}/oauth/token", node.https_base);
    let response = client
        .post(&token_url)
        .header("DPoP", key.proof("POST", &token_url, None, now_secs()))
        .form(&token_exchange_form(details))
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

/// Registers the agent and gets its two task tokens for `details`: one bound
/// to its ES256 (P-256 SVID) key, one to a fresh Ed25519 key.
pub async fn bindings(node: &Node, details: &Value) -> (Binding, Binding) {
    let (mtls, private_pem) = register_agent(node, reqwest::Client::builder()).await;
    let es256 = DpopKey::from_pkcs8_pem(&private_pem).expect("agent key as a DPoP key");
    let ed25519 = DpopKey::generate_ed25519().expect("Ed25519 key");
    (
        task_token(&mtls, node, es256, details).await,
        task_token(&mtls, node, ed25519, details).await,
    )
}

/// The workload, its client and its tokens, shared by the request tasks.
pub struct Target {
    pub workload: Workload,
    client: reqwest::Client,
    es256: Binding,
    ed25519: Binding,
    next_id: AtomicU64,
}

impl Target {
    pub fn new(workload: Workload, (es256, ed25519): (Binding, Binding)) -> Target {
        Target {
            workload,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(usize::MAX)
                .tcp_nodelay(true)
                .build()
                .expect("HTTP client"),
            es256,
            ed25519,
            next_id: AtomicU64::new(1),
        }
    }

    fn binding(&self, route: Route) -> Option<&Binding> {
        match route {
            Route::Direct => None,
            Route::NodeEs256 => Some(&self.es256),
            Route::NodeEd25519 => Some(&self.ed25519),
        }
    }

    fn url(&self, route: Route) -> &str {
        match route {
            Route::Direct => &self.workload.direct_url,
            _ => &self.workload.node_url,
        }
    }

    /// A request on `route` with `body`, sent as `method` to `url` (the
    /// route's own URL if `None`), with a fresh proof on the node routes:
    /// `proof`, or one signed now.
    pub fn request_to(
        &self,
        route: Route,
        method: reqwest::Method,
        url: Option<&str>,
        body: Option<String>,
        proof: Option<String>,
    ) -> reqwest::RequestBuilder {
        let url = url.unwrap_or(self.url(route));
        let mut request = self.client.request(method.clone(), url);
        for (name, value) in &self.workload.headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        if let Some(binding) = self.binding(route) {
            let proof = proof.unwrap_or_else(|| {
                let htu = url.split('?').next().unwrap_or(url);
                binding
                    .key
                    .proof(method.as_str(), htu, Some(&binding.token), now_secs())
            });
            request = request
                .header("authorization", &binding.authorization)
                .header("dpop", proof);
        }
        request
    }

    fn sign_proof(&self, route: Route) -> String {
        let binding = self.binding(route).expect("a route through the node");
        let url = &self.workload.node_url;
        let htu = url.split('?').next().unwrap_or(url);
        binding.key.proof(
            self.workload.method.as_str(),
            htu,
            Some(&binding.token),
            now_secs(),
        )
    }

    /// `n` fresh proofs for `route`, signed on all cores.
    fn sign_proofs(&self, route: Route, n: usize) -> Vec<String> {
        sign_on_all_cores(n, || self.sign_proof(route))
    }
}

/// One call; `Err` holds what went wrong. The proof is signed before the
/// clock starts.
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
    let workload = &target.workload;
    let request = target.request_to(
        route,
        workload.method.clone(),
        None,
        (workload.body)(id),
        proof,
    );
    let (status, body, us) = send_timed(request).await?;
    let text = || String::from_utf8_lossy(&body).into_owned();
    if status != reqwest::StatusCode::OK {
        return Err(format!("{status}: {}", text()));
    }
    (workload.check)(id, &body)?;
    Ok(us)
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

/// Context switches (voluntary and not) of every thread the node has now.
/// Threads that ended are not counted, so read it around a stretch in which
/// the node starts and ends none.
fn context_switches(node: &Node) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", node.pid)) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
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

/// How the tasks send.
#[derive(Clone, Copy)]
enum Pace {
    /// Back to back.
    Closed,
    /// This many calls per second in all, spread evenly over the tasks.
    Rate(f64),
}

/// When a stretch ends.
#[derive(Clone, Copy)]
enum Until {
    Elapsed(Duration),
    /// This many calls in all (closed loop only).
    Calls(u64),
}

/// `concurrency` tasks sending `route` calls at `pace` until `until`; the
/// node's CPU is read around it.
async fn stretch(
    target: &Arc<Target>,
    node: &Node,
    route: Route,
    pace: Pace,
    concurrency: usize,
    until: Until,
    proofs: Option<Arc<ProofBatch>>,
) -> Tally {
    let ticks_before = cpu_ticks(node);
    let started = Instant::now();
    let (deadline, left) = match until {
        Until::Elapsed(length) => (Some(started + length), None),
        Until::Calls(n) => (None, Some(Arc::new(AtomicU64::new(n)))),
    };
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| {
            let target = Arc::clone(target);
            let proofs = proofs.clone();
            let left = left.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let go_on = || match (&left, deadline) {
                    (Some(left), _) => left
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_ok(),
                    (None, Some(deadline)) => Instant::now() < deadline,
                    (None, None) => false,
                };
                match pace {
                    Pace::Closed => {
                        while go_on() {
                            let outcome = one(&target, route, proofs.as_deref(), &mut tally).await;
                            tally.record(outcome);
                        }
                    }
                    Pace::Rate(rate) => {
                        let deadline = deadline.expect("a paced stretch has a length");
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
/// rotating), with proofs for the node routes signed before the round, sized
/// from `rates` (calls/s per route, as last seen).
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
                Until::Elapsed(ROUND),
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

/// Prints one table of the three routes; `false` if any call failed.
fn table(title: &str, through: &str, results: &[Tally; 3], ticks_per_second: f64) -> bool {
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
        "node CPU us",
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
            route.label(through),
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
                route.label(through),
                tally.failures
            );
            valid = false;
        }
        if tally.inline_proofs > 0 {
            println!(
                "  {}: {} proofs signed inline (batch exhausted)",
                route.label(through),
                tally.inline_proofs
            );
        }
    }
    valid
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// What a run does, from the environment.
#[derive(Clone, Copy)]
pub struct Settings {
    concurrency: usize,
    seconds: u64,
    rate: f64,
    sustain_seconds: u64,
    /// Profiling: only this many calls on `route`, closed loop.
    calls: u64,
    route: Route,
}

impl Settings {
    /// `MANDATE_BENCH_CONCURRENCY` (16), `MANDATE_BENCH_SECONDS` (10),
    /// `MANDATE_BENCH_RATE` (2,000), `MANDATE_BENCH_SUSTAIN_SECONDS` (60),
    /// and for profiling `MANDATE_BENCH_CALLS` (0: the full run) with
    /// `MANDATE_BENCH_ROUTE` (`es256`, `eddsa` or `direct`).
    pub fn from_env() -> Settings {
        Settings {
            concurrency: env_number("MANDATE_BENCH_CONCURRENCY", 16).max(1) as usize,
            seconds: env_number("MANDATE_BENCH_SECONDS", 10).max(1),
            rate: env_number("MANDATE_BENCH_RATE", 2_000).max(1) as f64,
            sustain_seconds: env_number("MANDATE_BENCH_SUSTAIN_SECONDS", 60).max(1),
            calls: env_number("MANDATE_BENCH_CALLS", 0),
            route: Route::parse(
                std::env::var("MANDATE_BENCH_ROUTE")
                    .as_deref()
                    .unwrap_or("es256"),
            ),
        }
    }
}

/// Profiling: exactly `settings.calls` calls on `settings.route`, closed
/// loop, each proof signed just before its request (a node slowed down by a
/// profiler would outlive pre-signed proofs' `iat` window). Prints the
/// node's CPU per call. Under callgrind (`MANDATE_BENCH_NODE_WRAPPER`), the
/// counters are zeroed before the calls and dumped after them, so the dump
/// holds the instructions of these calls (and of whatever the node ran
/// meanwhile on its own, such as its 250 ms store sync).
async fn counted(target: &Arc<Target>, node: &Node, settings: Settings) -> bool {
    let ticks_per_second = clock_ticks_per_second();
    let through = target.workload.through;
    // Under callgrind, the counters cover exactly the counted calls: zeroed
    // before (the start and the token requests are not in them), dumped after.
    let callgrind =
        std::env::var("MANDATE_BENCH_NODE_WRAPPER").is_ok_and(|w| w.contains("callgrind"));
    let callgrind_control = |option: &str| {
        if callgrind {
            let status = Command::new("callgrind_control")
                .args([option, &node.pid.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "callgrind_control {option} failed"
            );
        }
    };
    callgrind_control("-z");
    let switches_before = context_switches(node);
    let mut tally = stretch(
        target,
        node,
        settings.route,
        Pace::Closed,
        settings.concurrency,
        Until::Calls(settings.calls),
        None,
    )
    .await;
    let switches = context_switches(node).saturating_sub(switches_before);
    callgrind_control("-d");
    tally.latencies_us.sort_unstable();
    println!(
        "{}: {} calls, {} failed, {:.0} calls/s, p50 {:.3} ms, p99 {:.3} ms, \
         node CPU {:.1} us/call, {:.2} context switches/call",
        settings.route.label(through),
        tally.latencies_us.len(),
        tally.failures,
        tally.rate(),
        tally.percentile_ms(0.50),
        tally.percentile_ms(0.99),
        tally.cpu_us_per_call(ticks_per_second),
        switches as f64 / tally.latencies_us.len().max(1) as f64,
    );
    if let Some(why) = &tally.first_failure {
        println!("  FAILED: first: {why}");
    }
    tally.failures == 0
}

/// The whole run against `target` (already checked to work): closed loop,
/// paced, sustained, then the targets. `false` if any call failed.
pub async fn run(target: Arc<Target>, node: &Node, settings: Settings) -> bool {
    if settings.calls > 0 {
        return counted(&target, node, settings).await;
    }
    let Settings {
        concurrency,
        seconds,
        rate,
        sustain_seconds,
        ..
    } = settings;
    let through = target.workload.through;
    let ticks_per_second = clock_ticks_per_second();
    let sign_started = Instant::now();
    let signed = target.sign_proofs(Route::NodeEs256, 400).len()
        + target.sign_proofs(Route::NodeEd25519, 400).len();
    let sign_us = sign_started.elapsed().as_secs_f64() * 1e6 / signed as f64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    println!(
        "upstream {} (in-process); node {} (plain HTTP), pid {}; \
         {cores} cores shared by client, node and upstream",
        target.workload.direct_url, target.workload.node_url, node.pid
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
        eprintln!("warming up {} ...", route.label(through));
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
            Until::Elapsed(WARM_UP),
            batch,
        )
        .await;
        if let Some(why) = &warm.first_failure {
            println!("FAILED warm-up {}: {why}", route.label(through));
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
    eprintln!("sustained: {through} ES256 at {rate} calls/s for {sustain_seconds} s ...");
    let mut sustained = stretch(
        &target,
        node,
        Route::NodeEs256,
        Pace::Rate(rate),
        concurrency,
        Until::Elapsed(Duration::from_secs(sustain_seconds)),
        None,
    )
    .await;
    sustained.latencies_us.sort_unstable();

    valid &= table(
        &format!("closed loop ({concurrency} tasks back to back, {seconds} s per route)"),
        through,
        &closed,
        ticks_per_second,
    );
    valid &= table(
        &format!("paced at {rate} calls/s ({seconds} s per route)"),
        through,
        &paced,
        ticks_per_second,
    );
    println!();
    println!(
        "sustained, {through} ES256 at {rate} calls/s for {sustain_seconds} s (proofs signed inline, \
         not timed): {} calls ({:.0} calls/s), p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, \
         latest start {:.1} ms behind schedule, node CPU {:.1} us/call, {} failed",
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
        "  {through} CPU < 100 us per call: {cpu:.1} us [{:.1}]  {}",
        closed[2].cpu_us_per_call(ticks_per_second),
        verdict(cpu < 100.0)
    );
    println!(
        "  >= 15,000 calls/s through {through}: {:.0} [{:.0}]  {}",
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
        println!("INVALID RUN: some calls did not get the expected answer");
    }
    valid
}
