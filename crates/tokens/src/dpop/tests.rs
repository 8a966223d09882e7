//! Each test builds real proofs with freshly generated keys (signed by
//! jsonwebtoken, or forged byte by byte where jsonwebtoken refuses to) and
//! tries one attack.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PSS_SHA256, RsaKeyPair};
use serde_json::{Value, json};

use super::*;
use crate::replay::MemoryReplayGuard;
use crate::testing::{AgentKey, forge};

const NOW: i64 = 1_800_000_000;
const URI: &str = "https://gateway.example/mcp/tools/call";
const TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.task-token.sig";

fn ath(token: &str) -> String {
    jws::b64(&Sha256::digest(token.as_bytes()))
}

fn claims(jti: &str) -> Value {
    json!({"jti": jti, "htm": "POST", "htu": URI, "iat": NOW, "ath": ath(TOKEN)})
}

/// A proof signed by jsonwebtoken, the way a client library would.
fn sign(key: &AgentKey, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(key.alg);
    header.typ = Some(DPOP_TYP.into());
    header.jwk = Some(serde_json::from_value(serde_json::to_value(&key.jwk).unwrap()).unwrap());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

fn alg_name(key: &AgentKey) -> &'static str {
    match key.alg {
        Algorithm::EdDSA => "EdDSA",
        _ => "ES256",
    }
}

/// A proof with a header of our choosing, signed by `key`'s private key.
fn forge_with(key: &AgentKey, header: &Value, claims: &Value) -> String {
    forge(header, claims, |m| key.sign(m))
}

fn check<'a>(proof: Option<&'a str>, jkt: &'a str) -> DpopRequest<'a> {
    DpopRequest {
        proof,
        method: "POST",
        uri: URI,
        token: Some(BoundToken {
            access_token: TOKEN,
            jkt,
        }),
        now: NOW,
    }
}

fn verify(proof: &str, key: &AgentKey) -> Result<DpopProof, DpopError> {
    let jkt = key.jkt();
    DpopVerifier::default().verify(&check(Some(proof), &jkt), &MemoryReplayGuard::new(100))
}

#[test]
fn accepts_a_fresh_es256_proof_bound_to_the_token() {
    let key = AgentKey::es256();
    let proof = verify(&sign(&key, &claims("p1")), &key).unwrap();
    assert_eq!(
        proof,
        DpopProof {
            jkt: key.jkt(),
            jti: "p1".into(),
            iat: NOW
        }
    );
}

#[test]
fn accepts_an_ed25519_proof() {
    let key = AgentKey::ed25519();
    assert!(verify(&sign(&key, &claims("p1")), &key).is_ok());
}

#[test]
fn accepts_a_ps256_proof_from_an_rsa_key() {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let public = pair.public_key();
    let jwk = json!({
        "kty": "RSA",
        "n": jws::b64(public.modulus().big_endian_without_leading_zero()),
        "e": jws::b64(public.exponent().big_endian_without_leading_zero()),
    });
    let jkt = PublicJwk::from_json(&jwk).unwrap().thumbprint();
    let header = json!({"typ": "dpop+jwt", "alg": "PS256", "jwk": jwk});
    let proof = forge(&header, &claims("p1"), |m| {
        let mut sig = vec![0; pair.public_modulus_len()];
        pair.sign(&RSA_PSS_SHA256, &SystemRandom::new(), m, &mut sig)
            .unwrap();
        sig
    });
    let guard = MemoryReplayGuard::new(10);
    assert!(
        DpopVerifier::default()
            .verify(&check(Some(&proof), &jkt), &guard)
            .is_ok()
    );
}

