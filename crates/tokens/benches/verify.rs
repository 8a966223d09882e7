//! In-process benchmark of the per-call token check: task token verified
//! (EdDSA signature, claims, iss, aud, exp, nbf), DPoP proof checked (signature
//! with its jwk, thumbprint against `cnf.jkt`, htm, htu, iat, ath, jti replay
//! memory) and the token's task looked up in a revocation set of 10,000 entries.
//!
//! The per-call path is [`mandate_tokens::PresentationVerifier`] with a warm
//! cache (the token's signature checked once); the uncached rows check the
//! token's signature on every call, as before the cache. Proofs are signed
//! ahead of time by [`mandate_tokens::DpopKey`], one per call with its own
//! `jti`, by an Ed25519 key and by a P-256 key (ES256), each set timed on its own.
//!
//! Run with: `cargo bench -p mandate-tokens --bench verify`
//! (set `MANDATE_BENCH_ITERATIONS` to change the sample count, default 20000).

use std::collections::HashSet;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mandate_tokens::{
    BoundToken, Confirmation, DpopKey, DpopRequest, DpopVerifier, MemoryReplayGuard, Presentation,
    PresentationVerifier, PublicJwk, SigningKey, SigningKeys, TaskClaims,
};
use serde_json::json;

// The same allocator as the `mandate` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://mandate.example";
const AUD: &str = "https://gateway.example";
const URI: &str = "https://gateway.example/mcp";
const WARMUP: usize = 2_000;

fn claims(jkt: String) -> TaskClaims {
    serde_json::from_value(json!({
        "iss": ISS, "sub": "spiffe://example.org/agent/triage", "aud": AUD,
        "iat": NOW, "nbf": NOW, "exp": NOW + 600, "jti": "tok-live", "task_id": "task-live",
        "authorization_details": [{
            "type": "agent_task", "purpose": "triage new issues",
            "tools": ["github.list_issues", "github.add_label"], "data_domains": ["github"],
            "ttl_seconds": 600, "max_calls": 50, "capabilities": ["read", "act"]
        }],
        "cnf": {"jkt": jkt}
    }))
    .expect("claims")
}

/// One proof per call (warm-up included), each with its own `jti`.
fn proofs(agent: &DpopKey, token: &str, iterations: usize) -> Vec<String> {
    (0..iterations + WARMUP)
        .map(|_| agent.proof("POST", URI, Some(token), NOW))
        .collect()
}

/// Times `check` once per proof after the warm-up ones.
fn time(proofs: &[String], mut check: impl FnMut(&str)) -> Vec<std::time::Duration> {
    for proof in &proofs[..WARMUP] {
        check(proof);
    }
    proofs[WARMUP..]
        .iter()
        .map(|proof| {
            let t = Instant::now();
            check(proof);
            t.elapsed()
        })
        .collect()
}

fn run(name: &str, agent: &DpopKey, keys: &SigningKeys, revoked: &HashSet<String>, n: usize) {
    let token = keys.issue(&claims(agent.thumbprint())).expect("issue");
    let is_revoked = |id: &str| revoked.contains(id);

    // The per-call path: the token's signature is checked on the first call
    // only, then served from the cache; exp, nbf, proof and revocation every time.
    let verifier = PresentationVerifier::new(ISS, AUD, DpopVerifier::default(), 10_000);
    let replay = MemoryReplayGuard::new(n + WARMUP);
    let samples = time(&proofs(agent, &token, n), |proof| {
        let presentation = Presentation {
            token: &token,
            dpop_proof: Some(proof),
            method: "POST",
            uri: URI,
            client_cert_x5t: None,
            now: NOW + 1,
        };
        let claims = verifier
            .verify(keys, &replay, &is_revoked, &presentation)
            .expect("presentation verifies");
        std::hint::black_box(claims);
    });
    mandate_testkit::report_latency(
        &format!("PresentationVerifier, cache warm, {name}"),
        samples,
    );

    // The same checks without the cache (the baseline).
    let dpop = DpopVerifier::default();
    let replay = MemoryReplayGuard::new(n + WARMUP);
    let samples = time(&proofs(agent, &token, n), |proof| {
        let claims = keys
            .verify(&token, NOW + 1, AUD, ISS)
            .expect("token verifies");
        let Some(Confirmation::Jkt(jkt)) = &claims.cnf else {
            panic!("bound by jkt")
        };
        let request = DpopRequest {
            proof: Some(proof),
            method: "POST",
            uri: URI,
            token: Some(BoundToken {
                access_token: &token,
                jkt,
            }),
            now: NOW + 1,
        };
        dpop.verify(&request, &replay).expect("proof verifies");
        assert!(!claims.task_lineage().any(is_revoked), "not revoked");
        std::hint::black_box(claims);
    });
    mandate_testkit::report_latency(&format!("token + {name} + revocation, uncached"), samples);

    // The parts alone: the token check, and the raw signature verification of
    // the proof key (the floor of any DPoP check).
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let claims = keys
            .verify(&token, NOW + 1, AUD, ISS)
            .expect("token verifies");
        samples.push(t.elapsed());
        std::hint::black_box(claims);
    }
    mandate_testkit::report_latency("  of which: token verification", samples);
    let proof = agent.proof("POST", URI, Some(&token), NOW);
    let (input, signature) = proof.rsplit_once('.').expect("jws");
    let signature = URL_SAFE_NO_PAD.decode(signature).expect("b64");
    let b64 = |s: &str| URL_SAFE_NO_PAD.decode(s).expect("b64");
    let (algorithm, key): (&dyn aws_lc_rs::signature::VerificationAlgorithm, Vec<u8>) =
        match agent.public_jwk() {
            PublicJwk::Okp { x, .. } => (&aws_lc_rs::signature::ED25519, b64(&x)),
            PublicJwk::Ec { x, y, .. } => (
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
                [vec![4], b64(&x), b64(&y)].concat(),
            ),
            PublicJwk::Rsa { .. } => unreachable!("no RSA agent here"),
        };
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let ok = aws_lc_rs::signature::UnparsedPublicKey::new(algorithm, &key)
            .verify(input.as_bytes(), &signature);
        samples.push(t.elapsed());
        assert!(ok.is_ok());
    }
    mandate_testkit::report_latency(
        &format!("  raw aws-lc {} signature check", agent.alg()),
        samples,
    );
}

fn main() {
    let iterations: usize = std::env::var("MANDATE_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut keys = SigningKeys::new(SigningKey::generate().expect("key"), 3_600);
    // One rotation behind us, so the kid lookup is not trivially the first key.
    keys.rotate(SigningKey::generate().expect("key"), NOW - 60)
        .expect("rotate");
    let revoked: HashSet<String> = (0..10_000).map(|i| format!("task-{i}")).collect();
    println!("{iterations} calls per case, each with a fresh proof; 10,000 revoked task ids");
    let ed25519 = DpopKey::generate_ed25519().expect("key");
    let es256 = DpopKey::generate_es256().expect("key");
    run("EdDSA proof", &ed25519, &keys, &revoked, iterations);
    run("ES256 proof", &es256, &keys, &revoked, iterations);
}
