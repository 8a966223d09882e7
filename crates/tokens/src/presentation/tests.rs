//! Each test presents a real token (issued by fresh signing keys) with real
//! proofs (signed by [`DpopKey`]) and tries one attack.

use std::collections::HashSet;

use super::*;
use crate::claims::Actor;
use crate::dpop_key::DpopKey;
use crate::keys::SigningKey;
use crate::replay::MemoryReplayGuard;
use crate::spiffe::SpiffeId;
use crate::testing::{AUD, ISS, claims};

const NOW: i64 = 1_800_000_000;
const URI: &str = "https://gateway.example/mcp";
/// A base64url SHA-256, as an mTLS client certificate's thumbprint.
const CERT: &str = "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs";
const OTHER_CERT: &str = "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA";

/// Keys, a verifier and a replay memory: one gateway.
struct Gateway {
    keys: SigningKeys,
    verifier: PresentationVerifier,
    replay: MemoryReplayGuard,
    revoked: HashSet<String>,
}

impl Gateway {
    fn new() -> Gateway {
        Gateway {
            keys: SigningKeys::new(SigningKey::generate().unwrap(), 3_600),
            verifier: PresentationVerifier::new(ISS, AUD, DpopVerifier::default(), 100),
            replay: MemoryReplayGuard::new(100),
            revoked: HashSet::new(),
        }
    }

    /// A token for the task `claims(NOW)`, bound to `agent`.
    fn token_for(&self, agent: &DpopKey) -> String {
        let mut c = claims(NOW);
        c.cnf = Some(Confirmation::Jkt(agent.thumbprint()));
        self.keys.issue(&c).unwrap()
    }

    fn present(&self, p: &Presentation<'_>) -> Result<Arc<TaskClaims>, PresentationError> {
        let revoked = |id: &str| self.revoked.contains(id);
        self.verifier.verify(&self.keys, &self.replay, &revoked, p)
    }
}

/// A presentation of `token` with `proof`, for `POST URI` at `NOW + 1`.
fn call<'a>(token: &'a str, proof: Option<&'a str>) -> Presentation<'a> {
    Presentation {
        token,
        dpop_proof: proof,
        method: "POST",
        uri: URI,
        client_cert_x5t: None,
        now: NOW + 1,
    }
}

fn agents() -> [DpopKey; 2] {
    [
        DpopKey::generate_es256().unwrap(),
        DpopKey::generate_ed25519().unwrap(),
    ]
}

#[test]
fn accepts_a_bound_token_with_its_proof_and_verifies_the_token_once() {
    for agent in agents() {
        let gw = Gateway::new();
        let token = gw.token_for(&agent);
        let proof = agent.proof("POST", URI, Some(&token), NOW);
        let first = gw.present(&call(&token, Some(&proof))).unwrap();
        assert_eq!(first.task_id, "task-1");
        assert_eq!(gw.verifier.cache().len(), 1);
        let proof = agent.proof("POST", URI, Some(&token), NOW + 1);
        let second = gw.present(&call(&token, Some(&proof))).unwrap();
        assert!(Arc::ptr_eq(&first, &second), "second call from the cache");
    }
}

#[test]
fn refuses_a_jkt_bound_token_without_a_proof() {
    let gw = Gateway::new();
    let agent = DpopKey::generate_es256().unwrap();
    let token = gw.token_for(&agent);
    let err = gw.present(&call(&token, None)).unwrap_err();
    assert_eq!(err, PresentationError::Dpop(DpopError::MissingProof));
    assert_eq!(err.error_code(), "invalid_dpop_proof");
    // Not even once the token is cached.
    let proof = agent.proof("POST", URI, Some(&token), NOW);
    gw.present(&call(&token, Some(&proof))).unwrap();
    assert_eq!(
        gw.present(&call(&token, None)),
        Err(PresentationError::Dpop(DpopError::MissingProof))
    );
}

#[test]
fn refuses_a_proof_from_another_key() {
    for (agent, thief) in agents().into_iter().zip(agents().into_iter().rev()) {
        let gw = Gateway::new();
        let token = gw.token_for(&agent);
        let proof = thief.proof("POST", URI, Some(&token), NOW);
        let err = gw.present(&call(&token, Some(&proof))).unwrap_err();
        assert_eq!(
            err,
            PresentationError::Dpop(DpopError::JktMismatch {
                expected: agent.thumbprint(),
                found: thief.thumbprint(),
            })
        );
    }
}

#[test]
fn refuses_a_replayed_proof() {
    let gw = Gateway::new();
    let agent = DpopKey::generate_ed25519().unwrap();
    let token = gw.token_for(&agent);
    let proof = agent.proof("POST", URI, Some(&token), NOW);
    gw.present(&call(&token, Some(&proof))).unwrap();
    assert!(matches!(
        gw.present(&call(&token, Some(&proof))),
        Err(PresentationError::Dpop(DpopError::Replayed { .. }))
    ));
}