#[test]
fn returns_the_key_thumbprint_at_the_token_endpoint() {
    // No token yet: the proof introduces the key the new token is bound to.
    let key = AgentKey::es256();
    let mut c = claims("p1");
    c.as_object_mut().unwrap().remove("ath");
    let proof = sign(&key, &c);
    let request = DpopRequest {
        token: None,
        ..check(Some(&proof), "")
    };
    let got = DpopVerifier::default()
        .verify(&request, &MemoryReplayGuard::new(10))
        .unwrap();
    assert_eq!(got.jkt, key.jkt());
}

#[test]
fn refuses_a_token_presented_without_its_proof() {
    let key = AgentKey::es256();
    let jkt = key.jkt();
    let err = DpopVerifier::default()
        .verify(&check(None, &jkt), &MemoryReplayGuard::new(10))
        .unwrap_err();
    assert_eq!(err, DpopError::MissingProof);
}

#[test]
fn refuses_a_proof_made_with_another_key() {
    let agent = AgentKey::es256();
    let thief = AgentKey::es256();
    let err = verify(&sign(&thief, &claims("p1")), &agent).unwrap_err();
    assert_eq!(
        err,
        DpopError::JktMismatch {
            expected: agent.jkt(),
            found: thief.jkt()
        }
    );
}

#[test]
fn refuses_a_proof_naming_the_agents_key_but_signed_by_another() {
    let agent = AgentKey::es256();
    let thief = AgentKey::es256();
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": agent.jwk});
    let proof = forge_with(&thief, &header, &claims("p1"));
    assert_eq!(verify(&proof, &agent), Err(DpopError::BadSignature));
}

#[test]
fn refuses_a_replayed_proof() {
    let key = AgentKey::ed25519();
    let jkt = key.jkt();
    let guard = MemoryReplayGuard::new(10);
    let verifier = DpopVerifier::default();
    let proof = sign(&key, &claims("once"));
    assert!(verifier.verify(&check(Some(&proof), &jkt), &guard).is_ok());
    let later = DpopRequest {
        now: NOW + 5,
        ..check(Some(&proof), &jkt)
    };
    assert_eq!(
        verifier.verify(&later, &guard),
        Err(DpopError::Replayed { jti: "once".into() })
    );
}

#[test]
fn a_refused_proof_does_not_use_up_its_jti() {
    let key = AgentKey::es256();
    let jkt = key.jkt();
    let guard = MemoryReplayGuard::new(10);
    let verifier = DpopVerifier::default();
    let mut wrong = claims("j");
    wrong["htm"] = json!("GET");
    let refused = sign(&key, &wrong);
    assert!(
        verifier
            .verify(&check(Some(&refused), &jkt), &guard)
            .is_err()
    );
    assert!(guard.is_empty());
    let good = sign(&key, &claims("j"));
    assert!(verifier.verify(&check(Some(&good), &jkt), &guard).is_ok());
}

#[test]
fn refuses_a_proof_when_the_replay_memory_is_full() {
    let key = AgentKey::es256();
    let jkt = key.jkt();
    let guard = MemoryReplayGuard::new(1);
    let verifier = DpopVerifier::default();
    let first = sign(&key, &claims("a"));
    assert!(verifier.verify(&check(Some(&first), &jkt), &guard).is_ok());
    let second = sign(&key, &claims("b"));
    assert_eq!(
        verifier.verify(&check(Some(&second), &jkt), &guard),
        Err(DpopError::ReplayMemoryFull { jti: "b".into() })
    );
}

