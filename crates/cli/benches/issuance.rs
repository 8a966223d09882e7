//! Task-token issuance, end to end over HTTPS, in issuances per second, against
//! baselines measured in the same run on the same node and the same client.
//!
//! Run it with:
//!
//! ```text
//! cargo bench -p mandate-cli --bench issuance
//! MANDATE_BENCH_CONCURRENCY=32 MANDATE_BENCH_SECONDS=20 cargo bench -p mandate-cli --bench issuance
//! ```
//!
//! What it does:
//!
//! 1. starts the real `mandate` binary (built in the bench profile) on loopback
//!    ports, with a SQLite store in a temp dir and the shipped `policies/`
//!    (baseline and example grants);
//! 2. registers one agent through the admin API and gets its X.509-SVID from
//!    the built-in CA;
//! 3. drives the node's TLS listener with one mTLS `reqwest` client (the
//!    agent's SVID as client certificate) from `C` concurrent tokio tasks
//!    (`MANDATE_BENCH_CONCURRENCY`, default 16) for `D` seconds
//!    (`MANDATE_BENCH_SECONDS`, default 10) per variant, each after a 2 s
//!    warm-up whose results are thrown away:
//!    - `healthz`: `GET /healthz`, the no-op cost of the HTTP + TLS path
//!      (baseline);
//!    - `evaluation`: `POST /access/v1/evaluation` with a trivial body: a
//!      policy decision plus one durable audit record (second baseline);
//!    - `issue mtls`: `POST /oauth/token` (RFC 8693 token exchange, one
//!      `agent_task` entry), the token bound to the client certificate;
//!    - `issue dpop`: the same with a `DPoP` proof, the token bound to the key.
//!      Every request carries a fresh proof (unique `jti`). The proofs are
//!      signed before each timed stretch, outside the timing, in batches sized
//!      from the warm-up rate, and stretches are at most 30 s so that every
//!      proof's `iat` is inside the node's 60 s window. A request that finds
//!      the batch exhausted signs its own proof inline; the count is reported.
//! 4. reports requests/s, p50 and p99 latency per variant and each rate as a
//!    ratio to the `healthz` baseline, then stops the node with SIGTERM.
//!
//! Every answer must be 200 (the body is read in full); a single failure makes
//! the run invalid and the bench exits with status 1.
//!
//! Expect issuance to be store-bound: each issued token writes a task row and
//! an audit record, each committed durably (SQLite in WAL mode with
//! `synchronous=FULL`, fsync'd group commit), so the rate follows the disk's
//! fsync latency and the group-commit batching more than CPU. The client
//! runs on the same machine as the node and shares its cores.

mod support;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mandate_tokens::DpopKey;
use serde_json::{Value, json};

use support::{
    Node, ProofBatch, Tally, WARM_UP, env_number, now_secs, register_agent, send_timed,
    sign_on_all_cores, token_exchange_form,
};

/// Longest timed stretch between two proof batches (proofs are good for 60 s).
const MAX_STRETCH: Duration = Duration::from_secs(30);

/// What one request of a variant is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Healthz,
    Evaluation,
    IssueMtls,
    IssueDpop,
}

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Variant::Healthz => "healthz (baseline)",
            Variant::Evaluation => "evaluation (baseline)",
            Variant::IssueMtls => "issue, mTLS-bound",
            Variant::IssueDpop => "issue, DPoP-bound",
        }
    }
}

/// Everything the request loop needs, shared by the tasks.
struct Target {
    client: reqwest::Client,
    healthz_url: String,
    evaluation_url: String,
    evaluation_body: Vec<u8>,
    token_url: String,
    token_form: Vec<u8>,
    dpop: DpopKey,
}

