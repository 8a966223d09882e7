//! In-process benchmark of the per-call token check: task token verified
//! (EdDSA signature, claims, iss, aud, exp, nbf), DPoP proof checked (signature
//! with its jwk, thumbprint against `cnf.jkt`, htm, htu, iat, ath, jti replay
//! memory) and the token's `jti` looked up in a revocation set of 10,000 entries.
//!
//! Proofs are signed ahead of time, one per call with its own `jti`, by an
//! Ed25519 key and by a P-256 key (ES256), and each set is timed on its own.
//!
//! Run with: `cargo bench -p mandate-tokens --bench verify`
//! (set `MANDATE_BENCH_ITERATIONS` to change the sample count, default 20000).

use std::collections::HashSet;
use std::time::Instant;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mandate_tokens::{
    BoundToken, Confirmation, DpopRequest, DpopVerifier, MemoryReplayGuard, PublicJwk, SigningKey,
    SigningKeys, TaskClaims,
};
use serde_json::json;
use sha2::{Digest, Sha256};

// The same allocator as the `mandate` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://mandate.example";
const AUD: &str = "https://gateway.example";
const URI: &str = "https://gateway.example/mcp";

struct AgentKey {
    name: &'static str,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: PublicJwk,
}

fn ed25519() -> AgentKey {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("key");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
    AgentKey {
        name: "EdDSA proof",
        alg: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwk: PublicJwk::Okp {
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        },
    }
}

fn es256() -> AgentKey {
    let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).expect("key");
    let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).expect("key");
    let point = pair.public_key().as_ref();
    AgentKey {
        name: "ES256 proof",
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: PublicJwk::Ec {
            crv: "P-256".into(),
            x: URL_SAFE_NO_PAD.encode(&point[1..33]),
            y: URL_SAFE_NO_PAD.encode(&point[33..65]),
        },
    }
}

fn claims(jkt: String) -> TaskClaims {
    serde_json::from_value(json!({
        "iss": ISS, "sub": "spiffe://example.org/agent/triage", "aud": AUD,
        "iat": NOW, "nbf": NOW, "exp": NOW + 600, "jti": "tok-live", "task_id": "task-1",
        "authorization_details": [{
            "type": "agent_task", "purpose": "triage new issues",
            "tools": ["github.list_issues", "github.add_label"], "data_domains": ["github"],
            "ttl_seconds": 600, "max_calls": 50, "capabilities": ["read", "act"]
        }],
        "cnf": {"jkt": jkt}
    }))
    .expect("claims")
}

fn run(agent: &AgentKey, keys: &SigningKeys, revoked: &HashSet<String>, iterations: usize) {
    let jkt = agent.jwk.thumbprint();
    let token = keys.issue(&claims(jkt.clone())).expect("issue");
    let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
    let mut header = Header::new(agent.alg);
    header.typ = Some("dpop+jwt".into());
    header.jwk =
        Some(serde_json::from_value(serde_json::to_value(&agent.jwk).expect("jwk")).expect("jwk"));
    let warmup = 2_000;
    let proofs: Vec<String> = (0..iterations + warmup)
        .map(|i| {
            let claims = json!({"jti": format!("proof-{i}"), "htm": "POST", "htu": URI, "iat": NOW, "ath": ath});
            jsonwebtoken::encode(&header, &claims, &agent.encoding).expect("proof")
        })
        .collect();
    let verifier = DpopVerifier::default();
    let replay = MemoryReplayGuard::new(iterations + warmup);

    let check = |proof: &str| {
        let claims = keys
            .verify(&token, NOW + 1, AUD, ISS)
            .expect("token verifies");
        let Confirmation::Jkt(jkt) = &claims.cnf else {
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
        verifier.verify(&request, &replay).expect("proof verifies");
        assert!(!revoked.contains(&claims.jti), "not revoked");
        claims
    };

    for proof in &proofs[..warmup] {
        std::hint::black_box(check(proof));
    }
    let mut samples = Vec::with_capacity(iterations);
    for proof in &proofs[warmup..] {
        let t = Instant::now();
        let claims = check(proof);
        samples.push(t.elapsed());
        std::hint::black_box(claims);
    }
    mandate_testkit::report_latency(&format!("token + {} + revocation", agent.name), samples);

    // The parts alone, for the note: the token check, and the raw signature
    // verification of the proof key (the floor of any DPoP check).
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        let claims = keys
            .verify(&token, NOW + 1, AUD, ISS)
            .expect("token verifies");
        samples.push(t.elapsed());
        std::hint::black_box(claims);
    }
    mandate_testkit::report_latency("  of which: token verification", samples);
    let (input, signature) = proofs[0].rsplit_once('.').expect("jws");
    let signature = URL_SAFE_NO_PAD.decode(signature).expect("b64");
    let key = match &agent.jwk {
        PublicJwk::Okp { x, .. } => URL_SAFE_NO_PAD.decode(x).expect("b64"),
        PublicJwk::Ec { x, y, .. } => {
            let mut point = vec![4];
            point.extend(URL_SAFE_NO_PAD.decode(x).expect("b64"));
            point.extend(URL_SAFE_NO_PAD.decode(y).expect("b64"));
            point
        }
        PublicJwk::Rsa { .. } => unreachable!("no RSA agent here"),
    };
    let algorithm: &dyn aws_lc_rs::signature::VerificationAlgorithm = match agent.alg {
        Algorithm::EdDSA => &aws_lc_rs::signature::ED25519,
        _ => &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
    };
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        let ok = aws_lc_rs::signature::UnparsedPublicKey::new(algorithm, &key)
            .verify(input.as_bytes(), &signature);
        samples.push(t.elapsed());
        assert!(ok.is_ok());
    }
    mandate_testkit::report_latency(
        &format!(
            "  raw aws-lc {} signature check",
            agent.name.trim_end_matches(" proof")
        ),
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
    let revoked: HashSet<String> = (0..10_000).map(|i| format!("tok-{i}")).collect();
    println!("{iterations} calls per case, each with a fresh proof; 10,000 revoked jtis");
    run(&ed25519(), &keys, &revoked, iterations);
    run(&es256(), &keys, &revoked, iterations);
}