#[test]
fn refuses_a_proof_for_another_method() {
    let key = AgentKey::es256();
    let mut c = claims("p1");
    c["htm"] = json!("GET");
    let err = verify(&sign(&key, &c), &key).unwrap_err();
    assert_eq!(
        err,
        DpopError::MethodMismatch {
            proof: "GET".into(),
            request: "POST".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "DPoP proof is for method \"GET\", the request is \"POST\""
    );
}

#[test]
fn refuses_a_proof_for_another_url() {
    let key = AgentKey::es256();
    for other in [
        "https://gateway.example/mcp/tools/list",
        "https://evil.example/mcp/tools/call",
        "http://gateway.example/mcp/tools/call",
        "https://gateway.example:8443/mcp/tools/call",
    ] {
        let mut c = claims("p1");
        c["htu"] = json!(other);
        assert!(
            matches!(
                verify(&sign(&key, &c), &key),
                Err(DpopError::UrlMismatch { .. })
            ),
            "{other}"
        );
    }
}

#[test]
fn accepts_a_url_differing_only_in_query_fragment_or_case_of_host() {
    let key = AgentKey::es256();
    for same in [
        "https://gateway.example/mcp/tools/call?x=1",
        "https://gateway.example/mcp/tools/call#top",
        "HTTPS://Gateway.EXAMPLE:443/mcp/tools/call",
    ] {
        let mut c = claims("p1");
        c["htu"] = json!(same);
        assert!(verify(&sign(&key, &c), &key).is_ok(), "{same}");
    }
}

#[test]
fn refuses_a_stale_proof_and_one_from_the_future() {
    let key = AgentKey::ed25519();
    let at = |iat: i64| {
        let mut c = claims(&format!("p{iat}"));
        c["iat"] = json!(iat);
        verify(&sign(&key, &c), &key)
    };
    assert!(at(NOW - 60).is_ok());
    assert!(at(NOW + 60).is_ok());
    assert_eq!(
        at(NOW - 61),
        Err(DpopError::IatTooOld {
            iat: NOW - 61,
            now: NOW,
            window: 60
        })
    );
    assert_eq!(
        at(NOW + 61),
        Err(DpopError::IatInFuture {
            iat: NOW + 61,
            now: NOW,
            window: 60
        })
    );
}

#[test]
fn the_iat_window_is_configurable() {
    let key = AgentKey::es256();
    let jkt = key.jkt();
    let mut c = claims("p1");
    c["iat"] = json!(NOW - 20);
    let proof = sign(&key, &c);
    let guard = MemoryReplayGuard::new(10);
    assert!(matches!(
        DpopVerifier::new(10).verify(&check(Some(&proof), &jkt), &guard),
        Err(DpopError::IatTooOld { window: 10, .. })
    ));
}

#[test]
fn refuses_a_proof_without_ath_or_with_the_hash_of_another_token() {
    let key = AgentKey::es256();
    let mut c = claims("p1");
    c.as_object_mut().unwrap().remove("ath");
    assert_eq!(verify(&sign(&key, &c), &key), Err(DpopError::MissingAth));
    c["ath"] = json!(ath("another-token"));
    assert!(matches!(
        verify(&sign(&key, &c), &key),
        Err(DpopError::AthMismatch { .. })
    ));
}

#[test]
fn refuses_an_unsigned_proof_with_alg_none() {
    let key = AgentKey::es256();
    let header = json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.jwk});
    let proof = forge(&header, &claims("p1"), |_| Vec::new());
    assert_eq!(
        verify(&proof, &key),
        Err(DpopError::ForbiddenAlgorithm { alg: "none".into() })
    );
}