impl Target {
    fn request(&self, variant: Variant, proof: Option<String>) -> reqwest::RequestBuilder {
        let form = || {
            self.client
                .post(&self.token_url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(self.token_form.clone())
        };
        match variant {
            Variant::Healthz => self.client.get(&self.healthz_url),
            Variant::Evaluation => self
                .client
                .post(&self.evaluation_url)
                .header("content-type", "application/json")
                .body(self.evaluation_body.clone()),
            Variant::IssueMtls => form(),
            Variant::IssueDpop => form().header("DPoP", proof.expect("a proof")),
        }
    }

    fn sign_proof(&self) -> String {
        self.dpop.proof("POST", &self.token_url, None, now_secs())
    }

    /// `n` fresh proofs, signed on all cores.
    fn sign_proofs(&self, n: usize) -> Vec<String> {
        sign_on_all_cores(n, || self.sign_proof())
    }
}

/// One request; `Err` holds what went wrong.
async fn one(
    target: &Target,
    variant: Variant,
    proofs: Option<&ProofBatch>,
    tally: &mut Tally,
) -> Result<u32, String> {
    let proof = match (variant, proofs) {
        (Variant::IssueDpop, Some(batch)) => Some(batch.take().unwrap_or_else(|| {
            tally.inline_proofs += 1;
            target.sign_proof()
        })),
        (Variant::IssueDpop, None) => {
            tally.inline_proofs += 1;
            Some(target.sign_proof())
        }
        _ => None,
    };
    let (status, body, us) = send_timed(target.request(variant, proof)).await?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok(us)
}

/// `concurrency` tasks sending `variant` requests back to back for `length`.
async fn stretch(
    target: &Arc<Target>,
    variant: Variant,
    concurrency: usize,
    length: Duration,
    proofs: Option<Arc<ProofBatch>>,
) -> Tally {
    let started = Instant::now();
    let deadline = started + length;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let target = Arc::clone(target);
            let proofs = proofs.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < deadline {
                    let outcome = one(&target, variant, proofs.as_deref(), &mut tally).await;
                    tally.record(outcome);
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
    total
}

/// A warm-up of [`WARM_UP`] (results dropped), then `seconds` of measurement
/// cut into stretches of at most [`MAX_STRETCH`]; DPoP proofs for each stretch
/// are signed before it, sized from `expected_rate` (requests/s).
async fn measure(
    target: &Arc<Target>,
    variant: Variant,
    concurrency: usize,
    seconds: u64,
    expected_rate: f64,
) -> Tally {
    let batch = |length: Duration, rate: f64| {
        (variant == Variant::IssueDpop).then(|| {
            let n = (rate * length.as_secs_f64() * 1.5) as usize + concurrency * 64;
            Arc::new(ProofBatch::new(target.sign_proofs(n.min(2_000_000))))
        })
    };
    let warm = stretch(
        target,
        variant,
        concurrency,
        WARM_UP,
        batch(WARM_UP, expected_rate),
    )
    .await;
    let rate = if warm.latencies_us.is_empty() {
        expected_rate
    } else {
        warm.rate()
    };
    let mut total = Tally::default();
    let mut left = Duration::from_secs(seconds);
    while !left.is_zero() {
        let length = left.min(MAX_STRETCH);
        left -= length;
        let proofs = batch(length, rate);
        total.merge(stretch(target, variant, concurrency, length, proofs).await);
    }
    // Failures in the warm-up count too: every answer must be a 200.
    total.failures += warm.failures;
    total.first_failure = warm.first_failure.or(total.first_failure);
    total.latencies_us.sort_unstable();
    total
}

/// Sends one request of `variant` and checks the answer's body, so the timed
/// loops (which look at the status only) are known to measure the real thing.
async fn preflight(target: &Target, variant: Variant) {
    let proof = (variant == Variant::IssueDpop).then(|| target.sign_proof());
    let response = target
        .request(variant, proof)
        .send()
        .await
        .expect("node answers");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{}: {text}", variant.label());
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match variant {
        Variant::Healthz => {}
        Variant::Evaluation => assert!(
            body["decision"].is_boolean(),
            "evaluation answer without a decision: {text}"
        ),
        Variant::IssueMtls | Variant::IssueDpop => {
            let kind = if variant == Variant::IssueDpop {
                "DPoP"
            } else {
                "Bearer"
            };
            assert!(
                body["access_token"].as_str().is_some_and(|t| !t.is_empty()),
                "no access_token: {text}"
            );
            assert_eq!(body["token_type"], kind, "wrong binding: {text}");
        }
    }
}

async fn run(node: &Node, concurrency: usize, seconds: u64) -> bool {
    let builder = reqwest::Client::builder().pool_max_idle_per_host(usize::MAX);
    let (client, private_pem) = register_agent(node, builder).await;
    let https = &node.https_base;
    let token_url = format!("{https}/oauth/token");
    let details = json!([{
        "type": "agent_task",
        "purpose": "bench",
        "tools": ["files.read"],
        "data_domains": ["reports"],
        "ttl_seconds": 300,
        "capabilities": ["read"],
    }]);
    // The form, encoded once by reqwest itself.
    let token_form = client
        .post(&token_url)
        .form(&token_exchange_form(&details))
        .build()
        .expect("form request")
        .body()
        .and_then(reqwest::Body::as_bytes)
        .expect("form body")
        .to_vec();
    let evaluation = json!({
        "subject": {"type": "user", "id": "bench"},
        "action": {"name": "read"},
        "resource": {"type": "document", "id": "1"},
    });
    let target = Arc::new(Target {
        client,
        healthz_url: format!("{https}/healthz"),
        evaluation_url: format!("{https}/access/v1/evaluation"),
        evaluation_body: evaluation.to_string().into_bytes(),
        token_url,
        token_form,
        dpop: DpopKey::from_pkcs8_pem(&private_pem).expect("agent key as a DPoP key"),
    });

    let variants = [
        Variant::Healthz,
        Variant::Evaluation,
        Variant::IssueMtls,
        Variant::IssueDpop,
    ];
    for variant in variants {
        preflight(&target, variant).await;
    }
    // A quick estimate of the DPoP proof cost, to say what is left out.
    let sign_started = Instant::now();
    let signed = target.sign_proofs(200).len();
    let sign_us = sign_started.elapsed().as_secs_f64() * 1e6 / signed as f64;

    println!(
        "node: {} (HTTPS), {} (HTTP admin); {concurrency} concurrent tasks, \
         {} s warm-up + {seconds} s per variant",
        node.https_base,
        node.http_base,
        WARM_UP.as_secs()
    );
    let mut results: Vec<(Variant, Tally)> = Vec::new();
    let mut expected_rate = 1000.0;
    for variant in variants {
        eprintln!("measuring {} ...", variant.label());
        let tally = measure(&target, variant, concurrency, seconds, expected_rate).await;
        if variant == Variant::IssueMtls {
            expected_rate = tally.rate();
        }
        results.push((variant, tally));
    }

    let baseline = results[0].1.rate();
    println!();
    println!(
        "{:<22} {:>9} {:>10} {:>9} {:>9} {:>11} {:>8}",
        "variant", "requests", "req/s", "p50 ms", "p99 ms", "vs healthz", "failed"
    );
    println!("{}", "-".repeat(84));
    let mut valid = true;
    for (variant, tally) in &results {
        println!(
            "{:<22} {:>9} {:>10.1} {:>9.2} {:>9.2} {:>10.3}x {:>8}",
            variant.label(),
            tally.latencies_us.len(),
            tally.rate(),
            tally.percentile_ms(0.50),
            tally.percentile_ms(0.99),
            tally.rate() / baseline,
            tally.failures,
        );
        if tally.failures > 0 {
            valid = false;
        }
    }
    println!();
    let dpop = &results[3].1;
    println!(
        "DPoP proofs: signed before each timed stretch (~{sign_us:.0} us each on this \
         machine, not timed); {} signed inline during the timed stretches.",
        dpop.inline_proofs
    );
    let (mtls, eval) = (results[2].1.rate(), results[1].1.rate());
    println!(
        "issuance vs evaluation (one audit record, no task row): mTLS {:.3}x, DPoP {:.3}x",
        mtls / eval,
        dpop.rate() / eval
    );
    for (variant, tally) in &results {
        if let Some(why) = &tally.first_failure {
            println!(
                "FAILED {}: {} failures, first: {why}",
                variant.label(),
                tally.failures
            );
        }
    }
    if !valid {
        println!("INVALID RUN: some requests did not get a 200");
    }
    valid
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench` (and a filter, if any); nothing to choose here.
    let concurrency = env_number("MANDATE_BENCH_CONCURRENCY", 16).max(1) as usize;
    let seconds = env_number("MANDATE_BENCH_SECONDS", 10).max(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(dir.path(), None);
    support::run_then_stop(node, async |node| run(node, concurrency, seconds).await)
}