#[test]
fn refuses_a_proof_for_another_url_or_method() {
    let gw = Gateway::new();
    let agent = DpopKey::generate_es256().unwrap();
    let token = gw.token_for(&agent);
    let proof = agent.proof("POST", "https://gateway.example/admin", Some(&token), NOW);
    assert!(matches!(
        gw.present(&call(&token, Some(&proof))),
        Err(PresentationError::Dpop(DpopError::UrlMismatch { .. }))
    ));
    let proof = agent.proof("GET", URI, Some(&token), NOW);
    let err = gw.present(&call(&token, Some(&proof))).unwrap_err();
    assert_eq!(
        err,
        PresentationError::Dpop(DpopError::MethodMismatch {
            proof: "GET".into(),
            request: "POST".into()
        })
    );
    assert_eq!(err.error_code(), "invalid_dpop_proof");
}

#[test]
fn refuses_a_proof_made_for_another_token() {
    let gw = Gateway::new();
    let agent = DpopKey::generate_es256().unwrap();
    let token = gw.token_for(&agent);
    let mut c = claims(NOW);
    c.jti = "tok-other".into();
    c.cnf = Some(Confirmation::Jkt(agent.thumbprint()));
    let other = gw.keys.issue(&c).unwrap();
    let proof = agent.proof("POST", URI, Some(&other), NOW);
    assert!(matches!(
        gw.present(&call(&token, Some(&proof))),
        Err(PresentationError::Dpop(DpopError::AthMismatch { .. }))
    ));
}

#[test]
fn refuses_an_expired_token_served_from_the_cache() {
    let gw = Gateway::new();
    let agent = DpopKey::generate_ed25519().unwrap();
    let token = gw.token_for(&agent);
    let proof = agent.proof("POST", URI, Some(&token), NOW);
    gw.present(&call(&token, Some(&proof))).unwrap();
    assert_eq!(gw.verifier.cache().len(), 1);
    let exp = NOW + 600;
    let proof = agent.proof("POST", URI, Some(&token), exp);
    let err = gw
        .present(&Presentation {
            now: exp,
            ..call(&token, Some(&proof))
        })
        .unwrap_err();
    assert_eq!(
        err,
        PresentationError::Token(TokenError::Expired { exp, now: exp })
    );
    assert_eq!(err.error_code(), "invalid_token");
    assert_eq!(
        err.to_string(),
        format!("token expired at {exp} (now {exp})")
    );
}

#[test]
fn never_caches_a_token_that_fails_and_never_serves_another_string() {
    let gw = Gateway::new();
    let agent = DpopKey::generate_es256().unwrap();
    let token = gw.token_for(&agent);
    let proof = agent.proof("POST", URI, Some(&token), NOW);
    gw.present(&call(&token, Some(&proof))).unwrap();
    // The same prefix, more bytes: a proof for exactly that string does not help.
    for forged in [
        format!("{token}x"),
        format!("{token}.x"),
        token[..token.len() - 2].to_owned(),
    ] {
        let proof = agent.proof("POST", URI, Some(&forged), NOW);
        assert!(
            matches!(
                gw.present(&call(&forged, Some(&proof))),
                Err(PresentationError::Token(_))
            ),
            "{forged}"
        );
    }
    assert_eq!(gw.verifier.cache().len(), 1, "failures are not cached");
    // A token refused at its first presentation is not remembered either.
    let early = Presentation {
        now: NOW - 100,
        ..call(&token, None)
    };
    gw.verifier.cache().clear();
    assert!(matches!(
        gw.present(&early),
        Err(PresentationError::Token(TokenError::NotYetValid { .. }))
    ));
    assert!(gw.verifier.cache().is_empty());
}