#[test]
fn refuses_hs256_keyed_with_the_public_jwk() {
    // Algorithm confusion: the attacker "signs" with the public key as an HMAC secret.
    let key = AgentKey::es256();
    let secret = serde_json::to_vec(&key.jwk).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some(DPOP_TYP.into());
    header.jwk = Some(serde_json::from_value(serde_json::to_value(&key.jwk).unwrap()).unwrap());
    let proof = jsonwebtoken::encode(
        &header,
        &claims("p1"),
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap();
    assert_eq!(
        verify(&proof, &key),
        Err(DpopError::ForbiddenAlgorithm {
            alg: "HS256".into()
        })
    );
}

#[test]
fn refuses_an_unsupported_asymmetric_algorithm() {
    let key = AgentKey::es256();
    let header = json!({"typ": "dpop+jwt", "alg": "ES256K", "jwk": key.jwk});
    assert_eq!(
        verify(&forge_with(&key, &header, &claims("p1")), &key),
        Err(DpopError::UnsupportedAlgorithm {
            alg: "ES256K".into()
        })
    );
}

#[test]
fn refuses_a_proof_carrying_the_private_key_in_its_jwk() {
    let key = AgentKey::ed25519();
    let mut jwk = serde_json::to_value(&key.jwk).unwrap();
    jwk["d"] = json!(jws::b64(&[7; 32]));
    let header = json!({"typ": "dpop+jwt", "alg": alg_name(&key), "jwk": jwk});
    assert_eq!(
        verify(&forge_with(&key, &header, &claims("p1")), &key),
        Err(DpopError::PrivateKeyInJwk { member: "d" })
    );
}

#[test]
fn refuses_a_proof_whose_jwk_does_not_fit_its_alg() {
    let ec = AgentKey::es256();
    let header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": ec.jwk});
    assert_eq!(
        verify(&forge_with(&ec, &header, &claims("p1")), &ec),
        Err(DpopError::KeyAlgorithmMismatch {
            alg: "EdDSA".into(),
            key: "EC P-256".into()
        })
    );
}

#[test]
fn refuses_a_jwt_that_is_not_a_dpop_proof() {
    let key = AgentKey::es256();
    for typ in [json!("at+jwt"), json!("JWT"), Value::Null] {
        let mut header = json!({"alg": "ES256", "jwk": key.jwk});
        if !typ.is_null() {
            header["typ"] = typ;
        }
        assert!(matches!(
            verify(&forge_with(&key, &header, &claims("p1")), &key),
            Err(DpopError::WrongType { .. })
        ));
    }
}

#[test]
fn refuses_a_proof_without_a_jwk_or_with_crit() {
    let key = AgentKey::es256();
    let header = json!({"typ": "dpop+jwt", "alg": "ES256"});
    assert_eq!(
        verify(&forge_with(&key, &header, &claims("p1")), &key),
        Err(DpopError::MissingJwk)
    );
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk, "crit": ["exp"]});
    assert!(matches!(
        verify(&forge_with(&key, &header, &claims("p1")), &key),
        Err(DpopError::UnsupportedCritical { .. })
    ));
}

#[test]
fn refuses_a_proof_missing_a_required_claim() {
    let key = AgentKey::es256();
    for claim in ["jti", "htm", "htu", "iat"] {
        let mut c = claims("p1");
        c.as_object_mut().unwrap().remove(claim);
        assert_eq!(
            verify(&sign(&key, &c), &key),
            Err(DpopError::MissingClaim { claim }),
            "{claim}"
        );
    }
}

#[test]
fn refuses_an_overlong_jti() {
    let key = AgentKey::es256();
    let proof = sign(&key, &claims(&"j".repeat(MAX_JTI_LEN + 1)));
    assert_eq!(
        verify(&proof, &key),
        Err(DpopError::JtiTooLong { len: 257, max: 256 })
    );
}

#[test]
fn refuses_a_malformed_proof_and_a_relative_request_uri() {
    let key = AgentKey::es256();
    assert!(matches!(
        verify("not.a-proof", &key),
        Err(DpopError::Malformed { .. })
    ));
    let jkt = key.jkt();
    let proof = sign(&key, &claims("p1"));
    let request = DpopRequest {
        uri: "/mcp/tools/call",
        ..check(Some(&proof), &jkt)
    };
    assert!(matches!(
        DpopVerifier::default().verify(&request, &MemoryReplayGuard::new(10)),
        Err(DpopError::BadRequestUri { .. })
    ));
}

// The memory of proof headers: every proof's signature and claims are still
// checked, and only a header whose proof verified is remembered.

#[test]
fn a_remembered_header_does_not_spare_the_next_proof_its_signature_check() {
    for key in [AgentKey::es256(), AgentKey::ed25519()] {
        let jkt = key.jkt();
        let guard = MemoryReplayGuard::new(10);
        let verifier = DpopVerifier::default();
        let first = sign(&key, &claims("first"));
        assert!(verifier.verify(&check(Some(&first), &jkt), &guard).is_ok());
        assert_eq!(verifier.keys.len(), 1, "the header is remembered");
        // Same header bytes, other claims, the first proof's signature.
        let (header, _) = first.split_once('.').unwrap();
        let signature = first.rsplit_once('.').unwrap().1;
        let payload = jws::b64(&serde_json::to_vec(&claims("second")).unwrap());
        let spliced = format!("{header}.{payload}.{signature}");
        assert_eq!(
            verifier.verify(&check(Some(&spliced), &jkt), &guard),
            Err(DpopError::BadSignature),
            "{}",
            alg_name(&key)
        );
        // A proof signed with the remembered key by someone else's hand.
        let thief = match key.alg {
            Algorithm::EdDSA => AgentKey::ed25519(),
            _ => AgentKey::es256(),
        };
        let header = json!({"typ": "dpop+jwt", "alg": alg_name(&key), "jwk": key.jwk});
        let forged = forge_with(&thief, &header, &claims("third"));
        assert_eq!(
            verifier.verify(&check(Some(&forged), &jkt), &guard),
            Err(DpopError::BadSignature)
        );
        let good = sign(&key, &claims("fourth"));
        assert!(verifier.verify(&check(Some(&good), &jkt), &guard).is_ok());
    }
}

#[test]
fn a_remembered_header_still_binds_its_key_to_the_token() {
    let agent = AgentKey::es256();
    let thief = AgentKey::es256();
    let guard = MemoryReplayGuard::new(10);
    let verifier = DpopVerifier::default();
    // The thief's key is remembered from a proof for its own token ...
    let own = sign(&thief, &claims("own"));
    assert!(
        verifier
            .verify(&check(Some(&own), &thief.jkt()), &guard)
            .is_ok()
    );
    // ... and still does not fit the agent's token.
    let stolen = sign(&thief, &claims("stolen"));
    assert_eq!(
        verifier.verify(&check(Some(&stolen), &agent.jkt()), &guard),
        Err(DpopError::JktMismatch {
            expected: agent.jkt(),
            found: thief.jkt()
        })
    );
}

#[test]
fn a_header_whose_proof_failed_is_not_remembered_and_is_refused_again() {
    let agent = AgentKey::es256();
    let thief = AgentKey::es256();
    let guard = MemoryReplayGuard::new(10);
    let verifier = DpopVerifier::default();
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": agent.jwk});
    for jti in ["a", "b"] {
        let proof = forge_with(&thief, &header, &claims(jti));
        assert_eq!(
            verifier.verify(&check(Some(&proof), &agent.jkt()), &guard),
            Err(DpopError::BadSignature)
        );
    }
    let wrong_typ = json!({"typ": "JWT", "alg": "ES256", "jwk": agent.jwk});
    for jti in ["c", "d"] {
        let proof = forge_with(&agent, &wrong_typ, &claims(jti));
        assert_eq!(
            verifier.verify(&check(Some(&proof), &agent.jkt()), &guard),
            Err(DpopError::WrongType {
                typ: Some("JWT".into())
            })
        );
    }
    assert_eq!(verifier.keys.len(), 0);
    assert!(guard.is_empty());
}

#[test]
fn the_ath_kept_with_a_token_is_the_hash_of_that_token() {
    let key = AgentKey::es256();
    let jkt = key.jkt();
    let verifier = DpopVerifier::default();
    let proof = sign(&key, &claims("p"));
    let known = ath(TOKEN);
    assert!(
        verifier
            .verify_with_ath(
                &check(Some(&proof), &jkt),
                &MemoryReplayGuard::new(10),
                Some(&known)
            )
            .is_ok()
    );
    assert_eq!(access_token_hash(TOKEN), known);
}