#[test]
fn refuses_a_revoked_task() {
    let mut gw = Gateway::new();
    let agent = DpopKey::generate_ed25519().unwrap();
    let token = gw.token_for(&agent);
    let proof = agent.proof("POST", URI, Some(&token), NOW);
    gw.present(&call(&token, Some(&proof))).unwrap();
    gw.revoked.insert("task-1".into());
    let proof = agent.proof("POST", URI, Some(&token), NOW);
    let err = gw.present(&call(&token, Some(&proof))).unwrap_err();
    assert_eq!(
        err,
        PresentationError::Revoked {
            task_id: "task-1".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "task \"task-1\" has ended (completed or revoked)"
    );
    assert_eq!(err.error_code(), "invalid_token");
}

#[test]
fn refuses_a_task_whose_ancestor_was_revoked() {
    let mut gw = Gateway::new();
    let agent = DpopKey::generate_es256().unwrap();
    let id = |n: &str| SpiffeId::parse(&format!("spiffe://example.org/agent/{n}")).unwrap();
    let mut c = claims(NOW);
    c.task_id = "task-grandchild".into();
    c.task_chain = vec!["task-root".into(), "task-child".into()];
    c.act = Some(Actor {
        sub: id("child"),
        act: Some(Box::new(Actor {
            sub: id("root"),
            act: None,
        })),
    });
    c.cnf = Some(Confirmation::Jkt(agent.thumbprint()));
    let token = gw.keys.issue(&c).unwrap();
    let proof = agent.proof("POST", URI, Some(&token), NOW);
    gw.present(&call(&token, Some(&proof))).unwrap();

    gw.revoked.insert("task-child".into());
    let proof = agent.proof("POST", URI, Some(&token), NOW);
    assert_eq!(
        gw.present(&call(&token, Some(&proof))),
        Err(PresentationError::Revoked {
            task_id: "task-child".into()
        })
    );
    gw.revoked.insert("task-root".into());
    let proof = agent.proof("POST", URI, Some(&token), NOW);
    assert_eq!(
        gw.present(&call(&token, Some(&proof))),
        Err(PresentationError::Revoked {
            task_id: "task-root".into()
        }),
        "the root is named first"
    );
}

#[test]
fn an_x5t_bound_token_needs_its_client_certificate() {
    let gw = Gateway::new();
    let mut c = claims(NOW);
    c.cnf = Some(Confirmation::X5tS256(CERT.into()));
    let token = gw.keys.issue(&c).unwrap();
    let with_cert = |x5t| Presentation {
        client_cert_x5t: x5t,
        ..call(&token, None)
    };
    assert!(gw.present(&with_cert(Some(CERT))).is_ok());

    let err = gw.present(&with_cert(None)).unwrap_err();
    assert_eq!(err, PresentationError::MissingClientCertificate);
    assert_eq!(err.error_code(), "invalid_token");
    let err = gw.present(&with_cert(Some(OTHER_CERT))).unwrap_err();
    assert_eq!(err, PresentationError::CertificateMismatch);
    assert_eq!(err.error_code(), "invalid_token");
    assert_eq!(
        gw.present(&with_cert(Some(&CERT[..42]))),
        Err(PresentationError::CertificateMismatch)
    );
}

#[test]
fn a_dpop_header_with_an_x5t_bound_token_is_ignored() {
    let gw = Gateway::new();
    let mut c = claims(NOW);
    c.cnf = Some(Confirmation::X5tS256(CERT.into()));
    let token = gw.keys.issue(&c).unwrap();
    let p = Presentation {
        client_cert_x5t: Some(CERT),
        ..call(&token, Some("not even a jws"))
    };
    assert!(gw.present(&p).is_ok());
    assert!(gw.replay.is_empty(), "nothing remembered");
    // The proof does not replace the certificate.
    let agent = DpopKey::generate_es256().unwrap();
    let proof = agent.proof("POST", URI, Some(&token), NOW);
    assert_eq!(
        gw.present(&call(&token, Some(&proof))),
        Err(PresentationError::MissingClientCertificate)
    );
}

#[test]
fn refuses_a_token_for_another_audience_even_from_the_cache() {
    let gw = Gateway::new();
    let agent = DpopKey::generate_ed25519().unwrap();
    let token = gw.token_for(&agent);
    let proof = agent.proof("POST", URI, Some(&token), NOW);
    gw.present(&call(&token, Some(&proof))).unwrap();
    let elsewhere = PresentationVerifier::new(
        ISS,
        "https://other-gateway.example",
        DpopVerifier::default(),
        10,
    );
    let proof = agent.proof("POST", URI, Some(&token), NOW);
    let revoked = |_: &str| false;
    assert!(matches!(
        elsewhere.verify(&gw.keys, &gw.replay, &revoked, &call(&token, Some(&proof))),
        Err(PresentationError::Token(TokenError::WrongAudience { .. }))
    ));
}

#[test]
fn debug_output_hides_the_token_and_the_proof() {
    let p = call("secret.token.value", Some("secret.proof.value"));
    let shown = format!("{p:?}");
    assert!(!shown.contains("secret"), "{shown}");
}

#[test]
fn an_unbound_token_is_refused_unless_bearer_tokens_are_accepted() {
    let mut gateway = Gateway::new();
    let mut c = claims(NOW);
    c.cnf = None;
    let token = gateway.keys.issue(&c).unwrap();
    let err = gateway.present(&call(&token, None)).unwrap_err();
    assert!(matches!(err, PresentationError::Unbound), "{err}");
    assert_eq!(err.error_code(), "invalid_token");
    gateway.verifier =
        PresentationVerifier::new(ISS, AUD, DpopVerifier::default(), 100).accept_unbound(true);
    assert!(gateway.present(&call(&token, None)).is_ok());
}
